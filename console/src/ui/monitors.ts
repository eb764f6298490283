// The monitor picker's logic: the agent's screen list (RFB ExtendedDesktopSize), what
// the picker offers, and when the page must tell the technician something.
//
// The agent lists one screen per monitor of the customer's desktop (ids from 1, left to
// right) and sends a new list whenever the monitors change. The viewer shows one monitor
// alone by asking for a layout of that one screen (SetDesktopSize: its id, at 0, 0, its
// size) and the whole desktop again by asking for one screen of the desktop's size
// (docs/performance.md, "Monitors").
//
// While one monitor is shown the agent lists only that one (a list must fit the
// framebuffer), so the page cannot learn the other monitors from its own stream: it
// asks with a probe, a short `rfb` stream of its own (`probeLayout`: the RFB handshake,
// ExtendedDesktopSize as the only encoding, one request for one pixel, the first
// screen list, then the stream is reset). It probes when the View menu opens while a
// monitor is shown, when the agent changes the shown monitor's screen by itself (it
// moved, changed size or number, or the desktop shrank to it), and when the agent
// refuses a choice (made from a list that was out of date). A chosen monitor that
// disappears is replaced by the whole desktop by the agent; the page says so.

import type { Channel, Stream } from "../protocol/channel";

/** One screen of an ExtendedDesktopSize layout. */
export interface RemoteScreen {
  id: number;
  x: number;
  y: number;
  w: number;
  h: number;
}

/** An ExtendedDesktopSize update: reason (0 the server, 1 our request), status (0 OK),
 * the framebuffer's size and its screens. */
export interface Layout {
  reason: number;
  status: number;
  width: number;
  height: number;
  screens: RemoteScreen[];
}

/** What the page knows: the whole desktop's size and monitors (as last seen), the
 * monitor shown alone (0: the whole desktop) and the framebuffer's size now. */
export interface MonitorState {
  width: number;
  height: number;
  monitors: RemoteScreen[];
  shown: number;
  view: { w: number; h: number };
}

export const NO_MONITORS: MonitorState = { width: 0, height: 0, monitors: [], shown: 0, view: { w: 0, h: 0 } };

/** What the technician is told. */
export type MonitorNotice =
  | { key: "monitor_gone"; n: number } // the chosen monitor went away: the whole desktop
  | { key: "monitor_single" } // the desktop is now the one monitor shown
  | { key: "monitor_refused"; n: number }; // a choice from a list that was out of date

/** A new state, a notice to show (or none), and whether to probe the desktop's list. */
export interface Step {
  state: MonitorState;
  notice: MonitorNotice | null;
  probe: boolean;
}

/** The screens of an ExtendedDesktopSize body (count u8, 3 padding, 16 bytes a screen). */
export function parseScreens(body: Uint8Array): RemoteScreen[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const count = body[0] ?? 0;
  const screens: RemoteScreen[] = [];
  for (let i = 0; i < count && 4 + 16 * (i + 1) <= body.byteLength; i++) {
    const at = 4 + 16 * i;
    screens.push({
      id: view.getUint32(at),
      x: view.getUint16(at + 4),
      y: view.getUint16(at + 6),
      w: view.getUint16(at + 8),
      h: view.getUint16(at + 10),
    });
  }
  return screens;
}

/** The monitors of a screen list: id 0 is the agent's one screen without monitors. */
function monitorsOf(layout: Layout): RemoteScreen[] {
  return layout.screens.filter((s) => s.id >= 1);
}

/** The layout's only screen when it is the whole framebuffer (at 0, 0, its size). */
function alone(layout: Layout): RemoteScreen | null {
  const [one, ...rest] = layout.screens;
  if (one === undefined || rest.length > 0) return null;
  return one.x === 0 && one.y === 0 && one.w === layout.width && one.h === layout.height ? one : null;
}

