"""The billing rules against the real app (issue 9, acceptance 2): a session needs a
remote-support contract in force of the machine's customer; a machine not linked yet is
billed to the contract the technician chooses and linked by the customer's consent; with
require_enrolment, only machines linked by an enrolment code are served; past the monthly
allowance the technician is warned."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from enkaku.server.app import build_app
from enkaku.server.settings import Settings
from enkaku.server.store.models import AgentLink, AuditEvent, SupportSession

from .conftest import Env, hello

PASSWORD = "correct horse"


@asynccontextmanager
async def server(tmp_path: Path, **settings: Any) -> AsyncIterator[Env]:
    app = build_app(
        Settings(
            db_url=f"sqlite:///{tmp_path}/t.db",
            heartbeat_timeout=2.0,
            pairing_timeout=3.0,
            node_id="test-node",
            **settings,
        )
    )
    srv = TestServer(app)
    await srv.start_server()
    e = None
    try:
        async with aiohttp.ClientSession() as http:
            e = Env(srv, http, [])
            await e.svc.store.create_technician("tech", PASSWORD, display_name="Taro")
            yield e
    finally:
        await srv.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with server(tmp_path) as e:
        yield e


async def enrolled_agent(
    e: Env, code: str | None, key: Ed25519PrivateKey | None = None
) -> tuple[aiohttp.ClientWebSocketResponse, str, dict[str, Any]]:
    """An agent link whose hello carries ``code``; its ID and the welcome."""
    ws = await e.http.ws_connect(e.url("/ws/agent"))
    challenge = json.loads((await ws.receive()).data)
    msg = hello(challenge, key)
    if code is not None:
        msg["enrol"] = code
    await ws.send_json(msg)
    welcome = json.loads((await ws.receive()).data)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome["agent_id"], welcome


async def request(
    e: Env, token: str, agent_id: str, contract: str | None = None
) -> tuple[int, Any]:
    body = {"contract": contract} if contract else {}
    async with await e.request_session(token, agent_id, **body) as r:
        return r.status, await r.json()


async def end(e: Env, token: str, sid: str) -> None:
    async with e.http.post(
        e.url(f"/api/v1/sessions/{sid}/end"),
        json={"reason": "technician_ended"},
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 204, await r.text()


async def linked(e: Env, agent_id: str) -> AgentLink:
    """The machine's link, once the consent report has made it (bounded wait)."""
    for _ in range(250):
        link = await e.svc.store.records.agent_link(agent_id)
        if link is not None:
            return link
        await asyncio.sleep(0.02)
    raise AssertionError(f"agent {agent_id} was never linked")


async def session_count(e: Env) -> int:
    async with e.svc.store.engine.connect() as conn:
        return int((await conn.execute(select(func.count(SupportSession.id)))).scalar_one())


