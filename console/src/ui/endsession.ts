// End session: the dialog with the reasons of the terms and a comment. The session is
// ended through the server's API (POST /api/v1/sessions/{id}/end), which records the
// reason, the comment and who asserted it, then closes both sides' relay legs.

import { ApiError } from "../api";
import { t } from "../i18n";
import { byId, showMessage } from "./common";

const POLICY_REASONS = new Set(["device_malfunction", "malware_found", "credentials_refused", "illegal_request"]);

export interface EndHooks {
  sessionId: string;
  end(reason: string, comment: string): Promise<void>;
}

export function setupEnd(hooks: EndHooks): void {
  const dialog = byId<HTMLDialogElement>("end-dialog");
  const form = byId<HTMLFormElement>("end-form");
  const reason = byId<HTMLSelectElement>("end-reason");
  const comment = byId<HTMLTextAreaElement>("end-comment");
  const message = byId("end-message");
  byId("end-session").addEventListener("click", () => {
    showMessage(message, null);
    dialog.showModal();
    reason.focus();
  });
  byId("end-cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = comment.value.trim();
    if (POLICY_REASONS.has(reason.value) && !text) {
      showMessage(message, t("end_comment_required"));
      comment.focus();
      return;
    }
    const submit = form.querySelector<HTMLButtonElement>('button[type="submit"]');
    if (submit) submit.disabled = true;
    try {
      await hooks.end(reason.value, text);
      dialog.close();
    } catch (e) {
      const why = e instanceof ApiError ? e.message : String(e);
      showMessage(message, t("err_end_failed", { message: why }));
    } finally {
      if (submit) submit.disabled = false;
    }
  });
}
