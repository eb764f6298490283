"""The remote screen through the whole system, checked with VNC clients nobody here wrote."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.xdisplay import xvfb, xvfb_pid, xwd_root

from .harness import VNCDO, InProcessServer, Proc, World, wait_for, xterm_on

pytestmark = [pytest.mark.e2e, pytest.mark.x11]


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A private Xvfb with an xterm whose shell runs in a scratch folder."""
    work = tmp_path / "desk"
    work.mkdir()
    with xvfb(800, 600) as display, xterm_on(display, work):
        yield display, work


def vncdo(port: int, *commands: str) -> None:
    subprocess.run(
        [VNCDO, "-s", f"127.0.0.1::{port}", *commands], check=True, timeout=120, capture_output=True
    )


def _agent_log(world: World) -> str:
    return next(p for p in world.procs if p.name == "agent").stderr(None)


def bridge(world: World, display: str) -> tuple[int, str, Proc]:
    """Agent on ``display`` and `enkaku connect --vnc-listen`; returns port, password, CLI."""
    agent = world.agent(display)
    creds = agent.next_line(60, event="credentials")
    tech = world.connect(creds["agent_id"], creds["password"])
    port = tech.next_line(60, event="vnc_listening")["port"]
    return int(port), creds["password"], tech


def captured_exactly(port: int, display: str, tmp_path: Path) -> bool:
    """Whether vncdotool's capture through ``port`` equals the X server's own image of
    ``display`` (xwd)."""
    shot = tmp_path / "capture.png"
    vncdo(port, "capture", str(shot))
    got = np.asarray(Image.open(shot).convert("RGB"))
    return bool(np.array_equal(got, xwd_root(display)))


def test_vncdotool_types_a_command_and_captures_the_exact_screen(
    inproc: tuple[World, InProcessServer],
    desktop: tuple[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="enkaku")  # the in-process server, at DEBUG
    world, server = inproc
    display, work = desktop
    port, password, tech = bridge(world, display)
    secret_text = "enkaku-typed-7Q"
    vncdo(port, "type", f"echo {secret_text} > result.txt", "key", "enter")
    out = work / "result.txt"
    wait_for(lambda: out.exists() and out.read_text() == f"{secret_text}\n", 30, "typed command")
    # vncdotool's capture against the X server's own image of the screen.
    wait_for(lambda: captured_exactly(port, display, tmp_path), 30, "a capture equal to the screen")
    # The relay carried the whole session and never any of it in the clear.
    frames = [data for _s, _r, data in server.relayed]
    assert sum(len(f) for f in frames) > 10_000
    blob = b"".join(frames)
    needles = [
        b"RFB 003.008",
        secret_text.encode(),
        b"result.txt",
        password.encode(),
        password.replace("-", "").encode(),
    ]
    for needle in needles:
        assert needle not in blob
    # Typed text crosses as individual key events: no keysym run of it appears either.
    keysyms = b"".join(b"\x04\x01\x00\x00\x00\x00\x00" + bytes([c]) for c in b"enkaku")
    assert keysyms not in blob
    tech.signal(signal.SIGINT)
    assert tech.wait(30) == 0
    # No log holds the password or what was typed: not the server's (DEBUG, in this
    # process), not the technician's (-vv). The agent's stderr shows the password by
    # design (it is the customer's screen) but never the typed text.
    logs = {"server": caplog.text, "technician": tech.stderr(None), "agent": _agent_log(world)}
    for name, text in logs.items():
        assert secret_text not in text, name
        if name != "agent":
            assert password not in text and password.replace("-", "") not in text, name


@pytest.mark.parametrize("encoding", ["ZRLE", "Tight"])
def test_tigervnc_viewer_shows_the_remote_screen(
    inproc: tuple[World, InProcessServer], desktop: tuple[str, Path], encoding: str
) -> None:
    world, _server = inproc
    display, _work = desktop
    port, _password, _tech = bridge(world, display)
    with xvfb(1024, 768) as viewer_display:
        env = dict(world.env(), DISPLAY=viewer_display)
        viewer = subprocess.Popen(
            [
                "xtigervncviewer",
                "-SecurityTypes",
                "None",
                "-AutoSelect=0",
                "-PreferredEncoding",
                encoding,
                "-NoJPEG",
                "-FullScreen=0",
                "-RemoteResize=0",
                f"127.0.0.1::{port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            source = xwd_root(display)
            h, w = source.shape[:2]

            def first_lit(img: np.ndarray) -> tuple[int, int] | None:
                ys, xs = np.nonzero(img.any(axis=2))
                return (int(ys[0]), int(xs[0])) if ys.size else None

            def shown() -> bool:
                seen = xwd_root(viewer_display)
                # Find the remote screen in the viewer's window by its first lit pixel,
                # then require every pixel of it to match (the viewer's F8 hint fades).
                a, b = first_lit(source), first_lit(seen)
                if a is None or b is None:
                    return False
                dy, dx = b[0] - a[0], b[1] - a[1]
                if dy < 0 or dx < 0 or dy + h > seen.shape[0] or dx + w > seen.shape[1]:
                    return False
                return bool(np.array_equal(seen[dy : dy + h, dx : dx + w], source))

            wait_for(shown, 60, "the viewer to show the remote screen")
        finally:
            viewer.terminate()
            viewer.wait(10)


def test_an_agent_without_a_screen_says_so_to_the_viewer(
    inproc: tuple[World, InProcessServer], tmp_path: Path
) -> None:
    world, _server = inproc
    agent = world.agent(None)  # no display at all
    creds = agent.next_line(60, event="credentials")
    tech = world.connect(creds["agent_id"], creds["password"])
    port = tech.next_line(60, event="vnc_listening")["port"]
    result = subprocess.run(
        [VNCDO, "-t", "60", "-s", f"127.0.0.1::{port}", "capture", str(tmp_path / "x.png")],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stderr  # the viewer is refused, not left hanging
    assert not (tmp_path / "x.png").exists()
    wait_for(lambda: "no screen to share" in tech.stderr(), 30, "the technician's message")
    tech.signal(signal.SIGINT)
    assert tech.wait(30) == 0


def test_a_screen_that_went_away_says_so_to_the_viewer(
    inproc: tuple[World, InProcessServer], tmp_path: Path
) -> None:
    world, _server = inproc
    with xvfb(320, 200) as display:
        port, _password, tech = bridge(world, display)
        vncdo(port, "capture", str(tmp_path / "before.png"))  # the screen is served
        os.kill(xvfb_pid(display), signal.SIGKILL)  # then the customer's X server dies
        result = subprocess.run(
            [VNCDO, "-t", "60", "-s", f"127.0.0.1::{port}", "capture", str(tmp_path / "x.png")],
            capture_output=True,
            timeout=120,
        )
    assert result.returncode != 0, result.stderr  # refused, not left hanging
    assert not (tmp_path / "x.png").exists()
    wait_for(lambda: "stopped being shared" in tech.stderr(), 30, "the technician's message")
    assert "no screen to share" not in tech.stderr()
    tech.signal(signal.SIGINT)
    assert tech.wait(30) == 0
