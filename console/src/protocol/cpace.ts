// CPace, suite CPACE-RISTR255-SHA512 (draft-irtf-cfrg-cpace-21), as
// src/enkaku/protocol/cpace.py computes it, byte for byte.
//
// Group elements are their 32-byte ristretto255 encodings. The generator uses RFC 9496
// element derivation (libsodium's crypto_core_ristretto255_from_hash), which is
// @noble/curves' `ristretto255_hasher.deriveToCurve`, not its `hashToCurve`.

import { ristretto255, ristretto255_hasher } from "@noble/curves/ed25519.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { compareBytes, concat, constantTimeEqual, encodeAscii, randomBytes, type RandBytes } from "./bytes";
import { HandshakeError } from "./errors";

export const DSI = encodeAscii("CPaceRistretto255");
export const DSI_ISK = encodeAscii("CPaceRistretto255_ISK");
export const SUITE = encodeAscii("CPACE-RISTR255-SHA512");
/** SHA-512's input block size, H.s_in_bytes. */
export const S_IN_BYTES = 128;
export const FIELD_SIZE_BYTES = 32;
export const SCALAR_BYTES = 32;
export const POINT_BYTES = 32;
/** HMAC-SHA-512 tag length. */
export const TAG_BYTES = 64;

const Point = ristretto255.Point;
const ORDER = Point.Fn.ORDER;

// -- string utilities --------------------------------------------------------------------

/** `data` with its length prepended as LEB128. */
export function prependLen(data: Uint8Array): Uint8Array {
  let length = data.length;
  const head: number[] = [];
  for (;;) {
    const byte = length & 0x7f;
    length = Math.floor(length / 128);
    head.push(length ? byte | 0x80 : byte);
    if (!length) return concat(Uint8Array.from(head), data);
  }
}

/** Length-value concatenation. */
export function lvCat(...args: Uint8Array[]): Uint8Array {
  return concat(...args.map(prependLen));
}

/** Ordered concatenation: "oc", then the lexicographically larger string first. */
export function oCat(a: Uint8Array, b: Uint8Array): Uint8Array {
  return concat(encodeAscii("oc"), compareBytes(a, b) > 0 ? concat(a, b) : concat(b, a));
}

/** Initiator-responder transcript: A's message first. */
export function transcriptIr(ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Uint8Array {
  return concat(lvCat(ya, ada), lvCat(yb, adb));
}

/** Transcript of the symmetric setting (not used by enkaku; kept for the vectors). */
export function transcriptOc(ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Uint8Array {
  return oCat(lvCat(ya, ada), lvCat(yb, adb));
}

// -- group environment G_Ristretto255 ----------------------------------------------------

/** generator_string(G.DSI, PRS, CI, sid, H.s_in_bytes), zero padding included. */
export function generatorString(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Uint8Array {
  const lenZpad = Math.max(0, S_IN_BYTES - 1 - prependLen(prs).length - prependLen(DSI).length);
  return lvCat(DSI, prs, new Uint8Array(lenZpad), ci, sid);
}

/** The encoded generator g derived from the password, CI and sid. */
export function calculateGenerator(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Uint8Array {
  const hash = sha512(generatorString(prs, ci, sid)).subarray(0, 2 * FIELD_SIZE_BYTES);
  return ristretto255_hasher.deriveToCurve!(hash).toBytes();
}

/** A fresh secret scalar: 32 random bytes with bits 252..255 cleared (redrawn if zero). */
export function sampleScalar(randbytes: RandBytes = randomBytes): Uint8Array {
  for (;;) {
    const raw = Uint8Array.from(randbytes(SCALAR_BYTES));
    if (raw.length !== SCALAR_BYTES) throw new RangeError("randbytes returned the wrong number of bytes");
    raw[31] = (raw[31] as number) & 0x0f;
    if (raw.some((b) => b !== 0)) return raw;
  }
}

/** The scalar as libsodium's crypto_scalarmult_ristretto255 reads it: little-endian,
 * bit 255 ignored; reduced modulo the group order (the same point). */
function scalarOf(y: Uint8Array): bigint {
  if (y.length !== SCALAR_BYTES) throw new HandshakeError("scalar is not 32 bytes");
  let n = 0n;
  for (let i = SCALAR_BYTES - 1; i >= 0; i--) n = (n << 8n) | BigInt(i === 31 ? (y[i] as number) & 0x7f : (y[i] as number));
  return n % ORDER;
}

function multiply(y: Uint8Array, point: InstanceType<typeof Point>, what: string): Uint8Array {
  const n = scalarOf(y);
  if (n === 0n) throw new HandshakeError(`${what} gives the identity element`);
  const k = point.multiply(n);
  if (k.is0()) throw new HandshakeError(`${what} gives the identity element`);
  return k.toBytes();
}

/** encode(y * g) for our own scalar and a generator we derived. */
export function scalarMult(y: Uint8Array, g: Uint8Array): Uint8Array {
  let point;
  try {
    point = Point.fromBytes(g);
  } catch {
    throw new HandshakeError("generator is not a valid ristretto255 element");
  }
  return multiply(y, point, "scalar multiplication");
}

/** encode(y * decode(x)) for a peer's share; HandshakeError where the draft gives G.I
 * (strict RFC 9496 decoding: non-canonical encodings, bit 255 included, are refused). */
export function scalarMultVfy(y: Uint8Array, x: Uint8Array): Uint8Array {
  if (x.length !== POINT_BYTES) throw new HandshakeError("peer share is not a 32-byte ristretto255 encoding");
  let point;
  try {
    if ((x[31] as number) & 0x80) throw new Error("bit 255");
    point = Point.fromBytes(x);
  } catch {
    throw new HandshakeError("peer share is not a valid ristretto255 element");
  }
  if (point.is0()) throw new HandshakeError("peer share gives the identity element");
  return multiply(y, point, "peer share");
}

// -- outputs -----------------------------------------------------------------------------

/** ISK = H(lv_cat(DSI || "_ISK", sid, K) || transcript_ir(Ya, ADa, Yb, ADb)). */
export function deriveIsk(sid: Uint8Array, k: Uint8Array, ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Uint8Array {
  return sha512(concat(lvCat(DSI_ISK, sid, k), transcriptIr(ya, ada, yb, adb)));
}

/** ISK with the ordered-concatenation transcript (symmetric setting; vectors only). */
export function deriveIskSymmetric(sid: Uint8Array, k: Uint8Array, ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Uint8Array {
  return sha512(concat(lvCat(DSI_ISK, sid, k), transcriptOc(ya, ada, yb, adb)));
}

/** sid_output = H("CPaceSidOutput" || transcript). */
export function sidOutput(transcript: Uint8Array): Uint8Array {
  return sha512(concat(encodeAscii("CPaceSidOutput"), transcript));
}

/** mac_key = H("CPaceMac" || sid || ISK). */
export function macKey(sid: Uint8Array, isk: Uint8Array): Uint8Array {
  return sha512(concat(encodeAscii("CPaceMac"), sid, isk));
}

/** A party's tag over the message it sent: HMAC-SHA-512(mac_key, lv_cat(Y, AD)). */
export function confirmationTag(key: Uint8Array, y: Uint8Array, ad: Uint8Array): Uint8Array {
  return hmac(sha512, key, lvCat(y, ad));
}

/** Constant-time comparison of confirmation tags. */
export function verifyTag(expected: Uint8Array, received: Uint8Array): boolean {
  return constantTimeEqual(expected, received);
}
