// "Type this text": for login screens and password fields no clipboard reaches; the
// agent types it key by key (needs the control permission).

import { lang, t } from "../../i18n";
import { message as serviceMessage } from "../../services/messages";
import { typeText } from "../../services/typetext";
import { byId, showMessage } from "../common";
import { type PanelContext, toolErrorText } from "../panels";

export function setupTypeText(ctx: PanelContext): void {
  const form = byId<HTMLFormElement>("type-form");
  const text = byId<HTMLTextAreaElement>("type-text");
  const message = byId("type-message");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!text.value) return;
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const count = await typeText(ctx.session, text.value, {
        onAsking: () => showMessage(message, t("asking_customer"), "info"),
      });
      text.value = ""; // it may be a password: not kept in the page
      showMessage(message, serviceMessage("typed", lang(), { count }), "ok");
    } catch (e) {
      showMessage(message, toolErrorText(e));
    } finally {
      if (button) button.disabled = false;
    }
  });
}
