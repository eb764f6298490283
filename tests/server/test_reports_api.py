"""/api/v1/reports, a session's audit trail and a customer's export and deletion through
the API (issue 9), on SQLite and PostgreSQL: who may read what, the month in the
server's time zone, the CSV and the printable page."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from enkaku.server.app import build_app
from enkaku.server.settings import Settings

from .conftest import Env
from .test_store import db_url  # noqa: F401

PASSWORD = "correct horse"


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:  # noqa: F811
    app = build_app(
        Settings(
            db_url=db_url, node_id="test-node", time_zone="Asia/Tokyo", support_name="Support Co."
        )
    )
    srv = TestServer(app)
    await srv.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Env(srv, http, [])
    finally:
        await srv.close()


async def world(env: Env) -> dict[str, Any]:
    store = env.svc.store
    out: dict[str, Any] = {}
    for role in ("admin", "technician", "auditor"):
        tech = await store.create_technician(f"{role}-user", PASSWORD, role=role)
        out[role], _ = await store.issue_token(tech.id)
        out[f"{role}_id"] = tech.id
    other = await store.create_technician("other", PASSWORD)
    out["other"], _ = await store.issue_token(other.id)
    customer = await store.records.create_customer("ACME K.K.", ["it@acme.example"])
    contract = await store.create_contract("A-1", customer.id, valid_from=date(2026, 1, 1))
    agent = await store.agent_for_key("44" * 32)
    sid = "a" * 32
    await store.create_session(sid, agent, out["technician_id"], contract.id, "n1")
    await store.audit(
        "agent", "file_sent", session_id=sid, agent_id=agent, detail="7",
        file_name="sha256:" + "0" * 64, file_size=7, file_sha256="1" * 64,
    )  # fmt: skip
    await store.end_session(
        sid, "technician_ended", bytes_to_agent=100, bytes_to_technician=200,
        asserted_by="technician",
    )  # fmt: skip
    out.update(customer=customer.id, sid=sid, agent=agent)
    return out


async def get(env: Env, path: str, token: str) -> tuple[int, str, Any]:
    async with env.http.get(
        env.url("/api/v1" + path), headers={"Authorization": f"Bearer {token}"}
    ) as r:
        if r.content_type.endswith("json"):
            return r.status, r.content_type, await r.json()
        return r.status, r.content_type, await r.text()


def month_of_session() -> str:
    """The month the seeded session was requested in, in Tokyo (the store's clock is
    the real one here)."""
    from zoneinfo import ZoneInfo

    return f"{datetime.now(UTC).astimezone(ZoneInfo('Asia/Tokyo')):%Y-%m}"


async def test_session_history_for_admins_and_auditors_only(env: Env) -> None:
    w = await world(env)
    month = month_of_session()
    for role in ("admin", "auditor"):
        status, _, page = await get(
            env, f"/reports/sessions?customer=ACME K.K.&month={month}", w[role]
        )
        assert status == 200, page
        assert page["time_zone"] == "Asia/Tokyo" and page["total"] == 1
        row = page["sessions"][0]
        assert row["session_id"] == w["sid"] and row["technician"] == "technician-user"
        assert row["bytes_to_customer"] == 100 and row["bytes_from_customer"] == 200
        assert row["requested_at"].endswith("+09:00")
    status, _, err = await get(env, "/reports/sessions", w["technician"])
    assert status == 403 and set(err["error"]["message"]) == {"en", "ja"}
    status, _, page = await get(env, "/reports/sessions?technician=other", w["admin"])
    assert status == 200 and page["total"] == 0
    status, _, page = await get(env, "/reports/sessions?month=1999-01", w["admin"])
    assert status == 200 and page["total"] == 0
    status, _, err = await get(env, "/reports/sessions?customer=Nobody", w["admin"])
    assert status == 404 and "Nobody" in err["error"]["message"]["en"]
    status, _, err = await get(env, "/reports/sessions?month=2026-13", w["admin"])
    assert status == 422 and set(err["error"]["message"]) == {"en", "ja"}
    status, _, err = await get(env, "/reports/sessions?contract=Z-9", w["auditor"])
    assert status == 404


async def test_monthly_report_as_csv_and_printable_page(env: Env) -> None:
    w = await world(env)
    month = month_of_session()
    status, ctype, text = await get(
        env, f"/reports/monthly/{w['customer']}/{month}.csv", w["auditor"]
    )
    assert status == 200 and ctype == "text/csv"
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["session_id"] == w["sid"] and row["bytes_to_customer"] == "100"
    assert row["files_from_customer"] == f"sha256:{'0' * 64} 7 sha256:{'1' * 64}"
    status, ctype, page = await get(
        env, f"/reports/monthly/{w['customer']}/{month}.html", w["admin"]
    )
    assert status == 200 and ctype == "text/html"
    assert "月次報告書" in page and "Asia/Tokyo" in page and "Support Co." in page
    for bad in (f"{month}.pdf", "2026-13.csv", "x.html", "2026-11"):
        status, _, err = await get(env, f"/reports/monthly/{w['customer']}/{bad}", w["admin"])
        assert status in (404, 422) and set(err["error"]["message"]) == {"en", "ja"}, bad
    status, _, _ = await get(env, f"/reports/monthly/999/{month}.csv", w["admin"])
    assert status == 404
    status, _, _ = await get(env, f"/reports/monthly/{w['customer']}/{month}.csv", w["technician"])
    assert status == 403


async def test_a_technician_reads_only_her_own_sessions_trail(env: Env) -> None:
    w = await world(env)
    for role in ("technician", "admin", "auditor"):
        status, _, trail = await get(env, f"/sessions/{w['sid']}/audit", w[role])
        assert status == 200, (role, trail)
        assert trail["time_zone"] == "Asia/Tokyo"
        (ev,) = [e for e in trail["events"] if e["event"] == "file_sent"]
        assert ev["file_size"] == 7 and ev["file_name"] == "sha256:" + "0" * 64
        assert set(ev["meaning"]) == {"en", "ja"}
    status, _, err = await get(env, f"/sessions/{w['sid']}/audit", w["other"])
    assert status == 404
    status, _, err = await get(env, f"/sessions/{'b' * 32}/audit", w["admin"])
    assert status == 404


async def test_export_and_delete_a_customer(env: Env) -> None:
    w = await world(env)
    path = f"/admin/customers/{w['customer']}/export"
    status, _, data = await get(env, path, w["auditor"])
    assert status == 200
    assert data["customer"]["contacts"] == ["it@acme.example"]
    assert [s["id"] for s in data["sessions"]] == [w["sid"]]
    status, _, _ = await get(env, path, w["technician"])
    assert status == 403
    url = env.url(f"/api/v1/admin/customers/{w['customer']}")
    for role, expected in (("auditor", 403), ("technician", 403), ("admin", 204)):
        async with env.http.delete(url, headers={"Authorization": f"Bearer {w[role]}"}) as r:
            assert r.status == expected, (role, await r.text())
    status, _, data = await get(env, path, w["admin"])
    assert data["customer"]["name"] == f"deleted customer {w['customer']}"
    assert data["customer"]["contacts"] == [] and data["customer"]["deleted_at"]
    events = [e["event"] for e in data["admin_events"]]
    assert "customer_exported" in events and "customer_deleted" in events
    async with env.http.delete(
        env.url("/api/v1/admin/customers/999"), headers={"Authorization": f"Bearer {w['admin']}"}
    ) as r:
        assert r.status == 404


async def test_ids_beyond_the_integer_columns_are_not_found_on_every_database(env: Env) -> None:
    """Ids of 10-12 digits, past PostgreSQL's 32-bit INTEGER, were a 500 there (the
    database refused the parameter); every reference that names no row is a 404."""
    w = await world(env)
    for ref in ("2147483648", "99999999999", "999999999999", "0"):
        for path in (
            f"/admin/customers/{ref}",
            f"/admin/customers/{ref}/export",
            f"/reports/monthly/{ref}/{month_of_session()}.csv",
        ):
            status, _, body = await get(env, path, w["admin"])
            assert status == 404, (path, status, body)
        async with env.http.post(
            env.url(f"/api/v1/admin/technicians/{ref}/disable"),
            headers={"Authorization": f"Bearer {w['admin']}"},
        ) as r:
            assert r.status == 404, (ref, r.status, await r.text())
