// A screenshot (stream kind and action `screenshot`, asked each time): the agent sends
// one PNG of the whole screen, then EOF. Mirrors src/enkaku/technician/screenshot.py:
// held in memory up to MAX_BYTES (reset `too_large` beyond), the first bytes must be a
// PNG signature and IHDR (reset `not_png`), at most MAX_PIXELS, and the whole image is
// checked (every chunk's CRC, IHDR first, IEND last, the IDAT data inflating to exactly
// the image's size) before the page gets a Blob. A refused, cut or invalid screenshot
// gives no Blob at all.

import {
  type ServiceSession,
  type ServiceStream,
  concat,
  isSessionEnded,
  obtainGrant,
  openWithGrant,
  quietReset,
  resetOnAbort,
  resetReason,
} from "./common";

export const SCREENSHOT_KIND = "screenshot";
export const SCREENSHOT_ACTION = "screenshot";
export const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
/** Largest PNG accepted (an 8K screen of noise is about 100 MB). */
export const MAX_BYTES = 128 * 1024 * 1024;
/** Largest image accepted (an 8K screen is 33 M pixels). */
export const MAX_PIXELS = 64 * 1024 * 1024;
const IHDR_END = 8 + 8 + 13;

/** No screenshot. `code`: `no_display` (the customer's computer has no screen),
 * `refused` (the agent reset the stream; `detail` is its reason), `incomplete` (the
 * session or connection ended first), `too_large`, `not_png`, `cancelled`. */
export class ScreenshotError extends Error {
  readonly code: "no_display" | "refused" | "incomplete" | "too_large" | "not_png" | "cancelled";
  readonly detail?: string;
  constructor(code: ScreenshotError["code"], detail?: string) {
    super(detail === undefined ? `screenshot: ${code}` : `screenshot: ${code} (${detail})`);
    this.name = "ScreenshotError";
    this.code = code;
    if (detail !== undefined) this.detail = detail;
  }
}

export interface Screenshot {
  /** The PNG, exactly as the agent sent it (type image/png). */
  readonly blob: Blob;
  readonly width: number;
  readonly height: number;
}

function u32(bytes: Uint8Array, at: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at);
}

/** (width, height) from the IHDR, or null when `head` is not the start of a PNG. */
export function pngHeaderSize(head: Uint8Array): [number, number] | null {
  if (head.length < IHDR_END) return null;
  for (let i = 0; i < 8; i++) if (head[i] !== PNG_SIGNATURE[i]) return null;
  if (String.fromCharCode(...head.subarray(12, 16)) !== "IHDR") return null;
  return [u32(head, 16), u32(head, 20)];
}

let crcTable: Uint32Array | null = null;
function crc32(bytes: Uint8Array): number {
  if (crcTable === null) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (const b of bytes) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
const ADAM7: Array<[number, number, number, number]> = [
  [0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2],
]; // x0, y0, dx, dy

/** Bytes of filtered scanlines the IDAT data must inflate to. */
function rawSize(width: number, height: number, depth: number, colorType: number, interlace: number): number {
  const bits = depth * CHANNELS[colorType]!;
  const line = (w: number) => 1 + Math.ceil((w * bits) / 8);
  if (interlace === 0) return height * line(width);
  let total = 0;
  for (const [x0, y0, dx, dy] of ADAM7) {
    const w = Math.ceil((width - x0) / dx);
    const h = Math.ceil((height - y0) / dy);
    if (w > 0 && h > 0) total += h * line(w);
  }
  return total;
}

async function inflatedSize(parts: Uint8Array[], limit: number): Promise<number> {
  const stream = new Blob(parts as BlobPart[]).stream().pipeThrough(new DecompressionStream("deflate"));
  const reader = stream.getReader();
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return n;
      n += value.length;
      if (n > limit) return n; // more than the image: no need to go on
    }
  } finally {
    reader.releaseLock();
  }
}

