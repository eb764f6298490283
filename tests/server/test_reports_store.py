# ruff: noqa: F811  (the fixtures imported from test_store)
"""Reports and privacy on the store (issue 9), on SQLite and PostgreSQL: session history
filters and the month in the server's time zone, the monthly CSV and HTML, one session's
trail, a customer's export and deletion."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from enkaku.server.agents import file_audit, hash_file_name
from enkaku.server.reports import Month, monthly_csv, monthly_html, trail_text
from enkaku.server.settings import Settings, SettingsError, from_env
from enkaku.server.store import db as store_db
from enkaku.server.store.db import async_url
from enkaku.server.store.records import RecordsError
from enkaku.server.store.repo import Store
from enkaku.server.store.reports import SessionFilter

from .test_store import PASSWORD, FakeClock, clock, db_url, store  # noqa: F401

TOKYO = ZoneInfo("Asia/Tokyo")
SHA = "ab" * 32


@dataclass
class Seeded:
    acme: int
    beta: int
    taro: int
    hana: int
    sessions: dict[str, str]


async def _session(
    store: Store,
    clock: FakeClock,
    sid: str,
    at: datetime,
    agent: str,
    tech: int,
    contract: int,
    *,
    to_agent: int = 0,
    to_tech: int = 0,
    events: tuple[tuple[str, str | None, dict[str, object]], ...] = (),
    reason: str = "technician_ended",
    comment: str | None = None,
) -> None:
    clock.now = at
    await store.create_session(sid, agent, tech, contract, "n1")
    clock.now = at + timedelta(seconds=5)
    await store.mark_paired(sid)
    for i, (event, detail, fields) in enumerate(events):
        clock.now = at + timedelta(seconds=10 + i)
        await store.audit(
            "agent", event, session_id=sid, agent_id=agent, technician_id=tech, detail=detail,
            **fields,  # type: ignore[arg-type]
        )  # fmt: skip
    clock.now = at + timedelta(minutes=30, seconds=5)
    await store.end_session(
        sid,
        reason,
        bytes_to_agent=to_agent,
        bytes_to_technician=to_tech,
        asserted_by="technician",
        comment=comment,
    )


async def seed(store: Store, clock: FakeClock) -> Seeded:
    acme = await store.records.create_customer("ACME K.K.", ["it@acme.example"])
    beta = await store.records.create_customer("Beta", [])
    c_a = await store.create_contract("A-1", acme.id, valid_from=datetime(2026, 1, 1).date())
    c_b = await store.create_contract("B-1", beta.id, valid_from=datetime(2026, 1, 1).date())
    taro = await store.create_technician("taro", PASSWORD)
    hana = await store.create_technician("hana", PASSWORD)
    a1 = await store.agent_for_key("11" * 32)
    a2 = await store.agent_for_key("22" * 32)
    await store.records.create_enrolment_code(acme.id)
    ids = {}
    # 2026-10-31 15:30 UTC is 2026-11-01 00:30 in Tokyo: November there, October in UTC.
    ids["early"] = "e" * 32
    await _session(
        store,
        clock,
        ids["early"],
        datetime(2026, 10, 31, 15, 30, tzinfo=UTC),
        a1,
        taro.id,
        c_a.id,
        to_agent=1000,
        to_tech=2000,
        events=(
            ("consent_granted", None, {}),
            ("action_granted", "file_to_customer", {}),
            (
                "file_received",
                "4096",
                {"file_name": hash_file_name("invoice.pdf"), "file_size": 4096, "file_sha256": SHA},
            ),
            ("action_denied", "screenshot:customer_refused", {}),
        ),
        reason="customer_request",
        comment="=HYPERLINK(evil) asked to stop",
    )
    ids["mid"] = "f" * 32
    await _session(
        store,
        clock,
        ids["mid"],
        datetime(2026, 11, 15, 3, 0, tzinfo=UTC),
        a1,
        hana.id,
        c_a.id,
        to_agent=10,
        to_tech=20,
        events=(("consent_granted", None, {}), ("screenshot_sent", "1024x768", {})),
    )
    # The last instant of November in Tokyo, and the first of December.
    ids["last"] = "1" * 32
    await _session(
        store,
        clock,
        ids["last"],
        datetime(2026, 11, 30, 14, 59, 59, tzinfo=UTC),
        a2,
        taro.id,
        c_b.id,
    )
    ids["december"] = "2" * 32
    await _session(
        store,
        clock,
        ids["december"],
        datetime(2026, 11, 30, 15, 0, tzinfo=UTC),
        a1,
        taro.id,
        c_a.id,
    )
    await store.records.link_on_consent(ids["early"])
    return Seeded(acme.id, beta.id, taro.id, hana.id, ids)


async def test_history_filters_by_customer_technician_contract_and_month_in_the_zone(
    store: Store, clock: FakeClock
) -> None:
    s = await seed(store, clock)
    nov = Month.parse("2026-11", TOKYO)
    rows, total = await store.reports.sessions(SessionFilter(start=nov.start, end=nov.end))
    assert [r.id for r in rows] == [s.sessions[k] for k in ("early", "mid", "last")]
    assert total == 3
    utc_nov = Month.parse("2026-11", ZoneInfo("UTC"))
    rows, _ = await store.reports.sessions(SessionFilter(start=utc_nov.start, end=utc_nov.end))
    assert [r.id for r in rows] == [s.sessions[k] for k in ("mid", "last", "december")]
    rows, total = await store.reports.sessions(SessionFilter(customer_id=s.acme))
    assert total == 3 and {r.customer for r in rows} == {"ACME K.K."}
    rows, _ = await store.reports.sessions(SessionFilter(technician_id=s.hana))
    assert [r.id for r in rows] == [s.sessions["mid"]]
    contract = await store.reports.contract_ref("B-1")
    assert contract is not None
    rows, _ = await store.reports.sessions(SessionFilter(contract_id=contract.id))
    assert [r.id for r in rows] == [s.sessions["last"]]
    rows, total = await store.reports.sessions(SessionFilter(limit=2, offset=2))
    assert total == 4 and [r.id for r in rows] == [s.sessions["last"], s.sessions["december"]]
    early = await store.reports.session(s.sessions["early"])
    assert early is not None
    assert early.duration == 30 * 60 and early.bytes_to_agent == 1000
    assert early.end_reason == "customer_request" and early.end_asserted_by == "technician"


async def test_monthly_csv_and_html_show_what_happened_in_the_zone(
    store: Store, clock: FakeClock
) -> None:
    s = await seed(store, clock)
    nov = Month.parse("2026-11", TOKYO)
    customer, records = await store.reports.month(s.acme, nov.start, nov.end)
    assert [r.id for r in records] == [s.sessions["early"], s.sessions["mid"]]
    rows = list(csv.DictReader(io.StringIO(monthly_csv(records, TOKYO))))
    first = rows[0]
    assert first["requested"] == "2026-11-01T00:30:00+09:00"
    assert first["connected"] == "2026-11-01T00:30:05+09:00"
    assert first["duration_seconds"] == "1800"
    assert (first["bytes_to_customer"], first["bytes_from_customer"]) == ("1000", "2000")
    assert first["consent"] == "granted"
    assert first["actions"] == "file_to_customer granted; screenshot denied (customer_refused)"
    assert first["files_to_customer"] == f"{hash_file_name('invoice.pdf')} 4096 sha256:{SHA}"
    assert first["end_reason"] == "customer_request" and first["end_asserted_by"] == "technician"
    # A comment that a spreadsheet would run as a formula is quoted.
    assert first["comment"] == "'=HYPERLINK(evil) asked to stop"
    assert rows[1]["screenshots"] == "1" and rows[1]["technician"] == "hana"
    page = monthly_html(customer, nov, records, company="Support Co.")
    assert "リモートサポート月次報告書" in page and "Remote support report" in page
    assert "@media print" in page and "@page" in page
    assert "2026-11-01 00:30:00" in page and "Asia/Tokyo" in page
    assert "&lt;" not in customer.name and "=HYPERLINK(evil) asked to stop" in page
    assert "1,010 bytes" in page and "2,020 bytes" in page  # totals each way
    trail = await store.reports.session(s.sessions["early"])
    assert trail is not None
    text = trail_text(trail, TOKYO)
    assert "file_received\tFile to the customer: sha256:" in text
    assert "The customer refused: screenshot:customer_refused" in text


async def test_html_escapes_names(store: Store, clock: FakeClock) -> None:
    c = await store.records.create_customer("<script>x</script>")
    nov = Month.parse("2026-11", TOKYO)
    customer, records = await store.reports.month(c.id, nov.start, nov.end)
    page = monthly_html(customer, nov, records)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "No session this month." in page


async def test_export_holds_everything_about_the_customer(store: Store, clock: FakeClock) -> None:
    s = await seed(store, clock)
    data = await store.reports.export_customer(s.acme)
    json.dumps(data)  # JSON-ready
    assert data["customer"]["name"] == "ACME K.K."
    assert data["customer"]["contacts"] == ["it@acme.example"]
    assert [c["code"] for c in data["contracts"]] == ["A-1"]
    assert len(data["agents"]) == 1 and len(data["enrolment_codes"]) == 1
    assert "code_hash" not in data["enrolment_codes"][0]
    assert [x["id"] for x in data["sessions"]] == [
        s.sessions[k] for k in ("early", "mid", "december")
    ]
    assert data["sessions"][0]["events"][2]["file_size"] == 4096
    assert any(e["event"] == "agent_linked" for e in data["sessions"][0]["events"])
    beta = await store.reports.export_customer(s.beta)
    assert [x["id"] for x in beta["sessions"]] == [s.sessions["last"]]


async def test_deleting_a_customer_removes_its_personal_data_only(
    store: Store, clock: FakeClock
) -> None:
    s = await seed(store, clock)
    admin = await store.create_technician("boss", PASSWORD, role="admin")
    for sid in (s.sessions["early"], s.sessions["last"]):  # ACME's, Beta's
        code = "A-1" if sid == s.sessions["early"] else "B-1"
        await store.audit("server", "session_request", session_id=sid, detail=code)
    clock.now = datetime(2026, 12, 10, tzinfo=UTC)
    contract = await store.reports.contract_ref("A-1")
    assert contract is not None
    agent = (await store.reports.session(s.sessions["early"])).agent_id  # type: ignore[union-attr]
    await store.create_session("7" * 32, agent, s.taro, contract.id, "n1")
    with pytest.raises(RecordsError) as running:
        await store.reports.delete_customer(s.acme, actor=admin.id)
    assert running.value.key == "store_customer_session_running"
    assert (await store.reports.export_customer(s.acme))["customer"]["name"] == "ACME K.K."
    await store.end_session("7" * 32, "technician_ended", bytes_to_agent=0, bytes_to_technician=0)
    await store.reports.delete_customer(s.acme, actor=admin.id)
    rows = await store.reports.all_rows()
    dump = json.dumps(rows, default=str)
    for gone in ("ACME", "it@acme.example", "asked to stop", hash_file_name("invoice.pdf")):
        assert gone not in dump
    (acme,) = [c for c in rows["customers"] if c["id"] == s.acme]
    assert acme["name"] == f"deleted customer {s.acme}" and acme["deleted_at"] is not None
    assert not [r for r in rows["customer_contacts"] if r["customer_id"] == s.acme]
    assert not [r for r in rows["agent_links"] if r["customer_id"] == s.acme]
    assert not [r for r in rows["enrolment_codes"] if r["customer_id"] == s.acme]
    (deleted_contract,) = [c for c in rows["contracts"] if c["customer_id"] == s.acme]
    assert deleted_contract["code"] == f"deleted-{deleted_contract['id']}"
    assert not deleted_contract["remote_support"]
    # The sessions keep ids, times and volumes; no comment.
    early = next(r for r in rows["sessions"] if r["id"] == s.sessions["early"])
    assert (early["bytes_to_agent"], early["bytes_to_technician"]) == (1000, 2000)
    assert early["end_comment"] is None and early["agent_id"]
    files = [e for e in rows["audit_events"] if e["event"] == "file_received"]
    assert files[0]["file_name"] is None and files[0]["file_size"] == 4096
    requests = {e["session_id"]: e["detail"] for e in rows["audit_events"]
                if e["event"] == "session_request"}  # fmt: skip
    assert requests == {s.sessions["early"]: None, s.sessions["last"]: "B-1"}
    deleted = [e for e in rows["audit_events"] if e["event"] == "customer_deleted"]
    assert len(deleted) == 1
    assert deleted[0]["target"] == f"customer:{s.acme}" and deleted[0]["detail"] is None
    assert deleted[0]["technician_id"] == admin.id
    # The other customer is untouched.
    beta = await store.reports.export_customer(s.beta)
    assert beta["customer"]["name"] == "Beta" and beta["contracts"][0]["code"] == "B-1"
    # The deleted customer's contract can no longer be billed.
    usable = await store.records.usable_contracts(early["agent_id"], clock.now.date())
    assert [c.code for c in usable] == ["B-1"]


def test_file_audit_keeps_the_name_as_the_setting_says() -> None:
    detail = f"4096:{SHA}:請求書.pdf"
    size, fields = file_audit(detail, "hash")
    assert size == "4096"
    assert fields == {
        "file_size": 4096,
        "file_sha256": SHA,
        "file_name": hash_file_name("請求書.pdf"),
    }
    assert fields["file_name"].startswith("sha256:") and "請求書" not in fields["file_name"]
    _, clear = file_audit(detail, "clear")
    assert clear["file_name"] == "請求書.pdf"
    # An older agent sends the size alone.
    assert file_audit("12", "hash") == ("12", {"file_size": 12})


def _columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


def _migrate(conn: Connection, target: str, down: bool = False) -> None:
    cfg = store_db.alembic_config(conn)
    (command.downgrade if down else command.upgrade)(cfg, target)


async def test_migration_0006_down_and_up_keeps_the_rows(db_url: str) -> None:
    engine = create_async_engine(async_url(db_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate, "head")
            await conn.execute(
                text(
                    "INSERT INTO audit_events (at, source, event, detail, file_name, file_size,"
                    " file_sha256) VALUES (:t, 'agent', 'file_sent', '7', 'sha256:x', 7, :h)"
                ),
                {"t": datetime(2026, 11, 1, tzinfo=UTC), "h": SHA},
            )
            await conn.run_sync(_migrate, "0005", True)
            assert "file_name" not in await conn.run_sync(_columns, "audit_events")
            assert "deleted_at" not in await conn.run_sync(_columns, "customers")
            await conn.run_sync(_migrate, "head")
            assert {"file_name", "file_size", "file_sha256"} <= await conn.run_sync(
                _columns, "audit_events"
            )
            rows = (await conn.execute(text("SELECT event, detail FROM audit_events"))).all()
            assert [tuple(r) for r in rows] == [("file_sent", "7")]
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time_zone", "Mars/Olympus"),
        ("time_zone", ""),
        ("audit_file_names", "plain"),
        ("session_retention_days", -1),
        ("audit_retention_days", -1),
    ],
)
def test_bad_report_and_retention_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(SettingsError, match=field):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_report_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_TIME_ZONE", "Asia/Tokyo")
    monkeypatch.setenv("ENKAKU_AUDIT_FILE_NAMES", "clear")
    monkeypatch.setenv("ENKAKU_SESSION_RETENTION_DAYS", "730")
    monkeypatch.setenv("ENKAKU_AUDIT_RETENTION_DAYS", "0")
    s = from_env()
    assert (s.zone, s.audit_file_names) == (TOKYO, "clear")
    assert (s.session_retention_days, s.audit_retention_days) == (730, 0)
    assert Settings().time_zone == "UTC" and Settings().audit_file_names == "hash"


async def test_a_sessions_end_and_its_audit_event_commit_together(
    store: Store,
    clock: FakeClock,
    db_url: str,
) -> None:
    s = await seed(store, clock)
    contract = await store.reports.contract_ref("A-1")
    assert contract is not None
    agent = await store.agent_for_key("66" * 32)
    await store.create_session("9" * 32, agent, s.taro, contract.id, "n1")
    kw = {"bytes_to_agent": 1, "bytes_to_technician": 2, "asserted_by": "technician"}
    if db_url.startswith("postgresql"):
        # An event the database refuses (an agent ID longer than its column) takes the
        # end back with it: never an end without its event.
        with pytest.raises(DBAPIError):
            await store.end_session("9" * 32, "technician_ended", audit=("x" * 20, s.taro), **kw)  # type: ignore[arg-type]
        row = await store.get_session("9" * 32)
        assert row is not None and row.ended_at is None
    assert await store.end_session(
        "9" * 32,
        "technician_ended",
        audit=(agent, s.taro),
        **kw,  # type: ignore[arg-type]
    )
    rec = await store.reports.session("9" * 32)
    assert rec is not None and rec.ended_at is not None
    assert [(e.event, e.detail) for e in rec.events] == [
        ("session_end", "technician_ended (by technician)")
    ]
