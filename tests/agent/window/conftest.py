"""A private Xvfb per module and a fresh Tk root on it per test."""

from __future__ import annotations

import contextlib
import shutil
import tkinter as tk
from collections.abc import Iterator

import pytest

from enkaku.agent.window.fonts import Fonts, setup
from tests.xdisplay import xvfb

pytestmark = pytest.mark.x11


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    if shutil.which("xdotool") is None:
        pytest.fail("xdotool is not installed: run scripts/bootstrap")
    with xvfb(1024, 768) as d:
        yield d


@pytest.fixture
def root(display: str) -> Iterator[tk.Tk]:
    r = tk.Tk(screenName=display, className="enkaku")
    try:
        yield r
    finally:
        with contextlib.suppress(tk.TclError):  # the test may have destroyed it
            r.destroy()


@pytest.fixture
def fonts(root: tk.Tk) -> Fonts:
    return setup(root)
