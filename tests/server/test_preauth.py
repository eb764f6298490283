"""Issue 5 §3: what an unauthenticated client may cost the server, on a real loopback
server. Each test failed on the code before the limits existed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from enkaku.protocol.agentlink import CLOSE_RATE_LIMITED
from enkaku.server.app import build_app
from enkaku.server.expiry import AgentExpiry
from enkaku.server.settings import Settings
from enkaku.server.store.db import open_engine
from enkaku.server.store.repo import Store
from tests.e2e.harness import free_port

from .conftest import FakeClock, Served, hello

DEEP = "[" * 15_000  # the 15 KB message that raised RecursionError


@dataclass
class Server(Served):
    sockets: list[aiohttp.ClientWebSocketResponse]

    async def ws_connect(self, url: str) -> aiohttp.ClientWebSocketResponse:
        """A client WebSocket that the fixture closes at the end."""
        ws = await self.http.ws_connect(url)
        self.sockets.append(ws)
        return ws

    async def agent(self, key: Ed25519PrivateKey) -> aiohttp.ClientWebSocketResponse:
        """An agent link after the challenge, before the hello."""
        ws = await self.ws_connect(self.url("/ws/agent"))
        self.challenge = json.loads((await ws.receive()).data)
        return ws

    def hello(self, key: Ed25519PrivateKey) -> dict[str, str]:
        return hello(self.challenge, key)

    async def register(self, key: Ed25519PrivateKey) -> tuple[aiohttp.ClientWebSocketResponse, Any]:
        """Connect and authenticate; returns the socket and the server's answer."""
        ws = await self.agent(key)
        await ws.send_json(self.hello(key))
        msg = await ws.receive()
        if msg.type == WSMsgType.TEXT:
            return ws, json.loads(msg.data)
        return ws, msg


Start = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    servers: list[TestServer] = []
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession() as http:

        async def _start(
            clock: Callable[[], float] | None = None, store: Store | None = None, **kw: Any
        ) -> Server:
            settings = Settings(
                db_url=f"sqlite:///{tmp_path}/t.db", heartbeat_timeout=2.0, node_id="t", **kw
            )
            extra: dict[str, Any] = {"clock": clock} if clock else {}
            server = TestServer(build_app(settings, store=store, **extra))
            await server.start_server()
            servers.append(server)
            return Server(server, http, sockets)

        yield _start
        for ws in sockets:
            await ws.close()
        for server in servers:
            await server.close()


def closed_with(msg: aiohttp.WSMessage, code: int) -> bool:
    return msg.type == WSMsgType.CLOSE and msg.data == code


# -- JSON size and depth ---------------------------------------------------------


async def test_deep_json_token_message_gets_the_documented_close(start: Start) -> None:
    srv = await start()
    url = srv.url("/ws/relay/" + "0" * 32)
    ws = await srv.ws_connect(url)
    await ws.send_str('{"token": ' + "[" * 1010)  # under the size cap, too deep
    msg = await ws.receive()
    assert closed_with(msg, 4401) and msg.extra == "unknown session or bad token", msg
    ws = await srv.ws_connect(url)
    await ws.send_str(DEEP)
    msg = await ws.receive()
    assert closed_with(msg, 1009) and msg.extra == "token message too large", msg


async def test_relay_first_message_is_capped_at_what_authentication_needs(start: Start) -> None:
    srv = await start()
    ws = await srv.ws_connect(srv.url("/ws/relay/" + "0" * 32))
    await ws.send_str(json.dumps({"token": "x" * 2000}))  # well under max_frame
    msg = await ws.receive()
    assert closed_with(msg, 1009) and msg.extra == "token message too large", msg


async def test_deep_json_hello_gets_the_documented_close(start: Start) -> None:
    srv = await start()
    ws = await srv.agent(Ed25519PrivateKey.generate())
    await ws.send_str("[" * 1500)
    assert closed_with(await ws.receive(), 4401)


async def test_oversized_hello_is_refused(start: Start) -> None:
    srv = await start()
    key = Ed25519PrivateKey.generate()
    ws = await srv.agent(key)
    await ws.send_json({**srv.hello(key), "platform": "x" * 4000})  # under MAX_CONTROL
    msg = await ws.receive()
    assert closed_with(msg, 1009) and msg.extra == "hello too large", msg


async def test_deep_json_after_welcome_gets_4400(start: Start) -> None:
    srv = await start()
    ws, welcome = await srv.register(Ed25519PrivateKey.generate())
    assert welcome["type"] == "welcome"
    await ws.send_str(DEEP)
    assert closed_with(await ws.receive(), 4400)


