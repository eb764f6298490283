"""Screen capture on GNOME (Wayland) through mutter's screen-cast API and PipeWire.

Each capture records the monitor in a screen-cast session of its own
(:mod:`enkaku.agent.gnome.mutter`); the stream is read through GStreamer
(:mod:`enkaku.agent.gnome.gst`) by a worker thread. mutter sends a frame only when
something on the monitor changed, so an idle screen costs nothing: no frames, no
wake-ups. Each frame is compared with the previous one in bands of rows; the changed
rectangles are queued and a pipe turns readable (``fileno()``), exactly like the X11
backend's DAMAGE events and the wlroots backend's screencopy damage.

mutter 43 ends the session when the monitor configuration changes (a new resolution,
a rotation); the capture then starts a new one and its first frame, of the new size,
makes the service resize the viewer.

The pointer is not drawn into the frames (cursor mode "hidden") and its shape is not
read: ``cursor()`` returns None, so viewers draw their own pointer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from enkaku.agent.gnome import mutter
from enkaku.agent.gnome.gst import GstUnavailable, PipeWireStream

from .base import CaptureError, CursorImage, Rect, WorkerFrameCapture

__all__ = ["GnomeCapture"]

logger = logging.getLogger(__name__)

FIRST_FRAME_TIMEOUT = 15.0
BAND = 32  # rows compared together: one rectangle per band that changed
MAX_REGIONS = 64


def changed_bands(
    old: npt.NDArray[np.uint8], new: npt.NDArray[np.uint8], band: int = BAND
) -> list[Rect]:
    """One bounding rectangle per band of ``band`` rows where ``new`` differs from
    ``old`` (same shape, (h, w, 4))."""
    h = old.shape[0]
    diff = old.view(np.uint32)[..., 0] != new.view(np.uint32)[..., 0]
    rows = diff.any(axis=1)
    out = []
    for y in range(0, h, band):
        changed = np.flatnonzero(rows[y : y + band])
        if changed.size == 0:
            continue
        y0, y1 = y + int(changed[0]), y + int(changed[-1]) + 1
        cols = np.flatnonzero(diff[y0:y1].any(axis=0))
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        out.append(Rect(x0, y0, x1 - x0, y1 - y0))
    return out


class GnomeCapture(WorkerFrameCapture):
    """``ScreenCapture`` through mutter's screen cast with change events (see the
    module doc). ``env`` is the session's environment (the D-Bus session bus and
    $XDG_RUNTIME_DIR for PipeWire); ``output`` a monitor's connector name."""

    def __init__(self, env: Mapping[str, str] | None = None, output: str | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self._output = output
        try:
            self._session = mutter.RemoteSession(self._env, output, remote_desktop=False)
        except mutter.MutterUnavailable as exc:
            raise CaptureError(str(exc)) from exc
        self._lock = threading.Lock()
        self._swap = threading.Lock()  # the session and stream, replaced after a close
        self._cleanup_lock = threading.Lock()
        self._cleaned = False
        self._unwatch: Callable[[], None] | None = None
        self._socket: socket.socket | None = None
        self._first = threading.Event()
        self._frame: npt.NDArray[np.uint8] | None = None
        self._pending: list[Rect] = []
        self._resized = True  # the first changed_regions() says "unknown"
        self._signalled = False
        self._error: str | None = None
        self._closed = False
        self._notify_r, self._notify_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        #: Frames mutter delivered (each one means the screen was redrawn): tests.
        self.frames = 0
        try:
            self._socket = sock = self._session.connect_pipewire()
            self._stream = PipeWireStream(sock.fileno(), self._session.node)
        except (mutter.MutterUnavailable, GstUnavailable) as exc:
            self._release()
            raise CaptureError(str(exc)) from exc
        self._unwatch = self._session.watch_closed(self._on_session_closed)
        self._thread = threading.Thread(target=self._run, name="gnome-capture", daemon=True)
        self._thread.start()
        if not self._first.wait(FIRST_FRAME_TIMEOUT) or self._frame is None:
            error = self._error or "no frame from mutter's screen cast"
            self.close()
            raise CaptureError(f"cannot capture the screen: {error}")

    def _release(self) -> None:
        for fd in (self._notify_r, self._notify_w):
            os.close(fd)
        self._drop_session()

    def _drop_session(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._session.stop()

    def _on_session_closed(self) -> None:
        # D-Bus thread: mutter ended the session (it does on a monitor change); the
        # stream then just stops sending, so wake the worker to start a new one.
        with self._swap:
            self._stream.stop()

    def _reopen(self) -> None:
        """Worker thread: a new session and stream after mutter ended the old one."""
        self._stream.close()
        self._drop_session()
        logger.info("GNOME capture: the session ended (monitor change?); starting anew")
        if self._closed:
            return
        session = mutter.RemoteSession(self._env, self._output, remote_desktop=False)
        self._session = session
        self._socket = sock = session.connect_pipewire()
        stream = PipeWireStream(sock.fileno(), session.node)
        with self._swap:
            self._stream = stream
            if self._closed:
                stream.stop()
        self._unwatch = session.watch_closed(self._on_session_closed)

    # -- worker thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                while (image := self._stream.pull()) is not None:
                    self._take(image)
                if self._closed:
                    return
                if not self._session.closed.is_set():
                    self._error = self._stream.error() or "the screen stream ended"
                    logger.info("GNOME capture stopped: %s", self._error)
                    return
                self._reopen()
        except (mutter.MutterUnavailable, GstUnavailable) as exc:
            self._error = f"cannot capture the screen again: {exc}"
            logger.info("GNOME capture stopped: %s", self._error)
        except Exception as exc:  # a broken frame must not leave the service waiting
            self._error = f"screen stream failed ({exc})"
            logger.exception("GNOME capture failed")
        finally:
            self._first.set()
            if self._closed:  # close() may have given up waiting for this thread
                self._cleanup()
            else:
                self._signal()

    def _cleanup(self) -> None:
        """Free the stream and the session, once (``close()`` or the worker's end)."""
        with self._cleanup_lock:
            if self._cleaned:
                return
            self._cleaned = True
        self._stream.close()
        self._release()

    def _take(self, image: npt.NDArray[np.uint8]) -> None:
        frame = self._frame
        if frame is None or frame.shape != image.shape:
            regions = None
        else:
            regions = changed_bands(frame, image)
        with self._lock:
            self._frame = image
            self.frames += 1
            if regions is None:
                self._pending = []
                self._resized = True
            else:
                self._pending.extend(regions)
                if len(self._pending) > MAX_REGIONS:
                    box = self._pending[0]
                    for r in self._pending[1:]:
                        box = box.union(r)
                    self._pending = [box]
        self._first.set()
        if regions is None or regions:
            self._signal()

    # -- ScreenCapture -----------------------------------------------------------------

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

    def take_moves(self) -> list[tuple[Rect, Rect]]:
        """Always empty: the screen cast does not say where windows moved."""
        return []

    def cursor(self) -> CursorImage | None:
        return None

    def close(self) -> None:
        if self._closed:
            return
        with self._swap:
            self._closed = True
            self._stream.stop()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        if not self._thread.is_alive():
            self._cleanup()
        # else the worker frees them when it ends (it sees _closed)

    def __enter__(self) -> GnomeCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
