"""Key presses as a keyboard sends them, through the DevTools protocol: the physical key
(`code`), the character it gives on that keyboard (`key`) and Shift held around it.

Playwright's own keyboard knows only a US layout and types shifted characters without
pressing Shift, which no person can do; the console must get what a real keyboard
sends, so a test types through these layouts.
"""

from __future__ import annotations

from typing import Any

SHIFT = 8  # the DevTools protocol's modifier bit for Shift

# character -> (code, shifted)
_COMMON: dict[str, tuple[str, bool]] = {
    " ": ("Space", False),
    "\n": ("Enter", False),
    ".": ("Period", False),
    ">": ("Period", True),
    "-": ("Minus", False),
    "/": ("Slash", False),
    ";": ("Semicolon", False),
}
US: dict[str, tuple[str, bool]] = {
    **_COMMON,
    "|": ("Backslash", True),
    "\\": ("Backslash", False),
    "~": ("Backquote", True),
    "_": ("Minus", True),
    '"': ("Quote", True),
    "'": ("Quote", False),
    "@": ("Digit2", True),
}
# The Japanese (JIS) keyboard: ¥ and ろ keys of their own, @ unshifted, " on Shift+2.
JIS: dict[str, tuple[str, bool]] = {
    **_COMMON,
    "|": ("IntlYen", True),
    "\\": ("IntlRo", False),
    "~": ("Equal", True),
    "_": ("IntlRo", True),
    '"': ("Digit2", True),
    "'": ("Digit7", True),
    "@": ("BracketLeft", False),
}
LAYOUTS = {"us": US, "jis": JIS}
VK = {"Enter": 13, "Space": 32, "ShiftLeft": 16}


def _key(char: str, layout: dict[str, tuple[str, bool]]) -> tuple[str, bool]:
    if char.isascii() and char.isalpha():
        return f"Key{char.upper()}", char.isupper()
    if char.isascii() and char.isdigit():
        return f"Digit{char}", False
    return layout[char]


def _send(cdp: Any, kind: str, code: str, key: str, modifiers: int, text: str = "") -> None:
    event: dict[str, Any] = {"type": kind, "code": code, "key": key, "modifiers": modifiers}
    if code in VK:
        event["windowsVirtualKeyCode"] = VK[code]
    if text and kind == "keyDown":
        event["text"] = text
        event["unmodifiedText"] = text
    cdp.send("Input.dispatchKeyEvent", event)


def press(page: Any, code: str, key: str, shift: bool = False) -> None:
    """One key press (with Shift held around it when asked)."""
    cdp = page.context.new_cdp_session(page)
    try:
        _press(cdp, code, key, shift)
    finally:
        cdp.detach()


def _press(cdp: Any, code: str, key: str, shift: bool) -> None:
    mods = SHIFT if shift else 0
    if shift:
        _send(cdp, "rawKeyDown", "ShiftLeft", "Shift", SHIFT)
    text = "\r" if key == "Enter" else key if len(key) == 1 else ""
    _send(cdp, "keyDown" if text else "rawKeyDown", code, key, mods, text)
    _send(cdp, "keyUp", code, key, mods)
    if shift:
        _send(cdp, "keyUp", "ShiftLeft", "Shift", 0)


def type_text(page: Any, text: str, layout: str = "us") -> None:
    """Type ``text`` key by key as a person on a ``layout`` keyboard would."""
    table = LAYOUTS[layout]
    cdp = page.context.new_cdp_session(page)
    try:
        for char in text:
            code, shift = _key(char, table)
            key = "Enter" if char == "\n" else char
            _press(cdp, code, key, shift)
    finally:
        cdp.detach()
