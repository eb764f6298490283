from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from multidict import CIMultiDict
from sqlalchemy import select

from enkaku.server.store.models import Agent

from .authz_env import authz_env
from .conftest import Env, hello, until


async def test_login_rejects_wrong_password_with_bilingual_message(env: Env) -> None:
    async with env.http.post(
        env.url("/api/v1/auth/token"), json={"username": "tech", "password": "nope"}
    ) as r:
        assert r.status == 401
        body = await r.json()
    assert body["error"]["code"] == "login_failed"
    assert body["error"]["message"]["ja"] and body["error"]["message"]["en"]


async def test_requests_need_a_token(env: Env) -> None:
    async with env.http.get(env.url("/api/v1/me")) as r:
        assert r.status == 401
    token = await env.token()
    async with env.http.get(
        env.url("/api/v1/me"), headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert (await r.json())["display_name"] == "Taro"


async def test_openapi_lists_every_route(env: Env) -> None:
    async with env.http.get(env.url("/api/v1/openapi.json")) as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    assert "post" in doc["paths"]["/api/v1/sessions"]
    assert "SessionCreated" in doc["components"]["schemas"]


async def test_agent_id_is_stable_per_key(env: Env) -> None:
    key = Ed25519PrivateKey.generate()
    ws, first = await env.agent(key)
    await ws.close()
    ws, second = await env.agent(key)
    await ws.close()
    _, other = await env.agent()
    assert first == second and len(first) == 9 and first.isdigit()
    assert other != first


async def test_agent_with_bad_signature_is_refused(env: Env) -> None:
    ws = await env.http.ws_connect(env.url("/ws/agent"))
    await ws.receive()
    await ws.send_json({"type": "hello", "public_key": "00" * 32, "signature": "00" * 64})
    msg = await ws.receive()
    assert msg.type == WSMsgType.CLOSE and msg.data == 4401


async def test_offline_agent_and_bad_contract(env: Env) -> None:
    token = await env.token()
    r = await env.request_session(token, "123456789")
    assert r.status == 404 and (await r.json())["error"]["code"] == "agent_offline"
    _ws, agent_id = await env.agent()
    r = await env.request_session(token, agent_id, contract="NOPE")
    assert r.status == 404 and "C-1" in (await r.json())["error"]["message"]["en"]


async def pair(
    env: Env,
) -> tuple[
    aiohttp.ClientWebSocketResponse,
    aiohttp.ClientWebSocketResponse,
    str,
    aiohttp.ClientWebSocketResponse,
]:
    token = await env.token()
    control, agent_id = await env.agent()
    r = await env.request_session(token, agent_id)
    assert r.status == 201, await r.text()
    created = await r.json()
    req = json.loads((await control.receive()).data)
    assert req["type"] == "session_request" and req["technician"]["company"] == "ACME"
    tech = await env.http.ws_connect(created["relay_url"])
    await tech.send_json({"token": created["relay_token"]})
    agent = await env.http.ws_connect(req["relay_url"] or env.url(req["relay_path"]))
    await agent.send_json({"token": req["relay_token"]})
    for ws in (tech, agent):
        assert json.loads((await ws.receive()).data) == {"type": "paired"}
    return tech, agent, created["session_id"], control


async def test_relay_copies_bytes_and_records_end_reason(env: Env) -> None:
    tech, agent, sid, _ = await pair(env)
    await tech.send_bytes(b"\x01" * 100)
    assert (await agent.receive()).data == b"\x01" * 100
    await agent.send_bytes(b"\x02" * 10)
    assert (await tech.receive()).data == b"\x02" * 10
    await tech.close(code=4000, message=b"technician_ended")
    msg = await agent.receive()
    assert msg.type == WSMsgType.CLOSE and msg.data == 4000 and msg.extra == "technician_ended"
    row = await env.record(sid)
    assert row.end_reason == "technician_ended"
    assert (row.bytes_to_agent, row.bytes_to_technician) == (100, 10)


async def test_relay_token_is_single_use(env: Env) -> None:
    token = await env.token()
    control, agent_id = await env.agent()
    created = await (await env.request_session(token, agent_id)).json()
    first = await env.http.ws_connect(created["relay_url"])
    await first.send_json({"token": created["relay_token"]})
    second = await env.http.ws_connect(created["relay_url"])
    await second.send_json({"token": created["relay_token"]})
    msg = await second.receive()
    assert msg.type == WSMsgType.CLOSE and msg.data == 4409


async def test_oversized_and_text_frames_end_only_that_session(env: Env) -> None:
    tech1, agent1, sid1, _ = await pair(env)
    tech2, agent2, sid2, _ = await pair(env)
    await tech1.send_bytes(b"x" * (64 * 1024 + 1))
    msg = await agent1.receive()
    assert msg.type == WSMsgType.CLOSE and msg.extra == "protocol_error"
    assert (await env.record(sid1)).end_reason == "protocol_error"
    await agent2.send_str("garbage")
    msg = await tech2.receive()
    assert msg.type == WSMsgType.CLOSE and msg.extra == "protocol_error"
    # The server still serves a third session.
    tech3, agent3, _sid3, _ = await pair(env)
    await tech3.send_bytes(b"still alive")
    assert (await agent3.receive()).data == b"still alive"


async def test_abrupt_disconnect_is_recorded(env: Env) -> None:
    tech, agent, sid, _ = await pair(env)
    await agent.close()  # a close without an end reason: the agent went away
    msg = await tech.receive()
    assert msg.type == WSMsgType.CLOSE and msg.extra == "agent_disconnected"
    assert (await env.record(sid)).end_reason == "agent_disconnected"


async def test_pairing_times_out_and_tells_the_agent(env: Env) -> None:
    token = await env.token()
    control, agent_id = await env.agent()
    created = await (await env.request_session(token, agent_id)).json()
    await control.receive()  # session_request, never answered
    end = json.loads((await control.receive(timeout=10)).data)
    assert end == {"type": "session_end", "session_id": created["session_id"], "reason": "timeout"}


async def test_wrong_password_slows_the_next_request(env: Env) -> None:
    tech, agent, sid, control = await pair(env)
    row = await env.svc.store.get_session(sid)
    assert row is not None
    # The agent's authenticated report is what counts...
    await control.send_json({"type": "session_event", "session_id": sid, "event": "wrong_password"})
    await agent.close(code=4000, message=b"wrong_password")
    await env.record(sid)
    limits = env.svc.limits.sessions
    await until(lambda: limits.pair.failures((row.technician_id, row.agent_id)) == 1)
    assert limits.wait(row.technician_id, row.agent_id) >= 1.0


async def test_start_page_tells_how_to_connect_in_both_languages(env: Env) -> None:
    async with env.http.get(env.url("/")) as r:
        assert r.status == 200
        page = await r.text()
    assert "enkaku connect" in page and "接続" in page
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]


