"""E-mail notices of a new terms version (docs/operations.md#e-mail-notices-of-new-terms):
`enkaku admin terms publish` run in process on a real SQLite database, sending through a
real local SMTP server (aiosmtpd) on a free port."""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import date
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from enkaku.protocol.terms import one_month_after
from enkaku.server.settings import Settings, SettingsError, from_env
from enkaku.server.store.db import open_engine
from enkaku.server.store.repo import Store
from enkaku.server.terms import admin_terms, terms_today

PUBLIC_URL = "https://support.example.jp"
SENDER = "support@example.jp"
REFUSED = "bounce@example.org"


class Recorder:
    """An aiosmtpd handler that keeps every message and refuses one recipient."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address == REFUSED:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtpd() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(await open_engine(f"sqlite:///{tmp_path}/notice.db"))
    yield s
    await s.close()


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_LANG", "en")
    monkeypatch.setenv("ENKAKU_PUBLIC_URL", PUBLIC_URL)
    for var in ("ENKAKU_SMTP_URL", "ENKAKU_SMTP_FROM", "ENKAKU_SUPPORT_NAME"):
        monkeypatch.delenv(var, raising=False)


async def publish(store: Store, tmp_path: Path, version: str, effective: date) -> int:
    path = tmp_path / f"terms-{version}.toml"
    path.write_text(f'en = """Rules {version}."""\nja = """規約 {version}。"""\n', "utf-8")
    args = argparse.Namespace(
        terms_action="publish", file=path, terms_version=version, effective=effective
    )
    return await admin_terms(store, args)


async def setup_customers(store: Store, tmp_path: Path, *extra: str) -> None:
    # The first version (no notice period) is published before anyone has an address.
    assert await publish(store, tmp_path, "1", terms_today()) == 0
    await store.records.create_customer("Yamada Shoten", ["yamada@example.jp", *extra])
    await store.records.create_customer("Sato Clinic", ["sato@example.jp", "desk@example.jp"])


async def notified(store: Store) -> list[dict[str, Any]]:
    rows = await store.records.admin_events()
    return [json.loads(r.detail or "{}") for r in rows if r.event == "terms_notified"][::-1]


async def test_every_contact_address_gets_its_own_bilingual_notice(
    store: Store,
    tmp_path: Path,
    smtpd: tuple[Recorder, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder, port = smtpd
    await setup_customers(store, tmp_path)
    # An address another customer has too (in other case) gets one message, not two.
    await store.records.create_customer("Sato Clinic Annex", ["SATO@example.jp"])
    capsys.readouterr()
    monkeypatch.setenv("ENKAKU_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("ENKAKU_SMTP_FROM", SENDER)
    effective = one_month_after(terms_today())

    assert await publish(store, tmp_path, "2", effective) == 0

    out = capsys.readouterr()
    assert "Published terms version 2" in out.out
    assert "E-mail notices sent: 3 of 3 addresses." in out.out
    assert out.err == ""
    # One message per address: nobody sees another's address.
    assert sorted(to for _, tos, _ in recorder.envelopes for to in tos) == [
        "desk@example.jp",
        "sato@example.jp",
        "yamada@example.jp",
    ]
    for mail_from, tos, message in recorder.envelopes:
        assert mail_from == SENDER
        assert len(tos) == 1
        assert parseaddr(str(message["To"]))[1] == tos[0]
        assert message["Cc"] is None and message["Bcc"] is None
        assert parseaddr(str(message["From"]))[1] == SENDER
        subject = str(message["Subject"])
        assert "利用規約" in subject and "terms of use" in subject and "2" in subject
        assert parsedate_to_datetime(str(message["Date"])).tzinfo is not None
        assert str(message["Message-ID"]).startswith("<")
        assert str(message["Message-ID"]).endswith("@example.jp>")
        assert message.get_content_type() == "text/plain"
        assert message.get_content_charset() == "utf-8"
        body = message.get_content()
        assert body.index("お客様各位") < body.index("Dear customer")
        assert effective.isoformat() in body
        assert "第 2 版" in body and "version 2 " in body
        assert body.count(f"{PUBLIC_URL}/terms\n") == 2
    ids = {str(m["Message-ID"]) for _, _, m in recorder.envelopes}
    assert len(ids) == 3
    audit = await notified(store)
    assert audit[-1] == {"version": "2", "addresses": 3, "smtp": True, "sent": 3, "failed": 0}


async def test_a_refused_address_is_named_and_the_others_still_get_theirs(
    store: Store,
    tmp_path: Path,
    smtpd: tuple[Recorder, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder, port = smtpd
    # The refused address comes first, so the ones after it prove the run went on.
    await store.records.create_customer("Bounce KK", [REFUSED])
    await setup_customers(store, tmp_path)
    capsys.readouterr()
    monkeypatch.setenv("ENKAKU_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("ENKAKU_SMTP_FROM", SENDER)

    status = await publish(store, tmp_path, "2", one_month_after(terms_today()))

    out = capsys.readouterr()
    assert status == 1
    assert "E-mail notices sent: 3 of 4 addresses." in out.out
    assert f"Notice not sent to {REFUSED}: 550 5.1.1 No such mailbox here" in out.err
    assert out.err.count("Notice not sent") == 1
    assert sorted(tos[0] for _, tos, _ in recorder.envelopes) == [
        "desk@example.jp",
        "sato@example.jp",
        "yamada@example.jp",
    ]
    audit = await notified(store)
    assert audit[-1] == {"version": "2", "addresses": 4, "smtp": True, "sent": 3, "failed": 1}
    assert REFUSED not in json.dumps(audit)
    # The version is published all the same.
    assert [t.version for t in await store.list_terms()] == ["1", "2"]


async def test_an_unreachable_server_names_every_address_not_sent(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await setup_customers(store, tmp_path)
    capsys.readouterr()
    monkeypatch.setenv("ENKAKU_SMTP_URL", f"smtp://mailer:s3cret-pw@127.0.0.1:{free_port()}")
    monkeypatch.setenv("ENKAKU_SMTP_FROM", SENDER)

    assert await publish(store, tmp_path, "2", one_month_after(terms_today())) == 1

    out = capsys.readouterr()
    assert "E-mail notices sent: 0 of 3 addresses." in out.out
    for address in ("yamada@example.jp", "sato@example.jp", "desk@example.jp"):
        assert f"Notice not sent to {address}: " in out.err
    assert "s3cret-pw" not in out.out + out.err


async def test_without_smtp_url_the_command_says_no_notice_was_sent(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await setup_customers(store, tmp_path)
    capsys.readouterr()

    assert await publish(store, tmp_path, "2", one_month_after(terms_today())) == 0

    out = capsys.readouterr().out
    assert "No e-mail notices were sent" in out
    assert "ENKAKU_SMTP_URL" in out and "ENKAKU_SMTP_FROM" in out and "/terms" in out
    audit = await notified(store)
    assert audit[-1] == {"version": "2", "addresses": 3, "smtp": False, "sent": 0, "failed": 0}


async def test_a_bad_smtp_setting_refuses_before_anything_is_published(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await setup_customers(store, tmp_path)
    monkeypatch.setenv("ENKAKU_SMTP_URL", "smtp://127.0.0.1:2525")  # no ENKAKU_SMTP_FROM

    assert await publish(store, tmp_path, "2", one_month_after(terms_today())) == 2

    assert "ENKAKU_SMTP_FROM" in capsys.readouterr().err
    assert [t.version for t in await store.list_terms()] == ["1"]


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@mail.example.com",
        "smtp://user:hunter2@",
        "smtps://user:hunter2@mail.example.com:notaport",
        "smtp://user:hunter2@mail.example.com/path",
    ],
)
def test_a_bad_smtp_url_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings(smtp_url=url, smtp_from=SENDER)
    assert "hunter2" not in str(refused.value)
    assert "ENKAKU_SMTP_URL" in str(refused.value)


def test_the_smtp_password_is_not_in_the_settings_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENKAKU_SMTP_URL", "smtps://mailer:hunter2@mail.example.com")
    monkeypatch.setenv("ENKAKU_SMTP_FROM", SENDER)
    settings = from_env()
    assert settings.smtp_url.startswith("smtps://")
    assert "hunter2" not in repr(settings)
