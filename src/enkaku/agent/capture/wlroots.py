"""Screen capture on wlroots compositors (sway, Hyprland, river, labwc, Wayfire).

The screen is the whole desktop: every output (monitor) placed where the compositor's
layout puts it (``wl_output`` and xdg-output, see :mod:`enkaku.agent.wayland.outputs`),
in the outputs' bounding box with its top-left corner at 0, 0; black where no output
is. ``monitors()`` lists the outputs in those coordinates, so the RFB service offers
each as a screen and serves one alone through ``MonitorView``, as on X11. An output
added, removed, moved, resized, turned or scaled lays the desktop out again:
``monitors_changed()`` says so once, and the next ``changed_regions()`` returns None.
``WlrootsCapture(display, output=NAME)`` captures that output alone.

For each output a worker thread keeps one ``zwlr_screencopy_frame_v1`` outstanding
with ``copy_with_damage``: the compositor answers only when something on that output
changed, with the damaged rectangles. Each answer updates the desktop frame at the
output's place and queues those rectangles; a pipe turns readable so the agent's event
loop wakes (``fileno()``), exactly like the X11 backend's DAMAGE events. An idle
screen costs nothing: no frames, no wake-ups.

An output with a transform (rotated, flipped) or a scale other than 1 is shown upright
at its logical size (the size the layout and the pointer use): its buffer is turned,
and scaled to that size by nearest neighbour (a scale-2 output loses every other pixel
row and column; fractional scales likewise). The damaged rectangles are turned and
scaled with it, so only they are copied. Outputs that overlap (mirrored) show the last
one drawn.

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
from enkaku.agent.wayland.outputs import Output, OutputTracker, bounding_box
from enkaku.agent.wayland.protocols import FRAME_FLAG_Y_INVERT, ZwlrScreencopyManagerV1

from .base import CaptureError, CursorImage, Rect, WorkerFrameCapture
from .monitors import Monitor, order

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
OTHER_OUTPUTS_TIMEOUT = 2.0
# The pointer is composited into every frame (see the module doc): the compositor
# renders it in software while a frame is outstanding, even where it has a hardware
# cursor plane.
OVERLAY_CURSOR = 1
MAX_REGIONS = 64


class _Source:
    """One output's screencopy: its shm buffer, the frame in progress, and where its
    pixels go in the desktop frame (worker-thread state)."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.place: Rect | None = None  # in the desktop frame; None until laid out
        self.delivered = False  # its pixels are in the desktop frame at ``place``
        self.fails = 0  # failed frames in a row
        self.buf_fd = -1
        self.buf_map: mmap.mmap | None = None
        self.pool: Any = None
        self.buffer: Any = None
        self.buf_spec: tuple[int, int, int, int] | None = None  # format, w, h, stride
        self.offered: tuple[int, int, int, int] | None = None
        self.flags = 0
        self.damage: list[Rect] = []
        self.wl_frame: Any = None

    def free_buffer(self) -> None:
        if self.buffer is not None:
            self.buffer.destroy()
            self.buffer = None
        if self.pool is not None:
            self.pool.destroy()
            self.pool = None
        if self.buf_map is not None:
            self.buf_map.close()
            self.buf_map = None
        if self.buf_fd >= 0:
            os.close(self.buf_fd)
            self.buf_fd = -1
        self.buf_spec = None

    def destroy_frame(self) -> None:
        if self.wl_frame is not None:
            self.wl_frame.destroy()
            self.wl_frame = None


def _upright(image: npt.NDArray[np.uint8], transform: int) -> npt.NDArray[np.uint8]:
    """An output's buffer (as the compositor renders it for the output's panel) turned
    the way the desktop shows it: the inverse of ``wl_output.transform`` (checked
    against grim on sway for every transform)."""
    k = transform % 4
    if k:
        image = np.rot90(image, -k)
    if transform >= 4:  # flipped: a flip around the vertical axis
        image = image[:, ::-1]
    return image


