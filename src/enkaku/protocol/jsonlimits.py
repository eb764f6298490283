"""JSON from the network, size- and depth-checked before it is parsed.

Python's ``json`` module recurses once per nesting level: 15 KB of ``[[[…`` raises
``RecursionError`` (not a ``ValueError``), which escapes the usual error handling and
drops the connection without its documented close code. ``loads_limited`` refuses such
input with a ``ProtocolError`` before the parser sees it. Every JSON message that
arrives from a peer (relay token, agent control link, the agent's view of server
messages, control stream and stream OPEN parameters) goes through it.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import ProtocolError

#: No message of ours nests deeper than a few levels; 32 leaves room and stays far
#: below the interpreter's recursion limit.
DEFAULT_MAX_DEPTH = 32

_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (strings skipped).

    A linear scan that needs no valid JSON: unbalanced input just gives some number,
    and the parser rejects it afterwards.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def loads_limited(
    data: str | bytes | bytearray, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """Parse ``data`` as JSON if it is at most ``max_bytes`` long (UTF-8) and nests at
    most ``max_depth`` levels; otherwise, or when it is not JSON, raise ProtocolError."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise ProtocolError(f"JSON message too large ({len(raw)} > {max_bytes} bytes)")
    # Fast path: fewer brackets in all than the limit cannot nest deeper than it.
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(raw) > max_depth:
        raise ProtocolError(f"JSON message nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("not valid JSON") from None


def loads_object(
    data: str | bytes | bytearray, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH
) -> dict[str, Any]:
    """Like ``loads_limited``, and the value must be a JSON object."""
    value = loads_limited(data, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(value, dict):
        raise ProtocolError("JSON message is not an object")
    return value
