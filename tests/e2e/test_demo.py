"""`enkaku demo` starts, prints what it promises, and a scripted connect works."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.xdisplay import xwd_root

from .harness import ENKAKU, VNCDO, World, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

PROMISED = {"server_url", "console_url", "login", "login_password", "agent_id", "agent_password"}


def test_demo_json_then_scripted_connect(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        demo = world.spawn([ENKAKU, "demo", "--json"], "demo")
        info = demo.next_line(120)
        assert info.keys() >= PROMISED, info
        assert info["agent_id"].isdigit() and len(info["agent_id"]) == 9
        assert "automatic" in info["consent"]
        world.server_url = info["server_url"]
        # The console URL the demo prints opens the web console (its sign-in page).
        with urllib.request.urlopen(info["console_url"], timeout=30) as page:
            assert page.status == 200
            assert 'id="login-form"' in page.read().decode()
        subprocess.run(
            [ENKAKU, "login", "--server", info["server_url"], "--user", info["login"]],
            env=world.env(ENKAKU_LOGIN_PASSWORD=info["login_password"]),
            check=True,
            capture_output=True,
            timeout=60,
        )
        tech = world.connect(info["agent_id"], info["agent_password"])
        port = tech.next_line(60, event="vnc_listening")["port"]
        shot = tmp_path / "demo.png"

        def same() -> bool:
            subprocess.run(
                [VNCDO, "-s", f"127.0.0.1::{port}", "capture", str(shot)],
                check=True,
                timeout=60,
                capture_output=True,
            )
            got = np.asarray(Image.open(shot).convert("RGB"))
            return bool(np.array_equal(got, xwd_root(info["display"])))

        wait_for(same, 60, "the demo screen through the bridge")
        tech.signal(signal.SIGINT)
        assert tech.wait(30) == 0
        # The session ended, so the demo drew a new password and says so.
        new = demo.next_line(30, event="credentials")
        assert new["agent_password"] != info["agent_password"]
        demo.signal(signal.SIGINT)
        assert demo.wait(30) == 0
    finally:
        world.close()
