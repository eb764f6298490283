"""The screen capture interface every platform backend implements.

All methods are blocking; the agent calls them from a worker thread, never from the
event loop.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from enkaku.protocol.geometry import Rect

if TYPE_CHECKING:
    from .monitors import Monitor

__all__ = ["CaptureError", "CursorImage", "Rect", "ScreenCapture", "UnsupportedScreen"]


class CaptureError(RuntimeError):
    """The screen cannot be captured (no display, extension missing, display gone)."""


class UnsupportedScreen(CaptureError):
    """The screen is there, but its pixels come in a form the agent cannot show (the
    message says how to set the display up so that it can)."""


@dataclass(frozen=True, slots=True)
class CursorImage:
    """The pointer's shape: BGRA pixels (straight alpha) and its hotspot."""

    pixels: npt.NDArray[np.uint8]  # (h, w, 4) B, G, R, A
    hotspot_x: int
    hotspot_y: int
    serial: int  # changes whenever the shape changes


class ScreenCapture(Protocol):
    """A source of screen frames.

    Frames are ``numpy`` arrays of shape ``(height, width, 4)``, dtype ``uint8``, in
    B, G, R, X byte order (32-bit little-endian 0x00RRGGBB, the X server's native
    TrueColor layout). The X byte is unspecified.
    """

    @property
    def size(self) -> tuple[int, int]:
        """Current (width, height) of the screen."""
        ...

    def grab(self) -> npt.NDArray[np.uint8]:
        """Capture the whole screen now; the caller owns the returned array."""
        ...

    def changed_regions(self) -> list[Rect] | None:
        """Regions that changed since the previous call; None when unknown (assume all)."""
        ...

    def cursor(self) -> CursorImage | None:
        """The current pointer shape, or None when the backend cannot tell."""
        ...

    def close(self) -> None:
        """Release the display connection and shared memory."""
        ...


class EventCapture(ScreenCapture, Protocol):
    """A capture that reports changes as events (optional; ``RFBService`` checks for
    ``fileno`` and ``grab_rects`` and otherwise polls ``changed_regions`` ``max_fps``
    times a second).

    The service watches ``fileno()`` with its event loop and polls only when it turned
    readable or ``events_queued()`` says events were read meanwhile; then it calls
    ``changed_regions()`` and captures just those rectangles with ``grab_rects()``.
    ``take_moves()`` (optional too) names windows moved since the last call, and
    ``recently_shown()`` (optional) the rectangles of windows mapped or unmapped, where the
    damage holds new pixels and no copy is searched.
    """

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when the screen (or the cursor) changed."""
        ...

    def events_queued(self) -> bool:
        """Changes already read from ``fileno()`` by another call and not yet polled."""
        ...

    def grab_rects(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        """The current pixels of each rectangle as (h, w, 4) BGRX copies; None when the
        screen size changed (the service then calls ``grab()``)."""
        ...

    def take_moves(self) -> list[tuple[Rect, Rect]]:
        """Windows moved at the same size since the last call: (was, is) rectangles."""
        ...


def scale_nearest(image: npt.NDArray[np.uint8], w: int, h: int) -> npt.NDArray[np.uint8]:
    """``image`` at w x h, nearest neighbour (a monitor's or a scaled output's frame in
    device pixels to its logical size, when they differ); ``image`` itself when equal."""
    ih, iw = image.shape[:2]
    if (ih, iw) == (h, w):
        return image
    rows = (np.arange(h) * ih // max(h, 1)).clip(0, ih - 1)
    cols = (np.arange(w) * iw // max(w, 1)).clip(0, iw - 1)
    return image[rows][:, cols]


class WorkerFrameCapture:
    """What the Wayland captures share: a worker thread keeps the current frame
    (``_frame``, BGRX) under ``_lock`` and signals a change by writing one byte to a pipe
    (at most one unread byte), whose read end is ``fileno()``. Subclasses set
    ``_lock``, ``_frame``, ``_error``, ``_closed``, ``_signalled`` and the pipe's ends."""

    _lock: threading.Lock
    _frame: npt.NDArray[np.uint8] | None
    _error: str | None
    _closed: bool
    _signalled: bool
    _notify_r: int
    _notify_w: int
    #: Changed rectangles since the last ``changed_regions()``; the frame's size changed.
    _pending: list[Rect]
    _resized: bool
    #: The monitors in desktop coordinates (empty: one screen), and whether they changed.
    _monitors: list[Monitor]
    _monitors_changed: bool

    def _signal(self) -> None:
        with self._lock:
            if self._signalled:
                return
            self._signalled = True
        with contextlib.suppress(OSError):
            os.write(self._notify_w, b"\0")

    def _current(self) -> npt.NDArray[np.uint8]:
        if self._closed:
            raise CaptureError("capture closed")
        if self._error is not None:
            raise CaptureError(self._error)
        assert self._frame is not None
        return self._frame

    @property
    def size(self) -> tuple[int, int]:
        with self._lock:
            h, w = self._current().shape[:2]
            return w, h

    def grab(self) -> npt.NDArray[np.uint8]:
        with self._lock:
            return self._current().copy()

    def fileno(self) -> int:
        """A descriptor that turns readable when the screen changed (or the capture
        failed); ``changed_regions()`` resets it."""
        return self._notify_r

    def events_queued(self) -> bool:
        """Always False: every change after ``changed_regions()`` makes ``fileno()``
        readable again."""
        return False

    def changed_regions(self) -> list[Rect] | None:
        """Rectangles that changed since the previous call; None at first and after a
        size change."""
        with self._lock:
            self._current()
            try:
                while os.read(self._notify_r, 64):
                    pass
            except BlockingIOError:
                pass
            self._signalled = False
            regions, self._pending = self._pending, []
            if self._resized:
                self._resized = False
                return None
            return regions

    def grab_rects(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        """Copies of each rectangle of the latest frame; None when the size changed."""
        with self._lock:
            frame = self._current()
            if self._resized:
                return None
            h, w = frame.shape[:2]
            bounds = Rect(0, 0, w, h)
            out = []
            for r in rects:
                if bounds.intersect(r) != r:
                    raise ValueError(f"{r} is not inside the {w}x{h} screen")
                out.append(frame[r.y : r.y + r.h, r.x : r.x + r.w].copy())
            return out

    def monitors(self) -> list[Monitor]:
        """With several monitors (wlroots outputs, mutter's monitors): each, named by
        its connector, in desktop coordinates (their bounding box, its top-left corner
        at 0, 0), numbered as ``monitors.order()`` does. Empty with one: the screen is
        that monitor."""
        with self._lock:
            self._current()
            return list(self._monitors)

    def screen_size(self) -> tuple[int, int]:
        """The desktop's (width, height): the monitors' bounding box."""
        return self.size

    def monitors_changed(self) -> bool:
        """Whether a monitor was added, removed, moved or resized since the last call
        (no I/O: the worker threads follow them)."""
        with self._lock:
            changed, self._monitors_changed = self._monitors_changed, False
            return changed

    def take_moves(self) -> list[tuple[Rect, Rect]]:
        """Always empty: neither screencopy nor a screen cast says where windows moved."""
        return []
