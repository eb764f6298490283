// The `terminal` stream (action `terminal`): the customer's shell on a PTY, framed as in
// src/enkaku/protocol/terminal.py (docs/protocol/terminal.md):
//   type u8 | length u32 (big-endian) | payload
// HELLO (agent, first: whose shell), DATA (both ways), RESIZE (technician: cols u16 |
// rows u16), EXIT (agent, last: status i32, then EOF). The decoder is incremental and
// checks lengths before buffering a payload.
//
// `openTerminal` asks and opens; `TerminalSession` reads frames and writes keystrokes
// and sizes in order; `attachXterm` connects it to an @xterm/xterm Terminal.

import {
  type ServiceSession,
  type ServiceStream,
  SerialWriter,
  concat,
  isSessionEnded,
  obtainGrant,
  openWithGrant,
  quietReset,
  resetReason,
  utf8,
} from "./common";

export const TERMINAL_KIND = "terminal";
export const TERMINAL_ACTION = "terminal";
export const FRAME_HELLO = 1;
export const FRAME_DATA = 2;
export const FRAME_RESIZE = 3;
export const FRAME_EXIT = 4;
const HEADER = 5;
/** Largest DATA payload; longer input is cut into several frames. */
export const MAX_DATA = 64 * 1024;
export const MAX_HELLO = 4096;
export const MAX_DIMENSION = 4096;
export const TERM_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
export const DEFAULT_TERM = "xterm-256color";

/** Whose shell it is (the agent's first frame). */
export interface Hello {
  readonly user: string;
  readonly uid: number;
  readonly root: boolean;
  readonly shell: string;
}

export type Frame =
  | { readonly type: "hello"; readonly hello: Hello }
  | { readonly type: "data"; readonly data: Uint8Array }
  | { readonly type: "exit"; readonly status: number };

/** The agent sent a frame that breaks the format; the stream is reset with `bad_frame`. */
export class TerminalProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TerminalProtocolError";
  }
}

function header(type: number, length: number): Uint8Array {
  const out = new Uint8Array(HEADER);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, length);
  return out;
}

/** One encoded frame. */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  return concat([header(type, payload.length), payload]);
}

/** `data` (bytes or text, as UTF-8) as DATA frames of at most MAX_DATA bytes each. */
export function dataFrames(data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? utf8(data) : data;
  const parts: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += MAX_DATA) {
    parts.push(encodeFrame(FRAME_DATA, bytes.subarray(i, i + MAX_DATA)));
  }
  return concat(parts);
}

export function checkSize(cols: number, rows: number): void {
  for (const [name, value] of [
    ["cols", cols],
    ["rows", rows],
  ] as const) {
    if (!Number.isInteger(value) || value < 1 || value > MAX_DIMENSION) {
      throw new RangeError(`terminal ${name} ${value} is outside 1..${MAX_DIMENSION}`);
    }
  }
}

export function resizeFrame(cols: number, rows: number): Uint8Array {
  checkSize(cols, rows);
  const payload = new Uint8Array(4);
  const view = new DataView(payload.buffer);
  view.setUint16(0, cols);
  view.setUint16(2, rows);
  return encodeFrame(FRAME_RESIZE, payload);
}

function parseHello(payload: Uint8Array): Hello {
  let obj: unknown;
  try {
    obj = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    throw new TerminalProtocolError("terminal HELLO is not UTF-8 JSON");
  }
  const o = obj as Record<string, unknown>;
  if (
    typeof o !== "object" || o === null || Array.isArray(o) ||
    typeof o.user !== "string" || typeof o.uid !== "number" || !Number.isInteger(o.uid) ||
    typeof o.root !== "boolean" || typeof o.shell !== "string"
  ) {
    throw new TerminalProtocolError("terminal HELLO needs user (str), uid (int), root (bool), shell");
  }
  return { user: o.user, uid: o.uid, root: o.root, shell: o.shell };
}

/** Incremental decoder of the agent's frames (the technician's side of Decoder("agent")). */
export class FrameDecoder {
  private buf: Uint8Array = new Uint8Array(0);
  private helloSeen = false;
  private exited = false;

