"""The remote screen of a GNOME desktop (headless mutter with foot) through the whole
system: agent with the wayland-gnome backend (auto-detected), relay, `enkaku connect
--vnc-listen`, and vncdotool as the viewer. No dialog is involved: mutter's
remote-desktop API asks nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.gnome import Mutter, headless_mutter

from .harness import VNCDO, InProcessServer, World, wait_for

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def gnome() -> Iterator[Mutter]:
    with headless_mutter(800, 600) as m:
        yield m


def vncdo(port: int, *commands: str) -> None:
    subprocess.run(
        [VNCDO, "-s", f"127.0.0.1::{port}", *commands], check=True, timeout=120, capture_output=True
    )


def test_vncdotool_types_into_foot_on_gnome_and_captures_what_mutter_shows(
    inproc: tuple[World, InProcessServer], gnome: Mutter, tmp_path: Path
) -> None:
    world, _server = inproc
    # auto detection: no --display; XDG_CURRENT_DESKTOP=GNOME and mutter on the bus.
    agent = world.agent(None, env=gnome.env)
    creds = agent.next_line(60, event="credentials")
    tech = world.connect(creds["agent_id"], creds["password"])
    port = int(tech.next_line(60, event="vnc_listening")["port"])
    # vncdotool hangs up right after its last key: that key must still arrive.
    vncdo(port, "type", "echo gnome-typed-7Q > result.txt", "key", "enter")
    out = gnome.work / "result.txt"
    wait_for(lambda: out.exists() and out.read_text() == "gnome-typed-7Q\n", 30, "typed command")
    vncdo(port, "type", "echo again > second.txt", "key", "enter")
    second = gnome.work / "second.txt"
    wait_for(lambda: second.exists(), 30, "a command typed over a second connection")
    shot = tmp_path / "capture.png"

    def same() -> bool:
        vncdo(port, "capture", str(shot))
        got = np.asarray(Image.open(shot).convert("RGB"))
        return bool(np.array_equal(got, gnome.screenshot()))

    wait_for(same, 30, "a capture equal to mutter's own screen-cast frame")
    log = agent.stderr(None)
    assert "screen backend: wayland-gnome" in log
