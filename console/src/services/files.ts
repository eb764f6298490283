// File transfer in the page (docs/protocol/files.md): send a File to the customer, list
// the customer's folders, take a file (or a folder, as NAME.tar) with their consent.
// Mirrors src/enkaku/protocol/filexfer.py (wire format, name rules) and
// src/enkaku/technician/files.py (the technician's side).
//
// - Sending (`sendFile`): the page hashes the file (SHA-256), asks `file_to_customer`
//   with the name, size and folder the customer will see, opens `file_put`; the agent
//   answers {"offset": N} (N > 0: it kept a verified part of this very file from a cut
//   transfer), the page sends [N, size) and EOF, the agent checks the hash and answers
//   {"ok": true, "name": NAME}. Sending the same file again resumes.
// - Taking (`takeFile`): asks `file_from_customer` with the path, opens `file_get`; the
//   agent sends {"name","size","sha256","offset","mtime"} then the bytes. What arrived of
//   a cut download is kept hidden in a `PartialStore` (memory, 24 h), offered again as
//   offset + sha256, and the agent resumes when the file did not change. The page gets
//   a Blob only once the whole file's SHA-256 matched: a failed transfer leaves nothing
//   half-done. A folder arrives as NAME.tar (frames, then a trailer; never resumed).
// - Progress: `onProgress({done, total, bytesPerSecond, secondsLeft})`, first with
//   where the transfer starts (a resumed one above 0). Several transfers may run at once
//   (each its own stream); an AbortSignal cancels one (stream reset `cancelled`).
// - Failures are `TransferError(reason)` with the RESET reasons of files.md.

import { sha256 } from "@noble/hashes/sha2.js";
import {
  type ProgressHandler,
  ProgressMeter,
  type ServiceSession,
  type ServiceStream,
  concat,
  hex,
  isSessionEnded,
  obtainGrant,
  openWithGrant,
  parseObject,
  quietReset,
  resetOnAbort,
  resetReason,
  utf8,
} from "./common";

export const KIND_PUT = "file_put";
export const KIND_GET = "file_get";
export const KIND_BROWSE = "browse";
export const ACTION_PUT = "file_to_customer";
export const ACTION_GET = "file_from_customer";
export const ACTION_BROWSE = "browse";
export const MAX_LINE = 4096;
export const MAX_LISTING = 1 << 20;
export const MAX_ENTRIES = 2000;
export const MAX_NAME_BYTES = 255;
export const MAX_PATH = 1024;
export const MAX_SIZE = 2 ** 50;
/** Bytes read from the File and handed to the stream at a time. */
export const CHUNK = 256 * 1024;
export const MAX_FRAME = 1 << 20;
export const TEMP_PREFIX = ".enkaku-";
/** How long the hidden part of a cut download is kept (as the Python side's). */
export const PARTIAL_TTL_MS = 24 * 3600 * 1000;
/** Progress is reported at least every this many bytes (and at start and end). */
const PROGRESS_STEP = 256 * 1024;
/** Received bytes are gathered into Blobs of this size (the browser may keep them on disk). */
const BLOB_BATCH = 8 << 20;

export type OsKind = "posix" | "windows";

/** A transfer was refused or failed; `reason` is the RESET reason (docs/protocol/files.md:
 * `name_*`, `dest_*`, `exists`, `busy`, `disk_full`, `permission_denied`, `hash_mismatch`,
 * `not_found`, ..., `interrupted` when the stream or session ended, `cancelled`). */
export class TransferError extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(`transfer failed: ${reason}`);
    this.name = "TransferError";
    this.reason = reason;
  }
}

// -- names ----------------------------------------------------------------------------

