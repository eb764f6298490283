// The protocol's exceptions, mirroring src/enkaku/protocol/errors.py and
// src/enkaku/transport/errors.py. Each carries the close code it ends a session with.

/** Malformed, oversized or out-of-order input from a peer; fatal for that one channel. */
export class ProtocolError extends Error {
  code = "protocol_error";
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** The end-to-end handshake could not complete. */
export class HandshakeError extends ProtocolError {
  override code = "handshake_failed";
  constructor(message: string) {
    super(message);
    this.name = "HandshakeError";
  }
}

/** The peer did not prove knowledge of the one-time password (wrong password). */
export class AuthenticationFailed extends HandshakeError {
  override code = "wrong_password";
  constructor(message: string) {
    super(message);
    this.name = "AuthenticationFailed";
  }
}

/** A record failed authentication or arrived out of order; the channel is dead. */
export class RecordError extends ProtocolError {
  override code = "record_error";
  constructor(message: string) {
    super(message);
    this.name = "RecordError";
  }
}

/** The session is over; `reason` is an end reason (docs/protocol/control.md) or
 * `stream_closed` when writing to a stream no longer open for writing. */
export class SessionEnded extends Error {
  readonly reason: string;
  readonly detail?: string;
  constructor(reason: string, detail?: string) {
    super(detail === undefined ? reason : `${reason}: ${detail}`);
    this.name = "SessionEnded";
    this.reason = reason;
    if (detail !== undefined) this.detail = detail;
  }
}

/** The peer (or this side) reset the stream; `reason` is the RESET frame's reason. */
export class StreamReset extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(`stream reset: ${reason}`);
    this.name = "StreamReset";
    this.reason = reason;
  }
}

/** Channel.connect could not establish the encrypted channel.
 *
 * `reason`: `wrong_password` and `password_replaced` (the agent's FAILURE; the second
 * means the agent drew a new password after too many attempts), `busy`,
 * `unsupported_version`, `protocol_error` (the agent's FAILURE reasons),
 * `malformed_password` (the typed password cannot be one; nothing was sent),
 * `handshake_failed` (this side found the agent's messages invalid, or its tag wrong),
 * `timeout` (no answer within the handshake timeout), `no_webcrypto` (the page is not a
 * secure context, so the browser offers no WebCrypto; nothing was sent). */
export class HandshakeFailed extends Error {
  readonly reason: string;
  readonly detail?: string;
  constructor(reason: string, detail?: string) {
    super(detail === undefined ? reason : `${reason}: ${detail}`);
    this.name = "HandshakeFailed";
    this.reason = reason;
    if (detail !== undefined) this.detail = detail;
  }
}
