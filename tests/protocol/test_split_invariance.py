"""Split-point invariance of the incremental parsers (STYLE.md rule 6: framers are
incremental, "need more bytes" is a normal result).

The same bytes fed to ``ControlReader.feed`` or ``RFBServer.receive_data`` whole, or
cut anywhere Hypothesis chooses, give the same messages, the same replies and the same
final state. Where the input ends in an error, every split raises the same error, and
the messages returned before it are the ones that preceded the bad bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from enkaku.protocol import control
from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.rfb import RFBServer, State
from enkaku.protocol.rfb import messages as m
from enkaku.protocol.rfb.pixelformat import NATIVE, PixelFormat

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length + 1, sorted)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[start:p])
        start = p
    return pieces


def feed_all(feed: Callable[[bytes], list[Any]], pieces: list[bytes]) -> tuple[list[Any], str]:
    """Events from feeding ``pieces`` in turn, and the error message ('' if none)."""
    events: list[Any] = []
    for piece in pieces:
        try:
            events += feed(piece)
        except ProtocolError as exc:
            return events, str(exc)
    return events, ""


cuts_strategy = st.lists(st.integers(min_value=0, max_value=1 << 21), max_size=40)


# -- control stream ------------------------------------------------------------------------

#: 4,000 nested arrays: Python's json raises RecursionError on it unless refused first.
DEEP_CONTROL_MESSAGE = struct.pack(">I", 4000) + b"[" * 4000

control_messages = st.one_of(
    st.builds(
        control.Consent,
        granted=st.booleans(),
        scope=st.lists(st.sampled_from(["screen", "control"]), max_size=2),
    ),
    st.builds(control.Status, control_paused=st.booleans()),
    st.builds(
        control.End,
        reason=st.sampled_from(control.END_REASONS),
        detail=st.none() | st.text(max_size=40),
    ),
    st.builds(control.Error, code=st.text(max_size=10), message=st.text(max_size=60)),
)
#: Bytes the reader must refuse: a body that is not JSON, not a known message, nested
#: too deep, or a length over the limit.
control_garbage = st.sampled_from(
    [
        struct.pack(">I", 3) + b"{1]",
        struct.pack(">I", 2) + b"[]",
        struct.pack(">I", 16) + b'{"type": "chat"}',
        DEEP_CONTROL_MESSAGE,
        struct.pack(">I", control.MAX_CONTROL_MESSAGE + 1),
        b"\xff\xff\xff\xff",
    ]
)


@SETTINGS
@given(
    messages=st.lists(control_messages, max_size=12),
    garbage=st.one_of(st.none(), st.none(), control_garbage),
    tail=st.binary(max_size=8),
    cuts=cuts_strategy,
)
def test_control_reader_is_split_invariant(
    messages: list[Any], garbage: bytes | None, tail: bytes, cuts: list[int]
) -> None:
    data = b"".join(control.encode(msg) for msg in messages)
    if garbage is not None:
        data += garbage + tail
    whole_events, whole_error = feed_all(control.ControlReader().feed, [data])
    reader = control.ControlReader()

    def feed(piece: bytes) -> list[Any]:
        try:
            return reader.feed(piece)
        finally:
            assert len(reader._buf) <= 4 + control.MAX_CONTROL_MESSAGE  # never more than one

    split_events, split_error = feed_all(feed, split(data, cuts))
    assert split_error == whole_error
    assert bool(whole_error) == (garbage is not None)
    if whole_error:
        # A feed that fails returns nothing; messages completed by earlier feeds stand.
        assert whole_events == []
        assert split_events == messages[: len(split_events)]
    else:
        assert whole_events == split_events == messages


def test_deeply_nested_control_message_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        control.ControlReader().feed(DEEP_CONTROL_MESSAGE)


def test_control_reader_byte_by_byte() -> None:
    msgs = [control.Consent(granted=True, scope=["screen"]), control.End(reason="timeout")]
    data = b"".join(control.encode(x) for x in msgs)
    reader = control.ControlReader()
    got = [e for i in range(len(data)) for e in reader.feed(data[i : i + 1])]
    assert got == msgs


# -- RFB server ------------------------------------------------------------------------------


def _pixel_format(pf: PixelFormat) -> bytes:
    return struct.pack("!B3x", 0) + bytes(pf)


_PF_8BIT_MAP = PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)
_PF_16 = PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0)

rect = st.tuples(*(st.integers(0, 0xFFFF) for _ in range(4)))
encodings = st.lists(
    st.sampled_from(
        [0, 1, 5, 7, 16, -223, -224, -239, -258, -308, -312, -313, -32, -23, -256, -247, 99]
    ),
    max_size=12,
)
rfb_message = st.one_of(
    st.sampled_from([_pixel_format(NATIVE), _pixel_format(_PF_16), _pixel_format(_PF_8BIT_MAP)]),
    encodings.map(lambda codes: struct.pack(f"!BxH{len(codes)}i", 2, len(codes), *codes)),
    st.builds(lambda inc, r: struct.pack("!BB4H", 3, inc, *r), st.integers(0, 1), rect),
    st.builds(
        lambda d, k: struct.pack("!BB2xI", 4, d, k), st.integers(0, 1), st.integers(0, 2**32 - 1)
    ),
    st.builds(
        lambda b, x, y: struct.pack("!BBHH", 5, b, x, y),
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
    ),
    st.binary(max_size=40).map(lambda t: struct.pack("!B3xI", 6, len(t)) + t),
    # Over MAX_CUT_TEXT: skipped as TigerVNC does, not buffered.
    st.just(struct.pack("!B3xI", 6, m.MAX_CUT_TEXT + 5) + bytes(m.MAX_CUT_TEXT + 5)),
    st.builds(lambda e, r: struct.pack("!BB4H", 150, e, *r), st.integers(0, 1), rect),
    st.builds(
        lambda f, p: struct.pack("!B3xIB", 248, f, len(p)) + p,
        st.sampled_from([0, 1, 2, 4, 0x80000000, 0x80000007]),
        st.binary(max_size=m.MAX_FENCE_PAYLOAD),
    ),
    st.builds(
        lambda w, h, n: struct.pack("!BxHHBx", 251, w, h, n) + bytes(16 * n),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.integers(0, 3),
    ),
    st.builds(
        lambda d, s, c: struct.pack("!BBHII", 255, 0, d, s, c),
        st.integers(0, 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
    ),
)
rfb_garbage = st.one_of(
    st.sampled_from(
        [
            b"\x07",  # unknown message type
            b"\xff\x01",  # unknown QEMU subtype
            struct.pack("!BxH", 2, m.MAX_ENCODINGS + 1),
            struct.pack("!B3xIB", 248, 0, m.MAX_FENCE_PAYLOAD + 1),
            struct.pack("!BxHHBx", 251, 1, 1, m.MAX_SCREENS + 1),
            struct.pack("!B3x", 0) + bytes(16),  # bits-per-pixel 0
        ]
    ),
    st.binary(min_size=1, max_size=30),
)
GOOD_OPENINGS = [
    b"RFB 003.008\n\x01\x01",
    b"RFB 003.007\n\x01\x00",
    b"RFB 003.003\n\x01",
    b"RFB 003.005\n\x00",
]
BAD_OPENINGS = [b"RFB 004.000\n", b"HTTP/1.1 200", b"RFB 003.008\n\x02"]
#: Mostly good handshakes, so that the messages after them are reached.
opening = st.sampled_from(GOOD_OPENINGS * 4 + BAD_OPENINGS)


def _state(server: RFBServer) -> tuple[Any, ...]:
    return (
        server.state,
        server.version,
        server.pixel_format,
        server.encodings,
        server.encoding,
        server.options,
        server.update_requested,
        server.has_pending_pseudo,
    )


def _run(data: bytes, pieces: list[bytes]) -> tuple[list[Any], str, bytes, tuple[Any, ...]]:
    server = RFBServer(64, 48, "desk")
    out = server.data_to_send()

    def feed(piece: bytes) -> list[Any]:
        nonlocal out
        try:
            return server.receive_data(piece)
        finally:
            out += server.data_to_send()
            # Bounded: at most one legal message waits; an oversized paste is skipped.
            assert server.state is State.CLOSED or len(server._in) <= 8 + m.MAX_CUT_TEXT

    events, error = feed_all(feed, pieces)
    return events, error, out, _state(server)


@SETTINGS
@given(
    opening=opening,
    messages=st.lists(rfb_message, max_size=10),
    garbage=st.one_of(st.none(), st.none(), rfb_garbage),
    cuts=cuts_strategy,
)
def test_rfb_server_is_split_invariant(
    opening: bytes, messages: list[bytes], garbage: bytes | None, cuts: list[int]
) -> None:
    data = opening + b"".join(messages) + (garbage or b"")
    event(f"{len(split(data, cuts))} pieces" if len(cuts) < 3 else "3+ pieces")
    if len(data) > m.MAX_CUT_TEXT:
        event("oversized ClientCutText skipped")
    whole_events, whole_error, whole_out, whole_state = _run(data, [data])
    split_events, split_error, split_out, split_state = _run(data, split(data, cuts))
    event(f"error: {whole_error.split(' ')[0] if whole_error else None}")
    assert split_error == whole_error
    assert split_out == whole_out
    assert split_state == whole_state
    if whole_error:
        assert whole_state[0] is State.CLOSED
        assert whole_events == []
        # Messages completed by earlier feeds stand: a prefix of those before the error.
        pieces = [opening, *messages, garbage or b""]
        before_error, error, _, _ = _run(data, pieces)
        assert error == whole_error
        assert split_events == before_error[: len(split_events)]
    else:
        assert split_events == whole_events


def test_rfb_server_byte_by_byte() -> None:
    """Every message type, one byte per call: the same as all at once."""
    data = b"RFB 003.008\n\x01\x01" + b"".join(
        [
            _pixel_format(_PF_16),
            struct.pack("!BxH3i", 2, 3, 7, -223, -313),
            struct.pack("!BB4H", 3, 0, 0, 0, 64, 48),
            struct.pack("!BB2xI", 4, 1, 0x61),
            struct.pack("!BBHH", 5, 1, 10, 20),
            struct.pack("!B3xI", 6, 3) + b"abc",
            struct.pack("!BB4H", 150, 1, 0, 0, 10, 10),
            struct.pack("!B3xIB", 248, 0x80000001, 2) + b"hi",
            struct.pack("!BxHHBx", 251, 10, 10, 1) + bytes(16),
            struct.pack("!BBHII", 255, 0, 1, 0x61, 30),
        ]
    )
    whole = _run(data, [data])
    assert whole[1] == "" and len(whole[0]) == 11
    assert _run(data, [data[i : i + 1] for i in range(len(data))]) == whole
