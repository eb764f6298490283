"""Stream multiplexing inside the E2E channel, with per-stream credit flow control.

Each record's plaintext is exactly one mux frame::

    type u8 | stream_id u32 (big-endian) | payload

    0x01 OPEN    payload = kind_len u8 | kind (ascii) | params (UTF-8 JSON object)
    0x02 DATA    payload = bytes, at most MAX_DATA and at most the receiver's window
    0x03 WINDOW  payload = increment u32 (the receiver consumed that many bytes)
    0x04 EOF     payload empty (the sender will write no more on this stream)
    0x05 RESET   payload = reason (ascii, <= 64 bytes): the stream is aborted both ways

Stream 0 is the ``control`` stream, open from the start and for the whole session: it
is never ended or reset (a session ends with the control message ``end``), so EOF or
RESET on stream 0 is a protocol error. The technician opens odd ids,
the agent even ids (>= 2). Every stream starts with INITIAL_WINDOW bytes of credit in
each direction. Written down in docs/protocol/streams.md.
"""

from __future__ import annotations

import enum
import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ProtocolError

log = logging.getLogger(__name__)

CONTROL_STREAM = 0
MAX_DATA = 32 * 1024
INITIAL_WINDOW = 512 * 1024
#: Streams each side may have open that it opened itself (the control stream aside).
#: Counted per opener so that two sides opening at once never exceed the peer's count.
MAX_STREAMS = 32
MAX_OPEN_PARAMS = 16 * 1024
MAX_WINDOW = 1 << 30

_HEADER = struct.Struct(">BI")


class FrameType(enum.IntEnum):
    OPEN = 1
    DATA = 2
    WINDOW = 3
    EOF = 4
    RESET = 5


@dataclass(frozen=True, slots=True)
class StreamOpened:
    stream_id: int
    kind: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class WindowOpened:
    stream_id: int
    window: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer sent EOF: it will write no more."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int
    reason: str


Event = StreamOpened | DataReceived | WindowOpened | StreamEnded | StreamReset


@dataclass(slots=True)
class _Stream:
    kind: str
    send_window: int = INITIAL_WINDOW
    recv_window: int = INITIAL_WINDOW
    unacked: int = 0  # bytes consumed locally, not yet returned to the peer as credit
    local_eof: bool = False
    remote_eof: bool = False
    params: dict[str, Any] = field(default_factory=dict)


def encode_frame(ftype: FrameType, stream_id: int, payload: bytes = b"") -> bytes:
    """One mux frame's bytes."""
    return _HEADER.pack(ftype, stream_id) + payload


