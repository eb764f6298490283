// noVNC over the end-to-end channel: the object noVNC 1.7's `RFB` constructor accepts in
// place of a URL (its core/websock.js `attach()` needs send, close, binaryType, protocol,
// readyState and the onopen/onmessage/onclose/onerror properties). Behind it is one
// `rfb` stream, exactly what `enkaku connect`'s VNC bridge opens per viewer
// (technician/vncbridge.py): RFB 3.8 bytes both ways, unchanged.
//
// Open it once the agent's `consent` granted the session (screen and control), as the
// CLI does; the agent resets an `rfb` stream without that grant (`consent_required`).

import type { Channel, Stream } from "./channel";
import { SessionEnded, StreamReset } from "./errors";

/** A close event as noVNC reads it (code, reason). */
export interface RfbCloseEvent {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** The WebSocket-like object handed to `new RFB(target, socket)`. */
export class RfbSocket {
  binaryType = "arraybuffer";
  readonly protocol = "";
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: RfbCloseEvent) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  /** Why the stream ended: `eof`, the reset reason (`no_display`, `consent_required`,
   * `service_error`, `viewer_closed`), or the session's end reason. */
  endReason: string | null = null;
  private _onmessage: ((ev: { data: ArrayBuffer }) => void) | null = null;
  private state: "open" | "closing" | "closed" = "open";
  private readonly held: ArrayBuffer[] = [];

  constructor(readonly stream: Stream) {
    void this.pump();
  }

  get readyState(): "open" | "closing" | "closed" {
    return this.state;
  }

  get onmessage(): ((ev: { data: ArrayBuffer }) => void) | null {
    return this._onmessage;
  }

  /** noVNC sets this in attach(); bytes that came before are handed over then. */
  set onmessage(handler: ((ev: { data: ArrayBuffer }) => void) | null) {
    this._onmessage = handler;
    while (handler !== null && this.held.length && this._onmessage === handler) {
      handler({ data: this.held.shift() as ArrayBuffer });
    }
  }

  /** noVNC reuses the buffer it passes: copy it now; the stream keeps the order. */
  send(data: ArrayBuffer | ArrayBufferView): void {
    if (this.state !== "open") return;
    const copy =
      data instanceof ArrayBuffer
        ? new Uint8Array(data.slice(0))
        : new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    this.stream.write(copy).catch((exc: unknown) => this.ended(exc));
  }

  /** The viewer disconnects: the stream is reset (`viewer_closed`), as the CLI's bridge does. */
  close(): void {
    if (this.state !== "open") return;
    this.state = "closing";
    this.endReason ??= "viewer_closed";
    void this.stream.reset("viewer_closed").finally(() => this.fireClose(1000, "viewer_closed"));
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const chunk = await this.stream.read();
        if (chunk === null) break;
        const buf = chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) as ArrayBuffer;
        if (this._onmessage !== null && this.held.length === 0) this._onmessage({ data: buf });
        else this.held.push(buf);
        if (this.state !== "open") return;
      }
      this.ended(null);
    } catch (exc) {
      this.ended(exc);
    }
  }

  private ended(exc: unknown): void {
    if (this.state === "closed") return;
    if (exc instanceof StreamReset || exc instanceof SessionEnded) this.endReason ??= exc.reason;
    else if (exc === null) this.endReason ??= "eof";
    else {
      this.endReason ??= "error";
      this.onerror?.({ type: "error", error: exc });
    }
    if (this.state === "open" && exc === null) void this.stream.writeEof().catch(() => undefined);
    const code = exc === null || this.state === "closing" ? 1000 : 4000;
    this.state = "closing";
    this.fireClose(code, this.endReason ?? "");
  }

  private fireClose(code: number, reason: string): void {
    if (this.state === "closed") return;
    this.state = "closed";
    // Asynchronously, as a WebSocket's close event: noVNC may be inside send() or close().
    setTimeout(() => this.onclose?.({ code, reason, wasClean: code === 1000 }), 0);
  }
}

/** Open an `rfb` stream on `channel` and wrap it for noVNC's `RFB` constructor. */
export async function rfbSocket(channel: Pick<Channel, "openStream">, params: Record<string, unknown> = {}): Promise<RfbSocket> {
  return new RfbSocket(await channel.openStream("rfb", params));
}
