"""The console's own protocol code (console/src/protocol, TypeScript) as the technician,
against a real server and a real headless Python agent on an Xvfb display.

The test asks the server for a session through the API, then runs the JS technician
(console/test/node/technician.test.ts, under Node through Vitest, with the session in
its environment). It must complete the CPace handshake with the Python agent, receive
the consent, read the RFB ProtocolVersion and ServerInit through the noVNC adapter, get
system information, send a chat line and end the session. The server's record and the
agent's output show the outcome; the relay capture shows no plaintext.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import (
    InProcessServer,
    World,
    make_db,
    saved_token,
    session_record,
    wait_for,
)
from tests.xdisplay import xvfb

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

CONSOLE = Path(__file__).resolve().parents[2] / "console"
CHAT = "JS-chat-line-7Kq2 こんにちは"


def _missing_node() -> str | None:
    if shutil.which("node") is None or shutil.which("npx") is None:
        return "node/npx is not installed (scripts/bootstrap installs it)"
    for package in ("vitest", "ws", "@noble/curves", "@noble/hashes"):
        if not (CONSOLE / "node_modules" / package).is_dir():
            return f"console/node_modules/{package} is missing (scripts/bootstrap runs npm ci)"
    return None


@pytest.fixture
def inproc(tmp_path: Path) -> Iterator[tuple[World, InProcessServer]]:
    """The server app in this process (to observe the relay), plus a logged-in technician."""
    world = World(tmp_path)
    server = InProcessServer(make_db(tmp_path))
    try:
        world.server_url = server.start()
        world.login()
        yield world, server
    finally:
        world.close()
        server.stop()


async def _create_session(server_url: str, token: str, agent_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server_url}/api/v1/sessions",
            json={"agent_id": agent_id, "contract": "C-100"},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status == 201, await r.text()
        return dict(await r.json())


def test_js_technician_completes_a_session_with_the_python_agent(
    inproc: tuple[World, InProcessServer], tmp_path: Path
) -> None:
    missing = _missing_node()
    if missing is not None:
        pytest.skip(missing)
    world, server = inproc
    with xvfb(640, 480) as display:
        agent = world.agent(display)  # --consent allow
        creds = agent.next_line(60, event="credentials")
        token = saved_token(world)
        created = asyncio.run(_create_session(world.server_url, token, creds["agent_id"]))
        result_file = tmp_path / "js-result.json"
        env = dict(
            os.environ,
            ENKAKU_E2E_RELAY_URL=created["relay_url"],
            ENKAKU_E2E_RELAY_TOKEN=created["relay_token"],
            ENKAKU_E2E_AGENT_ID=creds["agent_id"],
            # Typed the way a person might: the JS normalisation must fold it.
            ENKAKU_E2E_PASSWORD=creds["password"].upper().replace("-", " "),
            ENKAKU_E2E_CHAT=CHAT,
            ENKAKU_E2E_RESULT=str(result_file),
        )
        run = subprocess.run(
            ["npx", "vitest", "run", "test/node/technician.test.ts"],
            cwd=CONSOLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        assert result_file.is_file(), run.stdout[-4000:]
        result = json.loads(result_file.read_text())

        assert result["consent"] == {
            "type": "consent",
            "granted": True,
            "scope": ["screen", "control"],
        }
        assert result["rfb_version"] == "RFB 003.008\n"
        assert result["security_types"] == [1]
        assert result["security_result"] == 0
        assert (result["width"], result["height"]) == (640, 480)
        assert result["system_info_keys"], "an empty system information report"
        assert "system_info" in result["granted"]
        assert result["rfb_close"]["reason"] == "viewer_closed"
        assert result["closed"] == {"reason": "technician_ended"}
        stats = result["stats_before_end"]
        assert stats["bytesSent"] > 0 and stats["bytesReceived"] > 0
        assert set(stats["receivedByKind"]) >= {"control", "rfb", "system_info"}

        # The agent got the chat end to end and saw the session end as the JS side said.
        wait_for(lambda: CHAT in agent.stderr(None), 30, "the chat line on the agent")
        record = session_record(world.server_url, token, created["session_id"])
        assert record["end_reason"] == "technician_ended"
        assert record["end_asserted_by"] == "technician"
        # The relay counted what the JS side counted (plus the handshake) ...
        relayed = [data for sid, _role, data in server.relayed if sid == created["session_id"]]
        assert record["bytes_to_agent"] >= stats["bytesSent"]
        assert record["bytes_to_technician"] >= stats["bytesReceived"]
        # ... and carried none of it in the clear.
        blob = b"".join(relayed)
        assert len(blob) > 1000
        password = creds["password"]
        for needle in [
            b"RFB 003.008",
            CHAT.encode(),
            "こんにちは".encode(),
            password.encode(),
            password.replace("-", "").encode(),
            b"system_info",
            b"consent",
            b"technician_ended",
        ]:
            assert needle not in blob, needle
