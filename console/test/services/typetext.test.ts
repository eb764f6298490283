import { describe, expect, it } from "vitest";
import { ConsentRefused } from "../../src/services/common";
import { MAX_CHARS, TypeTextError, checkText, typeText } from "../../src/services/typetext";
import { FakeSession, type MemStream, b64, text, vectors } from "./pair";

/** The agent's side as typetext.serve behaves: read to EOF, answer the count. */
async function typingAgent(agent: MemStream, typed: string[]): Promise<void> {
  const body = text(await agent.readAll());
  typed.push(body);
  await agent.write(b64(vectors.type_text.done_line)); // {"ok":true,"typed":7}
  await agent.writeEof();
}

describe("type this text", () => {
  it("asks for control, sends the text as the stream's bytes, reads the count", async () => {
    const typed: string[] = [];
    const session = new FakeSession((agent) => typingAgent(agent, typed));
    const asking: string[] = [];
    const n = await typeText(session, 'p|~_"@日', { purpose: "login", onAsking: (a) => asking.push(a) });
    expect(n).toBe(7);
    expect(typed).toEqual(['p|~_"@日']);
    expect(session.asked).toEqual([{ action: "control", details: {}, purpose: "login" }]);
    expect(asking).toEqual(["control"]);
    const stream = session.opened[0]!;
    expect([stream.kind, stream.params]).toEqual(["type_text", { grant: 1 }]); // the text is not a parameter
  });

  it("uses control in force without asking", async () => {
    const session = new FakeSession((agent) => typingAgent(agent, []));
    session.inForce = ["screen", "control"];
    expect(await typeText(session, "x")).toBe(7);
    expect(session.asked).toEqual([]);
    expect(session.opened[0]!.params).toEqual({});
  });

  it("checks the text like the agent, before asking anything", async () => {
    expect(MAX_CHARS).toBe(vectors.type_text.max_chars);
    checkText("a\tb\r\nc");
    checkText("あ".repeat(MAX_CHARS));
    checkText("😀".repeat(MAX_CHARS)); // code points, not UTF-16 units
    for (const [bad, reason] of [
      ["", "text_empty"],
      ["a\x1b[2J", "bad_text"],
      ["\x7f", "bad_text"],
      ["\u0085", "bad_text"],
      ["\ud800", "bad_text"],
      ["x".repeat(MAX_CHARS + 1), "text_too_long"],
    ] as const) {
      const session = new FakeSession(() => {});
      const err = await typeText(session, bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TypeTextError);
      expect((err as TypeTextError).reason).toBe(reason);
      expect(session.asked).toEqual([]);
    }
  });

  it("the agent's refusals and a paused control carry their reason", async () => {
    for (const reason of ["control_paused", "no_display", "input_failed", "consent_required"]) {
      const session = new FakeSession(async (agent) => {
        await agent.readAll();
        await agent.reset(reason);
      });
      const err = await typeText(session, "secret").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TypeTextError);
      expect((err as TypeTextError).reason).toBe(reason);
    }
    const refused = new FakeSession(() => {}, [{ granted: false, reason: "policy" }]);
    const err = await typeText(refused, "x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsentRefused);
    expect((err as ConsentRefused).reason).toBe("policy");
  });

  it("a malformed answer is bad_answer", async () => {
    const session = new FakeSession(async (agent) => {
      await agent.readAll();
      await agent.write(new TextEncoder().encode('{"ok":true}\n'));
      await agent.writeEof();
    });
    const err = await typeText(session, "x").catch((e: unknown) => e);
    expect((err as TypeTextError).reason).toBe("bad_answer");
  });
});
