"""`enkaku connect --monitor N` through the whole system: a VNC viewer sees one monitor."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.agent.test_monitors import RIGHT, crop, screen, two_monitors
from tests.xdisplay import x_env

from .harness import VNCDO, World, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.x11,
    pytest.mark.skipif(shutil.which("xrandr") is None, reason="xrandr: run scripts/bootstrap"),
]


def test_connect_monitor_2_serves_that_monitor_alone(world: World, tmp_path: Path) -> None:
    with two_monitors() as display:
        agent = world.agent(display)
        creds = agent.next_line(60, event="credentials")
        tech = world.connect(creds["agent_id"], creds["password"], "--monitor", "2")
        port = int(tech.next_line(60, event="vnc_listening")["port"])
        shot = tmp_path / "monitor2.png"
        target = f"127.0.0.1::{port}"

        def same() -> bool:
            subprocess.run(
                [VNCDO, "-s", target, "--nocursor", "capture", str(shot)],
                check=True, timeout=120, capture_output=True,
            )  # fmt: skip
            rgb = np.asarray(Image.open(shot).convert("RGB")).astype(np.uint32)
            assert rgb.shape[:2] == (RIGHT.h, RIGHT.w)  # the monitor's size, not the screen's
            got = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
            return bool(np.array_equal(got, crop(screen(display), RIGHT)))

        wait_for(same, 60, "a capture equal to monitor 2")
        # A pointer move at (10, 20) of the viewer's picture is (1034, 20) on the screen.
        subprocess.run(
            [VNCDO, "-s", target, "--nocursor", "move", "10", "20"],
            check=True, timeout=120, capture_output=True,
        )  # fmt: skip

        def pointer() -> str:
            return subprocess.run(
                ["xdotool", "getmouselocation"], env=x_env(display), capture_output=True,
                text=True, check=True,
            ).stdout  # fmt: skip

        wait_for(lambda: pointer().startswith("x:1034 y:20 "), 30, "the pointer on monitor 2")