  feed(data: Uint8Array): Frame[] {
    this.buf = this.buf.length ? concat([this.buf, data]) : data.slice();
    const out: Frame[] = [];
    while (this.buf.length >= HEADER) {
      const view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
      const type = view.getUint8(0);
      const length = view.getUint32(1);
      if (type === FRAME_RESIZE) throw new TerminalProtocolError("the agent may not send terminal RESIZE");
      if (type !== FRAME_HELLO && type !== FRAME_DATA && type !== FRAME_EXIT) {
        throw new TerminalProtocolError(`unknown terminal frame type ${type}`);
      }
      const limit = type === FRAME_HELLO ? MAX_HELLO : type === FRAME_DATA ? MAX_DATA : 4;
      if ((type === FRAME_EXIT && length !== 4) || length > limit) {
        throw new TerminalProtocolError(`terminal frame ${type} payload of ${length} bytes`);
      }
      if (this.buf.length < HEADER + length) break;
      const payload = this.buf.slice(HEADER, HEADER + length);
      this.buf = this.buf.subarray(HEADER + length);
      if (this.exited) throw new TerminalProtocolError("terminal frame after EXIT");
      if (!this.helloSeen && type !== FRAME_HELLO) throw new TerminalProtocolError("terminal frame before HELLO");
      if (type === FRAME_HELLO) {
        if (this.helloSeen) throw new TerminalProtocolError("terminal HELLO sent twice");
        this.helloSeen = true;
        out.push({ type: "hello", hello: parseHello(payload) });
      } else if (type === FRAME_DATA) {
        out.push({ type: "data", data: payload });
      } else {
        this.exited = true;
        out.push({ type: "exit", status: new DataView(payload.buffer).getInt32(0) });
      }
    }
    if (this.buf.length === 0) this.buf = new Uint8Array(0);
    return out;
  }
}

/** How a terminal ended: `exit` with the shell's status, or `closed` with the reason
 * (the agent's EOF without EXIT, a reset — `detached` when this side closed it —, the
 * session's end, or `bad_frame`). */
export type TerminalEnd =
  | { readonly how: "exit"; readonly status: number }
  | { readonly how: "closed"; readonly reason: string };

type Listener<T> = (value: T) => void;

/** A terminal stream in use. Register `onData` before output may arrive (right after
 * `openTerminal` resolves; the HELLO is already read). */
export class TerminalSession {
  readonly hello: Hello;
  /** Resolves when the terminal ended (never rejects). */
  readonly ended: Promise<TerminalEnd>;
  private readonly writer: SerialWriter;
  private readonly dataListeners = new Set<Listener<Uint8Array>>();
  private readonly pending: Uint8Array[] = [];
  private done = false;
  private endResolve!: (end: TerminalEnd) => void;
  private closing: string | null = null;

  /** Use `openTerminal`; this is for a stream already open and its HELLO read. */
  constructor(
    private readonly stream: ServiceStream,
    hello: Hello,
    private readonly decoder: FrameDecoder,
    early: Frame[],
  ) {
    this.hello = hello;
    this.writer = new SerialWriter(stream);
    this.ended = new Promise((r) => (this.endResolve = r));
    void this.pump(early);
  }

  /** Output of the shell, as bytes (give them to xterm's `write`). Output that arrived
   * before the first listener is delivered to it. Returns a function that removes it. */
  onData(listener: Listener<Uint8Array>): () => void {
    this.dataListeners.add(listener);
    for (const chunk of this.pending.splice(0)) listener(chunk);
    return () => this.dataListeners.delete(listener);
  }

  /** Keystrokes or pasted text (UTF-8) for the shell, sent in order. */
  write(data: string | Uint8Array): Promise<void> {
    if (this.done) return Promise.resolve();
    return this.writer.write(dataFrames(data)).catch((err: unknown) => this.writeFailed(err));
  }

  /** Tell the shell the window's size (1..4096 each). */
  resize(cols: number, rows: number): Promise<void> {
    const frame = resizeFrame(cols, rows);
    if (this.done) return Promise.resolve();
    return this.writer.write(frame).catch((err: unknown) => this.writeFailed(err));
  }

  /** Hang up: the stream is reset with `detached` (the agent hangs up the shell). */
  async close(reason = "detached"): Promise<void> {
    if (this.done) return;
    this.closing = reason;
    await quietReset(this.stream, reason);
  }

  private writeFailed(err: unknown): void {
    // The reader reports how the stream ended; a failed write only means it did.
    if (resetReason(err) === null && !isSessionEnded(err)) throw err;
  }

  private deliver(frames: Frame[]): boolean {
    for (const frame of frames) {
      if (frame.type === "data") {
        if (this.dataListeners.size === 0) this.pending.push(frame.data);
        for (const l of this.dataListeners) l(frame.data);
      } else if (frame.type === "exit") {
        this.finish({ how: "exit", status: frame.status });
        return true;
      }
    }
    return false;
  }