/** The page after ``layout`` arrived on the screen stream; ``asked``: the monitor the
 * request it answers asked for (0 the whole desktop; null when it answers none). */
export function onLayout(state: MonitorState, layout: Layout, asked: number | null): Step {
  if (layout.reason === 1 && layout.status !== 0) {
    // Refused: nothing changed on the agent's side; the list we chose from is old.
    const notice: MonitorNotice | null = asked ? { key: "monitor_refused", n: asked } : null;
    return { state, notice, probe: true };
  }
  const view = { w: layout.width, h: layout.height };
  const whole = (): MonitorState => ({ width: layout.width, height: layout.height, monitors: monitorsOf(layout), shown: 0, view });
  const one = alone(layout);
  if (one === null) {
    // The whole desktop: several monitors, or one that does not cover it, or none. The
    // agent goes back to it by itself only when the chosen monitor is gone.
    const gone = state.shown !== 0 && layout.reason !== 1;
    return { state: whole(), notice: gone ? { key: "monitor_gone", n: state.shown } : null, probe: false };
  }
  // One screen that is the whole framebuffer: a monitor shown alone, or a desktop of
  // one monitor.
  if (layout.reason === 1) {
    if (asked !== null && asked !== 0 && asked === one.id) {
      return { state: { ...state, shown: one.id, view }, notice: null, probe: false };
    }
    return { state: whole(), notice: null, probe: false }; // the desktop is this one screen
  }
  if (state.shown === 0) return { state: whole(), notice: null, probe: false };
  // The agent changed the shown monitor's screen itself (it moved, changed size or
  // number) or the desktop became this one screen: ask for the desktop's list. Until
  // it comes, the one monitor known for sure is the one shown.
  return { state: { ...state, monitors: [one], shown: one.id, view }, notice: null, probe: true };
}

/** The page after a probe answered with the whole desktop's ``desktop`` layout. */
export function onProbe(state: MonitorState, desktop: Layout): Step {
  const next: MonitorState = { ...state, width: desktop.width, height: desktop.height, monitors: monitorsOf(desktop) };
  if (state.shown === 0) return { state: next, notice: null, probe: false };
  const { w, h } = state.view;
  const single = (s: MonitorState): boolean => s.monitors.length <= 1 && s.width === w && s.height === h;
  if (single(next) && !single(state)) {
    // One monitor left and it is what is shown: the whole desktop, whichever it was.
    return { state: next, notice: { key: "monitor_single" }, probe: false };
  }
  // Otherwise the shown monitor is in the list (same number and size), or the desktop
  // is changing still and its next layout follows.
  return { state: next, notice: null, probe: false };
}

/** The picker's choices (besides the whole desktop), or null: no picker (the desktop
 * is one screen, and it is what is shown). */
export function choices(state: MonitorState): RemoteScreen[] | null {
  if (state.monitors.length > 1) return state.monitors;
  const partial = state.view.w !== state.width || state.view.h !== state.height;
  return state.shown !== 0 && partial ? state.monitors : null;
}

/** The picker's value: the monitor shown (0: the whole desktop, or the desktop's only
 * screen). */
export function selected(state: MonitorState): number {
  return choices(state)?.some((s) => s.id === state.shown) ? state.shown : 0;
}

/** The SetDesktopSize that shows monitor ``id`` (0: the whole desktop): [w, h, id]. */
export function requestFor(state: MonitorState, id: number): [number, number, number] | null {
  if (id === 0) return state.width > 0 ? [state.width, state.height, 0] : null;
  const s = state.monitors.find((m) => m.id === id);
  return s ? [s.w, s.h, s.id] : null;
}

/** What the probe reads and writes. */
export type ByteStream = Pick<Stream, "read" | "write">;

/** Exact reads from a stream's chunks. */
class Reader {
  private buf = new Uint8Array(0);

  constructor(private readonly stream: ByteStream) {}

