// Control messages on stream 0, as src/enkaku/protocol/control.py
// (docs/protocol/control.md): JSON objects, each prefixed by its u32 length. A
// well-formed object of an unknown `type` parses to UnknownMessage (answered with
// `error`, the session goes on); anything else invalid is a ProtocolError.
//
// Also TechnicianSession, the technician's handle on an established session, as
// src/enkaku/technician/session.py: ask / granted / open / chat, and events.

import { concat, decodeUtf8, encodeUtf8, readU32be, u32be } from "./bytes";
import { ProtocolError, SessionEnded } from "./errors";

export const MAX_CONTROL_MESSAGE = 64 * 1024;
export const MAX_JSON_DEPTH = 32;
export const MAX_REQUEST_ID = 2 ** 31 - 1;

export const END_REASONS = [
  "technician_ended", "customer_ended", "consent_denied", "wrong_password", "handshake_failed",
  "protocol_error", "agent_disconnected", "technician_disconnected", "timeout", "server_restart",
  "server_shutdown", "device_malfunction", "malware_found", "credentials_refused", "illegal_request",
  "busy", "connection_lost",
] as const;
export type EndReason = (typeof END_REASONS)[number];

/** The end reasons of the terms of use: only through the API, with a comment. */
export const POLICY_REASONS: ReadonlySet<string> = new Set([
  "device_malfunction", "malware_found", "credentials_refused", "illegal_request",
]);

type EndRole = "technician" | "agent" | "server";
/** The roles that may assert each end reason (control.REASON_ROLES). */
export const REASON_ROLES: Readonly<Record<EndReason, readonly EndRole[]>> = {
  technician_ended: ["technician"],
  customer_ended: ["agent"],
  consent_denied: ["agent"],
  wrong_password: ["technician", "agent"],
  handshake_failed: ["technician", "agent"],
  protocol_error: ["technician", "agent", "server"],
  agent_disconnected: ["server"],
  technician_disconnected: ["server"],
  timeout: ["server"],
  server_restart: ["server"],
  server_shutdown: ["server"],
  device_malfunction: ["technician"],
  malware_found: ["technician"],
  credentials_refused: ["technician"],
  illegal_request: ["technician"],
  busy: ["agent"],
  connection_lost: ["technician", "agent"],
};

/** What a role's own ending is called when it claims a reason it may not assert. */
export const OWN_END = { technician: "technician_ended", agent: "customer_ended" } as const;

export function isEndReason(reason: string): reason is EndReason {
  return (END_REASONS as readonly string[]).includes(reason);
}

/** Whether `role` may assert `reason`. */
export function mayAssert(role: EndRole, reason: string): boolean {
  return isEndReason(reason) && REASON_ROLES[reason].includes(role);
}

export const ACTIONS = [
  "screen", "control", "system_info", "browse", "screenshot", "file_to_customer",
  "file_from_customer", "clipboard", "terminal",
] as const;
export type Action = (typeof ACTIONS)[number];
/** Granted for the rest of the session; the other actions are asked each time. */
export const SESSION_ACTIONS: ReadonlySet<string> = new Set(["screen", "control", "system_info", "browse", "clipboard", "terminal"]);

export const REFUSAL_REASONS = ["denied", "timeout", "policy", "unavailable", "invalid", "busy"] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export type DetailValue = string | number | boolean;

export interface Consent { type: "consent"; granted: boolean; scope: Action[] }
export interface Status { type: "status"; control_paused: boolean; granted?: Action[] }
export interface Request {
  type: "request"; id: number; action: Action; purpose?: string; details: Record<string, DetailValue>;
}
export interface Answer { type: "answer"; id: number; action: Action; granted: boolean; reason?: RefusalReason }
export interface Chat { type: "chat"; text: string; at: string }
export interface End { type: "end"; reason: EndReason; detail?: string }
export interface ErrorMessage { type: "error"; code: string; message: string }

export type Message = Consent | Status | Request | Answer | Chat | End | ErrorMessage;

/** A message of a type this side does not know (a newer peer). */
export class UnknownMessage {
  readonly unknown = true;
  constructor(readonly type: string) {}
}

export type AnyMessage = Message | UnknownMessage;

export const KNOWN_TYPES: ReadonlySet<string> = new Set(["consent", "status", "request", "answer", "chat", "end", "error"]);

// -- builders ------------------------------------------------------------------------------

