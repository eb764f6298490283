// The session page: the end-to-end channel to the customer's computer, its screen
// through noVNC, the state line (connection, latency, data used), the customer's consent
// for each action, the tools panels, and End session (always visible).
//
// The home page leaves the session's parameters in sessionStorage (never the URL); they
// are read once and removed, so a reload shows "no session" instead of reconnecting with
// a password that may already have been spent.

import "./console.css";
import { ApiError, type Notice, currentLogin, endSession, noticeText } from "../api";
import { type Key, onLangChange, reasonText, t } from "../i18n";
import { Channel } from "../protocol/channel";
import { TechnicianSession } from "../protocol/control";
import { HandshakeFailed, SessionEnded } from "../protocol/errors";
import { type RfbSocket, rfbSocket } from "../protocol/rfbsocket";
import { byId, formatAgentId, setupPage, takeTicket } from "./common";
import { setupConsent, type Tracked, trackSession } from "./consent";
import { setupEnd } from "./endsession";
import { setupPanels, setupTabs } from "./panels";
import { type MonitorNotice, type MonitorState, choices, probeLayout, selected } from "./monitors";
import { SPECIAL_KEYS, Screen, isQuality, type Quality } from "./screen";
import { setupStats } from "./stats";

setupPage("session_title");
setupTabs();

type State = "connecting" | "waiting_consent" | "connected" | "paused" | "ended";

const statusEl = byId("status");
const overlay = byId("overlay");
const overlayText = byId("overlay-text");
const overlayHome = byId<HTMLAnchorElement>("overlay-home");
const screenEl = byId("screen");
const screenNotice = byId("screen-notice");

let state: State = "connecting";
let stateText: () => string = () => t("state_connecting");

function setState(next: State, text?: () => string): void {
  state = next;
  const texts: Record<State, Key> = {
    connecting: "state_connecting",
    waiting_consent: "state_waiting_consent",
    connected: "state_connected",
    paused: "state_paused",
    ended: "state_ended",
  };
  stateText = text ?? (() => t(texts[next]));
  statusEl.dataset.state = next;
  statusEl.textContent = t(texts[next]);
  document.body.dataset.state = next;
  if (next === "connected" || next === "paused") {
    overlay.hidden = true;
  } else {
    overlay.hidden = false;
    overlayText.textContent = stateText();
  }
  overlayHome.hidden = next !== "ended";
  byId<HTMLButtonElement>("end-session").disabled = next === "ended";
}

onLangChange(() => setState(state, stateText));

/** A failure to connect or the session's end, in words for the technician. */
export function endText(e: unknown): string {
  if (e instanceof HandshakeFailed) {
    switch (e.reason) {
      case "malformed_password":
        return t("err_malformed_password");
      case "wrong_password": {
        const left = Number((e as { attemptsLeft?: unknown }).attemptsLeft);
        return Number.isInteger(left) && left > 0
          ? t("err_wrong_password_left", { n: left })
          : t("err_wrong_password");
      }
      case "password_replaced":
        return t("err_password_replaced");
      case "busy":
        return t("err_busy");
      case "timeout":
        return t("ended_reason", { reason: t("reason_timeout") });
      default:
        return t("err_handshake");
    }
  }
  if (e instanceof SessionEnded) return reasonMessage(e.reason);
  return t("err_connection_lost");
}

function reasonMessage(reason: string): string {
  switch (reason) {
    case "consent_denied":
      return t("err_consent_denied");
    case "wrong_password":
      return t("err_wrong_password");
    case "agent_disconnected":
      return t("err_agent_gone");
    case "connection_lost":
    case "technician_disconnected":
      return t("err_connection_lost");
    case "busy":
      return t("err_busy");
  }
  return t("ended_reason", { reason: reasonText(reason) });
}

function ended(text: () => string): void {
  setState("ended", text);
}

/** The session-created answer's warning (a contract past its monthly allowance), in
 * the page's language, until the technician closes it. */
function showWarning(warning: Notice | null | undefined): void {
  if (!warning) return;
  const box = byId("session-warning");
  const text = byId("session-warning-text");
  const render = (): void => {
    text.textContent = noticeText(warning);
  };
  render();
  const stop = onLangChange(render);
  box.hidden = false;
  byId("session-warning-close").addEventListener("click", () => {
    box.hidden = true;
    stop();
  });
}

