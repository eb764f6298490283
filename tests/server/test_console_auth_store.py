"""The console sign-in's data (store/repo.py, migration 0004) on SQLite and a real
PostgreSQL both: the TOTP replay guard, recovery codes, console sessions and what a
password change or reset revokes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text

from enkaku.server import totp
from enkaku.server.store.db import alembic_config, open_engine
from enkaku.server.store.repo import Store, token_digest

from . import pg
from .test_store import FakeClock

PASSWORD = "correct horse battery"
IDLE = timedelta(hours=1)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    clock = FakeClock()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
        st = Store(await open_engine(url), clock=clock)
        yield st
        await st.close()
        return
    server: str = request.getfixturevalue("pg_server")
    url = await pg.create_database(server)
    st = Store(await open_engine(url), clock=clock)
    try:
        yield st
    finally:
        await st.close()
        await pg.drop_database(server, url)


def clock_of(store: Store) -> FakeClock:
    clock = store._clock
    assert isinstance(clock, FakeClock)
    return clock


async def test_a_totp_step_is_accepted_once_even_concurrently(store: Store) -> None:
    tech = await store.create_technician("taro", PASSWORD)
    await store.begin_totp(tech.id, totp.new_secret())
    assert await store.confirm_totp(tech.id, 100, [])
    assert not await store.use_totp_step(tech.id, 100)  # the confirming code itself
    assert not await store.use_totp_step(tech.id, 99)
    results = await asyncio.gather(*(store.use_totp_step(tech.id, 101) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    assert await store.use_totp_step(tech.id, 102)


async def test_enrolment_is_confirmed_once(store: Store) -> None:
    tech = await store.create_technician("taro", PASSWORD)
    assert not await store.confirm_totp(tech.id, 1, [])  # nothing pending
    await store.begin_totp(tech.id, "A" * 32)
    assert await store.confirm_totp(tech.id, 1, ["d1"])
    await store.begin_totp(tech.id, "B" * 32)
    assert not await store.confirm_totp(tech.id, 2, [])  # already enrolled
    again = await store.technician_by_id(tech.id)
    assert again is not None and again.totp_secret == "A" * 32


async def test_recovery_codes_are_single_use_and_per_account(store: Store) -> None:
    a = await store.create_technician("a", PASSWORD)
    b = await store.create_technician("b", PASSWORD)
    codes = totp.new_recovery_codes()
    await store.begin_totp(a.id, totp.new_secret())
    assert await store.confirm_totp(a.id, 1, [totp.recovery_digest(c) for c in codes])
    assert await store.recovery_codes_left(a.id) == 10
    assert not await store.use_recovery_code(b.id, totp.recovery_digest(codes[0]))
    used = await asyncio.gather(
        *(store.use_recovery_code(a.id, totp.recovery_digest(codes[0])) for _ in range(3))
    )
    assert sorted(used) == [False, False, True]
    assert await store.recovery_codes_left(a.id) == 9
    await store.disable_totp(a.id)
    assert await store.recovery_codes_left(a.id) == 0
    tech = await store.technician_by_id(a.id)
    assert tech is not None and (tech.totp_secret, tech.totp_last_step) == (None, None)


async def test_console_sessions_expire_idle_and_absolute(store: Store) -> None:
    clock = clock_of(store)
    tech = await store.create_technician("taro", PASSWORD)
    raw, row = await store.create_console_session(tech.id, timedelta(hours=12))
    assert raw.startswith("ekc_") and row.token_hash == token_digest(raw)
    found = await store.console_session(raw, IDLE)
    assert found is not None and found[1].username == "taro"
    clock.advance(timedelta(minutes=59))
    assert await store.console_session(raw, IDLE) is not None
    clock.advance(timedelta(minutes=59))
    assert await store.console_session(raw, IDLE) is not None  # the last use counted
    clock.advance(timedelta(minutes=61))
    assert await store.console_session(raw, IDLE) is None
    assert await store.revoke_console_sessions(tech.id) == 0  # the expired row is gone
    raw, _ = await store.create_console_session(tech.id, timedelta(hours=2))
    for _ in range(4):
        clock.advance(timedelta(minutes=40))
        await store.console_session(raw, IDLE)
    assert await store.console_session(raw, IDLE) is None
    assert await store.console_session("ekc_unknown", IDLE) is None


async def test_a_password_change_revokes_all_but_the_current_login(store: Store) -> None:
    tech = await store.create_technician("taro", PASSWORD)
    other = await store.create_technician("jiro", PASSWORD)
    keep, keep_row = await store.create_console_session(tech.id, timedelta(hours=1))
    gone, _ = await store.create_console_session(tech.id, timedelta(hours=1))
    theirs, _ = await store.create_console_session(other.id, timedelta(hours=1))
    token, _ = await store.issue_token(tech.id)
    kept_token, _ = await store.issue_token(tech.id)
    await store.set_password(
        tech.id, "new password!", keep_console_session=keep_row.id, keep_token=kept_token
    )
    assert await store.console_session(keep, IDLE) is not None
    assert await store.console_session(gone, IDLE) is None
    assert await store.console_session(theirs, IDLE) is not None
    assert await store.technician_for_token(token) is None
    assert await store.technician_for_token(kept_token) is not None
    assert await store.verify_login("taro", "new password!") is not None
    await store.set_password(tech.id, "reset by admin")  # nothing kept
    assert await store.console_session(keep, IDLE) is None
    assert await store.technician_for_token(kept_token) is None


async def test_migration_0004_goes_down_and_up_again(store: Store) -> None:
    def down_up(conn: Connection) -> list[str]:
        cfg = alembic_config(conn)
        command.downgrade(cfg, "0003")
        tables = inspect(conn).get_table_names()
        assert "console_sessions" not in tables and "recovery_codes" not in tables
        command.upgrade(cfg, "head")
        return inspect(conn).get_table_names()

    await store.create_technician("taro", PASSWORD)
    async with store.engine.begin() as conn:
        tables = await conn.run_sync(down_up)
        names = (await conn.execute(text("SELECT username FROM technicians"))).scalars().all()
    assert {"console_sessions", "recovery_codes"} <= set(tables)
    assert names == ["taro"]
