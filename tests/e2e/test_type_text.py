"""`enkaku session type` against a real server and agent on Xvfb: the text arrives in an
xterm running `cat > file` (UTF-8), read back from the customer's side; the text is in
no log."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.xdisplay import stop, xvfb

from .harness import ENKAKU, World, wait_for
from .test_session_tools import hold

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

SYMBOLS = '|~_"@'
#: More characters outside the keyboard map than it has spare keycodes (19 on Xvfb):
#: some keycodes are rebound while the text is typed.
JAPANESE = "日本語のパスワード é ß あいうえおかきくけこさしすせそたちつてと"


@contextmanager
def cat_into(display: str, target: Path) -> Iterator[subprocess.Popen[bytes]]:
    """An xterm in UTF-8 mode whose shell runs `cat > target`, under the pointer (the
    keyboard focus of a display without a window manager); yields the xterm's process."""
    env = dict(os.environ, DISPLAY=display, LANG="C.UTF-8", LC_ALL="C.UTF-8")
    proc = subprocess.Popen(
        ["xterm", "-u8", "-geometry", "80x24+0+0", "-e", "sh", "-c", f"cat > '{target}'"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def mapped() -> bool:
            found = subprocess.run(
                ["xdotool", "search", "--onlyvisible", "--class", "xterm"],
                env=env,
                capture_output=True,
            )
            return found.returncode == 0 and target.exists()

        wait_for(mapped, 90, "xterm running cat")
        subprocess.run(["xdotool", "mousemove", "100", "100"], env=env, check=True)
        yield proc
    finally:
        stop(proc)


def typed_lines(target: Path, n: int) -> list[str] | None:
    lines = target.read_bytes().decode("utf-8").split("\n")
    return lines[:n] if len(lines) > n else None


def test_symbols_and_japanese_are_typed_on_the_customers_screen(
    world: World, rundir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "typed.txt"
    with xvfb(800, 600) as display, cat_into(display, target):
        held = hold(world, rundir, world.agent(display))

        done = held.session("type", f"pw{SYMBOLS}", "--enter")
        assert done.returncode == 0, done.stderr
        assert "8 keys" in done.stderr  # 7 characters and Enter

        # From stdin (a password need not be on the command line): the final line
        # break of the input is not typed, --enter adds one.
        done = held.session("type", "--stdin", "--enter", "--json", stdin=JAPANESE + "\n")
        assert done.returncode == 0, done.stderr
        assert f'"typed": {len(JAPANESE) + 1}' in done.stdout

        lines = wait_for(lambda: typed_lines(target, 2), 60, "both lines in the file")
        assert lines == [f"pw{SYMBOLS}", JAPANESE]

        # A control character is refused before the customer is asked anything.
        bad = held.session("type", "a\x1bb")
        assert bad.returncode != 0
        assert "control character" in bad.stderr
        usage = held.session("type")
        assert usage.returncode == 2 and "--stdin" in usage.stderr

        for proc in (held.agent, held.tech):
            log = proc.stderr(None)
            assert SYMBOLS not in log and "パスワード" not in log, proc.name


def test_the_typed_text_waits_for_control(world: World, rundir: Path, tmp_path: Path) -> None:
    """An agent without a display refuses typing with its own message."""
    held = hold(world, rundir, world.agent(None))
    done = held.session("type", "hello")
    assert done.returncode == 1, done.stderr
    assert "no screen or keyboard" in done.stderr
    assert "Traceback" not in done.stderr
    assert ENKAKU
