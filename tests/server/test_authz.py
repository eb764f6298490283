"""Lockouts that cannot be turned against customers or colleagues, and end reasons only
the right role can record (issue 5 §2 items 1-4 and 6), on a real loopback server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from enkaku.protocol.control import END_REASONS, OWN_END, POLICY_REASONS, REASON_ROLES, may_assert
from enkaku.server.api import routes
from enkaku.server.relay import leg_claim
from enkaku.server.settings import Settings, SettingsError, from_env
from enkaku.server.store.models import Technician

from .authz_env import PASSWORD, Agent, AuthzEnv, authz_env
from .conftest import until


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[AuthzEnv]:
    async with authz_env(tmp_path) as e:
        yield e


async def session(env: AuthzEnv, user: str, agent: Agent) -> dict[str, str]:
    """Request a session; returns the API answer plus the agent's relay token."""
    status, created, _ = await env.request(user, agent.agent_id)
    assert status == 201, created
    req = json.loads((await agent.control.receive(timeout=5)).data)
    while req["type"] == "session_end":  # of an earlier session the agent never joined
        req = json.loads((await agent.control.receive(timeout=5)).data)
    assert req["type"] == "session_request" and req["session_id"] == created["session_id"]
    return {**created, "agent_token": req["relay_token"]}


# -- 1. login race; lockout keyed on (user, address) -------------------------------------


async def test_concurrent_guesses_are_not_all_checked(env: AuthzEnv) -> None:
    await env.svc.store.create_technician("taro", PASSWORD)
    store = env.svc.store
    checked = 0
    verify = store.verify_login

    async def counting(username: str, password: str) -> Technician | None:
        nonlocal checked
        checked += 1
        return await verify(username, password)

    store.verify_login = counting  # type: ignore[method-assign]
    guesses = [env.login("taro", f"wrong guess {i}") for i in range(60)]
    answers = await asyncio.gather(*guesses, env.login("taro", PASSWORD))
    statuses = [r.status for r in answers]
    assert checked <= 7 + 2, checked  # the lockout's allowance, plus two in flight at most
    assert statuses.count(429) >= 60 - 7
    assert set(statuses) <= {401, 201, 429}
    for r in answers:
        if r.status == 429:
            assert int(r.headers["Retry-After"]) >= 1


async def test_sequential_guesses_are_still_locked_out(env: AuthzEnv) -> None:
    await env.svc.store.create_technician("taro", PASSWORD)
    for _ in range(7):
        assert (await env.login("taro", "wrong guess")).status == 401
    assert env.clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert (await env.login("taro", "wrong guess")).status == 429
    assert (await env.login("taro", PASSWORD)).status == 429  # locked from this address


async def test_nobody_locks_a_colleague_out_by_knowing_her_user_name(env: AuthzEnv) -> None:
    await env.svc.store.create_technician("hanako", PASSWORD)
    for _ in range(8):
        await env.login("hanako", "guess", address="198.51.100.66")
    assert (await env.login("hanako", "guess", address="198.51.100.66")).status == 429
    # Hanako herself, from her own office, logs in at once.
    assert (await env.login("hanako", PASSWORD, address="192.0.2.10")).status == 201


# -- 2. the agent's lockout cannot be turned against the customer ------------------------


async def test_api_and_relay_ends_with_wrong_password_count_nothing(env: AuthzEnv) -> None:
    await env.add_technician("mallory")
    await env.add_technician("taro")
    agent = await env.agent()
    for _ in range(6):
        s = await session(env, "mallory", agent)
        # Through the API: a technician may not record a wrong password at all...
        assert await env.end("mallory", s["session_id"], "wrong_password") == 403
        # ...and through her relay leg it is recorded but never counted.
        leg = await env.leg(s["relay_url"], s["relay_token"])
        await leg.close(code=4000, message=b"wrong_password")
        row = await env.record(s["session_id"])
        assert (row.end_reason, row.end_asserted_by) == ("wrong_password", "technician")
    limits = env.svc.limits.sessions
    assert limits.agent.failures(agent.agent_id) == 0
    assert limits.wait(env.ids["mallory"], agent.agent_id) == 0.0
    env.clock.slept.clear()
    status, _, _ = await env.request("taro", agent.agent_id)
    assert status == 201 and env.clock.slept == []  # no 429, not even a delay


