"""Stateful property test of two ``Mux`` peers joined by an ordered, lossless link.

Hypothesis drives both sides through OPEN, DATA, WINDOW (credit), EOF and RESET in any
order and any interleaving with delivery, stream 0 (control) included, and throws
illegal frames at a copy of either side. The model below predicts every event; the
invariants are those of docs/protocol/streams.md:

- bytes arrive in order and exactly once (every byte is a function of its position);
- a sender never exceeds the receiver's window, and credit is conserved;
- no buffer or table grows without bound;
- an illegal frame raises ProtocolError and nothing else;
- once the link is quiet, both sides agree on which streams are open and half-closed.

``MAX_STREAMS`` is lowered for the run so that the stream limits are reached.
"""

from __future__ import annotations

import contextlib
import copy
import json
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from enkaku.protocol import streams
from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.streams import (
    CONTROL_STREAM,
    INITIAL_WINDOW,
    MAX_DATA,
    MAX_OPEN_PARAMS,
    MAX_WINDOW,
    DataReceived,
    FrameType,
    Mux,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowOpened,
    encode_frame,
)

Side = Literal["technician", "agent"]
SIDES: tuple[Side, Side] = ("technician", "agent")
#: Streams each side may open at once during the test (the real limit is larger).
TEST_MAX_STREAMS = 3
#: Byte i of a stream direction is PATTERN[(i + offset) % 251]: order and loss show.
PATTERN = bytes(range(251)) * (INITIAL_WINDOW // 251 + 2)


#: The control stream can neither end nor be reset (issue 5 §2.7): a peer's EOF or RESET
#: on stream 0 is a protocol error.
CONTROL_CLOSE_FRAMES = [
    encode_frame(FrameType.EOF, CONTROL_STREAM),
    encode_frame(FrameType.RESET, CONTROL_STREAM, b"bye"),
]


def other(side: Side) -> Side:
    return "agent" if side == "technician" else "technician"


def payload_at(position: int, sid: int, n: int) -> bytes:
    start = (position + 17 * sid) % 251
    return PATTERN[start : start + n]


@dataclass
class Direction:
    """One direction of a stream, named by its sender."""

    sent: int = 0  # bytes the sender's Mux accepted
    received: int = 0  # bytes delivered to the receiver
    consumed: int = 0  # bytes the receiving application consumed
    granted: int = 0  # WINDOW increments the receiver emitted
    credit: int = 0  # WINDOW increments delivered to the sender
    eof_sent: bool = False
    eof_received: bool = False


@dataclass
class StreamModel:
    sid: int
    kind: str
    params: dict[str, Any]
    opener: Side | None  # None: the control stream
    known: dict[Side, bool]
    dirs: dict[Side, Direction] = field(
        default_factory=lambda: {"technician": Direction(), "agent": Direction()}
    )
    seen_by: set[Side] = field(default_factory=set)  # sides that ever had it open

    def local_eof(self, side: Side) -> bool:
        return self.dirs[side].eof_sent

    def remote_eof(self, side: Side) -> bool:
        return self.dirs[other(side)].eof_received


def illegal_frames(machine: MuxPair, receiver: Side) -> list[bytes]:
    """Frames that ``receiver`` must refuse with ProtocolError in the current state."""
    sender = other(receiver)
    mux, model = machine.mux[receiver], machine.model
    never_own, never_peer = machine.next_id[receiver], machine.next_id[sender]
    open_ok = b"\x03rfb{}"
    frames = [
        b"",
        b"\x02\x00\x00\x00",
        b"\x00" + bytes(4),
        b"\x06" + bytes(4),
        b"\xff" + bytes(4),
        encode_frame(FrameType.OPEN, CONTROL_STREAM, open_ok),
        encode_frame(FrameType.OPEN, never_own, open_ok),  # the receiver's parity
        encode_frame(FrameType.OPEN, never_peer, b""),
        encode_frame(FrameType.OPEN, never_peer, b"\x00"),
        encode_frame(FrameType.OPEN, never_peer, b"\x05rfb"),
        encode_frame(FrameType.OPEN, never_peer, b"\x03rf\xff{}"),
        encode_frame(FrameType.OPEN, never_peer, b"\x03rfb{"),
        encode_frame(FrameType.OPEN, never_peer, b"\x03rfb[1]"),
        encode_frame(FrameType.OPEN, never_peer, b"\x03rfb\xff\xfe"),
        encode_frame(FrameType.OPEN, never_peer, b"\x03rfb" + b"[" * 5000 + b"]" * 5000),
        encode_frame(FrameType.OPEN, never_peer, b"\x03rfb" + b" " * (MAX_OPEN_PARAMS + 1)),
    ]
    for ftype in (FrameType.DATA, FrameType.WINDOW, FrameType.EOF, FrameType.RESET):
        payload = struct.pack(">I", 1) if ftype is FrameType.WINDOW else b""
        frames.append(encode_frame(ftype, never_own, payload))
        frames.append(encode_frame(ftype, never_peer, payload))
    frames += CONTROL_CLOSE_FRAMES
    for sid, sm in model.items():
        if sm.opener == sender and receiver in sm.seen_by and not sm.known[receiver]:
            # Ids are never reused: a closed stream's id may not be opened again.
            frames.append(encode_frame(FrameType.OPEN, sid, open_ok))
        if not sm.known[receiver]:
            continue
        if sm.opener == sender:
            frames.append(encode_frame(FrameType.OPEN, sid, open_ok))  # already open
        d = sm.dirs[sender]
        recv_window = INITIAL_WINDOW + d.granted - d.received
        frames += [
            encode_frame(FrameType.DATA, sid, bytes(MAX_DATA + 1)),
            encode_frame(FrameType.WINDOW, sid, b""),
            encode_frame(FrameType.WINDOW, sid, bytes(3)),
            encode_frame(FrameType.WINDOW, sid, bytes(5)),
            encode_frame(FrameType.WINDOW, sid, bytes(4)),
            encode_frame(FrameType.WINDOW, sid, struct.pack(">I", 0xFFFFFFFF)),
            encode_frame(FrameType.EOF, sid, b"x"),
        ]
        if recv_window < MAX_DATA:
            frames.append(encode_frame(FrameType.DATA, sid, bytes(recv_window + 1)))
        if d.eof_received:
            frames.append(encode_frame(FrameType.DATA, sid, b"x"))
            frames.append(encode_frame(FrameType.EOF, sid))
        inc = MAX_WINDOW - mux._streams[sid].send_window + 1
        frames.append(encode_frame(FrameType.WINDOW, sid, struct.pack(">I", inc)))
    return frames


class MuxPair(RuleBasedStateMachine):
    """A technician Mux and an agent Mux; each side's frames queue on its own wire."""

    def __init__(self) -> None:
        super().__init__()
        self._saved_max = streams.MAX_STREAMS
        streams.MAX_STREAMS = TEST_MAX_STREAMS
        self.mux: dict[Side, Mux] = {"technician": Mux("technician"), "agent": Mux("agent")}
        self.wire: dict[Side, deque[bytes]] = {"technician": deque(), "agent": deque()}
        self.model: dict[int, StreamModel] = {
            CONTROL_STREAM: StreamModel(
                CONTROL_STREAM, "control", {}, None, {"technician": True, "agent": True}
            )
        }
        self.next_id: dict[Side, int] = {"technician": 1, "agent": 2}

    def teardown(self) -> None:
        streams.MAX_STREAMS = self._saved_max

    # -- helpers ---------------------------------------------------------------------

    def known(self, side: Side) -> list[int]:
        return sorted(s for s, sm in self.model.items() if sm.known[side])

    def own_open(self, side: Side) -> int:
        return sum(1 for sm in self.model.values() if sm.opener == side and sm.known[side])

    def forget_if_closed(self, side: Side, sm: StreamModel) -> None:
        if sm.sid != CONTROL_STREAM and sm.local_eof(side) and sm.remote_eof(side):
            sm.known[side] = False

    def collect(self, side: Side) -> None:
        """Move the frames the side's Mux queued onto its wire; note the credit it grants."""
        for frame in self.mux[side].frames_to_send():
            ftype, sid = frame[0], struct.unpack_from(">I", frame, 1)[0]
            if ftype == FrameType.WINDOW:
                (inc,) = struct.unpack_from(">I", frame, 5)
                self.model[sid].dirs[other(side)].granted += inc
            self.wire[side].append(frame)

    def deliver_one(self, sender: Side) -> None:
        receiver = other(sender)
        frame = self.wire[sender].popleft()
        ftype, sid = frame[0], struct.unpack_from(">I", frame, 1)[0]
        payload = frame[5:]
        events = self.mux[receiver].receive_frame(frame)  # a legal frame never raises
        sm = self.model[sid]
        if ftype == FrameType.OPEN:
            assert sm.opener == sender and not sm.known[receiver]
            sm.known[receiver] = True
            sm.seen_by.add(receiver)
            assert events == [StreamOpened(sid, sm.kind, sm.params)]
            return
        if not sm.known[receiver]:
            assert events == []  # it raced a RESET, or the stream closed both ways
            event("frame dropped: stream already forgotten")
            return
        d = sm.dirs[sender]  # the direction this frame's data flows in
        if ftype == FrameType.DATA:
            assert not d.eof_received
            assert payload == payload_at(d.received, sid, len(payload)), "bytes out of order"
            d.received += len(payload)
            assert d.received <= d.sent
            assert events == [DataReceived(sid, payload)]
        elif ftype == FrameType.WINDOW:
            (inc,) = struct.unpack(">I", payload)
            back = sm.dirs[receiver]  # the credit is for the receiver's own sending
            back.credit += inc
            event("credit returned")
            assert events == [WindowOpened(sid, INITIAL_WINDOW + back.credit - back.sent)]
        elif ftype == FrameType.EOF:
            assert d.received == d.sent, "EOF overtook data"
            d.eof_received = True
            assert events == [StreamEnded(sid)]
            self.forget_if_closed(receiver, sm)
            if not sm.known[receiver]:
                event("stream closed both ways")
        else:
            assert ftype == FrameType.RESET
            sm.known[receiver] = False
            assert events == [StreamReset(sid, payload.decode("ascii"))]

    def pick(self, ids: list[int], index: int) -> int:
        return ids[index % len(ids)]

    # -- rules -----------------------------------------------------------------------

    @rule(
        side=st.sampled_from(SIDES),
        kind=st.sampled_from(["rfb", "file", "x"]),
        params=st.dictionaries(
            st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3
        ),
    )
    def open_stream(self, side: Side, kind: str, params: dict[str, Any]) -> None:
        if self.own_open(side) >= TEST_MAX_STREAMS:
            with pytest.raises(ProtocolError, match="too many open streams"):
                self.mux[side].open_stream(kind, params)
            event("open refused at the stream limit")
            return
        sid = self.mux[side].open_stream(kind, params)
        assert sid == self.next_id[side]
        self.next_id[side] += 2
        self.model[sid] = StreamModel(
            sid, kind, json.loads(json.dumps(params)), side, {side: True, other(side): False}
        )

    @rule(
        side=st.sampled_from(SIDES),
        index=st.integers(0, 64),
        size=st.one_of(
            st.integers(0, 64), st.integers(0, 3 * MAX_DATA), st.just(INITIAL_WINDOW + 1)
        ),
    )
    def send(self, side: Side, index: int, size: int) -> None:
        ids = [s for s in self.known(side) if not self.model[s].local_eof(side)]
        sid = self.pick(ids, index)  # the control stream is always writable
        d = self.model[sid].dirs[side]
        window = INITIAL_WINDOW + d.credit - d.sent
        assert self.mux[side].send_window(sid) == window
        taken = self.mux[side].send_data(sid, payload_at(d.sent, sid, size))
        assert taken == min(size, window), "the sender ignored the window"
        d.sent += taken
        if taken < size:
            event(f"sender blocked by the window (stream 0: {sid == 0})")

    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 64))
    def eof(self, side: Side, index: int) -> None:
        ids = [s for s in self.known(side) if s and not self.model[s].local_eof(side)]
        if not ids:
            return
        sid = self.pick(ids, index)
        self.mux[side].send_eof(sid)
        sm = self.model[sid]
        sm.dirs[side].eof_sent = True
        assert self.mux[side].send_window(sid) == 0
        with pytest.raises(ValueError):
            self.mux[side].send_data(sid, b"x")
        self.forget_if_closed(side, sm)

    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 64), reason=st.sampled_from(["", "x"]))
    def reset(self, side: Side, index: int, reason: str) -> None:
        ids = [s for s in self.known(side) if s]
        if not ids:
            return
        sid = self.pick(ids, index)
        self.mux[side].reset(sid, reason)
        self.model[sid].known[side] = False

    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 64), part=st.integers(1, 4))
    def consume(self, side: Side, index: int, part: int) -> None:
        """The application on ``side`` reads some of what arrived."""
        ids = [s for s in self.known(side) if self._buffered(side, s)]
        if not ids:
            return
        sid = self.pick(ids, index)
        d = self.model[sid].dirs[other(side)]
        n = -(-self._buffered(side, sid) // part)
        self.mux[side].consumed(sid, n)
        d.consumed += n
        self.collect(side)

    def _buffered(self, side: Side, sid: int) -> int:
        d = self.model[sid].dirs[other(side)]
        return d.received - d.consumed

    @rule(side=st.sampled_from(SIDES), count=st.integers(1, 8))
    def deliver(self, side: Side, count: int) -> None:
        self.collect(side)
        for _ in range(min(count, len(self.wire[side]))):
            self.deliver_one(side)

    @rule()
    def quiesce(self) -> None:
        """Deliver everything both ways; then both sides must agree on every stream."""
        while True:
            for side in SIDES:
                self.collect(side)
            if not any(self.wire.values()):
                break
            for side in SIDES:
                while self.wire[side]:
                    self.deliver_one(side)
        tech, agent = self.mux["technician"], self.mux["agent"]
        for sid, sm in self.model.items():
            assert sm.known["technician"] == sm.known["agent"], f"stream {sid} open on one side"
            if not sm.known["technician"]:
                continue
            t, a = tech._streams[sid], agent._streams[sid]
            assert (t.local_eof, t.remote_eof) == (a.remote_eof, a.local_eof)
            assert t.kind == a.kind and t.params == a.params
            for side in SIDES:
                d = sm.dirs[side]
                assert d.received == d.sent, "bytes lost on a live stream"

    @rule(receiver=st.sampled_from(SIDES), index=st.integers(0, 1000))
    def illegal_frame(self, receiver: Side, index: int) -> None:
        """Any illegal frame raises ProtocolError (on a copy: the run goes on)."""
        frames = illegal_frames(self, receiver)
        frame = frames[index % len(frames)]
        victim = copy.deepcopy(self.mux[receiver])
        with pytest.raises(ProtocolError):
            victim.receive_frame(frame)

    @rule(receiver=st.sampled_from(SIDES), frame=st.binary(max_size=64))
    def arbitrary_frame(self, receiver: Side, frame: bytes) -> None:
        """Random bytes either parse or raise ProtocolError, never anything else."""
        victim = copy.deepcopy(self.mux[receiver])
        with contextlib.suppress(ProtocolError):
            victim.receive_frame(frame)

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def sides_match_the_model(self) -> None:
        for side in SIDES:
            mux = self.mux[side]
            assert set(mux._streams) == set(self.known(side))
            assert len(mux._streams) <= 1 + 2 * TEST_MAX_STREAMS
            for sid in self.known(side):
                sm, st_ = self.model[sid], mux._streams[sid]
                out, into = sm.dirs[side], sm.dirs[other(side)]
                # Credit is conserved: what the sender may still send plus what is in
                # flight, buffered, or consumed but not yet returned is the window.
                assert st_.send_window == INITIAL_WINDOW + out.credit - out.sent
                assert 0 <= st_.send_window <= INITIAL_WINDOW
                assert st_.recv_window == INITIAL_WINDOW + into.granted - into.received
                assert 0 <= st_.recv_window <= INITIAL_WINDOW
                assert st_.unacked == into.consumed - into.granted
                assert 0 <= into.received - into.consumed <= INITIAL_WINDOW
                assert (st_.local_eof, st_.remote_eof) == (sm.local_eof(side), sm.remote_eof(side))
                expected = 0 if st_.local_eof else st_.send_window
                assert mux.send_window(sid) == expected


MuxPair.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestMuxPair = MuxPair.TestCase


# -- regressions the state machine found --------------------------------------------------


def _pump(src: Mux, dst: Mux) -> list[Any]:
    events: list[Any] = []
    for frame in src.frames_to_send():
        events += dst.receive_frame(frame)
    return events


def test_both_sides_opening_up_to_the_limit_at_once_is_legal() -> None:
    """Each side opens MAX_STREAMS streams before seeing the other's OPENs: no error."""
    tech, agent = Mux("technician"), Mux("agent")
    for _ in range(streams.MAX_STREAMS):
        tech.open_stream("rfb")
        agent.open_stream("file")
    assert len(_pump(tech, agent)) == streams.MAX_STREAMS
    assert len(_pump(agent, tech)) == streams.MAX_STREAMS
    with pytest.raises(ProtocolError, match="too many open streams"):
        tech.open_stream("rfb")


def test_peer_beyond_its_stream_limit_is_refused() -> None:
    agent = Mux("agent")
    for i in range(streams.MAX_STREAMS):
        agent.receive_frame(encode_frame(FrameType.OPEN, 2 * i + 1, b"\x03rfb"))
    with pytest.raises(ProtocolError, match="too many open streams"):
        agent.receive_frame(encode_frame(FrameType.OPEN, 2 * streams.MAX_STREAMS + 1, b"\x03rfb"))


def test_a_closed_stream_id_cannot_be_opened_again() -> None:
    agent = Mux("agent")
    agent.receive_frame(encode_frame(FrameType.OPEN, 1, b"\x03rfb"))
    agent.receive_frame(encode_frame(FrameType.RESET, 1, b"bye"))
    with pytest.raises(ProtocolError, match="may not open stream 1"):
        agent.receive_frame(encode_frame(FrameType.OPEN, 1, b"\x03rfb"))


def test_deeply_nested_open_parameters_are_a_protocol_error() -> None:
    agent = Mux("agent")
    with pytest.raises(ProtocolError, match="malformed"):
        agent.receive_frame(encode_frame(FrameType.OPEN, 1, b"\x03rfb" + b"[" * 8000))


@pytest.mark.parametrize("frame", CONTROL_CLOSE_FRAMES)
def test_control_stream_cannot_be_closed_by_the_peer(frame: bytes) -> None:
    for side in SIDES:
        with pytest.raises(ProtocolError):
            Mux(side).receive_frame(frame)
