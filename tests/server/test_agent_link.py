"""The agent control link under load: its own heartbeat, quiet disconnects, a busy
database, and the serving process's garbage-collector settings."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy.exc import OperationalError

from enkaku.agent.identity import DeviceKey
from enkaku.agent.runtime import DEFAULT_LINK_HEARTBEAT, AgentRuntime
from enkaku.cli import build_parser
from enkaku.server.agents import CLOSE_TRY_AGAIN
from enkaku.server.app import GC_THRESHOLDS, build_app, serve
from enkaku.server.settings import Settings, SettingsError, from_env
from enkaku.server.store.db import open_engine
from enkaku.server.store.repo import Store
from tests.e2e.harness import free_port

from ..agent.test_runtime_json import QuietUI
from .conftest import Env, hello, until


def _locked() -> OperationalError:
    return OperationalError("UPDATE agents ...", {}, sqlite3.OperationalError("database is locked"))


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_the_control_link_has_its_own_heartbeat(env: Env) -> None:
    ws, _ = await env.agent()
    try:
        (server_ws,) = env.svc.agents.connections
        # The server pings an idle agent every agent_heartbeat / 2, not every
        # heartbeat_timeout / 2 like a relay leg.
        assert server_ws._heartbeat == env.svc.settings.agent_heartbeat / 2 == 15.0
    finally:
        await ws.close()


async def test_welcome_carries_both_heartbeats(env: Env) -> None:
    ws = await env.http.ws_connect(env.url("/ws/agent"))
    await ws.send_json(hello(json.loads((await ws.receive()).data)))
    welcome = json.loads((await ws.receive()).data)
    await ws.close()
    assert welcome["heartbeat"] == 2.0  # relay legs: heartbeat_timeout
    assert welcome["agent_heartbeat"] == 30.0  # this link


async def test_an_agent_gone_before_welcome_is_one_debug_line(
    env: Env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="enkaku.server.agents")
    real = env.svc.store.agent_for_key

    async def then_the_link_drops(key: str) -> str:
        agent_id = await real(key)
        # As when the peer vanished during a long pause of the server (its heartbeat
        # closed the transport): the handler goes on to send welcome on a closing one.
        (server_ws,) = env.svc.agents.connections
        assert server_ws._req is not None and server_ws._req.transport is not None
        server_ws._req.transport.abort()
        return agent_id

    monkeypatch.setattr(env.svc.store, "agent_for_key", then_the_link_drops)
    ws = await env.http.ws_connect(env.url("/ws/agent"))
    await ws.send_json(hello(json.loads((await ws.receive()).data)))
    assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    await until(lambda: not env.svc.agents.connections, "handler finished")
    await env.svc.agents.drain()
    # An ordinary disconnect: at most a debug line ("while we were sending", or nothing
    # when aiohttp cancelled the handler first, which a loaded machine makes happen),
    # never a warning or a traceback.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert _tracebacks(caplog) == []


async def test_a_busy_database_at_hello_asks_the_agent_to_retry(
    env: Env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def locked(*_: Any) -> None:
        raise _locked()

    monkeypatch.setattr(env.svc.store, "find_agent", locked)
    ws = await env.http.ws_connect(env.url("/ws/agent"))
    await ws.send_json(hello(json.loads((await ws.receive()).data)))
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == CLOSE_TRY_AGAIN
    await until(lambda: not env.svc.agents.connections, "handler finished")
    busy = [r for r in caplog.records if "database busy" in r.getMessage()]
    assert len(busy) == 1 and busy[0].levelno == logging.WARNING
    assert "database is locked" in busy[0].getMessage()
    assert _tracebacks(caplog) == []


async def test_a_busy_database_when_an_agent_leaves_is_one_warning(
    env: Env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, agent_id = await env.agent()

    async def locked(*_: Any) -> None:
        raise _locked()

    monkeypatch.setattr(env.svc.store, "_touch_agent", locked)
    await ws.close()
    await until(lambda: not env.svc.agents.connections, "handler finished")
    await env.svc.agents.drain()
    lines = [r for r in caplog.records if "last-seen time not recorded" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING]
    assert agent_id in lines[0].getMessage()
    assert _tracebacks(caplog) == []


async def test_agent_bookkeeping_retries_once_when_sqlite_is_locked(tmp_path: Path) -> None:
    store = Store(await open_engine(f"sqlite:///{tmp_path}/t.db"))
    try:
        key = "ab" * 32
        agent_id = await store.agent_for_key(key)
        failures = [_locked()]
        real_find, real_touch = store._find_agent, store._touch_agent

        async def find_after_one_failure(k: str) -> str | None:
            if failures:
                raise failures.pop()
            return await real_find(k)

        async def touch_after_one_failure(a: str) -> None:
            if failures:
                raise failures.pop()
            await real_touch(a)

        store._find_agent = find_after_one_failure  # type: ignore[method-assign,assignment]
        store._touch_agent = touch_after_one_failure  # type: ignore[method-assign,assignment]
        assert await store.find_agent(key) == agent_id
        assert failures == []
        failures.append(_locked())
        await store.touch_agent(agent_id)
        assert failures == []
        # Twice in a row is the caller's to report; other errors are never retried.
        failures.extend([_locked(), _locked()])
        with pytest.raises(OperationalError, match="database is locked"):
            await store.find_agent(key)
        failures.append(
            OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: agents"))
        )
        with pytest.raises(OperationalError, match="no such table"):
            await store.touch_agent(agent_id)
        assert failures == []
    finally:
        await store.close()


async def test_serve_freezes_start_up_objects_and_raises_gc_thresholds(tmp_path: Path) -> None:
    before = gc.get_threshold()
    settings = Settings(db_url=f"sqlite:///{tmp_path}/t.db", port=free_port(), node_id="t")
    ready = asyncio.Event()
    task = asyncio.create_task(serve(settings, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize("seconds", [1.9, 3601.0, float("nan")])
def test_an_agent_heartbeat_out_of_range_is_refused(seconds: float) -> None:
    with pytest.raises(SettingsError, match=r"^agent_heartbeat:"):
        Settings(agent_heartbeat=seconds)


def test_agent_heartbeat_from_env_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_AGENT_HEARTBEAT", "60")
    assert from_env().agent_heartbeat == 60.0
    args = build_parser().parse_args(["server", "--agent-heartbeat", "12"])
    assert from_env(agent_heartbeat=args.agent_heartbeat).agent_heartbeat == 12.0
    assert Settings().agent_heartbeat == 30.0 and Settings().heartbeat_timeout == 5.0


async def test_the_agent_takes_its_link_heartbeat_from_welcome(tmp_path: Path) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path}/t.db", heartbeat_timeout=2.0, agent_heartbeat=8.0
    )
    server = TestServer(build_app(settings))
    await server.start_server()
    runtime = AgentRuntime(
        str(server.make_url("")), DeviceKey.load_or_create(tmp_path / "agent"), QuietUI()
    )
    try:
        async with aiohttp.ClientSession() as runtime.http:
            task = asyncio.create_task(runtime._connect_once())
            await until(lambda: runtime.agent_id != "", "welcome")
            assert runtime._ws is not None
            # Before any welcome: the tolerant default, not the 2.5 s of old.
            assert runtime._ws._heartbeat == DEFAULT_LINK_HEARTBEAT == 15.0
            assert runtime.link_heartbeat == 4.0  # the next link: agent_heartbeat / 2
            assert runtime.heartbeat == 1.0  # relay legs: heartbeat_timeout / 2
            await runtime.stop()
            await asyncio.wait_for(task, 30)
    finally:
        await server.close()
