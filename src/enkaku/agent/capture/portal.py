"""Screen capture through the desktop portal's screen cast (KDE and others), PipeWire.

The frames come exactly as on GNOME (:mod:`enkaku.agent.capture.gnome`, whose worker,
change detection and GStreamer reader this class reuses): the portal gives a PipeWire
node and a connection to the PipeWire daemon (``OpenPipeWireRemote``), read through
``pipewiresrc fd=...``. The compositor sends a frame only when the monitor changed.

Which portal session serves the capture (:mod:`enkaku.agent.portal.session`):

- RemoteDesktop version 2 and later (xdg-desktop-portal 1.18+): the process's one
  remote-desktop session, shared with the input; one dialog, then its restore token.
- Older portals (Debian 12's 1.16) cannot restore a remote-desktop session, so each
  capture has a screen-cast session of its own, restored from its own token: after the
  first "Share", the screen is served with no dialog.

When the portal ends the session (the customer stopped sharing), the capture reports
an error; it does not ask again on its own.

The customer's pointer is drawn into the frames when the portal offers cursor mode
"embedded" (``AvailableCursorModes``), as on GNOME; ``cursor()`` returns None.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from enkaku.agent.gnome import mutter
from enkaku.agent.gnome.gst import GstUnavailable, PipeWireStream
from enkaku.agent.portal import session as portal

from .base import CaptureError, Rect
from .gnome import FIRST_FRAME_TIMEOUT, GnomeCapture, _Feed

__all__ = ["PortalCapture"]


class _PortalStream:
    """What the GNOME capture's worker needs of a session (``closed``, ``node``,
    ``connect_pipewire()``, ``watch_closed()``, ``stop()``), from a portal session."""

    def __init__(self, env: Mapping[str, str], config_dir: Path | None) -> None:
        self.shared = portal.remote_desktop_version(env) >= 2
        if self.shared:
            self._session = portal.acquire(env, config_dir)
        else:
            self._session = portal.PortalSession(env, config_dir, remote_desktop=False)
        self.closed = self._session.closed
        self.node = self._session.node
        self._stopped = False
        self._lock = threading.Lock()

    def connect_pipewire(self) -> socket.socket:
        try:
            fd = self._session.open_pipewire()
        except portal.PortalUnavailable as exc:
            raise mutter.MutterUnavailable(str(exc)) from exc
        return socket.socket(fileno=fd)

    def watch_closed(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._session.watch_closed(callback)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self.shared:
            portal.release(self._session)
        else:
            self._session.stop()


class PortalCapture(GnomeCapture):
    """``ScreenCapture`` through the desktop portal (see the module doc). ``env`` is the
    session's environment (its D-Bus session bus); ``config_dir`` where the restore
    token is kept (the agent's config folder by default)."""

    def __init__(
        self, env: Mapping[str, str] | None = None, config_dir: Path | None = None
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._output = None
        try:
            stream = _PortalStream(self._env, config_dir)
        except portal.PortalUnavailable as exc:
            raise CaptureError(str(exc)) from exc
        self._session = stream  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._swap = threading.Lock()
        self._cleanup_lock = threading.Lock()
        self._cleaned = False
        self._unwatch: Callable[[], None] | None = None
        self._feeds = []
        self._monitors = []  # one stream: the desktop is its frame, no monitor list
        self._monitors_changed = False
        self._first = threading.Event()
        self._frame = None
        self._pending: list[Rect] = []
        self._resized = True
        self._signalled = False
        self._error: str | None = None
        self._closed = False
        self._notify_r, self._notify_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.frames = 0
        try:
            sock = stream.connect_pipewire()
            feed = _Feed(mutter.Stream("", "", stream.node), Rect(0, 0, 0, 0), sock)
            self._feeds = [feed]
            feed.stream = PipeWireStream(sock.fileno(), stream.node)
        except (mutter.MutterUnavailable, GstUnavailable) as exc:
            self._release()
            raise CaptureError(str(exc)) from exc
        self._unwatch = stream.watch_closed(self._on_session_closed)
        self._thread = threading.Thread(target=self._run, name="portal-capture", daemon=True)
        self._thread.start()
        if not self._first.wait(FIRST_FRAME_TIMEOUT) or self._frame is None:
            error = self._error or "no frame from the portal's screen cast"
            self.close()
            raise CaptureError(f"cannot capture the screen: {error}")

    def _reopen(self) -> None:
        """The portal ended the session: the customer stopped sharing (or the
        compositor did). Not asked again behind the customer's back."""
        with contextlib.suppress(Exception):
            self._drop_session()
        raise mutter.MutterUnavailable("the desktop portal ended the screen sharing")

    def __enter__(self) -> PortalCapture:
        return self
