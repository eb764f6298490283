// The end-to-end handshake: CPace with key confirmation, sans-IO, as
// src/enkaku/protocol/handshake.py (docs/protocol/handshake.md). The technician is
// CPace party B; the agent (party A) is here too, for tests that pair two JS ends.

import * as cpace from "./cpace";
import { concat, encodeAscii, encodeUtf8, equalBytes, randomBytes, type RandBytes } from "./bytes";
import { AuthenticationFailed, HandshakeError, ProtocolError } from "./errors";
import { normalizePassword } from "./password";
import { RecordChannel } from "./records";

export const VERSION = 1;
export const SUITE_CPACE_RISTR255_SHA512 = 1;
export const NONCE_BYTES = 16;
export const PROTOCOL_LABEL = encodeAscii("enkaku/1");
export const AD_AGENT = encodeAscii("enkaku agent");
export const AD_TECHNICIAN = encodeAscii("enkaku technician");
export const MAX_AGENT_ID = 255;

export const MessageType = {
  HELLO: 0x01,
  AGENT_SHARE: 0x02,
  TECH_SHARE: 0x03,
  AGENT_CONFIRM: 0x04,
  FAILURE: 0x05,
  RECORD: 0x10,
} as const;
const TYPE_NAMES: Record<number, string> = {
  1: "HELLO", 2: "AGENT_SHARE", 3: "TECH_SHARE", 4: "AGENT_CONFIRM", 5: "FAILURE", 16: "RECORD",
};

export const FailureReason = {
  WRONG_PASSWORD: 1,
  /** Too many failed attempts: the agent drew a new password. */
  PASSWORD_REPLACED: 2,
  BUSY: 3,
  UNSUPPORTED_VERSION: 4,
  PROTOCOL_ERROR: 5,
} as const;
export type FailureReason = (typeof FailureReason)[keyof typeof FailureReason];
/** FAILURE reason codes by name, lowercase (the names HandshakeFailed carries). */
export const FAILURE_NAMES: Record<number, string> = {
  1: "wrong_password", 2: "password_replaced", 3: "busy", 4: "unsupported_version", 5: "protocol_error",
};

/** The peer speaks a protocol version or suite we do not. */
export class UnsupportedVersion extends HandshakeError {
  constructor(message: string) {
    super(message);
    this.name = "UnsupportedVersion";
  }
}

/** The peer sent FAILURE: the handshake is over; do not answer with another FAILURE. */
export class PeerFailed extends HandshakeError {
  readonly reason: FailureReason;
  constructor(reason: FailureReason) {
    super(`peer aborted the handshake: ${FAILURE_NAMES[reason]}`);
    this.name = "PeerFailed";
    this.reason = reason;
  }
}

/** The peer sent FAILURE because the password did not match (or was replaced). */
export class PeerRejectedPassword extends PeerFailed {
  override code = "wrong_password";
  constructor(reason: FailureReason) {
    super(reason);
    this.name = "PeerRejectedPassword";
  }
}

// -- messages ----------------------------------------------------------------------------

function checkType(data: Uint8Array, type: number): void {
  if (data.length === 0) throw new ProtocolError("empty handshake message");
  if (data[0] !== type) {
    throw new ProtocolError(`expected ${TYPE_NAMES[type]}, got message type 0x${(data[0] as number).toString(16).padStart(2, "0")}`);
  }
}

function checkLength(data: Uint8Array, expected: number, name: string): void {
  if (data.length < expected) throw new ProtocolError(`${name} message is truncated`);
  if (data.length > expected) throw new ProtocolError(`${name} message has trailing bytes`);
}

function splitAd(data: Uint8Array, offset: number, name: string): [Uint8Array, number] {
  if (data.length <= offset) throw new ProtocolError(`${name} message is truncated`);
  const end = offset + 1 + (data[offset] as number);
  if (data.length < end) throw new ProtocolError(`${name} message is truncated`);
  return [data.slice(offset + 1, end), end];
}

export interface Hello { version: number; suite: number; nonceT: Uint8Array }
export interface AgentShare { nonceA: Uint8Array; ya: Uint8Array; ada: Uint8Array }
export interface TechnicianShare { yb: Uint8Array; adb: Uint8Array; tb: Uint8Array }

