// The remote screen: noVNC's RFB on the channel's rfb stream, and the page controls
// that act on it (scale, full screen, view only, keys a browser keeps for itself,
// quality, clipboard).
//
// "Lossless" quality: noVNC always offers a JPEG quality level in its SetEncodings, and
// the agent sends JPEG for photo-like areas whenever one is offered
// (docs/protocol/rfb.md). Lossless mode therefore drops the quality-level pseudo
// encodings (-32..-23) from the list noVNC sends, so every rectangle is exact; switching
// the mode makes noVNC send its list again.
//
// Monitors: noVNC reads the agent's ExtendedDesktopSize screen list but keeps only the
// first screen; the wrapper below reads the list from noVNC's receive queue before noVNC
// consumes it and hands it to the page ("screenlayout" event), and `showMonitor` sends
// the SetDesktopSize that picks one monitor or the whole desktop. While one monitor is
// shown the agent lists only that one; the page's `probeMonitors` reads the whole
// desktop's list on a short stream of its own when it may have changed (ui/monitors.ts).

import RFB from "@novnc/novnc";
import { withoutJpeg } from "./encodings";
import {
  type Layout,
  type MonitorNotice,
  type MonitorState,
  NO_MONITORS,
  type Step,
  onLayout,
  onProbe,
  parseScreens,
  requestFor,
} from "./monitors";

/** What the page uses of noVNC's RFB (core/rfb.js, docs/API.md). */
export interface RfbView extends EventTarget {
  viewOnly: boolean;
  scaleViewport: boolean;
  clipViewport: boolean;
  resizeSession: boolean;
  focusOnClick: boolean;
  qualityLevel: number;
  compressionLevel: number;
  background: string;
  sendKey(keysym: number, code: string | null, down?: boolean): void;
  sendCtrlAltDel(): void;
  clipboardPasteFrom(text: string): void;
  focus(options?: FocusOptions): void;
  disconnect(): void;
}

type RfbConstructor = new (target: HTMLElement, channel: unknown, options?: object) => RfbView;
type EncodingsFn = (sock: unknown, encodings: number[]) => void;

const RfbClass = RFB as unknown as RfbConstructor & { messages: { clientEncodings: EncodingsFn } };

let lossless = false;
const originalEncodings = RfbClass.messages.clientEncodings;
RfbClass.messages.clientEncodings = (sock, encodings) =>
  originalEncodings(sock, lossless ? withoutJpeg(encodings) : encodings);

/** The parts of noVNC's RFB internals the screen list and monitor choice use. */
interface RfbInternals extends EventTarget {
  _sock: {
    rQwait(msg: string, num: number): boolean;
    rQpeek8(): number;
    rQpeekBytes(len: number): Uint8Array;
  };
  _FBU: { x: number; y: number; width: number; height: number };
}
type SetDesktopSizeFn = (sock: unknown, w: number, h: number, id: number, flags: number) => void;
const rfbProto = RfbClass.prototype as unknown as { _handleExtendedDesktopSize(this: RfbInternals): boolean };
const originalExtendedDesktopSize = rfbProto._handleExtendedDesktopSize;
rfbProto._handleExtendedDesktopSize = function (this: RfbInternals): boolean {
  const sock = this._sock;
  let body: Uint8Array | null = null;
  if (!sock.rQwait("ExtendedDesktopSize", 4)) {
    const size = 4 + 16 * sock.rQpeek8();
    if (!sock.rQwait("ExtendedDesktopSize", size)) body = sock.rQpeekBytes(size);
  }
  const { x: reason, y: status, width, height } = this._FBU;
  const done = originalExtendedDesktopSize.call(this);
  if (done && body !== null) {
    const detail: Layout = { reason, status, width, height, screens: parseScreens(body) };
    this.dispatchEvent(new CustomEvent("screenlayout", { detail }));
  }
  return done;
};

export type Quality = "lossless" | "high" | "balanced" | "fast";

/** noVNC quality (JPEG level 0-9) and zlib compression level (0-9) of each setting. */
const QUALITY: Record<Quality, { quality: number; compression: number }> = {
  lossless: { quality: 9, compression: 2 },
  high: { quality: 8, compression: 2 },
  balanced: { quality: 6, compression: 2 },
  fast: { quality: 2, compression: 9 },
};

export function isQuality(v: string): v is Quality {
  return v in QUALITY;
}

/** Keys and combinations a browser or the local system keeps for itself. */
export const SPECIAL_KEYS: { id: string; label: "key_cad" | "key_win" | "key_alt_tab" | "key_alt_f4" | "key_ctrl_esc" | "key_print" | "key_zenkaku"; keys: [number, string][] }[] = [
  { id: "cad", label: "key_cad", keys: [] }, // noVNC's own sendCtrlAltDel
  { id: "win", label: "key_win", keys: [[0xffeb, "MetaLeft"]] },
  { id: "alt-tab", label: "key_alt_tab", keys: [[0xffe9, "AltLeft"], [0xff09, "Tab"]] },
  { id: "alt-f4", label: "key_alt_f4", keys: [[0xffe9, "AltLeft"], [0xffc1, "F4"]] },
  { id: "ctrl-esc", label: "key_ctrl_esc", keys: [[0xffe3, "ControlLeft"], [0xff1b, "Escape"]] },
  { id: "print", label: "key_print", keys: [[0xff61, "PrintScreen"]] },
  { id: "zenkaku", label: "key_zenkaku", keys: [[0xff2a, "Backquote"]] },
];

export interface ScreenEvents {
  onConnect(): void;
  onDisconnect(clean: boolean): void;
  onClipboard(text: string): void;
  /** The whole desktop's screen list, read on a stream of its own (null: none came). */
  probeMonitors?(): Promise<Layout | null>;
}

