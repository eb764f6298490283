// The Channel against a JS agent over a fake relay (test/protocol/fakerelay.ts): pairing,
// handshake failures, the writer's order (credit first, control before data, data
// streams round-robin), flow control, end reasons, close codes, fatal records, stats,
// and the noVNC adapter.
import { describe, expect, it } from "vitest";
import { ALONE_SLICE, Channel, SLICE, type Stream } from "../../src/protocol/channel";
import { chat, consent, end, TechnicianSession, answer } from "../../src/protocol/control";
import { HandshakeFailed, SessionEnded, StreamReset } from "../../src/protocol/errors";
import { rfbSocket } from "../../src/protocol/rfbsocket";
import { encodeFrame, FrameType, INITIAL_WINDOW, MAX_DATA } from "../../src/protocol/streams";
import { type AgentPeer, connectOpts, FakeSocket, makeSocketClass } from "./fakerelay";

async function connected(setup?: (p: AgentPeer) => void): Promise<{ channel: Channel; agent: AgentPeer }> {
  let agent: AgentPeer | null = null;
  const Impl = makeSocketClass((p) => {
    agent = p;
    setup?.(p);
  });
  const channel = await Channel.connect(connectOpts(Impl));
  return { channel, agent: agent as unknown as AgentPeer };
}

const kinds = (agent: AgentPeer) => agent.frames.map((f) => `${f[0]}:${new DataView(f.buffer, f.byteOffset).getUint32(1)}`);

describe("Channel.connect", () => {
  it("pairs, runs the handshake and is established", async () => {
    const { channel, agent } = await connected();
    expect(agent.hs.state).toBe("established");
    expect(FakeSocket.last?.sentText).toEqual(['{"token":"tech-token"}']);
    expect(FakeSocket.last?.binaryType).toBe("arraybuffer");
    expect(channel.endReason).toBeNull();
  });

  it("a wrong password is HandshakeFailed(wrong_password), the leg closed with 4000 wrong_password", async () => {
    const Impl = makeSocketClass(undefined, "k7m2-9qzy");
    const err = await Channel.connect(connectOpts(Impl)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HandshakeFailed);
    expect((err as HandshakeFailed).reason).toBe("wrong_password");
    expect(FakeSocket.last?.closedWith).toEqual({ code: 4000, reason: "wrong_password" });
  });

  it("the agent's FAILURE reasons keep their names", async () => {
    for (const [code, name] of [[2, "password_replaced"], [3, "busy"], [4, "unsupported_version"], [5, "protocol_error"]] as const) {
      const Impl = makeSocketClass((p) => (p.failWith = code));
      const err = await Channel.connect(connectOpts(Impl)).catch((e: unknown) => e);
      expect((err as HandshakeFailed).reason).toBe(name);
    }
  });

  it("an agent that never answers: HandshakeFailed(timeout), the leg closed with handshake_failed", async () => {
    const Impl = makeSocketClass((p) => (p.silent = true));
    const err = await Channel.connect({ ...connectOpts(Impl), handshakeTimeoutMs: 50 }).catch((e: unknown) => e);
    expect((err as HandshakeFailed).reason).toBe("timeout");
    expect(FakeSocket.last?.closedWith).toEqual({ code: 4000, reason: "handshake_failed" });
  });

  it("a malformed password fails before anything is sent", async () => {
    FakeSocket.last = null;
    const err = await Channel.connect(connectOpts(makeSocketClass(), "k7m2-9qz")).catch((e: unknown) => e);
    expect((err as HandshakeFailed).reason).toBe("malformed_password");
    expect(FakeSocket.last).toBeNull();
  });

  it("a relay close before pairing is SessionEnded with the relay's reason", async () => {
    class Refused extends FakeSocket {
      override send(): void {
        this.closedByRelay(4000, "agent_disconnected");
      }
    }
    const err = await Channel.connect(connectOpts(Refused)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SessionEnded);
    expect((err as SessionEnded).reason).toBe("agent_disconnected");
  });
});

