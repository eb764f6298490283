"""The end-to-end channel over a paired relay leg: handshake, records, streams.

One SecureChannel per session and side. It owns two tasks: a reader that decrypts
records, feeds the mux and wakes the streams, and a writer, the only one that seals and
sends records (so record counters follow wire order). The writer sends frames the mux
queued itself (OPEN, WINDOW credit, EOF, RESET) first, then control-stream data, then the
data streams round-robin, one slice each per turn, so a keystroke never waits behind a
screen flush and reading never waits for writing. Any record or mux error ends the
session (no fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from enkaku.protocol import control
from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.handshake import (
    AgentHandshake,
    FailureReason,
    HandshakeState,
    TechnicianHandshake,
    failure_message,
    failure_reason_for,
)
from enkaku.protocol.records import RecordChannel
from enkaku.protocol.streams import (
    CONTROL_STREAM,
    MAX_DATA,
    DataReceived,
    Mux,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowOpened,
)

from .errors import SessionEnded
from .relay import RelayLeg

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 30.0
#: How long a side that learned the peer's end reason waits for the relay to close its leg.
PEER_END_GRACE = 5.0
#: Bytes a stream may send per turn of the writer before the next stream's turn.
SLICE = 16 * 1024
#: ... and a stream alone in the line (no other data stream waiting its turn): a whole
#: DATA frame in one record, half the records of a large write (a full-screen picture:
#: 175 records, not 350) and half their sealing, framing and sends on every hop.
ALONE_SLICE = MAX_DATA
assert SLICE <= ALONE_SLICE <= MAX_DATA  # one slice is one record


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Bytes on the wire (sealed record sizes) per direction, in total and per stream kind.

    Records of the control stream count under ``control``; records of a stream this side
    has already forgotten (a RESET it sent or received) count under ``other``."""

    sent: int
    received: int
    sent_by_kind: Mapping[str, int]
    received_by_kind: Mapping[str, int]


class _Outgoing:
    """One ``write`` waiting for the writer: the bytes not yet taken, and its completion."""

    __slots__ = ("data", "done")

    def __init__(self, data: memoryview, done: asyncio.Future[None]) -> None:
        self.data, self.done = data, done


async def run_handshake(
    leg: RelayLeg,
    hs: AgentHandshake | TechnicianHandshake,
    *,
    timeout: float = HANDSHAKE_TIMEOUT,
    on_wrong_password: Callable[[], FailureReason] | None = None,
) -> RecordChannel:
    """Drive ``hs`` over ``leg`` until established. Raises ProtocolError subclasses (after
    telling the peer with a FAILURE message) or SessionEnded.

    ``on_wrong_password`` lets the agent count failed attempts and choose the reason it
    sends (WRONG_PASSWORD, or PASSWORD_REPLACED after too many)."""
    async with asyncio.timeout(timeout):
        if isinstance(hs, TechnicianHandshake):
            await leg.send(hs.start())
        while hs.state is not HandshakeState.ESTABLISHED:
            message = await leg.receive()
            try:
                replies = hs.receive(message)
            except ProtocolError as exc:
                reason = failure_reason_for(exc)
                if reason is FailureReason.WRONG_PASSWORD and on_wrong_password is not None:
                    reason = on_wrong_password()
                if reason is not None:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await leg.send(failure_message(reason))
                raise
            for reply in replies:
                await leg.send(reply)
    return hs.channel


class Stream:
    """One multiplexed byte stream."""

    def __init__(self, channel: SecureChannel, stream_id: int, kind: str, params: dict[str, Any]):
        self.channel, self.id, self.kind, self.params = channel, stream_id, kind, params
        self._chunks: deque[bytes] = deque()
        self._readable = asyncio.Event()
        self.eof = False
        self.reset_reason: str | None = None
        self._eof_sent = False

    async def read(self) -> bytes:
        """The next chunk; b"" at end of stream (EOF, reset or session end)."""
        while not self._chunks:
            if self.eof or self.reset_reason is not None or self.channel.closed.is_set():
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self.channel._consumed(self.id, len(chunk))
        return chunk

    async def write(self, data: bytes) -> None:
        """Send ``data``: returns once the writer has sent all of it, which waits for the
        peer's window as needed (nothing is buffered beyond the caller's own bytes)."""
        if self.reset_reason is not None:
            raise SessionEnded("stream_reset", self.reset_reason)
        if self._eof_sent:
            raise SessionEnded("stream_closed")
        await self.channel._write(self.id, data)

    async def write_eof(self) -> None:
        self._eof_sent = True
        self.channel._send_eof(self.id)

    async def reset(self, reason: str) -> None:
        self.reset_reason = reason
        self.channel._reset(self.id, reason)

    def _wake(self) -> None:
        self._readable.set()


