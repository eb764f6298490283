import { sha256 } from "@noble/hashes/sha2.js";
import type { Terminal } from "@xterm/xterm";
import { describe, expect, it } from "vitest";
import { ConsentRefused, hex } from "../../src/services/common";
import {
  FRAME_DATA,
  FRAME_EXIT,
  FrameDecoder,
  MAX_DATA,
  TerminalOpenError,
  TerminalProtocolError,
  type XtermLike,
  attachXterm,
  dataFrames,
  encodeFrame,
  openTerminal,
  resizeFrame,
} from "../../src/services/terminal";
import { FakeSession, type MemStream, b64, text, until, utf8, vectors } from "./pair";

const v = vectors.terminal;

/** @xterm/xterm's Terminal is an XtermLike (checked by `tsc --noEmit`). */
export const xtermFits: (term: Terminal) => XtermLike = (term) => term;

/** The agent's frames as the Python decoder on the agent sees them from the technician. */
function technicianFrames(bytes: Uint8Array): Array<[number, Uint8Array]> {
  const out: Array<[number, Uint8Array]> = [];
  let at = 0;
  while (at < bytes.length) {
    const view = new DataView(bytes.buffer, bytes.byteOffset + at);
    const length = view.getUint32(1);
    out.push([view.getUint8(0), bytes.slice(at + 5, at + 5 + length)]);
    at += 5 + length;
  }
  return out;
}

describe("terminal frames", () => {
  it("decode the Python agent's HELLO, DATA and EXIT, cut anywhere", () => {
    const stream = new Uint8Array([...b64(v.hello), ...b64(v.data), ...b64(v.exit_129)]);
    for (const step of [1, 2, 7, stream.length]) {
      const decoder = new FrameDecoder();
      const frames = [];
      for (let i = 0; i < stream.length; i += step) frames.push(...decoder.feed(stream.subarray(i, i + step)));
      expect(frames).toEqual([
        { type: "hello", hello: v.hello_fields },
        { type: "data", data: utf8("ls -l\r") },
        { type: "exit", status: 129 },
      ]);
    }
    const neg = new FrameDecoder();
    expect(neg.feed(new Uint8Array([...b64(v.hello), ...b64(v.exit_negative)]))[1]).toEqual({ type: "exit", status: -2 });
  });

  it("encode what the Python module encodes", () => {
    expect(resizeFrame(132, 43)).toEqual(b64(v.resize));
    expect(dataFrames("ls -l\r")).toEqual(b64(v.data));
    expect(hex(sha256(dataFrames(new Uint8Array(MAX_DATA + 3).fill(0x79))))).toBe(v.data_two_sha256);
    expect(() => resizeFrame(0, 24)).toThrow(RangeError);
    expect(() => resizeFrame(80, 4097)).toThrow(RangeError);
  });

  it("refuse what the agent may not send", () => {
    const hello = b64(v.hello);
    const bad: Uint8Array[] = [
      b64(v.data), // before HELLO
      new Uint8Array([...hello, ...hello]),
      new Uint8Array([...hello, ...b64(v.resize)]),
      new Uint8Array([...hello, ...b64(v.exit_0), ...b64(v.data)]),
      new Uint8Array([...hello, 9, 0, 0, 0, 0]),
      new Uint8Array([...hello, FRAME_DATA, 0, 1, 0, 1]), // 64 KiB + 1, refused from the header
      new Uint8Array([...hello, FRAME_EXIT, 0, 0, 0, 5]),
      encodeFrame(1, utf8('{"user": "x"}')),
    ];
    for (const bytes of bad) expect(() => new FrameDecoder().feed(bytes)).toThrow(TerminalProtocolError);
  });
});

/** An agent that says HELLO, then echoes what the technician types, then exits. */
function shellAgent(agent: MemStream): Promise<void> {
  return (async () => {
    await agent.write(b64(v.hello));
    await agent.write(dataFrames("$ "));
  })();
}