async def contracts_for(e: Env, token: str, agent_id: str) -> tuple[int, Any]:
    async with e.http.get(
        e.url("/api/v1/contracts"),
        params={"agent_id": agent_id},
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        return r.status, await r.json()


def assert_both_languages(body: Any, code: str, *words: str) -> None:
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert set(message) == {"en", "ja"} and all(message.values())
    for word in words:
        assert word in message["en"] and word in message["ja"], message


async def test_unlinked_machine_is_billed_to_the_chosen_contract_and_linked_by_consent(
    env: Env,
) -> None:
    store = env.svc.store
    await store.create_contract("A-1", "Alpha")
    await store.create_contract("B-1", "Beta")
    token = await env.token()
    ws, agent_id = await env.agent()
    # Two customers' contracts could be meant: the technician must choose.
    status, body = await request(env, token, agent_id)
    assert status == 422
    assert_both_languages(body, "contract_required", "A-1", "B-1")
    assert (await contracts_for(env, token, agent_id))[1]["contracts"][0]["code"] == "A-1"
    status, body = await request(env, token, agent_id, "B-1")
    assert status == 201, body
    assert body["contract"] == "B-1" and body["warning"] is None
    sid = body["session_id"]
    assert json.loads((await ws.receive()).data)["type"] == "session_request"
    # Not linked before the customer consents.
    assert await store.records.agent_link(agent_id) is None
    await ws.send_json({"type": "session_event", "session_id": sid, "event": "consent_granted"})
    link = await linked(env, agent_id)
    assert link.linked_via == "consent" and link.session_id == sid
    beta = await store.records.customer("Beta")
    assert link.customer_id == beta.id
    await end(env, token, sid)
    # From now on only Beta's contracts: Alpha's is refused in both languages.
    before = await session_count(env)
    status, body = await request(env, token, agent_id, "A-1")
    assert status == 403
    assert_both_languages(body, "contract_other_customer", "A-1", agent_id, "B-1")
    assert await session_count(env) == before
    status, listed = await contracts_for(env, token, agent_id)
    assert status == 200 and [c["code"] for c in listed["contracts"]] == ["B-1"]
    # Only one contract is usable now: it is chosen without asking.
    status, body = await request(env, token, agent_id)
    assert status == 201 and body["contract"] == "B-1"
    row = await store.get_session(body["session_id"])
    b1 = await store.contract_by_code("B-1")
    assert row is not None and b1 is not None and row.contract_id == b1.id
    linked_events = [
        (e.event, e.technician_id, e.target)
        for e in await store.audit_events(sid)
        if e.event == "agent_linked"
    ]
    tech = await store.technician_by_name("tech")
    assert tech is not None
    assert linked_events == [("agent_linked", tech.id, f"customer:{beta.id}")]
    await ws.close()


async def test_customer_without_a_valid_remote_support_contract_is_refused(env: Env) -> None:
    store = env.svc.store
    today = datetime.now(UTC).date()
    gamma = await store.records.create_customer("Gamma")
    await store.create_contract("G-HW", gamma.id, remote_support=False)
    await store.create_contract(
        "G-OLD",
        gamma.id,
        valid_from=today - timedelta(days=60),
        valid_until=today - timedelta(days=1),
    )
    code, _ = await store.records.create_enrolment_code(gamma.id)
    ws, agent_id, welcome = await enrolled_agent(env, code)
    assert welcome["enrolment"] == {"status": "linked"}
    token = await env.token()
    status, body = await request(env, token, agent_id)
    assert status == 403
    assert_both_languages(body, "contract_none_usable", agent_id)
    status, body = await request(env, token, agent_id, "G-HW")
    assert status == 403
    assert_both_languages(body, "contract_excludes_remote_support", "G-HW")
    status, body = await request(env, token, agent_id, "G-OLD")
    assert status == 403
    assert_both_languages(body, "contract_not_in_force", "G-OLD")
    # The server's other contract (C-1 of another customer) is not billable either.
    await store.create_contract("C-1", "Customer One")
    status, body = await request(env, token, agent_id, "C-1")
    assert status == 403 and body["error"]["code"] == "contract_other_customer"
    assert await session_count(env) == 0
    assert (await contracts_for(env, token, agent_id))[1] == {"contracts": []}
    await ws.close()


async def test_required_enrolment(tmp_path: Path) -> None:
    async with server(tmp_path, require_enrolment=True) as e:
        store = e.svc.store
        acme = await store.records.create_customer("Acme")
        await store.create_contract("A-1", acme.id)
        token = await e.token()
        ws, agent_id, welcome = await enrolled_agent(e, None)
        assert welcome["enrolment"] == {"status": "required"}
        status, body = await request(e, token, agent_id, "A-1")
        assert status == 403
        assert_both_languages(body, "agent_not_enrolled", agent_id)
        await ws.close()
        key = Ed25519PrivateKey.generate()
        ws, _, welcome = await enrolled_agent(e, "0000-0000-0000-0000", key)
        assert welcome["enrolment"] == {"status": "invalid"}
        await ws.close()
        expiring, _ = await store.records.create_enrolment_code(
            acme.id, expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
        ws, _, welcome = await enrolled_agent(e, expiring, key)
        assert welcome["enrolment"] == {"status": "expired"}
        await ws.close()
        good, _ = await store.records.create_enrolment_code(acme.id, max_uses=1)
        ws, same_id, welcome = await enrolled_agent(e, good.lower(), key)
        assert welcome["enrolment"] == {"status": "linked"}
        status, body = await request(e, token, same_id)
        assert status == 201 and body["contract"] == "A-1"
        await ws.close()
        # The same code again: this machine is already linked, another one is refused.
        ws, _, welcome = await enrolled_agent(e, good, key)
        assert welcome["enrolment"] == {"status": "already_linked"}
        await ws.close()
        ws, _, welcome = await enrolled_agent(e, good)
        assert welcome["enrolment"] == {"status": "used_up"}
        await ws.close()
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(AuditEvent.event, AuditEvent.agent_id, AuditEvent.target).where(
                        AuditEvent.event == "agent_enrolled"
                    )
                )
            ).all()
        assert [tuple(r) for r in rows] == [("agent_enrolled", same_id, f"customer:{acme.id}")]


