"""A persistent zlib stream whose parameters may change between rectangles.

Tight's four streams and ZRLE's one live as long as the connection: the client keeps one
inflater per stream and never expects a new zlib header. Python's zlib has no
deflateParams(), so a change of level or strategy goes on the way deflateParams() would:
after the previous rectangle's Z_SYNC_FLUSH (byte-aligned), a raw-deflate compressor
primed with the stream's last 32 KiB of input continues with new blocks, and the client's
inflater, window and all, carries on unaware. (Setting Tight's reset bits instead is legal
but breaks noVNC 1.7 and earlier; ZRLE has no reset at all.)

The compressor is Intel's ISA-L (the ``isal`` package, prebuilt wheels) when it is
installed (level 3 for ZRLE's small pieces, 2 for larger ones and for Tight's, 1 for
photo-like data: see ``SMALL``): its level 1 writes ordinary deflate, as small as zlib's
levels 1-2 or smaller on screen data, 4-12 times faster (a 1080p photo-like frame: 15 ms
instead of 175 ms; indexed Japanese text: 1.1 ms instead of 14 ms). Without it, Python's
zlib at the client's level (at least 1), and ``Z_HUFFMAN_ONLY`` for photo-like data,
where LZ77 finds almost no matches and Huffman coding alone keeps the ratio at half the
CPU.
"""

from __future__ import annotations

import zlib
from types import ModuleType

ISAL: ModuleType | None
try:
    from isal import isal_zlib

    ISAL = isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    ISAL = None

#: The zlib window: how much of a stream's input its continuation is primed with.
WINDOW = 1 << 15


#: ISA-L's level 3 for data up to this size (not photo-like), on streams that ask for
#: it (ZRLE's): a dialog's ZRLE tiles (24 KB) 7520 against 7805 bytes at level 2 and
#: 8206 at level 1, for 0.15 against 0.07 ms; past it level 2, as fast as level 1 on
#: screen data and a little smaller (a 1080p UI frame: the same bytes in 0.03 ms; level
#: 3 took 0.20 ms). Tight's palette indices and filtered pixels come out no smaller at
#: level 3 (recorded dialogs, text, a log and a web page: 1-3 % larger, 3-7 % slower).
SMALL = 64 * 1024


def _params(
    level: int, strategy: int, fast: bool, size: int = 0, photo: bool = False, small: int = SMALL
) -> tuple[int, int]:
    if fast:  # ISA-L's levels are 0-3
        if photo or strategy == zlib.Z_HUFFMAN_ONLY:
            return (1, zlib.Z_DEFAULT_STRATEGY)  # photo-like: LZ77 finds little
        return (3 if level >= 7 or size <= small else 2, zlib.Z_DEFAULT_STRATEGY)
    return (max(1, level), strategy)


class DeflateStream:
    """One zlib stream, flushed with Z_SYNC_FLUSH after every piece of data.

    ``fast=False`` forces Python's zlib (tests compare both); ``small``: pieces up to
    this size go at ISA-L's level 3 (``SMALL``; 0: never, unless the client asks for a
    level of 7 or more)."""

    def __init__(self, *, fast: bool = True, small: int = SMALL) -> None:
        self._small = small
        self._module: ModuleType = ISAL if fast and ISAL is not None else zlib
        self._fast = self._module is not zlib
        self._compressor: zlib._Compress | None = None
        self._params: tuple[int, int] = (-1, -1)
        self._history = b""  # the stream's last WINDOW bytes of input

    @property
    def backend(self) -> str:
        return "isal" if self._fast else "zlib"

    def compress(
        self,
        data: bytes,
        level: int,
        strategy: int = zlib.Z_DEFAULT_STRATEGY,
        *,
        photo: bool = False,
    ) -> bytes:
        """Compress ``data`` and sync-flush; the client inflates it on its own.
        ``photo``: many-coloured pixels (ISA-L's fastest level; zlib as asked)."""
        params = _params(level, strategy, self._fast, len(data), photo, self._small)
        mod = self._module
        if self._compressor is None:
            self._compressor = mod.compressobj(
                params[0], zlib.DEFLATED, zlib.MAX_WBITS, 8, params[1]
            )
        elif params != self._params:
            # Same stream, new parameters (see the module docstring): no header, no reset.
            primed = {"zdict": self._history} if self._history else {}
            self._compressor = mod.compressobj(
                params[0], zlib.DEFLATED, -zlib.MAX_WBITS, 8, params[1], **primed
            )
        self._params = params
        out: bytes = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if len(data) >= WINDOW:
            self._history = bytes(data[-WINDOW:])
        else:
            self._history = (self._history + data)[-WINDOW:]
        return out