async def test_agent_reports_are_recorded_even_after_the_relay_closed(env: Env) -> None:
    tech, agent, sid, control = await pair(env)
    await tech.close(code=4000, message=b"technician_ended")
    await env.record(sid)
    await control.send_json(
        {"type": "session_event", "session_id": sid, "event": "ended", "detail": "technician_ended"}
    )
    for _ in range(100):
        events = [e.event for e in await env.svc.store.audit_events(sid)]
        if "ended" in events:
            break
        await asyncio.sleep(0.05)
    assert "ended" in events


async def test_a_verified_handshake_clears_the_technician_slowdown(env: Env) -> None:
    tech, agent, sid, control = await pair(env)
    row = await env.svc.store.get_session(sid)
    assert row is not None
    key = (row.technician_id, row.agent_id)
    limits = env.svc.limits.sessions
    limits.pair.failed(key)
    # An agent's report of a wrong password counts (once per session)...
    await control.send_json({"type": "session_event", "session_id": sid, "event": "wrong_password"})
    await control.send_json({"type": "session_event", "session_id": sid, "event": "wrong_password"})
    await until(lambda: limits.pair.failures(key) == 2)
    # ...only the agent's word that the key confirmation verified clears her count for it.
    await control.send_json(
        {"type": "session_event", "session_id": sid, "event": "consent_granted"}
    )
    await until(lambda: limits.pair.failures(key) == 0)
    # The agent's own ceiling and her count over all agents only leak with time.
    assert limits.agent.failures(row.agent_id) == 1
    assert limits.technician.failures(row.technician_id) == 1