  private finish(end: TerminalEnd): void {
    if (this.done) return;
    this.done = true;
    this.endResolve(end);
  }

  private async pump(early: Frame[]): Promise<void> {
    try {
      if (this.deliver(early)) {
        await this.writer.flush();
        await this.stream.writeEof().catch(() => {});
        return;
      }
      for (;;) {
        const chunk = await this.stream.read();
        if (chunk === null) {
          this.finish({ how: "closed", reason: "eof" });
          return;
        }
        if (this.deliver(this.decoder.feed(chunk))) {
          await this.writer.flush();
          await this.stream.writeEof().catch(() => {});
          return;
        }
      }
    } catch (err) {
      if (err instanceof TerminalProtocolError) {
        await quietReset(this.stream, "bad_frame");
        this.finish({ how: "closed", reason: "bad_frame" });
        return;
      }
      const reason = resetReason(err);
      if (reason !== null) this.finish({ how: "closed", reason: this.closing ?? reason });
      else if (isSessionEnded(err)) this.finish({ how: "closed", reason: err.reason });
      else this.finish({ how: "closed", reason: String(err) });
    }
  }
}

export interface OpenTerminalOptions {
  cols?: number;
  rows?: number;
  /** TERM for the shell (default xterm-256color). */
  term?: string;
  purpose?: string;
  onAsking?: (action: string) => void;
}

/** The agent ended the stream before its HELLO (a refusal: `bad_params`,
 * `spawn_failed`, `consent_required`, ...). */
export class TerminalOpenError extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(`terminal not opened: ${reason}`);
    this.name = "TerminalOpenError";
    this.reason = reason;
  }
}

/** Ask for `terminal` (unless in force), open the stream and read the HELLO. Throws
 * ConsentRefused, TerminalOpenError, or the channel's SessionEnded. */
export async function openTerminal(session: ServiceSession, opts: OpenTerminalOptions = {}): Promise<TerminalSession> {
  const cols = opts.cols ?? 80;
  const rows = opts.rows ?? 24;
  checkSize(cols, rows);
  const term = opts.term ?? DEFAULT_TERM;
  if (!TERM_NAME.test(term)) throw new RangeError(`not a terminal type name: ${term}`);
  const grant = await obtainGrant(session, TERMINAL_ACTION, {}, opts.purpose, opts.onAsking);
  const stream = await openWithGrant(session, TERMINAL_KIND, { cols, rows, term }, grant);
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  try {
    while (frames.length === 0) {
      const chunk = await stream.read();
      if (chunk === null) throw new TerminalOpenError("eof");
      frames.push(...decoder.feed(chunk));
    }
  } catch (err) {
    if (err instanceof TerminalProtocolError) {
      await quietReset(stream, "bad_frame");
      throw new TerminalOpenError("bad_frame");
    }
    const reason = resetReason(err);
    if (reason !== null) throw new TerminalOpenError(reason);
    throw err;
  }
  const first = frames.shift()!;
  if (first.type !== "hello") throw new TerminalOpenError("bad_frame");
  return new TerminalSession(stream, first.hello, decoder, frames);
}

/** What `attachXterm` needs of @xterm/xterm's Terminal. */
export interface XtermLike {
  readonly cols: number;
  readonly rows: number;
  write(data: string | Uint8Array): void;
  onData(listener: (data: string) => void): { dispose(): void };
  onBinary?(listener: (data: string) => void): { dispose(): void };
  onResize(listener: (size: { cols: number; rows: number }) => void): { dispose(): void };
}

/** Connect an xterm.js Terminal to the shell: its keys go to the shell, the shell's
 * output is written to it, and its size follows (sent at once, then on every resize).
 * Returns a function that disconnects them (the terminal stream stays open). */
export function attachXterm(term: XtermLike, shell: TerminalSession): () => void {
  const disposables = [
    term.onData((data) => void shell.write(data)),
    term.onResize(({ cols, rows }) => void shell.resize(Math.min(cols, MAX_DIMENSION), Math.min(rows, MAX_DIMENSION))),
  ];
  if (term.onBinary) {
    // Binary strings (mouse reports in some modes): one byte per character.
    disposables.push(term.onBinary((data) => void shell.write(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff))));
  }
  const offData = shell.onData((bytes) => term.write(bytes));
  void shell.resize(Math.min(Math.max(term.cols, 1), MAX_DIMENSION), Math.min(Math.max(term.rows, 1), MAX_DIMENSION));
  return () => {
    for (const d of disposables) d.dispose();
    offData();
  };
}
