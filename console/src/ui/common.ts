// Shared page pieces: element lookup, the language switch, messages, navigation.

import { type Notice, asNotice } from "../api";
import { type Key, applyI18n, lang, setLang, t } from "../i18n";

/** The element with ``id``; a missing one is a bug in the page, so it throws. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page element #${id} is missing`);
  return el as T;
}

/** A new element with text (never HTML) and attributes. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/** Drop-down menus (details.menu) close on a press outside them and on Escape. */
function closeMenus(except?: EventTarget | null): void {
  for (const menu of document.querySelectorAll<HTMLDetailsElement>("details.menu[open]")) {
    if (!(except instanceof Node && menu.contains(except))) menu.open = false;
  }
}

/** Translate the page and wire the header's language switch (#lang-switch). */
export function setupPage(title: Key): void {
  // Capture phase: the remote screen's canvas handles its own presses.
  document.addEventListener("pointerdown", (e) => closeMenus(e.target), true);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeMenus();
  });
  const apply = () => {
    applyI18n(document);
    document.title = `${t(title)} — ${t("app_name")}`;
  };
  apply();
  const button = document.getElementById("lang-switch");
  button?.addEventListener("click", () => {
    setLang(lang() === "ja" ? "en" : "ja");
    apply();
  });
}

/** Show ``text`` in a message box (role=alert), or hide it for null. */
export function showMessage(box: HTMLElement, text: string | null, kind: "error" | "ok" | "info" = "error"): void {
  box.textContent = text ?? "";
  box.hidden = text === null;
  box.dataset.kind = kind;
}

export const PAGES = {
  login: "login.html",
  home: "./",
  session: "session.html",
} as const;

/** Go to the sign-in page, coming back to this one afterwards. */
export function toLogin(): void {
  const here = location.pathname.split("/").pop() || "";
  const next = here && here !== "login.html" ? `?next=${encodeURIComponent(here)}` : "";
  location.replace(PAGES.login + next);
}

/** ``123456789`` → ``123 456 789``; other input is grouped as far as it goes. */
export function formatAgentId(raw: string): string {
  const digits = raw.replace(/\D/g, "").slice(0, 9);
  return digits.replace(/(\d{3})(?=\d)/g, "$1 ");
}

/** The session parameters the home page hands to session.html (sessionStorage only). */
export interface SessionTicket {
  session_id: string;
  relay_url: string;
  relay_token: string;
  agent_id: string;
  contract: string;
  password: string;
  /** The session-created answer's warning (monthly allowance), shown on the session page. */
  warning?: Notice | null;
}

const TICKET_KEY = "enkaku.session";

export function storeTicket(ticket: SessionTicket): void {
  sessionStorage.setItem(TICKET_KEY, JSON.stringify(ticket));
}

/** Read the ticket once: it holds the one-time password, so it is removed at once. */
export function takeTicket(): SessionTicket | null {
  const raw = sessionStorage.getItem(TICKET_KEY);
  sessionStorage.removeItem(TICKET_KEY);
  if (!raw) return null;
  try {
    const v = JSON.parse(raw) as Partial<SessionTicket>;
    if (
      typeof v.session_id === "string" && typeof v.relay_url === "string" &&
      typeof v.relay_token === "string" && typeof v.agent_id === "string" &&
      typeof v.password === "string"
    ) {
      return { contract: "", ...v, warning: asNotice(v.warning) } as SessionTicket;
    }
  } catch {
    // a damaged entry is no ticket
  }
  return null;
}
