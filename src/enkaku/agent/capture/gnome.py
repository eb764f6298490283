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

The customer's pointer is not in the frames: on a desktop of one monitor the session
records in cursor mode "metadata", where mutter puts the pointer's shape, hotspot and
position in PipeWire's ``SPA_META_Cursor``; GStreamer's ``pipewiresrc`` (0.3.65) does
not ask for it, so the stream is read by a ``pw_stream`` of our own
(:mod:`enkaku.agent.gnome.pwstream`) that does. ``cursor()`` then returns the shape
with a new serial whenever its bitmap changes (the change makes ``fileno()`` readable,
as X11's CursorNotify does), and the service sends it as the RFB Cursor
pseudo-encoding: the viewer draws the pointer itself, at once. A pointer move that
keeps the shape costs nothing (mutter sends a buffer with the metadata alone, read and
dropped).

With several monitors the session records in cursor mode "embedded", read through
GStreamer: the pointer drawn into the frames (a move is a frame), ``cursor()`` None, as
on wlroots; there mutter 43 can lose a stream's first frame in metadata mode (see
``mutter.RemoteSession``). The capture records so as well, once per process and logged
once, without that reader (libpipewire missing) or when it fails before the first
frame.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from functools import partial
from itertools import count
from typing import Protocol

import numpy as np
import numpy.typing as npt

from enkaku.agent.gnome import mutter, pwstream
from enkaku.agent.gnome.gst import GstUnavailable, PipeWireStream
from enkaku.agent.gnome.pwstream import PipeWireUnavailable, PwStream

from .base import CaptureError, CursorImage, Rect, WorkerFrameCapture, scale_nearest
from .monitors import Monitor, order

__all__ = ["GnomeCapture"]

logger = logging.getLogger(__name__)

FIRST_FRAME_TIMEOUT = 15.0
BAND = 32  # rows compared together: one rectangle per band that changed
MAX_REGIONS = 64
#: Why the cursor-metadata reader is not used in this process (set after it failed
#: once, so later captures start in embedded mode at once and say so once).
_metadata_problem: str | None = None
_metadata_lock = threading.Lock()
_said_several = False


def wanted_cursor_mode() -> int:
    """The cursor mode the next session records in (``mutter.CURSOR_*``): metadata
    unless libpipewire is missing or the metadata stream failed in this process (the
    GNOME and the portal captures alike)."""
    global _metadata_problem
    with _metadata_lock:
        if _metadata_problem is None and (problem := pwstream.problem()) is not None:
            _metadata_problem = problem
            logger.info("screen capture: the pointer is drawn into the frames (%s)", problem)
        return mutter.CURSOR_EMBEDDED if _metadata_problem else mutter.CURSOR_METADATA


def _say_embedded(session: mutter.RemoteSession, asked: int) -> None:
    """Log once per process that a session asked for metadata records embedded (a
    desktop of several monitors)."""
    global _said_several
    if asked == mutter.CURSOR_METADATA and session.cursor_mode != asked and not _said_several:
        _said_several = True
        logger.info("GNOME capture: several monitors: the pointer is drawn into the frames")


def _metadata_failed(reason: str) -> None:
    global _metadata_problem
    with _metadata_lock:
        if _metadata_problem is None:
            _metadata_problem = reason
            logger.info(
                "screen capture: the cursor-metadata stream failed (%s); the pointer is "
                "drawn into the frames from now on",
                reason,
            )


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


class CastSession(Protocol):
    """What the capture needs of a started screen-cast session: mutter's
    (``mutter.RemoteSession``) or the desktop portal's (``capture.portal``)."""

    streams: list[mutter.Stream]
    #: The cursor mode its streams record in (``mutter.CURSOR_*``).
    cursor_mode: int
    closed: threading.Event

    def origin(self) -> tuple[int, int]: ...

    def connect_pipewire(self) -> socket.socket: ...

    def watch_closed(self, callback: Callable[[], None]) -> Callable[[], None]: ...

    def stop(self) -> None: ...


class _ReaderFailed(CaptureError):
    """A session recording in metadata mode started but its stream could not be read
    (the capture tries again in embedded mode)."""


