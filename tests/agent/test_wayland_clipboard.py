"""The clipboard on a wlroots compositor (wlr-data-control) against a real headless sway,
with foot (Ctrl+Shift+V / Ctrl+Shift+C) and wl-clipboard (wl-copy, wl-paste) as the
customer's programs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from enkaku.agent.backends import select_backend
from enkaku.agent.clipboard.base import ClipboardError
from enkaku.agent.clipboard.wlroots import WlrootsClipboard
from enkaku.agent.input.wlroots import WlrootsInput
from enkaku.agent.wayland.connection import WaylandConnection
from enkaku.agent.wayland.protocols import EXT_DATA_CONTROL, WLR_DATA_CONTROL
from tests.agent.test_wayland_wlroots import combo, type_text
from tests.e2e.harness import wait_for
from tests.wayland import Sway, headless_sway

pytestmark = pytest.mark.skipif(
    shutil.which("wl-copy") is None, reason="wl-clipboard missing: run scripts/bootstrap"
)

CONTROL, SHIFT = 0xFFE3, 0xFFE1


@pytest.fixture(scope="module")
def sway() -> Iterator[Sway]:
    with headless_sway(640, 480) as s:
        yield s


class Session(Protocol):
    """A compositor the tests start (``Sway``, ``tests.kde.KWin``)."""

    @property
    def env(self) -> dict[str, str]: ...


def wl(sway: Session, *args: str) -> subprocess.CompletedProcess[bytes]:
    """A wl-clipboard command on the compositor. wl-copy forks and serves its text from
    the background until another program copies: its output is not captured (the pipe
    would stay open), so only its start is waited for."""
    copy = args[0] == "wl-copy"
    return subprocess.run(
        list(args), env={**os.environ, **sway.env}, timeout=30, check=True,
        stdout=subprocess.DEVNULL if copy else subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_the_clipboard_both_ways_with_foot_and_wl_clipboard(sway: Sway) -> None:
    display = sway.env["WAYLAND_DISPLAY"]
    with WlrootsInput(display) as inp, WlrootsClipboard(display) as clip:
        changes: list[int] = []
        clip.watch(lambda: changes.append(1))
        # The technician's text: on the clipboard for wl-paste, and pasted in foot.
        text = "クリップ ¥ paste-9 技術者"
        clip.set_text(text)
        assert clip.read_text() == text
        assert wl(sway, "wl-paste", "--no-newline").stdout.decode() == text
        type_text(inp, "cat > clip.txt\n")
        wait_for((sway.work / "clip.txt").exists, 30, "cat started")
        combo(inp, CONTROL, SHIFT, ord("V"))
        type_text(inp, "\n")
        combo(inp, CONTROL, ord("d"))
        out = sway.work / "clip.txt"
        wait_for(lambda: out.read_text() == text + "\n", 30, "the pasted text in the file")
        assert changes == []  # our own text is no change from another program
        # The customer's copy in foot: its search (Ctrl+Shift+R) selects the text once it
        # is in the terminal, Ctrl+Shift+C copies it.
        type_text(inp, "echo copy-me-42; : > echoed.txt\n")
        wait_for((sway.work / "echoed.txt").exists, 30, "the text in the terminal")
        combo(inp, CONTROL, SHIFT, ord("R"))
        type_text(inp, "copy-me-42\n")
        combo(inp, CONTROL, SHIFT, ord("C"))
        wait_for(lambda: clip.read_text() == "copy-me-42", 30, "foot's copy read")
        assert changes
        # Another program's copy, in Japanese; then the clipboard emptied.
        seen = len(changes)
        wl(sway, "wl-copy", "お客様のコピー ✓")
        wait_for(lambda: len(changes) > seen, 30, "wl-copy's copy announced")
        assert clip.read_text() == "お客様のコピー ✓"
        wl(sway, "wl-copy", "--clear")
        wait_for(lambda: clip.read_text() is None, 30, "the emptied clipboard")


def test_too_long_texts_are_refused_both_ways(sway: Sway) -> None:
    display = sway.env["WAYLAND_DISPLAY"]
    with WlrootsClipboard(display, max_bytes=64) as clip:
        with pytest.raises(ClipboardError, match="too long"):
            clip.set_text("x" * 65)
        wl(sway, "wl-copy", "y" * 200)
        wait_for(lambda: wl(sway, "wl-paste", "-n").stdout == b"y" * 200, 30, "wl-copy")
        assert clip.read_text() is None  # too long: not read, not cut
        wl(sway, "wl-copy", "short")
        wait_for(lambda: clip.read_text() == "short", 30, "a short text")


def test_the_wlroots_backend_brings_the_clipboard_and_a_lost_compositor_is_an_error() -> None:
    with headless_sway(320, 240) as s:
        _capture, _injector, factory = select_backend("auto", None, s.env)
        assert factory is not None
        clip = factory()
        clip.set_text("from the factory")
        assert wl(s, "wl-paste", "-n").stdout.decode() == "from the factory"
    # sway is gone: calls fail with ClipboardError instead of hanging.
    deadline = time.monotonic() + 10
    with pytest.raises(ClipboardError):
        while time.monotonic() < deadline:
            clip.set_text("after the end")
            time.sleep(0.1)
    clip.close()


def test_offers_belong_to_the_clipboards_own_connection(sway: Sway) -> None:
    """pywayland gives an object the compositor creates the display of the process's
    first live registry: another connection opened earlier (the backend probe, the
    capture) must not own, or destroy, the clipboard's offers."""
    display = sway.env["WAYLAND_DISPLAY"]
    first = WaylandConnection(display)  # the process's first registry from now on
    try:
        with WlrootsClipboard(display) as clip:
            wl(sway, "wl-copy", "offer-home-1")
            wait_for(lambda: clip.read_text() == "offer-home-1", 30, "the copy")
            offer = clip._offer
            assert offer is not None and offer._display is clip._conn.display
            first.close()  # its proxies go; the clipboard's offer is not among them
            assert not offer.destroyed
            wl(sway, "wl-copy", "offer-home-2")
            wait_for(lambda: clip.read_text() == "offer-home-2", 30, "the next copy")
    finally:
        first.close()


