import { sha256 } from "@noble/hashes/sha2.js";
import { describe, expect, it } from "vitest";
import { ConsentRefused, ProgressMeter, type Progress, hex } from "../../src/services/common";
import {
  FramedReader,
  LineReader,
  PartialStore,
  TransferError,
  browseFolder,
  checkName,
  encodeLine,
  parseGetHeader,
  parseListing,
  sendFile,
  takeFile,
} from "../../src/services/files";
import { FakeSession, type MemStream, b64, text, utf8, vectors } from "./pair";

const v = vectors.files;

function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) out[i] = x = (x * 1103515245 + 12345) & 0xff;
  return out;
}

const digest = (b: Uint8Array) => hex(sha256(b));

/** The agent's side of file_put, as services/files.py: offset, bytes to EOF, hash
 * check, the name. `kept` plays its hidden part; `cutAfter` resets once that many
 * bytes of this stream arrived. */
function putAgent(kept: Map<string, Uint8Array>, opts: { cutAfter?: number; name?: string } = {}) {
  return async (agent: MemStream) => {
    const p = agent.params as { name: string; size: number; sha256: string };
    const key = `${p.name}\0${p.size}\0${p.sha256}`;
    let have = kept.get(key) ?? new Uint8Array(0);
    await agent.write(encodeLine({ offset: have.length }));
    let got = 0;
    for (let c = await agent.read(); c !== null; c = await agent.read()) {
      const grown = new Uint8Array(have.length + c.length);
      grown.set(have);
      grown.set(c, have.length);
      have = grown;
      got += c.length;
      kept.set(key, have);
      if (opts.cutAfter !== undefined && got >= opts.cutAfter) {
        await agent.reset("interrupted");
        return;
      }
    }
    if (digest(have) !== p.sha256) return agent.reset("hash_mismatch");
    kept.delete(key);
    kept.set(`done\0${p.name}`, have);
    await agent.write(opts.name !== undefined ? encodeLine({ ok: true, name: opts.name }) : b64(v.ok_line));
    await agent.writeEof();
  };
}

/** The agent's side of file_get for `content`: resumes from the offset asked when the
 * hash matches, like services/files.py; `cutAfter` bytes then a reset. */
function getAgent(content: Uint8Array, name = "log.txt", opts: { cutAfter?: number } = {}) {
  return async (agent: MemStream) => {
    const p = agent.params as { offset: number; sha256?: string };
    const sha = digest(content);
    const offset = p.sha256 === sha ? p.offset : 0;
    await agent.write(encodeLine({ name, size: content.length, sha256: sha, offset, mtime: 1764400000.5 }));
    const end = opts.cutAfter === undefined ? content.length : Math.min(content.length, offset + opts.cutAfter);
    for (let i = offset; i < end; i += 1000) await agent.write(content.subarray(i, Math.min(i + 1000, end)));
    if (opts.cutAfter !== undefined) return agent.reset("io_error");
    await agent.writeEof();
    await agent.read(); // the page's EOF
  };
}