async function main(): Promise<void> {
  const ticket = takeTicket();
  if (!ticket) {
    ended(() => t("err_no_session"));
    return;
  }
  showWarning(ticket.warning);
  // The sign-in also hands out the CSRF token that End session's API call needs.
  await currentLogin().catch(() => null);
  byId("peer").textContent = formatAgentId(ticket.agent_id);
  document.body.dataset.sessionId = ticket.session_id;
  setState("connecting");

  let channel: Channel;
  try {
    channel = await Channel.connect({
      relayUrl: ticket.relay_url,
      relayToken: ticket.relay_token,
      agentId: ticket.agent_id,
      password: ticket.password,
    });
  } catch (e) {
    ended(() => endText(e));
    if (e instanceof HandshakeFailed && e.reason === "malformed_password") {
      // Nothing reached the relay: end the request so the customer's computer stops
      // waiting for this session.
      void endSession(ticket.session_id, "technician_ended").catch(() => undefined);
    }
    return;
  }
  ticket.password = "";
  const session = new TechnicianSession(channel);
  const tracked: Tracked = trackSession(session);
  setupConsent(tracked);
  setupStats(channel, tracked);
  let screen: Screen | null = null;

  setupEnd({
    sessionId: ticket.session_id,
    async end(reason, comment) {
      try {
        // A reason of the terms needs the customer's consent on record: the server waits
        // a moment for the agent's report, so no retry is needed here.
        await endSession(ticket.session_id, reason, comment || undefined);
      } catch (e) {
        if (e instanceof ApiError && (e.status === 0 || e.status === 401)) {
          // The server cannot be reached, or the sign-in has expired: the session
          // must still end, so the page closes the channel itself (the plain
          // technician_ended; a reason of the terms can only be given through the API).
          await channel.close("technician_ended");
          return;
        }
        throw e;
      }
    },
  });

  let refused = false; // the customer said no: that stays the message, whoever closes
  void channel.closed.then(({ reason }) => {
    screen?.disconnect();
    ended(() => (refused ? t("err_consent_denied") : reasonMessage(reason)));
  });
  window.addEventListener("pagehide", () => {
    void channel.close("technician_ended").catch(() => undefined);
  });

  setState("waiting_consent");
  const consent = await Promise.race([session.consented, channel.closed.then(() => null)]);
  if (consent === null) return; // ended: the closed handler shows why
  if (!consent.granted) {
    refused = true;
    ended(() => t("err_consent_denied"));
    // The agent ends the session itself (consent_denied is its reason to give).
    await channel.close("technician_ended").catch(() => undefined);
    return;
  }
  setState("connected");
  session.on("status", (s) => {
    if (state === "ended") return;
    setState(s.control_paused ? "paused" : "connected");
  });

  const qualitySelect = byId<HTMLSelectElement>("quality");
  const savedQuality = localStorage.getItem("enkaku.quality") ?? "balanced";
  qualitySelect.value = isQuality(savedQuality) ? savedQuality : "balanced";
  const showScreen = async (): Promise<Screen | null> => {
    let socket: RfbSocket;
    try {
      socket = await rfbSocket(channel);
    } catch {
      screenLost(null);
      return null;
    }
    const view = new Screen(screenEl, socket, qualitySelect.value as Quality, {
      onConnect: () => {
        screenNotice.hidden = true;
        view.rfb.focus();
      },
      // The screen stream ended but the channel may live on (the customer's computer
      // has no screen to share, or stopped sharing it): the tools stay usable.
      onDisconnect: () => {
        if (state !== "ended") screenLost(socket.endReason);
      },
      onClipboard: (text) => {
        byId<HTMLTextAreaElement>("clipboard-text").value = text;
      },
      probeMonitors: () => probeLayout(channel),
    });
    return view;
  };
  screen = await showScreen();
  if (screen !== null) setupScreenControls(screen);
  setupPanels({ session: tracked, screen, channel });
}

/** Why the agent reset the screen stream (agent/services/screen.py), in words. */
const SCREEN_LOST: Record<string, Key> = {
  no_display: "screen_no_display",
  screen_format: "screen_format",
  screen_failed: "screen_failed",
};

