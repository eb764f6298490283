"""Input injection on GNOME (Wayland) through mutter's remote-desktop session.

Keys go by keysym (``NotifyKeyboardKeysym``): mutter finds the key for the keysym in
the customer's current layout and presses the level's modifiers itself, so what the
technician types arrives as typed on any layout that has the character (JIS keys on a
Japanese layout). A keysym the layout lacks is not typed (mutter has no way to add it;
it logs "No keycode found"). One fallback: ``yen`` on a layout without it (``jp``
itself) goes as ``backslash``, what the customer's own ¥ key types
(:mod:`enkaku.agent.gnome.keymap`). The QEMU scancode is not used.

The pointer moves in the monitor stream's pixels (``NotifyPointerMotionAbsolute``):
with several monitors the session records each, and a point of the desktop (the
monitors' bounding box, as the capture composes it) goes to the stream of the monitor
it is on (a point on no monitor to the nearest one). Buttons go as Linux BTN_* codes,
wheel bits as discrete axis steps.

Every injector of the process shares the remote-desktop session of the capture
(:mod:`enkaku.agent.gnome.mutter`); each releases only what it pressed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from enkaku.agent.gnome import mutter
from enkaku.agent.gnome.keymap import typeable

from .base import InputError

__all__ = ["GnomeInput"]

logger = logging.getLogger(__name__)

# RFB mask bit -> Linux input button (BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BTN_SIDE, BTN_EXTRA)
_BUTTONS = {0: 0x110, 1: 0x112, 2: 0x111, 7: 0x113, 8: 0x114}
# RFB wheel bits -> (axis, steps): mutter's axis 0 is vertical, 1 horizontal.
_WHEEL = {3: (0, -1), 4: (0, 1), 5: (1, -1), 6: (1, 1)}


def _normalise_keysym(keysym: int) -> int:
    """Unicode keysyms for Latin-1 characters are their legacy keysyms."""
    if 0x1000000 <= keysym <= 0x10000FF:
        cp = keysym - 0x1000000
        if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
            return cp
    return keysym


class GnomeInput:
    """``InputInjector`` through ``org.gnome.Mutter.RemoteDesktop`` (see the module doc).
    ``env`` is the session's environment (its D-Bus session bus)."""

    def __init__(self, env: Mapping[str, str] | None = None, output: str | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self._output = output
        try:
            self._session = mutter.acquire(self._env, output)
        except mutter.MutterUnavailable as exc:
            raise InputError(str(exc)) from exc
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # keysym pressed -> keysym sent
        self._buttons = 0
        self._closed = False

    def _live(self) -> mutter.RemoteSession:
        """The session, a new one if mutter ended it (a monitor change does): its
        devices went with it, and with them what was held down."""
        if self._session.closed.is_set():
            try:
                session = mutter.acquire(self._env, self._output)
            except mutter.MutterUnavailable as exc:
                raise InputError(str(exc)) from exc
            mutter.release(self._session)
            self._session = session
            self._held.clear()
            self._buttons = 0
        return self._session

    def _notify(self, member: str, signature: str, *body: object) -> None:
        try:
            self._live().notify(member, signature, list(body))
        except mutter.MutterUnavailable as exc:
            raise InputError(str(exc)) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("input closed")

    # -- InputInjector -----------------------------------------------------------------

    def key(self, keysym: int, down: bool, scancode: int | None = None) -> None:
        """Press or release ``keysym`` (the scancode is not used)."""
        keysym = _normalise_keysym(keysym)
        with self._lock:
            self._check_open()
            self._live()
            if not down:
                if keysym in self._held:
                    self._notify("NotifyKeyboardKeysym", "ub", self._held.pop(keysym), False)
                return
            if not 0x20 <= keysym <= 0x1FFFFFFF or 0x7F <= keysym <= 0x9F:
                logger.debug("keysym %#x is not a key; ignored", keysym)
                return
            if keysym in self._held:
                return  # auto-repeat from the viewer: the compositor repeats by itself
            self._held[keysym] = sent = typeable(keysym, self._env)
            self._notify("NotifyKeyboardKeysym", "ub", sent, True)

    def pointer(self, x: int, y: int, buttons: int) -> None:
        """Move to (x, y) of the desktop (with several monitors: their bounding box, as
        the capture composes it) and apply the RFB button mask."""
        with self._lock:
            self._check_open()
            path, sx, sy = self._live().locate(x, y)
            self._notify("NotifyPointerMotionAbsolute", "sdd", path, float(sx), float(sy))
            changed = buttons ^ self._buttons
            for bit, code in _BUTTONS.items():
                if changed & (1 << bit):
                    self._notify("NotifyPointerButton", "ib", code, bool(buttons & (1 << bit)))
            for bit, (axis, steps) in _WHEEL.items():
                if changed & buttons & (1 << bit):  # one step per 0 -> 1 transition
                    self._notify("NotifyPointerAxisDiscrete", "ui", axis, steps)
            self._buttons = buttons & 0x1FF

    def release_all(self) -> None:
        with self._lock:
            if not self._closed:
                self._release_all_locked()

    def _release_all_locked(self) -> None:
        try:
            for keysym, sent in list(self._held.items()):
                del self._held[keysym]
                self._notify("NotifyKeyboardKeysym", "ub", sent, False)
            for bit, code in _BUTTONS.items():
                if self._buttons & (1 << bit):
                    self._buttons &= ~(1 << bit)
                    self._notify("NotifyPointerButton", "ib", code, False)
        except InputError:
            pass
        self._held.clear()
        self._buttons = 0

    def close(self) -> None:
        """Release what this injector holds; the session stays a while for the next."""
        with self._lock:
            if self._closed:
                return
            self._release_all_locked()
            self._closed = True
        mutter.release(self._session)

    def __enter__(self) -> GnomeInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