async def test_only_the_agents_report_counts_a_spent_guess(env: AuthzEnv) -> None:
    await env.add_technician("taro")
    agent = await env.agent()
    s = await session(env, "taro", agent)
    await env.report(agent, s["session_id"], "wrong_password")
    await env.report(agent, s["session_id"], "wrong_password")  # once per session
    limits = env.svc.limits.sessions
    await until(lambda: limits.agent.failures(agent.agent_id) == 1)
    assert limits.pair.failures((env.ids["taro"], agent.agent_id)) == 1


async def test_requests_never_joined_do_not_hold_the_agent_forever(tmp_path: Path) -> None:
    async with authz_env(tmp_path, pairing_timeout=0.3) as env:
        await env.add_technician("ghost")
        await env.add_technician("taro")
        agent = await env.agent()
        answers = []
        for _ in range(12):  # a request every 60 s, never joined
            status, created, headers = await env.request("ghost", agent.agent_id)
            answers.append(status)
            if status == 429:
                break
            req = json.loads((await agent.control.receive(timeout=5)).data)
            # The agent joins at once, as the real one does; the technician never comes.
            leg = await env.leg(env.url(req["relay_path"]), req["relay_token"])
            msg = await leg.receive(timeout=10)
            assert msg.extra == "timeout"
            row = await env.record(created["session_id"])
            assert (row.end_reason, row.end_asserted_by) == ("timeout", "server")
            assert row.end_detail == "pairing timed out: the technician did not join"
            env.clock.now += 60.0
        assert answers[-1] == 429 and len(answers) <= 9, answers
        assert int(headers["Retry-After"]) > 60
        # Meanwhile the agent is free for everyone else.
        s = await session(env, "taro", agent)
        assert s["session_id"]


async def test_pending_requests_per_technician_are_capped(env: AuthzEnv) -> None:
    await env.add_technician("taro")
    agents = [await env.agent() for _ in range(4)]
    for a in agents[:3]:
        await session(env, "taro", a)
    status, body, headers = await env.request("taro", agents[3].agent_id)
    assert status == 429 and body["error"]["code"] == "too_many_pending"
    assert "3" in body["error"]["message"]["en"] and body["error"]["message"]["ja"]
    assert int(headers["Retry-After"]) >= 1


# -- 3. counts decay; nobody else's success clears them ----------------------------------


async def test_success_with_her_own_agent_clears_nothing_else(env: AuthzEnv) -> None:
    await env.add_technician("taro")
    target, other, own = await env.agent(), await env.agent(), await env.agent()
    tech = env.ids["taro"]
    spent = [(target, 1), (other, 3)]
    for agent, n in spent:
        for _ in range(n):
            s = await session(env, "taro", agent)
            await env.report(agent, s["session_id"], "wrong_password")
            assert await env.end("taro", s["session_id"], "technician_ended") == 204
    limits = env.svc.limits.sessions
    await until(lambda: limits.technician.failures(tech) == 4)
    before = limits.wait(tech, target.agent_id)
    s = await session(env, "taro", own)
    await env.report(own, s["session_id"], "consent_granted")
    await until(lambda: env.svc.relay.sessions[s["session_id"]].consent_granted)
    assert limits.wait(tech, target.agent_id) == before == 1.0
    assert limits.wait(tech, other.agent_id) == 4.0
    assert limits.technician.failures(tech) == 4
    # Only time clears them: one failure leaks away every five minutes.
    env.clock.now += 300.0
    assert limits.wait(tech, target.agent_id) == 0.0
    assert limits.wait(tech, other.agent_id) == 2.0


# -- 4. end reasons: who may assert which ------------------------------------------------


@pytest.mark.parametrize(
    "reason", ["customer_ended", "server_restart", "consent_denied", "busy", "timeout"]
)
async def test_a_technician_cannot_record_reasons_of_others(env: AuthzEnv, reason: str) -> None:
    await env.add_technician("taro")
    agent = await env.agent()
    s = await session(env, "taro", agent)
    status, body, _ = await env.call(
        "POST", f"/sessions/{s['session_id']}/end", "taro", {"reason": reason}
    )
    assert status == 403 and body["error"]["code"] == "end_reason_not_yours"
    assert (await env.record(s["session_id"], ended=False)).ended_at is None


