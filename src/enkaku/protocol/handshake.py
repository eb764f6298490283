"""The end-to-end handshake: CPace (CPACE-RISTR255-SHA512) with key confirmation.

Written down in docs/protocol/handshake.md. Every message is one binary WebSocket
message whose first byte is its type; all integers are unsigned, lengths exact::

    0x01 HELLO          tech -> agent   version u8 (1) | suite u8 (1) | nonce_t (16)
    0x02 AGENT_SHARE    agent -> tech   nonce_a (16) | Ya (32) | len u8 | ADa
    0x03 TECH_SHARE     tech -> agent   Yb (32) | len u8 | ADb | Tb (64)
    0x04 AGENT_CONFIRM  agent -> tech   Ta (64)
    0x05 FAILURE        either way      reason u8 (see FailureReason)
    0x10 RECORD         after the handshake, see records.py

The agent is CPace party A (initiator), the technician party B (responder)::

    PRS = normalize_password(password)
    sid = nonce_t | nonce_a
    CI  = lv_cat(b"enkaku/1", b"CPACE-RISTR255-SHA512", agent_id as UTF-8)
    ADa = b"enkaku agent", ADb = b"enkaku technician"
    ISK = SHA-512(lv_cat(b"CPaceRistretto255_ISK", sid, K) | lv_cat(Ya, ADa) | lv_cat(Yb, ADb))
    mac_key = SHA-512(b"CPaceMac" | sid | ISK)
    Ta = HMAC-SHA-512(mac_key, lv_cat(Ya, ADa)), Tb = HMAC-SHA-512(mac_key, lv_cat(Yb, ADb))

The agent checks Tb before it sends Ta or anything else keyed. Both sides then build a
:class:`~enkaku.protocol.records.RecordChannel` from (ISK, sid).
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, NoReturn

from . import cpace
from .errors import AuthenticationFailed, HandshakeError, ProtocolError
from .password import normalize_password
from .records import RecordChannel

log = logging.getLogger(__name__)

VERSION = 1
SUITE_CPACE_RISTR255_SHA512 = 1
NONCE_BYTES = 16
PROTOCOL_LABEL = b"enkaku/1"
AD_AGENT = b"enkaku agent"
AD_TECHNICIAN = b"enkaku technician"
MAX_AGENT_ID = 255

RandBytes = Callable[[int], bytes]


class MessageType(enum.IntEnum):
    HELLO = 0x01
    AGENT_SHARE = 0x02
    TECH_SHARE = 0x03
    AGENT_CONFIRM = 0x04
    FAILURE = 0x05
    RECORD = 0x10


class FailureReason(enum.IntEnum):
    WRONG_PASSWORD = 1
    #: Too many failed attempts: the agent drew a new password.
    PASSWORD_REPLACED = 2
    BUSY = 3
    UNSUPPORTED_VERSION = 4
    PROTOCOL_ERROR = 5


class UnsupportedVersion(HandshakeError):
    """The peer speaks a protocol version or suite we do not."""


class PeerFailed(HandshakeError):
    """The peer sent FAILURE: the handshake is over; do not answer with another FAILURE."""

    def __init__(self, reason: FailureReason) -> None:
        super().__init__(f"peer aborted the handshake: {reason.name.lower()}")
        self.reason = reason


class PeerRejectedPassword(PeerFailed, AuthenticationFailed):
    """The peer sent FAILURE because the password did not match (or was replaced)."""


# -- messages ----------------------------------------------------------------------------


def _check_type(data: bytes, mtype: MessageType) -> None:
    if not data:
        raise ProtocolError("empty handshake message")
    if data[0] != mtype:
        raise ProtocolError(f"expected {mtype.name}, got message type {data[0]:#04x}")


def _check_length(data: bytes, expected: int, name: str) -> None:
    if len(data) < expected:
        raise ProtocolError(f"{name} message is truncated")
    if len(data) > expected:
        raise ProtocolError(f"{name} message has trailing bytes")


def _split_ad(data: bytes, offset: int, name: str) -> tuple[bytes, int]:
    if len(data) <= offset:
        raise ProtocolError(f"{name} message is truncated")
    n = data[offset]
    end = offset + 1 + n
    if len(data) < end:
        raise ProtocolError(f"{name} message is truncated")
    return bytes(data[offset + 1 : end]), end


@dataclass(frozen=True, slots=True)
class Hello:
    TYPE: ClassVar[MessageType] = MessageType.HELLO
    SIZE: ClassVar[int] = 1 + 1 + 1 + NONCE_BYTES

    version: int
    suite: int
    nonce_t: bytes

    @classmethod
    def parse(cls, data: bytes) -> Hello:
        """Parse a HELLO; an unknown version or suite raises UnsupportedVersion."""
        _check_type(data, cls.TYPE)
        if len(data) >= 3 and (data[1] != VERSION or data[2] != SUITE_CPACE_RISTR255_SHA512):
            raise UnsupportedVersion(f"unsupported version {data[1]} / suite {data[2]}")
        _check_length(data, cls.SIZE, "HELLO")
        return cls(data[1], data[2], bytes(data[3:]))

    def __bytes__(self) -> bytes:
        return bytes([self.TYPE, self.version, self.suite]) + self.nonce_t


@dataclass(frozen=True, slots=True)
class AgentShare:
    TYPE: ClassVar[MessageType] = MessageType.AGENT_SHARE

    nonce_a: bytes
    ya: bytes
    ada: bytes

    @classmethod
    def parse(cls, data: bytes) -> AgentShare:
        """Parse an AGENT_SHARE."""
        _check_type(data, cls.TYPE)
        head = 1 + NONCE_BYTES + cpace.POINT_BYTES
        ada, end = _split_ad(data, head, "AGENT_SHARE")
        _check_length(data, end, "AGENT_SHARE")
        return cls(bytes(data[1 : 1 + NONCE_BYTES]), bytes(data[1 + NONCE_BYTES : head]), ada)

    def __bytes__(self) -> bytes:
        return bytes([self.TYPE]) + self.nonce_a + self.ya + bytes([len(self.ada)]) + self.ada


@dataclass(frozen=True, slots=True)
class TechnicianShare:
    TYPE: ClassVar[MessageType] = MessageType.TECH_SHARE

    yb: bytes
    adb: bytes
    tb: bytes

    @classmethod
    def parse(cls, data: bytes) -> TechnicianShare:
        """Parse a TECH_SHARE."""
        _check_type(data, cls.TYPE)
        head = 1 + cpace.POINT_BYTES
        adb, end = _split_ad(data, head, "TECH_SHARE")
        _check_length(data, end + cpace.TAG_BYTES, "TECH_SHARE")
        return cls(bytes(data[1:head]), adb, bytes(data[end:]))

    def __bytes__(self) -> bytes:
        return bytes([self.TYPE]) + self.yb + bytes([len(self.adb)]) + self.adb + self.tb


@dataclass(frozen=True, slots=True)
class AgentConfirm:
    TYPE: ClassVar[MessageType] = MessageType.AGENT_CONFIRM
    SIZE: ClassVar[int] = 1 + cpace.TAG_BYTES

    ta: bytes

    @classmethod
    def parse(cls, data: bytes) -> AgentConfirm:
        """Parse an AGENT_CONFIRM."""
        _check_type(data, cls.TYPE)
        _check_length(data, cls.SIZE, "AGENT_CONFIRM")
        return cls(bytes(data[1:]))

    def __bytes__(self) -> bytes:
        return bytes([self.TYPE]) + self.ta


@dataclass(frozen=True, slots=True)
class Failure:
    TYPE: ClassVar[MessageType] = MessageType.FAILURE
    SIZE: ClassVar[int] = 2

    reason: FailureReason

    @classmethod
    def parse(cls, data: bytes) -> Failure:
        """Parse a FAILURE."""
        _check_type(data, cls.TYPE)
        _check_length(data, cls.SIZE, "FAILURE")
        try:
            return cls(FailureReason(data[1]))
        except ValueError:
            raise ProtocolError(f"unknown failure reason {data[1]}") from None

    def __bytes__(self) -> bytes:
        return bytes([self.TYPE, self.reason])


def failure_message(reason: int) -> bytes:
    """The FAILURE message for ``reason`` (a FailureReason value)."""
    return bytes(Failure(FailureReason(reason)))


def failure_reason_for(exc: ProtocolError) -> FailureReason | None:
    """The FAILURE reason to send after ``exc``, or None if the peer already sent one."""
    if isinstance(exc, PeerFailed):
        return None
    if isinstance(exc, AuthenticationFailed):
        return FailureReason.WRONG_PASSWORD
    if isinstance(exc, UnsupportedVersion):
        return FailureReason.UNSUPPORTED_VERSION
    return FailureReason.PROTOCOL_ERROR


def _raise_peer_failure(data: bytes) -> NoReturn:
    reason = Failure.parse(data).reason
    if reason in (FailureReason.WRONG_PASSWORD, FailureReason.PASSWORD_REPLACED):
        raise PeerRejectedPassword(reason)
    raise PeerFailed(reason)


def channel_identifier(agent_id: str) -> bytes:
    """CI = lv_cat(b"enkaku/1", b"CPACE-RISTR255-SHA512", agent_id as UTF-8)."""
    raw = agent_id.encode("utf-8")
    if not 0 < len(raw) <= MAX_AGENT_ID:
        raise ValueError("agent_id must be 1..255 bytes of UTF-8")
    return cpace.lv_cat(PROTOCOL_LABEL, cpace.SUITE, raw)


# -- state machines ----------------------------------------------------------------------


class HandshakeState(enum.Enum):
    #: Technician: start() not called yet.
    NOT_STARTED = "not_started"
    #: Agent: waiting for HELLO.
    WAITING_FOR_HELLO = "waiting_for_hello"
    #: Technician: HELLO sent, waiting for AGENT_SHARE.
    WAITING_FOR_AGENT_SHARE = "waiting_for_agent_share"
    #: Agent: AGENT_SHARE sent, waiting for TECH_SHARE (with Tb).
    WAITING_FOR_TECHNICIAN_SHARE = "waiting_for_technician_share"
    #: Technician: TECH_SHARE sent, waiting for AGENT_CONFIRM (Ta).
    WAITING_FOR_AGENT_CONFIRM = "waiting_for_agent_confirm"
    ESTABLISHED = "established"
    FAILED = "failed"


class _Handshake:
    role: Literal["agent", "technician"]

    def __init__(self, password: str, agent_id: str, randbytes: RandBytes) -> None:
        self._prs = normalize_password(password)
        self._ci = channel_identifier(agent_id)
        self._randbytes = randbytes
        self._state = HandshakeState.NOT_STARTED
        self._channel: RecordChannel | None = None
        self._scalar: bytes | None = None
        self._sid = b""

    @property
    def state(self) -> HandshakeState:
        """Where the handshake stands."""
        return self._state

    @property
    def channel(self) -> RecordChannel:
        """The record channel; only once the handshake is established."""
        if self._channel is None:
            raise RuntimeError(f"no channel: the handshake is {self._state.value}")
        return self._channel

    @property
    def sid(self) -> bytes:
        """The session id nonce_t | nonce_a (empty until both nonces are known)."""
        return self._sid

    def _set_state(self, state: HandshakeState) -> None:
        log.debug("%s handshake: %s -> %s", self.role, self._state.value, state.value)
        self._state = state

    def _fail(self) -> None:
        # Drop every secret; the object can do nothing more.
        self._prs = b""
        self._scalar = None
        self._set_state(HandshakeState.FAILED)

    def _nonce(self) -> bytes:
        nonce = self._randbytes(NONCE_BYTES)
        if len(nonce) != NONCE_BYTES:
            raise ValueError("randbytes returned the wrong number of bytes")
        return nonce

    def _share(self) -> bytes:
        g = cpace.calculate_generator(self._prs, self._ci, self._sid)
        self._scalar = cpace.sample_scalar(self._randbytes)
        return cpace.scalar_mult(self._scalar, g)

    def _isk(self, peer_share: bytes, ya: bytes, ada: bytes, yb: bytes, adb: bytes) -> bytes:
        if self._scalar is None:
            raise RuntimeError("no scalar: the share was not computed")
        k = cpace.scalar_mult_vfy(self._scalar, peer_share)
        self._scalar = None  # used once
        self._prs = b""
        return cpace.derive_isk(self._sid, k, ya, ada, yb, adb)

    def _dispatch(self, message: bytes) -> list[bytes]:
        raise NotImplementedError

    def receive(self, message: bytes) -> list[bytes]:
        """Handle one message from the peer; returns the messages to send, in order."""
        if self._state in (HandshakeState.ESTABLISHED, HandshakeState.FAILED):
            raise ProtocolError(f"handshake message after the handshake is {self._state.value}")
        if self._state is HandshakeState.NOT_STARTED:
            raise ProtocolError("handshake message before start()")
        try:
            if message[:1] == bytes([MessageType.FAILURE]):
                _raise_peer_failure(message)
            return self._dispatch(message)
        except ProtocolError as exc:
            log.debug("%s handshake failed: %s", self.role, exc)
            self._fail()
            raise


class AgentHandshake(_Handshake):
    """Sans-IO handshake of the agent (CPace party A)."""

    role = "agent"

    def __init__(self, password: str, agent_id: str, *, randbytes: RandBytes = os.urandom) -> None:
        super().__init__(password, agent_id, randbytes)
        self._ya = b""
        self._set_state(HandshakeState.WAITING_FOR_HELLO)

    @property
    def attempt_started(self) -> bool:
        """True once the agent sent its share: from then on, no valid Tb is a failed attempt."""
        return bool(self._ya)

    def _dispatch(self, message: bytes) -> list[bytes]:
        if self._state is HandshakeState.WAITING_FOR_HELLO:
            return self.handle_hello(Hello.parse(message))
        return self.handle_technician_share(TechnicianShare.parse(message))

    def handle_hello(self, hello: Hello) -> list[bytes]:
        """Answer HELLO with our nonce and share."""
        nonce_a = self._nonce()
        self._sid = hello.nonce_t + nonce_a
        self._ya = self._share()
        self._set_state(HandshakeState.WAITING_FOR_TECHNICIAN_SHARE)
        return [bytes(AgentShare(nonce_a, self._ya, AD_AGENT))]

    def handle_technician_share(self, msg: TechnicianShare) -> list[bytes]:
        """Check the technician's share and Tb; only then confirm with Ta."""
        if msg.adb != AD_TECHNICIAN:
            raise HandshakeError("technician share does not carry the technician's role name")
        if msg.yb == self._ya:
            raise HandshakeError("technician share reflects the agent's own share")
        isk = self._isk(msg.yb, self._ya, AD_AGENT, msg.yb, msg.adb)
        key = cpace.mac_key(self._sid, isk)
        if not cpace.verify_tag(cpace.confirmation_tag(key, msg.yb, msg.adb), msg.tb):
            raise AuthenticationFailed("technician's confirmation tag is wrong (wrong password)")
        ta = cpace.confirmation_tag(key, self._ya, AD_AGENT)
        self._channel = RecordChannel(isk, self._sid, "agent")
        self._set_state(HandshakeState.ESTABLISHED)
        return [bytes(AgentConfirm(ta))]