describe("file transfer wire format", () => {
  it("names are checked as the Python check_name does, for both systems", () => {
    for (const row of v.names as Array<{ name: string; posix: string | null; windows: string | null }>) {
      expect([row.name, checkName(row.name, "posix")]).toEqual([row.name, row.posix]);
      expect([row.name, checkName(row.name, "windows")]).toEqual([row.name, row.windows]);
    }
  });

  it("reads the Python agent's lines, header, frames and listing", () => {
    expect(new LineReader().feed(b64(v.offset_line))).toEqual([{ offset: 5 }, new Uint8Array(0)]);
    expect(encodeLine({ offset: 5 })).toEqual(b64(v.offset_line));
    const header = new LineReader().feed(new Uint8Array([...b64(v.get_header), 1, 2]))!;
    expect(parseGetHeader(header[0])).toEqual({ name: "ログ.txt", size: 10, sha256: "ab".repeat(32), offset: 4, mtime: 1.5 });
    expect(header[1]).toEqual(new Uint8Array([1, 2]));
    const archive = new LineReader().feed(b64(v.archive_header))![0];
    expect(archive).toEqual({ name: "dir.tar", archive: "tar", estimate: 2048, offset: 0 });

    const framed = new Uint8Array([...b64(v.frame), ...b64(v.trailer)]);
    for (const step of [1, 3, framed.length]) {
      const reader = new FramedReader();
      const out: number[] = [];
      for (let i = 0; i < framed.length; i += step) for (const c of reader.feed(framed.subarray(i, i + step))) out.push(...c);
      expect(text(new Uint8Array(out))).toBe("tar-bytes");
      expect(reader.trailer).toEqual({ size: 9, sha256: "ab".repeat(32), skipped: 2 });
    }
    expect(parseListing(b64(v.listing))).toEqual(v.listing_parsed);
  });

  it("refuses malformed lines and listings", () => {
    expect(() => new LineReader().feed(new Uint8Array(4097).fill(0x20))).toThrow(TransferError);
    expect(() => new LineReader().feed(utf8("[1]\n"))).toThrow(TransferError);
    expect(() => parseGetHeader({ name: "a", size: 3, sha256: "ab".repeat(32), offset: 4 })).toThrow(TransferError);
    expect(() => parseListing(utf8('{"path":"/","entries":[{"name":"x","type":"fifo","size":0,"mtime":0}],"truncated":false}'))).toThrow(TransferError);
    expect(() => new FramedReader().feed(new Uint8Array([0, 0x20, 0, 0]))).toThrow(TransferError); // frame > 1 MiB
  });
});

describe("sending files", () => {
  it("asks with name, size and folder, sends, and returns the customer's name", async () => {
    const kept = new Map<string, Uint8Array>();
    const session = new FakeSession(putAgent(kept));
    const content = bytes(600_000);
    const seen: Progress[] = [];
    const sent = await sendFile(session, new Blob([content as BlobPart]), "report.txt", {
      purpose: "the fix",
      onProgress: (p) => seen.push(p),
    });
    expect(sent).toEqual({ name: "報告 (1).txt", size: content.length, sha256: digest(content) });
    expect(session.asked).toEqual([
      { action: "file_to_customer", details: { name: "report.txt", size: content.length, dest: "", overwrite: false }, purpose: "the fix" },
    ]);
    expect(session.opened[0]!.params).toEqual({
      name: "report.txt", size: content.length, sha256: digest(content), dest: "", overwrite: false, grant: 1,
    });
    expect(digest(kept.get("done\0report.txt")!)).toBe(digest(content));
    expect(seen[0]!.done).toBe(0);
    expect(seen.at(-1)!.done).toBe(content.length);
  });

  it("a cut transfer resumes where the agent's kept part ends", async () => {
    const kept = new Map<string, Uint8Array>();
    const content = bytes(1_000_000, 7);
    const file = new Blob([content as BlobPart]);
    const cut = await sendFile(new FakeSession(putAgent(kept, { cutAfter: 300_000 })), file, "big.bin").catch((e: unknown) => e);
    expect(cut).toBeInstanceOf(TransferError);
    expect((cut as TransferError).reason).toBe("interrupted");

    const seen: Progress[] = [];
    const session = new FakeSession(putAgent(kept, { name: "big.bin" }));
    const sent = await sendFile(session, file, "big.bin", { onProgress: (p) => seen.push(p) });
    expect(sent.name).toBe("big.bin");
    expect(digest(kept.get("done\0big.bin")!)).toBe(digest(content));
    expect(seen[0]!.done).toBeGreaterThanOrEqual(300_000); // started at the agent's offset
    const written = session.opened[0]!.written.reduce((n, c) => n + c.length, 0);
    expect(written).toBe(content.length - seen[0]!.done);
  });

  it("several at once, each on its own stream", async () => {
    const kept = new Map<string, Uint8Array>();
    const session = new FakeSession(putAgent(kept, { name: "x" }));
    const files = [bytes(300_000, 1), bytes(400_000, 2), bytes(10, 3)];
    await Promise.all(files.map((c, i) => sendFile(session, new Blob([c as BlobPart]), `f${i}`)));
    files.forEach((c, i) => expect(digest(kept.get(`done\0f${i}`)!)).toBe(digest(c)));
    expect(new Set(session.opened.map((s) => s.id)).size).toBe(3);
  });

  it("refusals: a bad name before asking, the customer's no, the agent's reason", async () => {
    const none = new FakeSession(() => {});
    const bad = await sendFile(none, new Blob(["x"]), "a/b").catch((e: unknown) => e);
    expect((bad as TransferError).reason).toBe("name_separator");
    expect(none.asked).toEqual([]);

    const denied = new FakeSession(() => {}, [{ granted: false, reason: "denied" }]);
    const no = await sendFile(denied, new Blob(["x"]), "a.txt").catch((e: unknown) => e);
    expect(no).toBeInstanceOf(ConsentRefused);
    expect((no as ConsentRefused).reason).toBe("denied");

    const exists = new FakeSession((agent) => agent.reset("exists"));
    const err = await sendFile(exists, new Blob(["x"]), "a.txt").catch((e: unknown) => e);
    expect((err as TransferError).reason).toBe("exists");
  });

  it("cancelling resets the stream with cancelled", async () => {
    const controller = new AbortController();
    const session = new FakeSession(async (agent) => {
      await agent.write(encodeLine({ offset: 0 }));
      await agent.read();
      controller.abort();
    });
    const err = await sendFile(session, new Blob([bytes(900_000) as BlobPart]), "a.bin", { signal: controller.signal }).catch((e: unknown) => e);
    expect((err as TransferError).reason).toBe("cancelled");
    expect(session.opened[0]!.sentReset).toBe("cancelled");
  });
});

