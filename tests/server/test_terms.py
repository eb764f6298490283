"""Versioned terms of use on the server: the one-month rule, the agent link's terms
messages, the refused session request and the public /terms page (real server, real
SQLite database)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from enkaku.agent.runtime import MAX_SERVER_MESSAGE
from enkaku.protocol.agentlink import CLOSE_MALFORMED
from enkaku.protocol.jsonlimits import loads_object
from enkaku.protocol.terms import Terms, one_month_after
from enkaku.server.store.db import open_engine
from enkaku.server.store.models import TermsAcceptance
from enkaku.server.store.repo import Store, TermsRefused
from enkaku.server.terms import CLOCK_OFFSET_ENV, terms_today

from .conftest import Env, agent_link, hello

DAY = date(2026, 1, 31)


@pytest.mark.parametrize(
    ("published", "earliest"),
    [
        (date(2026, 1, 31), date(2026, 2, 28)),  # clamped to the shorter month's end
        (date(2028, 1, 30), date(2028, 2, 29)),  # leap year
        (date(2026, 12, 15), date(2027, 1, 15)),  # across the year
        (date(2026, 3, 31), date(2026, 4, 30)),
        (date(2026, 4, 30), date(2026, 5, 30)),
    ],
)
def test_one_month_after_is_the_same_day_next_month_clamped(
    published: date, earliest: date
) -> None:
    assert one_month_after(published) == earliest


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = Store(await open_engine(f"sqlite:///{tmp_path}/terms.db"))
    yield s  # type: ignore[misc]
    await s.close()


async def test_the_first_version_may_take_effect_at_once_later_ones_need_a_month(
    store: Store,
) -> None:
    await store.publish_terms("1", DAY, "first", "最初", today=DAY)
    with pytest.raises(TermsRefused) as refused:
        await store.publish_terms("2", date(2026, 2, 27), "second", "二番目", today=DAY)
    assert refused.value.key == "terms_notice_too_short"
    assert refused.value.kwargs["earliest"] == date(2026, 2, 28)
    await store.publish_terms("2", date(2026, 2, 28), "second", "二番目", today=DAY)
    assert [t.version for t in await store.list_terms()] == ["1", "2"]
    in_force, upcoming = await store.current_terms(date(2026, 2, 27))
    assert (in_force and in_force.version, upcoming and upcoming.version) == ("1", "2")
    in_force, upcoming = await store.current_terms(date(2026, 2, 28))
    assert (in_force and in_force.version, upcoming) == ("2", None)


@pytest.mark.parametrize(
    ("version", "effective", "en", "ja", "key"),
    [
        ("1", DAY - timedelta(days=1), "en", "ja", "terms_effective_past"),
        ("1", DAY, "en", " ", "terms_text_missing"),
        ("a b", DAY, "en", "ja", "terms_bad_version"),
        ("1", DAY, "x" * 130_000, "ja", "terms_text_too_long"),
    ],
)
async def test_unusable_versions_are_refused(
    store: Store, version: str, effective: date, en: str, ja: str, key: str
) -> None:
    with pytest.raises(TermsRefused) as refused:
        await store.publish_terms(version, effective, en, ja, today=DAY)
    assert refused.value.key == key
    assert await store.list_terms() == []


async def test_a_version_is_published_once(store: Store) -> None:
    await store.publish_terms("1", DAY, "en", "ja", today=DAY)
    with pytest.raises(TermsRefused) as refused:
        await store.publish_terms("1", one_month_after(DAY), "en", "ja", today=DAY)
    assert refused.value.key == "terms_version_exists"


def test_the_clock_offset_is_ignored_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CLOCK_OFFSET_ENV, raising=False)
    today = terms_today()
    monkeypatch.setenv(CLOCK_OFFSET_ENV, "40")
    assert terms_today() == today + timedelta(days=40)
    monkeypatch.setenv(CLOCK_OFFSET_ENV, "soon")
    assert terms_today() == today


async def test_without_terms_the_welcome_says_null_and_sessions_work(env: Env) -> None:
    ws = await env.http.ws_connect(env.url("/ws/agent"))
    await ws.send_json(hello(json.loads((await ws.receive()).data)))
    welcome = json.loads((await ws.receive()).data)
    assert (welcome["terms"], welcome["terms_upcoming"]) == (None, None)
    token = await env.token()
    async with await env.request_session(token, welcome["agent_id"]) as r:
        assert r.status == 201, await r.text()
    await ws.close()


async def _publish_now(env: Env, text_en: str = "Use it well.", text_ja: str = "大切に") -> date:
    today = terms_today()
    await env.svc.store.publish_terms("2026.1", today, text_en, text_ja, today=today)
    return today


async def test_an_agent_accepts_the_version_in_force_then_sessions_work(env: Env) -> None:
    today = await _publish_now(env)
    await env.svc.store.publish_terms(
        "2026.2", one_month_after(today), "Next.", "次の版", today=today
    )
    ws = await env.http.ws_connect(env.url("/ws/agent"))
    await ws.send_json(hello(json.loads((await ws.receive()).data)))
    welcome = json.loads((await ws.receive()).data)
    agent_id = welcome["agent_id"]
    assert welcome["terms"]["accepted"] is False
    assert Terms.from_json(welcome["terms"]) == Terms(
        "2026.1", today, today, {"en": "Use it well.", "ja": "大切に"}
    )
    assert Terms.from_json(welcome["terms_upcoming"]).effective == one_month_after(today)

    token = await env.token()
    async with await env.request_session(token, agent_id) as r:
        assert r.status == 409
        error = (await r.json())["error"]
    assert error["code"] == "terms_not_accepted"
    assert "2026.1" in error["message"]["en"] and "同意" in error["message"]["ja"]

    await ws.send_json({"type": "accept_terms", "version": "2026.1"})
    assert json.loads((await ws.receive()).data) == {
        "type": "terms_accepted",
        "version": "2026.1",
    }
    rows = await env.svc.store.terms_acceptances(agent_id)
    assert [(r.agent_id, r.version) for r in rows] == [(agent_id, "2026.1")]
    async with await env.request_session(token, agent_id) as r:
        assert r.status == 201, await r.text()
    await ws.close()
    # The next connection is told it accepted.
    ws, _ = await agent_link(env.http, env.url("/ws/agent"))
    await ws.close()


async def test_accepting_a_version_not_in_force_closes_the_link(env: Env) -> None:
    today = await _publish_now(env)
    await env.svc.store.publish_terms("2026.2", one_month_after(today), "n", "n", today=today)
    ws, agent_id = await agent_link(env.http, env.url("/ws/agent"))
    await ws.send_json({"type": "accept_terms", "version": "2026.2"})
    await ws.receive()
    assert ws.close_code == CLOSE_MALFORMED
    async with env.svc.store._sessions() as s:
        assert list(await s.scalars(select(TermsAcceptance))) == []


async def test_the_terms_page_shows_both_versions_escaped(env: Env) -> None:
    async with env.http.get(env.url("/terms")) as r:
        assert r.status == 200
        assert "No terms of use are published" in await r.text()
    today = await _publish_now(env, "Rule <script>alert(1)</script> & more", "規約 <b>本文</b>")
    await env.svc.store.publish_terms(
        "2026.2", one_month_after(today), "Next <i>one</i>", "次の版 <i>改定</i>", today=today
    )
    async with env.http.get(env.url("/terms")) as r:
        assert r.status == 200
        assert (
            r.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
        )
        page = await r.text()
    assert "<script>" not in page and "<b>本文" not in page and "<i>" not in page
    assert "Rule &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "規約 &lt;b&gt;本文&lt;/b&gt;" in page
    assert "In force: version 2026.1" in page and "現行の規約 第 2026.1 版" in page
    assert f"takes effect on {one_month_after(today)}" in page and "改定予定 第 2026.2 版" in page
    assert page.index("2026.1") < page.index("2026.2")


async def test_connected_agents_are_told_when_the_terms_change(env: Env) -> None:
    ws, agent_id = await agent_link(env.http, env.url("/ws/agent"))
    assert await env.svc.agents.check_terms() == 0  # nothing published, nothing to tell
    today = await _publish_now(env)
    assert await env.svc.agents.check_terms() == 1
    told = json.loads((await ws.receive()).data)
    assert told["type"] == "terms" and told["terms_upcoming"] is None
    assert (told["terms"]["version"], told["terms"]["accepted"]) == ("2026.1", False)
    await ws.send_json({"type": "accept_terms", "version": "2026.1"})
    assert json.loads((await ws.receive()).data)["type"] == "terms_accepted"
    assert await env.svc.agents.check_terms() == 0  # told once per change
    await env.svc.store.publish_terms("2026.2", one_month_after(today), "n", "n", today=today)
    assert await env.svc.agents.check_terms() == 1
    told = json.loads((await ws.receive()).data)
    assert told["terms"]["accepted"] is True and told["terms_upcoming"]["version"] == "2026.2"
    await ws.close()


async def test_the_largest_versions_fit_the_agents_message_limit(env: Env) -> None:
    today = terms_today()
    ja, en = "規" * 19_000, "a" * 6_000  # 114 KB + 6 KB as sent: just under MAX_WIRE
    await env.svc.store.publish_terms("big.1", today, en, ja, today=today)
    await env.svc.store.publish_terms("big.2", one_month_after(today), en, ja, today=today)
    ws = await env.http.ws_connect(env.url("/ws/agent"), max_msg_size=MAX_SERVER_MESSAGE)
    await ws.send_json(hello(json.loads((await ws.receive()).data)))
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    welcome = loads_object(msg.data, max_bytes=MAX_SERVER_MESSAGE)
    assert Terms.from_json(welcome["terms"]).text["ja"] == ja
    assert Terms.from_json(welcome["terms_upcoming"]).version == "big.2"
    with pytest.raises(TermsRefused):
        await env.svc.store.publish_terms(
            "big.3", one_month_after(today), en + "a" * 3_000, ja, today=today
        )
    await ws.close()
