"""One private Xvfb for all the window tests and a fresh Tk root on it per test.

One display for the whole run, not one per module: Tk keeps a display connection open
after its root is destroyed, and an Xvfb stopped under it hung the next test's Tk.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import tkinter as tk
from collections.abc import Iterator

import pytest

from enkaku.agent.window.fonts import Fonts, setup
from tests.xdisplay import xvfb


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    if shutil.which("xdotool") is None:
        pytest.fail("xdotool is not installed: run scripts/bootstrap")
    with xvfb(1024, 768) as d:
        yield d


#: Every root a test made, kept until the process exits: a Tk interpreter freed by a
#: garbage collection that happens to run on another thread (a later test's loop or
#: server thread) makes Tcl abort the process.
_ROOTS: list[tk.Tk] = []


@pytest.fixture
def root(display: str) -> Iterator[tk.Tk]:
    gc.collect()  # an earlier test's windows and fonts, on this (Tk's) thread
    r = tk.Tk(screenName=display, className="enkaku")
    _ROOTS.append(r)
    try:
        yield r
    finally:
        with contextlib.suppress(tk.TclError):  # the test may have destroyed it
            r.destroy()
        gc.collect()


@pytest.fixture
def fonts(root: tk.Tk) -> Fonts:
    return setup(root)
