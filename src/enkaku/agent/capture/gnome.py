"""Screen capture on GNOME (Wayland) through mutter's screen-cast API and PipeWire.

Each capture records the monitor in a screen-cast session of its own
(:mod:`enkaku.agent.gnome.mutter`); the stream is read through GStreamer
(:mod:`enkaku.agent.gnome.gst`) by a worker thread. mutter sends a frame only when
something on the monitor changed, so an idle screen costs nothing: no frames, no
wake-ups. Each frame is compared with the previous one in bands of rows; the changed
rectangles are queued and a pipe turns readable (``fileno()``), exactly like the X11
backend's DAMAGE events and the wlroots backend's screencopy damage.

With two or more monitors (and no ``output`` named) the session records each monitor
in a stream of its own and the screen is the whole desktop: each stream's frames at
its monitor's place in mutter's logical layout, in the monitors' bounding box with its
top-left corner at 0, 0 (black where no monitor is), one reader thread per stream.
``monitors()`` lists them, so the RFB service offers each as a screen and serves one
alone through ``MonitorView``, as on X11 and wlroots; with one monitor it is empty and
the screen is that monitor's frame, as before.

mutter 43 ends the session when the monitor configuration changes (a new resolution,
a rotation), and the session counts as ended when the layout changes otherwise (a
monitor added: ``MonitorsChanged``); the capture then starts a new one and its first
frame, of the new size, makes the service resize the viewer (with several monitors:
``monitors_changed()`` says so, and the service lays out again).

The customer's pointer is drawn into the frames (cursor mode "embedded"), as on
wlroots: mutter's "metadata" mode puts the shape in PipeWire's ``SPA_META_Cursor``,
which GStreamer's ``pipewiresrc`` does not pass on, so ``cursor()`` returns None and
the technician sees the pointer in the picture. A pointer move is a frame (its old and
new places change); a still pointer sends nothing.
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

from .base import CaptureError, CursorImage, Rect, WorkerFrameCapture, scale_nearest
from .monitors import Monitor, order

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


class _Feed:
    """One monitor's stream in a capture of several: where its pixels go in the
    desktop frame and the last frame it gave (worker-thread state)."""

    def __init__(self, info: mutter.Stream, place: Rect, sock: socket.socket) -> None:
        self.info = info
        self.place = place
        self.socket = sock
        self.stream: PipeWireStream | None = None
        self.last: npt.NDArray[np.uint8] | None = None  # at the place's size
        self.thread: threading.Thread | None = None

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.socket.close()


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
        self._swap = threading.Lock()  # the session and streams, replaced after a close
        self._cleanup_lock = threading.Lock()
        self._cleaned = False
        self._unwatch: Callable[[], None] | None = None
        self._feeds: list[_Feed] = []
        self._first = threading.Event()
        self._frame: npt.NDArray[np.uint8] | None = None
        self._pending: list[Rect] = []
        self._resized = True  # the first changed_regions() says "unknown"
        self._signalled = False
        self._error: str | None = None
        self._closed = False
        self._monitors: list[Monitor] = []
        self._monitors_changed = False
        self._notify_r, self._notify_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        #: Frames mutter delivered (each one means the screen was redrawn): tests.
        self.frames = 0
        try:
            self._open_feeds(self._session)
        except (mutter.MutterUnavailable, GstUnavailable, OSError) as exc:
            self._release()
            raise CaptureError(str(exc)) from exc
        self._unwatch = self._session.watch_closed(self._on_session_closed)
        self._thread = threading.Thread(target=self._run, name="gnome-capture", daemon=True)
        self._thread.start()
        if not self._first.wait(FIRST_FRAME_TIMEOUT) or self._frame is None:
            error = self._error or "no frame from mutter's screen cast"
            self.close()
            raise CaptureError(f"cannot capture the screen: {error}")

    def _open_feeds(self, session: mutter.RemoteSession) -> None:
        """A PipeWire reader per stream of ``session``, each placed in the desktop (one
        stream: the desktop is its frame, whatever its size), and the monitors listed."""
        streams = session.streams
        ox, oy = session.origin()
        rects = [Rect(s.position[0] - ox, s.position[1] - oy, *s.size) for s in streams]
        feeds: list[_Feed] = []
        try:
            for info, place in zip(streams, rects, strict=True):
                feed = _Feed(info, place, session.connect_pipewire())
                feeds.append(feed)
                feed.stream = PipeWireStream(feed.socket.fileno(), info.node)
        except BaseException:
            for feed in feeds:
                feed.close()
            raise
        monitors: list[Monitor] = []
        frame: npt.NDArray[np.uint8] | None = None
        if len(feeds) > 1:
            box = rects[0]
            for r in rects[1:]:
                box = box.union(r)
            frame = np.zeros((box.h, box.w, 4), dtype=np.uint8)
            monitors = order(
                [Monitor(f.info.connector, f.place, f.info.primary) for f in feeds], box.w, box.h
            )
        with self._swap:
            self._feeds = feeds
            if self._closed:
                for feed in feeds:
                    self._stop_feed(feed)
        with self._lock:
            if frame is not None:
                self._frame = frame  # black until each monitor's first frame
                self._pending = []
                self._resized = True
            if monitors != self._monitors:
                self._monitors = monitors
                self._monitors_changed = True

    @staticmethod
    def _stop_feed(feed: _Feed) -> None:
        if feed.stream is not None:
            feed.stream.stop()

    def _stop_feeds(self) -> None:
        """Stop every stream (a ``pull()`` waiting in a worker returns None)."""
        with self._swap:
            for feed in self._feeds:
                self._stop_feed(feed)

    def _release(self) -> None:
        for fd in (self._notify_r, self._notify_w):
            os.close(fd)
        self._drop_session()

    def _drop_session(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for feed in self._feeds:
            feed.close()
        self._feeds = []
        self._session.stop()

    def _on_session_closed(self) -> None:
        # D-Bus thread: mutter ended the session (it does on a monitor change), or the
        # monitors changed; the streams then just stop sending, so wake the workers to
        # start a new one.
        self._stop_feeds()

    def _reopen(self) -> None:
        """Worker thread: a new session and streams after mutter ended the old one."""
        self._drop_session()
        logger.info("GNOME capture: the session ended (monitor change?); starting anew")
        if self._closed:
            return
        session = mutter.RemoteSession(self._env, self._output, remote_desktop=False)
        self._session = session
        self._open_feeds(session)
        self._unwatch = session.watch_closed(self._on_session_closed)

    # -- worker threads ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._pump()
                if self._closed:
                    return
                if self._error is not None:
                    logger.info("GNOME capture stopped: %s", self._error)
                    return
                self._reopen()
        except (mutter.MutterUnavailable, GstUnavailable, OSError) as exc:
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

    def _pump(self) -> None:
        """Read every stream until all have ended: the first here, the others in threads
        of their own. One ending while the session goes on is an error and ends them
        all."""
        feeds = self._feeds
        for feed in feeds[1:]:
            feed.thread = threading.Thread(
                target=self._pull_guarded, args=(feed,), name="gnome-capture-monitor", daemon=True
            )
            feed.thread.start()
        try:
            self._pull(feeds[0])
        finally:
            self._stop_feeds()
            for feed in feeds[1:]:
                assert feed.thread is not None
                feed.thread.join()

    def _pull_guarded(self, feed: _Feed) -> None:
        try:
            self._pull(feed)
        except Exception as exc:
            self._error = self._error or f"screen stream failed ({exc})"
            logger.exception("GNOME capture failed")
            self._stop_feeds()

    def _pull(self, feed: _Feed) -> None:
        stream = feed.stream
        assert stream is not None
        single = len(self._feeds) == 1
        while (image := stream.pull()) is not None:
            if single:
                self._take(image)
            else:
                self._take_part(feed, image)
        if not self._closed and not self._session.closed.is_set() and self._error is None:
            self._error = stream.error() or "the screen stream ended"
            self._stop_feeds()

    def _cleanup(self) -> None:
        """Free the streams and the session, once (``close()`` or the worker's end)."""
        with self._cleanup_lock:
            if self._cleaned:
                return
            self._cleaned = True
        self._release()

    def _take(self, image: npt.NDArray[np.uint8]) -> None:
        """One monitor: the frame is the desktop."""
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
                self._queue(regions)
        self._first.set()
        if regions is None or regions:
            self._signal()

    def _take_part(self, feed: _Feed, image: npt.NDArray[np.uint8]) -> None:
        """Several monitors: the frame goes to its monitor's place in the desktop."""
        place = feed.place
        image = scale_nearest(image, place.w, place.h)
        last = feed.last
        parts = [Rect(0, 0, place.w, place.h)] if last is None else changed_bands(last, image)
        feed.last = image
        with self._lock:
            frame = self._frame
            assert frame is not None
            target = frame[place.y : place.y + place.h, place.x : place.x + place.w]
            for r in parts:
                target[r.y : r.y + r.h, r.x : r.x + r.w] = image[r.y : r.y + r.h, r.x : r.x + r.w]
            self.frames += 1
            self._queue([Rect(r.x + place.x, r.y + place.y, r.w, r.h) for r in parts])
        if all(f.last is not None for f in self._feeds):
            self._first.set()
        if parts:
            self._signal()

    def _queue(self, regions: list[Rect]) -> None:
        """Under the lock: add changed rectangles (merged into one when too many)."""
        self._pending.extend(regions)
        if len(self._pending) > MAX_REGIONS:
            box = self._pending[0]
            for r in self._pending[1:]:
                box = box.union(r)
            self._pending = [box]

    # -- ScreenCapture -----------------------------------------------------------------

    def cursor(self) -> CursorImage | None:
        """None: the pointer is in the frames (cursor mode "embedded"), not a shape."""
        return None

    def close(self) -> None:
        if self._closed:
            return
        with self._swap:
            self._closed = True
            for feed in self._feeds:
                self._stop_feed(feed)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        if not self._thread.is_alive():
            self._cleanup()
        # else the worker frees them when it ends (it sees _closed)

    def __enter__(self) -> GnomeCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