class TechnicianHandshake(_Handshake):
    """Sans-IO handshake of the technician (CPace party B)."""

    role = "technician"

    def __init__(self, password: str, agent_id: str, *, randbytes: RandBytes = os.urandom) -> None:
        super().__init__(password, agent_id, randbytes)
        self._nonce_t = b""
        self._expected_ta = b""
        self._isk_pending = b""

    def start(self) -> bytes:
        """The HELLO that opens the handshake."""
        if self._state is not HandshakeState.NOT_STARTED:
            raise RuntimeError("start() was already called")
        self._nonce_t = self._nonce()
        self._set_state(HandshakeState.WAITING_FOR_AGENT_SHARE)
        return bytes(Hello(VERSION, SUITE_CPACE_RISTR255_SHA512, self._nonce_t))

    def _dispatch(self, message: bytes) -> list[bytes]:
        if self._state is HandshakeState.WAITING_FOR_AGENT_SHARE:
            return self.handle_agent_share(AgentShare.parse(message))
        return self.handle_agent_confirm(AgentConfirm.parse(message))

    def _fail(self) -> None:
        self._isk_pending = b""
        super()._fail()

    def handle_agent_share(self, msg: AgentShare) -> list[bytes]:
        """Answer the agent's share with ours and Tb."""
        if msg.ada != AD_AGENT:
            raise HandshakeError("agent share does not carry the agent's role name")
        self._sid = self._nonce_t + msg.nonce_a
        yb = self._share()
        if msg.ya == yb:
            raise HandshakeError("agent share reflects the technician's own share")
        isk = self._isk(msg.ya, msg.ya, msg.ada, yb, AD_TECHNICIAN)
        key = cpace.mac_key(self._sid, isk)
        tb = cpace.confirmation_tag(key, yb, AD_TECHNICIAN)
        self._expected_ta = cpace.confirmation_tag(key, msg.ya, msg.ada)
        self._isk_pending = isk
        self._set_state(HandshakeState.WAITING_FOR_AGENT_CONFIRM)
        return [bytes(TechnicianShare(yb, AD_TECHNICIAN, tb))]

    def handle_agent_confirm(self, msg: AgentConfirm) -> list[bytes]:
        """Check Ta; the channel is then established."""
        if not cpace.verify_tag(self._expected_ta, msg.ta):
            raise AuthenticationFailed("agent's confirmation tag is wrong (wrong password)")
        self._channel = RecordChannel(self._isk_pending, self._sid, "technician")
        self._isk_pending = b""
        self._set_state(HandshakeState.ESTABLISHED)
        return []
