"""The authorization matrix, against the real app on a loopback server:

requester role (admin, technician) × contract (valid, expired, without remote support,
unknown) × agent (online, offline, busy) × who ends the session (the requester through
the API, another technician, an admin, the agent). Every cell asserts its outcome: the
API's answer, the session row (or that none exists), and who the row says ended it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import WSMsgType
from sqlalchemy import func, select

from enkaku.server.store.db import open_engine
from enkaku.server.store.models import SupportSession
from enkaku.server.store.repo import Store

from .authz_env import PASSWORD, Agent, AuthzEnv, authz_env

ROLES = ["technician", "admin"]
CONTRACTS = ["valid", "expired", "no_remote_support", "unknown"]
AGENTS = ["online", "offline", "busy"]
ENDERS = ["technician_api", "other_technician", "admin", "agent"]

CONTRACT_CODES = {
    "valid": "C-OK",
    "expired": "C-OLD",
    "no_remote_support": "C-NORS",
    "unknown": "C-NONE",
}
#: The accounts: who requests for each role, and who else tries to end the session.
REQUESTER = {"technician": "tech", "admin": "boss"}
OTHER_TECHNICIAN, OTHER_ADMIN = "other", "chief"


@dataclass
class Template:
    """A database with the accounts, their tokens and the contracts, made once."""

    path: Path
    tokens: dict[str, str]
    ids: dict[str, int]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    path = tmp_path_factory.mktemp("matrix") / "template.db"

    async def make() -> Template:
        store = Store(await open_engine(f"sqlite:///{path}"))
        tokens, ids = {}, {}
        try:
            for user, role in (
                ("tech", "technician"),
                ("boss", "admin"),
                (OTHER_TECHNICIAN, "technician"),
                (OTHER_ADMIN, "admin"),
            ):
                tech = await store.create_technician(user, PASSWORD, role=role)
                tokens[user], _ = await store.issue_token(tech.id)
                ids[user] = tech.id
            today = datetime.now(UTC).date()
            await store.create_contract("C-OK", "Valid customer")
            await store.create_contract(
                "C-OLD",
                "Former customer",
                valid_from=today - timedelta(days=400),
                valid_until=today - timedelta(days=1),
            )
            await store.create_contract("C-NORS", "Hardware-only customer", remote_support=False)
        finally:
            await store.close()
        return Template(path, tokens, ids)

    return asyncio.run(make())


@pytest.fixture
async def env(tmp_path: Path, template: Template) -> AsyncIterator[AuthzEnv]:
    db = tmp_path / "authz.db"
    shutil.copyfile(template.path, db)
    async with authz_env(tmp_path, db_url=f"sqlite:///{db}") as e:
        e.tokens.update(template.tokens)
        e.ids.update(template.ids)
        yield e


async def sessions_in_db(env: AuthzEnv) -> int:
    async with env.svc.store.engine.connect() as conn:
        return int((await conn.execute(select(func.count(SupportSession.id)))).scalar_one())


async def next_request(agent: Agent) -> dict[str, object]:
    msg = json.loads((await agent.control.receive(timeout=5)).data)
    assert msg["type"] == "session_request", msg
    return dict(msg)


async def agent_in_state(env: AuthzEnv, state: str) -> Agent:
    agent = await env.agent()
    if state == "offline":
        await agent.control.close()
        for _ in range(500):  # the server notices the close on its own loop turn
            if not await env.svc.presence.is_online(agent.agent_id):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the agent never went offline")
    return agent


@pytest.mark.parametrize("ender", ENDERS)
@pytest.mark.parametrize("agent_state", AGENTS)
@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize("role", ROLES)
async def test_matrix(
    env: AuthzEnv, role: str, contract: str, agent_state: str, ender: str
) -> None:
    requester = REQUESTER[role]
    agent = await agent_in_state(env, agent_state)
    status, body, _ = await env.request(
        requester, agent.agent_id, contract=CONTRACT_CODES[contract]
    )

    # -- the request: contract first, then the agent ---------------------------------
    refused = {
        "unknown": (404, "contract_unknown"),
        "expired": (403, "contract_not_in_force"),
        "no_remote_support": (403, "contract_excludes_remote_support"),
    }.get(contract)
    if refused is None and agent_state == "offline":
        refused = (404, "agent_offline")
    if refused is not None:
        assert (status, body["error"]["code"]) == refused
        assert body["error"]["message"]["en"] and body["error"]["message"]["ja"]
        assert await sessions_in_db(env) == 0  # nothing recorded, nothing to end
        return
    assert status == 201, body
    sid = body["session_id"]
    row = await env.record(sid, ended=False)
    assert (row.technician_id, row.agent_id) == (env.ids[requester], agent.agent_id)
    req = await next_request(agent)

    # -- a busy agent ends it at once, in its own name ---------------------------------
    if agent_state == "busy":
        await env.report(agent, sid, "busy")
        row = await env.record(sid)
        assert (row.end_reason, row.end_asserted_by, row.ended_by_technician_id) == (
            "busy",
            "agent",
            None,
        )
        late = await env.leg(body["relay_url"], body["relay_token"])
        msg = await late.receive(timeout=5)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4000, "busy")
        expected = {
            "technician_api": 409,
            "other_technician": 404,
            "admin": 409,
            "agent": None,
        }[ender]
        if expected is not None:
            who = {"technician_api": requester, "other_technician": OTHER_TECHNICIAN}.get(
                ender, OTHER_ADMIN
            )
            assert await env.end(who, sid, "technician_ended") == expected
        row = await env.record(sid)
        assert row.end_reason == "busy"  # nobody rewrites the record afterwards
        return

    # -- an online agent: both legs pair, then someone ends it ---------------------------
    tech_leg = await env.leg(body["relay_url"], body["relay_token"])
    agent_leg = await env.leg(env.url(str(req["relay_path"])), str(req["relay_token"]))
    for leg in (tech_leg, agent_leg):
        assert json.loads((await leg.receive(timeout=5)).data) == {"type": "paired"}

    if ender == "other_technician":
        assert await env.end(OTHER_TECHNICIAN, sid, "technician_ended") == 404
        status, _, _ = await env.call("GET", f"/sessions/{sid}", OTHER_TECHNICIAN)
        assert status == 404
        row = await env.record(sid, ended=False)
        assert row.ended_at is None and row.paired_at is not None  # untouched
        assert sid in env.svc.relay.sessions
        return

    if ender == "agent":
        await agent_leg.close(code=4000, message=b"customer_ended")
        reason, by, by_id = "customer_ended", "agent", None
    else:
        who = requester if ender == "technician_api" else OTHER_ADMIN
        assert await env.end(who, sid, "technician_ended") == 204
        reason, by, by_id = "technician_ended", "technician", env.ids[who]
        msg = await agent_leg.receive(timeout=5)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4000, reason)
    msg = await tech_leg.receive(timeout=5)
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4000, reason)
    row = await env.record(sid)
    assert (row.end_reason, row.end_asserted_by, row.ended_by_technician_id) == (
        reason,
        by,
        by_id,
    )
    # The requester, and any admin, can read the record; another technician cannot.
    for reader, visible in ((requester, 200), (OTHER_ADMIN, 200), (OTHER_TECHNICIAN, 404)):
        status, info, _ = await env.call("GET", f"/sessions/{sid}", reader)
        assert status == visible
        if visible == 200:
            assert (info["end_reason"], info["end_asserted_by"]) == (reason, by)
