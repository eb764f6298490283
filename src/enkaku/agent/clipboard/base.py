"""The clipboard interface every platform backend implements.

``read_text`` and ``set_text`` block (a round trip to the window system); the agent calls
them from a worker thread. Change callbacks may run on any thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)

#: Longest clipboard text moved either way, in UTF-8 bytes (the RFB limit too).
MAX_TEXT_BYTES = 1 << 20
#: How long one transfer through a pipe (a paste, a read) may take.
TRANSFER_TIMEOUT = 5.0
#: The Wayland backends' MIME types: what they offer when they set the clipboard (all
#: served as UTF-8), and the text types they read, the first one offered winning.
UTF8 = "text/plain;charset=utf-8"
OFFERED = (UTF8, "UTF8_STRING", "text/plain", "STRING", "TEXT")
READABLE = OFFERED


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


class Watchers:
    """The callbacks of ``Clipboard.watch``: added and removed from any thread, called
    on the backend's event thread; a callback that fails is logged, the others run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []

    def add(self, on_change: Callable[[], object]) -> Callable[[], None]:
        """Watch; returns the unsubscriber."""
        with self._lock:
            self._callbacks.append(on_change)

        def unwatch() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(on_change)

        return unwatch

    def clear(self) -> None:
        with self._lock:
            self._callbacks.clear()

    def notify(self) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for on_change in callbacks:
            try:
                on_change()
            except Exception:
                logger.exception("clipboard watcher")


def read_pipe(fd: int, max_bytes: int, timeout: float = TRANSFER_TIMEOUT) -> bytes | None:
    """What the other end writes into ``fd`` until it closes it; None when that takes
    longer than ``timeout`` or exceeds ``max_bytes``. Does not close ``fd``."""
    data = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            return None  # the owner did not finish in time
        chunk = os.read(fd, 65536)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > max_bytes:
            return None


def write_pipe(fd: int, data: bytes, timeout: float = TRANSFER_TIMEOUT) -> bool:
    """Write ``data`` into ``fd`` (made non-blocking) within ``timeout``; whether all of
    it went. Does not close ``fd``."""
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while view:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            return False
        view = view[os.write(fd, view) :]
    return True
