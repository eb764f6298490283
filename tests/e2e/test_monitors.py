"""`enkaku connect --monitor N` through the whole system: a VNC viewer sees one monitor;
a number the customer's desktop does not have is explained to the technician."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.agent.test_monitors import RIGHT, H, W, crop, screen, two_monitors
from tests.xdisplay import x_env, xvfb

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
        # Monitor 2 exists: nothing to explain.
        assert "no monitor" not in tech.stderr(None)


def test_connect_monitor_5_of_2_says_which_monitors_there_are(world: World, tmp_path: Path) -> None:
    with two_monitors() as display:
        agent = world.agent(display)
        creds = agent.next_line(60, event="credentials")
        tech = world.connect(creds["agent_id"], creds["password"], "--monitor", "5")
        # Before the VNC port accepts viewers: what they will see instead, and why.
        event = tech.next_line(60, event="monitor_missing")
        assert event == {
            "event": "monitor_missing",
            "monitor": 5,
            "desktop": {"width": W, "height": H},
            "monitors": [
                {"number": 1, "x": 0, "y": 0, "width": 1024, "height": 768},
                {"number": 2, "x": 1024, "y": 0, "width": 800, "height": 600},
            ],
        }
        port = int(tech.next_line(60, event="vnc_listening")["port"])
        assert (
            "The customer's desktop has no monitor 5: VNC viewers see the whole desktop "
            "(1824×768) instead. Its monitors: 1 (1024×768), 2 (800×600). To show one alone, "
            "end this session and connect again with --monitor and one of these numbers."
        ) in tech.stderr(None)
        # And that is what a viewer gets: the whole desktop, exactly.
        shot = tmp_path / "desktop.png"

        def whole() -> bool:
            subprocess.run(
                [VNCDO, "-s", f"127.0.0.1::{port}", "--nocursor", "capture", str(shot)],
                check=True, timeout=120, capture_output=True,
            )  # fmt: skip
            rgb = np.asarray(Image.open(shot).convert("RGB")).astype(np.uint32)
            assert rgb.shape[:2] == (H, W)
            got = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
            return bool(np.array_equal(got, screen(display)))

        wait_for(whole, 60, "a capture equal to the whole desktop")


def test_connect_monitor_2_on_one_screen_says_it_in_japanese(world: World) -> None:
    with xvfb(1280, 800) as display:  # RandR's one monitor covers the whole screen
        agent = world.agent(display)
        creds = agent.next_line(60, event="credentials")
        tech = world.connect(
            creds["agent_id"], creds["password"], "--monitor", "2", env={"ENKAKU_LANG": "ja"}
        )
        event = tech.next_line(60, event="monitor_missing")
        assert event["desktop"] == {"width": 1280, "height": 800}
        assert event["monitors"] == [{"number": 1, "x": 0, "y": 0, "width": 1280, "height": 800}]
        tech.next_line(60, event="vnc_listening")
        assert (
            "お客様のデスクトップにモニター 2 はありません。画面は 1 つ (1280×800) だけで、"
            "VNC ビューアーにはその全体を表示します。このコンピューターには --monitor は不要です。"
        ) in tech.stderr(None)