describe("taking files", () => {
  it("asks with the path (and size), delivers a checked Blob", async () => {
    const content = bytes(5000);
    const session = new FakeSession(getAgent(content, "Xorg.0.log"));
    const store = new PartialStore();
    const got = await takeFile(session, "/var/log/Xorg.0.log", store, { size: 5000, purpose: "crash" });
    expect(session.asked).toEqual([{ action: "file_from_customer", details: { path: "/var/log/Xorg.0.log", size: 5000 }, purpose: "crash" }]);
    expect(session.opened[0]!.params).toEqual({ path: "/var/log/Xorg.0.log", offset: 0, grant: 1 });
    expect([got.name, got.size, got.sha256, got.archive, got.mtime]).toEqual(["Xorg.0.log", 5000, digest(content), false, 1764400000.5]);
    expect(new Uint8Array(await got.blob.arrayBuffer())).toEqual(content);
    expect(store.kept("get\0/var/log/Xorg.0.log")).toBeNull();
  });

  it("a cut download keeps its part and resumes from it", async () => {
    const content = bytes(50_000, 9);
    const store = new PartialStore();
    const cut = await takeFile(new FakeSession(getAgent(content, "a.bin", { cutAfter: 20_000 })), "/a.bin", store).catch((e: unknown) => e);
    expect((cut as TransferError).reason).toBe("io_error");
    expect(store.kept("get\0/a.bin")).toEqual({ length: 20_000, sha256: digest(content) });

    const session = new FakeSession(getAgent(content, "a.bin"));
    const seen: Progress[] = [];
    const got = await takeFile(session, "/a.bin", store, { onProgress: (p) => seen.push(p) });
    expect(session.opened[0]!.params).toMatchObject({ offset: 20_000, sha256: digest(content) });
    expect(seen[0]!.done).toBe(20_000);
    expect(new Uint8Array(await got.blob.arrayBuffer())).toEqual(content);
    expect(store.kept("get\0/a.bin")).toBeNull();
  });

  it("a file changed since the cut starts over; a wrong hash leaves nothing", async () => {
    const store = new PartialStore();
    const old = bytes(30_000, 1);
    await takeFile(new FakeSession(getAgent(old, "a", { cutAfter: 10_000 })), "/a", store).catch(() => {});
    const changed = bytes(30_000, 2);
    const got = await takeFile(new FakeSession(getAgent(changed, "a")), "/a", store);
    expect(new Uint8Array(await got.blob.arrayBuffer())).toEqual(changed);

    const liar = new FakeSession(async (agent) => {
      await agent.write(encodeLine({ name: "a", size: 3, sha256: "ab".repeat(32), offset: 0, mtime: 0 }));
      await agent.write(utf8("abc"));
      await agent.writeEof();
    });
    const err = await takeFile(liar, "/a", store).catch((e: unknown) => e);
    expect((err as TransferError).reason).toBe("hash_mismatch");
    expect(liar.opened[0]!.sentReset).toBe("hash_mismatch");
    expect(store.kept("get\0/a")).toBeNull();
  });

  it("the same file twice at once: the second is busy", async () => {
    const store = new PartialStore();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const slow = new FakeSession(async (agent) => {
      await agent.write(encodeLine({ name: "a", size: 4, sha256: digest(utf8("abcd")), offset: 0, mtime: 0 }));
      await agent.write(utf8("ab"));
      await held;
      await agent.write(utf8("cd"));
      await agent.writeEof();
    });
    const first = takeFile(slow, "/a", store);
    await new Promise((r) => setTimeout(r, 5));
    const second = await takeFile(new FakeSession(getAgent(utf8("abcd"), "a")), "/a", store).catch((e: unknown) => e);
    expect((second as TransferError).reason).toBe("busy");
    release();
    expect(text(new Uint8Array(await (await first).blob.arrayBuffer()))).toBe("abcd");
  });

  it("a folder arrives as NAME.tar and is never kept when cut", async () => {
    const tar = bytes(3000, 4);
    const folder = (cut: boolean) => async (agent: MemStream) => {
      await agent.write(b64(v.archive_header));
      for (let i = 0; i < tar.length; i += 1000) {
        const frame = new Uint8Array(4 + 1000);
        new DataView(frame.buffer).setUint32(0, 1000);
        frame.set(tar.subarray(i, i + 1000), 4);
        await agent.write(frame);
        if (cut) return agent.reset("interrupted");
      }
      await agent.write(new Uint8Array([0, 0, 0, 0, ...encodeLine({ size: tar.length, sha256: digest(tar), skipped: 1 })]));
      await agent.writeEof();
    };
    const store = new PartialStore();
    const got = await takeFile(new FakeSession(folder(false)), "/home/u/dir", store);
    expect([got.name, got.archive, got.skipped, got.blob.type]).toEqual(["dir.tar", true, 1, "application/x-tar"]);
    expect(new Uint8Array(await got.blob.arrayBuffer())).toEqual(tar);
    const err = await takeFile(new FakeSession(folder(true)), "/home/u/dir", store).catch((e: unknown) => e);
    expect((err as TransferError).reason).toBe("interrupted");
    expect(store.kept("tar\0/home/u/dir")).toBeNull();
  });

  it("kept parts expire after 24 hours", async () => {
    let now = 0;
    const store = new PartialStore(24 * 3600 * 1000, () => now);
    await takeFile(new FakeSession(getAgent(bytes(9000), "a", { cutAfter: 4000 })), "/a", store).catch(() => {});
    expect(store.kept("get\0/a")?.length).toBe(4000);
    now = 24 * 3600 * 1000 + 1;
    store.expire();
    expect(store.kept("get\0/a")).toBeNull();
  });
});

