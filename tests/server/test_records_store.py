# ruff: noqa: F811  (the fixtures imported from test_store)
"""The records (issue 9): migration 0005 up and down on SQLite and PostgreSQL, the upgrade
from the first schema with rows in it, and the records repository."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from enkaku.server.store import db as store_db
from enkaku.server.store.db import async_url
from enkaku.server.store.models import AuditEvent, Base
from enkaku.server.store.records import (
    RecordsError,
    enrolment_digest,
    normalize_enrolment_code,
)
from enkaku.server.store.repo import Store, StoreError

from .test_store import PASSWORD, START, FakeClock, clock, db_url, store  # noqa: F401


def _migrate(conn: Connection, target: str, down: bool = False) -> None:
    cfg = store_db.alembic_config(conn)
    (command.downgrade if down else command.upgrade)(cfg, target)


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def test_migrations_up_from_empty_and_down_again(db_url: str) -> None:
    engine = create_async_engine(async_url(db_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate, "head")
            assert await conn.run_sync(_tables) == set(Base.metadata.tables) | {"alembic_version"}
            await conn.run_sync(_migrate, "0004", True)
            tables = await conn.run_sync(_tables)
            assert not {"customers", "agent_links", "enrolment_codes"} & tables
            cols = await conn.run_sync(
                lambda c: {x["name"] for x in inspect(c).get_columns("contracts")}
            )
            assert "customer_name" in cols and "customer_id" not in cols
            await conn.run_sync(_migrate, "base", True)
            assert await conn.run_sync(_tables) == {"alembic_version"}
            await conn.run_sync(_migrate, "head")
            assert "customers" in await conn.run_sync(_tables)
    finally:
        await engine.dispose()


async def _insert_issue2_rows(conn: object) -> None:
    run = conn.execute  # type: ignore[attr-defined]
    await run(
        text(
            "INSERT INTO agents (id, public_key, first_seen_at, last_seen_at)"
            " VALUES ('123456789', 'ab', :t, :t), ('987654321', 'cd', :t, :t)"
        ),
        {"t": START},
    )
    await run(
        text(
            "INSERT INTO technicians (id, username, display_name, company,"
            " password_hash, role, active, created_at)"
            " VALUES (1, 'taro', 'Taro', 'ACME', 'x', 'technician', true, :t)"
        ),
        {"t": START},
    )
    for cid, code, name in ((1, "C-1", "Alpha"), (2, "C-2", "Alpha"), (3, "C-3", "Beta")):
        await run(
            text(
                "INSERT INTO contracts (id, code, customer_name, remote_support, valid_from)"
                " VALUES (:id, :code, :name, true, :d)"
            ),
            {"id": cid, "code": code, "name": name, "d": START.date()},
        )
    for sid, contract in (("a" * 32, 1), ("b" * 32, 3)):
        await run(
            text(
                "INSERT INTO sessions (id, agent_id, technician_id, contract_id, node,"
                " requested_at, ended_at, end_reason, bytes_to_agent, bytes_to_technician)"
                " VALUES (:id, '123456789', 1, :c, 'n', :t, :t, 'technician_ended', 10, 20)"
            ),
            {"id": sid, "c": contract, "t": START},
        )
    await run(
        text(
            "INSERT INTO audit_events (session_id, agent_id, technician_id, at, source, event)"
            " VALUES (:s, '123456789', 1, :t, 'agent', 'consent_granted')"
        ),
        {"s": "a" * 32, "t": START},
    )


async def test_upgrade_from_the_first_schema_keeps_sessions_and_contracts(
    db_url: str,
) -> None:
    """Revision 0001 (the issue-2 schema) with rows, up to head: every session, audit
    event and contract is kept; each distinct customer_name became one customer; no
    machine is linked. Down to 0001 again gives the names back."""
    engine = create_async_engine(async_url(db_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate, "0001")
            await _insert_issue2_rows(conn)
            await conn.run_sync(_migrate, "head")
            sessions = (
                await conn.execute(
                    text(
                        "SELECT s.id, s.bytes_to_agent, s.bytes_to_technician, c.code, cu.name"
                        " FROM sessions s JOIN contracts c ON c.id = s.contract_id"
                        " JOIN customers cu ON cu.id = c.customer_id ORDER BY s.id"
                    )
                )
            ).all()
            assert [tuple(r) for r in sessions] == [
                ("a" * 32, 10, 20, "C-1", "Alpha"),
                ("b" * 32, 10, 20, "C-3", "Beta"),
            ]
            customers = (
                await conn.execute(
                    text(
                        "SELECT cu.name, count(c.id) FROM customers cu"
                        " JOIN contracts c ON c.customer_id = cu.id"
                        " GROUP BY cu.name ORDER BY cu.name"
                    )
                )
            ).all()
            assert [tuple(r) for r in customers] == [("Alpha", 2), ("Beta", 1)]
            assert (await conn.execute(text("SELECT count(*) FROM agent_links"))).scalar() == 0
            assert (await conn.execute(text("SELECT count(*) FROM audit_events"))).scalar() == 1
            await conn.run_sync(_migrate, "0001", True)
            back = (
                await conn.execute(text("SELECT code, customer_name FROM contracts ORDER BY id"))
            ).all()
            assert [tuple(r) for r in back] == [("C-1", "Alpha"), ("C-2", "Alpha"), ("C-3", "Beta")]
            assert (await conn.execute(text("SELECT count(*) FROM sessions"))).scalar() == 2
    finally:
        await engine.dispose()


async def test_downgrade_disables_auditors(db_url: str) -> None:
    """The older schema has no read-only role: an auditor must not come back able to
    open sessions."""
    engine = create_async_engine(async_url(db_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate, "head")
            await conn.execute(
                text(
                    "INSERT INTO technicians (id, username, display_name, company,"
                    " password_hash, role, active, created_at)"
                    " VALUES (1, 'aud', 'A', '', 'x', 'auditor', true, :t)"
                ),
                {"t": START},
            )
            await conn.run_sync(_migrate, "0004", True)
            row = (await conn.execute(text("SELECT role, active FROM technicians"))).one()
            assert (row[0], bool(row[1])) == ("technician", False)
    finally:
        await engine.dispose()


# -- the records repository -------------------------------------------------------------


async def test_customers_with_contacts(store: Store) -> None:
    rec = store.records
    c = await rec.create_customer("Acme 株式会社", ["a@acme.example", " b@acme.example "])
    assert c.emails == ["a@acme.example", "b@acme.example"]
    with pytest.raises(RecordsError, match="already exists"):
        await rec.create_customer("Acme 株式会社")
    with pytest.raises(RecordsError, match="not an e-mail"):
        await rec.create_customer("Other", ["nope"])
    assert (await rec.customer("Acme 株式会社")).id == c.id
    assert (await rec.customer(str(c.id))).id == c.id
    changed = await rec.update_customer(c.id, emails=["c@acme.example"], actor=None)
    assert changed.emails == ["c@acme.example"]
    # Keeping an address while adding and removing others (the same row stays).
    changed = await rec.update_customer(c.id, emails=["d@acme.example", "C@acme.example"])
    assert changed.emails == ["C@acme.example", "d@acme.example"]
    renamed = await rec.update_customer(c.id, name="Acme KK", emails=["d@acme.example"])
    assert (renamed.name, renamed.emails) == ("Acme KK", ["d@acme.example"])
    c = renamed
    assert [x.name for x in await rec.customers()] == ["Acme KK"]
    with pytest.raises(StoreError):
        await rec.customer("nobody")


async def test_contract_of_a_customer_by_name_creates_it_once(store: Store) -> None:
    a = await store.create_contract("C-1", "Alpha")
    b = await store.create_contract("C-2", "Alpha", monthly_sessions=5)
    assert a.customer_id == b.customer_id and a.customer_name == "Alpha"
    found = await store.contract_by_code("C-2")
    assert found is not None and (found.customer_name, found.monthly_sessions) == ("Alpha", 5)
    with pytest.raises(StoreError, match="already exists"):
        await store.create_contract("C-1", "Beta")
    with pytest.raises(RecordsError, match="1 or more"):
        await store.create_contract("C-3", "Alpha", monthly_bytes=0)


async def test_usable_contracts_follow_the_machines_customer(
    store: Store,
    clock: FakeClock,
) -> None:
    rec = store.records
    today = clock.now.date()
    await store.create_contract("A-1", "Alpha")
    await store.create_contract(
        "A-OLD",
        "Alpha",
        valid_from=today - timedelta(days=30),
        valid_until=today - timedelta(days=1),
    )
    await store.create_contract("A-HW", "Alpha", remote_support=False)
    await store.create_contract("B-1", "Beta")
    agent = await store.agent_for_key("11" * 32)
    assert [c.code for c in await rec.usable_contracts(agent, today)] == ["A-1", "B-1"]
    tech = await store.create_technician("taro", PASSWORD)
    b1 = await store.contract_by_code("B-1")
    assert b1 is not None
    await store.create_session("s" * 32, agent, tech.id, b1.id, "n")
    link = await rec.link_on_consent("s" * 32)
    assert link is not None and (link.customer_id, link.linked_via) == (b1.customer_id, "consent")
    assert [c.code for c in await rec.usable_contracts(agent, today)] == ["B-1"]
    # Once linked, a second consented session changes nothing.
    await store.create_session("t" * 32, agent, tech.id, b1.id, "n")
    assert await rec.link_on_consent("t" * 32) is None
    events = await store.audit_events("s" * 32)
    assert [(e.event, e.target, e.technician_id) for e in events] == [
        ("agent_linked", f"customer:{b1.customer_id}", tech.id)
    ]


async def test_enrolment_codes(store: Store, clock: FakeClock) -> None:
    rec = store.records
    alpha = await rec.create_customer("Alpha")
    raw, row = await rec.create_enrolment_code(alpha.id, max_uses=2)
    assert row.code_hash == enrolment_digest(raw) and raw not in row.code_hash
    assert row.hint == raw[-4:]
    one, two, three = [await store.agent_for_key(k * 32) for k in ("01", "02", "03")]
    # Typed by a person: lower case, spaces, O for 0 and so on are the same code.
    typed = raw.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert normalize_enrolment_code(typed) == normalize_enrolment_code(raw)
    status, link = await rec.enrol(one, typed)
    assert status == "linked" and link is not None and link.customer_id == alpha.id
    assert (await rec.enrol(one, raw))[0] == "already_linked"
    assert (await rec.enrol(two, raw))[0] == "linked"
    assert (await rec.enrol(three, raw))[0] == "used_up"
    assert (await rec.enrol(three, "AAAA-BBBB-CCCC-DDDD"))[0] == "invalid"
    expiring, _ = await rec.create_enrolment_code(
        alpha.id, max_uses=None, expires_at=clock.now + timedelta(days=1)
    )
    clock.advance(timedelta(days=1))
    assert (await rec.enrol(three, expiring))[0] == "expired"
    revoked, rrow = await rec.create_enrolment_code(alpha.id)
    await rec.revoke_enrolment_code(rrow.id)
    assert (await rec.enrol(three, revoked))[0] == "invalid"
    assert [c.uses for c in await rec.enrolment_codes(alpha.id)] == [2, 0, 0]


async def test_usage_counts_this_calendar_month(store: Store, clock: FakeClock) -> None:
    c = await store.create_contract("C-1", "Alpha", monthly_sessions=2)
    tech = await store.create_technician("taro", PASSWORD)
    agent = await store.agent_for_key("22" * 32)
    clock.now = START.replace(month=1, day=31, hour=23)
    await store.create_session("a" * 32, agent, tech.id, c.id, "n")
    await store.end_session("a" * 32, "technician_ended", bytes_to_agent=5, bytes_to_technician=7)
    clock.now = START.replace(month=2, day=1, hour=0)
    await store.create_session("b" * 32, agent, tech.id, c.id, "n")
    await store.end_session("b" * 32, "technician_ended", bytes_to_agent=1, bytes_to_technician=2)
    jan = await store.records.usage(c.id, START.replace(month=1, day=2).date())
    feb = await store.records.usage(c.id, clock.now.date())
    assert (jan.sessions, jan.bytes, feb.sessions, feb.bytes) == (1, 12, 1, 3)


async def test_roles_and_disabled_accounts(store: Store) -> None:
    rec = store.records
    boss = await store.create_technician("boss", PASSWORD, role="admin")
    aud = await store.create_technician("aud", PASSWORD, role="auditor")
    assert aud.role == "auditor"
    with pytest.raises(StoreError, match="unknown role"):
        await store.create_technician("x", PASSWORD, role="root")
    tech = await store.create_technician("taro", PASSWORD)
    token, _ = await store.issue_token(tech.id)
    await store.create_console_session(tech.id, timedelta(hours=1))
    await rec.set_disabled(tech.id, True, actor=boss.id)
    assert await store.technician_for_token(token) is None
    assert await store.verify_login("taro", PASSWORD) is None
    assert await store.revoke_console_sessions(tech.id) == 0  # already gone
    await rec.set_disabled(tech.id, False, actor=boss.id)
    assert await store.verify_login("taro", PASSWORD) is not None
    assert (
        await store.technician_for_token(token) is None
    )  # a disabled account's tokens stay revoked
    await rec.set_role(tech.id, "auditor", actor=boss.id)
    assert (await store.technician_by_id(tech.id)).role == "auditor"  # type: ignore[union-attr]
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    AuditEvent.event, AuditEvent.technician_id, AuditEvent.target, AuditEvent.detail
                )
                .where(AuditEvent.source == "admin")
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("technician_disabled", boss.id, f"technician:{tech.id}", None),
        ("technician_enabled", boss.id, f"technician:{tech.id}", None),
        ("technician_role", boss.id, f"technician:{tech.id}", "auditor"),
    ]


async def test_a_linked_machine_keeps_its_id(store: Store, clock: FakeClock) -> None:
    alpha = await store.records.create_customer("Alpha")
    raw, _ = await store.records.create_enrolment_code(alpha.id)
    kept = await store.agent_for_key("33" * 32)
    gone = await store.agent_for_key("44" * 32)
    await store.records.enrol(kept, raw)
    clock.advance(timedelta(days=400))
    assert await store.expire_agents(timedelta(days=180)) == 1
    assert await store.agent_exists(kept) and not await store.agent_exists(gone)