class Mux:
    """Sans-IO stream multiplexer for one side of the channel."""

    def __init__(self, role: Literal["agent", "technician"]) -> None:
        self.role = role
        self._streams: dict[int, _Stream] = {CONTROL_STREAM: _Stream("control")}
        self._next_id = 1 if role == "technician" else 2
        self._peer_max = 0  # highest stream id the peer has opened
        self._out: list[bytes] = []

    # -- outbound ---------------------------------------------------------------

    def open_stream(self, kind: str, params: dict[str, Any] | None = None) -> int:
        """Open a new stream of ``kind``; returns its id."""
        if self._count_opened_by(self._next_id % 2) >= MAX_STREAMS:
            raise ProtocolError("too many open streams")
        kind_b = kind.encode("ascii")
        if not 0 < len(kind_b) < 256:
            raise ValueError("stream kind must be 1..255 ASCII characters")
        params_b = json.dumps(params or {}, separators=(",", ":")).encode()
        if len(params_b) > MAX_OPEN_PARAMS:
            raise ValueError("stream parameters too large")
        sid = self._next_id
        self._next_id += 2
        self._streams[sid] = _Stream(kind, params=dict(params or {}))
        self._out.append(
            encode_frame(FrameType.OPEN, sid, bytes([len(kind_b)]) + kind_b + params_b)
        )
        log.debug("stream %d (%s) opened locally", sid, kind)
        return sid

    def send_window(self, stream_id: int) -> int:
        """How many bytes may be sent on ``stream_id`` right now."""
        st = self._streams.get(stream_id)
        if st is None or st.local_eof:
            return 0
        return st.send_window

    def send_data(self, stream_id: int, data: bytes) -> int:
        """Queue as much of ``data`` as the peer's window allows; returns the count taken."""
        st = self._require(stream_id)
        if st.local_eof:
            raise ValueError(f"stream {stream_id} is closed for writing")
        n = min(len(data), st.send_window)
        view = memoryview(data)
        for off in range(0, n, MAX_DATA):
            chunk = bytes(view[off : min(off + MAX_DATA, n)])
            self._out.append(encode_frame(FrameType.DATA, stream_id, chunk))
        st.send_window -= n
        return n

    def send_eof(self, stream_id: int) -> None:
        """Tell the peer nothing more will be written on ``stream_id``."""
        if stream_id == CONTROL_STREAM:
            raise ValueError("the control stream is never ended: send an `end` message")
        st = self._streams.get(stream_id)
        if st is None or st.local_eof:
            return
        st.local_eof = True
        self._out.append(encode_frame(FrameType.EOF, stream_id))
        self._maybe_forget(stream_id, st)

    def reset(self, stream_id: int, reason: str) -> None:
        """Abort ``stream_id`` in both directions."""
        if stream_id == CONTROL_STREAM:
            raise ValueError("the control stream is never reset: send an `end` message")
        if self._streams.pop(stream_id, None) is None:
            return
        self._out.append(encode_frame(FrameType.RESET, stream_id, reason.encode("ascii")[:64]))

    def consumed(self, stream_id: int, n: int) -> None:
        """The application consumed ``n`` received bytes: return credit to the peer."""
        st = self._streams.get(stream_id)
        if st is None:
            return
        st.unacked += n
        # Batch credit updates: one WINDOW frame per quarter window consumed.
        if st.unacked >= INITIAL_WINDOW // 4 and not st.remote_eof:
            self._out.append(
                encode_frame(FrameType.WINDOW, stream_id, struct.pack(">I", st.unacked))
            )
            st.recv_window += st.unacked
            st.unacked = 0

    @property
    def has_frames(self) -> bool:
        """Whether frames wait in ``frames_to_send``."""
        return bool(self._out)

    def frames_to_send(self) -> list[bytes]:
        """Frames queued for the peer, in order; each becomes one record."""
        out, self._out = self._out, []
        return out

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    # -- inbound ----------------------------------------------------------------

    def receive_frame(self, frame: bytes) -> list[Event]:
        """Parse one decrypted record's plaintext."""
        if len(frame) < _HEADER.size:
            raise ProtocolError("mux frame is truncated")
        ftype_raw, sid = _HEADER.unpack_from(frame)
        payload = frame[_HEADER.size :]
        try:
            ftype = FrameType(ftype_raw)
        except ValueError:
            raise ProtocolError(f"unknown mux frame type {ftype_raw}") from None
        if ftype is FrameType.OPEN:
            return [self._handle_open(sid, payload)]
        st = self._streams.get(sid)
        if st is None:
            # Frames racing a local RESET are dropped; anything else is a peer bug.
            own = sid % 2 == self._next_id % 2
            if (own and sid >= self._next_id) or (not own and sid > self._peer_max):
                raise ProtocolError(f"frame for never-opened stream {sid}")
            return []
        if ftype is FrameType.DATA:
            return [self._handle_data(sid, st, payload)]
        if sid == CONTROL_STREAM and ftype in (FrameType.EOF, FrameType.RESET):
            # Accepting it would leave a session whose `end` can no longer arrive.
            raise ProtocolError(f"{ftype.name} on the control stream")
        if ftype is FrameType.WINDOW:
            if len(payload) != 4:
                raise ProtocolError("WINDOW frame must carry 4 bytes")
            (inc,) = struct.unpack(">I", payload)
            if inc == 0 or st.send_window + inc > MAX_WINDOW:
                raise ProtocolError("invalid window increment")
            st.send_window += inc
            return [WindowOpened(sid, st.send_window)]
        if ftype is FrameType.EOF:
            if payload or st.remote_eof:
                raise ProtocolError("invalid EOF frame")
            st.remote_eof = True
            self._maybe_forget(sid, st)
            return [StreamEnded(sid)]
        # RESET
        reason = payload[:64].decode("ascii", "replace")
        del self._streams[sid]
        return [StreamReset(sid, reason)]

    def _handle_open(self, sid: int, payload: bytes) -> StreamOpened:
        peer_parity = 0 if self.role == "technician" else 1
        # Ids increase and are never reused: an id at or below the highest seen is refused.
        if sid == CONTROL_STREAM or sid % 2 != peer_parity or sid <= self._peer_max:
            raise ProtocolError(f"peer may not open stream {sid}")
        if self._count_opened_by(peer_parity) >= MAX_STREAMS:
            raise ProtocolError("too many open streams")
        if not payload or len(payload) < 1 + payload[0] or payload[0] == 0:
            raise ProtocolError("OPEN frame is truncated")
        kind_b = payload[1 : 1 + payload[0]]
        params_b = payload[1 + payload[0] :]
        if len(params_b) > MAX_OPEN_PARAMS:
            raise ProtocolError("OPEN parameters too large")
        try:
            kind = kind_b.decode("ascii")
            params = json.loads(params_b) if params_b else {}
        except (UnicodeDecodeError, ValueError, RecursionError):  # [[[… nests too deep
            raise ProtocolError("OPEN frame is malformed") from None
        if not isinstance(params, dict):
            raise ProtocolError("OPEN parameters must be a JSON object")
        self._streams[sid] = _Stream(kind, params=params)
        self._peer_max = max(self._peer_max, sid)
        log.debug("stream %d (%s) opened by peer", sid, kind)
        return StreamOpened(sid, kind, params)

    def _handle_data(self, sid: int, st: _Stream, payload: bytes) -> DataReceived:
        if st.remote_eof:
            raise ProtocolError(f"DATA after EOF on stream {sid}")
        if len(payload) > MAX_DATA:
            raise ProtocolError("DATA frame too large")
        if len(payload) > st.recv_window:
            raise ProtocolError(f"peer overran the window of stream {sid}")
        st.recv_window -= len(payload)
        return DataReceived(sid, payload)

    def _require(self, stream_id: int) -> _Stream:
        st = self._streams.get(stream_id)
        if st is None:
            raise ValueError(f"stream {stream_id} is not open")
        return st

    def _count_opened_by(self, parity: int) -> int:
        return sum(1 for sid in self._streams if sid != CONTROL_STREAM and sid % 2 == parity)

    def _maybe_forget(self, sid: int, st: _Stream) -> None:
        if st.local_eof and st.remote_eof and sid != CONTROL_STREAM:
            del self._streams[sid]