export const HELLO_SIZE = 3 + NONCE_BYTES;
export const AGENT_CONFIRM_SIZE = 1 + cpace.TAG_BYTES;

export function parseHello(data: Uint8Array): Hello {
  checkType(data, MessageType.HELLO);
  if (data.length >= 3 && (data[1] !== VERSION || data[2] !== SUITE_CPACE_RISTR255_SHA512)) {
    throw new UnsupportedVersion(`unsupported version ${data[1]} / suite ${data[2]}`);
  }
  checkLength(data, HELLO_SIZE, "HELLO");
  return { version: data[1] as number, suite: data[2] as number, nonceT: data.slice(3) };
}

export function encodeHello(m: Hello): Uint8Array {
  return concat(Uint8Array.of(MessageType.HELLO, m.version, m.suite), m.nonceT);
}

export function parseAgentShare(data: Uint8Array): AgentShare {
  checkType(data, MessageType.AGENT_SHARE);
  const head = 1 + NONCE_BYTES + cpace.POINT_BYTES;
  const [ada, end] = splitAd(data, head, "AGENT_SHARE");
  checkLength(data, end, "AGENT_SHARE");
  return { nonceA: data.slice(1, 1 + NONCE_BYTES), ya: data.slice(1 + NONCE_BYTES, head), ada };
}

export function encodeAgentShare(m: AgentShare): Uint8Array {
  return concat(Uint8Array.of(MessageType.AGENT_SHARE), m.nonceA, m.ya, Uint8Array.of(m.ada.length), m.ada);
}

export function parseTechnicianShare(data: Uint8Array): TechnicianShare {
  checkType(data, MessageType.TECH_SHARE);
  const head = 1 + cpace.POINT_BYTES;
  const [adb, end] = splitAd(data, head, "TECH_SHARE");
  checkLength(data, end + cpace.TAG_BYTES, "TECH_SHARE");
  return { yb: data.slice(1, head), adb, tb: data.slice(end) };
}

export function encodeTechnicianShare(m: TechnicianShare): Uint8Array {
  return concat(Uint8Array.of(MessageType.TECH_SHARE), m.yb, Uint8Array.of(m.adb.length), m.adb, m.tb);
}

export function parseAgentConfirm(data: Uint8Array): Uint8Array {
  checkType(data, MessageType.AGENT_CONFIRM);
  checkLength(data, AGENT_CONFIRM_SIZE, "AGENT_CONFIRM");
  return data.slice(1);
}

export function encodeAgentConfirm(ta: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(MessageType.AGENT_CONFIRM), ta);
}

export function parseFailure(data: Uint8Array): FailureReason {
  checkType(data, MessageType.FAILURE);
  checkLength(data, 2, "FAILURE");
  const reason = data[1] as number;
  if (!(reason in FAILURE_NAMES)) throw new ProtocolError(`unknown failure reason ${reason}`);
  return reason as FailureReason;
}

/** The FAILURE message for `reason`. */
export function failureMessage(reason: FailureReason): Uint8Array {
  return Uint8Array.of(MessageType.FAILURE, reason);
}

/** The FAILURE reason to send after `exc`, or null if the peer already sent one. */
export function failureReasonFor(exc: ProtocolError): FailureReason | null {
  if (exc instanceof PeerFailed) return null;
  if (exc instanceof AuthenticationFailed) return FailureReason.WRONG_PASSWORD;
  if (exc instanceof UnsupportedVersion) return FailureReason.UNSUPPORTED_VERSION;
  return FailureReason.PROTOCOL_ERROR;
}

function raisePeerFailure(data: Uint8Array): never {
  const reason = parseFailure(data);
  if (reason === FailureReason.WRONG_PASSWORD || reason === FailureReason.PASSWORD_REPLACED) {
    throw new PeerRejectedPassword(reason);
  }
  throw new PeerFailed(reason);
}

