"""JSON from the network: size and depth are checked before parsing (issue 5 §3)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enkaku.protocol import control
from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.jsonlimits import json_depth, loads_limited, loads_object

DEEP = "[" * 15_000


def test_deep_input_is_a_protocol_error_not_a_recursion_error() -> None:
    with pytest.raises(ProtocolError, match="deeper than 32"):
        loads_limited(DEEP, max_bytes=64 * 1024)
    with pytest.raises(ProtocolError, match="deeper"):
        loads_limited('{"a":' * 40 + "1" + "}" * 40, max_bytes=1024)


def test_size_is_checked_in_utf8_bytes() -> None:
    assert loads_limited('"' + "x" * 8 + '"', max_bytes=10) == "x" * 8
    with pytest.raises(ProtocolError, match="too large"):
        loads_limited('"' + "é" * 8 + '"', max_bytes=10)  # 8 characters, 18 bytes


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[[[[{{{{" * 100, "b": 'q"[[\\'})
    assert json_depth(text.encode()) == 1
    assert loads_limited(text, max_bytes=10_000, max_depth=1)["b"] == 'q"[[\\'


def test_invalid_and_non_object_input() -> None:
    with pytest.raises(ProtocolError, match="not valid JSON"):
        loads_limited("{nope", max_bytes=100)
    with pytest.raises(ProtocolError, match="not an object"):
        loads_object("[1]", max_bytes=100)
    with pytest.raises(ProtocolError, match="not valid JSON"):
        loads_limited(b"\xff", max_bytes=100)


@given(
    st.recursive(
        st.none() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=30,
    )
)
def test_depth_matches_the_value(value: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    raw = json.dumps(value).encode()
    assert json_depth(raw) == depth(value)
    assert loads_limited(raw, max_bytes=len(raw), max_depth=depth(value)) == value


def test_control_message_nested_too_deep_is_a_protocol_error() -> None:
    # A 64 KiB control message fits MAX_CONTROL_MESSAGE; the old parser recursed into it.
    body = b"[" * (control.MAX_CONTROL_MESSAGE - 1)
    with pytest.raises(ProtocolError, match="deeper"):
        control.parse(body)
