"""The end-to-end channel over a paired relay leg: handshake, records, streams.

One SecureChannel per session and side. It owns a reader task that decrypts records,
feeds the mux and wakes the streams; writes go through one lock so that record
counters follow wire order. Any record or mux error ends the session (no fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
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
        self._writable = asyncio.Event()
        self.eof = False
        self.reset_reason: str | None = None

    async def read(self) -> bytes:
        """The next chunk; b"" at end of stream (EOF, reset or session end)."""
        while not self._chunks:
            if self.eof or self.reset_reason is not None or self.channel.closed.is_set():
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        await self.channel._consumed(self.id, len(chunk))
        return chunk

    async def write(self, data: bytes) -> None:
        """Send ``data``, waiting for the peer's window as needed."""
        view = memoryview(data)
        while view:
            if self.reset_reason is not None:
                raise SessionEnded("stream_reset", self.reset_reason)
            if self.channel.closed.is_set():
                raise SessionEnded(self.channel.end_reason or "connection_lost")
            taken = await self.channel._send_data(self.id, bytes(view))
            view = view[taken:]
            if view:
                self._writable.clear()
                await self._writable.wait()

    async def write_eof(self) -> None:
        await self.channel._send_eof(self.id)

    async def reset(self, reason: str) -> None:
        self.reset_reason = reason
        await self.channel._reset(self.id, reason)

    def _wake(self) -> None:
        self._readable.set()
        self._writable.set()


class SecureChannel:
    """Streams and control messages over an established record channel."""

    def __init__(self, leg: RelayLeg, records: RecordChannel, role: Literal["agent", "technician"]):
        self.leg, self.records, self.role = leg, records, role
        self.mux = Mux(role)
        self.closed = asyncio.Event()
        self.end_reason: str | None = None
        self.end_detail: str | None = None
        self.control_messages: asyncio.Queue[
            control.Consent | control.Status | control.End | control.Error
        ] = asyncio.Queue(maxsize=256)
        self.incoming: asyncio.Queue[Stream] = asyncio.Queue(maxsize=16)
        self._streams: dict[int, Stream] = {}
        self._control_reader = control.ControlReader()
        self._write_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def open_stream(self, kind: str, params: dict[str, Any] | None = None) -> Stream:
        async with self._write_lock:
            sid = self.mux.open_stream(kind, params)
            stream = self._streams[sid] = Stream(self, sid, kind, params or {})
            await self._flush_locked()
        return stream

    async def send_control(self, msg: Any) -> None:
        data = control.encode(msg)
        while data:
            taken = await self._send_data(CONTROL_STREAM, data)
            data = data[taken:]
            if data:
                await asyncio.sleep(0.01)

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
                await self._stop_reader()
                return
            reason = control.OWN_END[self.role]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send_control(control.End(reason=reason, detail=detail)), 2)  # type: ignore[arg-type]
        self._finish(reason, detail)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leg.close(reason), 5)
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

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
        log.info("channel closed: %s", reason)

    async def _flush_locked(self) -> None:
        for frame in self.mux.frames_to_send():
            await self.leg.send(self.records.seal(frame))

    async def _send_data(self, sid: int, data: bytes) -> int:
        async with self._write_lock:
            if not self.mux.is_open(sid):
                raise SessionEnded("stream_closed")
            taken = self.mux.send_data(sid, data)
            await self._flush_locked()
            return taken

    async def _send_eof(self, sid: int) -> None:
        async with self._write_lock:
            self.mux.send_eof(sid)
            await self._flush_locked()

    async def _reset(self, sid: int, reason: str) -> None:
        async with self._write_lock:
            self.mux.reset(sid, reason)
            self._streams.pop(sid, None)
            await self._flush_locked()

    async def _consumed(self, sid: int, n: int) -> None:
        if self.closed.is_set():
            return
        async with self._write_lock:
            self.mux.consumed(sid, n)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._flush_locked()

    async def _read_loop(self) -> None:
        try:
            while True:
                record = await self.leg.receive()
                frame = self.records.open(record)
                for event in self.mux.receive_frame(frame):
                    await self._dispatch(event)
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
                await self._consumed(CONTROL_STREAM, len(event.data))
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
            st = self._streams.get(event.stream_id)
            if st is not None:
                st._writable.set()
        elif isinstance(event, StreamEnded):
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.eof = True
                st._wake()
        elif isinstance(event, StreamReset):
            st = self._streams.pop(event.stream_id, None)
            if st is not None:
                st.reset_reason = event.reason
                st._wake()
