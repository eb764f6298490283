"""Screen capture on wlroots compositors (sway, Hyprland, river, labwc, Wayfire).

A worker thread keeps one ``zwlr_screencopy_frame_v1`` outstanding with
``copy_with_damage``: the compositor answers only when something on the output
changed, with the damaged rectangles. Each answer updates a copy of the screen and
queues those rectangles; a pipe turns readable so the agent's event loop wakes
(``fileno()``), exactly like the X11 backend's DAMAGE events. An idle screen costs
nothing: no frames, no wake-ups.

The pointer is drawn into the frames (``overlay_cursor``): no Wayland protocol gives
a client the pointer's image, so it cannot go to the viewer as a cursor shape
(``cursor()`` returns None); in the picture the technician sees where the customer's
pointer is and what shape it has. A pointer move damages the output like any other
change, so it comes as a small damaged rectangle.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import mmap
import os
import select
import threading
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt
from pywayland.protocol.wayland import WlShm

from enkaku.agent.wayland.connection import WaylandConnection, WaylandUnavailable
from enkaku.agent.wayland.protocols import FRAME_FLAG_Y_INVERT, ZwlrScreencopyManagerV1

from .base import CaptureError, CursorImage, Rect, WorkerFrameCapture

__all__ = ["WlrootsCapture"]

_open: weakref.WeakSet[WlrootsCapture] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Before the interpreter tears down pywayland's objects in an arbitrary order (a
    # proxy freed after its display crashes the process).
    for capture in list(_open):
        capture.close()


logger = logging.getLogger(__name__)

# wl_shm formats: 0 and 1 are ARGB/XRGB8888, the others are DRM fourcc codes.
_BGRX_FORMATS = {0, 1}  # little-endian memory order B, G, R, X: ours as it is
_RGBX_FORMATS = {0x34324241, 0x34324258}  # ABGR8888, XBGR8888: R and B swapped
FIRST_FRAME_TIMEOUT = 10.0
# The pointer is composited into every frame (see the module doc): the compositor
# renders it in software while a frame is outstanding, even where it has a hardware
# cursor plane.
OVERLAY_CURSOR = 1
MAX_REGIONS = 64


class WlrootsCapture(WorkerFrameCapture):
    """``ScreenCapture`` through wlr-screencopy with damage (see the module doc)."""

    #: ``changed_regions()`` and ``grab_rects()`` never wait for the compositor (the
    #: worker thread keeps the frame): they take a lock and copy from memory, so a
    #: caller may run them on its event loop when the damage is small.
    nonblocking = True

    def __init__(self, display: str | None = None, output: str | None = None) -> None:
        try:
            self._conn = WaylandConnection(display)
        except WaylandUnavailable as exc:
            raise CaptureError(str(exc)) from exc
        try:
            if self._conn.version_of(ZwlrScreencopyManagerV1) < 2:
                raise CaptureError(
                    "the compositor does not offer zwlr_screencopy_manager_v1 version 2 or "
                    "later (not a wlroots compositor, or too old)"
                )
            self._manager = self._conn.bind(ZwlrScreencopyManagerV1, 3)
            self._shm = self._conn.bind(WlShm, 1)
            self._output = self._conn.output(output)
        except WaylandUnavailable as exc:
            self._conn.close()
            raise CaptureError(str(exc)) from exc
        self._v3 = self._conn.version_of(ZwlrScreencopyManagerV1) >= 3
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._frame: npt.NDArray[np.uint8] | None = None
        self._pending: list[Rect] = []
        self._resized = True  # the first changed_regions() says "unknown"
        self._signalled = False
        self._error: str | None = None
        self._closed = False
        self._cleanup_lock = threading.Lock()
        self._cleaned = False
        self._notify_r, self._notify_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Worker-thread state: the shm buffer and the frame being copied.
        self._buf_fd = -1
        self._buf_map: mmap.mmap | None = None
        self._pool: Any = None
        self._buffer: Any = None
        self._buf_spec: tuple[int, int, int, int] | None = None  # format, w, h, stride
        self._offered: tuple[int, int, int, int] | None = None
        self._flags = 0
        self._damage: list[Rect] = []
        self._wl_frame: Any = None
        #: Frames the compositor delivered (each one means the screen changed): tests.
        self.frames = 0
        self._thread = threading.Thread(target=self._run, name="wlr-screencopy", daemon=True)
        self._thread.start()
        _open.add(self)
        if not self._first.wait(FIRST_FRAME_TIMEOUT) or self._frame is None:
            error = self._error or "no frame from the compositor"
            self.close()
            raise CaptureError(f"cannot capture the screen: {error}")

    # -- worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        display = self._conn.display
        try:
            self._request_frame()
            fd = display.get_fd()
            while True:
                display.dispatch(block=False)
                display.flush()
                ready, _, _ = select.select([fd, self._stop_r], [], [])
                if self._stop_r in ready:
                    return
                display.read()
                display.dispatch(block=False)
                if self._error is not None:
                    return
        except Exception as exc:  # the compositor went away or sent a protocol error
            self._error = self._error or f"Wayland connection lost ({exc})"
            logger.info("wlroots capture stopped: %s", self._error)
        finally:
            self._first.set()
            if self._closed:  # close() may have given up waiting for this thread
                self._cleanup()
            else:
                self._signal()

    def _request_frame(self) -> None:
        frame = self._manager.capture_output(OVERLAY_CURSOR, self._output.proxy)
        self._offered = None
        self._flags = 0
        self._damage = []
        frame.dispatcher["buffer"] = self._on_buffer
        frame.dispatcher["flags"] = self._on_flags
        frame.dispatcher["buffer_done"] = self._on_buffer_done
        frame.dispatcher["damage"] = self._on_damage
        frame.dispatcher["ready"] = self._on_ready
        frame.dispatcher["failed"] = self._on_failed
        self._wl_frame = frame

    def _on_buffer(self, _f: object, fmt: int, width: int, height: int, stride: int) -> None:
        if self._offered is None and fmt in _BGRX_FORMATS | _RGBX_FORMATS:
            self._offered = (fmt, width, height, stride)
        if not self._v3:
            self._on_buffer_done(_f)

    def _on_flags(self, _f: object, flags: int) -> None:
        self._flags = flags

    def _on_buffer_done(self, _f: object) -> None:
        if self._offered is None:
            self._error = "the compositor offers no 32-bit shared-memory frame format"
            return
        if self._offered != self._buf_spec:
            self._make_buffer(*self._offered)
        assert self._wl_frame is not None
        _fmt, width, height, _stride = self._offered
        frame = self._frame
        if frame is None or frame.shape[:2] != (height, width):
            # First frame, or the output changed size: now, not at the next damage
            # (the resize's own damage may have gone into a frame of the old size).
            self._wl_frame.copy(self._buffer)
        else:
            self._wl_frame.copy_with_damage(self._buffer)

    def _make_buffer(self, fmt: int, width: int, height: int, stride: int) -> None:
        self._free_buffer()
        size = stride * height
        self._buf_fd = os.memfd_create("enkaku-screencopy", os.MFD_CLOEXEC)
        os.ftruncate(self._buf_fd, size)
        self._buf_map = mmap.mmap(self._buf_fd, size)
        self._pool = self._shm.create_pool(self._buf_fd, size)
        self._buffer = self._pool.create_buffer(0, width, height, stride, fmt)
        self._buf_spec = (fmt, width, height, stride)

    def _free_buffer(self) -> None:
        if self._buffer is not None:
            self._buffer.destroy()
            self._buffer = None
        if self._pool is not None:
            self._pool.destroy()
            self._pool = None
        if self._buf_map is not None:
            self._buf_map.close()
            self._buf_map = None
        if self._buf_fd >= 0:
            os.close(self._buf_fd)
            self._buf_fd = -1
        self._buf_spec = None

    def _on_damage(self, _f: object, x: int, y: int, width: int, height: int) -> None:
        self._damage.append(Rect(x, y, width, height))

    def _on_failed(self, _f: object) -> None:
        # An output change (mode, removal) fails the frame in progress: ask again once
        # with a fresh buffer; a second failure in a row ends the capture.
        self._destroy_frame()
        if self._buf_spec is None:
            self._error = "the compositor failed to copy the screen"
            return
        self._free_buffer()
        self._request_frame()

    def _on_ready(self, _f: object, _hi: int, _lo: int, _ns: int) -> None:
        assert self._buf_map is not None and self._buf_spec is not None
        fmt, width, height, stride = self._buf_spec
        raw = np.frombuffer(self._buf_map, dtype=np.uint8).reshape(height, stride)
        image = raw[:, : width * 4].reshape(height, width, 4)
        if self._flags & FRAME_FLAG_Y_INVERT:
            image = image[::-1]
        bounds = Rect(0, 0, width, height)
        with self._lock:
            frame = self._frame
            if frame is None or frame.shape[:2] != (height, width):
                self._frame = self._convert(image, fmt)
                self._pending = []
                self._resized = True
            else:
                swap = fmt in _RGBX_FORMATS
                for r in self._damage:
                    c = bounds.intersect(r)
                    if c is None:
                        continue
                    part = image[c.y : c.y + c.h, c.x : c.x + c.w]
                    # Straight into the kept frame: one copy (the buffer is read only
                    # here, before the next frame is asked for).
                    frame[c.y : c.y + c.h, c.x : c.x + c.w] = (
                        part[..., [2, 1, 0, 3]] if swap else part
                    )
                    self._pending.append(c)
                if len(self._pending) > MAX_REGIONS:
                    box = self._pending[0]
                    for r in self._pending[1:]:
                        box = box.union(r)
                    self._pending = [box]
            self.frames += 1
        self._signal()
        self._first.set()
        self._destroy_frame()
        self._request_frame()

    @staticmethod
    def _convert(image: npt.NDArray[np.uint8], fmt: int) -> npt.NDArray[np.uint8]:
        if fmt in _RGBX_FORMATS:
            return np.ascontiguousarray(image[..., [2, 1, 0, 3]])
        return np.array(image, copy=True)

    def _destroy_frame(self) -> None:
        if self._wl_frame is not None:
            self._wl_frame.destroy()
            self._wl_frame = None

    # -- ScreenCapture ---------------------------------------------------------------

    def changed_regions(self) -> list[Rect] | None:
        """Rectangles the compositor reported changed since the previous call; None at
        first and after a size change."""
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

    def take_moves(self) -> list[tuple[Rect, Rect]]:
        """Always empty: screencopy does not say where windows moved."""
        return []

    def cursor(self) -> CursorImage | None:
        """Always None: the pointer is in the picture, its image is not available."""
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"\0")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        if not self._thread.is_alive():
            self._cleanup()
        # else the worker frees everything when it ends (it sees _closed): the Wayland
        # objects are its own, and a late write to the change pipe must not land on a
        # descriptor closed here and reused meanwhile.

    def _cleanup(self) -> None:
        """Free the Wayland objects and the pipes, once (``close()`` or the worker's end,
        whichever comes last)."""
        with self._cleanup_lock:
            if self._cleaned:
                return
            self._cleaned = True
        try:
            self._destroy_frame()
            self._free_buffer()
            self._conn.close()
        except Exception:  # the connection may already be broken
            logger.debug("wlroots capture close", exc_info=True)
        for fd in (self._notify_r, self._notify_w, self._stop_r, self._stop_w):
            os.close(fd)

    def __enter__(self) -> WlrootsCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
