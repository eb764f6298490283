"""The persistence layer (enkaku.server.store) on SQLite and a real PostgreSQL both."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from enkaku.server.store import db as store_db
from enkaku.server.store.db import DatabaseError, async_url, open_engine
from enkaku.server.store.models import ApiToken, Base, Technician
from enkaku.server.store.repo import TOKEN_LIFETIME, Store, StoreError

from . import pg

START = datetime(2030, 1, 15, 12, 0, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


class FakeClock:
    """A settable wall clock for Store(clock=...)."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def utc(dt: datetime | None) -> datetime | None:
    """Compare timestamps alike: SQLite hands back naive UTC, PostgreSQL aware ones."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A plain URL to an empty database, removed after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    server: str = request.getfixturevalue("pg_server")  # started only when needed
    url = await pg.create_database(server)
    try:
        yield url
    finally:
        await pg.drop_database(server, url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(db_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    engine = await open_engine(db_url)
    st = Store(engine, clock=clock)
    try:
        yield st
    finally:
        await st.close()


async def _scalar(engine: AsyncEngine, sql: str) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


def _head_revision() -> str | None:
    cfg = store_db.alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(cfg).get_current_head()


# -- async_url ------------------------------------------------------------------------


def test_async_url_sqlite_uses_aiosqlite() -> None:
    assert async_url("sqlite:///var/lib/enkaku/e.db") == "sqlite+aiosqlite:///var/lib/enkaku/e.db"


def test_async_url_postgresql_uses_asyncpg_and_keeps_password() -> None:
    assert (
        async_url("postgresql://enkaku:s3cret@db.example:5433/enkaku")
        == "postgresql+asyncpg://enkaku:s3cret@db.example:5433/enkaku"
    )


def test_async_url_rejects_mysql() -> None:
    with pytest.raises(
        DatabaseError, match=r"unsupported database 'mysql'.*sqlite:///.*postgresql"
    ):
        async_url("mysql://u@localhost/enkaku")


def test_async_url_rejects_garbage() -> None:
    with pytest.raises(DatabaseError, match="invalid database URL"):
        async_url("not a url")


async def test_open_engine_rejects_unsupported_backend() -> None:
    with pytest.raises(DatabaseError, match="unsupported database"):
        await open_engine("mysql://u@localhost/enkaku")


async def test_open_engine_reports_missing_postgresql_database(pg_server: str) -> None:
    await pg.server_version(pg_server)  # fail (not skip) with the hint if it is down
    missing = f"{pg_server}/enkaku_t_missing_{secrets.token_hex(4)}"
    with pytest.raises(DatabaseError, match="cannot open or migrate the database"):
        await open_engine(missing)


async def test_postgresql_is_recent_enough(pg_server: str) -> None:
    version = await pg.server_version(pg_server)
    # DROP DATABASE ... WITH (FORCE) in tests/server/pg.py needs 13 or later.
    assert int(version.split(".")[0]) >= 13, version


# -- migrations -----------------------------------------------------------------------


async def test_migration_creates_every_table(db_url: str) -> None:
    engine = await open_engine(db_url)
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("audit_events"))
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        assert {"ix_audit_events_session_id"} <= {ix["name"] for ix in indexes}
        assert await _scalar(engine, "SELECT version_num FROM alembic_version") == (
            _head_revision()
        )
    finally:
        await engine.dispose()


async def test_migration_is_idempotent(db_url: str) -> None:
    first = await open_engine(db_url)
    try:
        await Store(first).create_technician("keep", PASSWORD)
    finally:
        await first.dispose()
    second = await open_engine(db_url)  # already at head: must change nothing
    try:
        assert await _scalar(second, "SELECT count(*) FROM alembic_version") == 1
        assert await _scalar(second, "SELECT version_num FROM alembic_version") == (
            _head_revision()
        )
        assert await Store(second).verify_login("keep", PASSWORD) is not None
    finally:
        await second.dispose()


def test_schema_head_names_the_newest_migration() -> None:
    """open_engine skips Alembic for a database at SCHEMA_HEAD: a new migration must
    move it, or databases would stay on the old schema."""
    assert _head_revision() == store_db.SCHEMA_HEAD


async def test_an_older_database_is_still_migrated_on_open(db_url: str) -> None:
    engine = create_async_engine(async_url(db_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(store_db.alembic_config(c), "0006"))
    finally:
        await engine.dispose()
    opened = await open_engine(db_url)
    try:
        assert await _scalar(opened, "SELECT version_num FROM alembic_version") == (
            _head_revision()
        )
    finally:
        await opened.dispose()


async def test_migration_0002_up_and_down_keeps_the_sessions(db_url: str) -> None:
    """0002 adds who asserted the end reason and the comment; old rows survive both ways."""
    engine = create_async_engine(async_url(db_url))

    def migrate(conn: Connection, target: str, down: bool = False) -> None:
        cfg = store_db.alembic_config(conn)
        (command.downgrade if down else command.upgrade)(cfg, target)

    def columns(conn: Connection) -> set[str]:
        return {c["name"] for c in inspect(conn).get_columns("sessions")}

    new = {"end_asserted_by", "ended_by_technician_id", "end_comment"}
    try:
        async with engine.begin() as conn:
            await conn.run_sync(migrate, "0001")
            assert not new & await conn.run_sync(columns)
            await conn.execute(
                text(
                    "INSERT INTO agents (id, public_key, first_seen_at, last_seen_at)"
                    " VALUES ('123456789', 'ab', :t, :t)"
                ),
                {"t": START},
            )
            await conn.execute(
                text(
                    "INSERT INTO technicians (id, username, display_name, company,"
                    " password_hash, role, active, created_at)"
                    " VALUES (1, 'taro', 'Taro', 'ACME', 'x', 'technician', true, :t)"
                ),
                {"t": START},
            )
            await conn.execute(
                text(
                    "INSERT INTO contracts (id, code, customer_name, remote_support, valid_from)"
                    " VALUES (1, 'C-1', 'One', true, :d)"
                ),
                {"d": START.date()},
            )
            for sid, reason in (("a" * 32, "timeout"), ("b" * 32, "malware_found")):
                await conn.execute(
                    text(
                        "INSERT INTO sessions (id, agent_id, technician_id, contract_id, node,"
                        " requested_at, ended_at, end_reason, bytes_to_agent,"
                        " bytes_to_technician)"
                        " VALUES (:id, '123456789', 1, 1, 'n', :t, :t, :r, 1, 2)"
                    ),
                    {"id": sid, "t": START, "r": reason},
                )
            await conn.run_sync(migrate, "0002")
            assert new <= await conn.run_sync(columns)
            rows = (
                await conn.execute(
                    text("SELECT id, end_reason, end_asserted_by FROM sessions ORDER BY id")
                )
            ).all()
            # Only the server gives timeout; nobody can tell who claimed malware_found.
            assert [tuple(r) for r in rows] == [
                ("a" * 32, "timeout", "server"),
                ("b" * 32, "malware_found", None),
            ]
            await conn.run_sync(migrate, "0001", True)
            assert not new & await conn.run_sync(columns)
            count = await conn.execute(text("SELECT count(*) FROM sessions"))
            assert count.scalar_one() == 2
            await conn.run_sync(migrate, "head")
            assert new <= await conn.run_sync(columns)
    finally:
        await engine.dispose()


async def test_models_match_migrated_schema(store: Store) -> None:
    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


# -- technicians and tokens -------------------------------------------------------------


async def test_create_technician(store: Store, clock: FakeClock) -> None:
    tech = await store.create_technician("taro", PASSWORD, company="ACME")
    assert tech.id is not None
    assert (tech.username, tech.display_name, tech.company, tech.role) == (
        "taro",
        "taro",
        "ACME",
        "technician",
    )
    assert utc(tech.created_at) == clock.now
    assert PASSWORD not in tech.password_hash
    assert tech.password_hash.startswith("$argon2id$")


async def test_create_technician_duplicate_name(store: Store) -> None:
    await store.create_technician("taro", PASSWORD)
    with pytest.raises(StoreError, match="'taro' already exists"):
        await store.create_technician("taro", "another password")
    # The failed insert left the store usable and the first account intact.
    assert await store.verify_login("taro", PASSWORD) is not None
    await store.create_technician("hanako", PASSWORD)


async def test_create_technician_unknown_role(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown role 'root'"):
        await store.create_technician("taro", PASSWORD, role="root")


async def test_verify_login(store: Store) -> None:
    tech = await store.create_technician("taro", PASSWORD, role="admin")
    ok = await store.verify_login("taro", PASSWORD)
    assert ok is not None
    assert (ok.id, ok.role) == (tech.id, "admin")
    assert await store.verify_login("taro", PASSWORD + "x") is None
    assert await store.verify_login("TARO", PASSWORD) is None
    assert await store.verify_login("nobody", PASSWORD) is None
    assert await store.verify_login("taro", "") is None


async def test_verify_login_inactive_account(store: Store) -> None:
    tech = await store.create_technician("taro", PASSWORD)
    async with store.engine.begin() as conn:
        await conn.execute(update(Technician).where(Technician.id == tech.id).values(active=False))
    assert await store.verify_login("taro", PASSWORD) is None


async def test_issue_and_resolve_token(store: Store, clock: FakeClock) -> None:
    tech = await store.create_technician("taro", PASSWORD)
    raw, expires = await store.issue_token(tech.id, "laptop")
    assert raw.startswith("ek_")
    assert expires == clock.now + TOKEN_LIFETIME
    clock.advance(timedelta(hours=1))
    found = await store.technician_for_token(raw)
    assert found is not None
    assert found.id == tech.id
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(ApiToken))).one()
    # Only the digest is stored, never the token itself.
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in (row.token_hash, row.label)
    assert row.label == "laptop"
    assert utc(row.last_used_at) == clock.now


async def test_unknown_token(store: Store) -> None:
    await store.create_technician("taro", PASSWORD)
    assert await store.technician_for_token("ek_nope") is None
    assert await store.technician_for_token("") is None


async def test_token_expiry(store: Store, clock: FakeClock) -> None:
    tech = await store.create_technician("taro", PASSWORD)
    raw, expires = await store.issue_token(tech.id)
    clock.now = expires - timedelta(seconds=1)
    assert await store.technician_for_token(raw) is not None
    clock.now = expires
    assert await store.technician_for_token(raw) is None
    clock.now = expires + timedelta(days=1)
    assert await store.technician_for_token(raw) is None


async def test_token_of_inactive_technician(store: Store) -> None:
    tech = await store.create_technician("taro", PASSWORD)
    raw, _ = await store.issue_token(tech.id)
    async with store.engine.begin() as conn:
        await conn.execute(update(Technician).where(Technician.id == tech.id).values(active=False))
    assert await store.technician_for_token(raw) is None


async def test_revoke_token(store: Store) -> None:
    tech = await store.create_technician("taro", PASSWORD)
    raw, _ = await store.issue_token(tech.id)
    other, _ = await store.issue_token(tech.id)
    await store.revoke_token(raw)
    assert await store.technician_for_token(raw) is None
    assert await store.technician_for_token(other) is not None
    await store.revoke_token(raw)  # twice, and unknown: no error
    await store.revoke_token("ek_unknown")


# -- agents -------------------------------------------------------------------------------


async def test_agent_ids_stable_and_distinct(store: Store, clock: FakeClock) -> None:
    keys = [secrets.token_hex(32) for _ in range(25)]
    ids = [await store.agent_for_key(k) for k in keys]
    assert len(set(ids)) == len(keys)
    for agent_id in ids:
        assert re.fullmatch(r"[1-9][0-9]{8}", agent_id), agent_id
        assert await store.agent_exists(agent_id)
    clock.advance(timedelta(days=3))
    assert [await store.agent_for_key(k) for k in keys] == ids
    assert not await store.agent_exists("000000000")
    seen = await _scalar(store.engine, f"SELECT last_seen_at FROM agents WHERE id = '{ids[0]}'")
    first = await _scalar(store.engine, f"SELECT first_seen_at FROM agents WHERE id = '{ids[0]}'")
    # SQLite returns the stored text; PostgreSQL a datetime.
    if isinstance(seen, str) and isinstance(first, str):
        seen, first = datetime.fromisoformat(seen), datetime.fromisoformat(first)
    assert isinstance(seen, datetime) and isinstance(first, datetime)
    assert (utc(first), utc(seen)) == (START, clock.now)


# -- contracts ------------------------------------------------------------------------------


async def test_contracts(store: Store, clock: FakeClock) -> None:
    b = await store.create_contract("C-2", "Beta")
    a = await store.create_contract("C-1", "Alpha", valid_until=date(2031, 1, 1))
    assert b.valid_from == clock.now.date()  # defaults to today
    assert [c.code for c in await store.list_contracts()] == ["C-1", "C-2"]
    found = await store.contract_by_code("C-1")
    assert found is not None
    assert (found.id, found.customer_name, found.valid_until) == (a.id, "Alpha", date(2031, 1, 1))
    assert await store.contract_by_code("C-9") is None
    with pytest.raises(StoreError, match="'C-1' already exists"):
        await store.create_contract("C-1", "Again")


async def test_contract_serviceable(store: Store, clock: FakeClock) -> None:
    today = clock.now.date()
    day = timedelta(days=1)
    excluded = await store.create_contract("X", "x", remote_support=False)
    future = await store.create_contract("F", "f", valid_from=today + day)
    expired = await store.create_contract(
        "E", "e", valid_from=date(2020, 1, 1), valid_until=today - day
    )
    last_day = await store.create_contract("L", "l", valid_from=today, valid_until=today)
    open_ended = await store.create_contract("O", "o", valid_from=date(2020, 1, 1))

    assert store.contract_serviceable(excluded) == "contract_excludes_remote_support"
    assert store.contract_serviceable(future) == "contract_not_in_force"
    assert store.contract_serviceable(expired) == "contract_not_in_force"
    assert store.contract_serviceable(last_day) is None
    assert store.contract_serviceable(open_ended) is None

    clock.advance(day)  # the future one starts, the last day has passed
    assert store.contract_serviceable(future) is None
    assert store.contract_serviceable(last_day) == "contract_not_in_force"


# -- sessions and audit --------------------------------------------------------------------


async def _parties(store: Store) -> tuple[str, int, int]:
    agent_id = await store.agent_for_key(secrets.token_hex(32))
    tech = await store.create_technician(f"t{secrets.token_hex(3)}", PASSWORD)
    contract = await store.create_contract(f"C-{secrets.token_hex(3)}", "Customer")
    return agent_id, tech.id, contract.id


async def test_session_lifecycle(store: Store, clock: FakeClock) -> None:
    agent_id, tech_id, contract_id = await _parties(store)
    sid = secrets.token_hex(16)
    row = await store.create_session(sid, agent_id, tech_id, contract_id, "node-a")
    assert utc(row.requested_at) == START

    clock.advance(timedelta(seconds=5))
    await store.mark_paired(sid)
    clock.advance(timedelta(minutes=10))
    assert await store.end_session(
        sid, "technician_left", bytes_to_agent=1234, bytes_to_technician=5_000_000_000
    )

    got = await store.get_session(sid)
    assert got is not None
    assert (got.agent_id, got.technician_id, got.contract_id, got.node) == (
        agent_id,
        tech_id,
        contract_id,
        "node-a",
    )
    assert utc(got.paired_at) == START + timedelta(seconds=5)
    assert utc(got.ended_at) == clock.now
    assert (got.end_reason, got.end_detail) == ("technician_left", None)
    assert (got.bytes_to_agent, got.bytes_to_technician) == (1234, 5_000_000_000)


async def test_end_session_only_once(store: Store, clock: FakeClock) -> None:
    agent_id, tech_id, contract_id = await _parties(store)
    sid = secrets.token_hex(16)
    await store.create_session(sid, agent_id, tech_id, contract_id, "node-a")
    assert await store.end_session(
        sid, "agent_left", bytes_to_agent=1, bytes_to_technician=2, detail="bye"
    )
    ended_at = clock.now
    clock.advance(timedelta(minutes=1))
    assert not await store.end_session(
        sid, "timeout", bytes_to_agent=99, bytes_to_technician=99, detail="late"
    )
    got = await store.get_session(sid)
    assert got is not None
    assert (utc(got.ended_at), got.end_reason, got.end_detail) == (ended_at, "agent_left", "bye")
    assert (got.bytes_to_agent, got.bytes_to_technician) == (1, 2)
    assert not await store.end_session("0" * 32, "timeout", bytes_to_agent=0, bytes_to_technician=0)
    assert await store.get_session("0" * 32) is None


async def test_end_orphaned_sessions_only_for_node(store: Store, clock: FakeClock) -> None:
    agent_id, tech_id, contract_id = await _parties(store)
    open_a1, open_a2, done_a, open_b = (secrets.token_hex(16) for _ in range(4))
    for sid, node in (
        (open_a1, "node-a"),
        (open_a2, "node-a"),
        (done_a, "node-a"),
        (open_b, "node-b"),
    ):
        await store.create_session(sid, agent_id, tech_id, contract_id, node)
    await store.end_session(done_a, "agent_left", bytes_to_agent=0, bytes_to_technician=0)
    done_at = clock.now
    clock.advance(timedelta(hours=1))

    assert await store.end_orphaned_sessions("node-a") == 2
    for sid in (open_a1, open_a2):
        got = await store.get_session(sid)
        assert got is not None
        assert (utc(got.ended_at), got.end_reason) == (clock.now, "server_restart")
    got = await store.get_session(done_a)
    assert got is not None
    assert (utc(got.ended_at), got.end_reason) == (done_at, "agent_left")
    got = await store.get_session(open_b)
    assert got is not None
    assert (got.ended_at, got.end_reason) == (None, None)

    assert await store.end_orphaned_sessions("node-a") == 0
    assert await store.end_orphaned_sessions("node-b", "crash") == 1
    got = await store.get_session(open_b)
    assert got is not None
    assert got.end_reason == "crash"


async def test_audit_events_in_order(store: Store, clock: FakeClock) -> None:
    agent_id, tech_id, contract_id = await _parties(store)
    sid, other = secrets.token_hex(16), secrets.token_hex(16)
    await store.create_session(sid, agent_id, tech_id, contract_id, "node-a")
    names = ["requested", "consent_asked", "consent_given", "paired", "ended"]
    for i, name in enumerate(names):
        await store.audit("server", name, session_id=sid, agent_id=agent_id, detail=f"d{i}")
        await store.audit("agent", "noise", session_id=other)
        clock.advance(timedelta(seconds=1))
    await store.audit("server", "login", technician_id=tech_id)  # no session at all

    events = await store.audit_events(sid)
    assert [e.event for e in events] == names
    assert [e.detail for e in events] == [f"d{i}" for i in range(len(names))]
    assert [utc(e.at) for e in events] == [START + timedelta(seconds=i) for i in range(5)]
    assert {(e.source, e.agent_id, e.session_id) for e in events} == {("server", agent_id, sid)}
    assert len(await store.audit_events(other)) == 5
    assert await store.audit_events("f" * 32) == []


async def test_audit_truncates_and_drops_empty_detail(store: Store) -> None:
    sid = secrets.token_hex(16)
    await store.audit("technician", "e" * 100, session_id=sid, detail="x" * 5000)
    await store.audit("technician", "empty", session_id=sid, detail="")
    long, empty = await store.audit_events(sid)
    assert long.event == "e" * 48
    assert long.detail == "x" * 1000
    assert empty.detail is None


async def test_end_records_who_asserted_it(store: Store) -> None:
    agent_id, tech_id, contract_id = await _parties(store)
    by_api, orphan = secrets.token_hex(16), secrets.token_hex(16)
    for sid in (by_api, orphan):
        await store.create_session(sid, agent_id, tech_id, contract_id, "node-a")
    assert await store.end_session(
        by_api,
        "malware_found",
        bytes_to_agent=0,
        bytes_to_technician=0,
        asserted_by="technician",
        ended_by_technician_id=tech_id,
        comment="trojan in autostart",
    )
    await store.end_orphaned_sessions("node-a")
    got = await store.get_session(by_api)
    assert got is not None
    assert (got.end_asserted_by, got.ended_by_technician_id, got.end_comment) == (
        "technician",
        tech_id,
        "trojan in autostart",
    )
    got = await store.get_session(orphan)
    assert got is not None
    assert (got.end_reason, got.end_asserted_by, got.ended_by_technician_id) == (
        "server_restart",
        "server",
        None,
    )
