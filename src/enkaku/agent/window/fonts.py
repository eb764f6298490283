"""Fonts that render Japanese: the first installed family of a list, set as Tk's default.

A stock Debian or Ubuntu desktop gets them from ``fonts-noto-cjk``; without any of them
Tk falls back to its own default and kana may show as boxes (docs/agent-window.md).
"""

from __future__ import annotations

import tkinter as tk
from dataclasses import dataclass
from tkinter import font as tkfont

#: Preferred families, best first (Noto CJK from fonts-noto-cjk, then older packages).
UI_FAMILIES = (
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "IPAexGothic",
    "IPAPGothic",
    "TakaoPGothic",
    "VL PGothic",
    "Droid Sans Fallback",
    "DejaVu Sans",
)
MONO_FAMILIES = ("Noto Sans Mono CJK JP", "DejaVu Sans Mono", "Liberation Mono")


@dataclass(frozen=True)
class Fonts:
    """The named fonts the window's widgets use."""

    family: str
    body: tkfont.Font
    bold: tkfont.Font
    small: tkfont.Font
    big: tkfont.Font


def pick(installed: set[str], preferred: tuple[str, ...], default: str) -> str:
    """The first of ``preferred`` that is installed, else ``default``."""
    return next((f for f in preferred if f in installed), default)


def setup(root: tk.Misc) -> Fonts:
    """Make the best Japanese-capable family Tk's default; the fonts for the window."""
    installed = set(tkfont.families(root))
    default = tkfont.nametofont("TkDefaultFont", root)
    family = pick(installed, UI_FAMILIES, default.actual("family"))
    mono = pick(installed, MONO_FAMILIES, family)
    for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont", "TkCaptionFont"):
        tkfont.nametofont(name, root).configure(family=family, size=11)
    return Fonts(
        family=family,
        body=tkfont.Font(root, family=family, size=11),
        bold=tkfont.Font(root, family=family, size=12, weight="bold"),
        small=tkfont.Font(root, family=family, size=10),
        big=tkfont.Font(root, family=mono, size=26, weight="bold"),
    )
