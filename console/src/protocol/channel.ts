// The end-to-end channel over the relay's WebSocket, as src/enkaku/transport/channel.py
// and transport/relay.py: relay token, pairing, the CPace handshake, then records that
// carry the stream mux (docs/protocol/{relay,handshake,records,streams}.md).
//
// One reader and one writer per channel. Incoming records are opened in arrival order
// (RecordChannel takes each counter when the message arrives); the writer is the only
// one that seals and sends, so counters follow wire order. Each turn the writer sends
// the frames the mux queued itself (OPEN, WINDOW, EOF, RESET), else one slice of control
// data, else one slice of the next data stream in round-robin order, so a file transfer
// never starves the screen and a keystroke waits behind at most one record.

import { copyBytes, randomBytes, readU32be, type RandBytes } from "./bytes";
import * as control from "./control";
import { HandshakeFailed, ProtocolError, SessionEnded, StreamReset } from "./errors";
import { FAILURE_NAMES, PeerFailed, PeerRejectedPassword, TechnicianHandshake, failureMessage, failureReasonFor } from "./handshake";
import { normalizePassword } from "./password";
import { MAX_RECORD, type RecordChannel } from "./records";
import { CONTROL_STREAM, MAX_DATA, Mux, type MuxEvent } from "./streams";

export { HandshakeFailed, SessionEnded, StreamReset } from "./errors";

export const CLOSE_SESSION_END = 4000;
export const HANDSHAKE_TIMEOUT_MS = 30_000;
/** Longer than the server's pairing timeout (60 s), whose 4000 `timeout` comes first. */
export const PAIRING_TIMEOUT_MS = 90_000;
/** How long a side that learned the peer's end reason waits for the relay to close. */
export const PEER_END_GRACE_MS = 5_000;
/** Bytes a stream may send per turn of the writer before the next stream's turn. */
export const SLICE = 16 * 1024;
/** ... and a stream alone in the line (no other data stream waiting its turn): a whole
 * DATA frame in one record, half the records of a large write (an upload). */
export const ALONE_SLICE = MAX_DATA;
/** The writer waits while the socket holds more than this unsent (backpressure). */
export const SEND_HIGH_WATER = 256 * 1024;
/** Control messages received before the first onControl handler, at most. */
export const MAX_PENDING_CONTROL = 256;
/** Streams the peer opened that the application has not taken yet, at most. */
export const MAX_PENDING_INCOMING = 16;

if (SLICE > ALONE_SLICE || ALONE_SLICE > MAX_DATA) throw new Error("one slice must be one record");

/** A multiplexed byte stream of the channel. */
export interface Stream {
  readonly id: number;
  readonly kind: string;
  readonly params: Record<string, unknown>;
  /** The next chunk; null at the peer's EOF. Throws StreamReset(reason) once the stream
   * was reset (by either side) and SessionEnded(reason) once the session is over. */
  read(): Promise<Uint8Array | null>;
  /** Copies `data` and resolves when all of it has been sent, as the peer's credit
   * allowed. Throws StreamReset after a reset, SessionEnded("stream_closed") after
   * writeEof, SessionEnded(reason) when the session ends. */
  write(data: Uint8Array): Promise<void>;
  /** Tell the peer nothing more will be written. */
  writeEof(): Promise<void>;
  /** Abort the stream both ways. */
  reset(reason: string): Promise<void>;
}

/** Bytes on the wire (sealed record sizes, handshake excluded), both ways, live. */
export interface ChannelStats {
  bytesSent: number;
  bytesReceived: number;
  /** Per stream kind (`control` for stream 0, `other` for a forgotten stream). */
  sentByKind: Record<string, number>;
  receivedByKind: Record<string, number>;
}

/** The part of a WebSocket the channel uses: the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: Uint8Array | string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export interface ConnectOptions {
  relayUrl: string;
  relayToken: string;
  agentId: string;
  password: string;
  /** Node: `ws`'s WebSocket. Default: the platform's WebSocket. */
  WebSocketImpl?: new (url: string) => unknown;
  handshakeTimeoutMs?: number;
  pairingTimeoutMs?: number;
  /** Tests only: the handshake's randomness. */
  randbytes?: RandBytes;
}

type Incoming = { kind: "binary"; data: Uint8Array } | { kind: "ended"; error: SessionEnded };

/** The relay leg of one side: token, pairing, then binary messages (transport/relay.py). */
class RelayLeg {
  private queue: Incoming[] = [];
  private waiter: (() => void) | null = null;
  private handler: ((item: Incoming) => void) | null = null;
  private closeEvent: Promise<void>;
  private closedResolve!: () => void;
  ended: SessionEnded | null = null;

