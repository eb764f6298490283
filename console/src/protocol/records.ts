// Encrypted records of the end-to-end channel, as src/enkaku/protocol/records.py
// (docs/protocol/records.md): AES-256-GCM through WebCrypto, keys from HKDF-SHA-256.
//
//     0x10 | AES-256-GCM(key, 0^32 | counter u64 BE, plaintext, aad = 0x10) | tag (16)
//
// WebCrypto is asynchronous, so each call takes its nonce (and key) synchronously, in
// call order, and its promise settles only after every earlier call of the same
// direction has settled: records seal and open in counter order whatever order the
// crypto work finishes in. A record that fails to open fails every later one.

import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { copyBytes, encodeAscii } from "./bytes";
import { RecordError } from "./errors";

export const RECORD = 0x10;
const AAD = Uint8Array.of(RECORD);
export const MAX_PLAINTEXT = 65536;
export const TAG_BYTES = 16;
export const KEY_BYTES = 32;
export const MAX_RECORD = 1 + MAX_PLAINTEXT + TAG_BYTES;
export const MIN_RECORD = 1 + TAG_BYTES;
/** 2**20 records of at most 64 KiB: 2**32 AES blocks per key. */
export const DEFAULT_REKEY_AFTER = 1 << 20;

export const INFO_AGENT_TO_TECHNICIAN = encodeAscii("enkaku/1 agent->technician");
export const INFO_TECHNICIAN_TO_AGENT = encodeAscii("enkaku/1 technician->agent");
export const INFO_KEY_UPDATE = encodeAscii("enkaku/1 key update");

/** [agent->technician key, technician->agent key] from the ISK and sid. */
export function deriveDirectionKeys(isk: Uint8Array, sid: Uint8Array): [Uint8Array, Uint8Array] {
  const prk = extract(sha256, isk, sid);
  return [expand(sha256, prk, INFO_AGENT_TO_TECHNICIAN, KEY_BYTES), expand(sha256, prk, INFO_TECHNICIAN_TO_AGENT, KEY_BYTES)];
}

/** The key that replaces `key` after `rekeyAfter` records. */
export function nextKey(key: Uint8Array): Uint8Array {
  return expand(sha256, key, INFO_KEY_UPDATE, KEY_BYTES);
}

function nonceFor(counter: number): Uint8Array<ArrayBuffer> {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(counter), false);
  return nonce;
}

function importKey(raw: Uint8Array): Promise<CryptoKey> {
  return globalThis.crypto.subtle.importKey("raw", copyBytes(raw), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

/** Key and implicit counter of one direction. */
class Direction {
  private rawKey: Uint8Array;
  private key: Promise<CryptoKey>;
  counter = 0;
  generation = 0;
  /** Settles (never rejects) once every call so far has settled; false after a failure. */
  tail: Promise<boolean> = Promise.resolve(true);

  constructor(key: Uint8Array, readonly rekeyAfter: number) {
    this.rawKey = key;
    this.key = importKey(key);
    this.key.catch(() => undefined);
  }

  /** The next nonce and the key it goes with; updates the key when due. */
  next(): [Uint8Array<ArrayBuffer>, Promise<CryptoKey>] {
    if (this.counter >= this.rekeyAfter) {
      this.rawKey = nextKey(this.rawKey);
      this.key = importKey(this.rawKey);
      this.key.catch(() => undefined);
      this.counter = 0;
      this.generation += 1;
    }
    const nonce = nonceFor(this.counter);
    this.counter += 1;
    return [nonce, this.key];
  }
}

export type Role = "agent" | "technician";

/** Sans-IO AEAD channel for one side: seal outgoing records, open incoming ones. */
export class RecordChannel {
  readonly role: Role;
  private readonly send: Direction;
  private readonly recv: Direction;
  private _failed = false;
  recordsSent = 0;
  recordsReceived = 0;

  constructor(isk: Uint8Array, sid: Uint8Array, role: Role, rekeyAfter: number = DEFAULT_REKEY_AFTER) {
    if (role !== "agent" && role !== "technician") throw new RangeError(`unknown role ${String(role)}`);
    if (!(Number.isInteger(rekeyAfter) && rekeyAfter >= 1 && rekeyAfter <= DEFAULT_REKEY_AFTER)) {
      throw new RangeError(`rekeyAfter must be in 1..${DEFAULT_REKEY_AFTER}`);
    }
    const [a2t, t2a] = deriveDirectionKeys(isk, sid);
    const [send, recv] = role === "agent" ? [a2t, t2a] : [t2a, a2t];
    this.role = role;
    this.send = new Direction(send, rekeyAfter);
    this.recv = new Direction(recv, rekeyAfter);
  }

  /** True once a record failed to open; the channel then refuses everything. */
  get failed(): boolean {
    return this._failed;
  }

  /** Encrypt one record: the whole wire message (0x10 | ciphertext | tag). Takes the
   * next counter now; settles after every earlier seal. An oversized plaintext throws a
   * RangeError at once and costs nothing. */
  seal(plaintext: Uint8Array): Promise<Uint8Array> {
    if (this._failed) return Promise.reject(new RecordError("the channel failed earlier and is closed"));
    if (plaintext.length > MAX_PLAINTEXT) {
      throw new RangeError(`record plaintext of ${plaintext.length} bytes exceeds ${MAX_PLAINTEXT}`);
    }
    const data = copyBytes(plaintext);
    const [iv, key] = this.send.next();
    this.recordsSent += 1;
    const work = key.then((k) => globalThis.crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: AAD, tagLength: 128 }, k, data));
    work.catch(() => undefined);
    const prev = this.send.tail;
    const result = prev.then(async () => {
      const ct = new Uint8Array(await work);
      const out = new Uint8Array(1 + ct.length);
      out[0] = RECORD;
      out.set(ct, 1);
      return out;
    });
    this.send.tail = result.then(() => true, () => false);
    return result;
  }

  /** Decrypt the next record from the peer. Takes the next counter now; settles after
   * every earlier open. Any failure is fatal (RecordError) for this and every later one. */
  open(message: Uint8Array): Promise<Uint8Array> {
    if (this._failed) return Promise.reject(new RecordError("the channel failed earlier and is closed"));
    const prev = this.recv.tail;
    let invalid: string | null = null;
    if (!(message.length >= MIN_RECORD && message.length <= MAX_RECORD)) {
      invalid = `record of ${message.length} bytes has an invalid size`;
    } else if (message[0] !== RECORD) {
      invalid = `expected a record (0x10), got message type 0x${(message[0] as number).toString(16).padStart(2, "0")}`;
    }
    let result: Promise<Uint8Array>;
    if (invalid !== null) {
      this._failed = true;
      const reason = invalid;
      result = prev.then(() => {
        throw new RecordError(reason);
      });
    } else {
      const data = copyBytes(message.subarray(1));
      const [iv, key] = this.recv.next();
      const work = key.then((k) => globalThis.crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: AAD, tagLength: 128 }, k, data));
      work.catch(() => undefined);
      result = prev.then(async (ok) => {
        if (!ok) throw new RecordError("the channel failed earlier and is closed");
        let pt: ArrayBuffer;
        try {
          pt = await work;
        } catch {
          this._failed = true;
          throw new RecordError("record failed authentication (tampered, dropped, replayed or reordered)");
        }
        this.recordsReceived += 1;
        return new Uint8Array(pt);
      });
    }
    this.recv.tail = result.then(() => true, () => false);
    return result;
  }
}
