"""A real loopback server with an injected clock and sleep, for the authorization tests.

The server runs behind a (pretend) trusted proxy, so a test chooses the client address
with ``X-Forwarded-For``; the login and session slow-downs use a fake monotonic clock,
and their sleeps advance that clock instead of waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from enkaku.server.app import build_app
from enkaku.server.ratelimit import Limits
from enkaku.server.services import SERVICES
from enkaku.server.settings import Settings
from enkaku.server.store.models import SupportSession
from tests.e2e.harness import free_port

from .conftest import FakeClock, Served, agent_link, session_row

PASSWORD = "correct horse"


@dataclass
class Agent:
    """A pretend agent: its control connection, as the real agent would speak it."""

    control: aiohttp.ClientWebSocketResponse
    agent_id: str


@dataclass
class AuthzEnv(Served):
    clock: FakeClock
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    async def login(
        self, user: str, password: str = PASSWORD, *, address: str = "192.0.2.1"
    ) -> aiohttp.ClientResponse:
        async with self.http.post(
            self.url("/api/v1/auth/token"),
            json={"username": user, "password": password},
            headers={"X-Forwarded-For": address},
        ) as r:
            await r.read()
            return r

    async def add_technician(self, user: str, role: str = "technician") -> str:
        """A technician account and a token for it (issued directly: no argon2 check)."""
        tech = await self.svc.store.create_technician(
            user, PASSWORD, display_name=user.title(), company="ACME", role=role
        )
        token, _ = await self.svc.store.issue_token(tech.id)
        self.tokens[user], self.ids[user] = token, tech.id
        return token

    async def agent(self) -> Agent:
        return Agent(*await agent_link(self.http, self.url("/ws/agent")))

    async def call(
        self, method: str, path: str, user: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        async with self.http.request(
            method,
            self.url("/api/v1" + path),
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[user]}"},
        ) as r:
            data = (
                await r.json()
                if r.content_type in ("application/json", "application/problem+json")
                else None
            )
            return r.status, data, r.headers

    async def request(self, user: str, agent_id: str, **kw: Any) -> tuple[int, Any, Any]:
        return await self.call("POST", "/sessions", user, {"agent_id": agent_id, **kw})

    async def end(self, user: str, sid: str, reason: str, comment: str | None = None) -> int:
        body: dict[str, Any] = {"reason": reason}
        if comment is not None:
            body["comment"] = comment
        status, _, _ = await self.call("POST", f"/sessions/{sid}/end", user, body)
        return status

    async def report(self, agent: Agent, sid: str, event: str) -> None:
        await agent.control.send_json({"type": "session_event", "session_id": sid, "event": event})

    async def leg(self, url: str, token: str) -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect(url)
        await ws.send_json({"token": token})
        return ws

    async def record(self, sid: str, *, ended: bool = True) -> SupportSession:
        return await session_row(self.svc, sid, ended=ended)


@asynccontextmanager
async def authz_env(tmp_path: Path, **settings: Any) -> AsyncIterator[AuthzEnv]:
    """The server, the contract C-1 and no accounts yet."""
    port = free_port()
    clock = FakeClock(10_000.0)
    options: dict[str, Any] = {
        "db_url": f"sqlite:///{tmp_path}/authz.db",
        "port": port,
        "behind_proxy": True,
        "public_url": f"http://127.0.0.1:{port}",
        "heartbeat_timeout": 2.0,
        "pairing_timeout": 5.0,
        "node_id": "authz-node",
        **settings,
    }
    app = build_app(Settings(**options), limits=Limits(clock, clock.sleep))
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        await app[SERVICES].store.create_contract("C-1", "Customer One")
        async with aiohttp.ClientSession() as http:
            yield AuthzEnv(server, http, clock)
    finally:
        await server.close()
