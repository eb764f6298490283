"""X11Clipboard on a real Xvfb: one instance plays the customer's program, the other the
agent; ``xtigervncviewer``-free, so these run wherever Xvfb does."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from enkaku.agent import x11lib
from enkaku.agent.clipboard import ClipboardError
from enkaku.agent.clipboard.x11 import X11Clipboard
from tests.xdisplay import stop, x_env, xvfb

pytestmark = pytest.mark.x11


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb() as name:
        yield name


@contextmanager
def boards(display: str, count: int = 2, **kw: int) -> Iterator[list[X11Clipboard]]:
    opened = [X11Clipboard(display, **kw) for _ in range(count)]  # type: ignore[arg-type]
    try:
        yield opened
    finally:
        for board in opened:
            board.close()


def test_text_both_ways_and_changes_are_seen(display: str) -> None:
    with boards(display) as (agent, customer):
        seen = threading.Event()
        agent.watch(seen.set)
        customer.set_text("日本語のテキスト\nline 2 ✓")
        assert seen.wait(10)  # XFixes told us another program copied
        assert agent.read_text() == "日本語のテキスト\nline 2 ✓"
        seen.clear()
        agent.set_text("技術者から")
        assert customer.read_text() == "技術者から"
        assert agent.read_text() == "技術者から"  # our own text, without a round trip
        customer.set_text("again")  # an X round trip after our own copy...
        assert seen.wait(10)
        assert agent.read_text() == "again"


def test_own_copies_are_not_reported(display: str) -> None:
    with boards(display, 1) as (agent,), boards(display, 1, primary=False) as (customer,):
        calls: list[str] = []
        agent.watch(lambda: calls.append("copied"))
        agent.set_text("mine")  # CLIPBOARD and PRIMARY: two owner changes, both ours
        customer.set_text("theirs")  # CLIPBOARD only: one owner change
        # The answer comes after every event the X server sent before it, so by now
        # the agent's thread has seen all three owner changes.
        assert agent.read_text() == "theirs"
        assert calls == ["copied"]


def test_primary_is_the_fallback(display: str) -> None:
    with boards(display) as (agent, customer):
        customer.set_text("selected with the mouse")
        assert agent.read_text() == "selected with the mouse"
    with boards(display, 1) as (agent,):
        assert agent.read_text() is None  # the owner left: nothing on either selection


def test_primary_false_owns_clipboard_only(display: str) -> None:
    with boards(display, 1) as (reader,), boards(display, 1, primary=False) as (writer,):
        writer.set_text("clipboard only")
        x11 = writer._conn.x11
        dpy = reader._conn.dpy
        assert x11.XGetSelectionOwner(dpy, 1) == 0  # XA_PRIMARY: nobody
        assert reader.read_text() == "clipboard only"


def test_text_over_the_limit_is_not_read(display: str) -> None:
    with boards(display, 1, max_bytes=1000) as (agent,), boards(display, 1) as (customer,):
        customer.set_text("x" * 1001)
        assert agent.read_text() is None
        customer.set_text("ü" * 500)  # 1000 UTF-8 bytes: exactly the limit
        assert agent.read_text() == "ü" * 500


def test_an_owner_that_never_answers_times_out(display: str) -> None:
    """A program owns CLIPBOARD but never serves it: the read gives up, then falls back."""
    x11 = x11lib.load("X11", ClipboardError)
    silent = x11lib.XConnection(display, ClipboardError)
    with boards(display, 2) as (agent, customer):
        try:
            window = x11.XCreateSimpleWindow(silent.dpy, silent.root, 0, 0, 1, 1, 0, 0, 0)
            clipboard = x11.XInternAtom(silent.dpy, b"CLIPBOARD", 0)
            customer.set_text("on primary")
            x11.XSetSelectionOwner(silent.dpy, clipboard, window, 0)
            silent.sync_errors()
            assert agent.read_text() == "on primary"  # CLIPBOARD timed out, PRIMARY read
        finally:
            silent.close()


def test_closed_clipboard_refuses_work(display: str) -> None:
    board = X11Clipboard(display)
    board.close()
    board.close()  # twice is fine
    with pytest.raises(ClipboardError, match="closed"):
        board.read_text()
    with pytest.raises(ClipboardError, match="closed"):
        board.set_text("x")


def test_no_display_is_a_clear_error() -> None:
    with pytest.raises(ClipboardError, match="cannot open X display"):
        X11Clipboard(":9999")


#: Tk serves selections over 4000 bytes in INCR chunks (tkUnixSelect.c): a real peer
#: for the large-transfer path. Reads one JSON line (the text) and owns CLIPBOARD.
TK_OWNER = """
import json, sys, tkinter
root = tkinter.Tk()
root.withdraw()
root.clipboard_clear()
root.clipboard_append(json.loads(sys.stdin.readline()))
root.update()
print("ready", flush=True)
root.mainloop()
"""


@contextmanager
def tk_owner(display: str, text: str) -> Iterator[None]:
    """A Tk program on ``display`` that copied ``text``; stopped by PID afterwards."""
    pytest.importorskip("tkinter")
    env = x_env(display) | {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        [sys.executable, "-c", TK_OWNER], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(text) + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "ready\n"
        yield
    finally:
        stop(proc)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def test_large_text_arrives_in_incr_chunks(display: str) -> None:
    text = "日本語のテキスト、" * 20000 + "\n終わり"  # 540 kB of UTF-8
    with tk_owner(display, text), boards(display, 1) as (agent,):
        assert agent.read_text() == text
    with tk_owner(display, "x" * 5000), boards(display, 1, max_bytes=4500) as (agent,):
        assert agent.read_text() is None  # over the limit, found mid-transfer
