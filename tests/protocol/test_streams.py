import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enkaku.protocol import control
from enkaku.protocol.control import Consent, ControlReader, End, encode
from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.streams import (
    INITIAL_WINDOW,
    MAX_DATA,
    DataReceived,
    FrameType,
    Mux,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowOpened,
    encode_frame,
)


def pump(src: Mux, dst: Mux) -> list:
    events = []
    for frame in src.frames_to_send():
        events += dst.receive_frame(frame)
    return events


def test_open_data_eof_roundtrip() -> None:
    tech, agent = Mux("technician"), Mux("agent")
    sid = tech.open_stream("rfb", {"shared": True})
    assert sid == 1
    assert tech.send_data(sid, b"hello") == 5
    tech.send_eof(sid)
    assert pump(tech, agent) == [
        StreamOpened(1, "rfb", {"shared": True}),
        DataReceived(1, b"hello"),
        StreamEnded(1),
    ]
    assert agent.open_stream("file") == 2


def test_window_limits_sender_and_credit_returns() -> None:
    tech, agent = Mux("technician"), Mux("agent")
    sid = tech.open_stream("file")
    big = b"x" * (INITIAL_WINDOW + 1000)
    taken = tech.send_data(sid, big)
    assert taken == INITIAL_WINDOW
    assert tech.send_window(sid) == 0
    events = pump(tech, agent)
    data = [e for e in events if isinstance(e, DataReceived)]
    assert all(len(e.data) <= MAX_DATA for e in data)
    assert sum(len(e.data) for e in data) == INITIAL_WINDOW
    agent.consumed(sid, INITIAL_WINDOW // 4)
    assert pump(agent, tech) == [WindowOpened(sid, INITIAL_WINDOW // 4)]
    assert tech.send_window(sid) == INITIAL_WINDOW // 4


def test_overrunning_the_window_is_a_protocol_error() -> None:
    agent = Mux("agent")
    agent.receive_frame(encode_frame(FrameType.OPEN, 1, b"\x03rfb"))
    for _ in range(INITIAL_WINDOW // MAX_DATA):
        agent.receive_frame(encode_frame(FrameType.DATA, 1, b"y" * MAX_DATA))
    with pytest.raises(ProtocolError, match="overran"):
        agent.receive_frame(encode_frame(FrameType.DATA, 1, b"y"))


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01\x00\x00",
        encode_frame(FrameType.OPEN, 2, b"\x03rfb"),  # agent-parity id from technician
        encode_frame(FrameType.OPEN, 0, b"\x03rfb"),
        encode_frame(FrameType.OPEN, 1, b"\x09rfb"),
        encode_frame(FrameType.OPEN, 1, b"\x03rfb[1]"),
        encode_frame(FrameType.DATA, 7, b"data"),
        encode_frame(FrameType.WINDOW, 0, b"\x00\x00\x00\x00"),
        encode_frame(FrameType.DATA, 0, b"z" * (MAX_DATA + 1)),
        b"\x09\x00\x00\x00\x00",
    ],
)
def test_malformed_frames_raise(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        Mux("agent").receive_frame(frame)


def test_reset_removes_stream() -> None:
    tech, agent = Mux("technician"), Mux("agent")
    sid = tech.open_stream("rfb")
    pump(tech, agent)
    agent.reset(sid, "refused")
    assert pump(agent, tech) == [StreamReset(sid, "refused")]
    assert not tech.is_open(sid)
    with pytest.raises(ValueError):
        tech.send_data(sid, b"x")


@given(st.binary(max_size=200))
def test_arbitrary_frames_only_raise_protocol_error(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        Mux("agent").receive_frame(frame)


def test_control_framing_incremental() -> None:
    wire = encode(Consent(granted=True, scope=["screen"])) + encode(End(reason="customer_ended"))
    reader = ControlReader()
    out = []
    for i in range(len(wire)):
        out += reader.feed(wire[i : i + 1])
    assert out == [Consent(granted=True, scope=["screen"]), End(reason="customer_ended")]


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"type":""}',
        b'{"type":7}',
        b'{"type":"end","reason":"because"}',
        b'{"type":"consent"}',
        b'{"type":"request","id":0,"action":"screen"}',
        b'{"type":"request","id":1,"action":"format_disk"}',
        b'{"type":"chat","text":"","at":"x"}',
    ],
)
def test_control_rejects_bad_messages(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        ControlReader().feed(struct.pack(">I", len(body)) + body)


def test_a_message_of_an_unknown_type_is_passed_on_not_fatal() -> None:
    """A newer peer's message type is answered with ``error``, the session goes on."""
    body = b'{"type":"whiteboard","strokes":[]}'
    out = ControlReader().feed(struct.pack(">I", len(body)) + body)
    assert out == [control.Unknown("whiteboard")]


def test_control_rejects_oversized_length_before_buffering() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        ControlReader().feed(struct.pack(">I", 1 << 30))
