"""A persistent zlib stream whose level and strategy may change between rectangles.

Tight's four streams and ZRLE's one live as long as the connection: the client keeps one
inflater per stream and never expects a new zlib header. Python's zlib has no
deflateParams(), so a change of level or strategy goes on the way deflateParams() would:
after the previous rectangle's Z_SYNC_FLUSH (byte-aligned), a raw-deflate compressor
primed with the stream's last 32 KiB of input continues with new blocks, and the client's
inflater, window and all, carries on unaware. (Setting Tight's reset bits instead is legal
but breaks noVNC 1.7 and earlier; ZRLE has no reset at all.)

``Z_HUFFMAN_ONLY`` is what photo-like data gets: for grainy pixels LZ77 finds almost no
matches, and Huffman coding alone keeps the same ratio at about half the CPU.
"""

from __future__ import annotations

import zlib

#: The zlib window: how much of a stream's input its continuation is primed with.
WINDOW = 1 << 15


class DeflateStream:
    """One zlib stream, flushed with Z_SYNC_FLUSH after every piece of data."""

    def __init__(self) -> None:
        self._compressor: zlib._Compress | None = None
        self._params: tuple[int, int] = (-1, -1)
        self._history = b""  # the stream's last WINDOW bytes of input

    @property
    def started(self) -> bool:
        return self._compressor is not None

    def compress(self, data: bytes, level: int, strategy: int = zlib.Z_DEFAULT_STRATEGY) -> bytes:
        """Compress ``data`` and sync-flush; the client inflates it on its own."""
        params = (level, strategy)
        if self._compressor is None:
            self._compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, strategy)
        elif params != self._params:
            # Same stream, new parameters (see the module docstring): no header, no reset.
            self._compressor = zlib.compressobj(
                level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, strategy, zdict=self._history
            )
        self._params = params
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if len(data) >= WINDOW:
            self._history = bytes(data[-WINDOW:])
        else:
            self._history = (self._history + data)[-WINDOW:]
        return out