/** CI = lv_cat("enkaku/1", "CPACE-RISTR255-SHA512", agent_id as UTF-8). */
export function channelIdentifier(agentId: string): Uint8Array {
  const raw = encodeUtf8(agentId);
  if (!(raw.length > 0 && raw.length <= MAX_AGENT_ID)) throw new RangeError("agent_id must be 1..255 bytes of UTF-8");
  return cpace.lvCat(PROTOCOL_LABEL, cpace.SUITE, raw);
}

// -- state machines ----------------------------------------------------------------------

export type HandshakeState =
  | "not_started"
  | "waiting_for_hello"
  | "waiting_for_agent_share"
  | "waiting_for_technician_share"
  | "waiting_for_agent_confirm"
  | "established"
  | "failed";

abstract class BaseHandshake {
  abstract readonly role: "agent" | "technician";
  protected prs: Uint8Array;
  protected readonly ci: Uint8Array;
  protected readonly randbytes: RandBytes;
  protected _state: HandshakeState = "not_started";
  protected _channel: RecordChannel | null = null;
  protected scalar: Uint8Array | null = null;
  protected _sid: Uint8Array = new Uint8Array(0);
  /** Records per key before a key update; production uses the default. */
  protected readonly rekeyAfter: number | undefined;

  constructor(password: string, agentId: string, randbytes: RandBytes, rekeyAfter?: number) {
    this.prs = normalizePassword(password);
    this.ci = channelIdentifier(agentId);
    this.randbytes = randbytes;
    this.rekeyAfter = rekeyAfter;
  }

  get state(): HandshakeState {
    return this._state;
  }

  /** The record channel; only once the handshake is established. */
  get channel(): RecordChannel {
    if (this._channel === null) throw new Error(`no channel: the handshake is ${this._state}`);
    return this._channel;
  }

  /** nonce_t | nonce_a (empty until both nonces are known). */
  get sid(): Uint8Array {
    return this._sid;
  }

  protected fail(): void {
    this.prs = new Uint8Array(0);
    this.scalar = null;
    this._state = "failed";
  }

  protected nonce(): Uint8Array {
    const nonce = Uint8Array.from(this.randbytes(NONCE_BYTES));
    if (nonce.length !== NONCE_BYTES) throw new RangeError("randbytes returned the wrong number of bytes");
    return nonce;
  }

  protected share(): Uint8Array {
    const g = cpace.calculateGenerator(this.prs, this.ci, this._sid);
    this.scalar = cpace.sampleScalar(this.randbytes);
    return cpace.scalarMult(this.scalar, g);
  }

  protected isk(peerShare: Uint8Array, ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Uint8Array {
    if (this.scalar === null) throw new Error("no scalar: the share was not computed");
    const k = cpace.scalarMultVfy(this.scalar, peerShare);
    this.scalar = null; // used once
    this.prs = new Uint8Array(0);
    return cpace.deriveIsk(this._sid, k, ya, ada, yb, adb);
  }

  protected abstract dispatch(message: Uint8Array): Uint8Array[];

  /** Handle one message from the peer; returns the messages to send, in order. */
  receive(message: Uint8Array): Uint8Array[] {
    if (this._state === "established" || this._state === "failed") {
      throw new ProtocolError(`handshake message after the handshake is ${this._state}`);
    }
    if (this._state === "not_started") throw new ProtocolError("handshake message before start()");
    try {
      if (message[0] === MessageType.FAILURE) raisePeerFailure(message);
      return this.dispatch(message);
    } catch (exc) {
      if (exc instanceof ProtocolError) this.fail();
      throw exc;
    }
  }
}

/** Sans-IO handshake of the agent (CPace party A): for tests pairing two JS ends. */
export class AgentHandshake extends BaseHandshake {
  readonly role = "agent" as const;
  private ya: Uint8Array = new Uint8Array(0);

  constructor(password: string, agentId: string, opts: { randbytes?: RandBytes; rekeyAfter?: number } = {}) {
    super(password, agentId, opts.randbytes ?? randomBytes, opts.rekeyAfter);
    this._state = "waiting_for_hello";
  }

  /** True once the agent sent its share. */
  get attemptStarted(): boolean {
    return this.ya.length > 0;
  }