def test_a_letter_released_in_the_other_case_is_released_and_shortcuts_keep_shift(
    sway: Sway,
) -> None:
    with WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp:
        dev = inp._dev
        # Shift, A pressed, Shift let go, then the release comes as a small a.
        inp.key(SHIFT, True)
        inp.key(ord("A"), True)
        inp.key(SHIFT, False)
        assert dev.stated == (1, 0)  # A still reads as a capital: Shift stated
        inp.key(ord("a"), False)
        assert inp._held == {} and dev.level is None and dev.stated == (0, 0)
        # Control held: Shift is the viewer's, whatever the letter's case (a viewer
        # under a Caps Lock it never reported sends A for Ctrl+A).
        inp.key(CONTROL, True)
        inp.key(ord("A"), True)
        assert dev.stated == (4, 0)  # Control alone
        inp.key(ord("A"), False)
        inp.key(SHIFT, True)
        inp.key(ord("v"), True)
        assert dev.stated == (5, 0)  # Control and Shift, as held
        inp.release_all()
        assert dev.stated == (0, 0)


def test_the_standard_data_control_protocol_has_the_wlroots_messages() -> None:
    """KWin (Plasma 6.5 and later) offers only ext-data-control-v1, the standard form of
    wlr-data-control: the same requests and events in the same order (plus the primary
    selection, let go). No compositor here offers it; its shape is checked instead."""

    def shape(messages: list[Any]) -> list[tuple[str, list[tuple[Any, bool]]]]:
        return [(m.name, [(a.argument_type, a.nullable) for a in m.arguments]) for m in messages]

    for wlr, ext in zip(WLR_DATA_CONTROL[:4], EXT_DATA_CONTROL[:4], strict=True):
        assert ext.name == "ext" + wlr.name.removeprefix("zwlr")
        assert shape(ext.requests)[: len(wlr.requests)] == shape(wlr.requests)
        assert shape(ext.events)[: len(wlr.events)] == shape(wlr.events)
    device = EXT_DATA_CONTROL.device
    assert [m.name for m in device.requests][2:] == ["set_primary_selection"]
    assert [m.name for m in device.events][3:] == ["primary_selection"]
