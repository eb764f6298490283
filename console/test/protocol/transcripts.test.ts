// Replays the transcripts the Python implementation recorded (tests/protocol/transcripts/,
// made by tests/protocol/record_transcripts.py, kept current by test_transcripts.py):
// the JS technician must produce the same bytes from the same inputs, and must decrypt
// and parse everything the agent sent.
import { readFileSync } from "node:fs";
import { sha256 } from "@noble/hashes/sha2.js";
import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../../src/protocol/bytes";
import * as control from "../../src/protocol/control";
import { ProtocolError, RecordError } from "../../src/protocol/errors";
import { PeerRejectedPassword, TechnicianHandshake } from "../../src/protocol/handshake";
import { RecordChannel, deriveDirectionKeys, nextKey } from "../../src/protocol/records";
import { Mux, type MuxEvent } from "../../src/protocol/streams";

// The transcripts are JSON of the shapes record_transcripts.py writes.
type J = any;
const load = (name: string): J => JSON.parse(readFileSync(new URL(`../../../tests/protocol/transcripts/${name}`, import.meta.url), "utf8"));

const scripted = (draws: string[]) => {
  const queue = [...draws];
  return (n: number) => {
    const next = queue.shift();
    if (next === undefined) throw new Error("more randomness drawn than the Python side drew");
    const bytes = fromHex(next);
    expect(bytes.length).toBe(n);
    return bytes;
  };
};

/** A mux event as the Python recorder writes it. */
function eventJson(ev: MuxEvent): J {
  switch (ev.type) {
    case "opened":
      return { type: "opened", stream_id: ev.streamId, kind: ev.kind, params: ev.params };
    case "data":
      return ev.data.length > 256
        ? { type: "data", stream_id: ev.streamId, length: ev.data.length, sha256: toHex(sha256(ev.data)) }
        : { type: "data", stream_id: ev.streamId, data: toHex(ev.data) };
    case "window":
      return { type: "window", stream_id: ev.streamId, window: ev.window };
    case "ended":
      return { type: "ended", stream_id: ev.streamId };
    case "reset":
      return { type: "reset", stream_id: ev.streamId, reason: ev.reason };
  }
}

const messageJson = (m: control.AnyMessage): J => (m instanceof control.UnknownMessage ? { unknown: m.type } : { ...m });

describe("handshake transcript", () => {
  const t = load("handshake.json");

  it("establishes with the same messages and keys", async () => {
    const ok = t.established;
    const tech = new TechnicianHandshake(ok.technician_password, ok.agent_id, { randbytes: scripted(ok.technician_randomness) });
    expect(toHex(tech.start())).toBe(ok.messages.hello);
    const [share] = tech.receive(fromHex(ok.messages.agent_share));
    expect(toHex(share as Uint8Array)).toBe(ok.messages.tech_share);
    expect(tech.receive(fromHex(ok.messages.agent_confirm))).toEqual([]);
    expect(tech.state).toBe("established");
    expect(toHex(tech.sid)).toBe(ok.derived.sid);
    const [a2t, t2a] = deriveDirectionKeys(fromHex(ok.derived.isk), fromHex(ok.derived.sid));
    expect(toHex(a2t)).toBe(ok.derived.key_agent_to_technician);
    expect(toHex(t2a)).toBe(ok.derived.key_technician_to_agent);
  });

  it("a wrong password: same share, then the agent's FAILURE is PeerRejectedPassword", () => {
    const bad = t.wrong_password;
    expect(bad.outcome).toBe("wrong_password");
    const tech = new TechnicianHandshake(bad.technician_password, bad.agent_id, { randbytes: scripted(bad.technician_randomness) });
    expect(toHex(tech.start())).toBe(bad.messages.hello);
    const [share] = tech.receive(fromHex(bad.messages.agent_share));
    expect(toHex(share as Uint8Array)).toBe(bad.messages.tech_share);
    expect(() => tech.receive(fromHex(bad.messages.failure))).toThrow(PeerRejectedPassword);
    expect(tech.state).toBe("failed");
  });

  it("a tampered AGENT_CONFIRM fails the technician (wrong password)", () => {
    const ok = t.established;
    const tech = new TechnicianHandshake(ok.technician_password, ok.agent_id, { randbytes: scripted(ok.technician_randomness) });
    tech.start();
    tech.receive(fromHex(ok.messages.agent_share));
    const confirm = fromHex(ok.messages.agent_confirm);
    confirm[10] = (confirm[10] as number) ^ 1;
    expect(() => tech.receive(confirm)).toThrow(/wrong password/);
  });
});

