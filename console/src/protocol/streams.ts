// Stream multiplexing inside the E2E channel with per-stream credit flow control, sans-IO,
// as src/enkaku/protocol/streams.py (docs/protocol/streams.md). Each record's plaintext
// is one frame:
//
//     type u8 | stream_id u32 (big-endian) | payload
//
// Stream 0 is the control stream (never opened, ended or reset). The technician opens
// odd ids, the agent even ids. Every stream starts with INITIAL_WINDOW bytes of credit
// in each direction.

import { concat, decodeAscii, decodeAsciiReplace, decodeUtf8, encodeAscii, encodeUtf8, readU32be, u32be } from "./bytes";
import { ProtocolError } from "./errors";

export const CONTROL_STREAM = 0;
export const MAX_DATA = 32 * 1024;
export const INITIAL_WINDOW = 512 * 1024;
/** Streams each side may have open that it opened itself (the control stream aside). */
export const MAX_STREAMS = 32;
export const MAX_OPEN_PARAMS = 16 * 1024;
export const MAX_WINDOW = 2 ** 30;
export const HEADER_BYTES = 5;

export const FrameType = { OPEN: 1, DATA: 2, WINDOW: 3, EOF: 4, RESET: 5 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];
const FRAME_NAMES: Record<number, string> = { 1: "OPEN", 2: "DATA", 3: "WINDOW", 4: "EOF", 5: "RESET" };

export type Params = Record<string, unknown>;

export type MuxEvent =
  | { type: "opened"; streamId: number; kind: string; params: Params }
  | { type: "data"; streamId: number; data: Uint8Array }
  | { type: "window"; streamId: number; window: number }
  | { type: "ended"; streamId: number }
  | { type: "reset"; streamId: number; reason: string };

/** JSON exactly as Python's `json.dumps(obj, separators=(",", ":"))` writes it for the
 * values a stream's parameters hold (strings, integers, booleans, null, arrays,
 * objects): compact, every character outside printable ASCII escaped as \uXXXX. */
export function pythonJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError("value is not JSON");
  return text.replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

interface StreamState {
  kind: string;
  sendWindow: number;
  recvWindow: number;
  /** Bytes consumed locally, not yet returned to the peer as credit. */
  unacked: number;
  localEof: boolean;
  remoteEof: boolean;
  params: Params;
}

function newStream(kind: string, params: Params): StreamState {
  return { kind, sendWindow: INITIAL_WINDOW, recvWindow: INITIAL_WINDOW, unacked: 0, localEof: false, remoteEof: false, params };
}

/** One mux frame's bytes. */
export function encodeFrame(type: FrameType, streamId: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  return concat(Uint8Array.of(type), u32be(streamId), payload);
}

/** Sans-IO stream multiplexer for one side of the channel. */
export class Mux {
  readonly role: "agent" | "technician";
  private readonly streams = new Map<number, StreamState>([[CONTROL_STREAM, newStream("control", {})]]);
  private nextId: number;
  /** Highest stream id the peer has opened. */
  private peerMax = 0;
  private out: Uint8Array[] = [];

  constructor(role: "agent" | "technician") {
    this.role = role;
    this.nextId = role === "technician" ? 1 : 2;
  }

  // -- outbound ---------------------------------------------------------------

  /** Open a new stream of `kind`; returns its id. ProtocolError when this side already
   * has MAX_STREAMS of its own open, RangeError for a bad kind or oversized parameters. */
  openStream(kind: string, params: Params = {}): number {
    if (this.countOpenedBy(this.nextId % 2) >= MAX_STREAMS) throw new ProtocolError("too many open streams");
    const kindB = encodeAscii(kind);
    if (!(kindB.length > 0 && kindB.length < 256)) throw new RangeError("stream kind must be 1..255 ASCII characters");
    const paramsB = encodeUtf8(pythonJson(params));
    if (paramsB.length > MAX_OPEN_PARAMS) throw new RangeError("stream parameters too large");
    const sid = this.nextId;
    this.nextId += 2;
    this.streams.set(sid, newStream(kind, { ...params }));
    this.out.push(encodeFrame(FrameType.OPEN, sid, concat(Uint8Array.of(kindB.length), kindB, paramsB)));
    return sid;
  }