describe("the writer and flow control", () => {
  it("sends control before queued data and data streams round-robin, one slice each", async () => {
    const { channel, agent } = await connected();
    const a = await channel.openStream("file_put", { name: "a" });
    const b = await channel.openStream("rfb");
    const big = new Uint8Array(4 * SLICE);
    const wa = a.write(big);
    const wb = b.write(big);
    const wc = channel.sendControl(chat("hello", "2026-01-01T00:00:00+09:00"));
    await Promise.all([wa, wb, wc]);
    await agent.until(() => (agent.data.get(1) ?? 0) === big.length && (agent.data.get(3) ?? 0) === big.length);
    // OPENs first, then control, then a and b alternating.
    expect(kinds(agent).slice(0, 3)).toEqual(["1:1", "1:3", "2:0"]);
    expect(kinds(agent).slice(3, 11)).toEqual(["2:1", "2:3", "2:1", "2:3", "2:1", "2:3", "2:1", "2:3"]);
    expect(agent.frames.slice(3).every((f) => f.length - 5 <= SLICE)).toBe(true);
    expect(agent.control).toEqual([chat("hello", "2026-01-01T00:00:00+09:00")]);
  });

  it("a stream alone in the line sends a whole DATA frame to a record", async () => {
    const { channel, agent } = await connected();
    const a = await channel.openStream("file_put", { name: "a" });
    const big = new Uint8Array(4 * SLICE);
    await a.write(big);
    await agent.until(() => (agent.data.get(1) ?? 0) === big.length);
    expect(ALONE_SLICE).toBe(2 * SLICE);
    expect(kinds(agent).slice(1)).toEqual(["2:1", "2:1"]);
    expect(agent.frames.slice(1).map((f) => f.length - 5)).toEqual([ALONE_SLICE, ALONE_SLICE]);
  });

  it("a write waits for the peer's credit and goes on with its WINDOW", async () => {
    const { channel, agent } = await connected((p) => (p.autoCredit = false));
    const s = await channel.openStream("file_put");
    let done = false;
    const w = s.write(new Uint8Array(INITIAL_WINDOW + 1000)).then(() => (done = true));
    await agent.until(() => (agent.data.get(1) ?? 0) === INITIAL_WINDOW);
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    expect(agent.data.get(1)).toBe(INITIAL_WINDOW); // not a byte beyond the window
    agent.mux.consumed(1, INITIAL_WINDOW / 4); // the agent's application read a quarter
    await agent.flush();
    await w;
    await agent.until(() => (agent.data.get(1) ?? 0) === INITIAL_WINDOW + 1000);
  });

  it("reading returns credit: a WINDOW frame per quarter window consumed", async () => {
    const { channel, agent } = await connected();
    const s = await channel.openStream("file_get");
    await agent.until(() => agent.mux.isOpen(1));
    const chunk = new Uint8Array(MAX_DATA);
    for (let i = 0; i < 4; i++) agent.mux.sendData(1, chunk);
    await agent.flush();
    let got = 0;
    while (got < 4 * MAX_DATA) got += (await s.read())?.length ?? 0;
    await agent.until(() => agent.events.some((e) => e.type === "window"));
    expect(agent.events.filter((e) => e.type === "window")).toEqual([{ type: "window", streamId: 1, window: INITIAL_WINDOW }]);
  });
});

describe("ending", () => {
  it("the peer's end and close: closed resolves with its reason, streams end", async () => {
    const { channel, agent } = await connected();
    const s = await channel.openStream("rfb");
    const reading = s.read().catch((e: unknown) => e);
    await agent.sendControl(end("customer_ended", "画面を閉じました"));
    agent.sock.closedByRelay(4000, "customer_ended");
    expect(await channel.closed).toEqual({ reason: "customer_ended", detail: "画面を閉じました" });
    const err = await reading;
    expect(err).toBeInstanceOf(SessionEnded);
    expect((err as SessionEnded).reason).toBe("customer_ended");
    await expect(s.write(Uint8Array.of(1))).rejects.toThrow(SessionEnded);
  });

  it("a relay close without a reason is connection_lost", async () => {
    const { channel, agent } = await connected();
    agent.sock.closedByRelay(1006, "");
    expect((await channel.closed).reason).toBe("connection_lost");
  });

  it("close() sends `end` and closes the leg with 4000 and the reason", async () => {
    const { channel, agent } = await connected();
    await channel.close("technician_ended", "done");
    expect(await channel.closed).toEqual({ reason: "technician_ended", detail: "done" });
    await agent.until(() => agent.control.length > 0);
    expect(agent.control).toEqual([end("technician_ended", "done")]);
    expect(agent.sock.closedWith).toEqual({ code: 4000, reason: "technician_ended" });
  });

  it("a reason the technician may not assert waits for the peer's own end (then that is the reason)", async () => {
    const { channel, agent } = await connected();
    const closing = channel.close("customer_ended");
    await agent.sendControl(end("customer_ended"));
    agent.sock.closedByRelay(4000, "customer_ended");
    await closing;
    expect((await channel.closed).reason).toBe("customer_ended");
  });

  it("a record that does not open ends the session with protocol_error", async () => {
    const { channel, agent } = await connected();
    const record = await (agent.records as NonNullable<typeof agent.records>).seal(encodeFrame(FrameType.DATA, 0, new Uint8Array(0)));
    record[5] = (record[5] as number) ^ 1;
    agent.sock.deliver(record);
    expect((await channel.closed).reason).toBe("protocol_error");
    await new Promise((r) => setTimeout(r, 10));
    expect(agent.sock.closedWith).toEqual({ code: 4000, reason: "protocol_error" });
  });

  it("an invalid frame (EOF on the control stream) ends the session with protocol_error", async () => {
    const { channel, agent } = await connected();
    await agent.sendRaw(encodeFrame(FrameType.EOF, 0));
    expect((await channel.closed).reason).toBe("protocol_error");
  });
});