const WINDOWS_RESERVED = new Set([
  "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
  ...["COM", "LPT"].flatMap((dev) => [..."123456789¹²³"].map((n) => dev + n)),
]);
const WINDOWS_BAD = /[<>:"|?*]/u;
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;

/** Why `name` may not be created as a file on `os` (a RESET reason), or null
 * (filexfer.check_name). */
export function checkName(name: string, os: OsKind): string | null {
  if (name === "") return "name_empty";
  if (/\p{Cs}/u.test(name)) return "name_control"; // lone surrogates cannot be UTF-8
  if (utf8(name).length > MAX_NAME_BYTES) return "name_too_long";
  if (name.includes("/") || name.includes("\\")) return "name_separator";
  if (name === "." || name === "..") return "name_dots";
  if (INVISIBLE.test(name)) return "name_control";
  if (name.startsWith(TEMP_PREFIX)) return "name_reserved";
  if (os === "windows") {
    if (WINDOWS_BAD.test(name)) return "name_bad_char";
    if (name.endsWith(".") || name.endsWith(" ")) return "name_trailing";
    if (WINDOWS_RESERVED.has(name.split(".", 1)[0]!.replace(/ +$/u, "").toUpperCase())) return "name_reserved";
  }
  return null;
}

// -- messages -------------------------------------------------------------------------

/** One message line: compact JSON and a newline (filexfer.encode_line). */
export function encodeLine(obj: Record<string, unknown>): Uint8Array {
  const line = utf8(JSON.stringify(obj) + "\n");
  if (line.length > MAX_LINE) throw new RangeError("message line too long");
  return line;
}

/** Incremental reader of one message line; the bytes after it are file data. */
export class LineReader {
  private buf: Uint8Array = new Uint8Array(0);

  /** The message and the bytes after it once the line is complete, else null. Throws
   * TransferError("bad_params") for a line over MAX_LINE or that is not a JSON object. */
  feed(data: Uint8Array): [Record<string, unknown>, Uint8Array] | null {
    this.buf = concat([this.buf, data]);
    const end = this.buf.indexOf(0x0a);
    if (end < 0) {
      if (this.buf.length > MAX_LINE) throw new TransferError("bad_params");
      return null;
    }
    if (end + 1 > MAX_LINE) throw new TransferError("bad_params");
    const obj = parseObject(this.buf.subarray(0, end));
    if (obj === null) throw new TransferError("bad_params");
    return [obj, this.buf.slice(end + 1)];
  }
}

function int(value: unknown, low: number, high: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < low || value > high) {
    throw new TransferError("bad_params");
  }
  return value;
}

function str(value: unknown, limit: number): string {
  if (typeof value !== "string" || [...value].length > limit) throw new TransferError("bad_params");
  return value;
}

function sha(value: unknown): string {
  if (typeof value !== "string" || !/^[0-9a-f]{64}$/.test(value)) throw new TransferError("bad_params");
  return value;
}

function num(value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) throw new TransferError("bad_params");
  return value;
}

export interface GetHeader {
  readonly name: string;
  readonly size: number;
  readonly sha256: string;
  readonly offset: number;
  readonly mtime: number;
}

export function parseGetHeader(obj: Record<string, unknown>): GetHeader {
  const size = int(obj.size, 0, MAX_SIZE);
  return {
    name: str(obj.name, 4 * MAX_NAME_BYTES),
    size,
    sha256: sha(obj.sha256),
    offset: int(obj.offset, 0, size),
    mtime: obj.mtime === undefined ? 0 : num(obj.mtime),
  };
}

export interface Trailer {
  readonly size: number;
  readonly sha256: string;
  readonly skipped: number;
}

/** Incremental reader of a folder's tar stream: `length u32 | bytes` frames, a zero
 * length, then the trailer line (filexfer.FramedReader). */
export class FramedReader {
  private buf: Uint8Array = new Uint8Array(0);
  private lines: LineReader | null = null;
  trailer: Trailer | null = null;

