// The account dialog of the home page: two-step sign-in (enrol with a QR code and the
// key, confirm with a code, recovery codes shown once; turn off) and the password.

import {
  ApiError,
  type ConsoleLogin,
  changePassword,
  newRecoveryCodes,
  confirmTotp,
  disableTotp,
  startTotp,
} from "../api";
import { t } from "../i18n";
import { byId, el, showMessage } from "./common";

function errText(e: unknown): string {
  return e instanceof ApiError ? e.message : t("network_error");
}

export function setupAccount(login: ConsoleLogin): void {
  const dialog = byId<HTMLDialogElement>("account-dialog");
  const state = byId("totp-state");
  const start = byId<HTMLFormElement>("totp-start");
  const confirm = byId<HTMLFormElement>("totp-confirm");
  const disable = byId<HTMLFormElement>("totp-disable");
  const codes = byId("recovery-codes");
  const totpMessage = byId("totp-message");
  let enrolled = login.totp_enrolled === true;

  let left = login.recovery_codes_left ?? null;
  const show = () => {
    state.textContent = enrolled ? t("totp_on") : t("totp_off");
    byId("recovery-left").textContent = left === null ? "" : t("recovery_left", { n: left });
    start.hidden = enrolled || !confirm.hidden || !codes.hidden;
    disable.hidden = !enrolled || !codes.hidden;
  };

  byId("open-account").addEventListener("click", () => {
    byId<HTMLDetailsElement>("account-menu").open = false;
    showMessage(totpMessage, null);
    showMessage(byId("password-message"), null);
    show();
    dialog.showModal();
  });

  start.addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = byId<HTMLInputElement>("totp-start-password");
    if (!password.value) {
      showMessage(totpMessage, t("field_required"));
      password.focus();
      return;
    }
    try {
      const enrolment = await startTotp(password.value);
      password.value = "";
      // The QR code as an image: an <img> of an SVG runs no script and needs no markup
      // from the server inside the page.
      byId<HTMLImageElement>("totp-qr").src =
        "data:image/svg+xml;charset=utf-8," + encodeURIComponent(enrolment.qr_svg);
      byId("totp-secret").textContent = enrolment.secret.replace(/(.{4})(?=.)/g, "$1 ");
      confirm.hidden = false;
      start.hidden = true;
      showMessage(totpMessage, null);
      byId<HTMLInputElement>("totp-confirm-code").focus();
    } catch (e) {
      showMessage(totpMessage, errText(e));
    }
  });

  confirm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = byId<HTMLInputElement>("totp-confirm-code");
    try {
      const result = await confirmTotp(code.value.replace(/\s/g, ""));
      code.value = "";
      confirm.hidden = true;
      byId<HTMLImageElement>("totp-qr").removeAttribute("src");
      byId("totp-secret").textContent = "";
      enrolled = true;
      showCodes(result.recovery_codes);
      showMessage(totpMessage, t("totp_enabled_done"), "ok");
    } catch (e) {
      showMessage(totpMessage, errText(e));
      code.select();
    }
  });

  const showCodes = (list: string[]) => {
    byId("recovery-list").replaceChildren(...list.map((c) => el("li", { class: "mono" }, c)));
    codes.hidden = false;
    left = list.length;
    show();
  };

  byId("recovery-renew").addEventListener("click", async () => {
    const password = byId<HTMLInputElement>("totp-disable-password");
    const code = byId<HTMLInputElement>("totp-disable-code");
    if (!password.value || !code.value) {
      showMessage(totpMessage, t("field_required"));
      return;
    }
    try {
      const result = await newRecoveryCodes(password.value, code.value.trim());
      password.value = "";
      code.value = "";
      showCodes(result.recovery_codes);
      showMessage(totpMessage, null);
    } catch (e) {
      showMessage(totpMessage, errText(e));
    }
  });

  byId("recovery-done").addEventListener("click", () => {
    byId("recovery-list").replaceChildren();
    codes.hidden = true;
    show();
  });

  disable.addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = byId<HTMLInputElement>("totp-disable-password");
    const code = byId<HTMLInputElement>("totp-disable-code");
    try {
      await disableTotp(password.value, code.value.trim());
      password.value = "";
      code.value = "";
      enrolled = false;
      show();
      showMessage(totpMessage, t("totp_disabled_done"), "ok");
    } catch (e) {
      showMessage(totpMessage, errText(e));
    }
  });

  const pwForm = byId<HTMLFormElement>("password-form");
  pwForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = byId("password-message");
    const current = byId<HTMLInputElement>("pw-current");
    const next = byId<HTMLInputElement>("pw-new");
    const again = byId<HTMLInputElement>("pw-again");
    if (!current.value || !next.value) {
      showMessage(box, t("field_required"));
      return;
    }
    if (next.value !== again.value) {
      showMessage(box, t("err_password_mismatch"));
      again.select();
      return;
    }
    try {
      await changePassword(current.value, next.value);
      pwForm.reset();
      showMessage(box, t("password_changed"), "ok");
    } catch (e) {
      showMessage(box, errText(e));
    }
  });
}