async def test_policy_reasons_need_her_session_consent_and_a_comment(
    env: AuthzEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "CONSENT_REPORT_WAIT", 0.2)
    await env.add_technician("taro")
    await env.add_technician("boss", role="admin")
    agent = await env.agent()
    s = await session(env, "taro", agent)
    sid = s["session_id"]
    assert await env.end("taro", sid, "malware_found", "trojan in autostart") == 403  # no consent
    await env.report(agent, sid, "consent_granted")
    await until(lambda: env.svc.relay.sessions[sid].consent_granted)
    assert await env.end("taro", sid, "malware_found") == 422  # no comment
    assert await env.end("taro", sid, "malware_found", "   ") == 422
    assert await env.end("boss", sid, "malware_found", "I was told so") == 403  # not hers
    assert await env.end("taro", sid, "malware_found", "trojan in autostart") == 204
    row = await env.record(sid)
    assert (row.end_reason, row.end_asserted_by) == ("malware_found", "technician")
    assert (row.ended_by_technician_id, row.end_comment) == (
        env.ids["taro"],
        "trojan in autostart",
    )
    assert await env.end("taro", sid, "technician_ended") == 409  # already ended


async def test_a_policy_reason_sent_before_the_consent_report_waits_for_it(
    env: AuthzEnv,
) -> None:
    """The page sees the customer's consent over the E2E channel and may ask to end
    before the agent's own report reached the server: the server waits for the report."""
    await env.add_technician("taro")
    agent = await env.agent()
    sid = (await session(env, "taro", agent))["session_id"]
    ending = asyncio.create_task(env.end("taro", sid, "malware_found", "trojan in autostart"))
    await asyncio.sleep(0.3)
    assert not ending.done()  # waiting for the report, not refused
    await env.report(agent, sid, "consent_granted")
    assert await asyncio.wait_for(ending, 30) == 204
    assert (await env.record(sid)).end_reason == "malware_found"


async def test_a_policy_reason_after_a_refusal_is_refused_at_once(
    env: AuthzEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "CONSENT_REPORT_WAIT", 600.0)  # waiting it out fails below
    await env.add_technician("taro")
    agent = await env.agent()
    sid = (await session(env, "taro", agent))["session_id"]
    await env.report(agent, sid, "consent_denied")
    await until(lambda: env.svc.relay.sessions[sid].consent_answered.is_set())
    # The answer is known: refused without waiting (a wait would time out here).
    assert await asyncio.wait_for(env.end("taro", sid, "malware_found", "x"), 30) == 403


async def test_a_policy_reason_without_a_session_is_refused(env: AuthzEnv) -> None:
    await env.add_technician("taro")
    agent = await env.agent()
    s = await session(env, "taro", agent)
    assert await env.end("taro", s["session_id"], "technician_ended") == 204
    assert await env.end("taro", s["session_id"], "malware_found", "made up") == 409
    row = await env.record(s["session_id"])
    assert (row.end_reason, row.end_comment) == ("technician_ended", None)


@pytest.mark.parametrize(
    ("role", "claim", "recorded"),
    [
        ("technician", "technician_ended", "technician_ended"),
        ("technician", "customer_ended", "technician_ended"),
        ("technician", "server_shutdown", "technician_ended"),
        ("technician", "malware_found", "technician_ended"),
        ("technician", "consent_denied", "technician_ended"),
        ("technician", "handshake_failed", "handshake_failed"),
        ("agent", "customer_ended", "customer_ended"),
        ("agent", "consent_denied", "consent_denied"),
        ("agent", "technician_ended", "customer_ended"),
        ("agent", "illegal_request", "customer_ended"),
        ("agent", "timeout", "customer_ended"),
        ("agent", "wrong_password", "wrong_password"),
    ],
)
async def test_a_relay_leg_claims_only_its_roles_reasons(
    env: AuthzEnv, role: str, claim: str, recorded: str
) -> None:
    await env.add_technician("taro")
    agent = await env.agent()
    s = await session(env, "taro", agent)
    tech_leg = await env.leg(s["relay_url"], s["relay_token"])
    agent_leg = await env.leg(s["relay_url"], s["agent_token"])
    for leg in (tech_leg, agent_leg):
        assert json.loads((await leg.receive(timeout=5)).data) == {"type": "paired"}
    closing, other = (tech_leg, agent_leg) if role == "technician" else (agent_leg, tech_leg)
    await closing.close(code=4000, message=claim.encode())
    msg = await other.receive(timeout=5)
    assert (msg.data, msg.extra) == (4000, recorded)
    row = await env.record(s["session_id"])
    assert (row.end_reason, row.end_asserted_by) == (recorded, role)
    assert row.ended_by_technician_id is None
    if recorded != claim:
        assert row.end_detail == f"ended by {role}, which claimed {claim}"