  feed(data: Uint8Array): Uint8Array[] {
    if (this.trailer !== null) {
      if (data.length) throw new TransferError("bad_params");
      return [];
    }
    this.buf = concat([this.buf, data]);
    const out: Uint8Array[] = [];
    while (this.lines === null) {
      if (this.buf.length < 4) return out;
      const n = new DataView(this.buf.buffer, this.buf.byteOffset).getUint32(0);
      if (n > MAX_FRAME) throw new TransferError("bad_params");
      if (n === 0) {
        this.buf = this.buf.subarray(4);
        this.lines = new LineReader();
      } else if (this.buf.length < 4 + n) {
        return out;
      } else {
        out.push(this.buf.slice(4, 4 + n));
        this.buf = this.buf.subarray(4 + n);
      }
    }
    const got = this.lines.feed(this.buf);
    this.buf = new Uint8Array(0);
    if (got !== null) {
      const [obj, rest] = got;
      if (rest.length) throw new TransferError("bad_params");
      this.trailer = { size: int(obj.size, 0, MAX_SIZE), sha256: sha(obj.sha256), skipped: int(obj.skipped, 0, MAX_SIZE) };
    }
    return out;
  }
}

export type EntryType = "file" | "dir" | "link" | "other";

export interface Entry {
  readonly name: string;
  readonly type: EntryType;
  readonly size: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
}

export interface Listing {
  readonly path: string;
  /** Folders first, then by name (as the agent sorts them). */
  readonly entries: readonly Entry[];
  /** Whether the agent left entries out (more than 2,000, or over 1 MiB). */
  readonly truncated: boolean;
}

const ENTRY_TYPES = new Set(["file", "dir", "link", "other"]);

/** A `browse` answer, checked (filexfer.parse_listing). */
export function parseListing(data: Uint8Array): Listing {
  const obj = data.length <= MAX_LISTING ? parseObject(data) : null;
  if (obj === null) throw new TransferError("bad_params");
  const entries = obj.entries;
  if (!Array.isArray(entries) || entries.length > MAX_ENTRIES) throw new TransferError("bad_params");
  const out = entries.map((entry: unknown): Entry => {
    const e = entry as Record<string, unknown>;
    if (typeof e !== "object" || e === null || Array.isArray(e) || !ENTRY_TYPES.has(e.type as string)) {
      throw new TransferError("bad_params");
    }
    return { name: str(e.name, 4 * MAX_NAME_BYTES), type: e.type as EntryType, size: int(e.size, 0, MAX_SIZE), mtime: num(e.mtime) };
  });
  if (typeof obj.truncated !== "boolean") throw new TransferError("bad_params");
  return { path: str(obj.path, MAX_PATH), entries: out, truncated: obj.truncated };
}

// -- streams: shared ------------------------------------------------------------------

/** Why a stream stopped: the agent's RESET reason, else an interruption. */
function ended(err: unknown): unknown {
  if (err instanceof TransferError) return err;
  const reason = resetReason(err);
  if (reason !== null) return new TransferError(reason);
  if (isSessionEnded(err)) return new TransferError("interrupted");
  return err;
}

async function fail(stream: ServiceStream, reason: string): Promise<TransferError> {
  await quietReset(stream, reason);
  return new TransferError(reason);
}

async function readLine(stream: ServiceStream, reader: LineReader): Promise<[Record<string, unknown>, Uint8Array]> {
  for (;;) {
    const data = await stream.read();
    if (data === null) throw new TransferError("interrupted");
    let done: [Record<string, unknown>, Uint8Array] | null;
    try {
      done = reader.feed(data);
    } catch (err) {
      throw await fail(stream, (err as TransferError).reason);
    }
    if (done !== null) return done;
  }
}

/** Reports progress with speed and time left, at most every PROGRESS_STEP bytes. */
class Reporter {
  private readonly meter = new ProgressMeter();
  private last = -Infinity;
  constructor(private readonly handler: ProgressHandler | undefined) {}

  report(done: number, total: number, force = false): void {
    if (this.handler === undefined) return;
    if (!force && done - this.last < PROGRESS_STEP && done < total) return;
    this.last = done;
    this.handler(this.meter.update(done, total));
  }
}

/** SHA-256 of a Blob, read in chunks; `onProgress(done, total)` while it reads. */
export async function sha256Blob(blob: Blob, onProgress?: (done: number, total: number) => void): Promise<string> {
  const hasher = sha256.create();
  for (let at = 0; at < blob.size; at += CHUNK) {
    hasher.update(new Uint8Array(await blob.slice(at, at + CHUNK).arrayBuffer()));
    onProgress?.(Math.min(at + CHUNK, blob.size), blob.size);
  }
  return hex(hasher.digest());
}

