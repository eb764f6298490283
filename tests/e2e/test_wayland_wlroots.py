"""The remote screen of a wlroots desktop (headless sway with foot) through the whole
system: agent with the wayland-wlroots backend, relay, `enkaku connect --vnc-listen`,
and vncdotool as the viewer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.agent.test_clipboard_rfb import (
    LATIN1_FROM_CUSTOMER,
    LATIN1_TO_CUSTOMER,
    VNCDO_CLIPBOARD,
)
from tests.wayland import Sway, headless_sway

from .harness import VNCDO, InProcessServer, World, wait_for
from .test_clipboard import session

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


@pytest.mark.skipif(shutil.which("wl-copy") is None, reason="wl-clipboard: run scripts/bootstrap")
def test_the_clipboard_both_ways_on_sway_once_allowed(
    world: World, sway: Sway, rundir: Path
) -> None:
    """vncdotool's paste lands on sway's clipboard (wl-paste reads it), and wl-copy's
    text reaches vncdotool, through the agent's wlr-data-control clipboard."""
    agent = world.agent(None, env=sway.env)
    creds = agent.next_line(60, event="credentials")
    tech = world.connect(creds["agent_id"], creds["password"], env={"XDG_RUNTIME_DIR": str(rundir)})
    port = int(tech.next_line(60, event="vnc_listening")["port"])
    tech.next_line(30, event="control_socket")
    allowed = session(world, rundir, "allow", "clipboard")
    assert allowed.returncode == 0, allowed.stderr
    customer = {**os.environ, **sway.env}
    with subprocess.Popen(
        [sys.executable, "-c", VNCDO_CLIPBOARD, f"127.0.0.1::{port}", LATIN1_TO_CUSTOMER],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "pasted\n"

            def pasted() -> bool:
                out = subprocess.run(
                    ["wl-paste", "-n"], env=customer, capture_output=True, timeout=30
                )
                return out.stdout.decode() == LATIN1_TO_CUSTOMER

            wait_for(pasted, 30, "the technician's text on sway's clipboard")
            subprocess.run(
                ["wl-copy", LATIN1_FROM_CUSTOMER], env=customer, check=True, timeout=30,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            assert json.loads(proc.stdout.readline()) == LATIN1_FROM_CUSTOMER
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
