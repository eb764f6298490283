"""Stream 0 (control) lives as long as the channel: EOF or RESET on it is an error."""

from __future__ import annotations

import pytest

from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.streams import CONTROL_STREAM, FrameType, Mux, encode_frame


@pytest.mark.parametrize("role", ["agent", "technician"])
@pytest.mark.parametrize(
    "frame",
    [encode_frame(FrameType.EOF, CONTROL_STREAM), encode_frame(FrameType.RESET, 0, b"bye")],
)
def test_eof_or_reset_on_the_control_stream_is_a_protocol_error(role: str, frame: bytes) -> None:
    mux = Mux(role)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="control stream"):
        mux.receive_frame(frame)


def test_the_control_stream_cannot_be_ended_or_reset_locally() -> None:
    mux = Mux("agent")
    with pytest.raises(ValueError, match="control stream"):
        mux.send_eof(CONTROL_STREAM)
    with pytest.raises(ValueError, match="control stream"):
        mux.reset(CONTROL_STREAM, "x")
    assert mux.frames_to_send() == []
    assert mux.is_open(CONTROL_STREAM)
