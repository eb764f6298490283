// Byte helpers shared by the protocol modules (no dependencies).

export const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

export function encodeUtf8(text: string): Uint8Array {
  return utf8.encode(text);
}

/** Strict UTF-8 decoding: invalid input throws a TypeError. */
export function decodeUtf8(data: Uint8Array): string {
  return utf8Strict.decode(data);
}

/** ASCII bytes of `text`; throws RangeError on any character above 0x7f. */
export function encodeAscii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) throw new RangeError("not ASCII");
    out[i] = c;
  }
  return out;
}

/** Strict ASCII decoding: throws RangeError on any byte above 0x7f. */
export function decodeAscii(data: Uint8Array): string {
  let s = "";
  for (const b of data) {
    if (b > 0x7f) throw new RangeError("not ASCII");
    s += String.fromCharCode(b);
  }
  return s;
}

/** Python's `bytes.decode("ascii", "replace")`: U+FFFD for each byte above 0x7f. */
export function decodeAsciiReplace(data: Uint8Array): string {
  let s = "";
  for (const b of data) s += b > 0x7f ? "\ufffd" : String.fromCharCode(b);
  return s;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function toHex(data: Uint8Array): string {
  let s = "";
  for (const b of data) s += b.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new RangeError("not hex");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Constant-time comparison (for tags): the time depends only on the lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** Python's `a > b` for bytes: lexicographic, a longer string wins a tie on its prefix. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function u32be(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n >>> 0, false);
  return out;
}

export function readU32be(data: Uint8Array, offset = 0): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(offset, false);
}

/** A fresh copy of `data` backed by its own ArrayBuffer (WebCrypto and WebSocket take those). */
export function copyBytes(data: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(data.length);
  out.set(data);
  return out;
}

/** Random bytes from the platform's CSPRNG. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

export type RandBytes = (n: number) => Uint8Array;