export class Screen {
  readonly rfb: RfbView;
  private readonly target: HTMLElement;
  private readonly events: ScreenEvents;
  private monitorState: MonitorState = NO_MONITORS;
  private readonly monitorListeners: ((state: MonitorState) => void)[] = [];
  private readonly noticeListeners: ((notice: MonitorNotice) => void)[] = [];
  private readonly asked: number[] = []; // the monitors asked for, not answered yet
  private probing = false;
  private probeAgain = false;
  private retryWhole = false; // the whole desktop was refused: ask again once probed

  constructor(target: HTMLElement, channel: unknown, quality: Quality, events: ScreenEvents) {
    this.target = target;
    this.events = events;
    lossless = quality === "lossless";
    this.rfb = new RfbClass(target, channel, { shared: true });
    this.rfb.scaleViewport = true;
    this.rfb.clipViewport = false;
    this.rfb.resizeSession = false; // never change the customer's screen size
    this.rfb.focusOnClick = true;
    this.rfb.background = "#2b3340";
    this.rfb.qualityLevel = QUALITY[quality].quality;
    this.rfb.compressionLevel = QUALITY[quality].compression;
    this.rfb.addEventListener("connect", () => events.onConnect());
    this.rfb.addEventListener("disconnect", (e) =>
      events.onDisconnect(Boolean((e as CustomEvent<{ clean: boolean }>).detail?.clean)),
    );
    this.rfb.addEventListener("screenlayout", (e) => {
      const layout = (e as CustomEvent<Layout>).detail;
      const asked = layout.reason === 1 ? (this.asked.shift() ?? null) : null;
      if (layout.reason === 1 && layout.status !== 0 && asked === 0) this.retryWhole = true;
      this.step(onLayout(this.monitorState, layout, asked));
    });
    this.rfb.addEventListener("clipboard", (e) =>
      events.onClipboard(String((e as CustomEvent<{ text: string }>).detail?.text ?? "")),
    );
  }

  setScale(mode: "fit" | "actual"): void {
    this.rfb.scaleViewport = mode === "fit";
    this.target.classList.toggle("actual", mode === "actual");
  }

  setViewOnly(on: boolean): void {
    this.rfb.viewOnly = on;
  }

  setQuality(quality: Quality): void {
    const before = lossless;
    lossless = quality === "lossless";
    const q = QUALITY[quality];
    this.rfb.compressionLevel = q.compression;
    if (this.rfb.qualityLevel !== q.quality) {
      this.rfb.qualityLevel = q.quality; // noVNC sends its encodings again
    } else if (before !== lossless) {
      // Same level, other list: make noVNC send it again by stepping the level.
      this.rfb.qualityLevel = q.quality === 9 ? 8 : q.quality + 1;
      this.rfb.qualityLevel = q.quality;
    }
  }

  /** Call ``listener`` with the monitors to offer now and whenever they change. */
  onMonitors(listener: (state: MonitorState) => void): void {
    this.monitorListeners.push(listener);
    listener(this.monitorState);
  }

  /** Call ``listener`` with what the technician should be told about the monitors. */
  onMonitorNotice(listener: (notice: MonitorNotice) => void): void {
    this.noticeListeners.push(listener);
  }

  /** While one monitor is shown, ask for the desktop's current monitors (the picker is
   * about to be used). */
  checkMonitors(): void {
    if (this.monitorState.shown !== 0) this.probe();
  }

  private step(step: Step): void {
    this.monitorState = step.state;
    for (const listener of this.monitorListeners) listener(this.monitorState);
    if (step.notice !== null) for (const listener of this.noticeListeners) listener(step.notice);
    if (step.probe) this.probe();
  }

  /** Read the whole desktop's list on a probe stream; one probe at a time (one more if
   * asked for meanwhile). */
  private probe(): void {
    const probeMonitors = this.events.probeMonitors?.bind(this.events);
    if (probeMonitors === undefined) return;
    if (this.probing) {
      this.probeAgain = true;
      return;
    }
    this.probing = true;
    void (async () => {
      try {
        do {
          this.probeAgain = false;
          const desktop = await probeMonitors();
          if (desktop !== null) this.step(onProbe(this.monitorState, desktop));
        } while (this.probeAgain);
      } finally {
        this.probing = false;
      }
      if (this.retryWhole) {
        this.retryWhole = false;
        this.showMonitor(0);
      }
    })();
  }

  /** Show only monitor ``id`` of the customer's desktop (0: all of it). */
  showMonitor(id: number): void {
    const request = requestFor(this.monitorState, id);
    if (request === null) return;
    this.asked.push(id);
    const internals = this.rfb as unknown as RfbInternals;
    const setDesktopSize = (RfbClass as unknown as { messages: { setDesktopSize: SetDesktopSizeFn } })
      .messages.setDesktopSize;
    setDesktopSize(internals._sock, ...request, 0);
  }

  sendSpecial(id: string): void {
    const entry = SPECIAL_KEYS.find((k) => k.id === id);
    if (!entry) return;
    if (entry.id === "cad") {
      this.rfb.sendCtrlAltDel();
    } else {
      for (const [sym, code] of entry.keys) this.rfb.sendKey(sym, code, true);
      for (const [sym, code] of [...entry.keys].reverse()) this.rfb.sendKey(sym, code, false);
    }
    this.rfb.focus();
  }

  paste(text: string): void {
    this.rfb.clipboardPasteFrom(text);
  }

  fullScreen(): void {
    void this.target.requestFullscreen?.().catch(() => undefined);
  }

  disconnect(): void {
    this.rfb.disconnect();
  }
}
