// The service clients on protocol/control.ts's real TechnicianSession: the consent
// request goes out as the control message the agent reads, its answer comes back.
import { describe, expect, it } from "vitest";
import type { Stream } from "../../src/protocol/channel";
import { type AnyMessage, type ControlChannel, type Message, TechnicianSession } from "../../src/protocol/control";
import { ConsentRefused } from "../../src/services/common";
import { fetchSystemInfo } from "../../src/services/sysinfo";
import { TypeTextError, typeText } from "../../src/services/typetext";
import { type MemStream, b64, streamPair, utf8, vectors } from "./pair";

class AgentSide implements ControlChannel<Stream> {
  readonly sent: Message[] = [];
  readonly streams: MemStream[] = [];
  endReason: string | null = null;
  readonly closed = new Promise<{ reason: string }>(() => {});
  private handler: ((msg: AnyMessage) => void) | null = null;

  constructor(
    private readonly answerWith: (msg: Message) => Message | null,
    private readonly serve: (agent: MemStream) => Promise<void>,
  ) {}

  async sendControl(msg: Message): Promise<void> {
    this.sent.push(msg);
    const reply = this.answerWith(msg);
    if (reply !== null) queueMicrotask(() => this.handler?.(reply));
  }

  onControl(handler: (msg: AnyMessage) => void): () => void {
    this.handler = handler;
    return () => (this.handler = null);
  }

  /** The agent says what is in force now (a status message). */
  status(granted: string[], paused = false): void {
    this.handler?.({ type: "status", control_paused: paused, granted } as Message);
  }

  async openStream(kind: string, params: Record<string, unknown> = {}): Promise<Stream> {
    const [tech, agent] = streamPair(kind, params);
    this.streams.push(tech);
    void this.serve(agent);
    return tech;
  }
}

const grant = (msg: Message): Message | null =>
  msg.type === "request" ? { type: "answer", id: msg.id, action: msg.action, granted: true } : null;

describe("services on the TechnicianSession", () => {
  it("system information: request, answer, stream with the grant", async () => {
    const channel = new AgentSide(grant, async (agent) => {
      await agent.write(utf8('{"format":"enkaku.system_info/1"}'));
      await agent.writeEof();
    });
    const session = new TechnicianSession<Stream>(channel);
    const report = await fetchSystemInfo(session, { purpose: "slow" });
    expect(report).toEqual({ format: "enkaku.system_info/1" });
    expect(channel.sent).toEqual([{ type: "request", id: 1, action: "system_info", details: {}, purpose: "slow" }]);
    expect(channel.streams[0]!.params).toEqual({ grant: 1 });

    // Granted for the session: the next report is not asked again.
    await fetchSystemInfo(session);
    expect(channel.sent.length).toBe(1);
    expect(channel.streams[1]!.params).toEqual({});
  });

  it("a refusal from the agent is ConsentRefused with its reason", async () => {
    const channel = new AgentSide(
      (msg) => (msg.type === "request" ? { type: "answer", id: msg.id, action: msg.action, granted: false, reason: "timeout" } : null),
      async () => {},
    );
    const err = await typeText(new TechnicianSession<Stream>(channel), "pw").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsentRefused);
    expect([(err as ConsentRefused).action, (err as ConsentRefused).reason]).toEqual(["control", "timeout"]);
    expect(channel.streams).toEqual([]);
  });

  it("paused control is refused at once, in its own words", async () => {
    const channel = new AgentSide(grant, async () => {});
    const session = new TechnicianSession<Stream>(channel);
    channel.status(["screen", "control"], true);
    const err = await typeText(session, "pw").catch((e: unknown) => e);
    expect((err as TypeTextError).reason).toBe("control_paused");
    expect(channel.streams).toEqual([]);
  });

  it("control in force (the agent's status) is not asked again", async () => {
    const channel = new AgentSide(grant, async (agent) => {
      await agent.readAll();
      await agent.write(b64(vectors.type_text.done_line));
      await agent.writeEof();
    });
    const session = new TechnicianSession<Stream>(channel);
    channel.status(["screen", "control"]);
    expect(await typeText(session, "pw")).toBe(7);
    expect(channel.sent).toEqual([]);
  });
});
