"""The remote screen of a wlroots desktop (headless sway with foot) through the whole
system: agent with the wayland-wlroots backend, relay, `enkaku connect --vnc-listen`,
and vncdotool as the viewer."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.wayland import Sway, headless_sway

from .harness import VNCDO, InProcessServer, World, wait_for

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def sway() -> Iterator[Sway]:
    with headless_sway(800, 600) as s:
        yield s


def vncdo(port: int, *commands: str) -> None:
    subprocess.run(
        [VNCDO, "-s", f"127.0.0.1::{port}", *commands], check=True, timeout=120, capture_output=True
    )


def test_vncdotool_types_into_foot_on_sway_and_captures_what_grim_sees(
    inproc: tuple[World, InProcessServer], sway: Sway, tmp_path: Path
) -> None:
    world, _server = inproc
    # auto detection: no --display, $WAYLAND_DISPLAY names sway's socket.
    agent = world.agent(None, env=sway.env)
    creds = agent.next_line(60, event="credentials")
    tech = world.connect(creds["agent_id"], creds["password"])
    port = int(tech.next_line(60, event="vnc_listening")["port"])
    # vncdotool hangs up right after its last key: that key must still arrive (it did
    # not while each screen connection made and destroyed its own virtual keyboard).
    vncdo(port, "type", "echo wayland-typed-9K > result.txt", "key", "enter")
    out = sway.work / "result.txt"
    wait_for(lambda: out.exists() and out.read_text() == "wayland-typed-9K\n", 30, "typed command")
    vncdo(port, "type", "echo again > second.txt", "key", "enter")
    second = sway.work / "second.txt"
    wait_for(lambda: second.exists(), 30, "a command typed over a second connection")
    shot = tmp_path / "capture.png"

    def same() -> bool:
        vncdo(port, "capture", str(shot))
        got = np.asarray(Image.open(shot).convert("RGB"))
        return bool(np.array_equal(got, sway.grim()))

    wait_for(same, 30, "a capture equal to grim's screenshot")
    assert "screen backend: wayland-wlroots" in agent.stderr(None)
