"""The support company's name and phone: server settings, carried in the agent link's
welcome, checked by the agent, and shown by the headless agent as one line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from enkaku.agent.identity import DeviceKey
from enkaku.agent.runtime import AgentRuntime
from enkaku.agent.ui import HeadlessUI, support_contact
from enkaku.cli import build_parser
from enkaku.server.app import build_app
from enkaku.server.settings import Settings, SettingsError, from_env

from .conftest import Env, hello, until

NAME, PHONE = "ACME サポート", "03-1234-5678"


async def _welcome(url: str, http: aiohttp.ClientSession) -> dict[str, object]:
    ws = await http.ws_connect(url)
    await ws.send_json(hello(json.loads((await ws.receive()).data)))
    welcome: dict[str, object] = json.loads((await ws.receive()).data)
    await ws.close()
    return welcome


async def test_the_welcome_carries_the_support_name_and_phone(tmp_path: Path) -> None:
    settings = Settings(db_url=f"sqlite:///{tmp_path}/t.db", support_name=NAME, support_phone=PHONE)
    server = TestServer(build_app(settings))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            welcome = await _welcome(str(server.make_url("/ws/agent")), http)
    finally:
        await server.close()
    assert welcome["type"] == "welcome"
    assert welcome["support"] == {"name": NAME, "phone": PHONE}


async def test_without_the_settings_the_welcome_says_null(env: Env) -> None:
    welcome = await _welcome(env.url("/ws/agent"), env.http)
    assert "support" in welcome and welcome["support"] is None


def test_a_name_without_a_phone_is_sent_with_a_null_phone() -> None:
    assert Settings(support_name=NAME).support == {"name": NAME, "phone": None}


def test_the_flags_and_the_environment_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_SUPPORT_NAME", "From the environment")
    monkeypatch.setenv("ENKAKU_SUPPORT_PHONE", "0120-111-111")
    assert from_env().support == {"name": "From the environment", "phone": "0120-111-111"}
    args = build_parser().parse_args(["server", "--support-name", NAME, "--support-phone", PHONE])
    flagged = from_env(support_name=args.support_name, support_phone=args.support_phone)
    assert flagged.support == {"name": NAME, "phone": PHONE}  # a flag wins


@pytest.mark.parametrize(
    ("name", "phone"),
    [("", PHONE), ("ACME\x1b[31m", ""), (NAME, "03\n1234"), ("x" * 81, "")],
)
def test_bad_support_settings_are_refused(name: str, phone: str) -> None:
    with pytest.raises(SettingsError):
        Settings(support_name=name, support_phone=phone)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ({"name": NAME, "phone": PHONE}, (NAME, PHONE)),
        ({"name": NAME, "phone": None}, (NAME, None)),
        ({"name": "A\u202eCME\x1b[2J", "phone": "03\x07-1"}, ("ACME[2J", "03-1")),
        ({"name": "n" * 500, "phone": "9" * 500}, ("n" * 80, "9" * 40)),
        ({"name": NAME, "phone": 3}, (NAME, None)),
        (None, None),
        ("ACME", None),
        ({"name": ""}, None),
        ({"name": 7, "phone": PHONE}, None),
    ],
)
def test_the_agent_shows_only_printable_limited_text(raw: object, shown: object) -> None:
    assert support_contact(raw) == shown


async def test_the_headless_agent_prints_one_support_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENKAKU_LANG", "en")
    settings = Settings(db_url=f"sqlite:///{tmp_path}/t.db", support_name=NAME, support_phone=PHONE)
    server = TestServer(build_app(settings))
    await server.start_server()
    url = str(server.make_url(""))
    runtime = AgentRuntime(url, DeviceKey.load_or_create(tmp_path / "agent"), HeadlessUI(url))
    try:
        async with aiohttp.ClientSession() as runtime.http:
            task = asyncio.create_task(runtime._connect_once())
            await until(lambda: runtime.agent_id != "", "welcome")
            await runtime.stop()
            await asyncio.wait_for(task, 30)
    finally:
        await server.close()
    err = capsys.readouterr().err.splitlines()
    assert err.count(f"Support: {NAME}, phone {PHONE}") == 1
    monkeypatch.setenv("ENKAKU_LANG", "ja")
    HeadlessUI(url).support_contact(NAME, None)
    assert capsys.readouterr().err == f"サポート窓口: {NAME}\n"