def _turned(r: Rect, width: int, height: int, transform: int) -> Rect:
    """Where ``r`` of a width x height buffer is in ``_upright(buffer, transform)``."""
    x0, y0, x1, y1 = r.x, r.y, r.x + r.w, r.y + r.h
    k = transform % 4
    if k == 1:  # np.rot90(a, -1)[i, j] = a[height - 1 - j, i]
        out = Rect(height - y1, x0, r.h, r.w)
    elif k == 2:  # [i, j] = a[height - 1 - i, width - 1 - j]
        out = Rect(width - x1, height - y1, r.w, r.h)
    elif k == 3:  # np.rot90(a, 1)[i, j] = a[j, width - 1 - i]
        out = Rect(y0, width - x1, r.h, r.w)
    else:
        out = r
    if transform >= 4:  # then flipped around the vertical axis
        upright_width = height if k % 2 else width
        out = Rect(upright_width - out.x - out.w, out.y, out.w, out.h)
    return out


def _scaled(r: Rect, width: int, height: int, w: int, h: int) -> Rect | None:
    """The logical pixels (of a w x h output) that ``base.scale_nearest()`` samples from
    ``r`` of its width x height buffer, or a little more; None when none."""
    x0 = max(r.x * w // max(width, 1), 0)
    y0 = max(r.y * h // max(height, 1), 0)
    x1 = min(-(-(r.x + r.w) * w // max(width, 1)), w)
    y1 = min(-(-(r.y + r.h) * h // max(height, 1)), h)
    if x1 <= x0 or y1 <= y0:
        return None
    return Rect(x0, y0, x1 - x0, y1 - y0)


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
        self._layout_dirty = True
        try:
            if self._conn.version_of(ZwlrScreencopyManagerV1) < 2:
                raise CaptureError(
                    "the compositor does not offer zwlr_screencopy_manager_v1 version 2 or "
                    "later (not a wlroots compositor, or too old)"
                )
            self._manager = self._conn.bind(ZwlrScreencopyManagerV1, 3)
            self._shm = self._conn.bind(WlShm, 1)
            self._tracker = OutputTracker(self._conn, self._on_outputs, only=output)
            self._conn.display.roundtrip()  # wl_output's description
            self._conn.display.roundtrip()  # xdg-output's, and its done
            if not self._tracker.outputs():
                if output is None:
                    raise WaylandUnavailable("the compositor has no output (screen)")
                known = ", ".join(self._tracker.names())
                raise WaylandUnavailable(f"no output named {output!r} (outputs: {known})")
        except WaylandUnavailable as exc:
            self._conn.close()
            raise CaptureError(str(exc)) from exc
        except CaptureError:
            self._conn.close()
            raise
        self._v3 = self._conn.version_of(ZwlrScreencopyManagerV1) >= 3
        self._lock = threading.Lock()
        self._first = threading.Event()  # a first frame (or the worker's end)
        self._every = threading.Event()  # every output's first frame
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
        # Worker-thread state: one source per output, and the layout they are placed in.
        self._sources: dict[int, _Source] = {}
        self._layout: tuple[tuple[str, Rect], ...] = ()
        # Shared under the lock: the monitors (outputs) in desktop coordinates.
        self._monitors: list[Monitor] = []
        self._monitors_changed = False
        #: Frames the compositor delivered (each one means the screen changed): tests.
        self.frames = 0
        self._thread = threading.Thread(target=self._run, name="wlr-screencopy", daemon=True)
        self._thread.start()
        _open.add(self)
        if not self._first.wait(FIRST_FRAME_TIMEOUT) or self._error is not None:
            error = self._error or "no frame from the compositor"
            self.close()
            raise CaptureError(f"cannot capture the screen: {error}")
        # The other outputs' first frames, briefly: an output that never sends one (on
        # wlroots 0.15 a disabled output stays announced) stays black until it does.
        if not self._every.wait(OTHER_OUTPUTS_TIMEOUT):
            logger.info("wlroots capture: an output sent no frame yet; black until it does")

    # -- worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        display = self._conn.display
        try:
            self._relayout()
            fd = display.get_fd()
            while True:
                display.dispatch(block=False)
                self._relayout()
                display.flush()
                ready, _, _ = select.select([fd, self._stop_r], [], [])
                if self._stop_r in ready:
                    return
                display.read()
                display.dispatch(block=False)
                self._relayout()
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

    def _on_outputs(self) -> None:
        # Called while events are dispatched: laid out once they all are.
        self._layout_dirty = True

    def _relayout(self) -> None:
        """Follow the outputs: a source per output, each placed in the desktop frame
        (the outputs' bounding box, top-left at 0, 0)."""
        if not self._layout_dirty:
            return
        self._layout_dirty = False
        outputs = {out.global_name: out for out in self._tracker.outputs()}
        for key in [k for k in self._sources if k not in outputs]:
            src = self._sources.pop(key)
            src.destroy_frame()
            src.free_buffer()
        if not outputs:
            logger.info("wlroots capture: no output left; the last picture stays")
            return
        box = bounding_box([out.rect for out in outputs.values()])
        assert box is not None
        places = {
            key: Rect(out.rect.x - box.x, out.rect.y - box.y, out.rect.w, out.rect.h)
            for key, out in outputs.items()
        }
        layout = tuple(sorted((outputs[k].name, r) for k, r in places.items()))
        if layout == self._layout and all(k in self._sources for k in outputs):
            return
        self._layout = layout
        with self._lock:
            old = self._frame
            frame = np.zeros((box.h, box.w, 4), dtype=np.uint8)
            for key, place in places.items():
                if key not in self._sources:
                    self._sources[key] = _Source(outputs[key])
                src = self._sources[key]
                was = src.place
                if old is not None and was is not None and src.delivered and (
                    was.w, was.h,
                ) == (place.w, place.h):  # fmt: skip
                    frame[place.y : place.y + place.h, place.x : place.x + place.w] = old[
                        was.y : was.y + was.h, was.x : was.x + was.w
                    ]
                elif src.delivered or src.wl_frame is None:
                    # A fresh plain copy (not the damage since the last one).
                    src.delivered = False
                    src.fails = 0
                    src.destroy_frame()
                    self._request_frame(src)
                src.place = place
            self._frame = frame
            self._resized = True  # changed_regions() says "unknown": all of it is sent
            self._pending = []
            self._monitors = order(
                [Monitor(outputs[k].name, r) for k, r in places.items()], box.w, box.h
            )
            self._monitors_changed = True
        self._signal()

    def _request_frame(self, src: _Source) -> None:
        frame = self._manager.capture_output(OVERLAY_CURSOR, src.output.proxy)
        src.offered = None
        src.flags = 0
        src.damage = []
        frame.dispatcher["buffer"] = lambda _f, *a: self._on_buffer(src, *a)
        frame.dispatcher["flags"] = lambda _f, flags: setattr(src, "flags", flags)
        frame.dispatcher["buffer_done"] = lambda _f: self._on_buffer_done(src)
        frame.dispatcher["damage"] = lambda _f, *a: src.damage.append(Rect(*a))
        frame.dispatcher["ready"] = lambda _f, *_a: self._on_ready(src)
        frame.dispatcher["failed"] = lambda _f: self._on_failed(src)
        src.wl_frame = frame

    def _on_buffer(self, src: _Source, fmt: int, width: int, height: int, stride: int) -> None:
        if src.offered is None and fmt in _BGRX_FORMATS | _RGBX_FORMATS:
            src.offered = (fmt, width, height, stride)
        if not self._v3:
            self._on_buffer_done(src)

    def _on_buffer_done(self, src: _Source) -> None:
        if src.offered is None:
            self._error = "the compositor offers no 32-bit shared-memory frame format"
            return
        if src.offered != src.buf_spec:
            self._make_buffer(src, *src.offered)
            src.delivered = False
        assert src.wl_frame is not None
        if not src.delivered:
            # First frame, or the output changed size or place: now, not at the next
            # damage (the change's own damage may have gone into an earlier frame).
            src.wl_frame.copy(src.buffer)
        else:
            src.wl_frame.copy_with_damage(src.buffer)

    def _make_buffer(self, src: _Source, fmt: int, width: int, height: int, stride: int) -> None:
        src.free_buffer()
        size = stride * height
        src.buf_fd = os.memfd_create("enkaku-screencopy", os.MFD_CLOEXEC)
        os.ftruncate(src.buf_fd, size)
        src.buf_map = mmap.mmap(src.buf_fd, size)
        src.pool = self._shm.create_pool(src.buf_fd, size)
        src.buffer = src.pool.create_buffer(0, width, height, stride, fmt)
        src.buf_spec = (fmt, width, height, stride)

    def _on_failed(self, src: _Source) -> None:
        # An output change (mode, removal) fails the frame in progress: ask again with a
        # fresh buffer. The removal's global_remove follows (the source goes then); a
        # third failure in a row of an output still there ends the capture.
        src.destroy_frame()
        src.free_buffer()
        src.delivered = False
        src.fails += 1
        if src.fails >= 3:
            if not any(s.delivered for s in self._sources.values()):
                self._error = "the compositor failed to copy the screen"
            else:  # that output alone: left as it is until the layout changes
                logger.info("wlroots capture: an output fails to be copied; left as it is")
            return
        self._request_frame(src)

    def _on_ready(self, src: _Source) -> None:
        assert src.buf_map is not None and src.buf_spec is not None
        src.fails = 0
        fmt, width, height, stride = src.buf_spec
        raw = np.frombuffer(src.buf_map, dtype=np.uint8).reshape(height, stride)
        image = raw[:, : width * 4].reshape(height, width, 4)
        if src.flags & FRAME_FLAG_Y_INVERT:
            image = image[::-1]
        swap = fmt in _RGBX_FORMATS
        transform = src.output.transform
        with self._lock:
            frame, place = self._frame, src.place
            if frame is not None and place is not None:
                target = frame[place.y : place.y + place.h, place.x : place.x + place.w]
                if not src.delivered:
                    src.damage = [Rect(0, 0, width, height)]
                # A view: turned by strides, nothing copied.
                upright = _upright(image, transform) if transform else image
                uh, uw = upright.shape[:2]
                bounds = Rect(0, 0, uw, uh)
                for r in src.damage:
                    if transform:
                        r = _turned(r, width, height, transform)
                    if (uh, uw) == (place.h, place.w):
                        c = bounds.intersect(r)
                        if c is None:
                            continue
                        part = upright[c.y : c.y + c.h, c.x : c.x + c.w]
                    else:
                        # Scaled: the damaged logical pixels, sampled as scale_nearest() does.
                        c = _scaled(r, uw, uh, place.w, place.h)
                        if c is None:
                            continue
                        rows = np.arange(c.y, c.y + c.h) * uh // place.h
                        cols = np.arange(c.x, c.x + c.w) * uw // place.w
                        part = upright[rows][:, cols]
                    # Straight into the kept frame: one copy (the buffer is read only
                    # here, before the next frame is asked for).
                    target[c.y : c.y + c.h, c.x : c.x + c.w] = (
                        part[..., [2, 1, 0, 3]] if swap else part
                    )
                    self._pending.append(Rect(c.x + place.x, c.y + place.y, c.w, c.h))
                src.delivered = True
                if len(self._pending) > MAX_REGIONS:
                    box = self._pending[0]
                    for r in self._pending[1:]:
                        box = box.union(r)
                    self._pending = [box]
            self.frames += 1
        self._signal()
        if not self._every.is_set():  # the start only
            self._first.set()
            if all(s.delivered for s in self._sources.values()):
                self._every.set()
        src.destroy_frame()
        self._request_frame(src)

    # -- ScreenCapture ---------------------------------------------------------------

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
            for src in self._sources.values():
                src.destroy_frame()
                src.free_buffer()
            self._sources.clear()
            self._tracker.close()
            self._conn.close()
        except Exception:  # the connection may already be broken
            logger.debug("wlroots capture close", exc_info=True)
        for fd in (self._notify_r, self._notify_w, self._stop_r, self._stop_w):
            os.close(fd)

    def __enter__(self) -> WlrootsCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
