"""The protocol package's exceptions: one root, subclasses carry a close code."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Malformed, oversized or out-of-order input from a peer; fatal for that one channel."""

    #: Close code used when this error ends a relay leg or a session.
    code: str = "protocol_error"


class HandshakeError(ProtocolError):
    """The end-to-end handshake could not complete."""

    code = "handshake_failed"


class AuthenticationFailed(HandshakeError):
    """The peer did not prove knowledge of the one-time password (wrong password)."""

    code = "wrong_password"


class RecordError(ProtocolError):
    """A record failed authentication or arrived out of order; the channel is dead."""

    code = "record_error"
