// An in-memory stream pair and session for the service clients' tests: the technician's
// end is what the clients use, the agent's end is driven by the test with the bytes the
// Python agent sends (vectors.json). Same contract as the channel's streams: read()
// resolves null at the peer's EOF and throws StreamReset after a reset; write() copies.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Action, Answer, Details, ServiceSession, ServiceStream } from "../../src/services/common";
import { ConsentRefused } from "../../src/protocol/control";
import { SessionEnded, StreamReset } from "../../src/protocol/errors";

class Inbox {
  chunks: Uint8Array[] = [];
  eof = false;
  reset: string | null = null;
  waiters: Array<() => void> = [];
  wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

let nextStreamId = 1;

export class MemStream implements ServiceStream {
  readonly id = nextStreamId++;
  peer!: MemStream;
  readonly inbox = new Inbox();
  /** Every byte this end wrote, in order (for the tests' checks). */
  readonly written: Uint8Array[] = [];
  wroteEof = false;
  /** The reset reason this end sent, if any. */
  sentReset: string | null = null;

  constructor(
    readonly kind: string,
    readonly params: Record<string, unknown>,
  ) {}

  async read(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.inbox.reset !== null) throw new StreamReset(this.inbox.reset);
      const chunk = this.inbox.chunks.shift();
      if (chunk !== undefined) return chunk;
      if (this.inbox.eof) return null;
      await new Promise<void>((r) => this.inbox.waiters.push(r));
    }
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.inbox.reset !== null) throw new StreamReset(this.inbox.reset);
    if (this.wroteEof) throw new SessionEnded("stream_closed");
    await Promise.resolve();
    this.written.push(data.slice());
    this.peer.inbox.chunks.push(data.slice());
    this.peer.inbox.wake();
  }

  async writeEof(): Promise<void> {
    if (this.inbox.reset !== null) throw new StreamReset(this.inbox.reset);
    this.wroteEof = true;
    this.peer.inbox.eof = true;
    this.peer.inbox.wake();
  }

  async reset(reason: string): Promise<void> {
    if (this.sentReset !== null || this.inbox.reset !== null) return;
    this.sentReset = reason;
    this.inbox.reset = reason; // our own reads fail too
    this.peer.inbox.reset = reason;
    this.inbox.wake();
    this.peer.inbox.wake();
  }

  /** All bytes this end wrote so far, as one array. */
  bytes(): Uint8Array {
    const n = this.written.reduce((a, c) => a + c.length, 0);
    const out = new Uint8Array(n);
    let at = 0;
    for (const c of this.written) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  /** Read everything until the peer's EOF (or reset: then throws). */
  async readAll(): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for (let c = await this.read(); c !== null; c = await this.read()) parts.push(c);
    const n = parts.reduce((a, c) => a + c.length, 0);
    const out = new Uint8Array(n);
    let at = 0;
    for (const c of parts) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

export function streamPair(kind: string, params: Record<string, unknown> = {}): [MemStream, MemStream] {
  const tech = new MemStream(kind, params);
  const agent = new MemStream(kind, params);
  tech.peer = agent;
  agent.peer = tech;
  return [tech, agent];
}

export interface Asked {
  action: Action;
  details: Details;
  purpose: string | undefined;
}

/** A session whose customer answers with `answers` (in order; default: granted), and
 * whose agent side is handed to `serve` for each stream opened. */
export class FakeSession implements ServiceSession {
  readonly asked: Asked[] = [];
  readonly opened: MemStream[] = [];
  readonly agentEnds: MemStream[] = [];
  inForce: string[] = [];
  private nextId = 1;

  constructor(
    private readonly serve: (agent: MemStream) => void | Promise<void>,
    private readonly answers: Array<{ granted: boolean; reason?: string }> = [],
  ) {}

  /** Answers as protocol/control.ts's TechnicianSession does: a refusal is thrown. */
  async ask(action: Action, details: Details = {}, purpose?: string): Promise<Answer> {
    this.asked.push({ action, details, purpose });
    const a = this.answers.shift() ?? { granted: true };
    if (!a.granted) throw new ConsentRefused(action, a.reason ?? "denied");
    return { type: "answer", id: this.nextId++, action, granted: true };
  }

  get granted(): readonly string[] {
    return this.inForce;
  }

  async open(kind: string, params: Record<string, unknown> = {}): Promise<ServiceStream> {
    const [tech, agent] = streamPair(kind, params);
    this.opened.push(tech);
    this.agentEnds.push(agent);
    void Promise.resolve(this.serve(agent)).catch(() => {});
    return tech;
  }
}

// -- the Python side's recorded bytes -------------------------------------------------

export const vectors = JSON.parse(readFileSync(resolve(import.meta.dirname, "vectors.json"), "utf-8"));

export function b64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "base64"));
}

export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** Wait until `check` is true, yielding to the event loop (no wall-clock limit: the
 * test's own timeout bounds it). */
export async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 1));
}