/** Check a whole PNG; its (width, height). Throws ScreenshotError("not_png"). */
export async function checkPng(png: Uint8Array): Promise<[number, number]> {
  const size = pngHeaderSize(png);
  if (size === null) throw new ScreenshotError("not_png");
  const [width, height] = size;
  if (width === 0 || height === 0) throw new ScreenshotError("not_png");
  let at = 8;
  let ihdr: Uint8Array | null = null;
  let ended = false;
  const idat: Uint8Array[] = [];
  while (at < png.length) {
    if (ended || at + 12 > png.length) throw new ScreenshotError("not_png");
    const length = u32(png, at);
    if (at + 12 + length > png.length) throw new ScreenshotError("not_png");
    const typeAndData = png.subarray(at + 4, at + 8 + length);
    if (crc32(typeAndData) !== u32(png, at + 8 + length)) throw new ScreenshotError("not_png");
    const type = String.fromCharCode(...typeAndData.subarray(0, 4));
    const data = typeAndData.subarray(4);
    if (ihdr === null && type !== "IHDR") throw new ScreenshotError("not_png");
    if (type === "IHDR") {
      if (ihdr !== null || length !== 13) throw new ScreenshotError("not_png");
      ihdr = data;
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") ended = true;
    at += 12 + length;
  }
  if (!ended || ihdr === null || idat.length === 0) throw new ScreenshotError("not_png");
  const [depth, colorType, compression, filter, interlace] = ihdr.subarray(8, 13);
  if (
    !(DEPTHS[colorType!] ?? []).includes(depth!) || compression !== 0 || filter !== 0 || (interlace !== 0 && interlace !== 1)
  ) {
    throw new ScreenshotError("not_png");
  }
  const expected = rawSize(width, height, depth!, colorType!, interlace!);
  let got: number;
  try {
    got = await inflatedSize(idat, expected);
  } catch {
    throw new ScreenshotError("not_png");
  }
  if (got !== expected) throw new ScreenshotError("not_png");
  return [width, height];
}

/** Read the PNG of an open `screenshot` stream; resets the stream on a refusal. */
export async function receiveScreenshot(stream: ServiceStream, maxBytes = MAX_BYTES): Promise<Screenshot> {
  const parts: Uint8Array[] = [];
  let size = 0;
  let checked = false;
  for (;;) {
    let chunk: Uint8Array | null;
    try {
      chunk = await stream.read();
    } catch (err) {
      const reason = resetReason(err);
      if (reason === "no_display") throw new ScreenshotError("no_display");
      if (reason === "cancelled") throw new ScreenshotError("cancelled");
      if (reason !== null) throw new ScreenshotError("refused", reason.slice(0, 64));
      if (isSessionEnded(err)) throw new ScreenshotError("incomplete");
      throw err;
    }
    if (chunk === null) break;
    parts.push(chunk);
    size += chunk.length;
    if (size > maxBytes) {
      await quietReset(stream, "too_large");
      throw new ScreenshotError("too_large");
    }
    if (!checked && size >= IHDR_END) {
      const dims = pngHeaderSize(concat(parts, size).subarray(0, IHDR_END));
      if (dims === null) {
        await quietReset(stream, "not_png");
        throw new ScreenshotError("not_png");
      }
      if (dims[0] * dims[1] > MAX_PIXELS) {
        await quietReset(stream, "too_large");
        throw new ScreenshotError("too_large");
      }
      checked = true;
    }
  }
  await stream.writeEof().catch(() => {}); // both ends done: the mux forgets the stream
  const png = concat(parts, size);
  const [width, height] = await checkPng(png);
  return { blob: new Blob([png as BlobPart], { type: "image/png" }), width, height };
}

export interface ScreenshotOptions {
  purpose?: string;
  onAsking?: (action: string) => void;
  /** Aborting resets the stream with `cancelled`. */
  signal?: AbortSignal;
}

/** Ask for a screenshot (every time), receive and check it. Throws ConsentRefused,
 * ScreenshotError, or the channel's SessionEnded. */
export async function takeScreenshot(session: ServiceSession, opts: ScreenshotOptions = {}): Promise<Screenshot> {
  const grant = await obtainGrant(session, SCREENSHOT_ACTION, {}, opts.purpose, opts.onAsking);
  const stream = await openWithGrant(session, SCREENSHOT_KIND, {}, grant);
  const unhook = resetOnAbort(stream, opts.signal);
  try {
    return await receiveScreenshot(stream);
  } finally {
    unhook();
  }
}