describe("browsing", () => {
  it("lists a folder under the browse permission", async () => {
    const session = new FakeSession(async (agent) => {
      await agent.write(b64(v.listing));
      await agent.writeEof();
    });
    const listing = await browseFolder(session, "/home/山田");
    expect(listing).toEqual(v.listing_parsed);
    expect(session.asked.map((a) => a.action)).toEqual(["browse"]);
    expect(session.opened[0]!.params).toEqual({ path: "/home/山田", grant: 1 });
    const err = await browseFolder(new FakeSession((a) => a.reset("permission_denied")), "/root").catch((e: unknown) => e);
    expect((err as TransferError).reason).toBe("permission_denied");
    await expect(browseFolder(session, "relative")).rejects.toThrow(TransferError);
  });
});

describe("progress", () => {
  it("speed and time left over a window of samples", () => {
    let t = 0;
    const meter = new ProgressMeter(5000, () => t);
    expect(meter.update(100, 1100)).toEqual({ done: 100, total: 1100, bytesPerSecond: null, secondsLeft: null });
    t = 1000;
    expect(meter.update(300, 1100)).toEqual({ done: 300, total: 1100, bytesPerSecond: 200, secondsLeft: 4 });
    t = 2000;
    expect(meter.update(700, 1100)).toEqual({ done: 700, total: 1100, bytesPerSecond: 300, secondsLeft: 400 / 300 });
  });
});
