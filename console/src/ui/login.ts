// The sign-in page: user name and password, then the authenticator code (or a recovery
// code) when the server answers totp_required. Each failure has its own words; an
// unknown user and a wrong password read the same (the server does not tell them apart).

import "./console.css";
import { ApiError, currentLogin, signIn } from "../api";
import { t, waitText } from "../i18n";
import { PAGES, byId, setupPage, showMessage } from "./common";

setupPage("signin_title");

const form = byId<HTMLFormElement>("login-form");
const username = byId<HTMLInputElement>("username");
const password = byId<HTMLInputElement>("password");
const totpStep = byId("step-totp");
const totpBox = byId("totp-box");
const recoveryBox = byId("recovery-box");
const totp = byId<HTMLInputElement>("totp");
const recovery = byId<HTMLInputElement>("recovery");
const message = byId("login-message");
const submit = byId<HTMLButtonElement>("login-submit");

let useRecovery = false;

function nextPage(): string {
  const next = new URLSearchParams(location.search).get("next") ?? "";
  // Only a page of the console itself, never another site.
  return /^[a-z]+\.html$/.test(next) && next !== PAGES.login ? next : PAGES.home;
}

function askSecondFactor(): void {
  totpStep.hidden = false;
  setRecovery(useRecovery);
}

function setRecovery(on: boolean): void {
  useRecovery = on;
  totpBox.hidden = on;
  recoveryBox.hidden = !on;
  (on ? recovery : totp).focus();
}

byId("use-recovery").addEventListener("click", () => setRecovery(true));
byId("use-totp").addEventListener("click", () => setRecovery(false));

function errorText(e: unknown): string {
  if (!(e instanceof ApiError)) return t("network_error");
  switch (e.code) {
    case "login_failed":
      return t("err_login_failed");
    case "totp_required":
      return t("err_totp_required");
    case "totp_wrong":
      return useRecovery ? t("err_recovery_wrong") : t("err_totp_wrong");
    case "totp_reused":
      return t("err_totp_reused");
    case "recovery_code_wrong":
      return t("err_recovery_wrong");
  }
  if (e.status === 429) return t("err_locked", { wait: waitText(e.retryAfter ?? 60) });
  return e.message;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const fields: { username: string; password: string; totp?: string; recovery_code?: string } = {
    username: username.value.trim(),
    password: password.value,
  };
  for (const input of [username, password]) {
    if (!input.value) {
      showMessage(message, t("field_required"));
      input.focus();
      return;
    }
  }
  if (!totpStep.hidden) {
    const code = (useRecovery ? recovery : totp).value.replace(/\s/g, "");
    if (!code) {
      showMessage(message, t("field_required"));
      (useRecovery ? recovery : totp).focus();
      return;
    }
    if (useRecovery) fields.recovery_code = code;
    else fields.totp = code;
  }
  submit.disabled = true;
  submit.textContent = t("signing_in");
  try {
    await signIn(fields);
    location.replace(nextPage());
    return;
  } catch (e) {
    if (e instanceof ApiError && e.code === "totp_required") {
      showMessage(message, t("err_totp_required"), "info");
      askSecondFactor();
    } else {
      showMessage(message, errorText(e));
      if (e instanceof ApiError && e.code === "totp_wrong") {
        (useRecovery ? recovery : totp).select();
      } else if (e instanceof ApiError && e.code === "login_failed") {
        password.select();
      }
    }
  } finally {
    submit.disabled = false;
    submit.textContent = t("signin_button");
  }
});

// Already signed in (a bookmark of the sign-in page): straight on.
currentLogin()
  .then((login) => {
    if (login) location.replace(nextPage());
  })
  .catch(() => undefined);
username.focus();
