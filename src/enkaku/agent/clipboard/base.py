"""The clipboard interface every platform backend implements.

``read_text`` and ``set_text`` block (a round trip to the window system); the agent calls
them from a worker thread. Change callbacks may run on any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

#: Longest clipboard text moved either way, in UTF-8 bytes (the RFB limit too).
MAX_TEXT_BYTES = 1 << 20


class ClipboardError(RuntimeError):
    """The clipboard cannot be used (no display, display gone)."""


class Clipboard(Protocol):
    """Text on the machine's clipboard."""

    def read_text(self) -> str | None:
        """The clipboard's text now; None when it holds no text, or too much."""
        ...

    def set_text(self, text: str) -> None:
        """Put ``text`` on the clipboard (this process serves it until someone else copies)."""
        ...

    def watch(self, on_change: Callable[[], object]) -> Callable[[], None]:
        """Call ``on_change`` whenever another program copies; returns the unsubscriber."""
        ...

    def close(self) -> None:
        """Stop serving text set here and release the connection."""
        ...
