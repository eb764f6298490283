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

The pointer, as on GNOME: when the portal offers cursor mode "metadata"
(``AvailableCursorModes``; xdg-desktop-portal-gnome does) and libpipewire loads, the
session records in it and the stream is read by our own ``pw_stream``
(:mod:`enkaku.agent.gnome.pwstream`, on the portal's PipeWire connection): the frames
have no pointer and ``cursor()`` gives its shape, which the RFB service sends as the
Cursor pseudo-encoding. Otherwise, and when that stream fails before its first frame
(the capture then starts a session again, in embedded mode, for the rest of the
process), the pointer is drawn into the frames (mode "embedded", read through
GStreamer) and ``cursor()`` returns None.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from enkaku.agent.gnome import mutter
from enkaku.agent.portal import session as portal

from .base import CaptureError
from .gnome import CastSession, GnomeCapture

__all__ = ["PortalCapture"]

#: The portal's cursor modes as mutter numbers them (``mutter.CURSOR_*``).
_CURSOR_MODES = {
    portal.CURSOR_METADATA: mutter.CURSOR_METADATA,
    portal.CURSOR_EMBEDDED: mutter.CURSOR_EMBEDDED,
}


class _PortalStream:
    """A portal session as the GNOME capture's worker sees a session
    (:class:`enkaku.agent.capture.gnome.CastSession`): its one stream, whose node is read
    through a PipeWire connection of its own."""

    def __init__(self, env: Mapping[str, str], config_dir: Path | None, metadata: bool) -> None:
        self.shared = portal.remote_desktop_version(env) >= 2
        if self.shared:
            self._session = portal.acquire(env, config_dir, metadata=metadata)
        else:
            self._session = portal.PortalSession(
                env, config_dir, remote_desktop=False, metadata=metadata
            )
        self.closed = self._session.closed
        self.node = self._session.node
        self.streams = [mutter.Stream("", "", self.node, size=self._session.size)]
        self.cursor_mode = _CURSOR_MODES.get(self._session.cursor_mode, mutter.CURSOR_HIDDEN)
        self._stopped = False
        self._lock = threading.Lock()

    def origin(self) -> tuple[int, int]:
        return 0, 0

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

    _source = "the portal's screen cast"
    _thread_name = "portal-capture"

    def __init__(
        self, env: Mapping[str, str] | None = None, config_dir: Path | None = None
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._output = None
        self._config_dir = config_dir
        self._begin()

    def _open_session(self, mode: int) -> CastSession:
        try:
            return _PortalStream(self._env, self._config_dir, mode == mutter.CURSOR_METADATA)
        except portal.PortalUnavailable as exc:
            raise CaptureError(str(exc)) from exc

    def _reopen(self) -> None:
        """The portal ended the session: the customer stopped sharing (or the
        compositor did). Not asked again behind the customer's back."""
        with contextlib.suppress(Exception):
            self._drop_session()
        raise mutter.MutterUnavailable("the desktop portal ended the screen sharing")

    def __enter__(self) -> PortalCapture:
        return self