// -- sending --------------------------------------------------------------------------

export interface PutParams {
  readonly name: string;
  readonly size: number;
  readonly sha256: string;
  /** An absolute folder of the customer's, or "" for their incoming folder (~/Downloads). */
  readonly dest: string;
  readonly overwrite: boolean;
}

/** The `file_put` parameters for `file` (reads it whole for its hash). `os`: the
 * customer's naming rules (their agent checks again). Throws TransferError. */
export async function putParams(
  file: Blob,
  name: string,
  opts: { dest?: string; overwrite?: boolean; os?: OsKind; onHashing?: (done: number, total: number) => void } = {},
): Promise<PutParams> {
  const bad = checkName(name, opts.os ?? "posix");
  if (bad !== null) throw new TransferError(bad);
  const dest = opts.dest ?? "";
  if (dest !== "" && !dest.startsWith("/")) throw new TransferError("bad_path");
  if (file.size > MAX_SIZE) throw new TransferError("bad_params");
  let digest: string;
  try {
    digest = await sha256Blob(file, opts.onHashing);
  } catch {
    throw new TransferError("cancelled"); // the file became unreadable
  }
  return { name, size: file.size, sha256: digest, dest, overwrite: opts.overwrite ?? false };
}

/** What the customer reads in the question and the agent binds the stream to. */
export function consentDetails(kind: string, params: Record<string, unknown>, size?: number): Record<string, string | number | boolean> {
  if (kind === KIND_PUT) {
    const p = params as unknown as PutParams;
    return { name: p.name, size: p.size, dest: p.dest, overwrite: p.overwrite };
  }
  if (kind === KIND_GET) {
    const details: Record<string, string | number | boolean> = { path: String(params.path) };
    if (size !== undefined) details.size = size;
    return details;
  }
  if (kind === KIND_BROWSE) return {};
  throw new RangeError(`not a file stream kind: ${kind}`);
}

/** Send `file` on a `file_put` stream opened with its `putParams`; the name the
 * customer's file got. Throws TransferError. */
export async function put(stream: ServiceStream, file: Blob, onProgress?: ProgressHandler): Promise<string> {
  const size = typeof stream.params.size === "number" ? stream.params.size : file.size;
  const progress = new Reporter(onProgress);
  try {
    const [obj] = await readLine(stream, new LineReader());
    let offset: number;
    try {
      offset = int(obj.offset, 0, size);
    } catch {
      throw await fail(stream, "bad_params");
    }
    if (file.size !== size) throw await fail(stream, "size_mismatch");
    progress.report(offset, size, true);
    for (let pos = offset; pos < size; ) {
      let chunk: Uint8Array;
      try {
        chunk = new Uint8Array(await file.slice(pos, Math.min(pos + CHUNK, size)).arrayBuffer());
      } catch {
        throw await fail(stream, "cancelled"); // the File changed or went away on disk
      }
      if (chunk.length === 0) throw await fail(stream, "size_mismatch");
      await stream.write(chunk);
      pos += chunk.length;
      progress.report(pos, size, pos === size);
    }
    await stream.writeEof();
    const [result] = await readLine(stream, new LineReader());
    if (result.ok !== true || typeof result.name !== "string") throw await fail(stream, "bad_params");
    return result.name;
  } catch (err) {
    throw ended(err);
  }
}

export interface SendOptions {
  /** An absolute folder of the customer's; default their incoming folder. */
  dest?: string;
  /** Replace a file of that name (the customer is told). */
  overwrite?: boolean;
  /** The customer's naming rules (default posix: the agent is Linux). */
  os?: OsKind;
  purpose?: string;
  signal?: AbortSignal;
  onAsking?: (action: string) => void;
  /** While the page reads the file for its hash, before asking. */
  onHashing?: (done: number, total: number) => void;
  onProgress?: ProgressHandler;
}

export interface Sent {
  /** The name the file got on the customer's computer. */
  readonly name: string;
  readonly size: number;
  readonly sha256: string;
}

