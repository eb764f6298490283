// A JS technician against a real server and a real Python agent: driven by
// tests/console/test_js_channel.py, which starts both, asks the server for a session and
// runs this file with the session in the environment. Without that environment (a plain
// `npx vitest run`) it is skipped: it needs the Python side to mean anything.
//
// It completes the handshake, waits for the customer's consent, opens the `rfb` stream
// through the noVNC adapter and reads the RFB ProtocolVersion and ServerInit, asks for
// system information and reads it, sends a chat line and ends the session. What it saw
// goes to ENKAKU_E2E_RESULT (JSON) for the Python test to check.
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { Channel } from "../../src/protocol/channel";
import { TechnicianSession } from "../../src/protocol/control";
import { rfbSocket } from "../../src/protocol/rfbsocket";

const env = process.env;
const ready = Boolean(env.ENKAKU_E2E_RELAY_URL && env.ENKAKU_E2E_RESULT);

/** Bytes from the adapter's onmessage, read by exact counts as an RFB client does. */
class Received {
  private buf = new Uint8Array(0);
  private waiter: (() => void) | null = null;
  push(data: ArrayBuffer): void {
    const next = new Uint8Array(this.buf.length + data.byteLength);
    next.set(this.buf);
    next.set(new Uint8Array(data), this.buf.length);
    this.buf = next;
    this.waiter?.();
  }
  async take(n: number): Promise<Uint8Array> {
    while (this.buf.length < n) await new Promise<void>((resolve) => (this.waiter = resolve));
    const out = this.buf.slice(0, n);
    this.buf = this.buf.slice(n);
    return out;
  }
}

describe.skipIf(!ready)("JS technician with the Python agent (run by tests/console/test_js_channel.py)", () => {
  it("handshake, consent, rfb, system information, chat, end", { timeout: 120_000 }, async () => {
    const result: Record<string, unknown> = {};
    const channel = await Channel.connect({
      relayUrl: env.ENKAKU_E2E_RELAY_URL as string,
      relayToken: env.ENKAKU_E2E_RELAY_TOKEN as string,
      agentId: env.ENKAKU_E2E_AGENT_ID as string,
      password: env.ENKAKU_E2E_PASSWORD as string,
      WebSocketImpl: WebSocket,
    });
    const session = new TechnicianSession(channel);
    const chats: string[] = [];
    session.on("chat", (c) => chats.push(c.text));
    const consent = await session.consented;
    result.consent = consent;

    // noVNC's side of the adapter: what RFB's Websock.attach() does with it.
    const sock = await rfbSocket(channel);
    expect(sock.readyState).toBe("open");
    const rx = new Received();
    sock.binaryType = "arraybuffer";
    sock.onmessage = (ev) => rx.push(ev.data);
    const version = await rx.take(12);
    result.rfb_version = new TextDecoder().decode(version);
    // noVNC reuses its send buffer: the adapter must have copied it before we scribble.
    const sendBuf = new Uint8Array(64);
    sendBuf.set(version);
    sock.send(sendBuf.subarray(0, 12));
    sendBuf.fill(0xee);
    const nTypes = (await rx.take(1))[0] as number;
    const types = Array.from(await rx.take(nTypes));
    result.security_types = types;
    sendBuf[0] = 1; // None: the channel is the security
    sock.send(sendBuf.subarray(0, 1));
    sendBuf[0] = 0xee;
    const secResult = new DataView((await rx.take(4)).buffer).getUint32(0);
    result.security_result = secResult;
    sock.send(Uint8Array.of(1)); // ClientInit: shared
    const init = await rx.take(24);
    const view = new DataView(init.buffer);
    result.width = view.getUint16(0);
    result.height = view.getUint16(2);
    const nameLen = view.getUint32(20);
    result.name = new TextDecoder().decode(await rx.take(nameLen));

    const grant = await session.ask("system_info", {}, "e2e check");
    const info = await session.open("system_info", {}, grant);
    const parts: Uint8Array[] = [];
    for (let chunk = await info.read(); chunk !== null; chunk = await info.read()) parts.push(chunk);
    const report = JSON.parse(new TextDecoder().decode(Buffer.concat(parts)));
    result.system_info_keys = Object.keys(report).sort();

    await session.chat(env.ENKAKU_E2E_CHAT as string);
    const closedEvent = new Promise<{ code: number; reason: string }>((resolve) => (sock.onclose = resolve));
    sock.close();
    result.rfb_close = await closedEvent;
    result.stats_before_end = channel.stats;
    result.granted = session.granted;
    await channel.close("technician_ended");
    result.closed = await channel.closed;
    result.chats = chats;
    writeFileSync(env.ENKAKU_E2E_RESULT as string, JSON.stringify(result));
  });
});
