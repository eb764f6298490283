"""X11Input against a private Xvfb: checked with xdotool, xev and text typed into xterm."""

from __future__ import annotations

import ctypes
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from enkaku.agent import x11lib
from enkaku.agent.input.base import InputError
from enkaku.agent.input.x11 import X11Input, xt_to_evdev
from tests.xdisplay import wait_window, x_client, x_env, xvfb

pytestmark = pytest.mark.x11

XK_SHIFT_L = 0xFFE1
XK_RETURN = 0xFF0D
XK_CONTROL_L = 0xFFE3
XK_CAPS_LOCK = 0xFFE5


def mouse_location(display: str) -> tuple[int, int]:
    out = subprocess.run(
        ["xdotool", "getmouselocation"], env=x_env(display), capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    m = re.match(r"x:(\d+) y:(\d+)", out)
    assert m, out
    return int(m[1]), int(m[2])


def type_text(inp: X11Input, text: str) -> None:
    """Type as a VNC viewer would: Latin-1 keysyms, Unicode keysyms for the rest."""
    for ch in text:
        keysym = XK_RETURN if ch == "\n" else ord(ch) if ord(ch) < 0x100 else 0x1000000 + ord(ch)
        inp.key(keysym, True)
        inp.key(keysym, False)


def tap(inp: X11Input, keysym: int, scancode: int | None = None) -> None:
    inp.key(keysym, True, scancode)
    inp.key(keysym, False, scancode)


def wait_file(path: Path, expected: str) -> str:
    deadline = time.monotonic() + 10
    content = ""
    while time.monotonic() < deadline:
        content = path.read_text(encoding="utf-8") if path.exists() else ""
        if content == expected:
            break
        time.sleep(0.05)
    return content


@contextmanager
def xterm_cat(display: str, out: Path) -> Iterator[X11Input]:
    """An xterm running ``cat > out`` under the pointer (focus follows the pointer)."""
    args = ["xterm", "-u8", "-geometry", "60x10+0+0", "-title", "typing",
            "-e", "sh", "-c", f"exec cat > {out}"]  # fmt: skip
    with x_client(args, display), X11Input(display) as inp:
        x, y, w, h = wait_window(display, "typing")
        inp.pointer(x + w // 2, y + h // 2, 0)
        time.sleep(0.2)
        yield inp


def key_state(display: str) -> tuple[bytes, int]:
    """(XQueryKeymap bits, pointer modifier/button mask) from an independent connection."""
    conn = x11lib.XConnection(display, InputError)
    try:
        keys = (ctypes.c_char * 32)()
        conn.x11.XQueryKeymap(conn.dpy, keys)
        w1, w2 = x11lib.XID(), x11lib.XID()
        ints = [ctypes.c_int() for _ in range(4)]
        mask = ctypes.c_uint()
        conn.x11.XQueryPointer(
            conn.dpy, conn.root, ctypes.byref(w1), ctypes.byref(w2),
            *map(ctypes.byref, ints), ctypes.byref(mask),
        )  # fmt: skip
        return bytes(keys), mask.value
    finally:
        conn.close()


def keysyms_of(display: str, keycode: int) -> list[int]:
    conn = x11lib.XConnection(display, InputError)
    try:
        per = ctypes.c_int()
        syms = conn.x11.XGetKeyboardMapping(conn.dpy, keycode, 1, ctypes.byref(per))
        try:
            return [syms[i] for i in range(per.value)]
        finally:
            conn.x11.XFree(syms)
    finally:
        conn.close()


def test_pointer_moves() -> None:
    with xvfb(800, 600) as display, X11Input(display) as inp:
        inp.pointer(123, 456, 0)
        assert mouse_location(display) == (123, 456)
        inp.pointer(799, 0, 0)
        assert mouse_location(display) == (799, 0)


def test_buttons_and_wheel_reach_a_window() -> None:
    with xvfb(640, 480) as display:
        args = ["xev", "-geometry", "200x200+0+0", "-name", "evwin", "-event", "button"]
        with x_client(args, display, stdout=subprocess.PIPE) as xev, X11Input(display) as inp:
            wait_window(display, "evwin")
            inp.pointer(50, 50, 0)
            inp.pointer(50, 50, 0b1)  # left down
            inp.pointer(60, 60, 0b1)  # drag
            inp.pointer(60, 60, 0)  # left up
            inp.pointer(60, 60, 1 << 3)  # wheel up: one click
            inp.pointer(60, 60, 1 << 3)  # still set: no second click
            inp.pointer(60, 60, 0)
            inp.pointer(60, 60, 1 << 4)  # wheel down
            inp.pointer(60, 60, 0)
            inp.pointer(60, 60, 0b100)  # right
            inp.pointer(60, 60, 0)
            inp.pointer(60, 60, 1 << 7)  # button 8 (back)
            inp.pointer(60, 60, 0)
            time.sleep(0.3)
            xev.terminate()
            output = xev.communicate(timeout=5)[0]
    events = re.findall(r"(ButtonPress|ButtonRelease) event.*?button (\d+)", output, re.S)
    assert [(kind[6:], int(button)) for kind, button in events] == [
        ("Press", 1), ("Release", 1),
        ("Press", 4), ("Release", 4),
        ("Press", 5), ("Release", 5),
        ("Press", 3), ("Release", 3),
        ("Press", 8), ("Release", 8),
    ]  # fmt: skip


def test_types_text_with_shift_into_xterm(tmp_path: Path) -> None:
    out = tmp_path / "typed.txt"
    with xvfb() as display, xterm_cat(display, out) as inp:
        type_text(inp, 'Hello, World! ~|{}<>?"_+\n')
        tap(inp, 0x4)  # keysym 4 is not a key: ignored, nothing typed or bound
        inp.key(XK_CONTROL_L, True)
        tap(inp, ord("d"))  # EOF: cat exits, the file is complete
        inp.key(XK_CONTROL_L, False)
        assert wait_file(out, 'Hello, World! ~|{}<>?"_+\n') == 'Hello, World! ~|{}<>?"_+\n'
        assert inp._bound == {}


def test_shift_state_is_fixed_per_keysym(tmp_path: Path) -> None:
    """The viewer holds Shift but sends a lowercase keysym (and the reverse)."""
    out = tmp_path / "typed.txt"
    with xvfb() as display, xterm_cat(display, out) as inp:
        inp.key(XK_SHIFT_L, True)
        type_text(inp, "aB1!")
        inp.key(XK_SHIFT_L, False)
        tap(inp, XK_CAPS_LOCK)
        type_text(inp, "xY")  # Caps Lock on: still exactly these
        tap(inp, XK_CAPS_LOCK)
        type_text(inp, "\n")
        assert wait_file(out, "aB1!xY\n") == "aB1!xY\n"


def test_types_keysyms_missing_from_the_keymap(tmp_path: Path) -> None:
    out = tmp_path / "typed.txt"
    expected = "é€アあ\n"
    with xvfb() as display:
        with xterm_cat(display, out) as inp:
            type_text(inp, "é€")  # Latin-1 keysym 0xe9 and Unicode keysym 0x10020ac
            tap(inp, 0x4B1)  # legacy kana keysym kana_A -> ア
            tap(inp, 0x1003042)  # Unicode keysym あ
            type_text(inp, "\n")
            assert wait_file(out, expected) == expected
            bound = dict(inp._bound)
            assert len(bound) == 4
            assert keysyms_of(display, bound[0xE9])[:2] == [0xE9, 0xE9]
        # close() gave the spare keycodes back
        for keycode in bound.values():
            assert not any(keysyms_of(display, keycode))


def test_scancode_presses_the_physical_key(tmp_path: Path) -> None:
    out = tmp_path / "typed.txt"
    with xvfb() as display, xterm_cat(display, out) as inp:
        tap(inp, ord("q"), scancode=0x1E)  # XT 0x1e is the A key, whatever the keysym
        tap(inp, ord("B"), scancode=0x30)  # B key, no Shift held: lowercase
        inp.key(XK_SHIFT_L, True, 0x2A)  # Left Shift by scancode
        tap(inp, ord("C"), scancode=0x2E)
        inp.key(XK_SHIFT_L, False, 0x2A)
        tap(inp, XK_RETURN, scancode=0x9C)  # KP Enter, E0 1C in the RFB encoding
        assert wait_file(out, "abC\n") == "abC\n"


def test_release_all_lets_go_of_keys_and_buttons() -> None:
    with xvfb() as display, X11Input(display) as inp:
        inp.key(XK_SHIFT_L, True)
        inp.key(ord("z"), True, 0x2C)
        inp.pointer(10, 10, 0b101)
        keys, mask = key_state(display)
        assert mask & (1 << 8) and mask & (1 << 10) and mask & 1  # Button1, Button3, Shift
        assert keys[(0x2C + 8) // 8] & (1 << ((0x2C + 8) % 8))
        inp.release_all()
        keys, mask = key_state(display)
        assert not any(keys) and mask == 0
        inp.key(ord("z"), False, 0x2C)  # the viewer's late release is harmless


def test_close_releases_everything() -> None:
    with xvfb() as display:
        inp = X11Input(display)
        inp.key(XK_CONTROL_L, True)
        inp.pointer(5, 5, 0b10)
        inp.close()
        inp.close()
        keys, mask = key_state(display)
        assert not any(keys) and mask == 0
        with pytest.raises(InputError, match="closed"):
            inp.pointer(0, 0, 0)


def test_bad_display_name() -> None:
    with pytest.raises(InputError, match="cannot open X display"):
        X11Input(":9999")


@pytest.mark.parametrize(
    ("scancode", "evdev"),
    [
        (0x01, 1),  # Esc
        (0x1E, 30),  # A
        (0x29, 41),  # `~ / JIS Zenkaku/Hankaku (半角/全角)
        (0x39, 57),  # Space
        (0x58, 88),  # F12
        (0x70, 93),  # JIS Katakana/Hiragana
        (0x73, 89),  # JIS Ro
        (0x79, 92),  # JIS Henkan
        (0x7B, 94),  # JIS Muhenkan
        (0x7D, 124),  # JIS Yen
        (0x9D, 97),  # Right Ctrl, E0 1D as 0x80|0x1d
        (0xE01D, 97),  # the same spelled with its prefix
        (0xB8, 100),  # AltGr
        (0xC8, 103),  # Up
        (0xC6, 119),  # Pause
        (0xDB, 125),  # Left Super
        (0x7F, None),
        (0xE0FF, None),
        (0x1234, None),
    ],
)
def test_xt_to_evdev(scancode: int, evdev: int | None) -> None:
    assert xt_to_evdev(scancode) == evdev