  constructor(readonly ws: WebSocketLike) {
    this.closeEvent = new Promise((resolve) => (this.closedResolve = resolve));
  }

  /** Open the socket, present the token, wait for `paired`. */
  static async open(opts: ConnectOptions): Promise<RelayLeg> {
    const Impl = (opts.WebSocketImpl ?? globalThis.WebSocket) as unknown as new (url: string) => WebSocketLike;
    if (Impl === undefined) throw new Error("no WebSocket implementation: pass WebSocketImpl");
    let ws: WebSocketLike;
    try {
      ws = new Impl(opts.relayUrl);
    } catch (exc) {
      throw new SessionEnded("connection_lost", `relay could not be opened: ${(exc as Error).message}`);
    }
    ws.binaryType = "arraybuffer";
    const leg = new RelayLeg(ws);
    const first = await new Promise<Incoming | "paired">((resolve) => {
      const timer = setTimeout(() => resolve({ kind: "ended", error: new SessionEnded("timeout", "the relay did not pair the session") }), opts.pairingTimeoutMs ?? PAIRING_TIMEOUT_MS);
      const done = (v: Incoming | "paired") => {
        clearTimeout(timer);
        resolve(v);
      };
      ws.onopen = () => ws.send(JSON.stringify({ token: opts.relayToken }));
      ws.onerror = () => undefined; // the close event that follows says what happened
      ws.onclose = (ev) => {
        leg.closedResolve();
        done({ kind: "ended", error: endedFromClose(ev.code, ev.reason) });
      };
      ws.onmessage = (ev) => {
        let paired = false;
        if (typeof ev.data === "string" && ev.data.length <= 1024) {
          try {
            const obj: unknown = JSON.parse(ev.data);
            paired = typeof obj === "object" && obj !== null && (obj as Record<string, unknown>).type === "paired";
          } catch {
            paired = false;
          }
        }
        done(paired ? "paired" : { kind: "ended", error: new SessionEnded("protocol_error", "unexpected message from the relay before pairing") });
      };
    });
    if (first !== "paired") {
      leg.closeQuietly();
      throw first.kind === "ended" ? first.error : new SessionEnded("protocol_error");
    }
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) leg.push({ kind: "binary", data: new Uint8Array(ev.data) });
      else leg.push({ kind: "ended", error: new SessionEnded("protocol_error", "unexpected text message from the relay") });
    };
    ws.onclose = (ev) => {
      leg.closedResolve();
      leg.push({ kind: "ended", error: endedFromClose(ev.code, ev.reason) });
    };
    return leg;
  }

  private push(item: Incoming): void {
    if (this.ended !== null) return;
    if (item.kind === "ended") this.ended = item.error;
    if (this.handler !== null) this.handler(item);
    else {
      this.queue.push(item);
      this.waiter?.();
    }
  }

  /** The next binary message (handshake phase); throws SessionEnded when the leg ends. */
  async receive(): Promise<Uint8Array> {
    while (this.queue.length === 0) await new Promise<void>((resolve) => (this.waiter = resolve));
    this.waiter = null;
    const item = this.queue.shift() as Incoming;
    if (item.kind === "ended") {
      this.queue.unshift(item);
      throw item.error;
    }
    return item.data;
  }

  /** From now on every message goes to `handler`, queued ones first. */
  attach(handler: (item: Incoming) => void): void {
    const queued = this.queue;
    this.queue = [];
    for (const item of queued) handler(item);
    this.handler = handler;
  }

  send(data: Uint8Array): void {
    if (this.ws.readyState !== 1) throw new SessionEnded(this.ended?.reason ?? "connection_lost", "the relay connection is closed");
    this.ws.send(data);
  }

  /** Wait while the socket holds more than SEND_HIGH_WATER unsent bytes. */
  async drain(): Promise<void> {
    while (this.ws.bufferedAmount > SEND_HIGH_WATER && this.ws.readyState === 1) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Close with 4000 and `reason`; resolves once closed (at most `waitMs`). */
  async close(reason: string, waitMs = 5_000): Promise<void> {
    if (this.ws.readyState === 0 || this.ws.readyState === 1) {
      try {
        this.ws.close(CLOSE_SESSION_END, reason.slice(0, 120));
      } catch {
        this.closeQuietly();
      }
    }
    await Promise.race([this.closeEvent, new Promise((resolve) => setTimeout(resolve, waitMs))]);
  }

  closeQuietly(): void {
    try {
      if (this.ws.readyState === 0 || this.ws.readyState === 1) this.ws.close();
    } catch {
      // already closing
    }
  }
}

