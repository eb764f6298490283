// The customer's consent for each action, as the page knows it: the session grants the
// agent reports (consent, status), the questions this page has open, and the last
// answer to each one-stream action. Every tool asks through trackSession's ask(), so the
// list shows "asking…" while the customer decides.

import { t } from "../i18n";
import { ACTIONS, type Action, type Answer, ConsentRefused, type DetailValue, TechnicianSession } from "../protocol/control";
import { byId, el } from "./common";
import { onLangChange } from "../i18n";

export type ConsentState = "granted" | "asking" | "denied" | "not";

export interface Tracked {
  readonly session: TechnicianSession<any>;
  ask(action: Action, details?: Record<string, DetailValue>, purpose?: string): Promise<Answer>;
  granted(): readonly string[];
  open(kind: string, params?: Record<string, unknown>): Promise<any>;
  state(action: Action): ConsentState;
  /** Called whenever a state may have changed. */
  onChange(fn: () => void): void;
}

export function trackSession(session: TechnicianSession<any>): Tracked {
  const asking = new Map<Action, number>();
  const last = new Map<Action, boolean>();
  const listeners = new Set<() => void>();
  const changed = () => listeners.forEach((fn) => fn());
  for (const ev of ["consent", "status", "answer"] as const) session.on(ev, changed);
  return {
    session,
    async ask(action, details = {}, purpose) {
      asking.set(action, (asking.get(action) ?? 0) + 1);
      changed();
      try {
        const answer = await session.ask(action, details, purpose);
        last.set(action, true);
        return answer;
      } catch (e) {
        if (e instanceof ConsentRefused) last.set(action, false);
        throw e;
      } finally {
        asking.set(action, (asking.get(action) ?? 1) - 1);
        changed();
      }
    },
    granted: () => session.granted,
    open: (kind, params = {}) => session.open(kind, params),
    state(action) {
      if ((asking.get(action) ?? 0) > 0) return "asking";
      if (session.granted.includes(action)) return "granted";
      const answer = last.get(action);
      if (answer === false) return "denied";
      if (answer === true) return "granted"; // a one-stream action: its last answer
      return "not";
    },
    onChange: (fn) => void listeners.add(fn),
  };
}

const STATE_KEYS = {
  granted: "consent_granted",
  asking: "consent_asking",
  denied: "consent_denied",
  not: "consent_not",
} as const;

/** The consent panel: one line per action with its state in words. */
export function setupConsent(tracked: Tracked): void {
  const list = byId("consent-list");
  const render = () => {
    list.replaceChildren(
      ...ACTIONS.map((action) => {
        const s = tracked.state(action);
        return el(
          "li",
          { "data-action": action },
          el("span", {}, t(`action_${action}` as const)),
          el("span", { "data-state": s }, t(STATE_KEYS[s])),
        );
      }),
    );
  };
  tracked.onChange(render);
  onLangChange(render);
  render();
}

/** A refusal in words: "The customer did not allow this: they said no." */
export function refusalText(e: unknown): string | null {
  if (!(e instanceof ConsentRefused)) return null;
  const keys: Record<string, Parameters<typeof t>[0]> = {
    denied: "answer_denied",
    timeout: "answer_timeout",
    no_answer: "answer_timeout",
    policy: "answer_policy",
    unavailable: "answer_unavailable",
    invalid: "answer_invalid",
    busy: "answer_busy",
  };
  const key = keys[e.reason];
  return t("err_denied_action", { reason: key ? t(key) : e.reason });
}
