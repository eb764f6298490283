"""Control messages: JSON objects on stream 0, each prefixed by its u32 length.

Every message has a ``type``; the models below are the whole vocabulary, documented in
docs/protocol/control.md. A well-formed object whose ``type`` is not known parses to
``Unknown`` (the receiver answers ``error`` and goes on); anything else invalid is a
ProtocolError that ends the session.
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


Action = Literal[
    "screen",
    "control",
    "system_info",
    "browse",
    "screenshot",
    "file_to_customer",
    "file_from_customer",
    "clipboard",
    "terminal",
]
#: What a technician may ask the customer to allow (docs/protocol/control.md#actions).
ACTIONS: tuple[str, ...] = get_args(Action)
#: Allowed for the rest of the session once granted, until the customer withdraws them.
#: The other actions are asked each time, and one grant serves one stream.
SESSION_ACTIONS: frozenset[str] = frozenset(
    {"screen", "control", "system_info", "browse", "clipboard", "terminal"}
)
#: What the server's implicit-consent setting may cover ("giving the ID and password is
#: consent"): never screenshots, files, system information or anything else of the
#: customer's data.
IMPLICIT_ACTIONS: frozenset[str] = frozenset({"screen", "control"})

#: Why a request was not granted.
RefusalReason = Literal["denied", "timeout", "policy", "unavailable", "invalid", "busy"]

MAX_REQUEST_ID = 2**31 - 1


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Consent(_Msg):
    """The customer's answer to the session itself (agent → technician, once)."""

    type: Literal["consent"] = "consent"
    granted: bool
    scope: list[Action] = Field(default_factory=list, max_length=len(ACTIONS))


class Status(_Msg):
    """What is allowed now (agent → technician, whenever it changes)."""

    type: Literal["status"] = "status"
    control_paused: bool
    #: The session grants in force; absent from agents before it existed.
    granted: list[Action] | None = Field(default=None, max_length=len(ACTIONS))


DetailValue = Annotated[str, Field(max_length=1024)] | int | bool


class Request(_Msg):
    """The technician asks the customer to allow one action (technician → agent)."""

    type: Literal["request"] = "request"
    id: int = Field(ge=1, le=MAX_REQUEST_ID)
    action: Action
    #: The technician's stated purpose, shown to the customer.
    purpose: str | None = Field(default=None, max_length=500)
    #: What the customer needs to decide: file name, size, folder, ... (per action).
    details: dict[Annotated[str, Field(max_length=32)], DetailValue] = Field(
        default_factory=dict, max_length=16
    )


class Answer(_Msg):
    """The customer's (or the policy's) answer to one ``request`` (agent → technician)."""

    type: Literal["answer"] = "answer"
    id: int = Field(ge=1, le=MAX_REQUEST_ID)
    action: Action
    granted: bool
    reason: RefusalReason | None = None


class Chat(_Msg):
    """One chat line (either way); kept only by the two endpoints."""

    type: Literal["chat"] = "chat"
    text: str = Field(min_length=1, max_length=4000)
    #: When the sender wrote it, ISO 8601 with offset.
    at: str = Field(max_length=40)


class End(_Msg):
    type: Literal["end"] = "end"
    reason: EndReason
    detail: str | None = Field(default=None, max_length=500)


class Error(_Msg):
    type: Literal["error"] = "error"
    code: str = Field(max_length=64)
    message: str = Field(max_length=500)


class Unknown:
    """A message of a type this side does not know (a newer peer): answered with
    ``error`` code ``unknown_message``, never an end of the session."""

    __slots__ = ("type",)

    def __init__(self, type_: str) -> None:
        self.type = type_

    def __repr__(self) -> str:
        return f"Unknown({self.type!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unknown) and other.type == self.type

    def __hash__(self) -> int:
        return hash(self.type)


Message = Consent | Status | Request | Answer | Chat | End | Error
ControlMessage = Annotated[Message, Field(discriminator="type")]
_adapter: TypeAdapter[Any] = TypeAdapter(ControlMessage)
KNOWN_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].default for m in (Consent, Status, Request, Answer, Chat, End, Error)
)


def encode(msg: _Msg) -> bytes:
    """Length-prefixed JSON bytes of one control message."""
    body = msg.model_dump_json(exclude_none=True).encode()
    if len(body) > MAX_CONTROL_MESSAGE:
        raise ValueError("control message too large")
    return struct.pack(">I", len(body)) + body


def parse(body: bytes) -> Message | Unknown:
    """Validate one message body (without its length prefix)."""
    try:
        # Size- and depth-checked: 64 KiB of ``[[[…`` made json.loads raise RecursionError.
        obj = loads_limited(body, max_bytes=MAX_CONTROL_MESSAGE)
        kind = obj.get("type") if isinstance(obj, dict) else None
        if isinstance(kind, str) and kind not in KNOWN_TYPES and 0 < len(kind) <= 32:
            return Unknown(kind)
        return _adapter.validate_python(obj)
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

    def feed(self, data: bytes) -> list[Message | Unknown]:
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