describe("records transcript", () => {
  const t = load("records.json");
  const isk = fromHex(t.isk);
  const sid = fromHex(t.sid);

  it("derives the same keys, updated keys included", () => {
    const [a2t, t2a] = deriveDirectionKeys(isk, sid);
    expect(toHex(a2t)).toBe(t.key_agent_to_technician);
    expect(toHex(t2a)).toBe(t.key_technician_to_agent);
    expect(toHex(nextKey(a2t))).toBe(t.updated_key_agent_to_technician);
    expect(toHex(nextKey(t2a))).toBe(t.updated_key_technician_to_agent);
  });

  it("seals the technician's records byte for byte across the key update", async () => {
    const tech = new RecordChannel(isk, sid, "technician", t.rekey_after);
    // All at once: the chaining keeps counters in call order whatever WebCrypto does.
    const sealed = await Promise.all(t.technician_records.map((r: J) => tech.seal(fromHex(r.plaintext))));
    expect(sealed.map(toHex)).toEqual(t.technician_records.map((r: J) => r.record));
  });

  it("opens the agent's records in order across the key update", async () => {
    const tech = new RecordChannel(isk, sid, "technician", t.rekey_after);
    const opened = await Promise.all(t.agent_records.map((r: J) => tech.open(fromHex(r.record))));
    expect(opened.map(toHex)).toEqual(t.agent_records.map((r: J) => r.plaintext));
    expect(tech.recordsReceived).toBe(t.agent_records.length);
  });

  it("a dropped, replayed, reordered, reflected or tampered record is fatal", async () => {
    const recs = t.agent_records.map((r: J) => fromHex(r.record));
    const cases: Uint8Array[][] = [
      [recs[0], recs[2]], // dropped
      [recs[0], recs[0]], // replayed
      [recs[1], recs[0]], // reordered
      [fromHex(t.technician_records[0].record)], // reflected: sealed with the other key
      [Uint8Array.from(recs[1] as Uint8Array).map((b, i) => (i === 3 ? b ^ 0x80 : b))], // tampered
      [Uint8Array.of(0x11, ...(recs[1] as Uint8Array).subarray(1))], // wrong type byte
      [new Uint8Array(16)], // too short
    ];
    for (const sequence of cases) {
      const tech = new RecordChannel(isk, sid, "technician", t.rekey_after);
      const results = await Promise.allSettled([...sequence, recs[3] as Uint8Array].map((r) => tech.open(r)));
      const last = results[results.length - 1] as PromiseSettledResult<Uint8Array>;
      expect(last.status).toBe("rejected"); // everything after the failure fails too
      expect(results.some((r) => r.status === "rejected" && r.reason instanceof RecordError)).toBe(true);
      expect(tech.failed).toBe(true);
      await expect(tech.seal(new Uint8Array(1))).rejects.toThrow(RecordError);
    }
  });

  it("an oversized plaintext is refused without harming the channel", async () => {
    const tech = new RecordChannel(isk, sid, "technician", t.rekey_after);
    expect(() => tech.seal(new Uint8Array(65537))).toThrow(RangeError);
    expect(toHex(await tech.seal(fromHex(t.technician_records[0].plaintext)))).toBe(t.technician_records[0].record);
  });
});

describe("mux transcript", () => {
  const t = load("mux.json");

  it("the technician's frames and the events of the agent's frames are the same", () => {
    const tech = new Mux("technician");
    for (const step of t.steps) {
      if (step.side === "technician") {
        const op = step.op;
        let result: number | undefined;
        if (op.op === "open") result = tech.openStream(op.kind, op.params);
        else if (op.op === "data") {
          const data = op.pattern ? Uint8Array.from({ length: op.length }, (_, i) => i % op.pattern) : fromHex(op.data);
          result = tech.sendData(op.stream, data);
        } else if (op.op === "eof") tech.sendEof(op.stream);
        else if (op.op === "reset") tech.reset(op.stream, op.reason);
        else if (op.op === "consumed") tech.consumed(op.stream, op.n);
        else throw new Error(`unknown op ${op.op}`);
        if (step.result !== undefined) expect(result).toBe(step.result);
        expect(tech.framesToSend().map(toHex)).toEqual(step.frames);
      } else {
        const events = step.frames.map((f: string) => tech.receiveFrame(fromHex(f)).map(eventJson));
        expect(events).toEqual(step.events);
      }
    }
    expect(tech.receiveFrame(fromHex(t.dropped))).toEqual([]);
  });

  it("refuses what the Python Mux refuses", () => {
    for (const [name, frame] of Object.entries(t.invalid_for_technician as Record<string, string>)) {
      expect(() => new Mux("technician").receiveFrame(fromHex(frame)), name).toThrow(ProtocolError);
    }
    const big = new Uint8Array(5 + 32 * 1024 + 1);
    big[0] = 2;
    expect(() => new Mux("technician").receiveFrame(big)).toThrow(ProtocolError);
  });
});

