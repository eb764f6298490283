import { describe, expect, it } from "vitest";
import { ConsentRefused } from "../../src/services/common";
import { MAX_PIXELS, ScreenshotError, checkPng, takeScreenshot } from "../../src/services/screenshot";
import { FakeSession, type MemStream, b64, vectors } from "./pair";

const png = b64(vectors.screenshot.png);

function sends(bytes: Uint8Array, chunk = 7) {
  return async (agent: MemStream) => {
    for (let i = 0; i < bytes.length; i += chunk) await agent.write(bytes.subarray(i, i + chunk));
    await agent.writeEof();
  };
}

function crcFixed(bytes: Uint8Array, chunkAt: number): Uint8Array {
  // Recompute the CRC of the chunk at `chunkAt` after a test changed its data.
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const length = view.getUint32(chunkAt);
  let c = 0xffffffff;
  for (const b of bytes.subarray(chunkAt + 4, chunkAt + 8 + length)) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  view.setUint32(chunkAt + 8 + length, (c ^ 0xffffffff) >>> 0);
  return bytes;
}

describe("screenshots", () => {
  it("asks each time and delivers the agent's PNG as a Blob with its size", async () => {
    const session = new FakeSession(sends(png));
    session.inForce = ["screen", "control", "screenshot"]; // never a session grant
    const shot = await takeScreenshot(session, { purpose: "the error" });
    expect(session.asked).toEqual([{ action: "screenshot", details: {}, purpose: "the error" }]);
    expect(session.opened[0]!.params).toEqual({ grant: 1 });
    expect([shot.width, shot.height]).toEqual([vectors.screenshot.width, vectors.screenshot.height]);
    expect(shot.blob.type).toBe("image/png");
    expect(new Uint8Array(await shot.blob.arrayBuffer())).toEqual(png);
    expect(session.opened[0]!.wroteEof).toBe(true); // the stream is closed both ways
  });

  it("no_display, a refusal, a cut stream and a denial are their own errors", async () => {
    const cases: Array<[(a: MemStream) => Promise<void>, string]> = [
      [(a) => a.reset("no_display"), "no_display"],
      [(a) => a.reset("service_error"), "refused"],
      [async (a) => (await a.write(png.subarray(0, 100)), await a.writeEof()), "not_png"],
    ];
    for (const [agentDoes, code] of cases) {
      const err = await takeScreenshot(new FakeSession(agentDoes)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ScreenshotError);
      expect((err as ScreenshotError).code).toBe(code);
    }
    const denied = await takeScreenshot(new FakeSession(() => {}, [{ granted: false, reason: "denied" }])).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(ConsentRefused);
  });

  it("refuses a stream that does not start as a PNG, and a header too large, at once", async () => {
    const notPng = new FakeSession(sends(new TextEncoder().encode("<html>".repeat(10)), 64));
    expect(((await takeScreenshot(notPng).catch((e: unknown) => e)) as ScreenshotError).code).toBe("not_png");
    expect(notPng.opened[0]!.sentReset).toBe("not_png");

    const huge = png.slice(0, 33);
    new DataView(huge.buffer).setUint32(16, 65536);
    new DataView(huge.buffer).setUint32(20, MAX_PIXELS / 65536 + 1);
    const big = new FakeSession(sends(crcFixed(huge, 8), 33));
    expect(((await takeScreenshot(big).catch((e: unknown) => e)) as ScreenshotError).code).toBe("too_large");
    expect(big.opened[0]!.sentReset).toBe("too_large");
  });

  it("checks every chunk: CRC, IEND, and the pixels' size", async () => {
    expect(await checkPng(png)).toEqual([5, 7]);
    const flipped = png.slice();
    flipped[45] = flipped[45]! ^ 1; // inside IDAT
    await expect(checkPng(flipped)).rejects.toThrow(ScreenshotError);
    await expect(checkPng(png.subarray(0, png.length - 12))).rejects.toThrow(ScreenshotError); // no IEND
    await expect(checkPng(new Uint8Array([...png, 0]))).rejects.toThrow(ScreenshotError); // after IEND
    const taller = png.slice();
    new DataView(taller.buffer).setUint32(20, 8); // the IHDR says one row more than the data
    await expect(checkPng(crcFixed(taller, 8))).rejects.toThrow(ScreenshotError);
  });

  it("aborting resets the stream with cancelled", async () => {
    const controller = new AbortController();
    const session = new FakeSession(async (agent) => {
      await agent.write(png.subarray(0, 40));
      controller.abort();
    });
    const err = await takeScreenshot(session, { signal: controller.signal }).catch((e: unknown) => e);
    expect((err as ScreenshotError).code).toBe("cancelled");
    expect(session.opened[0]!.sentReset).toBe("cancelled");
  });
});