describe("control messages and the session helper", () => {
  it("messages before the first handler are kept for it; ask resolves with the answer", async () => {
    const { channel, agent } = await connected();
    await agent.sendControl(consent(true, ["screen", "control"]));
    await new Promise((r) => setTimeout(r, 20));
    const session = new TechnicianSession<Stream>(channel);
    expect(await session.consented).toEqual(consent(true, ["screen", "control"]));
    const asked = session.ask("terminal", {}, "diagnose");
    await agent.until(() => agent.control.some((m) => m.type === "request"));
    await agent.sendControl(answer(1, "terminal", true));
    expect((await asked).granted).toBe(true);
    expect(session.granted).toEqual(["screen", "control", "terminal"]);
    const denied = session.ask("screenshot");
    await agent.until(() => agent.control.filter((m) => m.type === "request").length === 2);
    await agent.sendControl(answer(2, "screenshot", false, "denied"));
    await expect(denied).rejects.toMatchObject({ name: "ConsentRefused", reason: "denied" });
  });

  it("an unknown message type is answered with error unknown_message and the session goes on", async () => {
    const { channel, agent } = await connected();
    new TechnicianSession(channel);
    const body = new TextEncoder().encode('{"type":"future_thing","x":1}');
    const framed = new Uint8Array(4 + body.length);
    new DataView(framed.buffer).setUint32(0, body.length);
    framed.set(body, 4);
    agent.mux.sendData(0, framed);
    await agent.flush();
    await agent.until(() => agent.control.some((m) => m.type === "error"));
    expect(agent.control[0]).toMatchObject({ type: "error", code: "unknown_message" });
    expect(channel.endReason).toBeNull();
  });

  it("counts bytes on the wire both ways, by stream kind", async () => {
    const { channel, agent } = await connected();
    const s = await channel.openStream("rfb");
    await s.write(new Uint8Array(1000));
    await agent.until(() => (agent.data.get(1) ?? 0) === 1000);
    await agent.until(() => agent.mux.isOpen(1));
    agent.mux.sendData(1, new Uint8Array(300));
    await agent.flush();
    expect((await s.read())?.length).toBe(300);
    const stats = channel.stats;
    expect(stats.sentByKind.rfb).toBe(1 + (5 + 1 + 3 + 2) + 16 + 1 + 5 + 1000 + 16); // OPEN + DATA records
    expect(stats.receivedByKind.rfb).toBe(1 + 5 + 300 + 16);
    expect(stats.bytesSent).toBe(stats.sentByKind.rfb);
  });
});

describe("rfbSocket (noVNC's channel object)", () => {
  it("has what noVNC's Websock.attach checks, delivers bytes, copies what it sends", async () => {
    const { channel, agent } = await connected();
    const sock = await rfbSocket(channel);
    const props = [...Object.keys(sock), ...Object.getOwnPropertyNames(Object.getPrototypeOf(sock))];
    for (const p of ["send", "close", "binaryType", "onerror", "onmessage", "onopen", "protocol", "readyState"]) {
      expect(props).toContain(p);
    }
    expect(sock.readyState).toBe("open");
    await agent.until(() => agent.mux.isOpen(1));
    agent.mux.sendData(1, new TextEncoder().encode("RFB 003.008\n"));
    await agent.flush();
    await new Promise((r) => setTimeout(r, 20));
    const got: string[] = [];
    sock.onmessage = (ev) => got.push(new TextDecoder().decode(ev.data)); // held bytes delivered now
    expect(got).toEqual(["RFB 003.008\n"]);
    const buf = new Uint8Array(8).fill(7);
    sock.send(buf.subarray(0, 4));
    buf.fill(9); // noVNC reuses its buffer right away
    await agent.until(() => (agent.data.get(1) ?? 0) === 4);
    const data = agent.events.find((e) => e.type === "data" && e.streamId === 1);
    expect(data).toEqual({ type: "data", streamId: 1, data: Uint8Array.of(7, 7, 7, 7) });
  });

  it("the agent's reset closes it with the reason; close() resets with viewer_closed", async () => {
    const { channel, agent } = await connected();
    const sock = await rfbSocket(channel);
    const closed = new Promise<{ code: number; reason: string }>((r) => (sock.onclose = r));
    await agent.until(() => agent.mux.isOpen(1));
    agent.mux.reset(1, "no_display");
    await agent.flush();
    expect(await closed).toMatchObject({ reason: "no_display" });
    expect(sock.endReason).toBe("no_display");
    const sock2 = await rfbSocket(channel);
    const closed2 = new Promise<{ code: number; reason: string }>((r) => (sock2.onclose = r));
    sock2.close();
    expect(await closed2).toEqual({ code: 1000, reason: "viewer_closed", wasClean: true });
    await agent.until(() => agent.events.some((e) => e.type === "reset"));
    expect(agent.events.find((e) => e.type === "reset")).toEqual({ type: "reset", streamId: 3, reason: "viewer_closed" });
    await expect((sock2.stream as Stream).read()).rejects.toThrow(StreamReset);
  });
});