class _Feed:
    """One monitor's stream in a capture of several: where its pixels go in the
    desktop frame and the last frame it gave (worker-thread state)."""

    def __init__(self, info: mutter.Stream, place: Rect, sock: socket.socket) -> None:
        self.info = info
        self.place = place
        self.socket = sock
        self.stream: PipeWireStream | PwStream | None = None
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

    #: How the capture asked the sessions to record the pointer (``mutter.CURSOR_*``).
    _cursor_mode = mutter.CURSOR_EMBEDDED
    #: What the frames come from, for messages and the worker's name (subclasses).
    _source = "mutter's screen cast"
    _thread_name = "gnome-capture"

    def __init__(self, env: Mapping[str, str] | None = None, output: str | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self._output = output
        self._begin()

    def _begin(self) -> None:
        """Start in metadata mode where this process can read it; if the metadata
        stream fails before its first frame, start again in embedded mode."""
        self._serials = count(1)
        mode = wanted_cursor_mode()
        try:
            self._start(mode)
        except _ReaderFailed as exc:
            if mode == mutter.CURSOR_EMBEDDED:
                raise CaptureError(str(exc)) from None
            _metadata_failed(str(exc))
            self._start(mutter.CURSOR_EMBEDDED)

    def _open_session(self, mode: int) -> CastSession:
        """A started session recording in cursor mode ``mode`` where it can."""
        try:
            session = mutter.RemoteSession(
                self._env, self._output, remote_desktop=False, cursor_mode=mode
            )
        except mutter.MutterUnavailable as exc:
            raise CaptureError(str(exc)) from exc
        _say_embedded(session, mode)
        return session

    def _reads_metadata(self, session: CastSession) -> bool:
        """Whether ``session``'s streams are read by our own ``pw_stream`` (the capture
        asked for metadata and the session records in it)."""
        return self._cursor_mode == session.cursor_mode == mutter.CURSOR_METADATA

    def _start(self, mode: int) -> None:
        """Start a session recording in cursor mode ``mode``, its readers and worker,
        and wait for the first frame."""
        self._cursor_mode = mode
        self._cursor: CursorImage | None = None
        self._cursor_source: tuple[int, int] | None = None  # (the feed, its stream's serial)
        self._session: CastSession = self._open_session(mode)
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
        except (mutter.MutterUnavailable, GstUnavailable, PipeWireUnavailable, OSError) as exc:
            self._release()
            kind = _ReaderFailed if isinstance(exc, PipeWireUnavailable) else CaptureError
            raise kind(str(exc)) from exc
        self._unwatch = self._session.watch_closed(self._on_session_closed)
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()
        if not self._first.wait(FIRST_FRAME_TIMEOUT) or self._frame is None:
            error = self._error or f"no frame from {self._source}"
            self.close()
            metadata = self._reads_metadata(self._session)
            raise (_ReaderFailed if metadata else CaptureError)(
                f"cannot capture the screen: {error}"
            )

    def _open_feeds(self, session: CastSession) -> None:
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
                if self._reads_metadata(session):
                    feed.stream = PwStream(
                        feed.socket.fileno(), info.node, partial(self._on_cursor, feed)
                    )
                else:
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
        session = mutter.RemoteSession(
            self._env, self._output, remote_desktop=False, cursor_mode=self._cursor_mode
        )
        _say_embedded(session, self._cursor_mode)
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
        except (mutter.MutterUnavailable, GstUnavailable, PipeWireUnavailable, OSError) as exc:
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

    def _on_cursor(self, feed: _Feed) -> None:
        """PipeWire's thread: the stream told where the pointer is (each buffer while the
        pointer is on its monitor); a new shape of it (a new serial), or of a new stream
        after the session was started anew, is a new shape. Metadata sessions record
        one monitor (see the module doc)."""
        stream = feed.stream
        if not isinstance(stream, PwStream) or (image := stream.cursor()) is None:
            return
        source = (id(feed), image.serial)
        with self._lock:
            if source == self._cursor_source:
                return
            self._cursor_source = source
            self._cursor = CursorImage(
                image.pixels, image.hotspot_x, image.hotspot_y, next(self._serials)
            )
        self._signal()

    def cursor(self) -> CursorImage | None:
        """The pointer's shape (cursor mode "metadata"; its serial changes with the
        bitmap), None before mutter gave one or when the pointer is drawn into the
        frames (embedded mode)."""
        with self._lock:
            return self._cursor

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
