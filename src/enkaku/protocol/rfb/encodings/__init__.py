"""RFB encoders, one module each, and the registry the server picks from.

An encoder turns a BGRX rectangle into wire rectangles for one client pixel format.
Encoders with zlib state belong to one connection: the server makes its own instances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from enkaku.protocol.geometry import Rect, RectLike
from enkaku.protocol.rfb.encodings.raw import RawEncoder
from enkaku.protocol.rfb.encodings.tight import TightEncoder
from enkaku.protocol.rfb.encodings.zrle import ZRLEEncoder
from enkaku.protocol.rfb.messages import EncodedRect, EncodeOptions
from enkaku.protocol.rfb.pixelformat import Frame, PixelFormat


class Encoder(Protocol):
    """Encodes BGRX rectangles; may keep compression state across calls."""

    code: int

    def encode(
        self, frame: Frame, pf: PixelFormat, options: EncodeOptions
    ) -> list[EncodedRect]: ...


#: Encoding number -> factory, in the order of value: the server uses the first one the
#: client offered.
ENCODERS: dict[int, Callable[[], Encoder]] = {
    TightEncoder.code: TightEncoder,
    ZRLEEncoder.code: ZRLEEncoder,
    RawEncoder.code: RawEncoder,
}

__all__ = ["ENCODERS", "EncodeOptions", "EncodedRect", "Encoder", "Rect", "RectLike"]
