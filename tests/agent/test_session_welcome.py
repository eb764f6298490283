"""The agent against a hostile server's welcome: the ID it prints must be 9 digits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from enkaku.agent.consent import DenyAll
from enkaku.agent.identity import DeviceKey
from enkaku.agent.runtime import AgentRuntime
from tests.agent.test_session import RecordingUI
from tests.fakeserver import RECEIVE, scripted_ws, serving

GOOD_CHALLENGE = {"type": "challenge", "nonce": "00" * 32}


@asynccontextmanager
async def fake_server(
    welcome: dict[str, Any], challenge: dict[str, Any] = GOOD_CHALLENGE
) -> AsyncIterator[str]:
    """A /ws/agent endpoint that sends ``challenge`` and answers any hello with ``welcome``
    (then holds the connection until the agent closes it); yields the server URL."""
    agent_ws = scripted_ws(json.dumps(challenge), RECEIVE, json.dumps(welcome), RECEIVE)
    async with serving("GET", "/ws/agent", agent_ws) as server:
        yield str(server.make_url("")).rstrip("/")


WELCOME = {"type": "welcome", "agent_id": "123456789", "heartbeat": 5}


@pytest.mark.parametrize(
    ("welcome", "challenge"),
    [
        (WELCOME, {"type": "challenge"}),
        (WELCOME, {"type": "challenge", "nonce": 7}),
        (WELCOME, {"type": "challenge", "nonce": "zz"}),
        (WELCOME, {"type": "challenge", "nonce": " 00" * 32}),
    ]
    + [
        (w, GOOD_CHALLENGE)
        for w in [
            {"type": "welcome", "agent_id": "\x1b[2J12345678", "heartbeat": 5},
            {"type": "welcome", "agent_id": "１２３４５６７８９", "heartbeat": 5},  # full-width
            {"type": "welcome", "heartbeat": 5},
            {"type": "welcome", "agent_id": "123456789", "heartbeat": float("nan")},
            {"type": "welcome", "agent_id": "123456789", "heartbeat": "soon"},
        ]
    ],
)
async def test_a_malformed_welcome_is_refused_and_nothing_is_printed_from_it(
    tmp_path: Path, welcome: dict[str, Any], challenge: dict[str, Any]
) -> None:
    async with fake_server(welcome, challenge) as url:
        ui = RecordingUI()
        rt = AgentRuntime(url, DeviceKey.load_or_create(tmp_path), ui, consent=DenyAll())
        task = asyncio.ensure_future(rt.run())
        try:
            for _ in range(500):  # until the first retry notice (a limit, not a measurement)
                if any(key == "agent_offline_retry" for key, _kw in ui.notices):
                    break
                await asyncio.sleep(0.01)
            retry = [kw for key, kw in ui.notices if key == "agent_offline_retry"]
            assert retry and "malformed" in str(retry[0]["detail"])
            assert ui.credentials_shown == []  # no ID was shown from it
            assert rt.agent_id == ""
            assert not task.done()  # the agent keeps retrying, it does not crash
        finally:
            await rt.stop()
            await asyncio.wait_for(task, 10)


async def test_a_good_welcome_shows_the_id(tmp_path: Path) -> None:
    async with fake_server({"type": "welcome", "agent_id": 123456789, "heartbeat": 5}) as url:
        ui = RecordingUI()
        rt = AgentRuntime(url, DeviceKey.load_or_create(tmp_path), ui, consent=DenyAll())
        task = asyncio.ensure_future(rt.run())
        try:
            for _ in range(500):
                if ui.credentials_shown:
                    break
                await asyncio.sleep(0.01)
            assert rt.agent_id == "123456789" and ui.credentials_shown == [rt.password]
        finally:
            await rt.stop()
            await asyncio.wait_for(task, 10)
