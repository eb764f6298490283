"""Input injection on wlroots compositors: virtual keyboard and virtual pointer.

Keys go through ``zwp_virtual_keyboard_v1`` with a keymap of keysyms, one key each
(:mod:`enkaku.agent.wayland.keymap`), sent when the keyboard is made and holding the
ordinary keys already: a keysym the map lacks is added and the keymap sent again
before the key, so any keysym types as sent, independent of the customer's layout.
The QEMU scancode is not used here (the keymap is ours, not the customer's).

The pointer goes through ``zwlr_virtual_pointer_v1``: absolute motion in the desktop's
logical pixels (the bounding box of every output, as the capture composes them; or the
one output named), buttons as Linux BTN_* codes, wheel bits as discrete axis steps.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import mmap
import os
import select
import threading
import time

from pywayland import ffi, lib

from enkaku.agent.wayland.connection import WaylandConnection, WaylandUnavailable, socket_path
from enkaku.agent.wayland.keymap import KEYMAP_NAME, MODIFIER_OF, KeysymKeymap
from enkaku.agent.wayland.outputs import OutputTracker
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
WHEEL_STEP = 15.0
# Real modifier bits: xkbcommon gives Shift, Lock, Control, Mod1..Mod5 indices 0..7.
_MOD_BIT = {"Shift": 1, "Lock": 2, "Control": 4, "Mod1": 8, "Mod2": 16, "Mod4": 64,
            "Mod5": 128}  # fmt: skip
_SHORTCUT_BITS = _MOD_BIT["Control"] | _MOD_BIT["Mod1"] | _MOD_BIT["Mod4"]
_LOCKING = {
    0xFFE5: 2,
    0xFF7F: 16,
}  # Caps_Lock, Num_Lock: toggle on each press  # the value libinput reports for one wheel click


#: How long ``key()`` and ``pointer()`` wait for a compositor that is not reading (busy
#: drawing, or stopped) before leaving the rest to a thread (``_Devices._drain``).
FLUSH_WAIT = 0.05


def _normalise_keysym(keysym: int) -> int:
    """Unicode keysyms for Latin-1 characters are their legacy keysyms."""
    if 0x1000000 <= keysym <= 0x10000FF:
        cp = keysym - 0x1000000
        if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
            return cp
    return keysym


def _now_ms() -> int:
    return int(time.monotonic() * 1000) & 0xFFFFFFFF


class _Devices:
    """One connection with one virtual keyboard and pointer, shared by every
    ``WlrootsInput`` on the same display for the life of the process.

    Creating and destroying a virtual keyboard per screen connection loses keys: the
    compositor drops the keyboard (and its keymap) while the focused client may still
    be translating the last keys with it. One long-lived keyboard also keeps its
    keymap and keycodes across connections, as X11's XTEST does.
    """

    def __init__(self, display: str | None, output: str | None) -> None:
        self.lock = threading.Lock()
        self.dead = False
        self.backlog = False  # requests the compositor has not read yet (``send()``)
        self.last_extent = (1, 1)
        try:
            self.conn = WaylandConnection(display)
        except WaylandUnavailable as exc:
            raise InputError(str(exc)) from exc
        try:
            # The desktop the RFB service's coordinates are in: every output's bounding
            # box (the capture's desktop frame), or the one output named.
            self.outputs = OutputTracker(self.conn, only=output)
            self.conn.display.roundtrip()  # wl_output's description
            self.conn.display.roundtrip()  # xdg-output's, and its done
            found = self.outputs.outputs()
            if not found:
                if output is None:
                    raise WaylandUnavailable("the compositor has no output (screen)")
                known = ", ".join(self.outputs.names())
                raise WaylandUnavailable(f"no output named {output!r} (outputs: {known})")
            seat = self.conn.seat()
            kb_manager = self.conn.bind(ZwpVirtualKeyboardManagerV1, 1)
            ptr_manager = self.conn.bind(ZwlrVirtualPointerManagerV1, 2)
            self.keyboard = kb_manager.create_virtual_keyboard(seat)
            if output is not None and self.conn.version_of(ZwlrVirtualPointerManagerV1) >= 2:
                # Mapped to that output: the extent is its logical size.
                self.pointer = ptr_manager.create_virtual_pointer_with_output(seat, found[0].proxy)
            else:
                # Not mapped: absolute motion spans the layout's bounding box.
                self.pointer = ptr_manager.create_virtual_pointer(seat)
            self.conn.display.roundtrip()  # an unauthorised client is told here
            # The seat's keyboard as a client sees it: told the keymap whenever the
            # seat's keymap changes (see on_seat_keymap).
            self.keymap = KeysymKeymap()
            self.sent_keymap = -1  # the keymap version the keyboard has (-1: none)
            #: Keymaps uploaded again because the compositor had replaced ours: tests.
            self.reuploads = 0
            # The compositor does not derive the modifier state from a virtual keyboard's
            # keys: the client states it (``modifiers``), from the modifier keys held here.
            self.mods_down: dict[int, int] = {}  # modifier keysym -> presses held
            self.locked = 0
            # The letter held last: Shift is stated so that clients read the level the
            # viewer sent (keymap module doc).
            self.level_of: int | None = None
            self.stated: tuple[int, int] | None = None  # the modifiers clients were told
            self.seat_keyboard = seat.get_keyboard()
            self.seat_keyboard.dispatcher["keymap"] = self.on_seat_keymap
            # The seat's current keymap first (another keyboard's: nothing to redo),
            # then ours with the ordinary keys, so the first keys typed upload nothing.
            self.conn.display.roundtrip()
            self.upload_keymap()
        except (WaylandUnavailable, RuntimeError, InputError) as exc:
            self.conn.close()
            raise InputError(str(exc)) from exc

    def extent(self) -> tuple[int, int]:
        """The desktop's size in logical pixels, as the outputs are now (see
        ``OutputTracker``; the caller has taken the compositor's events). An output just
        announced is waited for (two round trips, only then)."""
        if self.outputs.pending():
            self.sync()  # wl_output's description
            self.sync()  # xdg-output's
        box = self.outputs.box()
        if box is not None:
            self.last_extent = (max(box.w, 1), max(box.h, 1))
        return self.last_extent

    def modifier_key(self, keysym: int, down: bool) -> None:
        """Track a modifier keysym's press or release and state the new modifiers."""
        if keysym not in MODIFIER_OF:
            return
        if down:
            self.mods_down[keysym] = self.mods_down.get(keysym, 0) + 1
            self.locked ^= _LOCKING.get(keysym, 0)
        elif self.mods_down.get(keysym, 0) > 1:
            self.mods_down[keysym] -= 1
        else:
            self.mods_down.pop(keysym, None)
        self.state_modifiers()

    @property
    def level(self) -> bool | None:
        """Whether the letter held last is a capital; None: no letter (Shift as held)."""
        return None if self.level_of is None else KeysymKeymap.shifted(self.level_of)

    def letter_level(self, keysym: int | None) -> None:
        """``keysym`` is about to be pressed (None: the letter held last was let go)."""
        self.level_of = keysym
        self.state_modifiers()

    def state_modifiers(self) -> None:
        """Tell clients the modifiers held here, Shift turned so that the letter held
        last reads as the level the viewer sent (Shift xor Caps Lock picks it). Not
        with Control, Alt or Super held: a shortcut is the key's first level with the
        modifiers held, and Shift there is the viewer's (Ctrl+A stays Ctrl+A whatever
        case a viewer under Caps Lock sends)."""
        depressed = 0
        for held in self.mods_down:
            if held not in _LOCKING:
                depressed |= _MOD_BIT[MODIFIER_OF[held]]
        level = self.level
        if level is not None and not depressed & _SHORTCUT_BITS:
            upper = bool(depressed & _MOD_BIT["Shift"]) != bool(self.locked & _MOD_BIT["Lock"])
            if upper != level:
                depressed ^= _MOD_BIT["Shift"]
        if (depressed, self.locked) != self.stated:
            self.stated = (depressed, self.locked)
            self.keyboard.modifiers(depressed, 0, self.locked, 0)

    def send(self) -> None:
        """Flush the requests and take any events, without blocking for long.

        Each flush is one message on the socket, and the kernel holds only a few hundred
        of them for a compositor that is not reading (about 270 key events: a burst of
        input that arrived at once over a slow link, while the compositor draws). What
        does not fit stays queued, in order: sent here within ``FLUSH_WAIT``, or else by
        a thread as soon as the compositor reads again (``_drain``)."""
        display = self.conn.display
        try:
            if not self.backlog and not self.flush(FLUSH_WAIT):
                self.backlog = True
                threading.Thread(target=self._drain, name="wlr-input-drain", daemon=True).start()
            fd = display.get_fd()
            while select.select([fd], [], [], 0)[0]:
                display.read()
                display.dispatch(block=False)
        except InputError:
            raise
        except (RuntimeError, OSError) as exc:
            self.dead = True
            raise InputError(f"Wayland connection lost ({exc})") from exc

    def flush(self, wait: float) -> bool:
        """Hand the queued requests to the compositor, waiting at most ``wait`` seconds
        for it to read; True when all went out."""
        display = self.conn.display
        deadline = time.monotonic() + wait
        while display.flush() < 0:
            err: int = ffi.errno  # type: ignore[attr-defined]
            fatal: int = lib.wl_display_get_error(display._ptr)  # type: ignore[arg-type]
            if err not in (errno.EAGAIN, errno.EWOULDBLOCK) or fatal:
                # A full queue of our own also ends the connection (libwayland makes it
                # fatal): the compositor read nothing while thousands of events came.
                self.dead = True
                raise InputError(
                    f"the Wayland compositor closed the connection ({os.strerror(fatal or err)})"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([], [display.get_fd()], [], left)
        return True

    def _drain(self) -> None:
        """Thread: send the queued requests once the compositor reads again, however
        long it takes (as X11's injector waits for a stopped X server: the keys typed
        meanwhile arrive in order); ends when they are sent, the connection fails or
        the devices are closed."""
        fd = self.conn.display.get_fd()
        while True:
            select.select([], [fd], [], 0.5)
            with self.lock:
                if self.dead:
                    return
                try:
                    if self.flush(0):
                        self.backlog = False
                        return
                except InputError as exc:
                    logger.warning("wlroots input: %s", exc)
                    return

    def sync(self) -> None:
        """Wait until the compositor has taken every request sent so far."""
        try:
            if self.conn.display.roundtrip() < 0:
                raise RuntimeError("roundtrip failed")
        except RuntimeError as exc:
            self.dead = True
            raise InputError(f"Wayland connection lost ({exc})") from exc

    def on_seat_keymap(self, _kb: object, _format: int, fd: int, size: int) -> None:
        """The seat's keymap changed. The compositor may have put its own layout on our
        virtual keyboard (sway does on ``input * xkb_layout ...``, or a config reload),
        or the customer's keyboard became the active one (which a layout change may
        then have touched unseen): unless the keymap is ours, ours is sent again before
        the next key, or our keycodes would type the compositor's characters."""
        try:
            with mmap.mmap(fd, min(size, 4096), prot=mmap.PROT_READ) as head:
                ours = KEYMAP_NAME in head[:]
        except (OSError, ValueError):
            ours = False
        finally:
            os.close(fd)
        if not ours and self.sent_keymap >= 0:
            self.sent_keymap = -1
            self.reuploads += 1
        if not ours:
            self.stated = None  # another keymap, another state: say ours again

    def take_events(self) -> None:
        """Read what the compositor sent (a changed seat keymap), without blocking."""
        display = self.conn.display
        try:
            display.dispatch(block=False)
            fd = display.get_fd()
            while select.select([fd], [], [], 0)[0]:
                display.read()
                display.dispatch(block=False)
        except (RuntimeError, OSError) as exc:
            self.dead = True
            raise InputError(f"Wayland connection lost ({exc})") from exc

    def upload_keymap(self) -> None:
        self.take_events()
        if self.keymap.version == self.sent_keymap:
            return
        version = self.keymap.version
        data = self.keymap.text().encode() + b"\0"
        fd = os.memfd_create("enkaku-keymap", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            self.keyboard.keymap(KEYMAP_FORMAT_XKB_V1, fd, len(data))
            self.send()  # the descriptor goes out with the flush
        finally:
            os.close(fd)
        self.sent_keymap = version
        self.stated = None  # a new keymap starts a new state: say the modifiers again
        if self.mods_down or self.locked or self.level is not None:
            self.state_modifiers()

    def close(self) -> None:
        with self.lock:
            if self.dead:
                return
            self.dead = True
            try:
                self.seat_keyboard._destroy()  # v1 has no release request: freed here
                self.keyboard.destroy()
                self.pointer.destroy()
                self.outputs.close()
                self.conn.display.flush()
                self.conn.close()
            except Exception:
                logger.debug("wlroots input close", exc_info=True)


_devices: dict[tuple[str | None, str | None], _Devices] = {}
_devices_lock = threading.Lock()


def _shared_devices(display: str | None, output: str | None) -> _Devices:
    key = (socket_path(display), output)
    with _devices_lock:
        devices = _devices.get(key)
        if devices is None or devices.dead:
            devices = _devices[key] = _Devices(display, output)
        return devices


@atexit.register
def _close_all() -> None:
    # Before the interpreter tears down pywayland's objects in an arbitrary order.
    with _devices_lock:
        for devices in _devices.values():
            devices.close()
        _devices.clear()


class WlrootsInput:
    """``InputInjector`` through the virtual keyboard and virtual pointer protocols.

    Instances on one display share one keyboard and pointer (see ``_Devices``); each
    instance tracks and releases only the keys and buttons it pressed itself.
    """

    #: ``key()`` and ``pointer()`` queue requests and flush them without waiting for the
    #: compositor (no round trip; a keymap upload is flushed with the key): a caller may
    #: run them on its event loop. They wait only while another thread uses the same
    #: devices (``close()`` waits for one round trip), and at most ``FLUSH_WAIT`` once
    #: for a compositor that is not reading (``_Devices.send``).
    nonblocking = True

    def __init__(self, display: str | None = None, output: str | None = None) -> None:
        self._dev = _shared_devices(display, output)
        self._held: dict[int, int] = {}  # keysym -> keycode held down
        self._buttons = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("input closed")
        if self._dev.dead:
            raise InputError("the Wayland compositor connection is gone")

    # -- InputInjector --------------------------------------------------------------------

    def key(self, keysym: int, down: bool, scancode: int | None = None) -> None:
        """Press or release ``keysym`` (the scancode is not needed: the keymap is ours)."""
        keysym = _normalise_keysym(keysym)
        dev = self._dev
        with dev.lock:
            self._check_open()
            if not down:
                code = self._held.pop(keysym, None)
                if code is None and KeysymKeymap.shifted(keysym) is not None:
                    # A letter released in the other case (Shift let go first): the
                    # same key.
                    keysym ^= 0x20
                    code = self._held.pop(keysym, None)
                if code is not None:
                    dev.keyboard.key(_now_ms(), code - 8, KEY_RELEASED)
                    dev.modifier_key(keysym, False)
                    if dev.level_of == keysym:  # Shift back to what is held
                        dev.letter_level(None)
                    dev.send()
                return
            if not 0x20 <= keysym <= 0x1FFFFFFF or 0x7F <= keysym <= 0x9F:
                logger.debug("keysym %#x is not a key; ignored", keysym)
                return
            if keysym in self._held:
                return  # auto-repeat from the viewer: the compositor repeats by itself
            code = dev.keymap.add(keysym, keep=set(self._held))
            dev.upload_keymap()
            self._held[keysym] = code
            dev.letter_level(keysym)
            dev.keyboard.key(_now_ms(), code - 8, KEY_PRESSED)
            dev.modifier_key(keysym, True)
            dev.send()

    def pointer(self, x: int, y: int, buttons: int) -> None:
        """Move to (x, y) on the output and apply the RFB button mask."""
        dev = self._dev
        with dev.lock:
            self._check_open()
            dev.take_events()  # an output added, removed or moved changes the extent
            w, h = dev.extent()
            t = _now_ms()
            dev.pointer.motion_absolute(t, min(max(x, 0), w - 1), min(max(y, 0), h - 1), w, h)
            changed = buttons ^ self._buttons
            for bit, code in _BUTTONS.items():
                if changed & (1 << bit):
                    state = BUTTON_PRESSED if buttons & (1 << bit) else BUTTON_RELEASED
                    dev.pointer.button(t, code, state)
            for bit, (axis, sign) in _WHEEL.items():
                if changed & buttons & (1 << bit):  # one step per 0 -> 1 transition
                    dev.pointer.axis_source(AXIS_SOURCE_WHEEL)
                    dev.pointer.axis_discrete(t, axis, sign * WHEEL_STEP, sign)
            dev.pointer.frame()
            self._buttons = buttons & 0x1FF
            dev.send()

    def release_all(self) -> None:
        with self._dev.lock:
            if not self._closed:
                self._release_all_locked()

    def _release_all_locked(self) -> None:
        dev = self._dev
        if dev.dead:
            self._held.clear()
            self._buttons = 0
            return
        t = _now_ms()
        try:
            for keysym, code in self._held.items():
                dev.keyboard.key(t, code - 8, KEY_RELEASED)
                dev.modifier_key(keysym, False)
            if dev.level_of in self._held:
                dev.letter_level(None)
            self._held.clear()
            for bit, code in _BUTTONS.items():
                if self._buttons & (1 << bit):
                    dev.pointer.button(t, code, BUTTON_RELEASED)
            self._buttons = 0
            dev.pointer.frame()
            dev.send()
        except InputError:
            self._held.clear()
            self._buttons = 0

    def close(self) -> None:
        """Release what this instance holds; the shared devices stay for the next one."""
        with self._dev.lock:
            if self._closed:
                return
            self._release_all_locked()
            self._closed = True
            # A round trip, so that what was sent is taken before the caller goes on;
            # not while the compositor is not reading (it would wait for it, holding the
            # lock the drain thread needs): the drain thread sends the rest.
            if not self._dev.dead and not self._dev.backlog:
                with contextlib.suppress(InputError):
                    self._dev.sync()

    def __enter__(self) -> WlrootsInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