describe("terminal sessions", () => {
  it("open with the size and TERM, type, resize and see the exit status", async () => {
    const session = new FakeSession((agent) => shellAgent(agent));
    const shell = await openTerminal(session, { cols: 100, rows: 30, purpose: "logs" });
    expect(session.asked).toEqual([{ action: "terminal", details: {}, purpose: "logs" }]);
    const tech = session.opened[0]!;
    const agent = session.agentEnds[0]!;
    expect(tech.params).toEqual({ cols: 100, rows: 30, term: "xterm-256color", grant: 1 });
    expect(shell.hello).toEqual(v.hello_fields);

    const output: string[] = [];
    shell.onData((b) => output.push(text(b)));
    await shell.write("ls\r");
    await shell.resize(120, 40);
    await shell.write(utf8("日本"));
    await until(() => output.join("") === "$ ");
    expect(technicianFrames(agent.inbox.chunks.reduce((a, c) => new Uint8Array([...a, ...c]), new Uint8Array()))).toEqual([
      [FRAME_DATA, utf8("ls\r")],
      [3, new Uint8Array([0, 120, 0, 40])],
      [FRAME_DATA, utf8("日本")],
    ]);
    await agent.write(dataFrames("bye\r\n"));
    await agent.write(b64(v.exit_0));
    await agent.writeEof();
    expect(await shell.ended).toEqual({ how: "exit", status: 0 });
    expect(output.join("")).toBe("$ bye\r\n");
    await until(() => tech.wroteEof); // the technician's side ends too
  });

  it("close() hangs up with detached; a refused terminal says why", async () => {
    const session = new FakeSession((agent) => shellAgent(agent));
    session.inForce = ["terminal"];
    const shell = await openTerminal(session);
    expect(session.asked).toEqual([]);
    await shell.close();
    expect(session.opened[0]!.sentReset).toBe("detached");
    expect(await shell.ended).toEqual({ how: "closed", reason: "detached" });
    await shell.write("ignored"); // writing after the end is no error

    const refused = new FakeSession((agent) => agent.reset("spawn_failed"));
    const err = await openTerminal(refused).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TerminalOpenError);
    expect((err as TerminalOpenError).reason).toBe("spawn_failed");

    const denied = new FakeSession(() => {}, [{ granted: false, reason: "denied" }]);
    expect(await openTerminal(denied).catch((e: unknown) => e)).toBeInstanceOf(ConsentRefused);
  });

  it("a malformed frame resets the stream with bad_frame", async () => {
    const session = new FakeSession(async (agent) => {
      await agent.write(b64(v.hello));
      await agent.write(b64(v.resize));
    });
    const shell = await openTerminal(session);
    expect(await shell.ended).toEqual({ how: "closed", reason: "bad_frame" });
    expect(session.opened[0]!.sentReset).toBe("bad_frame");
  });

  it("attachXterm: keys in, output out, the size at once and on resize", async () => {
    const session = new FakeSession((agent) => shellAgent(agent));
    const shell = await openTerminal(session);
    const agent = session.agentEnds[0]!;
    const handlers: { data?: (d: string) => void; resize?: (s: { cols: number; rows: number }) => void } = {};
    const written: string[] = [];
    const term: XtermLike = {
      cols: 90,
      rows: 20,
      write: (d) => written.push(typeof d === "string" ? d : text(d)),
      onData: (l) => ((handlers.data = l), { dispose: () => delete handlers.data }),
      onResize: (l) => ((handlers.resize = l), { dispose: () => delete handlers.resize }),
    };
    const detach = attachXterm(term, shell);
    handlers.data!("pwd\r");
    handlers.resize!({ cols: 91, rows: 21 });
    await until(() => written.join("") === "$ " && agent.inbox.chunks.length === 3);
    const frames = technicianFrames(agent.inbox.chunks.reduce((a, c) => new Uint8Array([...a, ...c]), new Uint8Array()));
    expect(frames).toEqual([
      [3, new Uint8Array([0, 90, 0, 20])],
      [FRAME_DATA, utf8("pwd\r")],
      [3, new Uint8Array([0, 91, 0, 21])],
    ]);
    detach();
    expect(handlers).toEqual({});
  });
});