  protected dispatch(message: Uint8Array): Uint8Array[] {
    if (this._state === "waiting_for_hello") return this.handleHello(parseHello(message));
    return this.handleTechnicianShare(parseTechnicianShare(message));
  }

  private handleHello(hello: Hello): Uint8Array[] {
    const nonceA = this.nonce();
    this._sid = concat(hello.nonceT, nonceA);
    this.ya = this.share();
    this._state = "waiting_for_technician_share";
    return [encodeAgentShare({ nonceA, ya: this.ya, ada: AD_AGENT })];
  }

  private handleTechnicianShare(msg: TechnicianShare): Uint8Array[] {
    if (!equalBytes(msg.adb, AD_TECHNICIAN)) throw new HandshakeError("technician share does not carry the technician's role name");
    if (equalBytes(msg.yb, this.ya)) throw new HandshakeError("technician share reflects the agent's own share");
    const isk = this.isk(msg.yb, this.ya, AD_AGENT, msg.yb, msg.adb);
    const key = cpace.macKey(this._sid, isk);
    if (!cpace.verifyTag(cpace.confirmationTag(key, msg.yb, msg.adb), msg.tb)) {
      throw new AuthenticationFailed("technician's confirmation tag is wrong (wrong password)");
    }
    const ta = cpace.confirmationTag(key, this.ya, AD_AGENT);
    this._channel = new RecordChannel(isk, this._sid, "agent", this.rekeyAfter);
    this._state = "established";
    return [encodeAgentConfirm(ta)];
  }
}

/** Sans-IO handshake of the technician (CPace party B). */
export class TechnicianHandshake extends BaseHandshake {
  readonly role = "technician" as const;
  private nonceT: Uint8Array = new Uint8Array(0);
  private expectedTa: Uint8Array = new Uint8Array(0);
  private iskPending: Uint8Array = new Uint8Array(0);

  constructor(password: string, agentId: string, opts: { randbytes?: RandBytes; rekeyAfter?: number } = {}) {
    super(password, agentId, opts.randbytes ?? randomBytes, opts.rekeyAfter);
  }

  /** The HELLO that opens the handshake. */
  start(): Uint8Array {
    if (this._state !== "not_started") throw new Error("start() was already called");
    this.nonceT = this.nonce();
    this._state = "waiting_for_agent_share";
    return encodeHello({ version: VERSION, suite: SUITE_CPACE_RISTR255_SHA512, nonceT: this.nonceT });
  }

  protected dispatch(message: Uint8Array): Uint8Array[] {
    if (this._state === "waiting_for_agent_share") return this.handleAgentShare(parseAgentShare(message));
    return this.handleAgentConfirm(parseAgentConfirm(message));
  }

  protected override fail(): void {
    this.iskPending = new Uint8Array(0);
    super.fail();
  }

  private handleAgentShare(msg: AgentShare): Uint8Array[] {
    if (!equalBytes(msg.ada, AD_AGENT)) throw new HandshakeError("agent share does not carry the agent's role name");
    this._sid = concat(this.nonceT, msg.nonceA);
    const yb = this.share();
    if (equalBytes(msg.ya, yb)) throw new HandshakeError("agent share reflects the technician's own share");
    const isk = this.isk(msg.ya, msg.ya, msg.ada, yb, AD_TECHNICIAN);
    const key = cpace.macKey(this._sid, isk);
    const tb = cpace.confirmationTag(key, yb, AD_TECHNICIAN);
    this.expectedTa = cpace.confirmationTag(key, msg.ya, msg.ada);
    this.iskPending = isk;
    this._state = "waiting_for_agent_confirm";
    return [encodeTechnicianShare({ yb, adb: AD_TECHNICIAN, tb })];
  }

  private handleAgentConfirm(ta: Uint8Array): Uint8Array[] {
    if (!cpace.verifyTag(this.expectedTa, ta)) throw new AuthenticationFailed("agent's confirmation tag is wrong (wrong password)");
    this._channel = new RecordChannel(this.iskPending, this._sid, "technician", this.rekeyAfter);
    this.iskPending = new Uint8Array(0);
    this._state = "established";
    return [];
  }
}