async def test_deep_json_api_body_is_a_bad_request(start: Start) -> None:
    # Pydantic's parser has its own depth limit: this held before issue 5 already.
    srv = await start()
    async with srv.http.post(
        srv.url("/api/v1/auth/token"), data=DEEP, headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 422
        assert (await r.json())["error"]["code"] == "bad_request"


# -- deadlines -------------------------------------------------------------------


async def test_relay_socket_without_token_is_closed_at_the_auth_deadline(start: Start) -> None:
    srv = await start(auth_timeout=0.2)
    ws = await srv.ws_connect(srv.url("/ws/relay/" + "0" * 32))
    # The old fixed deadline was 10 s; waiting 8 s tells the two apart on a slow machine.
    msg = await ws.receive(timeout=8)
    assert closed_with(msg, 4401) and msg.extra == "no relay token"


async def test_agent_link_without_hello_is_closed_at_the_auth_deadline(start: Start) -> None:
    srv = await start(auth_timeout=0.2)
    ws = await srv.agent(Ed25519PrivateKey.generate())
    assert closed_with(await ws.receive(timeout=8), 4401)


# -- unauthenticated connections per address -------------------------------------


async def test_unauthenticated_sockets_per_address_are_capped(start: Start) -> None:
    srv = await start(max_unauthenticated_per_address=3)
    relay_url = srv.url("/ws/relay/" + "0" * 32)
    held = [await srv.ws_connect(relay_url) for _ in range(2)]
    held.append(await srv.agent(Ed25519PrivateKey.generate()))  # both kinds count
    for url in (relay_url, srv.url("/ws/agent")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await srv.ws_connect(url)
        assert exc.value.status == 429
        assert exc.value.headers is not None and int(exc.value.headers["Retry-After"]) >= 1
    await held[0].close()
    await asyncio.sleep(0.05)  # let the server's handler see the close
    for _ in range(50):
        if srv.svc.relay.pending.count("127.0.0.1") < 3:
            break
        await asyncio.sleep(0.05)
    held[0] = await srv.ws_connect(relay_url)  # a freed slot is reusable


async def test_authenticated_agents_hold_no_slot(start: Start) -> None:
    # An office behind one NAT: far more agents online than the pre-auth cap.
    srv = await start(max_unauthenticated_per_address=2)
    links = []
    for _ in range(6):
        ws, welcome = await srv.register(Ed25519PrivateKey.generate())
        assert welcome["type"] == "welcome"
        links.append(ws)
    assert srv.svc.relay.pending.count("127.0.0.1") == 0
    assert await srv.svc.presence.online_count() == 6


# -- registration rate -------------------------------------------------------------


async def test_new_agent_ids_are_rate_limited_per_address(start: Start) -> None:
    clock = FakeClock()
    srv = await start(clock=clock, agent_registration_burst=3, agent_registrations_per_minute=2)
    keys = [Ed25519PrivateKey.generate() for _ in range(5)]
    ids = []
    for key in keys[:3]:
        ws, welcome = await srv.register(key)
        assert welcome["type"] == "welcome"
        ids.append(welcome["agent_id"])
        await ws.close()
    ws, refused = await srv.register(keys[3])
    assert closed_with(refused, CLOSE_RATE_LIMITED), refused
    assert not await srv.svc.store.find_agent(
        keys[3].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    )
    # A known key reconnecting is not a registration.
    ws, welcome = await srv.register(keys[0])
    assert welcome["type"] == "welcome" and welcome["agent_id"] == ids[0]
    await ws.close()
    clock.now += 30  # 2 a minute: one token after 30 s
    ws, welcome = await srv.register(keys[3])
    assert welcome["type"] == "welcome"
    ws, refused = await srv.register(keys[4])
    assert closed_with(refused, CLOSE_RATE_LIMITED)


# -- the listener's own timeouts ---------------------------------------------------


async def _raw_listener(**kw: Any) -> tuple[Any, int]:
    from aiohttp import web

    from enkaku.server.app import make_runner

    app = web.Application()

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/", ok)
    runner = make_runner(app, Settings(**kw))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


async def test_slow_headers_are_cut_off_by_the_header_timeout() -> None:
    runner, port = await _raw_listener(header_timeout=0.5)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000
        closed = False
        # One byte every 0.1 s: 1,000 bytes take 100 s unless the server hangs up.
        for i in range(len(head)):
            try:
                writer.write(head[i : i + 1])
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            try:
                data = await asyncio.wait_for(reader.read(1), 0.1)
            except TimeoutError:
                continue
            if data == b"":
                closed = True
                break
        writer.close()
        assert closed, "the server kept a connection that never finished its headers"
    finally:
        await runner.cleanup()


async def test_a_stalled_api_body_gets_408(start: Start) -> None:
    srv = await start(body_timeout=0.3)
    reader, writer = await asyncio.open_connection(srv.server.host, srv.server.port)
    writer.write(
        b"POST /api/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 8)
    writer.close()
    assert status.startswith(b"HTTP/1.1 408"), status


def test_header_timeout_setting_reaches_the_runner() -> None:
    from aiohttp import web

    from enkaku.server.app import make_runner

    runner = make_runner(web.Application(), Settings(header_timeout=7.0))
    assert runner._kwargs["keepalive_timeout"] == 7.0


# -- expiry of unused agent IDs ------------------------------------------------------


class DayClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_agent_ids_unused_for_long_are_expired(start: Start, tmp_path: Path) -> None:
    days = DayClock()
    store = Store(await open_engine(f"sqlite:///{tmp_path}/x.db"), clock=days)
    try:
        srv = await start(store=store, agent_expiry_days=30)
        gone, used, online = (Ed25519PrivateKey.generate() for _ in range(3))
        ws, w_gone = await srv.register(gone)
        await ws.close()
        ws, w_used = await srv.register(used)
        await ws.close()
        online_ws, w_online = await srv.register(online)
        tech = await store.create_technician("t", "pw")
        contract = await store.create_contract("C", "Customer")
        await store.create_session("s" * 32, w_used["agent_id"], tech.id, contract.id, "t")
        for _ in range(50):  # the closes reach the server's handlers
            if await srv.svc.presence.online_count() == 1:
                break
            await asyncio.sleep(0.05)
        expiry = AgentExpiry(store, srv.svc.presence, 30)
        days.now += timedelta(days=29)
        assert await expiry.run_once() == 0
        days.now += timedelta(days=2)
        assert await expiry.run_once() == 1
        assert not await store.agent_exists(w_gone["agent_id"])
        assert await store.agent_exists(w_used["agent_id"])  # in a customer's records
        assert await store.agent_exists(w_online["agent_id"])  # online now
        # The expired key registers again as a new agent.
        ws, again = await srv.register(gone)
        assert again["type"] == "welcome"
        await online_ws.close()
        await srv.server.close()  # its handlers write last_seen: before the store closes
    finally:
        await store.close()


async def test_going_offline_counts_as_last_seen(tmp_path: Path) -> None:
    days = DayClock()
    store = Store(await open_engine(f"sqlite:///{tmp_path}/y.db"), clock=days)
    try:
        agent_id = await store.agent_for_key("ab" * 32)
        days.now += timedelta(days=100)
        await store.touch_agent(agent_id)  # was online all that time
        days.now += timedelta(days=10)
        assert await store.expire_agents(timedelta(days=30)) == 0
        assert await store.expire_agents(timedelta(days=5)) == 1
    finally:
        await store.close()


async def test_expiry_can_be_switched_off(tmp_path: Path) -> None:
    store = Store(await open_engine(f"sqlite:///{tmp_path}/z.db"))
    try:
        from enkaku.server.presence import MemoryPresence

        assert await AgentExpiry(store, MemoryPresence(), 0).run_once() == 0
    finally:
        await store.close()


async def test_a_token_with_a_lone_surrogate_is_a_bad_token(start: Start) -> None:
    # Found by the fuzz target (tests/fuzz): str.encode raised UnicodeEncodeError.
    srv = await start()
    srv.svc.relay.create("ab" * 16, "123456789", 1)  # a live session: the token is checked
    ws = await srv.ws_connect(srv.url("/ws/relay/" + "ab" * 16))
    await ws.send_str('{"token": "\\ud800"}')
    msg = await ws.receive()
    assert closed_with(msg, 4401) and msg.extra == "unknown session or bad token", msg


async def test_the_real_server_process_cuts_off_slow_headers(tmp_path: Path) -> None:
    import os
    import signal
    import sys

    port = free_port()
    enkaku = str(Path(sys.executable).parent / "enkaku")
    proc = await asyncio.create_subprocess_exec(
        enkaku,
        "server",
        "--port",
        str(port),
        "--db",
        f"sqlite:///{tmp_path}/p.db",
        "--header-timeout",
        "1",
        env={**os.environ, "ENKAKU_LANG": "en"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        while True:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, "enkaku server exited before listening"
            if b"listening on" in line:
                break
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        closed = False
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 300:  # 30 s at most
            try:
                writer.write(bytes([byte]))
                await writer.drain()
                if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
                break
        writer.close()
        assert closed, "enkaku server kept a connection that never finished its headers"
        # A prompt client is still served on the same listener.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