/** Send a File (its own name) or a Blob with `name` to the customer: hash, ask, send.
 * Throws TransferError, ConsentRefused or the channel's SessionEnded. */
export async function sendFile(session: ServiceSession, file: Blob, name: string, opts: SendOptions = {}): Promise<Sent> {
  const params = await putParams(file, name, opts);
  if (opts.signal?.aborted) throw new TransferError("cancelled");
  const grant = await obtainGrant(session, ACTION_PUT, consentDetails(KIND_PUT, { ...params }), opts.purpose, opts.onAsking);
  const stream = await openWithGrant(session, KIND_PUT, { ...params }, grant);
  const unhook = resetOnAbort(stream, opts.signal);
  try {
    const got = await put(stream, file, opts.onProgress);
    return { name: got, size: params.size, sha256: params.sha256 };
  } catch (err) {
    if (opts.signal?.aborted) throw new TransferError("cancelled");
    throw err;
  } finally {
    unhook();
  }
}

// -- taking ---------------------------------------------------------------------------

/** What arrived of a download, held in memory: Blobs, the batch being gathered, and the
 * SHA-256 of everything so far. */
class Part {
  pieces: Blob[] = [];
  batch: Uint8Array[] = [];
  batchSize = 0;
  length = 0;
  hasher = sha256.create();
  updated = Date.now();
  busy = false;

  constructor(
    readonly key: string,
    readonly sha256: string,
  ) {}

  append(data: Uint8Array): void {
    this.hasher.update(data);
    this.batch.push(data);
    this.batchSize += data.length;
    this.length += data.length;
    if (this.batchSize >= BLOB_BATCH) this.flush();
  }

  flush(): void {
    if (this.batchSize) this.pieces.push(new Blob(this.batch as BlobPart[]));
    this.batch = [];
    this.batchSize = 0;
  }

  blob(type = "application/octet-stream"): Blob {
    this.flush();
    return new Blob(this.pieces, { type });
  }

  /** Cut back to `offset` bytes (the agent resumes from there), hashing them again. */
  async rewind(offset: number): Promise<void> {
    const kept = this.blob().slice(0, offset);
    this.pieces = [];
    this.length = 0;
    this.hasher = sha256.create();
    for (let at = 0; at < kept.size; at += CHUNK) this.append(new Uint8Array(await kept.slice(at, at + CHUNK).arrayBuffer()));
  }
}

/** The hidden parts of cut downloads, for resumption (the Python side keeps them on
 * disk as .enkaku-*.part files; the page keeps them in memory, for PARTIAL_TTL_MS).
 * One store per page; nothing in it is ever shown as a file. */
