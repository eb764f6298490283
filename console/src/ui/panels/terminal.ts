// Terminal: a shell on the customer's computer in @xterm/xterm, after the customer
// allows it (the agent names the account it runs as).

import "@xterm/xterm/css/xterm.css";
import { Terminal } from "@xterm/xterm";
import { lang, reasonText, t } from "../../i18n";
import { message as serviceMessage } from "../../services/messages";
import { attachXterm, openTerminal } from "../../services/terminal";
import { byId, el, showMessage } from "../common";
import { type PanelContext, toolErrorText } from "../panels";

export function setupTerminal(ctx: PanelContext): void {
  const panel = byId("panel-terminal");
  const button = el("button", { type: "button", id: "terminal-open", "data-i18n": "terminal_open" }, t("terminal_open"));
  const message = el("p", { class: "message", role: "alert", hidden: "" });
  const host = el("div", { class: "term", id: "terminal", hidden: "" });
  panel.append(button, message, host);
  button.addEventListener("click", async () => {
    button.disabled = true;
    showMessage(message, t("loading"), "info");
    try {
      const term = new Terminal({ cols: 80, rows: 24, fontSize: 13, convertEol: false, scrollback: 2000 });
      const shell = await openTerminal(ctx.session, {
        cols: term.cols,
        rows: term.rows,
        onAsking: () => showMessage(message, t("asking_customer"), "info"),
      });
      host.hidden = false;
      host.replaceChildren();
      term.open(host);
      const detach = attachXterm(term, shell);
      showMessage(message, serviceMessage("terminal_whose", lang(), { user: shell.hello.user }), "info");
      term.focus();
      const end = await shell.ended;
      detach();
      showMessage(
        message,
        end.how === "exit" ? serviceMessage("terminal_exited", lang(), { status: end.status }) : t("ended_reason", { reason: reasonText(end.reason) }),
        "info",
      );
    } catch (e) {
      showMessage(message, toolErrorText(e));
    } finally {
      button.disabled = false;
    }
  });
}