export function consent(granted: boolean, scope: Action[] = []): Consent {
  return { type: "consent", granted, scope };
}
export function status(controlPaused: boolean, granted?: Action[]): Status {
  return granted === undefined ? { type: "status", control_paused: controlPaused } : { type: "status", control_paused: controlPaused, granted };
}
export function request(id: number, action: Action, details: Record<string, DetailValue> = {}, purpose?: string): Request {
  return purpose === undefined ? { type: "request", id, action, details } : { type: "request", id, action, purpose, details };
}
export function answer(id: number, action: Action, granted: boolean, reason?: RefusalReason): Answer {
  return reason === undefined ? { type: "answer", id, action, granted } : { type: "answer", id, action, granted, reason };
}
/** A chat line stamped now, ISO 8601 with the local offset (as Python's isoformat). */
export function chat(text: string, at: string = isoNow()): Chat {
  return { type: "chat", text, at };
}
export function end(reason: EndReason, detail?: string): End {
  return detail === undefined ? { type: "end", reason } : { type: "end", reason, detail };
}
export function error(code: string, message: string): ErrorMessage {
  return { type: "error", code, message };
}

/** Local time as `2026-11-29T23:05:01+09:00` (seconds, with offset). */
export function isoNow(date: Date = new Date()): string {
  const p = (n: number) => String(Math.abs(n)).padStart(2, "0");
  const off = -date.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}${sign}${p(Math.trunc(off / 60))}:${p(off % 60)}`;
}

// -- validation ------------------------------------------------------------------------------

const FIELD_ORDER: Record<string, readonly string[]> = {
  consent: ["type", "granted", "scope"],
  status: ["type", "control_paused", "granted"],
  request: ["type", "id", "action", "purpose", "details"],
  answer: ["type", "id", "action", "granted", "reason"],
  chat: ["type", "text", "at"],
  end: ["type", "reason", "detail"],
  error: ["type", "code", "message"],
};

class Invalid extends Error {}

function chars(s: string): number {
  let n = 0;
  for (const _ of s) n += 1;
  return n;
}
function str(v: unknown, field: string, max: number, min = 0): string {
  if (typeof v !== "string") throw new Invalid(`${field}: not a string`);
  const n = chars(v);
  if (n > max || n < min) throw new Invalid(`${field}: length out of range`);
  return v;
}
function bool(v: unknown, field: string): boolean {
  if (typeof v !== "boolean") throw new Invalid(`${field}: not a boolean`);
  return v;
}
function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new Invalid(`${field}: not an integer in range`);
  return v;
}
function oneOf<T extends string>(v: unknown, field: string, values: readonly T[]): T {
  if (typeof v !== "string" || !(values as readonly string[]).includes(v)) throw new Invalid(`${field}: not an allowed value`);
  return v as T;
}
function actions(v: unknown, field: string): Action[] {
  if (!Array.isArray(v) || v.length > ACTIONS.length) throw new Invalid(`${field}: not a list of actions`);
  return v.map((a, i) => oneOf(a, `${field}.${i}`, ACTIONS));
}
const absent = (v: unknown) => v === undefined || v === null;

/** Validate one decoded JSON value as a known message (throws Invalid). */
function validate(obj: Record<string, unknown>): Message {
  const type = obj.type;
  if (typeof type !== "string" || !KNOWN_TYPES.has(type)) throw new Invalid("type: not a known message type");
  const allowed = FIELD_ORDER[type] as readonly string[];
  for (const key of Object.keys(obj)) if (!allowed.includes(key)) throw new Invalid(`${key}: extra field`);
  switch (type) {
    case "consent":
      return consent(bool(obj.granted, "granted"), absent(obj.scope) && !("scope" in obj) ? [] : actions(obj.scope, "scope"));
    case "status":
      return status(bool(obj.control_paused, "control_paused"), absent(obj.granted) ? undefined : actions(obj.granted, "granted"));
    case "request": {
      const details: Record<string, DetailValue> = {};
      if ("details" in obj) {
        const d = obj.details;
        if (typeof d !== "object" || d === null || Array.isArray(d)) throw new Invalid("details: not an object");
        const entries = Object.entries(d as Record<string, unknown>);
        if (entries.length > 16) throw new Invalid("details: too many entries");
        for (const [k, v] of entries) {
          str(k, "details key", 32);
          if (typeof v === "string") details[k] = str(v, `details.${k}`, 1024);
          else if (typeof v === "number" && Number.isInteger(v)) details[k] = v;
          else if (typeof v === "boolean") details[k] = v;
          else throw new Invalid(`details.${k}: not a string, integer or boolean`);
        }
      }
      return request(
        int(obj.id, "id", 1, MAX_REQUEST_ID),
        oneOf(obj.action, "action", ACTIONS),
        details,
        absent(obj.purpose) ? undefined : str(obj.purpose, "purpose", 500),
      );
    }
    case "answer":
      return answer(
        int(obj.id, "id", 1, MAX_REQUEST_ID),
        oneOf(obj.action, "action", ACTIONS),
        bool(obj.granted, "granted"),
        absent(obj.reason) ? undefined : oneOf(obj.reason, "reason", REFUSAL_REASONS),
      );
    case "chat":
      return chat(str(obj.text, "text", 4000, 1), str(obj.at, "at", 40));
    case "end":
      return end(oneOf(obj.reason, "reason", END_REASONS), absent(obj.detail) ? undefined : str(obj.detail, "detail", 500));
    default:
      return error(str(obj.code, "code", 64), str(obj.message, "message", 500));
  }
}

/** The deepest nesting of arrays and objects in `text` (strings skipped). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  let escaped = false;
  for (const c of text) {
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") deepest = Math.max(deepest, ++depth);
    else if (c === "]" || c === "}") depth -= 1;
  }
  return deepest;
}

/** Length-prefixed JSON bytes of one control message (nulls omitted, field order of the
 * Python models, so the bytes equal what the Python side sends). */
export function encode(msg: Message): Uint8Array {
  const order = FIELD_ORDER[msg.type];
  if (order === undefined) throw new RangeError(`unknown message type ${String(msg.type)}`);
  const ordered: Record<string, unknown> = {};
  const src = msg as unknown as Record<string, unknown>;
  for (const key of order) if (!absent(src[key])) ordered[key] = src[key];
  try {
    validate(ordered);
  } catch (exc) {
    throw new RangeError(`invalid ${msg.type} message: ${(exc as Error).message}`);
  }
  const body = encodeUtf8(JSON.stringify(ordered));
  if (body.length > MAX_CONTROL_MESSAGE) throw new RangeError("control message too large");
  return concat(u32be(body.length), body);
}

/** Validate one message body (without its length prefix). */
export function parse(body: Uint8Array): AnyMessage {
  if (body.length > MAX_CONTROL_MESSAGE) throw new ProtocolError("invalid control message: JSON message too large");
  let obj: unknown;
  try {
    const text = decodeUtf8(body);
    if (jsonDepth(text) > MAX_JSON_DEPTH) throw new Error("too deep");
    obj = JSON.parse(text);
  } catch {
    throw new ProtocolError("invalid control message: not JSON");
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new ProtocolError("invalid control message: not an object");
  const rec = obj as Record<string, unknown>;
  const kind = rec.type;
  if (typeof kind === "string" && !KNOWN_TYPES.has(kind) && chars(kind) > 0 && chars(kind) <= 32) return new UnknownMessage(kind);
  try {
    return validate(rec);
  } catch (exc) {
    if (exc instanceof Invalid) throw new ProtocolError(`invalid control message: ${exc.message}`);
    throw exc;
  }
}

/** Incremental framer for the control stream: feed bytes, get messages. */
export class ControlReader {
  private buf: Uint8Array = new Uint8Array(0);

  feed(data: Uint8Array): AnyMessage[] {
    this.buf = this.buf.length ? concat(this.buf, data) : Uint8Array.from(data);
    const out: AnyMessage[] = [];
    while (this.buf.length >= 4) {
      const n = readU32be(this.buf);
      if (n > MAX_CONTROL_MESSAGE) throw new ProtocolError(`control message of ${n} bytes exceeds the limit`);
      if (this.buf.length < 4 + n) break;
      const body = this.buf.slice(4, 4 + n);
      this.buf = this.buf.slice(4 + n);
      out.push(parse(body));
    }
    return out;
  }
}

// -- the technician's session helper ----------------------------------------------------------

/** What TechnicianSession needs of a channel (channel.ts's Channel has it). */
export interface ControlChannel<S> {
  sendControl(msg: Message): Promise<void>;
  onControl(handler: (msg: AnyMessage) => void): () => void;
  openStream(kind: string, params?: Record<string, unknown>): Promise<S>;
  readonly closed: Promise<{ reason: string; detail?: string }>;
  readonly endReason: string | null;
}

/** The customer (or the agent's policy) did not allow an action. `reason` is the
 * answer's refusal reason, or `no_answer`; the page shows it in words (its catalog). */
export class ConsentRefused extends Error {
  constructor(readonly action: string, readonly reason: string) {
    super(`not allowed (${action}): ${reason}`);
    this.name = "ConsentRefused";
  }
}

/** How long `ask` waits for the answer: the agent's own prompt times out first (60 s by
 * default) and answers "timeout"; this only covers an agent that never answers. */
export const ASK_TIMEOUT_MS = 180_000;

export interface SessionEvents {
  consent: Consent;
  status: Status;
  chat: Chat;
  answer: Answer;
  error: ErrorMessage;
  end: { reason: string; detail?: string };
}

/** The technician's handle on an established session (technician/session.py). */
export class TechnicianSession<S = unknown> {
  readonly channel: ControlChannel<S>;
  /** The agent's `consent`, once it has come (granted or not). */
  readonly consented: Promise<Consent>;
  consent: Consent | null = null;
  status: Status | null = null;
  /** Session actions granted by an answer the agent's next status has not yet listed. */
  private readonly answered = new Set<string>();
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void }>();
  private readonly handlers: { [K in keyof SessionEvents]: Set<(ev: SessionEvents[K]) => void> } = {
    consent: new Set(), status: new Set(), chat: new Set(), answer: new Set(), error: new Set(), end: new Set(),
  };
  private resolveConsent!: (c: Consent) => void;
  private readonly unsubscribe: () => void;

  constructor(channel: ControlChannel<S>) {
    this.channel = channel;
    this.consented = new Promise((resolve) => (this.resolveConsent = resolve));
    this.unsubscribe = channel.onControl((msg) => this.dispatch(msg));
    void channel.closed.then((ended) => {
      for (const p of this.pending.values()) p.reject(new SessionEnded(ended.reason, ended.detail));
      this.pending.clear();
      this.emit("end", ended);
    });
  }

  /** Register a handler; returns the function that removes it. */
  on<K extends keyof SessionEvents>(event: K, handler: (ev: SessionEvents[K]) => void): () => void {
    const set = this.handlers[event] as Set<(ev: SessionEvents[K]) => void>;
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Stop listening to the channel (the channel itself stays as it is). */
  stop(): void {
    this.unsubscribe();
  }

  /** The session actions in force, as the agent last said. */
  get granted(): string[] {
    let base: string[];
    if (this.status !== null && this.status.granted !== undefined) base = [...this.status.granted];
    else base = this.consent !== null && this.consent.granted ? [...this.consent.scope] : [];
    return [...base, ...[...this.answered].filter((a) => !base.includes(a)).sort()];
  }

  /** Ask the customer to allow `action`: the granted answer, or ConsentRefused
   * (SessionEnded if the session ends first). */
  async ask(action: Action, details: Record<string, DetailValue> = {}, purpose?: string, opts: { timeoutMs?: number } = {}): Promise<Answer> {
    const id = this.nextId++;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const answerP = new Promise<Answer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      timer = setTimeout(() => reject(new ConsentRefused(action, "no_answer")), opts.timeoutMs ?? ASK_TIMEOUT_MS);
    });
    answerP.catch(() => undefined);
    try {
      await this.channel.sendControl(request(id, action, details, purpose));
      const result = await answerP;
      if (!result.granted) throw new ConsentRefused(action, result.reason ?? "denied");
      return result;
    } finally {
      clearTimeout(timer);
      this.pending.delete(id);
    }
  }

  /** Open a stream of `kind`; `grant` names the answer that allowed it. */
  open(kind: string, params: Record<string, unknown> = {}, grant?: Answer): Promise<S> {
    const full: Record<string, unknown> = { ...params };
    if (grant !== undefined) full.grant = grant.id;
    return this.channel.openStream(kind, full);
  }

  /** Send one chat line; returns the message as sent. */
  async chat(text: string): Promise<Chat> {
    const msg = chat(text);
    await this.channel.sendControl(msg);
    return msg;
  }

  private emit<K extends keyof SessionEvents>(event: K, value: SessionEvents[K]): void {
    for (const h of this.handlers[event] as Set<(ev: SessionEvents[K]) => void>) {
      try {
        h(value);
      } catch (exc) {
        console.error(exc);
      }
    }
  }

  private dispatch(msg: AnyMessage): void {
    if (msg instanceof UnknownMessage) {
      void this.reply("unknown_message", msg.type);
      return;
    }
    switch (msg.type) {
      case "consent":
        if (this.consent === null) {
          this.consent = msg;
          this.resolveConsent(msg);
          this.emit("consent", msg);
        }
        return;
      case "answer": {
        if (msg.granted && SESSION_ACTIONS.has(msg.action)) this.answered.add(msg.action);
        this.pending.get(msg.id)?.resolve(msg);
        this.emit("answer", msg);
        return;
      }
      case "status":
        this.status = msg;
        this.answered.clear(); // the agent's word on what is in force now
        this.emit("status", msg);
        return;
      case "chat":
        this.emit("chat", msg);
        return;
      case "error":
        this.emit("error", msg); // never answered with an error
        return;
      case "end":
        return; // the channel itself records the peer's end
      default:
        void this.reply("unexpected_message", msg.type);
    }
  }

  private async reply(code: string, type: string): Promise<void> {
    try {
      await this.channel.sendControl(error(code, `${type} is not handled by this side`));
    } catch {
      // the session ended meanwhile
    }
  }
}
