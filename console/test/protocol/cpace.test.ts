// The CPace primitives against the draft-irtf-cfrg-cpace-21 vectors the Python tests use
// (tests/protocol/vectors/, read from the repository), and the handshake's golden
// transcript from docs/protocol/handshake.md.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../../src/protocol/bytes";
import * as cpace from "../../src/protocol/cpace";
import { HandshakeError } from "../../src/protocol/errors";
import { AgentHandshake, TechnicianHandshake } from "../../src/protocol/handshake";
import { normalizePassword } from "../../src/protocol/password";

const VECTOR_FILE = new URL("../../../tests/protocol/vectors/cpace-draft21-testvectors.json", import.meta.url);
const all = JSON.parse(readFileSync(VECTOR_FILE, "utf8")) as Record<string, Record<string, unknown>>;
const v = Object.fromEntries(Object.entries(all.G_Coffee25519 as Record<string, string>).map(([k, x]) => [k, fromHex(x)])) as Record<string, Uint8Array>;
const points = all.G_Coffee25519_points as Record<string, unknown>;
const hex = (b: Uint8Array) => toHex(b);
const V = (k: string) => v[k] as Uint8Array;

describe("CPace vectors (G_Coffee25519)", () => {
  it("covers every key of the suite's entries", () => {
    expect(Object.keys(all.G_Coffee25519 as object).sort()).toEqual(
      ["PRS", "CI", "sid", "ADa", "ADb", "ya", "yb", "g", "Ya", "Yb", "K", "ISK_IR", "ISK_SY", "sid_output_ir", "sid_output_oc"].sort(),
    );
    expect(Object.keys(points).sort()).toEqual(["Invalid Y1", "Invalid Y2", "Valid"]);
  });

  it("string utilities", () => {
    expect(hex(cpace.prependLen(new Uint8Array(0)))).toBe("00");
    expect(hex(cpace.prependLen(new TextEncoder().encode("1234")))).toBe("0431323334");
    expect(hex(cpace.prependLen(new Uint8Array(128)).subarray(0, 2))).toBe("8001");
    expect(hex(cpace.prependLen(new Uint8Array(300)).subarray(0, 2))).toBe("ac02");
    const e = (s: string) => new TextEncoder().encode(s);
    expect(hex(cpace.lvCat(e("1234"), e("5"), e(""), e("678")))).toBe("043132333401350003363738");
    expect(hex(cpace.transcriptIr(e("123"), e("PartyA"), e("234"), e("PartyB")))).toBe("03313233065061727479410332333406506172747942");
    expect(new TextDecoder().decode(cpace.oCat(e("ABCD"), e("BCD")))).toBe("ocBCDABCD");
    expect(new TextDecoder().decode(cpace.oCat(e("BCD"), e("ABCDE")))).toBe("ocBCDABCDE");
  });

  it("generator string and generator (deriveToCurve, as libsodium's from_hash)", () => {
    const gen = cpace.generatorString(V("PRS"), V("CI"), V("sid"));
    expect(gen.length).toBe(170);
    expect(hex(cpace.calculateGenerator(V("PRS"), V("CI"), V("sid")))).toBe(hex(V("g")));
  });

  it("shares, secret point, ISKs, sid outputs", () => {
    expect(hex(cpace.scalarMult(V("ya"), V("g")))).toBe(hex(V("Ya")));
    expect(hex(cpace.scalarMult(V("yb"), V("g")))).toBe(hex(V("Yb")));
    expect(hex(cpace.scalarMultVfy(V("ya"), V("Yb")))).toBe(hex(V("K")));
    expect(hex(cpace.scalarMultVfy(V("yb"), V("Ya")))).toBe(hex(V("K")));
    expect(hex(cpace.deriveIsk(V("sid"), V("K"), V("Ya"), V("ADa"), V("Yb"), V("ADb")))).toBe(hex(V("ISK_IR")));
    expect(hex(cpace.deriveIskSymmetric(V("sid"), V("K"), V("Ya"), V("ADa"), V("Yb"), V("ADb")))).toBe(hex(V("ISK_SY")));
    expect(hex(cpace.sidOutput(cpace.transcriptIr(V("Ya"), V("ADa"), V("Yb"), V("ADb"))))).toBe(hex(V("sid_output_ir")));
    expect(hex(cpace.sidOutput(cpace.transcriptOc(V("Ya"), V("ADa"), V("Yb"), V("ADb"))))).toBe(hex(V("sid_output_oc")));
  });

  it("valid point and invalid points", () => {
    const valid = Object.fromEntries(Object.entries(points.Valid as Record<string, string>).map(([k, x]) => [k, fromHex(x)])) as Record<string, Uint8Array>;
    expect(hex(cpace.scalarMult(valid.s as Uint8Array, valid.X as Uint8Array))).toBe(hex(valid["G.scalar_mult(s,decode(X))"] as Uint8Array));
    expect(hex(cpace.scalarMultVfy(valid.s as Uint8Array, valid.X as Uint8Array))).toBe(hex(valid["G.scalar_mult_vfy(s,X)"] as Uint8Array));
    for (const name of ["Invalid Y1", "Invalid Y2"]) {
      expect(() => cpace.scalarMultVfy(valid.s as Uint8Array, fromHex(points[name] as string))).toThrow(HandshakeError);
    }
  });

  it("refuses bad and non-canonical encodings", () => {
    const one = new Uint8Array(32);
    one[0] = 1;
    const p = new Uint8Array(32).fill(0xff);
    p[0] = 0xed;
    p[31] = 0x7f;
    const odd = new Uint8Array(32);
    odd[0] = 1;
    for (const bad of [new Uint8Array(0), new Uint8Array(31), new Uint8Array(33), new Uint8Array(32).fill(0xff), p, odd, new Uint8Array(32)]) {
      expect(() => cpace.scalarMultVfy(one, bad)).toThrow(HandshakeError);
    }
    const y = Uint8Array.from(V("Ya"));
    y[31] = (y[31] as number) | 0x80;
    expect(() => cpace.scalarMultVfy(V("yb"), y)).toThrow(HandshakeError);
  });

  it("key confirmation tags", () => {
    const key = cpace.macKey(V("sid"), V("ISK_IR"));
    const ta = cpace.confirmationTag(key, V("Ya"), V("ADa"));
    const tb = cpace.confirmationTag(key, V("Yb"), V("ADb"));
    expect(ta.length).toBe(64);
    expect(cpace.verifyTag(ta, ta)).toBe(true);
    expect(cpace.verifyTag(ta, tb)).toBe(false);
  });

  it("samples scalars as the draft says", () => {
    expect(hex(cpace.sampleScalar((n) => new Uint8Array(n).fill(0xff)))).toBe("ff".repeat(31) + "0f");
    const draws = [new Uint8Array(32), Uint8Array.from([7, ...new Uint8Array(31)])];
    expect(hex(cpace.sampleScalar(() => draws.shift() as Uint8Array))).toBe("07" + "00".repeat(31));
  });
});

