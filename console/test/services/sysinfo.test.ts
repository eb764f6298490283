import { describe, expect, it } from "vitest";
import { ConsentRefused } from "../../src/services/common";
import {
  SYSINFO_MAX_BYTES,
  SysinfoError,
  fetchSystemInfo,
  humanBytes,
  printable,
  readReport,
  reportToJson,
  reportToText,
  reportView,
} from "../../src/services/sysinfo";
import { FakeSession, streamPair, utf8, vectors } from "./pair";

const sample = vectors.sysinfo.report as Record<string, unknown>;

describe("system information", () => {
  it("asks, opens system_info with the grant, and reads the agent's document", async () => {
    const session = new FakeSession(async (agent) => {
      const body = utf8(JSON.stringify(sample));
      await agent.write(body.subarray(0, 10));
      await agent.write(body.subarray(10));
      await agent.writeEof();
    });
    const asking: string[] = [];
    const report = await fetchSystemInfo(session, { purpose: "slow disk", onAsking: (a) => asking.push(a) });
    expect(report).toEqual(sample);
    expect(session.asked).toEqual([{ action: "system_info", details: {}, purpose: "slow disk" }]);
    expect(asking).toEqual(["system_info"]);
    expect(session.opened[0]!.kind).toBe("system_info");
    expect(session.opened[0]!.params).toEqual({ grant: 1 });
    expect(session.opened[0]!.wroteEof).toBe(true); // the stream is closed both ways
  });

  it("does not ask again while the session grant is in force", async () => {
    const session = new FakeSession(async (agent) => {
      await agent.write(utf8("{}"));
      await agent.writeEof();
    });
    session.inForce = ["screen", "system_info"];
    expect(await fetchSystemInfo(session)).toEqual({});
    expect(session.asked).toEqual([]);
    expect(session.opened[0]!.params).toEqual({});
  });

  it("a refusal is a ConsentRefused carrying the reason, and opens nothing", async () => {
    const session = new FakeSession(() => {}, [{ granted: false, reason: "timeout" }]);
    const err = await fetchSystemInfo(session).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsentRefused);
    expect((err as ConsentRefused).reason).toBe("timeout");
    expect((err as ConsentRefused).action).toBe("system_info");
    expect(session.opened).toEqual([]);
  });

  it("refuses more than 8 MiB and resets the stream", async () => {
    const [tech, agent] = streamPair("system_info");
    const big = new Uint8Array(1024 * 1024).fill(0x20);
    const feeding = (async () => {
      for (let i = 0; i <= SYSINFO_MAX_BYTES / big.length; i++) await agent.write(big);
    })().catch(() => {});
    const err = await readReport(tech).catch((e: unknown) => e);
    await feeding;
    expect(err).toBeInstanceOf(SysinfoError);
    expect((err as SysinfoError).code).toBe("too_large");
    expect(tech.sentReset).toBe("system_info_too_large");
  });

  it("a reset stream, bad JSON and a non-object are errors with their code", async () => {
    const cases: Array<[(agent: ReturnType<typeof streamPair>[1]) => Promise<void>, string]> = [
      [(a) => a.reset("service_error"), "reset"],
      [async (a) => (await a.write(utf8("{not json")), await a.writeEof()), "invalid"],
      [async (a) => (await a.write(new Uint8Array([0x7b, 0xff, 0x7d])), await a.writeEof()), "invalid"],
      [async (a) => (await a.write(utf8("[1, 2]")), await a.writeEof()), "not_object"],
    ];
    for (const [agentDoes, code] of cases) {
      const [tech, agent] = streamPair("system_info");
      await agentDoes(agent);
      const err = await readReport(tech).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SysinfoError);
      expect((err as SysinfoError).code).toBe(code);
    }
  });

  it("exports the same JSON as the Python report.to_json, findings first", () => {
    // The sample has its findings last, as the agent's collect() leaves them.
    expect(Object.keys(sample).at(-1)).toBe("findings");
    expect(reportToJson(sample)).toBe(vectors.sysinfo.json);
    expect(Object.keys(JSON.parse(reportToJson(sample))).slice(0, 2)).toEqual(["format", "findings"]);
  });

  it("the view has findings first, labels in the language, sizes in words", () => {
    const ja = reportView(sample, "ja");
    expect(ja.findings.map((f) => [f.severity, f.severityLabel, f.title])).toEqual([["critical", "重大", "メモリ不足"]]);
    expect(ja.findings[0]!.evidence[0]).toEqual({ key: "available", label: expect.any(String), value: "409.6 MiB" });
    expect(ja.noFindings).toBeNull();
    expect(ja.groups.map((g) => g.name)).toEqual(["hardware", "services"]);
    expect(ja.groups[0]!.label).toBe("ハードウェア");
    const memory = ja.groups[0]!.sections[0]!;
    expect(memory.ok).toBe(true);
    expect(memory.value).toMatchObject({ type: "fields", rows: [{ key: "total", value: { type: "text", text: "8.0 GiB" } }, { key: "available" }] });
    const services = ja.groups[1]!.sections[0]!;
    expect([services.ok, services.why]).toEqual([false, "systemd なし"]);

    const en = reportView({ ...sample, findings: [] }, "en");
    expect(en.noFindings).toBe("No problems were found in the information that could be read.");
    const text = reportToText(sample, "en");
    expect(text.indexOf("Memory is low")).toBeLessThan(text.indexOf("Hardware"));
    expect(text).toContain("Not available: no systemd");
  });

  it("sizes read like the Python report's", () => {
    for (const [n, shown] of vectors.files.human_bytes as Array<[number, string]>) expect(humanBytes(n)).toBe(shown);
  });

  it("hostile strings lose control and direction characters", () => {
    expect(printable("a\x1b[31mb\u202ec\nd", 100)).toBe("a[31mbc d");
    const view = reportView({ sections: { x: { ok: true, data: { name: "evil\u202e\x07" } } } }, "en");
    expect(view.groups[0]!.name).toBe("other");
    expect(view.groups[0]!.sections[0]!.value).toMatchObject({ type: "fields", rows: [{ value: { text: "evil" } }] });
  });
});