  /** How many bytes may be sent on `streamId` right now. */
  sendWindow(streamId: number): number {
    const st = this.streams.get(streamId);
    if (st === undefined || st.localEof) return 0;
    return st.sendWindow;
  }

  /** Queue as much of `data` as the peer's window allows; returns the count taken. */
  sendData(streamId: number, data: Uint8Array): number {
    const st = this.require(streamId);
    if (st.localEof) throw new RangeError(`stream ${streamId} is closed for writing`);
    const n = Math.min(data.length, st.sendWindow);
    for (let off = 0; off < n; off += MAX_DATA) {
      this.out.push(encodeFrame(FrameType.DATA, streamId, data.subarray(off, Math.min(off + MAX_DATA, n))));
    }
    st.sendWindow -= n;
    return n;
  }

  /** Tell the peer nothing more will be written on `streamId`. */
  sendEof(streamId: number): void {
    if (streamId === CONTROL_STREAM) throw new RangeError("the control stream is never ended: send an `end` message");
    const st = this.streams.get(streamId);
    if (st === undefined || st.localEof) return;
    st.localEof = true;
    this.out.push(encodeFrame(FrameType.EOF, streamId));
    this.maybeForget(streamId, st);
  }

  /** Abort `streamId` in both directions. */
  reset(streamId: number, reason: string): void {
    if (streamId === CONTROL_STREAM) throw new RangeError("the control stream is never reset: send an `end` message");
    if (!this.streams.delete(streamId)) return;
    // Python's reason.encode("ascii")[:64]: a non-ASCII reason is a caller's bug.
    this.out.push(encodeFrame(FrameType.RESET, streamId, encodeAscii(reason).subarray(0, 64)));
  }

  /** The application consumed `n` received bytes: return credit to the peer. */
  consumed(streamId: number, n: number): void {
    const st = this.streams.get(streamId);
    if (st === undefined) return;
    st.unacked += n;
    // Batch credit updates: one WINDOW frame per quarter window consumed.
    if (st.unacked >= INITIAL_WINDOW / 4 && !st.remoteEof) {
      this.out.push(encodeFrame(FrameType.WINDOW, streamId, u32be(st.unacked)));
      st.recvWindow += st.unacked;
      st.unacked = 0;
    }
  }

