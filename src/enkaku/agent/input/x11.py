"""Input injection on X11 through the XTEST extension.

Keys arrive two ways (RFC 6143 §7.5.4 and the QEMU Extended Key Event):

* **keysym** — find a keycode whose first group carries it; press or release Shift
  around the key when the keysym's level needs a Shift state the keyboard is not in
  (as x11vnc does), and bind a keysym the keymap lacks (é, かな, ...) to a spare keycode
  with ``XChangeKeyboardMapping``; the spare keycodes are reset on ``close()``.
* **XT scancode** — the physical key, whatever the local layout: XT set 1 → Linux evdev
  code, and the X keycode is evdev + 8 (the ``evdev`` XKB keycodes every current X
  server uses). Extended keys come as 0x80|code on the wire (rfbproto: "the high bit of
  the first byte set"); 0xE0xx is accepted too.

Pointer: RFB button mask bits 0..7 are X buttons 1..8; bits 3..6 (wheel up, down, left,
right) are clicks, pressed and released when the bit turns on.

Each event costs as few round trips to the X server as it can: the keymap is read once
and again only after a MappingNotify (the X server sends one to every client when any
program changes the mapping; they are picked up without waiting), the Shift and Caps
Lock state comes from one ``XQueryPointer`` (the keymap is queried only when a Shift is
down and has to be let go), and the fake events are flushed, not synced.
"""

from __future__ import annotations

import ctypes
import logging
import threading

from enkaku.agent import x11lib
from enkaku.agent.input.base import InputError

logger = logging.getLogger(__name__)

XK_SHIFT_L = 0xFFE1
XK_SHIFT_R = 0xFFE2
WHEEL_BITS = (3, 4, 5, 6)  # X buttons 4..7: clicks, never held

# XT scancode set 1 (as sent in the QEMU Extended Key Event, E0-prefixed codes with the
# high bit set) -> Linux evdev key code (linux/input-event-codes.h).
_XT_SINGLE: dict[int, int] = {code: code for code in range(0x01, 0x54)}  # Esc .. KP.
_XT_SINGLE.update({
    0x54: 99,    # SysRq (Alt+PrintScreen)
    0x56: 86,    # 102nd key (ISO < > |)
    0x57: 87,    # F11
    0x58: 88,    # F12
    0x59: 117,   # KP =
    0x5C: 95,    # KP , (JIS keypad comma)
    0x5D: 183,   # F13
    0x5E: 184,   # F14
    0x5F: 185,   # F15
    0x55: 186,   # F16
    0x5A: 190,   # F20
    0x74: 191,   # F21
    0x6D: 193,   # F23
    0x6F: 194,   # F24
    0x70: 93,    # JIS Katakana/Hiragana (ひらがな/カタカナ)
    0x71: 123,   # Korean Hanja (Lang2)
    0x72: 122,   # Korean Hangul (Lang1)
    0x73: 89,    # JIS Ro (ろ, _ \)
    0x76: 85,    # Zenkaku/Hankaku (Lang5 usage; the JIS key itself sends 0x29)
    0x77: 91,    # Hiragana
    0x78: 90,    # Katakana
    0x79: 92,    # JIS Henkan (変換)
    0x7B: 94,    # JIS Muhenkan (無変換)
    0x7D: 124,   # JIS Yen (¥ |)
    0x7E: 121,   # KP , (Brazilian ABNT2)
    0xF1: 123,   # Hanja as some keyboards send it (raw 0xF1, no E0 prefix)
    0xF2: 122,   # Hangul, likewise
})  # fmt: skip
_XT_EXTENDED: dict[int, int] = {  # key: second byte after 0xE0
    0x10: 165,   # Previous track
    0x19: 163,   # Next track
    0x1C: 96,    # KP Enter
    0x1D: 97,    # Right Ctrl
    0x20: 113,   # Mute
    0x21: 140,   # Calculator
    0x22: 164,   # Play/Pause
    0x24: 166,   # Stop
    0x2E: 114,   # Volume down
    0x30: 115,   # Volume up
    0x32: 172,   # WWW home
    0x35: 98,    # KP /
    0x37: 99,    # PrintScreen
    0x38: 100,   # Right Alt / AltGr
    0x46: 119,   # Pause (QEMU's code for the E1 1D 45 sequence)
    0x47: 102,   # Home
    0x48: 103,   # Up
    0x49: 104,   # Page Up
    0x4B: 105,   # Left
    0x4D: 106,   # Right
    0x4F: 107,   # End
    0x50: 108,   # Down
    0x51: 109,   # Page Down
    0x52: 110,   # Insert
    0x53: 111,   # Delete
    0x5B: 125,   # Left Super/Windows
    0x5C: 126,   # Right Super/Windows
    0x5D: 127,   # Menu (Compose)
    0x5E: 116,   # Power
    0x5F: 142,   # Sleep
    0x63: 143,   # Wake
    0x65: 217,   # Search
    0x66: 156,   # Bookmarks
    0x67: 173,   # Refresh
    0x68: 128,   # Stop (browser)
    0x69: 159,   # Forward
    0x6A: 158,   # Back
    0x6B: 157,   # My Computer
    0x6C: 155,   # Mail
    0x6D: 226,   # Media select
}  # fmt: skip
EVDEV_TO_X_KEYCODE_OFFSET = 8