async def test_a_busy_agent_is_recorded_as_the_agents_word(env: AuthzEnv) -> None:
    await env.add_technician("taro")
    agent = await env.agent()
    s = await session(env, "taro", agent)
    await env.report(agent, s["session_id"], "busy")
    row = await env.record(s["session_id"])
    assert (row.end_reason, row.end_asserted_by) == ("busy", "agent")


# -- 6. the rate-limit answer states the real wait ---------------------------------------


async def test_login_lockout_states_its_remaining_time(env: AuthzEnv) -> None:
    await env.svc.store.create_technician("taro", PASSWORD)
    for _ in range(7):
        await env.login("taro", "wrong guess")
    # The slow-downs took 31.5 s; the lockout lasts until the first failure has leaked
    # away, 300 s after it. 3½ minutes later 58.5 s are left (the old answer: 32 s).
    assert sum(env.clock.slept) == 31.5
    env.clock.now += 210.0
    async with env.http.post(
        env.url("/api/v1/auth/token"),
        json={"username": "taro", "password": "again"},
        headers={"X-Forwarded-For": "192.0.2.1"},
    ) as r:
        body = await r.json()
        assert r.status == 429 and r.headers["Retry-After"] == "59"
    assert "59 s" in body["error"]["message"]["en"] and "59 秒" in body["error"]["message"]["ja"]


async def test_session_lockout_states_its_remaining_time(env: AuthzEnv) -> None:
    await env.add_technician("taro")
    agent = await env.agent()
    pair = (env.ids["taro"], agent.agent_id)
    for n in range(1, 7):
        s = await session(env, "taro", agent)
        await env.report(agent, s["session_id"], "wrong_password")
        assert await env.end("taro", s["session_id"], "technician_ended") == 204
        # The failure is counted after the report's answer: each request below must see
        # the ones before it (on a loaded machine the next one came first).
        await until(lambda n=n: env.svc.limits.sessions.pair.failures(pair) == n)
    # Locked until the first failure has leaked away, 300 s after it; the slow-downs
    # took 31 s of that, and 100 s more pass.
    assert sum(env.clock.slept) == 31.0
    env.clock.now += 100.0
    status, body, headers = await env.request("taro", agent.agent_id)
    assert status == 429 and headers["Retry-After"] == "169"
    assert "169 s" in body["error"]["message"]["en"]


def test_the_pending_cap_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_MAX_PENDING_SESSIONS", "1")
    assert from_env().max_pending_sessions == 1
    with pytest.raises(SettingsError, match="max_pending_sessions"):
        Settings(max_pending_sessions=0)


async def test_a_pending_cap_of_one(tmp_path: Path) -> None:
    async with authz_env(tmp_path, max_pending_sessions=1) as env:
        await env.add_technician("taro")
        first, second = await env.agent(), await env.agent()
        s = await session(env, "taro", first)
        status, body, _ = await env.request("taro", second.agent_id)
        assert (status, body["error"]["code"]) == (429, "too_many_pending")
        assert await env.end("taro", s["session_id"], "technician_ended") == 204
        assert (await env.request("taro", second.agent_id))[0] == 201


@pytest.mark.parametrize("reason", END_REASONS)
@pytest.mark.parametrize("role", ["technician", "agent"])
def test_every_reason_has_its_roles_and_a_leg_claims_only_its_own(role: str, reason: str) -> None:
    roles = REASON_ROLES[reason]
    assert roles and roles <= {"technician", "agent", "server"}
    recorded, detail, by = leg_claim(role, reason)  # type: ignore[arg-type]
    assert by == role
    if role in roles and reason not in POLICY_REASONS:
        assert (recorded, detail) == (reason, f"ended by {role}")
    else:
        assert recorded == OWN_END[role] and detail == f"ended by {role}, which claimed {reason}"
    assert may_assert(role, recorded)