  /** Frames queued for the peer, in order; each becomes one record. */
  framesToSend(): Uint8Array[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  isOpen(streamId: number): boolean {
    return this.streams.has(streamId);
  }

  /** The kind of an open stream (`control` for stream 0), undefined once forgotten. */
  kindOf(streamId: number): string | undefined {
    return this.streams.get(streamId)?.kind;
  }

  // -- inbound ----------------------------------------------------------------

  /** Parse one decrypted record's plaintext. */
  receiveFrame(frame: Uint8Array): MuxEvent[] {
    if (frame.length < HEADER_BYTES) throw new ProtocolError("mux frame is truncated");
    const ftype = frame[0] as number;
    const sid = readU32be(frame, 1);
    const payload = frame.subarray(HEADER_BYTES);
    if (!(ftype in FRAME_NAMES)) throw new ProtocolError(`unknown mux frame type ${ftype}`);
    if (ftype === FrameType.OPEN) return [this.handleOpen(sid, payload)];
    const st = this.streams.get(sid);
    if (st === undefined) {
      // Frames racing a local RESET are dropped; anything else is a peer bug.
      const own = sid % 2 === this.nextId % 2;
      if ((own && sid >= this.nextId) || (!own && sid > this.peerMax)) {
        throw new ProtocolError(`frame for never-opened stream ${sid}`);
      }
      return [];
    }
    if (ftype === FrameType.DATA) return [this.handleData(sid, st, payload)];
    if (sid === CONTROL_STREAM && (ftype === FrameType.EOF || ftype === FrameType.RESET)) {
      throw new ProtocolError(`${FRAME_NAMES[ftype]} on the control stream`);
    }
    if (ftype === FrameType.WINDOW) {
      if (payload.length !== 4) throw new ProtocolError("WINDOW frame must carry 4 bytes");
      const inc = readU32be(payload);
      if (inc === 0 || st.sendWindow + inc > MAX_WINDOW) throw new ProtocolError("invalid window increment");
      st.sendWindow += inc;
      return [{ type: "window", streamId: sid, window: st.sendWindow }];
    }
    if (ftype === FrameType.EOF) {
      if (payload.length || st.remoteEof) throw new ProtocolError("invalid EOF frame");
      st.remoteEof = true;
      this.maybeForget(sid, st);
      return [{ type: "ended", streamId: sid }];
    }
    // RESET
    const reason = decodeAsciiReplace(payload.subarray(0, 64));
    this.streams.delete(sid);
    return [{ type: "reset", streamId: sid, reason }];
  }

  private handleOpen(sid: number, payload: Uint8Array): MuxEvent {
    const peerParity = this.role === "technician" ? 0 : 1;
    // Ids increase and are never reused: an id at or below the highest seen is refused.
    if (sid === CONTROL_STREAM || sid % 2 !== peerParity || sid <= this.peerMax) {
      throw new ProtocolError(`peer may not open stream ${sid}`);
    }
    if (this.countOpenedBy(peerParity) >= MAX_STREAMS) throw new ProtocolError("too many open streams");
    if (payload.length === 0 || payload.length < 1 + (payload[0] as number) || payload[0] === 0) {
      throw new ProtocolError("OPEN frame is truncated");
    }
    const kindLen = payload[0] as number;
    const kindB = payload.subarray(1, 1 + kindLen);
    const paramsB = payload.subarray(1 + kindLen);
    if (paramsB.length > MAX_OPEN_PARAMS) throw new ProtocolError("OPEN parameters too large");
    let kind: string;
    let params: unknown;
    try {
      kind = decodeAscii(kindB);
      params = paramsB.length ? JSON.parse(decodeUtf8(paramsB)) : {};
    } catch {
      throw new ProtocolError("OPEN frame is malformed");
    }
    if (typeof params !== "object" || params === null || Array.isArray(params)) {
      throw new ProtocolError("OPEN parameters must be a JSON object");
    }
    this.streams.set(sid, newStream(kind, params as Params));
    this.peerMax = Math.max(this.peerMax, sid);
    return { type: "opened", streamId: sid, kind, params: params as Params };
  }

  private handleData(sid: number, st: StreamState, payload: Uint8Array): MuxEvent {
    if (st.remoteEof) throw new ProtocolError(`DATA after EOF on stream ${sid}`);
    if (payload.length > MAX_DATA) throw new ProtocolError("DATA frame too large");
    if (payload.length > st.recvWindow) throw new ProtocolError(`peer overran the window of stream ${sid}`);
    st.recvWindow -= payload.length;
    return { type: "data", streamId: sid, data: payload };
  }

  private require(streamId: number): StreamState {
    const st = this.streams.get(streamId);
    if (st === undefined) throw new RangeError(`stream ${streamId} is not open`);
    return st;
  }

  private countOpenedBy(parity: number): number {
    let n = 0;
    for (const sid of this.streams.keys()) if (sid !== CONTROL_STREAM && sid % 2 === parity) n += 1;
    return n;
  }

  private maybeForget(sid: number, st: StreamState): void {
    if (st.localEof && st.remoteEof && sid !== CONTROL_STREAM) this.streams.delete(sid);
  }
}