def xt_to_evdev(scancode: int) -> int | None:
    """The Linux evdev code of a QEMU/RFB XT scancode, or None when unknown."""
    if 0xE000 <= scancode <= 0xE0FF:  # spelled with its prefix; same key
        return _XT_EXTENDED.get(scancode & 0x7F)
    if scancode in _XT_SINGLE:
        return _XT_SINGLE[scancode]
    if 0x80 <= scancode <= 0xFF:  # rfbproto: E0 xx (xx < 0x7f) sent as 0x80 | xx
        return _XT_EXTENDED.get(scancode & 0x7F)
    return None


def _normalise_keysym(keysym: int) -> int:
    """Unicode keysyms for Latin-1 characters are their legacy keysyms (keysymdef.h)."""
    if 0x1000000 <= keysym <= 0x10000FF:
        cp = keysym - 0x1000000
        if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
            return cp
    return keysym


def _is_valid_keysym(keysym: int) -> bool:
    # keysymdef.h: nothing below space, none in Latin-1's C1 gap, 29 bits at most.
    return 0x20 <= keysym <= 0x1FFFFFFF and not 0x7F <= keysym <= 0x9F


def _is_text_keysym(keysym: int) -> bool:
    # Function, modifier and keypad keysyms (0xff00..0xffff) keep the Shift state the
    # viewer set: Shift+Tab, Shift+Home or Shift+click must still carry Shift.
    return not 0xFF00 <= keysym <= 0xFFFF and keysym != 0


def _is_cased_pair(lower: int, upper: int) -> bool:
    """True for a key whose two levels are a letter's lower and upper case."""

    def char(ks: int) -> str | None:
        if 0x20 <= ks <= 0xFF:
            return chr(ks)
        if 0x1000000 <= ks <= 0x110FFFF:
            return chr(ks - 0x1000000)
        return None

    lo, up = char(lower), char(upper)
    return lo is not None and up is not None and lo != up and lo.upper() == up


