"""X screens whose pixels are not 32-bit B, G, R, X: their images widened to that form.

Everything after the capture works on ``(h, w, 4)`` B, G, R, X frames with 8 bits a
channel. Most X servers today draw at depth 24 in 32-bit pixels, which already are that
(the capture keeps them as they come). Others still meet in the field: depth 16 (R5 G6
B5) and 15 (R5 G5 B5) on old graphics, virtual machines' basic adapters and thin
clients; depth 30 (10 bits a channel) on colour-grading and medical workstations; 24-bit
packed pixels on some old servers. Their TrueColor images are widened here, channel by
channel, to 8 bits: a value ``v`` of ``max`` becomes ``v * 255 // max``, the same colours
x11vnc sends for them, and a viewer that asks for 16-bit pixels gets the screen's own
values back exactly (the RFB layer narrows by rounding). Depth 30 loses its two low bits
a channel (RFB viewers show 8).

Colour-mapped screens (8 bits a pixel, PseudoColor, StaticColor or grey: old
workstations, some embedded and industrial X servers, X started with ``-depth 8``)
are looked up in the screen's colour map, read by the capture (:func:`palette`): a
16-bit colour map channel ``c`` becomes ``c >> 8``, the colours x11vnc sends.
DirectColor screens (each channel of a pixel an index into that channel's own map: a
server started with a DirectColor default visual, such as ``Xvfb -cc 5``, where
programs set gamma ramps or colour correction through the maps) are looked up channel
by channel in those maps (:func:`channel_maps`), the same ``c >> 8``. What else the
agent cannot show (fewer than 8 bits a pixel, odd masks) is refused with a message
that says how to start the X server at depth 24.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from .base import UnsupportedScreen

__all__ = ["DIRECT_ENTRIES", "ScreenFormat", "channel_maps", "palette"]

LSB_FIRST = 0  # X's ImageByteOrder values
MSB_FIRST = 1

_STANDARD_MASKS = (0xFF0000, 0xFF00, 0xFF)
DEPTH_24 = (
    "start the X server at depth 24 (for Xorg, DefaultDepth 24 in xorg.conf; for Xvfb, "
    "-screen 0 WIDTHxHEIGHTx24; for Xvnc or another VNC server, -depth 24)"
)
_known: dict[tuple[int, int, int, int, int, int], ScreenFormat] = {}
#: A DirectColor channel's map entries at most (10-bit channels, depth 30).
DIRECT_ENTRIES = 1024


def _channel(mask: int) -> tuple[int, int]:
    """(shift, max) of a contiguous channel mask."""
    shift = (mask & -mask).bit_length() - 1
    maximum = mask >> shift
    if maximum & (maximum + 1):
        raise ValueError(f"mask {mask:#x} is not one run of bits")
    return shift, maximum


@lru_cache(maxsize=16)
def _widening(maximum: int) -> npt.NDArray[np.uint8]:
    """Each channel value 0..maximum as 8 bits (``v * 255 // maximum``)."""
    return (np.arange(maximum + 1, dtype=np.uint32) * 255 // maximum).astype(np.uint8)


@dataclass(frozen=True)
class ScreenFormat:
    """How an X image lays out its pixels (the fields of ``XImage`` that matter)."""

    depth: int
    bits_per_pixel: int
    byte_order: int
    red_mask: int
    green_mask: int
    blue_mask: int

    @classmethod
    def of(cls, img: Any) -> ScreenFormat:
        """The format of an ``XImage`` (any object with its fields), one object per
        format (its widening table is built once); CaptureError with what to do when
        the agent cannot show such a screen."""
        key = (
            img.depth, img.bits_per_pixel, img.byte_order,
            img.red_mask, img.green_mask, img.blue_mask,
        )  # fmt: skip
        fmt = _known.get(key)
        if fmt is None:
            fmt = cls(*key)
            fmt.check()
            _known[key] = fmt
        return fmt

    def check(self) -> None:
        masks = (self.red_mask, self.green_mask, self.blue_mask)
        if self.indexed:
            if self.bits_per_pixel != 8:
                raise UnsupportedScreen(
                    f"the X screen uses colour-mapped {self.depth}-bit colour in "
                    f"{self.bits_per_pixel}-bit pixels, which enkaku cannot show: "
                    f"{DEPTH_24}"
                )
            return
        if not all(masks):
            raise UnsupportedScreen(
                f"unsupported X screen format: depth {self.depth}, masks "
                f"{self.red_mask:#x}/{self.green_mask:#x}/{self.blue_mask:#x}: {DEPTH_24}"
            )
        problem = ""
        if self.bits_per_pixel not in (16, 24, 32):
            problem = f"{self.bits_per_pixel} bits a pixel"
        elif any(m >> self.bits_per_pixel for m in masks) or (
            masks[0] & masks[1] or masks[0] & masks[2] or masks[1] & masks[2]
        ):
            problem = "channel masks that do not fit the pixel"
        else:
            try:
                for m in masks:
                    _channel(m)
            except ValueError as exc:
                problem = str(exc)
        if problem:
            raise UnsupportedScreen(
                f"unsupported X screen format: depth {self.depth}, {self.bits_per_pixel} "
                f"bpp, masks {self.red_mask:#x}/{self.green_mask:#x}/{self.blue_mask:#x} "
                f"({problem}); enkaku shows TrueColor screens of depth 15, 16, 24 and 30 "
                f"and colour-mapped screens of 8 bits a pixel: {DEPTH_24}"
            )

    @property
    def indexed(self) -> bool:
        """Pixels are colour map indices (no channel masks), not colours."""
        return not (self.red_mask or self.green_mask or self.blue_mask)

    @property
    def native(self) -> bool:
        """32-bit pixels of 8-bit channels: the image already is B, G, R, X (or, from
        an MSBFirst server, X, R, G, B), nothing to widen."""
        return self.bits_per_pixel == 32 and (
            self.red_mask, self.green_mask, self.blue_mask,
        ) == _STANDARD_MASKS  # fmt: skip

    @property
    def viewable(self) -> bool:
        """The image's own memory can serve as a B, G, R, X frame (no copy)."""
        return self.native and self.byte_order == LSB_FIRST

    def bytes_per_line(self, width: int, pad: int = 32) -> int:
        """A row of ``width`` pixels in a ZPixmap padded to ``pad`` bits, as the server
        writes it (the image's ``bitmap_pad``: the server's scanline pad, 32 on every
        X server in use)."""
        pad = pad if pad in (8, 16, 32) else 32
        return (width * self.bits_per_pixel + pad - 1) // pad * pad // 8

    def to_bgrx(
        self,
        rows: npt.NDArray[np.uint8],
        width: int,
        colours: npt.NDArray[np.uint32] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """An ``(h, stride)`` image's pixels as a new C-contiguous ``(h, width, 4)``
        B, G, R, X array (X zero when widened or looked up, as the server's when native).
        ``colours``: the screen's colour map as :func:`palette` makes it, for an
        indexed format (required there); for a format with channel masks, a DirectColor
        screen's maps as :func:`channel_maps` makes them (None: TrueColor, each channel
        value its own intensity)."""
        h = rows.shape[0]
        if self.indexed:
            if colours is None:
                raise ValueError("a colour-mapped image needs the screen's colour map")
            return colours.take(rows[:, :width]).view(np.uint8).reshape(h, width, 4)
        if colours is not None:
            return self._looked_up(rows, width, colours)
        if self.native:
            frame = rows[:, : width * 4].reshape(h, width, 4)
            if self.byte_order != LSB_FIRST:
                frame = frame[:, :, ::-1]  # X, R, G, B in memory
            return np.array(frame, dtype=np.uint8, copy=True, order="C")
        if self.bits_per_pixel == 16:
            order = ">" if self.byte_order == MSB_FIRST else "<"
            pixels = rows[:, : width * 2].view(order + "u2")
            words = self._table16.take(pixels)
            return words.view(np.uint8).reshape(h, width, 4)
        return self._by_channel(rows, width, [_widening(_channel(m)[1]) for m in self.masks])

    def _values(self, rows: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint32]:
        """An image's pixel values as ``(h, width)`` 32-bit integers."""
        order = ">" if self.byte_order == MSB_FIRST else "<"
        if self.bits_per_pixel == 16:
            return rows[:, : width * 2].view(order + "u2").astype(np.uint32)
        if self.bits_per_pixel == 24:
            h = rows.shape[0]
            packed = rows[:, : width * 3].reshape(h, width, 3).astype(np.uint32)
            if self.byte_order == MSB_FIRST:
                packed = packed[:, :, ::-1]
            values = packed[:, :, 0] | packed[:, :, 1] << 8 | packed[:, :, 2] << 16
            return values.astype(np.uint32, copy=False)
        return rows[:, : width * 4].view(order + "u4").astype(np.uint32)

    def _looked_up(
        self, rows: npt.NDArray[np.uint8], width: int, maps: npt.NDArray[np.uint32]
    ) -> npt.NDArray[np.uint8]:
        """A DirectColor image: each channel value looked up in its channel's map."""
        tables = [table.astype(np.uint8) for table in maps]
        if self.native:  # 8-bit channels in bytes of their own: looked up byte by byte
            out = np.zeros((rows.shape[0], width, 4), dtype=np.uint8)
            pixels = rows[:, : width * 4].reshape(rows.shape[0], width, 4)
            if self.byte_order != LSB_FIRST:
                pixels = pixels[:, :, ::-1]
            for index, table in zip((2, 1, 0), tables, strict=True):
                out[:, :, index] = table.take(pixels[:, :, index])
            return out
        return self._by_channel(rows, width, tables)

    def _by_channel(
        self, rows: npt.NDArray[np.uint8], width: int, tables: list[npt.NDArray[np.uint8]]
    ) -> npt.NDArray[np.uint8]:
        """Each channel value (red, green, blue) through its table, as B, G, R, X."""
        values = self._values(rows, width)
        out = np.zeros((rows.shape[0], width, 4), dtype=np.uint8)
        for index, mask, table in zip((2, 1, 0), self.masks, tables, strict=True):
            shift, maximum = _channel(mask)
            channel = (values >> np.uint32(shift)) & np.uint32(maximum)
            out[:, :, index] = table.take(channel)
        return out

    @property
    def masks(self) -> tuple[int, int, int]:
        """The red, green and blue masks."""
        return self.red_mask, self.green_mask, self.blue_mask

    @cached_property
    def _table16(self) -> npt.NDArray[np.uint32]:
        """Every 16-bit pixel value as a little-endian B, G, R, X word (256 KiB)."""
        values = np.arange(1 << 16, dtype=np.uint32)
        words = np.zeros(1 << 16, dtype="<u4")
        for byte, mask in ((2, self.red_mask), (1, self.green_mask), (0, self.blue_mask)):
            shift, maximum = _channel(mask)
            widened = _widening(maximum).take((values >> shift) & maximum)
            words |= widened.astype(np.uint32) << np.uint32(8 * byte)
        return words


def channel_maps(
    red: npt.NDArray[np.integer[Any]],
    green: npt.NDArray[np.integer[Any]],
    blue: npt.NDArray[np.integer[Any]],
    entries: int,
) -> npt.NDArray[np.uint32]:
    """A DirectColor screen's three channel maps (the 16-bit red of entry i of the red
    map, and so on: one query entry asks for index i of each) as a ``(3, DIRECT_ENTRIES)``
    table of 8-bit intensities, ``c >> 8``; indices past ``entries`` read as 0."""
    maps = np.zeros((3, DIRECT_ENTRIES), np.uint32)
    for row, channel in enumerate((red, green, blue)):
        maps[row, :entries] = channel[:entries].astype(np.uint32) >> 8
    return maps


def palette(
    red: npt.NDArray[np.integer[Any]],
    green: npt.NDArray[np.integer[Any]],
    blue: npt.NDArray[np.integer[Any]],
) -> npt.NDArray[np.uint32]:
    """A colour map's 16-bit channels (one entry a pixel value, 256 of them) as the
    little-endian B, G, R, X word of each pixel value: ``c >> 8`` a channel."""
    words = (
        (red.astype(np.uint32) >> 8) << 16
        | (green.astype(np.uint32) >> 8) << 8
        | blue.astype(np.uint32) >> 8
    )
    return words.astype("<u4")
