from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from enkaku.protocol.agentlink import AUTH_CONTEXT
from enkaku.server.app import build_app
from enkaku.server.services import SERVICES, Services
from enkaku.server.settings import Settings
from enkaku.server.store.models import SupportSession

from . import pg


class FakeClock:
    """A settable monotonic clock; ``sleep`` advances it and records the wait."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def hello(challenge: dict[str, Any], key: Ed25519PrivateKey | None = None) -> dict[str, str]:
    """The agent's ``hello`` answering ``challenge``: its public key and the signed nonce
    (a new device key unless ``key``)."""
    key = key or Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    sig = key.sign(AUTH_CONTEXT + bytes.fromhex(challenge["nonce"]))
    return {"type": "hello", "public_key": pub.hex(), "signature": sig.hex()}


async def agent_link(
    http: aiohttp.ClientSession, url: str, key: Ed25519PrivateKey | None = None
) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """An authenticated agent link at ``url`` (a new device key unless ``key``), and its ID."""
    ws = await http.ws_connect(url)
    challenge = json.loads((await ws.receive()).data)
    await ws.send_json(hello(challenge, key))
    welcome = json.loads((await ws.receive()).data)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome["agent_id"]


async def until(cond: Callable[[], bool], what: str = "condition") -> None:
    """Wait (bounded, a limit for a hung run) for what another connection or task does."""
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} never held")


async def session_row(svc: Services, sid: str, *, ended: bool = True) -> SupportSession:
    """The session's row, once it has ended (when ``ended``)."""
    for _ in range(250):
        row = await svc.store.get_session(sid)
        if row is not None and (row.ended_at is not None or not ended):
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"session {sid} never ended")


@dataclass
class Served:
    """A test server and a client session that speaks to it."""

    server: TestServer
    http: aiohttp.ClientSession

    @property
    def svc(self) -> Services:
        return self.server.app[SERVICES]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@dataclass
class Env(Served):
    relayed: list[tuple[str, str, bytes]]

    async def token(self, user: str = "tech", password: str = "correct horse") -> str:
        async with self.http.post(
            self.url("/api/v1/auth/token"), json={"username": user, "password": password}
        ) as r:
            assert r.status == 201, await r.text()
            return str((await r.json())["token"])

    async def agent(
        self, key: Ed25519PrivateKey | None = None
    ) -> tuple[aiohttp.ClientWebSocketResponse, str]:
        return await agent_link(self.http, self.url("/ws/agent"), key)

    async def record(self, sid: str, *, ended: bool = True) -> SupportSession:
        return await session_row(self.svc, sid, ended=ended)

    async def request_session(self, token: str, agent_id: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.http.post(
            self.url("/api/v1/sessions"),
            json={"agent_id": agent_id, **kw},
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    relayed: list[tuple[str, str, bytes]] = []
    settings = Settings(
        db_url=f"sqlite:///{tmp_path}/t.db",
        heartbeat_timeout=2.0,
        pairing_timeout=3.0,
        max_frame=64 * 1024,
        node_id="test-node",
    )
    app = build_app(settings, relay_observer=lambda s, r, d: relayed.append((s, r, d)))
    server = TestServer(app)
    await server.start_server()
    svc = app[SERVICES]
    await svc.store.create_technician("tech", "correct horse", display_name="Taro", company="ACME")
    await svc.store.create_contract("C-1", "Customer One")
    async with aiohttp.ClientSession() as http:
        yield Env(server, http, relayed)
    await server.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The PostgreSQL server URL (no database name): ENKAKU_TEST_PG, or a throw-away one.

    The throw-away cluster (tests/server/pg.py) is started on first use and stopped by PID
    at the end of the run. If it cannot start, every PostgreSQL test fails with the reason.
    """
    given = os.environ.get(pg.ENV)
    if given:
        yield given.rstrip("/")
        return
    try:
        server = pg.ThrowawayPostgres.start()
    except pg.PostgresUnavailable as exc:
        problem = str(exc)
    else:
        try:
            yield server.url
        finally:
            server.stop()
        return
    # Outside the except block, so the report is the reason and not a chained traceback.
    pytest.fail(f"could not start a throw-away PostgreSQL: {problem}", pytrace=False)