class X11Input:
    """``InputInjector`` for an X11 display (see the module docstring)."""

    def __init__(self, display: str | None = None) -> None:
        self._lock = threading.Lock()
        with x11lib.SETUP_LOCK:
            self._conn = x11lib.XConnection(display, InputError)
            try:
                self._xtst = self._conn.extension("Xtst")
                ints = [ctypes.c_int() for _ in range(4)]
                if not self._xtst.XTestQueryExtension(self._conn.dpy, *map(ctypes.byref, ints)):
                    raise InputError(
                        f"the X server on {self._conn.name!r} lacks the XTEST extension "
                        "(Xorg/Xvfb: enable it with '+extension XTEST')"
                    )
                lo, hi = ctypes.c_int(), ctypes.c_int()
                self._conn.x11.XDisplayKeycodes(self._conn.dpy, ctypes.byref(lo), ctypes.byref(hi))
                self._min_keycode, self._max_keycode = lo.value, hi.value
                self._keymap: list[list[int]] = []
                self._per_keycode = 0
                self._shift_keycodes: set[int] = set()
                self._load_keymap()
            except BaseException:
                self._conn.close()
                raise
        self._held_keys: dict[tuple[str, int], int] = {}  # ("sym"|"scan", code) -> keycode
        self._buttons = 0  # RFB mask of held buttons 1, 2, 3, 8
        self._bound: dict[int, int] = {}  # keysym -> spare keycode bound to it
        self._event = x11lib.XEvent()
        self._spare_order: list[int] = []  # bound spare keycodes, least recent first

    # -- keyboard mapping -----------------------------------------------------------------

    def _load_keymap(self) -> None:
        x11, dpy = self._conn.x11, self._conn.dpy
        count = self._max_keycode - self._min_keycode + 1
        per = ctypes.c_int()
        syms = x11.XGetKeyboardMapping(dpy, self._min_keycode, count, ctypes.byref(per))
        self._conn.check()
        if not syms:
            raise InputError("XGetKeyboardMapping failed")
        try:
            n = per.value
            self._per_keycode = n
            self._keymap = [[syms[i * n + j] for j in range(n)] for i in range(count)]
        finally:
            x11.XFree(syms)
        modmap = x11.XGetModifierMapping(dpy)
        if modmap:
            try:
                m = modmap.contents
                shift = [m.modifiermap[i] for i in range(m.max_keypermod)]  # modifier 0
                self._shift_keycodes = {kc for kc in shift if kc}
            finally:
                x11.XFreeModifiermap(modmap)

    def _mapping_changed(self) -> bool:
        """Whether a MappingNotify arrived since the last look (reads what is there)."""
        x11, dpy = self._conn.x11, self._conn.dpy
        changed = False
        while x11.XPending(dpy):  # flushes, reads without blocking; no round trip
            x11.XNextEvent(dpy, ctypes.byref(self._event))
            changed = changed or self._event.type == x11lib.MAPPING_NOTIFY
        return changed

    def _syms(self, keycode: int) -> list[int]:
        return self._keymap[keycode - self._min_keycode]

    def _find(self, keysym: int) -> tuple[int, int] | None:
        """(keycode, level 0/1) of the keysym in the first group, preferring level 0."""
        for level in (0, 1):
            for i, syms in enumerate(self._keymap):
                if len(syms) > level and syms[level] == keysym:
                    return self._min_keycode + i, level
        return None

    def _bind_spare(self, keysym: int) -> int:
        """Bind the keysym (both levels) to an unused keycode, reusing the oldest."""
        keycode = self._bound.get(keysym)
        if keycode is not None:
            self._spare_order.remove(keycode)
            self._spare_order.append(keycode)
            return keycode
        held = set(self._held_keys.values())
        free = [
            self._min_keycode + i
            for i, syms in enumerate(self._keymap)
            if not any(syms) and self._min_keycode + i not in self._bound.values()
        ]
        if free:
            keycode = free[-1]  # high keycodes are the least likely to be wanted later
        else:
            reusable = [kc for kc in self._spare_order if kc not in held]
            if not reusable:
                raise InputError("no spare keycode left to type this character")
            # Least recently used, so a client still handling the previous binding's
            # event has had the most time to do so.
            keycode = reusable[0]
            self._spare_order.remove(keycode)
            del self._bound[next(ks for ks, kc in self._bound.items() if kc == keycode)]
        self._map_keycode(keycode, keysym)
        self._bound[keysym] = keycode
        self._spare_order.append(keycode)
        logger.debug("bound keysym %#x to spare keycode %d", keysym, keycode)
        return keycode

    def _map_keycode(self, keycode: int, keysym: int) -> None:
        per = max(self._per_keycode, 2)
        values = [keysym, keysym] if keysym else []  # 0: back to NoSymbol
        arr = (ctypes.c_ulong * per)(*values)
        self._conn.x11.XChangeKeyboardMapping(self._conn.dpy, keycode, per, arr, 1)
        errors = self._conn.sync_errors()
        if errors:
            raise InputError(f"XChangeKeyboardMapping failed: {errors[0]}")
        syms = self._syms(keycode)
        syms[:] = list(arr) + [0] * (len(syms) - per)

    # -- state --------------------------------------------------------------------------

    def _modifier_state(self) -> tuple[set[int], bool]:
        """(Shift keycodes currently down, Caps Lock on): one round trip, two when a
        Shift is down."""
        x11, dpy = self._conn.x11, self._conn.dpy
        root, child = x11lib.XID(), x11lib.XID()
        ints = [ctypes.c_int() for _ in range(4)]
        mask = ctypes.c_uint()
        x11.XQueryPointer(
            dpy, self._conn.root, ctypes.byref(root), ctypes.byref(child),
            *map(ctypes.byref, ints), ctypes.byref(mask),
        )  # fmt: skip
        self._conn.check()
        down: set[int] = set()
        if mask.value & x11lib.SHIFT_MASK:
            keys = (ctypes.c_char * 32)()
            x11.XQueryKeymap(dpy, keys)
            raw = bytes(keys)
            down = {kc for kc in self._shift_keycodes if raw[kc // 8] & (1 << (kc % 8))}
        return down, bool(mask.value & x11lib.LOCK_MASK)

    def _fake_key(self, keycode: int, down: bool) -> None:
        self._xtst.XTestFakeKeyEvent(self._conn.dpy, keycode, int(down), 0)

    # -- InputInjector ------------------------------------------------------------------

    def key(self, keysym: int, down: bool, scancode: int | None = None) -> None:
        """Press or release a key by XT scancode when given and known, else by keysym."""
        with self._lock:
            self._check_open()
            evdev = xt_to_evdev(scancode) if scancode else None
            keycode = evdev + EVDEV_TO_X_KEYCODE_OFFSET if evdev is not None else None
            if keycode is not None and self._min_keycode <= keycode <= self._max_keycode:
                self._key_physical(("scan", scancode or 0), keycode, down)
            else:
                if scancode:
                    logger.debug("unknown XT scancode %#x, using keysym %#x", scancode, keysym)
                self._key_keysym(_normalise_keysym(keysym), down)
            self._conn.x11.XFlush(self._conn.dpy)
            self._conn.take_errors()
            self._conn.check()

    def _key_physical(self, ident: tuple[str, int], keycode: int, down: bool) -> None:
        if down:
            self._held_keys[ident] = keycode
            self._fake_key(keycode, True)
        elif self._held_keys.pop(ident, None) is not None:
            self._fake_key(keycode, False)

    def _key_keysym(self, keysym: int, down: bool) -> None:
        ident = ("sym", keysym)
        if not down:
            keycode = self._held_keys.pop(ident, None)
            if keycode is None:
                logger.debug("release of keysym %#x that is not held; ignored", keysym)
            else:
                self._fake_key(keycode, False)
            return
        if not _is_valid_keysym(keysym):
            logger.debug("keysym %#x is not a key; ignored", keysym)
            return
        if self._mapping_changed():  # follows layout changes made on the machine
            self._load_keymap()
        found = self._find(keysym)
        if found is None:
            self._press(ident, self._bind_spare(keysym), None)
            return
        keycode, level = found
        syms = self._syms(keycode)
        if not _is_text_keysym(keysym) or len(syms) < 2 or syms[1] in (0, syms[0]):
            self._press(ident, keycode, None)  # Shift makes no difference, keep it as is
            return
        want_shift = level == 1
        shifts_down, caps = self._modifier_state()
        if caps and _is_cased_pair(syms[0], syms[1]):
            want_shift = not want_shift  # Caps Lock inverts the case of letters
        self._press(ident, keycode, (want_shift, shifts_down))

    def _press(
        self, ident: tuple[str, int], keycode: int, shift: tuple[bool, set[int]] | None
    ) -> None:
        self._held_keys[ident] = keycode
        if shift is None:
            self._fake_key(keycode, True)
            return
        want_shift, shifts_down = shift
        if want_shift and not shifts_down:
            shift_kc = self._conn.x11.XKeysymToKeycode(self._conn.dpy, XK_SHIFT_L)
            shift_kc = shift_kc or self._conn.x11.XKeysymToKeycode(self._conn.dpy, XK_SHIFT_R)
            if not shift_kc:
                raise InputError("the keymap has no Shift key")
            self._fake_key(shift_kc, True)
            self._fake_key(keycode, True)
            self._fake_key(shift_kc, False)
        elif not want_shift and shifts_down:
            for kc in shifts_down:
                self._fake_key(kc, False)
            self._fake_key(keycode, True)
            for kc in shifts_down:
                self._fake_key(kc, True)
        else:
            self._fake_key(keycode, True)

    def pointer(self, x: int, y: int, buttons: int) -> None:
        """Move to (x, y) and apply the RFB button mask."""
        with self._lock:
            self._check_open()
            xtst, dpy = self._xtst, self._conn.dpy
            xtst.XTestFakeMotionEvent(dpy, -1, max(x, 0), max(y, 0), 0)
            changed = buttons ^ self._buttons
            for bit in range(8):
                mask = 1 << bit
                if not changed & mask:
                    continue
                pressed = bool(buttons & mask)
                if bit in WHEEL_BITS:
                    if pressed:  # one click per 0 -> 1 transition
                        xtst.XTestFakeButtonEvent(dpy, bit + 1, 1, 0)
                        xtst.XTestFakeButtonEvent(dpy, bit + 1, 0, 0)
                    continue
                xtst.XTestFakeButtonEvent(dpy, bit + 1, int(pressed), 0)
            self._buttons = buttons & 0xFF
            self._conn.x11.XFlush(dpy)
            self._conn.take_errors()
            self._conn.check()

    def release_all(self) -> None:
        """Release every key and button this injector holds down."""
        with self._lock:
            if not self._conn.dpy or self._conn.dead:
                self._held_keys.clear()
                self._buttons = 0
                return
            self._release_all_locked()
            self._conn.x11.XFlush(self._conn.dpy)

    def _release_all_locked(self) -> None:
        for keycode in set(self._held_keys.values()):
            self._fake_key(keycode, False)
        self._held_keys.clear()
        for bit in range(8):
            if self._buttons & (1 << bit) and bit not in WHEEL_BITS:
                self._xtst.XTestFakeButtonEvent(self._conn.dpy, bit + 1, 0, 0)
        self._buttons = 0

    def close(self) -> None:
        """Release everything, unbind the spare keycodes and close the display."""
        with self._lock, x11lib.SETUP_LOCK:
            if not self._conn.dpy:
                return
            if not self._conn.dead:
                self._release_all_locked()
                for keycode in list(self._bound.values()):
                    try:
                        self._map_keycode(keycode, 0)
                    except InputError as exc:
                        logger.debug("cannot unbind keycode %d: %s", keycode, exc)
                self._conn.x11.XSync(self._conn.dpy, 0)
            self._bound.clear()
            self._spare_order.clear()
            self._conn.close()

    def __enter__(self) -> X11Input:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if not self._conn.dpy:
            raise InputError("X11Input is closed")
        self._conn.check()