  async take(n: number): Promise<Uint8Array> {
    while (this.buf.length < n) {
      const chunk = await this.stream.read();
      if (chunk === null) throw new Error("the screen stream ended");
      const joined = new Uint8Array(this.buf.length + chunk.length);
      joined.set(this.buf);
      joined.set(chunk, this.buf.length);
      this.buf = joined;
    }
    const out = this.buf.slice(0, n);
    this.buf = this.buf.slice(n);
    return out;
  }

  async u8(): Promise<number> {
    return (await this.take(1))[0] as number;
  }

  async u16(): Promise<number> {
    const b = await this.take(2);
    return new DataView(b.buffer).getUint16(0);
  }

  async u32(): Promise<number> {
    const b = await this.take(4);
    return new DataView(b.buffer).getUint32(0);
  }
}

const EXTENDED_DESKTOP_SIZE = -308;

/** Speak RFB 3.8 as a client on ``stream`` up to the first ExtendedDesktopSize. */
export async function readLayout(stream: ByteStream): Promise<Layout> {
  const r = new Reader(stream);
  const version = new TextDecoder().decode(await r.take(12));
  if (!/^RFB 003\.\d{3}\n$/.test(version)) throw new Error("not an RFB server");
  await stream.write(new TextEncoder().encode("RFB 003.008\n"));
  const count = await r.u8();
  if (count === 0 || !(await r.take(count)).includes(1)) throw new Error("no security type None");
  await stream.write(Uint8Array.of(1));
  if ((await r.u32()) !== 0) throw new Error("the connection was refused");
  await stream.write(Uint8Array.of(1)); // ClientInit: shared
  await r.take(4); // the framebuffer's size: the layout has it too
  const bytesPerPixel = Math.max(1, ((await r.take(16))[0] as number) >> 3);
  await r.take(await r.u32()); // the desktop's name
  const setEncodings = new Uint8Array(8);
  new DataView(setEncodings.buffer).setUint8(0, 2);
  new DataView(setEncodings.buffer).setUint16(2, 1);
  new DataView(setEncodings.buffer).setInt32(4, EXTENDED_DESKTOP_SIZE);
  await stream.write(setEncodings);
  await stream.write(Uint8Array.of(3, 0, 0, 0, 0, 0, 0, 1, 0, 1)); // one pixel, in full
  for (;;) {
    const kind = await r.u8();
    if (kind === 0) {
      await r.take(1);
      const rects = await r.u16();
      for (let i = 0; i < rects; i++) {
        const head = new DataView((await r.take(12)).buffer);
        const [reason, status, width, height] = [0, 2, 4, 6].map((at) => head.getUint16(at)) as [number, number, number, number];
        const encoding = head.getInt32(8);
        if (encoding === EXTENDED_DESKTOP_SIZE) {
          const n = await r.u8();
          const body = new Uint8Array(4 + 16 * n);
          body[0] = n;
          body.set(await r.take(3 + 16 * n), 1);
          return { reason, status, width, height, screens: parseScreens(body) };
        }
        if (encoding !== 0) throw new Error(`unexpected encoding ${encoding}`);
        await r.take(width * height * bytesPerPixel);
      }
    } else if (kind === 1) {
      await r.take(3);
      await r.take(6 * (await r.u16()));
    } else if (kind === 3) {
      await r.take(3);
      await r.take(await r.u32());
    } else if (kind !== 2) {
      throw new Error(`unexpected message ${kind}`);
    }
  }
}

/** The whole desktop's layout through a probe stream on ``channel``; null when the agent
 * serves no screen or does not answer within ``timeoutMs``. */
export async function probeLayout(channel: Pick<Channel, "openStream">, timeoutMs = 15000): Promise<Layout | null> {
  let stream: Stream | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    stream = await channel.openStream("rfb", {});
    const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
    return await Promise.race([readLayout(stream), timeout]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    void stream?.reset("viewer_closed").catch(() => undefined);
  }
}
