"""Garbage and truncated handshakes from either side end that session only."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from enkaku.protocol.agentlink import AUTH_CONTEXT
from enkaku.protocol.handshake import TechnicianHandshake

from .harness import InProcessServer, World, saved_token, wait_for

pytestmark = pytest.mark.e2e

BAD_HELLOS = [
    b"",  # empty message
    b"\x01\x01",  # truncated HELLO
    b"\x01\x01\x01" + b"\x00" * 8,  # HELLO with a short nonce
    b"\x10" + b"\xff" * 200,  # a record before any handshake
    b"\x7f garbage",
]


@asynccontextmanager
async def technician_leg(
    server_url: str, token: str, agent_id: str
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A hand-driven technician: request a session and open a paired relay leg."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server_url}/api/v1/sessions",
            json={"agent_id": agent_id},
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            created = await r.json()
        ws = await http.ws_connect(created["relay_url"])
        await ws.send_json({"token": created["relay_token"]})
        assert json.loads((await ws.receive(timeout=30)).data)["type"] == "paired"
        yield ws
        await ws.close()


async def fake_technician(server_url: str, token: str, agent_id: str, first: bytes) -> str:
    """Request a session, then send ``first`` instead of a HELLO; returns how it ended."""
    async with technician_leg(server_url, token, agent_id) as ws:
        await ws.send_bytes(first)
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type == WSMsgType.CLOSE:
                return str(msg.extra)
            if msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
                return "closed"


def test_garbage_from_a_technician_ends_only_that_attempt(
    inproc: tuple[World, InProcessServer],
) -> None:
    world, _server = inproc
    agent = world.agent(None)
    creds = agent.next_line(60, event="credentials")
    token = saved_token(world)
    for bad in BAD_HELLOS:
        how = asyncio.run(fake_technician(world.server_url, token, creds["agent_id"], bad))
        assert how in ("handshake_failed", "protocol_error"), (bad, how)
    # None of that was a password guess: the password is unchanged and still works.
    assert agent.lines.empty()
    tech = world.connect(creds["agent_id"], creds["password"], vnc=False)
    tech.next_line(60, event="connected")
    tech.signal(signal.SIGINT)
    assert tech.wait(30) == 0


async def fake_agent(
    server_url: str, payloads: list[bytes], ready: asyncio.Event, result: dict[str, Any]
) -> None:
    """An agent that answers one session request with garbage on the relay."""
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{server_url.replace('http', 'ws')}/ws/agent")
        nonce = bytes.fromhex(json.loads((await ws.receive()).data)["nonce"])
        await ws.send_json(
            {"type": "hello", "public_key": pub, "signature": key.sign(AUTH_CONTEXT + nonce).hex()}
        )
        result["agent_id"] = json.loads((await ws.receive()).data)["agent_id"]
        ready.set()
        req = json.loads((await ws.receive(timeout=60)).data)
        leg = await http.ws_connect(server_url.replace("http", "ws") + req["relay_path"])
        await leg.send_json({"token": req["relay_token"]})
        await leg.receive(timeout=30)  # paired
        await leg.receive(timeout=30)  # the technician's HELLO
        for p in payloads:
            await leg.send_bytes(p)
        msg = await leg.receive(timeout=30)
        if msg.type == WSMsgType.BINARY:
            result["failure"] = msg.data  # the technician says why before it closes
            msg = await leg.receive(timeout=30)
        result["close"] = msg.extra
        await ws.close()


@pytest.mark.parametrize("payloads", [[b"\x02\x00"], [b"\xde\xad\xbe\xef" * 64], [b"\x05"]])
def test_garbage_from_an_agent_fails_the_technician_cleanly(
    inproc: tuple[World, InProcessServer],
    payloads: list[bytes],
) -> None:
    world, _server = inproc
    result: dict[str, Any] = {}

    async def scenario() -> int:
        ready = asyncio.Event()
        fake = asyncio.create_task(fake_agent(world.server_url, payloads, ready, result))
        await asyncio.wait_for(ready.wait(), 30)
        tech = world.connect(result["agent_id"], "abcd-efgh", vnc=False)
        code = await asyncio.to_thread(tech.wait, 60)
        await asyncio.wait_for(fake, 60)
        return code

    code = asyncio.run(scenario())
    assert code == 1  # handshake failed, with a message; never a traceback
    stderr = world.procs[-1].stderr()
    assert "Traceback" not in stderr and "handshake failed" in stderr
    assert result["close"] in ("handshake_failed", "protocol_error")
    assert result.get("failure", b"\x05\x05")[0] == 0x05  # a FAILURE message, if any


async def hello_then_leave(server_url: str, token: str, agent_id: str) -> bytes:
    """A technician that sends a valid HELLO, takes the agent's share and goes away."""
    hs = TechnicianHandshake("abcd-efgh", agent_id)
    async with technician_leg(server_url, token, agent_id) as ws:
        await ws.send_bytes(hs.start())
        return bytes((await ws.receive(timeout=30)).data)


def test_leaving_after_the_agents_share_is_a_spent_guess(
    inproc: tuple[World, InProcessServer],
) -> None:
    world, server = inproc
    agent = world.agent(None)
    creds = agent.next_line(60, event="credentials")
    token = saved_token(world)
    for _ in range(3):
        share = asyncio.run(hello_then_leave(world.server_url, token, creds["agent_id"]))
        assert share[0] == 0x02  # AGENT_SHARE
    # Three shares without a confirmation: the agent drew a new password.
    new = agent.next_line(30, event="credentials")
    assert new["password"] != creds["password"]
    # ...and the server counted each, so it slows the next requests for this ID.
    wait_for(
        lambda: server.services.limits.sessions.agent.failures(creds["agent_id"]) >= 3,
        30,
        "the server to count three failures",
    )
