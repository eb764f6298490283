// The side panel: tabs, and each tool's panel (chat and clipboard here; the others in
// panels/*.ts on top of the service clients in src/services/).

import { lang, reasonText, t } from "../i18n";
import { SessionEnded } from "../protocol/errors";
import { serviceErrorMessage } from "../services/messages";
import { byId, el, showMessage } from "./common";
import { type Tracked, refusalText } from "./consent";
import type { Screen } from "./screen";
import { setupFiles } from "./panels/files";
import { setupScreenshot } from "./panels/screenshot";
import { setupSysinfo } from "./panels/sysinfo";
import { setupTerminal } from "./panels/terminal";
import { setupTypeText } from "./panels/typetext";

export interface PanelContext {
  session: Tracked;
  screen: Screen | null;
  channel: unknown;
}

/** A tool's failure in words: the customer's refusal, the session's end, or the error. */
export function toolErrorText(e: unknown): string {
  const refused = refusalText(e);
  if (refused !== null) return refused;
  if (e instanceof SessionEnded) return t("ended_reason", { reason: reasonText(e.reason) });
  return serviceErrorMessage(e, lang()) ?? (e instanceof Error ? e.message : String(e));
}

export function setupTabs(): void {
  const tabs = [...document.querySelectorAll<HTMLButtonElement>("#tabs button[data-panel]")];
  const select = (chosen: HTMLButtonElement) => {
    for (const tab of tabs) {
      const on = tab === chosen;
      tab.setAttribute("aria-selected", String(on));
      if (on) delete tab.dataset.unread;
      const panel = document.getElementById(tab.dataset.panel ?? "");
      if (panel) panel.hidden = !on;
      if (on && panel) panel.dispatchEvent(new Event("panel-shown"));
    }
  };
  for (const tab of tabs) tab.addEventListener("click", () => select(tab));
  if (tabs[0]) select(tabs[0]);
}

function setupChat(ctx: PanelContext): void {
  const log = byId("chat-log");
  const form = byId<HTMLFormElement>("chat-form");
  const text = byId<HTMLTextAreaElement>("chat-text");
  const add = (who: "me" | "customer", body: string, at: string) => {
    const time = new Date(at);
    const stamp = Number.isNaN(time.getTime())
      ? ""
      : time.toLocaleTimeString(lang() === "ja" ? "ja-JP" : "en-GB", { hour: "2-digit", minute: "2-digit" });
    log.append(
      el(
        "div",
        { class: `line ${who === "me" ? "mine" : "theirs"}` },
        el("span", { class: "who" }, `${t(who === "me" ? "chat_me" : "chat_customer")} ${stamp}`),
        body,
      ),
    );
    log.lastElementChild?.scrollIntoView({ block: "nearest" });
  };
  ctx.session.session.on("chat", (msg) => {
    add("customer", msg.text, msg.at);
    const tab = document.querySelector<HTMLButtonElement>('#tabs button[data-panel="panel-chat"]');
    if (tab && tab.getAttribute("aria-selected") !== "true") tab.dataset.unread = "1";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = text.value.trim();
    if (!body) return;
    try {
      const sent = await ctx.session.session.chat(body.slice(0, 4000));
      add("me", sent.text, sent.at);
      text.value = "";
    } catch (e) {
      add("me", toolErrorText(e), new Date().toISOString());
    }
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
}

function setupClipboard(ctx: PanelContext): void {
  const box = byId<HTMLTextAreaElement>("clipboard-text");
  const message = byId("clipboard-message");
  const ensure = async () => {
    if (!ctx.session.granted().includes("clipboard")) {
      showMessage(message, t("asking_customer"), "info");
      await ctx.session.ask("clipboard");
    }
    showMessage(message, null);
  };
  // Opening the panel asks for the clipboard, so the customer's copies arrive here.
  byId("panel-clipboard").addEventListener("panel-shown", () => {
    ensure().catch((e) => showMessage(message, toolErrorText(e)));
  });
  byId("clipboard-send").addEventListener("click", async () => {
    try {
      await ensure();
      if (!ctx.screen) throw new Error(t("screen_unavailable"));
      ctx.screen.paste(box.value);
    } catch (e) {
      showMessage(message, toolErrorText(e));
    }
  });
}

export function setupPanels(ctx: PanelContext): void {
  setupChat(ctx);
  setupClipboard(ctx);
  setupTypeText(ctx);
  setupSysinfo(ctx);
  setupFiles(ctx);
  setupScreenshot(ctx);
  setupTerminal(ctx);
}
