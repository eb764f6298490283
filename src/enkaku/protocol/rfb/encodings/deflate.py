"""A persistent zlib stream whose parameters may change between rectangles.

Tight's four streams and ZRLE's one live as long as the connection: the client keeps one
inflater per stream and never expects a new zlib header. Python's zlib has no
deflateParams(), so a change of level or strategy goes on the way deflateParams() would:
after the previous rectangle's Z_SYNC_FLUSH (byte-aligned), a raw-deflate compressor
primed with the stream's last 32 KiB of input continues with new blocks, and the client's
inflater, window and all, carries on unaware. (Setting Tight's reset bits instead is legal
but breaks noVNC 1.7 and earlier; ZRLE has no reset at all.)

The compressor is Intel's ISA-L (the ``isal`` package, prebuilt wheels) when it is
installed (level 2 for Tight's pieces and ZRLE's large ones, 1 for photo-like data): its
level 1 writes ordinary deflate, as small as zlib's levels 1-2 or smaller on screen data,
4-12 times faster (a 1080p photo-like frame: 15 ms instead of 175 ms; indexed Japanese
text: 1.1 ms instead of 14 ms). ZRLE's small pieces (a dialog, a line of text: see
``SMALL``) go through Python's zlib at ``SMALL_LEVEL``, whose lazy matching finds what
ISA-L's greedy levels miss, on the same stream (a change of compressor is a change of
parameters like any other). Without ISA-L, Python's zlib at the client's level (at least
1), and ``Z_HUFFMAN_ONLY`` for photo-like data, where LZ77 finds almost no matches and
Huffman coding alone keeps the ratio at half the CPU.
"""

from __future__ import annotations

import zlib
from collections import deque
from types import ModuleType

ISAL: ModuleType | None
try:
    from isal import isal_zlib

    ISAL = isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    ISAL = None

#: The zlib window: how much of a stream's input its continuation is primed with.
WINDOW = 1 << 15


#: Python's zlib at ``SMALL_LEVEL`` for data up to this size (not photo-like), on streams that ask
#: for it (ZRLE's); past it ISA-L's level 2, as fast as its level 1 on screen data and a little
#: smaller (a 1080p UI frame: the same bytes in 0.03 ms; level 3 took 0.20 ms). Measured on the ZRLE
#: pieces of recorded dialogs (24 KB each, one an update) on one stream, bytes and ms a piece: ISA-L
#: level 2 7953 / 0.10, level 3 7653 / 0.23; zlib level 4 6908 / 0.43, level 5 6744 / 0.60, level 6
#: 6697 / 0.77 (zlib-ng's levels 4-5, 7118-7037 / 0.31-0.33: a little faster, 3-4 % larger, one more
#: compiled wheel). A Japanese log's 9 KB pieces: ISA-L 3 3421, zlib 4 3207 bytes. Tight's palette
#: indices and filtered pixels come out no smaller at ISA-L's level 3 (1-3 % larger, 3-7 % slower),
#: so Tight asks for none (``small=0``): its bytes on these screens are already a fraction of the
#: peers'.
SMALL = 64 * 1024
#: zlib's level for ZRLE's small pieces. Level 5 saved 2 % more bytes for 0.2 ms more a
#: dialog offline; in a 30 s dialogs A/B (2026-11-30 12:52 UTC, ZRLE): ISA-L's level 3
#: 60 KB/s, 4.6 % CPU; level 4 54 KB/s, 5.2 %; level 5 53 KB/s, 5.1 % (x11vnc 57 KB/s,
#: 5.6 %; x0vncserver 91 KB/s, 5.4 %).
SMALL_LEVEL = 4


def _params(
    level: int, strategy: int, fast: bool, size: int = 0, photo: bool = False, small: int = SMALL
) -> tuple[bool, int, int]:
    """(ISA-L?, level, strategy) for one piece of data."""
    if fast:  # ISA-L's levels are 0-3
        if photo or strategy == zlib.Z_HUFFMAN_ONLY:
            return (True, 1, zlib.Z_DEFAULT_STRATEGY)  # photo-like: LZ77 finds little
        if size <= small:
            return (False, max(SMALL_LEVEL, min(level, 9)), zlib.Z_DEFAULT_STRATEGY)
        return (True, 3 if level >= 7 else 2, zlib.Z_DEFAULT_STRATEGY)
    return (False, max(1, level), strategy)


class DeflateStream:
    """One zlib stream, flushed with Z_SYNC_FLUSH after every piece of data.

    ``fast=False`` forces Python's zlib (tests compare both); ``small``: pieces up to
    this size (not photo-like) go through Python's zlib at ``SMALL_LEVEL`` or the
    client's level if higher (``SMALL``; 0: never)."""

    def __init__(self, *, fast: bool = True, small: int = SMALL) -> None:
        self._small = small
        self._fast = fast and ISAL is not None
        self._compressor: zlib._Compress | None = None
        self._params: tuple[bool, int, int] = (False, -1, -1)
        # The stream's recent input, oldest first, at least its last WINDOW bytes when
        # there are that many: joined only when a new compressor is primed with them
        # (``history``). Joining at every piece copied 32 KiB twice for each of Tight's
        # small palette rectangles.
        self._recent: deque[bytes] = deque()
        self._recent_size = 0

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
        isal, lvl, strat = params
        mod: ModuleType = ISAL if isal and ISAL is not None else zlib
        if self._compressor is None:
            self._compressor = mod.compressobj(lvl, zlib.DEFLATED, zlib.MAX_WBITS, 8, strat)
        elif params != self._params:
            # Same stream, new parameters or compressor (see the module docstring): no
            # header, no reset.
            history = self.history()
            primed = {"zdict": history} if history else {}
            self._compressor = mod.compressobj(
                lvl, zlib.DEFLATED, -zlib.MAX_WBITS, 8, strat, **primed
            )
        self._params = params
        out: bytes = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        self._remember(data)
        return out

    def history(self) -> bytes:
        """The stream's last ``WINDOW`` bytes of input (fewer at its start)."""
        if len(self._recent) > 1:
            self._recent = deque([b"".join(self._recent)[-WINDOW:]])
            self._recent_size = len(self._recent[0])
        return self._recent[0] if self._recent else b""

    def _remember(self, data: bytes) -> None:
        if len(data) >= WINDOW:
            self._recent = deque([bytes(data[-WINDOW:])])
            self._recent_size = WINDOW
            return
        self._recent.append(bytes(data))  # a copy only if it is not bytes already
        self._recent_size += len(data)
        # Drop the oldest pieces the window no longer reaches.
        while self._recent_size - len(self._recent[0]) >= WINDOW:
            self._recent_size -= len(self._recent.popleft())
