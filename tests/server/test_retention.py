# ruff: noqa: F811  (the fixtures imported from test_store)
"""Retention (issue 9, acceptance 4), on SQLite and PostgreSQL: what is older than the
setting is purged, nothing newer, with the clock injected; and the server's own task
does it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from enkaku.server.app import build_app
from enkaku.server.retention import RETENTION, Retention
from enkaku.server.settings import Settings
from enkaku.server.store.db import open_engine
from enkaku.server.store.models import AgentLink, AuditEvent, SupportSession
from enkaku.server.store.repo import Store

from .test_store import PASSWORD, START, FakeClock, clock, db_url, store  # noqa: F401

DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)


async def _ended(store: Store, clock: FakeClock, sid: str, agent: str, tech: int, cid: int) -> None:
    await store.create_session(sid, agent, tech, cid, "n1")
    await store.audit("agent", "consent_granted", session_id=sid, agent_id=agent)
    await store.end_session(sid, "technician_ended", bytes_to_agent=1, bytes_to_technician=2)


async def _ids(store: Store) -> tuple[set[str], set[tuple[str | None, str]]]:
    async with store._sessions() as s:
        sessions = set(await s.scalars(select(SupportSession.id)))
        events = {(e.session_id, e.event) for e in await s.scalars(select(AuditEvent))}
    return sessions, events


async def _world(store: Store, clock: FakeClock) -> tuple[str, int, int]:
    customer = await store.records.create_customer("Alpha")
    contract = await store.create_contract("A-1", customer.id, valid_from=START.date())
    tech = await store.create_technician("taro", PASSWORD)
    agent = await store.agent_for_key("33" * 32)
    return agent, tech.id, contract.id


async def test_purges_what_is_older_than_the_setting_and_nothing_newer(
    store: Store, clock: FakeClock
) -> None:
    agent, tech, cid = await _world(store, clock)
    t0 = clock.now
    await _ended(store, clock, "a" * 32, agent, tech, cid)  # ends at t0
    clock.now = t0 + TICK
    await _ended(store, clock, "b" * 32, agent, tech, cid)  # ends a microsecond later
    await store.create_session("c" * 32, agent, tech, cid, "n1")  # never ended: kept
    await store.records.link_on_consent("a" * 32)  # the link names session a
    await store.audit("server", "login", technician_id=tech)  # at t0 + TICK
    retention = Retention(store, session_days=10, audit_days=20)

    # Exactly at the limit: the session that ended at t0 is 10 days old, not older.
    clock.now = t0 + 10 * DAY
    assert (await retention.run_once()).sessions == 0
    assert (await _ids(store))[0] == {"a" * 32, "b" * 32, "c" * 32}

    # One tick later, only the one that ended at t0 is older than 10 days.
    clock.now = t0 + 10 * DAY + TICK
    purged = await retention.run_once()
    assert (purged.sessions, purged.events) == (1, 2)  # its consent and its agent_linked
    sessions, events = await _ids(store)
    assert sessions == {"b" * 32, "c" * 32}
    assert ("a" * 32, "consent_granted") not in events
    assert ("b" * 32, "consent_granted") in events
    async with store._sessions() as s:
        link = await s.get(AgentLink, agent)
    assert link is not None and link.session_id is None  # the machine stays linked

    # Audit events by their own time (sessions kept for ever here): the login and b's
    # consent, both at t0 + TICK, stay until they are older than 20 days.
    events_only = Retention(store, session_days=0, audit_days=20)
    clock.now = t0 + TICK + 20 * DAY
    await events_only.run_once()  # the admin events of _world (at t0) go, nothing else
    assert (await _ids(store))[1] == {(None, "login"), ("b" * 32, "consent_granted")}
    clock.now = t0 + TICK + 20 * DAY + TICK
    purged = await events_only.run_once()
    assert (purged.sessions, purged.events) == (0, 2)
    sessions, events = await _ids(store)
    assert sessions == {"b" * 32, "c" * 32} and events == set()
    purged = await retention.run_once()
    assert purged.sessions == 1  # b, ended 20 days ago
    assert (await _ids(store))[0] == {"c" * 32}  # the open one stays however old


async def test_expired_sign_ins_go_and_valid_ones_stay(store: Store, clock: FakeClock) -> None:
    tech = await store.create_technician("taro", PASSWORD)
    old, _ = await store.issue_token(tech.id)
    clock.advance(10 * DAY)
    new, new_expiry = await store.issue_token(tech.id)
    retention = Retention(store, session_days=0, audit_days=0)
    clock.now = new_expiry - 10 * DAY  # the first token's expiry, exactly
    assert (await retention.run_once()).sign_ins == 0
    clock.now += TICK
    assert (await retention.run_once()).sign_ins == 1
    assert await store.technician_for_token(old) is None
    assert await store.technician_for_token(new) is not None


async def test_zero_keeps_everything(store: Store, clock: FakeClock) -> None:
    agent, tech, cid = await _world(store, clock)
    await _ended(store, clock, "a" * 32, agent, tech, cid)
    clock.advance(3650 * DAY)
    retention = Retention(store, session_days=0, audit_days=0)
    assert not retention.enabled
    purged = await retention.run_once()
    assert (purged.sessions, purged.events) == (0, 0)
    assert (await _ids(store))[0] == {"a" * 32}


async def test_the_server_runs_the_purge_itself(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    clock = FakeClock()
    store = Store(await open_engine(url), clock=clock)
    agent, tech, cid = await _world(store, clock)
    await _ended(store, clock, "a" * 32, agent, tech, cid)
    clock.advance(timedelta(days=30))
    await _ended(store, clock, "b" * 32, agent, tech, cid)
    clock.advance(timedelta(days=370))  # a is 400 days old and a microsecond more
    clock.advance(TICK)
    settings = Settings(db_url=url, node_id="n1")  # the defaults: 400 days
    assert settings.session_retention_days == 400
    app = build_app(settings, store=store)
    srv = TestServer(app)
    await srv.start_server()
    try:
        retention = app[RETENTION]
        for _ in range(200):  # the task's first run comes at start
            if retention.last is not None:
                break
            await asyncio.sleep(0.05)
        assert retention.last is not None and retention.last.sessions == 1
        assert (await _ids(store))[0] == {"b" * 32}
    finally:
        await srv.close()
        await store.close()