async def test_past_the_monthly_allowance_the_technician_is_warned(env: Env) -> None:
    store = env.svc.store
    await store.create_contract("L-1", "Limited", monthly_sessions=1)
    token = await env.token()
    ws, agent_id = await env.agent()
    status, first = await request(env, token, agent_id, "L-1")
    assert status == 201 and first["warning"] is None
    await end(env, token, first["session_id"])
    status, second = await request(env, token, agent_id, "L-1")
    assert status == 201, second
    warning = second["warning"]
    assert warning["code"] == "allowance_sessions"
    assert set(warning["message"]) == {"en", "ja"}
    assert "L-1" in warning["message"]["en"] and "2" in warning["message"]["ja"]
    assert await store.get_session(second["session_id"]) is not None
    await ws.close()


async def test_contract_list_for_a_malformed_agent_id_is_a_bad_request(env: Env) -> None:
    await env.svc.store.create_contract("C-1", "Customer One")
    token = await env.token()
    status, body = await contracts_for(env, token, "12345")
    assert status == 422 and body["error"]["code"] == "bad_request"
    async with env.http.get(
        env.url("/api/v1/contracts"), headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 200
        assert [c["code"] for c in (await r.json())["contracts"]] == ["C-1"]


async def test_enkaku_connect_prints_the_allowance_warning(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    from enkaku.i18n import both
    from enkaku.protocol.password import generate_password
    from enkaku.technician.client import ConnectOptions, connect

    store = env.svc.store
    await store.create_contract("L-1", "Limited", monthly_sessions=1)
    token = await env.token()
    ws, agent_id = await env.agent()
    status, first = await request(env, token, agent_id, "L-1")
    assert status == 201
    assert json.loads((await ws.receive()).data)["type"] == "session_request"
    await end(env, token, first["session_id"])
    opts = ConnectOptions(
        server=env.url("").rstrip("/"),
        token=token,
        agent_id=agent_id,
        password=generate_password(),
        contract="L-1",
    )
    task = asyncio.create_task(connect(opts))
    while True:  # the second request reaches the agent, which says it is busy
        msg = json.loads((await ws.receive(timeout=10)).data)
        if msg["type"] == "session_request":
            break
    await ws.send_json({"type": "session_event", "session_id": msg["session_id"], "event": "busy"})
    await asyncio.wait_for(task, 30)
    expected = both("allowance_sessions", contract="L-1", used=2, limit=1)
    assert expected["en"] in capsys.readouterr().err
    await ws.close()


async def test_the_real_agent_sends_its_code_and_tells_the_customer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from enkaku.agent.identity import DeviceKey
    from enkaku.agent.runtime import AgentRuntime
    from enkaku.agent.ui import HeadlessUI
    from enkaku.i18n import t

    monkeypatch.setenv("ENKAKU_LANG", "en")
    async with server(tmp_path, require_enrolment=True) as e:
        acme = await e.svc.store.records.create_customer("Acme")
        code, _ = await e.svc.store.records.create_enrolment_code(acme.id)
        url = e.url("").rstrip("/")

        async def run_once(enrol: str | None, key_dir: str) -> str:
            runtime = AgentRuntime(
                url,
                DeviceKey.load_or_create(tmp_path / key_dir),
                HeadlessUI(url),
                enrol=enrol,
            )
            async with aiohttp.ClientSession() as runtime.http:
                task = asyncio.create_task(runtime._connect_once())
                for _ in range(500):
                    if runtime.agent_id:
                        break
                    await asyncio.sleep(0.02)
                await runtime.stop()
                await asyncio.wait_for(task, 30)
            return runtime.agent_id

        await run_once(None, "a")
        assert t("agent_enrolment_required", "en") in capsys.readouterr().err
        await run_once("WRONG-CODE", "b")
        assert t("agent_enrolment_invalid", "en") in capsys.readouterr().err
        agent_id = await run_once(code, "c")
        assert t("agent_enrolment_linked", "en") in capsys.readouterr().err
        link = await e.svc.store.records.agent_link(agent_id)
        assert link is not None and (link.customer_id, link.linked_via) == (acme.id, "enrolment")
        await run_once(code, "c")  # linked already: nothing to tell
        assert "enrol" not in capsys.readouterr().err.lower()