/** The SessionEnded a relay close means (transport/relay.py's ended_from). */
export function endedFromClose(code: number, reason: string): SessionEnded {
  if (code === CLOSE_SESSION_END && reason) return new SessionEnded(reason);
  return new SessionEnded("connection_lost", `relay closed (${code} ${reason ?? ""})`.replace(" )", ")"));
}

function timeout<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([p, new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms)))]).finally(() => clearTimeout(timer));
}

/** Drive the technician's handshake over `leg` until established (run_handshake). */
async function runHandshake(leg: RelayLeg, hs: TechnicianHandshake, timeoutMs: number): Promise<RecordChannel> {
  const run = async (): Promise<RecordChannel> => {
    leg.send(hs.start());
    while (hs.state !== "established") {
      const message = await leg.receive();
      let replies: Uint8Array[];
      try {
        replies = hs.receive(message);
      } catch (exc) {
        if (exc instanceof ProtocolError) {
          const reason = failureReasonFor(exc);
          if (reason !== null) {
            try {
              leg.send(failureMessage(reason));
            } catch {
              // the leg is closing
            }
          }
        }
        throw exc;
      }
      for (const reply of replies) leg.send(reply);
    }
    return hs.channel;
  };
  const running = run();
  running.catch(() => undefined); // after a timeout nobody awaits it any more
  const result = await timeout(running, timeoutMs);
  if (result === "timeout") {
    await leg.close("handshake_failed");
    throw new HandshakeFailed("timeout", "the agent did not answer in time");
  }
  return result;
}

interface Outgoing {
  data: Uint8Array;
  resolve: () => void;
  reject: (e: Error) => void;
  settled: boolean;
}

class ChannelStream implements Stream {
  chunks: Uint8Array[] = [];
  eof = false;
  resetReason: string | null = null;
  eofSent = false;
  private wake: (() => void) | null = null;

  constructor(private readonly channel: Channel, readonly id: number, readonly kind: string, readonly params: Record<string, unknown>) {}

  async read(): Promise<Uint8Array | null> {
    while (this.chunks.length === 0) {
      if (this.resetReason !== null) throw new StreamReset(this.resetReason);
      if (this.eof) return null;
      const ended = this.channel.ended;
      if (ended !== null) throw new SessionEnded(ended.reason, ended.detail);
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    const chunk = this.chunks.shift() as Uint8Array;
    this.channel._consumed(this.id, chunk.length);
    return chunk;
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.resetReason !== null) throw new StreamReset(this.resetReason);
    if (this.eofSent) throw new SessionEnded("stream_closed");
    await this.channel._write(this.id, copyBytes(data));
  }

  async writeEof(): Promise<void> {
    this.eofSent = true;
    this.channel._sendEof(this.id);
  }

  async reset(reason: string): Promise<void> {
    if (this.resetReason !== null) return;
    this.resetReason = reason;
    this.channel._reset(this.id, reason);
    this._wake();
  }

