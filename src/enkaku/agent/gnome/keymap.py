"""The customer's keyboard layout on a GNOME (or any Wayland) session, as the
compositor gives it to its clients, and the one fallback for a keysym it lacks.

mutter types a keysym (``NotifyKeyboardKeysym``) only when the current layout has a key
for it; otherwise it logs "No keycode found" and types nothing, and its API has no way
to add a key. The Japanese ``jp`` layout has no ``yen``: its ¥ key types a backslash
(in JIS X 0201 the two share a code, and Japanese fonts draw one as the other). So a
``yen`` from the technician goes as ``backslash`` on a layout without ``yen`` whose ¥
key (``<AE13>``, a key only JIS keyboards have) types ``backslash``: what the
customer's own ¥ key types. Elsewhere (``us``: no ¥ key) it stays untyped, as do other
missing keysyms (kana on ``jp``, é on ``us``); the clipboard carries them
(docs/wayland.md).
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Mapping

from enkaku.agent.gnome.mutter import seat_connection, wayland_socket

__all__ = [
    "XK_BACKSLASH", "XK_YEN", "keymap_has", "seat_keymap", "typeable", "yen_key_types_backslash",
]  # fmt: skip

XK_YEN, XK_BACKSLASH = 0xA5, 0x5C


def seat_keymap(path: str | None) -> str | None:
    """The seat's current keymap as the compositor gives it to its clients (XKB text,
    ``wl_keyboard.keymap``); None when it cannot be read (no socket, no pywayland, no
    keyboard on the seat yet)."""
    if (opened := seat_connection(path)) is None:
        return None
    conn, WlSeat = opened
    got: list[str] = []

    def on_keymap(_kb: object, _format: int, fd: int, size: int) -> None:
        try:
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as data:
                got.append(data[:].rstrip(b"\0").decode(errors="replace"))
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)

    try:
        seat = conn.bind(WlSeat, 1)
        keyboard = seat.get_keyboard()
        keyboard.dispatcher["keymap"] = on_keymap
        conn.display.roundtrip()  # the keymap comes right after get_keyboard
        # Version 1 has no release requests; the proxies are freed here, before the
        # disconnect (pywayland, see docs/wayland.md).
        keyboard._destroy()
        seat._destroy()
        return got[-1] if got else None
    except Exception:
        return None
    finally:
        conn.close()


def keymap_has(keymap: str, name: str) -> bool:
    """Whether the XKB keymap text binds the keysym ``name`` (e.g. ``yen``) to a key."""
    symbols = keymap.partition("xkb_symbols")[2]
    return re.search(rf"[\[,]\s*{re.escape(name)}\s*[,\]]", symbols) is not None


def yen_key_types_backslash(keymap: str) -> bool:
    """The JIS ¥ key (``<AE13>``) is there and types ``backslash`` (``jp``)."""
    symbols = keymap.partition("xkb_symbols")[2]
    return re.search(r"key\s+<AE13>\s*{[^}]*[\[,]\s*backslash\s*[,\]]", symbols) is not None


def typeable(keysym: int, env: Mapping[str, str]) -> int:
    """``keysym``, or ``backslash`` for a ``yen`` the seat's JIS layout lacks (see the
    module doc). The keymap is read at each ``yen`` (the customer may switch layouts);
    when it cannot be read, the keysym goes as it is."""
    if keysym != XK_YEN:
        return keysym
    keymap = seat_keymap(wayland_socket(env))
    if keymap is None or keymap_has(keymap, "yen") or not yen_key_types_backslash(keymap):
        return keysym
    return XK_BACKSLASH