async def test_a_leg_arriving_after_the_end_is_told_why(env: Env) -> None:
    token = await env.token()
    control, agent_id = await env.agent()
    created = await (await env.request_session(token, agent_id)).json()
    req = json.loads((await control.receive()).data)
    await control.send_json(
        {"type": "session_event", "session_id": req["session_id"], "event": "busy"}
    )
    await env.record(created["session_id"])
    tech = await env.http.ws_connect(created["relay_url"])
    await tech.send_json({"token": created["relay_token"]})
    msg = await tech.receive()
    assert msg.type == WSMsgType.CLOSE and msg.data == 4000 and msg.extra == "busy"
    # A wrong token still learns nothing.
    other = await env.http.ws_connect(created["relay_url"])
    await other.send_json({"token": "not-the-token"})
    msg = await other.receive()
    assert msg.type == WSMsgType.CLOSE and msg.data == 4401


async def test_logout_revokes_the_token_however_the_header_is_spaced(env: Env) -> None:
    token = await env.token()
    # RFC 7235 allows several spaces after the scheme; the token is parsed once, the same
    # way for authentication and for revocation.
    async with env.http.delete(
        env.url("/api/v1/auth/token"), headers={"Authorization": f"Bearer  {token}"}
    ) as r:
        assert r.status == 204
    async with env.http.get(
        env.url("/api/v1/me"), headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 401


async def test_a_malformed_authorization_header_is_not_a_token(env: Env) -> None:
    token = await env.token()
    for header in (f"Bearer {token} extra", f"Basic {token}", f"Bearer{token}", "Bearer "):
        async with env.http.get(env.url("/api/v1/me"), headers={"Authorization": header}) as r:
            assert r.status == 401, header
    async with env.http.get(
        env.url("/api/v1/me"), headers={"Authorization": f"bearer {token}"}
    ) as r:
        assert r.status == 200  # the scheme is case-insensitive


async def test_behind_a_proxy_the_address_is_the_one_it_appended_last(tmp_path: Path) -> None:
    async with authz_env(tmp_path) as proxied:
        # The client sent its own header line; the proxy appended its own line.
        headers = CIMultiDict(
            [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "10.0.0.9, 203.0.113.9")]
        )
        async with proxied.http.post(
            proxied.url("/api/v1/auth/token"),
            json={"username": "nobody", "password": "wrong"},
            headers=headers,
        ) as r:
            assert r.status == 401
        login = proxied.svc.limits.login
        assert login.address.failures("203.0.113.9") == 1
        assert login.address.failures("198.51.100.1") == 0
        assert login.pair.failures(("nobody", "203.0.113.9")) == 1


async def test_one_device_key_has_one_id_however_it_is_spelled(env: Env) -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    spaced = " ".join(raw[i : i + 2] for i in range(0, len(raw), 2))
    ids = set()
    for spelling in (raw, raw.upper(), spaced, f" {raw}\n"):
        ws = await env.http.ws_connect(env.url("/ws/agent"))
        challenge = json.loads((await ws.receive()).data)
        await ws.send_json({**hello(challenge, key), "public_key": spelling})
        welcome = json.loads((await ws.receive()).data)
        assert welcome["type"] == "welcome", welcome
        ids.add(welcome["agent_id"])
        await ws.close()
    assert len(ids) == 1
    async with env.svc.store.engine.connect() as conn:
        keys = (await conn.execute(select(Agent.public_key))).scalars().all()
    assert keys == [raw]


async def test_tool_events_are_recorded_as_metadata_and_content_is_dropped(env: Env) -> None:
    tech, agent, sid, control = await pair(env)
    reports = [
        ("action_granted", "file_to_customer"),
        ("action_denied", "screenshot:timeout"),
        ("file_received", "1073741824"),
        ("screenshot_sent", "1024x768"),
        # An agent that put content in a detail: the event is kept, the detail is not.
        ("file_failed", "/home/taro/給与明細.pdf"),
        ("action_granted", "secret text typed by the customer"),
    ]
    for event, detail in reports:
        await control.send_json(
            {"type": "session_event", "session_id": sid, "event": event, "detail": detail}
        )
    await control.send_json({"type": "session_event", "session_id": sid, "event": "busy"})
    await env.record(sid)
    for _ in range(100):
        events = await env.svc.store.audit_events(sid)
        rows = [(e.event, e.detail) for e in events if e.source == "agent"]
        if ("busy", None) in rows:
            break
        await asyncio.sleep(0.05)
    assert rows[: len(reports)] == [
        ("action_granted", "file_to_customer"),
        ("action_denied", "screenshot:timeout"),
        ("file_received", "1073741824"),
        ("screenshot_sent", "1024x768"),
        ("file_failed", None),
        ("action_granted", None),
    ]
