"""CopyRect encoding (RFC 6143 §7.7.2): copy a rectangle the client already has."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from enkaku.protocol.geometry import RectLike

CODE = 1


@dataclass(frozen=True, slots=True)
class Copy:
    """Pixels at ``dest`` are the client's current pixels at (src_x, src_y)."""

    dest: RectLike
    src_x: int
    src_y: int


def encode_copyrect(src_x: int, src_y: int) -> bytes:
    """The CopyRect payload: the source position."""
    return struct.pack("!HH", src_x, src_y)
