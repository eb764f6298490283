// What every service client shares: the stream and session shapes they use, consent
// (ask, or use a session grant in force), the typed errors the UI turns into words,
// a serial writer, progress with speed and time left, and line/JSON helpers.
//
// Mirrors src/enkaku/technician/session.py (ask/open, ConsentRefused) for the parts the
// services need; docs/protocol/services.md is the contract.

import type { Stream } from "../protocol/channel";
import { type Action, type Answer, ConsentRefused, type DetailValue, SESSION_ACTIONS } from "../protocol/control";
import { SessionEnded, StreamReset } from "../protocol/errors";

export { ConsentRefused, SESSION_ACTIONS, SessionEnded, StreamReset };
export type { Action, Answer, DetailValue };

/** One stream of the channel (protocol/channel.ts). read() resolves null at the peer's
 * EOF and throws StreamReset(reason) after a reset. */
export type ServiceStream = Stream;

export type Details = Record<string, DetailValue>;

/** What the service clients need of the technician's session: ask the customer (a
 * refusal throws ConsentRefused), the session actions in force (a list, or a function
 * returning it), open a stream. protocol/control.ts's `TechnicianSession<Stream>` is
 * one, and so is the page's consent tracker (ui/consent.ts). */
export interface ServiceSession {
  ask(action: Action, details?: Details, purpose?: string): Promise<Answer>;
  readonly granted: readonly string[] | (() => readonly string[]);
  open(kind: string, params?: Record<string, unknown>): Promise<ServiceStream>;
  /** The agent's last status (TechnicianSession has it): typing is refused at once
   * while the customer has paused control. */
  readonly status?: { readonly control_paused: boolean } | null;
}

/** The session actions in force. */
export function grantedActions(session: ServiceSession): readonly string[] {
  return typeof session.granted === "function" ? session.granted() : session.granted;
}

/** The reason of a StreamReset, else null. */
export function resetReason(err: unknown): string | null {
  return err instanceof StreamReset ? err.reason : null;
}

/** Whether `err` is the channel's SessionEnded (the session is over). */
export function isSessionEnded(err: unknown): err is SessionEnded {
  return err instanceof SessionEnded;
}

/** Ask for `action` unless it is a session action already in force; the answer whose
 * id the stream must name, or null (the session grant covers it). Throws ConsentRefused. */
export async function obtainGrant(
  session: ServiceSession,
  action: Action,
  details?: Details,
  purpose?: string,
  onAsking?: (action: string) => void,
): Promise<Answer | null> {
  if (SESSION_ACTIONS.has(action) && grantedActions(session).includes(action)) return null;
  onAsking?.(action);
  const answer = await session.ask(action, details ?? {}, purpose); // throws ConsentRefused
  if (!answer.granted) throw new ConsentRefused(action, answer.reason ?? "denied");
  return answer;
}

/** Open a stream of `kind` naming `grant` (when one was asked for). */
export function openWithGrant(
  session: ServiceSession,
  kind: string,
  params: Record<string, unknown>,
  grant: Answer | null,
): Promise<ServiceStream> {
  const full: Record<string, unknown> = { ...params };
  if (grant !== null) full.grant = grant.id;
  return session.open(kind, full);
}

/** Reset a stream, ignoring a stream or session already gone. */
export async function quietReset(stream: ServiceStream, reason: string): Promise<void> {
  try {
    await stream.reset(reason);
  } catch {
    // already reset or ended: nothing more to tell the agent
  }
}

/** Reset the stream when `signal` aborts (the UI's cancel button); the returned
 * function removes the listener. */
export function resetOnAbort(
  stream: ServiceStream,
  signal: AbortSignal | undefined,
  reason = "cancelled",
): () => void {
  if (signal === undefined) return () => {};
  const onAbort = () => void quietReset(stream, reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** Writes in the order they were asked for, one at a time (terminal keystrokes, resizes). */
export class SerialWriter {
  private tail: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  constructor(private readonly stream: ServiceStream) {}

  /** Queue `data`; resolves when it was sent, rejects with the first write's error. */
  write(data: Uint8Array): Promise<void> {
    const copy = data.slice();
    const next = this.tail.then(() => {
      if (this.failure !== null) throw this.failure;
      return this.stream.write(copy).catch((err: unknown) => {
        this.failure = err;
        throw err;
      });
    });
    this.tail = next.catch(() => {});
    return next;
  }

  /** Resolves once everything queued so far was handled. */
  flush(): Promise<void> {
    return this.tail;
  }
}

// -- bytes, lines ---------------------------------------------------------------------

const encoder = new TextEncoder();

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

export function concat(chunks: readonly Uint8Array[], total?: number): Uint8Array {
  const size = total ?? chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

export function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** A JSON object decoded from strict UTF-8, else null (not UTF-8, not JSON, not an
 * object). */
export function parseObject(bytes: Uint8Array): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return null;
  }
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

// -- progress -------------------------------------------------------------------------

/** One progress event of a transfer. `bytesPerSecond` and `secondsLeft` are null until
 * the meter has seen bytes move over some time. */
export interface Progress {
  readonly done: number;
  readonly total: number;
  readonly bytesPerSecond: number | null;
  readonly secondsLeft: number | null;
}

export type ProgressHandler = (progress: Progress) => void;

/** Speed and time left from (time, bytes) samples over the last `windowMs`
 * (milliseconds; `now` is injectable for tests). A resumed transfer's first sample is
 * its starting offset, so the speed counts only what moved. */
export class ProgressMeter {
  private samples: Array<[number, number]> = [];
  constructor(
    private readonly windowMs = 5000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  update(done: number, total: number): Progress {
    const t = this.now();
    this.samples.push([t, done]);
    while (this.samples.length > 2 && t - this.samples[0]![0] > this.windowMs) this.samples.shift();
    const [t0, d0] = this.samples[0]!;
    const elapsed = (t - t0) / 1000;
    if (elapsed <= 0 || done <= d0) {
      return { done, total, bytesPerSecond: null, secondsLeft: done >= total ? 0 : null };
    }
    const speed = (done - d0) / elapsed;
    return { done, total, bytesPerSecond: speed, secondsLeft: Math.max(0, total - done) / speed };
  }
}
