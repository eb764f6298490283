"""The console's service clients (console/src/services, TypeScript under Node) against a
real server and a real Python agent on Xvfb: system information, a file each way, a
folder as .tar, a listing, a screenshot, a terminal command and a typed text, each
checked on the customer's side (console/test/node/services.test.ts does the JS part).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.console.test_js_channel import CONSOLE, _create_session, _missing_node
from tests.e2e.harness import World, free_port, make_db, saved_token, server_process, wait_for
from tests.e2e.test_type_text import cat_into
from tests.xdisplay import xvfb, xwd_root

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

TYPED = 'js|~_"@ 日本語\n'


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        server_process(w, make_db(tmp_path), free_port())
        w.login()
        yield w
    finally:
        w.close()


def test_every_service_client_with_the_python_agent(world: World, tmp_path: Path) -> None:
    missing = _missing_node()
    if missing is not None:
        pytest.skip(missing)
    work = tmp_path / "customer"
    (work / "folder" / "sub").mkdir(parents=True)
    data = os.urandom(2 * 1024 * 1024 + 17)
    (work / "customer.bin").write_bytes(data)
    (work / "folder" / "a.txt").write_text("a\n")
    (work / "folder" / "sub" / "b.txt").write_text("bb\n")
    typed = tmp_path / "typed.txt"
    result_file = tmp_path / "js-result.json"

    with xvfb(640, 480) as display, cat_into(display, typed):
        agent = world.agent(display)  # --consent allow
        creds = agent.next_line(60, event="credentials")
        created = asyncio.run(
            _create_session(world.server_url, saved_token(world), creds["agent_id"])
        )
        env = dict(
            os.environ,
            ENKAKU_E2E_RELAY_URL=created["relay_url"],
            ENKAKU_E2E_RELAY_TOKEN=created["relay_token"],
            ENKAKU_E2E_AGENT_ID=creds["agent_id"],
            ENKAKU_E2E_PASSWORD=creds["password"],
            ENKAKU_E2E_WORK=str(work),
            ENKAKU_E2E_SIZE=str(len(data)),
            ENKAKU_E2E_TYPE=TYPED,
            ENKAKU_E2E_RESULT=str(result_file),
        )
        run = subprocess.run(
            ["npx", "vitest", "run", "test/node/services.test.ts"],
            cwd=CONSOLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        screen = xwd_root(display)

        # System information: the report, findings first, in Japanese.
        assert result["sysinfo"]["keys"] == ["format", "findings"]
        assert (
            result["sysinfo"]["groups"] > 0 and result["sysinfo"]["title"] == "システム情報レポート"
        )

        # A file to the customer: the same bytes there, under its name.
        sent = result["sent"]
        assert sent["name"] == "from-console.bin" and sent["sha256"] == sent["expected"]
        there = (work / "from-console.bin").read_bytes()
        assert hashlib.sha256(there).hexdigest() == sent["expected"]
        assert sent["progressEvents"] >= 2
        assert not [p for p in work.iterdir() if p.name.startswith(".enkaku-")]

        # The listing, folders first; a file and a folder back from the customer.
        assert result["listing"][0] == ["folder", "dir", 0]
        assert ["customer.bin", "file", len(data)] in result["listing"]
        assert result["taken"] == {
            "name": "customer.bin",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        assert result["folder"] == {"name": "folder.tar", "archive": True, "skipped": 0}
        with tarfile.open(f"{result_file}.tar") as tar:
            names = sorted(tar.getnames())
            assert names == ["folder", "folder/a.txt", "folder/sub", "folder/sub/b.txt"]
            member = tar.extractfile("folder/sub/b.txt")
            assert member is not None and member.read() == b"bb\n"

        # The screenshot is the screen, pixel for pixel (the xterm is idle: nothing moves
        # until the text is typed, and the typed text changes only its first line).
        assert result["screenshot"] == [640, 480]
        shot = np.asarray(Image.open(f"{result_file}.png").convert("RGB"))
        assert shot.shape == screen.shape
        assert np.array_equal(shot[100:], screen[100:])

        # The terminal ran the command and reported the exit status.
        terminal = result["terminal"]
        assert "js-term-42" in terminal["output"]
        assert terminal["end"] == {"how": "exit", "status": 3}
        assert terminal["hello"]["root"] is (os.geteuid() == 0)

        # The typed text arrived in the xterm (cat wrote it to the file).
        assert result["typed"] == len(TYPED)
        wait_for(lambda: typed.read_text(encoding="utf-8") == TYPED, 60, "the typed line")
