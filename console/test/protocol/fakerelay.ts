// A relay and a JS agent for the channel tests: the technician's Channel gets a fake
// WebSocket (WebSocketImpl); the test plays the agent with the same protocol modules
// (AgentHandshake, RecordChannel, Mux) the transcripts show to match the Python agent.
import { ControlReader, type AnyMessage, encode, type Message } from "../../src/protocol/control";
import { AuthenticationFailed } from "../../src/protocol/errors";
import { AgentHandshake } from "../../src/protocol/handshake";
import type { RecordChannel } from "../../src/protocol/records";
import { Mux, type MuxEvent } from "../../src/protocol/streams";

export const AGENT_ID = "123456789";
export const PASSWORD = "k7m2-9qzx";

const later = (fn: () => void) => setTimeout(fn, 0);

/** The technician's socket: the test's `agent` sees what it sends. */
export class FakeSocket {
  static last: FakeSocket | null = null;
  binaryType = "blob";
  readyState = 0;
  bufferedAmount = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sentText: string[] = [];
  closedWith: { code?: number; reason?: string } | null = null;
  peer: AgentPeer | null = null;

  constructor(readonly url: string) {
    FakeSocket.last = this;
    later(() => {
      this.readyState = 1;
      this.onopen?.({});
    });
  }

  send(data: Uint8Array | string): void {
    if (this.readyState !== 1) throw new Error("not open");
    if (typeof data === "string") {
      this.sentText.push(data);
      later(() => this.peer?.onToken(data));
    } else {
      const copy = Uint8Array.from(data);
      later(() => this.peer?.fromTechnician(copy));
    }
  }

  close(code?: number, reason?: string): void {
    if (this.readyState >= 2) return;
    this.closedWith = { code, reason };
    this.readyState = 2;
    later(() => {
      this.peer?.technicianClosed(code, reason);
      this.closedByRelay(code ?? 1005, reason ?? "");
    });
  }

  /** The relay delivers a message to the technician. */
  deliver(data: Uint8Array | string): void {
    if (this.readyState !== 1) return;
    const payload = typeof data === "string" ? data : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
    later(() => this.onmessage?.({ data: payload }));
  }

  closedByRelay(code: number, reason: string): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    later(() => this.onclose?.({ code, reason }));
  }
}

/** The agent's end, driven by the test. */
export class AgentPeer {
  hs: AgentHandshake;
  records: RecordChannel | null = null;
  readonly mux = new Mux("agent");
  readonly frames: Uint8Array[] = [];
  readonly events: MuxEvent[] = [];
  readonly control: AnyMessage[] = [];
  readonly data = new Map<number, number>();
  techClose: { code?: number; reason?: string } | null = null;
  /** Answer the HELLO with FAILURE of this reason instead of a share. */
  failWith: number | null = null;
  /** Never answer the handshake (an agent that hangs). */
  silent = false;
  /** Return credit for what arrives (as an application that reads everything). */
  autoCredit = true;
  private chain: Promise<void> = Promise.resolve();
  private readonly reader = new ControlReader();
  private waiters: (() => void)[] = [];

  constructor(readonly sock: FakeSocket, password = PASSWORD) {
    this.hs = new AgentHandshake(password, AGENT_ID);
    sock.peer = this;
  }

  onToken(text: string): void {
    if (JSON.parse(text).token === "tech-token") this.sock.deliver('{"type":"paired"}');
    else this.sock.closedByRelay(4401, "unknown session or bad token");
  }

  fromTechnician(data: Uint8Array): void {
    if (this.records === null) {
      if (this.silent) return;
      if (this.failWith !== null) {
        this.sock.deliver(Uint8Array.of(0x05, this.failWith));
        return;
      }
      let replies: Uint8Array[];
      try {
        replies = this.hs.receive(data);
      } catch (exc) {
        // As the agent runtime: a wrong tag is answered FAILURE 1; a FAILURE is not answered.
        if (exc instanceof AuthenticationFailed) this.sock.deliver(Uint8Array.of(0x05, 1));
        return;
      }
      for (const r of replies) this.sock.deliver(r);
      if (this.hs.state === "established") this.records = this.hs.channel;
      return;
    }
    const opened = this.records.open(data);
    this.chain = this.chain.then(async () => {
      const frame = await opened;
      this.frames.push(frame);
      for (const ev of this.mux.receiveFrame(frame)) {
        this.events.push(ev);
        if (ev.type === "data") {
          this.data.set(ev.streamId, (this.data.get(ev.streamId) ?? 0) + ev.data.length);
          if (ev.streamId === 0) this.control.push(...this.reader.feed(ev.data));
          if (this.autoCredit) this.mux.consumed(ev.streamId, ev.data.length);
        }
      }
      await this.flush();
      for (const w of this.waiters.splice(0)) w();
    });
  }

  technicianClosed(code?: number, reason?: string): void {
    this.techClose = { code, reason };
  }

  /** Seal and deliver what the agent's mux queued. */
  async flush(): Promise<void> {
    for (const frame of this.mux.framesToSend()) await this.sendRaw(frame);
  }

  async sendRaw(frame: Uint8Array): Promise<void> {
    this.sock.deliver(await (this.records as RecordChannel).seal(frame));
  }

  async sendControl(msg: Message): Promise<void> {
    this.mux.sendData(0, encode(msg));
    await this.flush();
  }

  /** Resolves once `predicate` holds after some record arrived. */
  async until(predicate: () => boolean): Promise<void> {
    while (!predicate()) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

export function makeSocketClass(setup?: (peer: AgentPeer) => void, password?: string): new (url: string) => FakeSocket {
  return class extends FakeSocket {
    constructor(url: string) {
      super(url);
      const peer = new AgentPeer(this, password);
      setup?.(peer);
    }
  };
}

export const connectOpts = (WebSocketImpl: new (url: string) => unknown, password = "K7M2 9QZX") => ({
  relayUrl: "ws://relay.test/ws/relay/abc",
  relayToken: "tech-token",
  agentId: AGENT_ID,
  password,
  WebSocketImpl,
});
