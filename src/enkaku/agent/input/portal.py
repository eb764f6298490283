"""Input injection through the desktop portal's remote-desktop session (KDE and others).

Keys go by keysym (``NotifyKeyboardKeysym``): the compositor finds the key in the
customer's layout, as on GNOME. The pointer moves in the shared monitor's pixels
(``NotifyPointerMotionAbsolute`` on the session's stream), buttons as Linux BTN_* codes,
wheel bits as discrete steps. The key, pointer and release logic is the GNOME
injector's (:mod:`enkaku.agent.input.gnome`); only the session differs.

Every injector of the process shares the portal's remote-desktop session
(:mod:`enkaku.agent.portal.session`): the customer is asked once (or not at all when
the portal restores the session from the kept token), and the session ends a few
seconds after the last injector closes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

from enkaku.agent.portal import session as portal

from .base import InputError
from .gnome import GnomeInput

__all__ = ["PortalInput"]

# mutter's signature of each call (as GnomeInput sends it) -> the portal's, after the
# session handle and options.
_SIGNATURES = {
    "NotifyKeyboardKeysym": "iu",
    "NotifyPointerButton": "iu",
    "NotifyPointerAxisDiscrete": "ui",
    "NotifyPointerMotionAbsolute": "udd",
}


class PortalInput(GnomeInput):
    """``InputInjector`` through ``org.freedesktop.portal.RemoteDesktop`` (see the module
    doc). ``env`` is the session's environment; ``config_dir`` where the restore token
    is kept."""

    def __init__(
        self, env: Mapping[str, str] | None = None, config_dir: Path | None = None
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._output = None
        self._config_dir = config_dir
        try:
            self._portal = portal.acquire(self._env, config_dir)
        except portal.PortalUnavailable as exc:
            raise InputError(str(exc)) from exc
        self._session = self._portal  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # keysym pressed -> keysym sent
        self._buttons = 0
        self._closed = False

    def _live(self) -> portal.PortalSession:  # type: ignore[override]
        """The session, a new one if the portal ended it (what was held went with it).
        A new session may ask the customer again unless the portal restores it."""
        if self._portal.closed.is_set():
            try:
                session = portal.acquire(self._env, self._config_dir)
            except portal.PortalUnavailable as exc:
                raise InputError(str(exc)) from exc
            portal.release(self._portal)
            self._portal = session
            self._session = session  # type: ignore[assignment]
            self._held.clear()
            self._buttons = 0
        return self._portal

    def _notify(self, member: str, signature: str, *body: object) -> None:
        args = list(body)
        if member == "NotifyPointerMotionAbsolute":
            args[0] = self._portal.node  # the stream, by its PipeWire node
        else:
            args = [int(a) if isinstance(a, bool) else a for a in args]
        try:
            self._live().notify(member, _SIGNATURES[member], args)
        except portal.PortalUnavailable as exc:
            raise InputError(str(exc)) from exc

    def close(self) -> None:
        """Release what this injector holds; the session stays a while for the next."""
        with self._lock:
            if self._closed:
                return
            self._release_all_locked()
            self._closed = True
        portal.release(self._portal)

    def __enter__(self) -> PortalInput:
        return self