describe("control transcript", () => {
  const t = load("control.json");

  it("encodes every message as the Python side does, and parses it back", () => {
    for (const { message, bytes } of t.encoded) {
      expect(toHex(control.encode(message as control.Message))).toBe(bytes);
      const [parsed] = new control.ControlReader().feed(fromHex(bytes));
      expect(messageJson(parsed as control.AnyMessage)).toEqual(message);
    }
  });

  it("reassembles messages split across and packed into DATA frames", () => {
    const all = fromHex(t.encoded.map((e: J) => e.bytes).join(""));
    const reader = new control.ControlReader();
    const got: control.AnyMessage[] = [];
    for (let i = 0; i < all.length; i += 7) got.push(...reader.feed(all.subarray(i, i + 7)));
    expect(got.map(messageJson)).toEqual(t.encoded.map((e: J) => e.message));
  });

  it("refuses what Python refuses, tolerates an unknown type, accepts null for optional fields", () => {
    for (const [name, body] of Object.entries(t.invalid as Record<string, string>)) {
      expect(() => control.parse(fromHex(body)), name).toThrow(ProtocolError);
    }
    expect(control.parse(fromHex(t.unknown.body))).toEqual(new control.UnknownMessage(t.unknown.type));
    for (const { body, message } of t.parsed) expect(messageJson(control.parse(fromHex(body)))).toEqual(message);
    const prefix = fromHex("00010001");
    expect(() => new control.ControlReader().feed(prefix)).toThrow(ProtocolError);
  });
});

describe("session transcript (the wire as the relay carries it)", () => {
  const t = load("session.json");

  it("the JS technician produces every technician message and reads every agent message", async () => {
    const hs = new TechnicianHandshake(t.technician_password, t.agent_id, { randbytes: scripted(t.technician_randomness) });
    const mux = new Mux("technician");
    const reader = new control.ControlReader();
    let records: RecordChannel | null = null;
    let pendingOut: Uint8Array[] = [hs.start()];
    for (const entry of t.wire) {
      if (entry.handshake) {
        if (entry.dir === "t2a") expect(toHex(pendingOut.shift() as Uint8Array)).toBe(entry.wire);
        else {
          pendingOut = hs.receive(fromHex(entry.wire));
          if (hs.state === "established") records = hs.channel;
        }
        continue;
      }
      const rc = records as RecordChannel;
      if (entry.dir === "t2a") {
        const op = entry.op;
        if (op.op === "control") mux.sendData(0, control.encode(op.message));
        else if (op.op === "open") mux.openStream(op.kind, op.params);
        else if (op.op === "data") mux.sendData(op.stream, fromHex(op.data));
        else if (op.op === "reset") mux.reset(op.stream, op.reason);
        const [frame, ...rest] = mux.framesToSend();
        expect(rest).toEqual([]);
        expect(toHex(frame as Uint8Array)).toBe(entry.frame);
        expect(toHex(await rc.seal(frame as Uint8Array))).toBe(entry.wire);
      } else {
        const frame = await rc.open(fromHex(entry.wire));
        expect(toHex(frame)).toBe(entry.frame);
        const events = mux.receiveFrame(frame);
        expect(events.map(eventJson)).toEqual(entry.events);
        const msgs = events.flatMap((e) => (e.type === "data" && e.streamId === 0 ? reader.feed(e.data) : []));
        expect(msgs.map(messageJson)).toEqual(entry.control);
      }
    }
    expect(hs.state).toBe("established");
  });
});
