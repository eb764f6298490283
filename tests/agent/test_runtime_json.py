"""The agent against a server that sends hostile JSON (issue 5 §3): it logs and ignores
each message, and keeps its connection, instead of dying with RecursionError."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from enkaku.agent.identity import DeviceKey
from enkaku.agent.runtime import AgentRuntime
from tests.fakeserver import RECEIVE, Handler, scripted_ws, serving


class QuietUI:
    def __init__(self) -> None:
        self.notices: list[str] = []

    def credentials(self, agent_id: str, password: str) -> None:
        pass

    def notice(self, key: str, **kwargs: object) -> None:
        self.notices.append(key)

    def session_started(self, who: object) -> None:
        pass

    def session_ended(self, reason: str) -> None:
        pass


def hostile_server(messages: list[str], after: asyncio.Event) -> Handler:
    """Authenticates any agent, sends ``messages``, then a ping the agent must answer."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "challenge", "nonce": "00" * 32, "protocol": 1}))
        await ws.receive()
        await ws.send_str(json.dumps({"type": "welcome", "agent_id": "123456789", "heartbeat": 5}))
        for m in messages:
            await ws.send_str(m)
        # Still connected and reading: a session_end for no session is answered by nothing,
        # but the agent must still be there to report a busy session.
        await ws.send_str(json.dumps({"type": "session_end", "session_id": "x", "reason": "x"}))
        after.set()
        await ws.close()
        return ws

    return handler


@pytest.mark.parametrize(
    "message",
    ["[" * 15_000, "[1, 2]", '"text"', "{" * 40 + "}" * 40, "x" * 70_000],
    ids=["deep", "list", "string", "deep-object", "oversized"],
)
async def test_hostile_server_messages_are_ignored(tmp_path: Path, message: str) -> None:
    done = asyncio.Event()
    async with serving("GET", "/ws/agent", hostile_server([message], done)) as server:
        runtime = AgentRuntime(
            str(server.make_url("")), DeviceKey.load_or_create(tmp_path), QuietUI()
        )
        async with aiohttp.ClientSession() as runtime.http:
            await asyncio.wait_for(runtime._connect_once(), 10)  # returns: no exception
        assert done.is_set() and runtime.agent_id == "123456789"


async def test_a_hostile_challenge_is_a_retryable_error(tmp_path: Path) -> None:
    async with serving("GET", "/ws/agent", scripted_ws("[" * 15_000, RECEIVE)) as server:
        runtime = AgentRuntime(
            str(server.make_url("")), DeviceKey.load_or_create(tmp_path), QuietUI()
        )
        async with aiohttp.ClientSession() as runtime.http:
            # ValueError is what run() retries with backoff; RecursionError ended the agent.
            with pytest.raises(ValueError):
                await asyncio.wait_for(runtime._connect_once(), 10)