class SecureChannel:
    """Streams and control messages over an established record channel."""

    def __init__(self, leg: RelayLeg, records: RecordChannel, role: Literal["agent", "technician"]):
        self.leg, self.records, self.role = leg, records, role
        self.mux = Mux(role)
        self.closed = asyncio.Event()
        self.end_reason: str | None = None
        self.end_detail: str | None = None
        self.control_messages: asyncio.Queue[control.Message | control.Unknown] = asyncio.Queue(
            maxsize=256
        )
        self.incoming: asyncio.Queue[Stream] = asyncio.Queue(maxsize=16)
        self._streams: dict[int, Stream] = {}
        self._control_reader = control.ControlReader()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        # Writes waiting for the writer, per stream; data streams take turns in _turns.
        self._outgoing: dict[int, deque[_Outgoing]] = {}
        self._turns: deque[int] = deque()
        self._taken: list[_Outgoing] = []  # fully handed to the mux, done once sent
        self._work = asyncio.Event()
        self._sent: Counter[str] = Counter()
        self._received: Counter[str] = Counter()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_loop())
        self._writer = loop.create_task(self._write_loop())

    @property
    def stats(self) -> ChannelStats:
        """Bytes sent and received on the wire so far (a snapshot)."""
        return ChannelStats(
            sent=sum(self._sent.values()),
            received=sum(self._received.values()),
            sent_by_kind=MappingProxyType(dict(self._sent)),
            received_by_kind=MappingProxyType(dict(self._received)),
        )

    async def open_stream(self, kind: str, params: dict[str, Any] | None = None) -> Stream:
        if self.closed.is_set():
            raise SessionEnded(self.end_reason or "connection_lost")
        sid = self.mux.open_stream(kind, params)
        stream = self._streams[sid] = Stream(self, sid, kind, params or {})
        self._work.set()
        return stream

    async def send_control(self, msg: Any) -> None:
        await self._write(CONTROL_STREAM, control.encode(msg))

    async def close(self, reason: str, detail: str | None = None) -> None:
        """End the session: tell the peer why, close the relay leg, stop the reader."""
        if self.closed.is_set():
            return
        if not control.may_assert(self.role, reason) and self._reader is not None:
            # The peer's reason, learned end to end (its `end` message): the peer closes its
            # own relay leg with it and the server then closes ours. Claiming it ourselves
            # would be refused (the server records a reason only from a role that may
            # assert it) and could reach the server first, so let the peer's word settle.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.closed.wait()), PEER_END_GRACE)
            if self.closed.is_set():
                await self._stop_tasks()
                return
            reason = control.OWN_END[self.role]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send_control(control.End(reason=reason, detail=detail)), 2)  # type: ignore[arg-type]
        self._finish(reason, detail)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leg.close(reason), 5)
        await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        for task in (self._reader, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def wait_closed(self) -> str:
        await self.closed.wait()
        return self.end_reason or "connection_lost"

    # -- internals --------------------------------------------------------------

    def _finish(self, reason: str, detail: str | None = None) -> None:
        if self.closed.is_set():
            return
        self.end_reason, self.end_detail = reason, detail
        self.closed.set()
        for st in self._streams.values():
            st._wake()
        for sid in list(self._outgoing):
            self._fail(sid, SessionEnded(reason))
        for item in self._taken:  # handed to the mux but not sent
            if not item.done.done():
                item.done.set_exception(SessionEnded(reason))
        self._taken.clear()
        self._work.set()  # the writer stops
        log.info("channel closed: %s", reason)

    async def _write(self, sid: int, data: bytes) -> None:
        """Queue ``data`` for the writer and wait until it has all been sent."""
        if self.closed.is_set():
            raise SessionEnded(self.end_reason or "connection_lost")
        if not self.mux.is_open(sid):
            raise SessionEnded("stream_closed")
        if not data:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outgoing.setdefault(sid, deque()).append(_Outgoing(memoryview(data), done))
        if sid != CONTROL_STREAM and sid not in self._turns:
            self._turns.append(sid)
        self._work.set()
        await done  # a cancelled write cancels ``done``; the writer then skips the rest

    def _fail(self, sid: int, exc: SessionEnded) -> None:
        for item in self._outgoing.pop(sid, ()):
            if not item.done.done():
                item.done.set_exception(exc)

    def _send_eof(self, sid: int) -> None:
        # A write still waiting (from another task) ends here: no DATA may follow EOF.
        self._fail(sid, SessionEnded("stream_closed"))
        self.mux.send_eof(sid)
        self._work.set()

    def _reset(self, sid: int, reason: str) -> None:
        self.mux.reset(sid, reason)
        self._streams.pop(sid, None)
        self._fail(sid, SessionEnded("stream_reset", reason))
        self._work.set()

    def _consumed(self, sid: int, n: int) -> None:
        """Return credit: the mux queues a WINDOW frame when due and the writer sends it
        before any data, so reading never waits for writing."""
        if self.closed.is_set():
            return
        self.mux.consumed(sid, n)
        if self.mux.has_frames:  # a WINDOW frame is due (one per quarter window read)
            self._work.set()

    def _kind_of(self, sid: int) -> str | None:
        if sid == CONTROL_STREAM:
            return "control"
        st = self._streams.get(sid)
        return st.kind if st is not None else None

    async def _write_loop(self) -> None:
        """The only sender of records: the mux's own frames first, then one slice."""
        try:
            while not self.closed.is_set():
                self._work.clear()
                frames = self.mux.frames_to_send()
                if not frames and self._take_slice():
                    frames = self.mux.frames_to_send()
                if not frames:
                    await self._work.wait()
                    continue
                for frame in frames:
                    record = self.records.seal(frame)
                    await self.leg.send(record)
                    kind = self._kind_of(int.from_bytes(frame[1:5], "big")) or "other"
                    self._sent[kind] += len(record)
                for item in self._taken:
                    if not item.done.done():
                        item.done.set_result(None)
                self._taken.clear()
        except (SessionEnded, TimeoutError, ConnectionError, RuntimeError) as exc:
            # A leg that fails to send is usually closing: let the reader learn the
            # relay's reason (as close() does) before ending with our own.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.closed.wait()), PEER_END_GRACE)
            self._finish(self.end_reason or "connection_lost", type(exc).__name__)

    def _take_slice(self) -> bool:
        """Hand the mux one slice: control data first, else the next data stream in turn
        that has credit. False when nothing can be sent now."""
        if self._slice_of(CONTROL_STREAM, SLICE):
            return True
        for _ in range(len(self._turns)):
            sid = self._turns.popleft()
            took = self._slice_of(sid, SLICE if self._turns else ALONE_SLICE)
            if self._outgoing.get(sid):
                self._turns.append(sid)  # more to send: back of the line
            if took:
                return True
        return False

    def _slice_of(self, sid: int, size: int) -> bool:
        queue = self._outgoing.get(sid)
        while queue and queue[0].done.done():  # cancelled writes
            queue.popleft()
        if not queue:
            self._outgoing.pop(sid, None)
            return False
        if self.mux.send_window(sid) == 0:
            if not self.mux.is_open(sid):  # ended or forgotten under a waiting write
                self._fail(sid, SessionEnded("stream_closed"))
            return False  # waiting for credit: a WINDOW frame wakes the writer
        item = queue[0]
        n = self.mux.send_data(sid, bytes(item.data[:size]))
        item.data = item.data[n:]
        if not item.data:
            self._taken.append(queue.popleft())
        return True

    async def _read_loop(self) -> None:
        try:
            while True:
                record = await self.leg.receive()
                frame = self.records.open(record)
                sid = int.from_bytes(frame[1:5], "big")
                kind = self._kind_of(sid)
                for event in self.mux.receive_frame(frame):
                    await self._dispatch(event)
                self._received[kind or self._kind_of(sid) or "other"] += len(record)
        except SessionEnded as exc:
            self._finish(self.end_reason or exc.reason, exc.detail)
        except ProtocolError as exc:
            log.warning("peer sent invalid data: %s", exc)
            self._finish("protocol_error", str(exc))
            with contextlib.suppress(Exception):
                await self.leg.close("protocol_error")
        except (TimeoutError, ConnectionError) as exc:
            self._finish("connection_lost", type(exc).__name__)

    async def _dispatch(self, event: Any) -> None:
        if isinstance(event, DataReceived):
            if event.stream_id == CONTROL_STREAM:
                for msg in self._control_reader.feed(event.data):
                    if isinstance(msg, control.End):
                        self.end_reason, self.end_detail = msg.reason, msg.detail
                    if self.control_messages.full():
                        raise ProtocolError("peer floods the control stream")
                    self.control_messages.put_nowait(msg)
                self._consumed(CONTROL_STREAM, len(event.data))
                return
            st = self._streams.get(event.stream_id)
            if st is not None:
                st._chunks.append(event.data)
                st._readable.set()
        elif isinstance(event, StreamOpened):
            st = Stream(self, event.stream_id, event.kind, event.params)
            if self.incoming.full():
                raise ProtocolError("peer opens streams faster than they are served")
            self._streams[event.stream_id] = st
            self.incoming.put_nowait(st)
        elif isinstance(event, WindowOpened):
            self._work.set()
        elif isinstance(event, StreamEnded):
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.eof = True
                st._wake()
        elif isinstance(event, StreamReset):
            st = self._streams.pop(event.stream_id, None)
            self._fail(event.stream_id, SessionEnded("stream_reset", event.reason))
            if st is not None:
                st.reset_reason = event.reason
                st._wake()
