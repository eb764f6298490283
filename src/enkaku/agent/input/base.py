"""The input injection interface every platform backend implements.

Methods are blocking and cheap; the agent calls them from a worker thread.
"""

from __future__ import annotations

from typing import Protocol


class InputError(RuntimeError):
    """Input cannot be injected (no display, XTEST missing, display gone)."""


class InputInjector(Protocol):
    """Injects the technician's keyboard and pointer events into the local session."""

    def key(self, keysym: int, down: bool, scancode: int | None = None) -> None:
        """Press or release a key.

        ``keysym`` is the X11 keysym the viewer sent (RFC 6143 §7.5.4). ``scancode`` is
        the QEMU Extended Key Event's XT scancode when the viewer sent one: then the
        physical key is pressed regardless of the local keyboard layout.
        """
        ...

    def pointer(self, x: int, y: int, buttons: int) -> None:
        """Move the pointer and set the button state (RFB mask: bit 0 = left, 3/4 = wheel)."""
        ...

    def release_all(self) -> None:
        """Release every key and button this injector holds down (session end, pause)."""
        ...

    def close(self) -> None:
        """Release everything held down and the display connection."""
        ...
