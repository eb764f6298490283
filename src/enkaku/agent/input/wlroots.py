"""Input injection on wlroots compositors: virtual keyboard and virtual pointer.

Keys go through ``zwp_virtual_keyboard_v1`` with a keymap of the keysyms typed so far
(:mod:`enkaku.agent.wayland.keymap`): a keysym the map lacks is added and the keymap
sent again before the key, so any keysym types as sent, independent of the customer's
layout. The QEMU scancode is not used here (the keymap is ours, not the customer's).

The pointer goes through ``zwlr_virtual_pointer_v1``: absolute motion in the output's
pixels, buttons as Linux BTN_* codes, wheel bits as discrete axis steps.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time

from enkaku.agent.wayland.connection import WaylandConnection, WaylandUnavailable
from enkaku.agent.wayland.keymap import KeysymKeymap
from enkaku.agent.wayland.protocols import (
    AXIS_HORIZONTAL,
    AXIS_SOURCE_WHEEL,
    AXIS_VERTICAL,
    BUTTON_PRESSED,
    BUTTON_RELEASED,
    KEY_PRESSED,
    KEY_RELEASED,
    KEYMAP_FORMAT_XKB_V1,
    ZwlrVirtualPointerManagerV1,
    ZwpVirtualKeyboardManagerV1,
)

from .base import InputError

__all__ = ["WlrootsInput"]

logger = logging.getLogger(__name__)

# RFB mask bit -> Linux input button (BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BTN_SIDE, BTN_EXTRA)
_BUTTONS = {0: 0x110, 1: 0x112, 2: 0x111, 7: 0x113, 8: 0x114}
# RFB wheel bits -> (axis, direction)
_WHEEL = {3: (AXIS_VERTICAL, -1), 4: (AXIS_VERTICAL, 1), 5: (AXIS_HORIZONTAL, -1),
          6: (AXIS_HORIZONTAL, 1)}  # fmt: skip
WHEEL_STEP = 15.0  # the value libinput reports for one wheel click


def _normalise_keysym(keysym: int) -> int:
    """Unicode keysyms for Latin-1 characters are their legacy keysyms."""
    if 0x1000000 <= keysym <= 0x10000FF:
        cp = keysym - 0x1000000
        if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
            return cp
    return keysym


def _now_ms() -> int:
    return int(time.monotonic() * 1000) & 0xFFFFFFFF


class WlrootsInput:
    """``InputInjector`` through the virtual keyboard and virtual pointer protocols."""

    def __init__(self, display: str | None = None, output: str | None = None) -> None:
        try:
            self._conn = WaylandConnection(display)
        except WaylandUnavailable as exc:
            raise InputError(str(exc)) from exc
        try:
            out = self._conn.output(output)
            self._extent = (max(out.width, 1), max(out.height, 1))
            seat = self._conn.seat()
            kb_manager = self._conn.bind(ZwpVirtualKeyboardManagerV1, 1)
            ptr_manager = self._conn.bind(ZwlrVirtualPointerManagerV1, 2)
            self._keyboard = kb_manager.create_virtual_keyboard(seat)
            if self._conn.version_of(ZwlrVirtualPointerManagerV1) >= 2:
                self._pointer = ptr_manager.create_virtual_pointer_with_output(seat, out.proxy)
            else:
                self._pointer = ptr_manager.create_virtual_pointer(seat)
            self._conn.display.roundtrip()  # an unauthorised client is told here
        except (WaylandUnavailable, RuntimeError) as exc:
            self._conn.close()
            raise InputError(str(exc)) from exc
        self._lock = threading.Lock()
        self._keymap = KeysymKeymap()
        self._sent_keymap = ""
        self._held: dict[int, int] = {}  # keysym -> keycode held down
        self._buttons = 0
        self._closed = False

    # -- plumbing -----------------------------------------------------------------------

    def _send(self) -> None:
        """Flush the requests and take any events, without blocking."""
        display = self._conn.display
        try:
            if display.flush() < 0:
                raise InputError("the Wayland compositor closed the connection")
            fd = display.get_fd()
            while select.select([fd], [], [], 0)[0]:
                display.read()
                display.dispatch(block=False)
        except RuntimeError as exc:
            raise InputError(f"Wayland connection lost ({exc})") from exc

    def _upload_keymap(self) -> None:
        text = self._keymap.text()
        if text == self._sent_keymap:
            return
        data = text.encode() + b"\0"
        fd = os.memfd_create("enkaku-keymap", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            self._keyboard.keymap(KEYMAP_FORMAT_XKB_V1, fd, len(data))
            self._send()  # the descriptor is sent with the flush
        finally:
            os.close(fd)
        self._sent_keymap = text

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("input closed")

    # -- InputInjector --------------------------------------------------------------------

    def key(self, keysym: int, down: bool, scancode: int | None = None) -> None:
        """Press or release ``keysym`` (the scancode is not needed: the keymap is ours)."""
        keysym = _normalise_keysym(keysym)
        with self._lock:
            self._check_open()
            if not down:
                code = self._held.pop(keysym, None)
                if code is not None:
                    self._keyboard.key(_now_ms(), code - 8, KEY_RELEASED)
                    self._send()
                return
            if not 0x20 <= keysym <= 0x1FFFFFFF or 0x7F <= keysym <= 0x9F:
                logger.debug("keysym %#x is not a key; ignored", keysym)
                return
            if keysym in self._held:
                return  # auto-repeat from the viewer: the compositor repeats by itself
            code = self._keymap.add(keysym, keep=set(self._held))
            self._upload_keymap()
            self._held[keysym] = code
            self._keyboard.key(_now_ms(), code - 8, KEY_PRESSED)
            self._send()

    def pointer(self, x: int, y: int, buttons: int) -> None:
        """Move to (x, y) on the output and apply the RFB button mask."""
        with self._lock:
            self._check_open()
            w, h = self._extent
            t = _now_ms()
            self._pointer.motion_absolute(t, min(max(x, 0), w - 1), min(max(y, 0), h - 1), w, h)
            changed = buttons ^ self._buttons
            for bit, code in _BUTTONS.items():
                if changed & (1 << bit):
                    state = BUTTON_PRESSED if buttons & (1 << bit) else BUTTON_RELEASED
                    self._pointer.button(t, code, state)
            for bit, (axis, sign) in _WHEEL.items():
                if changed & buttons & (1 << bit):  # one step per 0 -> 1 transition
                    self._pointer.axis_source(AXIS_SOURCE_WHEEL)
                    self._pointer.axis_discrete(t, axis, sign * WHEEL_STEP, sign)
            self._pointer.frame()
            self._buttons = buttons & 0x1FF
            self._send()

    def release_all(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._release_all_locked()

    def _release_all_locked(self) -> None:
        t = _now_ms()
        try:
            for code in set(self._held.values()):
                self._keyboard.key(t, code - 8, KEY_RELEASED)
            self._held.clear()
            for bit, code in _BUTTONS.items():
                if self._buttons & (1 << bit):
                    self._pointer.button(t, code, BUTTON_RELEASED)
            self._buttons = 0
            self._pointer.frame()
            self._send()
        except InputError:
            self._held.clear()
            self._buttons = 0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._release_all_locked()
            self._closed = True
            try:
                self._keyboard.destroy()
                self._pointer.destroy()
                self._conn.display.flush()
                self._conn.close()
            except Exception:
                logger.debug("wlroots input close", exc_info=True)

    def __enter__(self) -> WlrootsInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
