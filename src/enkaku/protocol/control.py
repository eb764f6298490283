"""Control messages: JSON objects on stream 0, each prefixed by its u32 length.

Every message has a ``type``. Types and fields (docs/protocol/control.md):

- ``consent`` (agent → technician): ``granted`` bool, ``scope`` list of "screen",
  "control"; sent once after the customer answered (or the prompt timed out: denied).
- ``status`` (agent → technician): ``control_paused`` bool — the customer paused control.
- ``end`` (either way): ``reason`` (one of END_REASONS), optional ``detail``. The sender
  closes the channel right after it.
- ``error`` (either way): ``code``, ``message``: a request was refused; the session goes on.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import ProtocolError
from .jsonlimits import loads_limited

MAX_CONTROL_MESSAGE = 64 * 1024

EndReason = Literal[
    "technician_ended",
    "customer_ended",
    "consent_denied",
    "wrong_password",
    "handshake_failed",
    "protocol_error",
    "agent_disconnected",
    "technician_disconnected",
    "timeout",
    "server_restart",
    "server_shutdown",
    "device_malfunction",
    "malware_found",
    "credentials_refused",
    "illegal_request",
    "busy",
    "connection_lost",
]
#: Reasons a session can end, as recorded by the server and shown to both sides.
END_REASONS: tuple[str, ...] = get_args(EndReason)

#: Who asserts an end reason: a relay leg or the API (technician), a relay leg or the
#: agent's control connection (agent), or the server itself.
EndRole = Literal["technician", "agent", "server"]

#: The end reasons of the terms of use: support stopped for a reason the technician
#: found. Only the session's own technician asserts them, through the API, with a
#: comment, in a session the customer allowed (docs/protocol/control.md#who-may-assert).
POLICY_REASONS: frozenset[str] = frozenset(
    {"device_malfunction", "malware_found", "credentials_refused", "illegal_request"}
)

_T, _A, _S = "technician", "agent", "server"
#: The roles that may assert each end reason. The server records who asserted it.
REASON_ROLES: dict[str, frozenset[str]] = {
    "technician_ended": frozenset({_T}),
    "customer_ended": frozenset({_A}),
    "consent_denied": frozenset({_A}),
    "wrong_password": frozenset({_T, _A}),
    "handshake_failed": frozenset({_T, _A}),
    "protocol_error": frozenset({_T, _A, _S}),
    "agent_disconnected": frozenset({_S}),
    "technician_disconnected": frozenset({_S}),
    "timeout": frozenset({_S}),
    "server_restart": frozenset({_S}),
    "server_shutdown": frozenset({_S}),
    "device_malfunction": frozenset({_T}),
    "malware_found": frozenset({_T}),
    "credentials_refused": frozenset({_T}),
    "illegal_request": frozenset({_T}),
    "busy": frozenset({_A}),
    "connection_lost": frozenset({_T, _A}),
}
assert set(REASON_ROLES) == set(END_REASONS)

#: What a role's own ending is called when it claims a reason it may not assert.
OWN_END: dict[str, str] = {_T: "technician_ended", _A: "customer_ended"}


def may_assert(role: str, reason: str) -> bool:
    """Whether ``role`` may assert ``reason`` (policy reasons need more: see above)."""
    return role in REASON_ROLES.get(reason, frozenset())


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Consent(_Msg):
    type: Literal["consent"] = "consent"
    granted: bool
    scope: list[Literal["screen", "control"]] = Field(default_factory=list, max_length=8)


class Status(_Msg):
    type: Literal["status"] = "status"
    control_paused: bool


class End(_Msg):
    type: Literal["end"] = "end"
    reason: EndReason
    detail: str | None = Field(default=None, max_length=500)


class Error(_Msg):
    type: Literal["error"] = "error"
    code: str = Field(max_length=64)
    message: str = Field(max_length=500)


ControlMessage = Annotated[Consent | Status | End | Error, Field(discriminator="type")]
_adapter: TypeAdapter[Any] = TypeAdapter(ControlMessage)


def encode(msg: _Msg) -> bytes:
    """Length-prefixed JSON bytes of one control message."""
    body = msg.model_dump_json(exclude_none=True).encode()
    if len(body) > MAX_CONTROL_MESSAGE:
        raise ValueError("control message too large")
    return struct.pack(">I", len(body)) + body


def parse(body: bytes) -> Consent | Status | End | Error:
    """Validate one message body (without its length prefix)."""
    try:
        # Size- and depth-checked: 64 KiB of ``[[[…`` made json.loads raise RecursionError.
        return _adapter.validate_python(loads_limited(body, max_bytes=MAX_CONTROL_MESSAGE))
    except (ValueError, ValidationError) as exc:
        raise ProtocolError(f"invalid control message: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
    if isinstance(exc, ProtocolError):
        return str(exc)
    return "not JSON"


class ControlReader:
    """Incremental framer for the control stream: feed bytes, get messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Consent | Status | End | Error]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = struct.unpack_from(">I", self._buf)
            if n > MAX_CONTROL_MESSAGE:
                raise ProtocolError(f"control message of {n} bytes exceeds the limit")
            if len(self._buf) < 4 + n:
                break
            body = bytes(self._buf[4 : 4 + n])
            del self._buf[: 4 + n]
            out.append(parse(body))
        return out