describe("password normalisation", () => {
  it("folds the ways a person types it", () => {
    const dec = (s: string) => new TextDecoder().decode(normalizePassword(s));
    expect(dec("ABCD EFGH")).toBe("abcdefgh");
    expect(dec("ａｂｃｄ－ｅｆｇｈ")).toBe("abcdefgh");
    expect(dec("k7m2ー9qzx")).toBe("k7m29qzx");
    expect(dec("OIL0-uuuu")).toBe("0110vvvv");
    expect(() => normalizePassword("abcd-efg!")).toThrow(/character 9/);
    expect(() => normalizePassword("abcd")).toThrow(/has 4/);
  });
});

describe("golden handshake transcript (docs/protocol/handshake.md)", () => {
  it("reproduces every message and the first records", async () => {
    const range = (a: number, b: number) => Uint8Array.from({ length: b - a }, (_, i) => a + i);
    const scripted = (...chunks: Uint8Array[]) => (n: number) => {
      const c = chunks.shift() as Uint8Array;
      expect(c.length).toBe(n);
      return c;
    };
    const agent = new AgentHandshake("k7m2-9qzx", "123456789", { randbytes: scripted(range(16, 32), range(32, 64)) });
    const tech = new TechnicianHandshake("K7M2 9QZX", "123456789", { randbytes: scripted(range(0, 16), range(64, 96)) });
    const hello = tech.start();
    expect(hex(hello)).toBe("010101000102030405060708090a0b0c0d0e0f");
    const [shareA] = agent.receive(hello) as [Uint8Array];
    expect(hex(shareA)).toBe("02101112131415161718191a1b1c1d1e1f322ebdf22acd977cc2881492b5ce7914c743b7c52690fd9f08caf890e1369a570c656e6b616b75206167656e74");
    const [shareB] = tech.receive(shareA) as [Uint8Array];
    expect(hex(shareB)).toBe(
      "033887a7cdca5ba96703fbfcc24b5dfb8ccfd9c307be95436049d5a08525e8dd0311656e6b616b7520746563686e696369616e2c000e635f011b8981cee896c5a8154e6ee4b1228fd123d04a486de0b59042e14dd63883453e00249739f8eb90e11d017c34b65cbf817375da90cb154143011f",
    );
    const [confirm] = agent.receive(shareB) as [Uint8Array];
    expect(hex(confirm)).toBe("04d3efa88646baa56e23baa6aaae041786a75381078a6c9ac8c68fa176e0c6f39a0955e1e34babaad2ee71c508261f2ce69221e312f8f201988e464e84acaedf58");
    expect(tech.receive(confirm)).toEqual([]);
    const hello5 = new TextEncoder().encode("hello");
    expect(hex(await agent.channel.seal(hello5))).toBe("10772e3e2892dfb8af1344587f851aba53b6cb639184");
    expect(hex(await tech.channel.seal(hello5))).toBe("10ed93ddc7067cd0bd05679c6c783599053b143d7ae6");
  });
});
