"""/api/v1/admin (issue 9): who may call every route of the OpenAPI document, and the
admin actions themselves, each audited with actor and target ids only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from enkaku.server.store.models import AuditEvent

from .conftest import Env
from .test_records_rules import server

PASSWORD = "correct horse"
ROLES = ("admin", "technician", "auditor")
#: Who may call what: the admin area's reads are for admins and auditors, its changes
#: for admins; opening and ending sessions for admins and technicians; the rest (own
#: account, health, contracts, session records) for every signed-in account.
SESSION_WRITES = {("post", "/api/v1/sessions"), ("post", "/api/v1/sessions/{session_id}/end")}
#: Not walked: revokes the very token the walk uses.
SKIPPED = {("delete", "/api/v1/auth/token")}


def allowed(method: str, path: str) -> set[str]:
    if path.startswith("/api/v1/admin/"):
        return {"admin", "auditor"} if method == "get" else {"admin"}
    if path.startswith("/api/v1/reports/"):
        return {"admin", "auditor"}
    if (method, path) in SESSION_WRITES:
        return {"admin", "technician"}
    return set(ROLES)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with server(tmp_path) as e:
        yield e


async def tokens(env: Env) -> dict[str, str]:
    store = env.svc.store
    out = {}
    for role in ROLES:
        tech = await store.create_technician(f"{role}-user", PASSWORD, role=role)
        out[role], _ = await store.issue_token(tech.id)
    return out


async def call(env: Env, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    async with env.http.request(
        method,
        env.url(path),
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        data = (
            await r.json()
            if r.content_type in ("application/json", "application/problem+json")
            else None
        )
        return r.status, data


async def test_every_route_with_every_role(env: Env) -> None:
    tok = await tokens(env)
    store = env.svc.store
    victim = await store.create_technician("victim", PASSWORD)
    customer = await store.records.create_customer("Alpha")
    await store.create_contract("A-1", customer.id)
    _, code = await store.records.create_enrolment_code(customer.id)
    values = {
        "customer_id": str(customer.id),
        "technician_id": str(victim.id),
        "code": "A-1",
        "code_id": str(code.id),
        "session_id": "0" * 32,
        "agent_id": "123456789",
        "report": "2026-11.csv",
    }
    async with env.http.get(env.url("/api/v1/openapi.json")) as r:
        doc = await r.json()
    walked = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if (method, path) in SKIPPED or "security" not in op:
                continue
            url = path.format(**values)
            body: dict[str, Any] | None = {} if "requestBody" in op else None
            for role in ROLES:
                status, data = await call(env, method.upper(), url, tok[role], body)
                forbidden = status == 403 and data["error"]["code"] == "role_forbidden"
                assert forbidden == (role not in allowed(method, path)), (
                    role,
                    method,
                    path,
                    status,
                    data,
                )
                if forbidden:
                    assert set(data["error"]["message"]) == {"en", "ja"}
                walked += 1
    # The walk covered the admin area and the session routes (a renamed route would
    # otherwise leave the table above untested).
    admin_paths = [p for p in doc["paths"] if p.startswith("/api/v1/admin/")]
    assert len(admin_paths) >= 8 and walked >= 3 * 20
    assert all(("post", p) in {(m, q) for q, o in doc["paths"].items() for m in o}
               for _, p in SESSION_WRITES)  # fmt: skip


async def test_admin_actions_through_the_api_are_audited_without_personal_data(
    env: Env,
) -> None:
    tok = await tokens(env)
    admin = tok["admin"]
    status, cust = await call(
        env, "POST", "/api/v1/admin/customers", admin,
        {"name": "Acme 株式会社", "emails": ["it@acme.example"]},
    )  # fmt: skip
    assert status == 201, cust
    status, again = await call(
        env, "POST", "/api/v1/admin/customers", admin, {"name": "Acme 株式会社"}
    )
    assert status == 409 and set(again["error"]["message"]) == {"en", "ja"}
    status, contract = await call(
        env, "POST", "/api/v1/admin/contracts", admin,
        {"code": "AC-1", "customer_id": cust["id"], "monthly_sessions": 10},
    )  # fmt: skip
    assert status == 201 and contract["state"] is None and contract["monthly_sessions"] == 10
    status, changed = await call(
        env, "PATCH", "/api/v1/admin/contracts/AC-1", admin, {"clear": ["monthly_sessions"]}
    )
    assert status == 200 and changed["monthly_sessions"] is None
    status, created = await call(
        env, "POST", "/api/v1/admin/enrolment-codes", admin, {"customer_id": cust["id"]}
    )
    assert status == 201 and created["code"].endswith(created["hint"])
    status, listed = await call(env, "GET", "/api/v1/admin/enrolment-codes", tok["auditor"])
    assert status == 200 and "code" not in listed["codes"][0]
    status, _ = await call(
        env, "POST", f"/api/v1/admin/enrolment-codes/{created['id']}/revoke", admin
    )
    assert status == 204
    status, tech = await call(
        env, "POST", "/api/v1/admin/technicians", admin,
        {"username": "hanako", "password": "long enough pw", "role": "technician"},
    )  # fmt: skip
    assert status == 201 and tech["disabled"] is False
    status, body = await call(
        env, "POST", "/api/v1/admin/technicians", admin,
        {"username": "hanako", "password": "long enough pw"},
    )  # fmt: skip
    assert status == 409 and "hanako" in body["error"]["message"]["ja"]
    assert body["error"]["message"]["ja"] != body["error"]["message"]["en"]
    hanako_token, _ = await env.svc.store.issue_token(tech["id"])
    assert (await call(env, "GET", "/api/v1/me", hanako_token))[0] == 200
    status, _ = await call(env, "POST", f"/api/v1/admin/technicians/{tech['id']}/disable", admin)
    assert status == 204
    assert (await call(env, "GET", "/api/v1/me", hanako_token))[0] == 401
    status, listed = await call(env, "GET", "/api/v1/admin/technicians", tok["auditor"])
    assert {t["username"]: t["disabled"] for t in listed["technicians"]}["hanako"] is True
    me = await env.svc.store.technician_by_name("admin-user")
    assert me is not None
    status, body = await call(env, "POST", f"/api/v1/admin/technicians/{me.id}/disable", admin)
    assert status == 409 and body["error"]["code"] == "admin_self"
    status, detail = await call(env, "GET", f"/api/v1/admin/customers/{cust['id']}", admin)
    assert status == 200 and detail["contracts"] == ["AC-1"] and detail["agents"] == []
    ac1 = await env.svc.store.contract_by_code("AC-1")
    assert ac1 is not None
    async with env.svc.store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    AuditEvent.event, AuditEvent.technician_id, AuditEvent.target, AuditEvent.detail
                )
                .where(AuditEvent.source == "admin")
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [tuple(r[:3]) for r in rows] == [
        ("customer_created", me.id, f"customer:{cust['id']}"),
        ("contract_created", me.id, f"contract:{ac1.id}"),
        ("contract_changed", me.id, f"contract:{ac1.id}"),
        ("enrolment_code_created", me.id, f"enrolment_code:{created['id']}"),
        ("enrolment_code_revoked", me.id, f"enrolment_code:{created['id']}"),
        ("technician_created", me.id, f"technician:{tech['id']}"),
        ("technician_disabled", me.id, f"technician:{tech['id']}"),
    ]
    for _event, _actor, target, detail in rows:  # no names, addresses or codes
        for secret in ("Acme", "acme.example", "hanako", created["code"]):
            assert secret not in f"{detail} {target}"