/** The screen stream is gone while the session goes on: say so, and why where the agent
 * said, over the screen area (again in the other language when it is switched). */
function screenLost(reason: string | null): void {
  const key = (reason !== null && SCREEN_LOST[reason]) || "screen_unavailable";
  screenNotice.hidden = false;
  screenNotice.dataset.reason = reason ?? "";
  screenNotice.dataset.i18n = key;
  screenNotice.textContent = t(key);
}

function setupScreenControls(screen: Screen): void {
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="scale"]')) {
    radio.addEventListener("change", () => {
      if (radio.checked) screen.setScale(radio.value === "actual" ? "actual" : "fit");
    });
  }
  byId<HTMLInputElement>("view-only").addEventListener("change", (e) =>
    screen.setViewOnly((e.target as HTMLInputElement).checked),
  );
  byId("full-screen").addEventListener("click", () => {
    byId<HTMLDetailsElement>("view-menu").open = false;
    screen.fullScreen();
  });
  const quality = byId<HTMLSelectElement>("quality");
  quality.addEventListener("change", () => {
    if (!isQuality(quality.value)) return;
    localStorage.setItem("enkaku.quality", quality.value);
    screen.setQuality(quality.value);
  });
  setupMonitorPicker(screen);
  const keys = byId("keys-items");
  for (const k of SPECIAL_KEYS) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.key = k.id;
    b.dataset.i18n = k.label;
    b.textContent = t(k.label);
    b.addEventListener("click", () => {
      byId<HTMLDetailsElement>("keys-menu").open = false;
      screen.sendSpecial(k.id);
    });
    keys.append(b);
  }
}

/** The monitor picker (View menu): shown when the customer's desktop has more than one
 * monitor (or one monitor is shown alone), with the monitors it has now; a notice bar
 * under the top bar says when the monitors changed under the technician's choice. */
function setupMonitorPicker(screen: Screen): void {
  const select = byId<HTMLSelectElement>("monitor");
  const item = byId("monitor-item");
  const menu = byId<HTMLDetailsElement>("view-menu");
  let state: MonitorState | null = null;
  const render = (): void => {
    if (state === null) return;
    const offered = choices(state);
    item.hidden = offered === null;
    select.replaceChildren();
    if (offered === null) return;
    select.append(new Option(t("monitor_all"), "0"));
    for (const s of offered) {
      select.append(new Option(t("monitor_n", { n: s.id, w: s.w, h: s.h }), String(s.id)));
    }
    select.value = String(selected(state));
  };
  screen.onMonitors((next) => {
    state = next;
    render();
  });
  onLangChange(render);
  const notice = monitorNotice();
  screen.onMonitorNotice(notice.show);
  menu.addEventListener("toggle", () => {
    if (menu.open) screen.checkMonitors(); // the list may have changed while one is shown
  });
  select.addEventListener("change", () => {
    // The agent's answer (the new screen list, or a refusal) renders the picker again.
    notice.hide();
    screen.showMonitor(Number(select.value));
    menu.open = false;
  });
}

/** The monitor notice: a bar under the top bar, in the page's language, until closed. */
function monitorNotice(): { show(notice: MonitorNotice): void; hide(): void } {
  const box = document.createElement("div");
  box.id = "monitor-notice";
  box.className = "session-warning";
  box.setAttribute("role", "status");
  box.hidden = true;
  const text = document.createElement("p");
  text.id = "monitor-notice-text";
  const close = document.createElement("button");
  close.type = "button";
  close.id = "monitor-notice-close";
  close.dataset.i18n = "close";
  close.textContent = t("close");
  box.append(text, close);
  byId("session-warning").after(box);
  let current: MonitorNotice | null = null;
  const render = (): void => {
    if (current === null) return;
    text.textContent = current.key === "monitor_single" ? t(current.key) : t(current.key, { n: current.n });
  };
  onLangChange(render);
  const hide = (): void => {
    current = null;
    box.hidden = true;
  };
  close.addEventListener("click", hide);
  return {
    show(notice) {
      current = notice;
      render();
      box.hidden = false;
    },
    hide,
  };
}

void main();