export class PartialStore {
  private readonly parts = new Map<string, Part>();
  constructor(
    private readonly ttlMs = PARTIAL_TTL_MS,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Drop parts older than the TTL (not those in use). */
  expire(): void {
    const now = this.now();
    for (const [key, part] of this.parts) if (!part.busy && now - part.updated > this.ttlMs) this.parts.delete(key);
  }

  /** The bytes kept for `key` (0 if none). */
  kept(key: string): { length: number; sha256: string } | null {
    const part = this.parts.get(key);
    return part && part.length > 0 ? { length: part.length, sha256: part.sha256 } : null;
  }

  /** Forget everything kept (the page's "discard partial downloads"). */
  clear(): void {
    for (const [key, part] of this.parts) if (!part.busy) this.parts.delete(key);
  }

  /** Take the part for `key` (for a download whose whole file hashes to `sha`); throws
   * TransferError("busy") when another download of it runs. */
  acquire(key: string, sha: string): Part {
    let part = this.parts.get(key);
    if (part?.busy) throw new TransferError("busy");
    if (part === undefined || part.sha256 !== sha) {
      part = new Part(key, sha);
      this.parts.set(key, part);
    }
    part.busy = true;
    return part;
  }

  /** The transfer stopped: keep what arrived (nothing if nothing arrived). */
  keep(part: Part): void {
    part.busy = false;
    part.updated = this.now();
    part.flush();
    if (part.length === 0) this.parts.delete(part.key);
  }

  discard(part: Part): void {
    part.busy = false;
    if (this.parts.get(part.key) === part) this.parts.delete(part.key);
  }
}

function getKey(path: string): string {
  return `get\0${path}`;
}

/** The `file_get` parameters for the customer's `path`: with the offset and hash of a
 * part kept from an earlier try. Removes expired parts first. */
export function getParams(path: string, store: PartialStore): Record<string, unknown> {
  if (!path.startsWith("/")) throw new TransferError("bad_path");
  store.expire();
  const params: Record<string, unknown> = { path, offset: 0 };
  const kept = store.kept(getKey(path));
  if (kept !== null) {
    params.offset = kept.length;
    params.sha256 = kept.sha256;
  }
  return params;
}

export interface Received {
  /** The file's name (a folder's is NAME.tar). */
  readonly name: string;
  /** The whole file, checked against the sender's SHA-256. */
  readonly blob: Blob;
  readonly size: number;
  readonly sha256: string;
  /** Seconds since the epoch (0 for a folder's archive). */
  readonly mtime: number;
  /** A folder, as a tar archive. */
  readonly archive: boolean;
  /** Entries of the folder left out (unreadable files, devices, ...). */
  readonly skipped: number;
}

/** Receive the file of a `file_get` stream opened with `getParams`. Throws
 * TransferError; a cut download keeps its part in `store`. */
export async function get(stream: ServiceStream, store: PartialStore, onProgress?: ProgressHandler): Promise<Received> {
  const progress = new Reporter(onProgress);
  try {
    const [obj, rest] = await readLine(stream, new LineReader());
    const received = "archive" in obj
      ? await getArchive(stream, obj, rest, progress)
      : await getFile(stream, obj, rest, store, progress);
    await stream.writeEof().catch(() => {}); // the file is whole and checked: keep it
    return received;
  } catch (err) {
    throw ended(err);
  }
}

async function parsed<T>(stream: ServiceStream, parse: () => T): Promise<T> {
  try {
    return parse();
  } catch (err) {
    if (err instanceof TransferError) throw await fail(stream, err.reason);
    throw err;
  }
}

async function getFile(
  stream: ServiceStream,
  obj: Record<string, unknown>,
  first: Uint8Array,
  store: PartialStore,
  progress: Reporter,
): Promise<Received> {
  const header = await parsed(stream, () => parseGetHeader(obj));
  const bad = checkName(header.name, "posix");
  if (bad !== null) throw await fail(stream, bad);
  let part: Part;
  try {
    part = store.acquire(getKey(String(stream.params.path)), header.sha256);
  } catch (err) {
    throw await fail(stream, (err as TransferError).reason);
  }
  let verified = false;
  try {
    if (header.offset > part.length) throw await fail(stream, "resume_mismatch");
    if (header.offset < part.length) await part.rewind(header.offset);
    const size = header.size;
    progress.report(part.length, size, true);
    let data: Uint8Array | null = first;
    while (data !== null) {
      if (part.length + data.length > size) {
        store.discard(part);
        throw await fail(stream, "size_mismatch");
      }
      if (data.length) part.append(data);
      progress.report(part.length, size);
      data = await stream.read();
    }
    progress.report(part.length, size, true);
    if (part.length !== size) throw await fail(stream, "size_mismatch");
    const digest = hex(part.hasher.digest());
    if (digest !== header.sha256) {
      store.discard(part);
      throw await fail(stream, "hash_mismatch");
    }
    verified = true;
    const blob = part.blob();
    store.discard(part);
    return { name: header.name, blob, size, sha256: digest, mtime: header.mtime, archive: false, skipped: 0 };
  } finally {
    if (!verified && part.busy) store.keep(part);
  }
}

async function getArchive(stream: ServiceStream, obj: Record<string, unknown>, first: Uint8Array, progress: Reporter): Promise<Received> {
  const [name, estimate] = await parsed(stream, (): [string, number] => {
    if (obj.archive !== "tar") throw new TransferError("bad_params");
    return [str(obj.name, 4 * MAX_NAME_BYTES), int(obj.estimate, 0, MAX_SIZE)];
  });
  const bad = checkName(name, "posix");
  if (bad !== null) throw await fail(stream, bad);
  const part = new Part(`tar\0${String(stream.params.path)}`, ""); // never kept
  const reader = new FramedReader();
  progress.report(0, estimate, true);
  let data: Uint8Array | null = first;
  while (data !== null) {
    const chunks = await parsed(stream, () => reader.feed(data!));
    for (const chunk of chunks) part.append(chunk);
    progress.report(part.length, Math.max(estimate, part.length));
    data = await stream.read();
  }
  const trailer = reader.trailer;
  if (trailer === null) throw new TransferError("interrupted");
  progress.report(part.length, part.length, true);
  if (trailer.size !== part.length) throw await fail(stream, "size_mismatch");
  const digest = hex(part.hasher.digest());
  if (digest !== trailer.sha256) throw await fail(stream, "hash_mismatch");
  return {
    name,
    blob: part.blob("application/x-tar"),
    size: part.length,
    sha256: digest,
    mtime: 0,
    archive: true,
    skipped: trailer.skipped,
  };
}

export interface TakeOptions {
  /** The file's size when known from a listing (shown to the customer). */
  size?: number;
  purpose?: string;
  signal?: AbortSignal;
  onAsking?: (action: string) => void;
  onProgress?: ProgressHandler;
}

/** Take the customer's file (or folder, as NAME.tar) at the absolute `path`: asks each
 * time, resumes a part kept in `store`. Throws TransferError, ConsentRefused or the
 * channel's SessionEnded. */
export async function takeFile(session: ServiceSession, path: string, store: PartialStore, opts: TakeOptions = {}): Promise<Received> {
  const params = getParams(path, store);
  const grant = await obtainGrant(session, ACTION_GET, consentDetails(KIND_GET, params, opts.size), opts.purpose, opts.onAsking);
  const stream = await openWithGrant(session, KIND_GET, params, grant);
  const unhook = resetOnAbort(stream, opts.signal);
  try {
    return await get(stream, store, opts.onProgress);
  } catch (err) {
    if (opts.signal?.aborted) throw new TransferError("cancelled");
    throw err;
  } finally {
    unhook();
  }
}

// -- browsing -------------------------------------------------------------------------

/** Read the listing of a `browse` stream. */
export async function browse(stream: ServiceStream): Promise<Listing> {
  try {
    const parts: Uint8Array[] = [];
    let size = 0;
    for (let chunk = await stream.read(); chunk !== null; chunk = await stream.read()) {
      parts.push(chunk);
      size += chunk.length;
      if (size > MAX_LISTING + 1) throw await fail(stream, "bad_params");
    }
    const listing = await parsed(stream, () => parseListing(concat(parts, size)));
    await stream.writeEof();
    return listing;
  } catch (err) {
    throw ended(err);
  }
}

export interface BrowseOptions {
  purpose?: string;
  onAsking?: (action: string) => void;
}

/** List the customer's folder `path` (absolute, or "" for their home folder): names,
 * types, sizes and dates, never contents. `browse` is a session permission. */
export async function browseFolder(session: ServiceSession, path = "", opts: BrowseOptions = {}): Promise<Listing> {
  if (path !== "" && !path.startsWith("/")) throw new TransferError("bad_path");
  const grant = await obtainGrant(session, ACTION_BROWSE, {}, opts.purpose, opts.onAsking);
  const stream = await openWithGrant(session, KIND_BROWSE, { path }, grant);
  return browse(stream);
}

/** The folder above `path` in a listing ("/" stays "/"). */
export function parentFolder(path: string): string {
  const trimmed = path.replace(/\/+$/u, "");
  const cut = trimmed.lastIndexOf("/");
  return cut <= 0 ? "/" : trimmed.slice(0, cut);
}

/** `name` inside the folder `path`. */
export function childPath(path: string, name: string): string {
  return path.endsWith("/") ? path + name : `${path}/${name}`;
}