  _wake(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

/** The technician's end of an established end-to-end channel. */
export class Channel {
  readonly role = "technician" as const;
  readonly mux = new Mux("technician");
  /** Resolves with the end reason once the session is over (never rejects). */
  readonly closed: Promise<{ reason: string; detail?: string }>;
  ended: { reason: string; detail?: string } | null = null;
  /** The peer's `end` reason, once received. */
  private peerEnd: { reason: string; detail?: string } | null = null;
  private resolveClosed!: (v: { reason: string; detail?: string }) => void;
  private readonly streams = new Map<number, ChannelStream>();
  private readonly controlReader = new control.ControlReader();
  private readonly controlHandlers = new Set<(msg: control.AnyMessage) => void>();
  private pendingControl: control.AnyMessage[] = [];
  private readonly incoming: ChannelStream[] = [];
  private incomingWaiter: (() => void) | null = null;
  private readonly outgoing = new Map<number, Outgoing[]>();
  private readonly turns: number[] = [];
  private taken: Outgoing[] = [];
  private workFlag = false;
  private workWaiter: (() => void) | null = null;
  private readChain: Promise<void> = Promise.resolve();
  private readonly sent: Record<string, number> = {};
  private readonly received: Record<string, number> = {};
  private writerDone: Promise<void> = Promise.resolve();

  private constructor(private readonly leg: RelayLeg, readonly records: RecordChannel) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Relay auth, pairing, CPace, records. Rejects with HandshakeFailed (see its reasons)
   * or SessionEnded (the relay ended the session first, e.g. `timeout`, `busy`,
   * `agent_disconnected`, or `connection_lost` when it cannot be reached). */
  static async connect(opts: ConnectOptions): Promise<Channel> {
    if (globalThis.crypto?.subtle === undefined) {
      // Browsers offer WebCrypto only to secure contexts: HTTPS, or http://127.0.0.1.
      throw new HandshakeFailed("no_webcrypto", "WebCrypto is not available (the page is not a secure context)");
    }
    try {
      normalizePassword(opts.password); // a typo is caught before it costs an attempt
    } catch (exc) {
      throw new HandshakeFailed("malformed_password", (exc as Error).message);
    }
    const leg = await RelayLeg.open(opts);
    const hs = new TechnicianHandshake(opts.password, opts.agentId, { randbytes: opts.randbytes ?? randomBytes });
    let records: RecordChannel;
    try {
      records = await runHandshake(leg, hs, opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS);
    } catch (exc) {
      if (exc instanceof PeerRejectedPassword) {
        await leg.close("wrong_password");
        throw new HandshakeFailed(FAILURE_NAMES[exc.reason] as string);
      }
      if (exc instanceof PeerFailed) {
        await leg.close("handshake_failed");
        throw new HandshakeFailed(FAILURE_NAMES[exc.reason] as string);
      }
      if (exc instanceof ProtocolError) {
        await leg.close("handshake_failed");
        throw new HandshakeFailed("handshake_failed", exc.message);
      }
      if (exc instanceof HandshakeFailed || exc instanceof SessionEnded) throw exc;
      leg.closeQuietly();
      throw exc;
    }
    const channel = new Channel(leg, records);
    channel.start();
    return channel;
  }

  private start(): void {
    this.leg.attach((item) => this.onIncoming(item));
    this.writerDone = this.writeLoop();
  }

  /** The end reason, once the session is over (the peer's `end` wins over the relay's). */
  get endReason(): string | null {
    return this.ended?.reason ?? null;
  }

  get stats(): ChannelStats {
    const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
    return { bytesSent: sum(this.sent), bytesReceived: sum(this.received), sentByKind: { ...this.sent }, receivedByKind: { ...this.received } };
  }

  /** Open a stream (technician ids are odd). Throws SessionEnded once closed, ProtocolError
   * with MAX_STREAMS of ours open, RangeError for a bad kind or oversized parameters. */
  async openStream(kind: string, params: Record<string, unknown> = {}): Promise<Stream> {
    if (this.ended !== null) throw new SessionEnded(this.ended.reason, this.ended.detail);
    const sid = this.mux.openStream(kind, params);
    const stream = new ChannelStream(this, sid, kind, { ...params });
    this.streams.set(sid, stream);
    this.wakeWriter();
    return stream;
  }

  /** Send one control message on stream 0; resolves once sent. */
  async sendControl(msg: control.Message): Promise<void> {
    await this._write(CONTROL_STREAM, control.encode(msg));
  }

  /** Every control message received, in order. Messages that arrived before the first
   * handler was registered are handed to it at registration. Returns the unsubscriber. */
  onControl(handler: (msg: control.AnyMessage) => void): () => void {
    this.controlHandlers.add(handler);
    if (this.pendingControl.length) {
      const pending = this.pendingControl;
      this.pendingControl = [];
      for (const msg of pending) this.callHandler(handler, msg);
    }
    return () => this.controlHandlers.delete(handler);
  }

  /** The next stream the agent opened (the agent opens none yet). */
  async acceptStream(): Promise<Stream> {
    while (this.incoming.length === 0) {
      if (this.ended !== null) throw new SessionEnded(this.ended.reason, this.ended.detail);
      await new Promise<void>((resolve) => (this.incomingWaiter = resolve));
    }
    return this.incoming.shift() as ChannelStream;
  }

  /** End the session: tell the peer why (`end`), close the relay leg with 4000 + reason.
   * A reason the technician may not assert (the peer's, e.g. `customer_ended`) waits
   * briefly for the peer's own close and is otherwise sent as `technician_ended`.
   * The four policy reasons are recorded only through the API (POST /sessions/{id}/end). */
  async close(reason: string, detail?: string): Promise<void> {
    if (this.ended !== null) {
      this.leg.closeQuietly();
      return;
    }
    if (!control.mayAssert("technician", reason)) {
      await timeout(this.closed, PEER_END_GRACE_MS);
      if (this.ended !== null) return;
      reason = control.OWN_END.technician;
    }
    const d = detail === undefined ? undefined : [...detail].slice(0, 500).join("");
    try {
      await timeout(this.sendControl(control.end(reason as control.EndReason, d)), 2_000);
    } catch {
      // the session is ending anyway
    }
    this.finish(reason, detail);
    await this.leg.close(reason);
  }

  // -- internals --------------------------------------------------------------

  private callHandler(handler: (msg: control.AnyMessage) => void, msg: control.AnyMessage): void {
    try {
      handler(msg);
    } catch (exc) {
      console.error(exc);
    }
  }

  private finish(reason: string, detail?: string): void {
    if (this.ended !== null) return;
    this.ended = detail === undefined ? { reason } : { reason, detail };
    for (const st of this.streams.values()) st._wake();
    for (const sid of [...this.outgoing.keys()]) this.fail(sid, new SessionEnded(reason));
    for (const item of this.taken) this.settle(item, new SessionEnded(reason));
    this.taken = [];
    this.incomingWaiter?.();
    this.wakeWriter();
    this.resolveClosed(this.ended);
  }

  private settle(item: Outgoing, error?: Error): void {
    if (item.settled) return;
    item.settled = true;
    if (error === undefined) item.resolve();
    else item.reject(error);
  }

  /** Queue `data` for the writer and wait until it has all been sent. */
  _write(sid: number, data: Uint8Array): Promise<void> {
    if (this.ended !== null) return Promise.reject(new SessionEnded(this.ended.reason, this.ended.detail));
    if (!this.mux.isOpen(sid)) return Promise.reject(new SessionEnded("stream_closed"));
    if (data.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const item: Outgoing = { data, resolve, reject, settled: false };
      let queue = this.outgoing.get(sid);
      if (queue === undefined) this.outgoing.set(sid, (queue = []));
      queue.push(item);
      if (sid !== CONTROL_STREAM && !this.turns.includes(sid)) this.turns.push(sid);
      this.wakeWriter();
    });
  }

  private fail(sid: number, exc: Error): void {
    for (const item of this.outgoing.get(sid) ?? []) this.settle(item, exc);
    this.outgoing.delete(sid);
  }

  _sendEof(sid: number): void {
    // A write still waiting ends here: no DATA may follow EOF.
    this.fail(sid, new SessionEnded("stream_closed"));
    if (this.ended !== null) return;
    this.mux.sendEof(sid);
    this.wakeWriter();
  }

  _reset(sid: number, reason: string): void {
    this.fail(sid, new StreamReset(reason));
    if (this.ended !== null) return;
    this.mux.reset(sid, reason);
    this.streams.delete(sid);
    this.wakeWriter();
  }

  /** Return credit: the mux queues a WINDOW frame when due and the writer sends it first. */
  _consumed(sid: number, n: number): void {
    if (this.ended !== null) return;
    this.mux.consumed(sid, n);
    this.wakeWriter();
  }

  private kindOf(sid: number): string | undefined {
    if (sid === CONTROL_STREAM) return "control";
    return this.streams.get(sid)?.kind;
  }

  private wakeWriter(): void {
    this.workFlag = true;
    const w = this.workWaiter;
    this.workWaiter = null;
    w?.();
  }

  private async writeLoop(): Promise<void> {
    try {
      while (this.ended === null) {
        this.workFlag = false;
        let frames = this.mux.framesToSend();
        if (!frames.length && this.takeSlice()) frames = this.mux.framesToSend();
        if (!frames.length) {
          if (!this.workFlag) await new Promise<void>((resolve) => (this.workWaiter = resolve));
          continue;
        }
        for (const frame of frames) {
          const record = await this.records.seal(frame);
          if (this.ended !== null) return;
          this.leg.send(record);
          const kind = this.kindOf(readU32be(frame, 1)) ?? "other";
          this.sent[kind] = (this.sent[kind] ?? 0) + record.length;
          await this.leg.drain();
        }
        const taken = this.taken;
        this.taken = [];
        for (const item of taken) this.settle(item);
      }
    } catch (exc) {
      // A leg that fails to send is usually closing: let the reader learn the relay's
      // reason before ending with our own.
      await timeout(this.closed, PEER_END_GRACE_MS);
      this.finish("connection_lost", (exc as Error).name);
    }
  }

  /** Hand the mux one slice: control data first, else the next data stream in turn that
   * has credit. False when nothing can be sent now. */
  private takeSlice(): boolean {
    if (this.sliceOf(CONTROL_STREAM, SLICE)) return true;
    for (let i = this.turns.length; i > 0; i--) {
      const sid = this.turns.shift() as number;
      const took = this.sliceOf(sid, this.turns.length ? SLICE : ALONE_SLICE);
      if (this.outgoing.get(sid)?.length) this.turns.push(sid); // more to send: back of the line
      if (took) return true;
    }
    return false;
  }

  private sliceOf(sid: number, size: number): boolean {
    const queue = this.outgoing.get(sid);
    while (queue && queue.length && (queue[0] as Outgoing).settled) queue.shift();
    if (!queue || queue.length === 0) {
      this.outgoing.delete(sid);
      return false;
    }
    if (this.mux.sendWindow(sid) === 0) {
      if (!this.mux.isOpen(sid)) this.fail(sid, new SessionEnded("stream_closed"));
      return false; // waiting for credit: a WINDOW frame wakes the writer
    }
    const item = queue[0] as Outgoing;
    const n = this.mux.sendData(sid, item.data.subarray(0, size));
    item.data = item.data.subarray(n);
    if (item.data.length === 0) this.taken.push(queue.shift() as Outgoing);
    return true;
  }

  private onIncoming(item: Incoming): void {
    if (item.kind === "ended") {
      const exc = item.error;
      this.readChain = this.readChain.then(() => {
        const peer = this.peerEnd;
        this.finish(peer?.reason ?? exc.reason, peer ? peer.detail : exc.detail);
      });
      return;
    }
    if (this.ended !== null) return;
    const size = item.data.length;
    let opened: Promise<Uint8Array>;
    if (size > MAX_RECORD) opened = Promise.reject(new ProtocolError("record too large"));
    else opened = this.records.open(item.data); // takes its counter now, in arrival order
    opened.catch(() => undefined);
    this.readChain = this.readChain.then(async () => {
      if (this.ended !== null) return;
      try {
        const frame = await opened;
        if (this.ended !== null) return;
        const sid = frame.length >= 5 ? readU32be(frame, 1) : -1;
        const kind = this.kindOf(sid);
        for (const event of this.mux.receiveFrame(frame)) this.dispatch(event);
        const k = kind ?? this.kindOf(sid) ?? "other";
        this.received[k] = (this.received[k] ?? 0) + size;
      } catch (exc) {
        if (!(exc instanceof ProtocolError)) console.error(exc);
        this.finish("protocol_error", (exc as Error).message);
        await this.leg.close("protocol_error");
      }
    });
  }

  private dispatch(event: MuxEvent): void {
    switch (event.type) {
      case "data": {
        if (event.streamId === CONTROL_STREAM) {
          for (const msg of this.controlReader.feed(event.data)) {
            if (!(msg instanceof control.UnknownMessage) && msg.type === "end") {
              this.peerEnd = msg.detail === undefined ? { reason: msg.reason } : { reason: msg.reason, detail: msg.detail };
            }
            if (this.controlHandlers.size === 0) {
              if (this.pendingControl.length >= MAX_PENDING_CONTROL) throw new ProtocolError("peer floods the control stream");
              this.pendingControl.push(msg);
            } else {
              for (const h of [...this.controlHandlers]) this.callHandler(h, msg);
            }
          }
          this._consumed(CONTROL_STREAM, event.data.length);
          return;
        }
        const st = this.streams.get(event.streamId);
        if (st !== undefined) {
          st.chunks.push(event.data);
          st._wake();
        }
        return;
      }
      case "opened": {
        if (this.incoming.length >= MAX_PENDING_INCOMING) throw new ProtocolError("peer opens streams faster than they are served");
        const st = new ChannelStream(this, event.streamId, event.kind, event.params);
        this.streams.set(event.streamId, st);
        this.incoming.push(st);
        this.incomingWaiter?.();
        return;
      }
      case "window":
        this.wakeWriter();
        return;
      case "ended": {
        const st = this.streams.get(event.streamId);
        if (st !== undefined) {
          st.eof = true;
          st._wake();
        }
        return;
      }
      case "reset": {
        const st = this.streams.get(event.streamId);
        this.streams.delete(event.streamId);
        this.fail(event.streamId, new StreamReset(event.reason));
        if (st !== undefined) {
          st.resetReason = event.reason;
          st._wake();
        }
        return;
      }
    }
  }
}
