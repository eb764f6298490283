"""Terms of use on the server: the terms clock, the file an admin publishes, and
`enkaku admin terms` (docs/operations.md, "Terms of use").

The file is TOML with one string per language::

    en = \"\"\"English text...\"\"\"
    ja = \"\"\"日本語の本文...\"\"\"

The version and the effective date are given on the command line; the published date is
the server's today.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from enkaku.i18n import both, register, t
from enkaku.protocol.terms import Terms

if TYPE_CHECKING:
    from .settings import Settings
    from .store.models import TermsVersion
    from .store.repo import Store

log = logging.getLogger(__name__)

#: TEST ONLY: shifts the day the terms code sees as today by this many days (an integer),
#: so a test can reach a later version's effective date. Ignored unless set.
CLOCK_OFFSET_ENV = "ENKAKU_TEST_CLOCK_OFFSET_DAYS"

register(
    {
        "terms_not_accepted": (
            "The customer has not accepted the terms of use in force (version {version}): "
            "no session can be started until they do. Ask the customer to restart the "
            "agent and accept the terms.",
            "お客様が現行の利用規約 (第 {version} 版) に同意していないため、セッションを開始"
            "できません。お客様にエージェントを再起動して規約に同意していただいてください。",
        ),
        "terms_file_unreadable": (
            "Cannot read the terms file {path}: {detail}",
            "規約ファイル {path} を読めません: {detail}",
        ),
        "terms_file_format": (
            'The terms file {path} must be TOML with two strings, en = "..." and '
            'ja = "..." (docs/operations.md).',
            '規約ファイル {path} は en = "..." と ja = "..." の 2 つの文字列を持つ TOML '
            "でなければなりません (docs/operations.md)。",
        ),
        "terms_published": (
            "Published terms version {version} (effective {effective}).",
            "利用規約 第 {version} 版を公開しました (有効日 {effective})。",
        ),
        "terms_notice_unconfigured": (
            "No e-mail notices were sent: no SMTP server is configured. Set ENKAKU_SMTP_URL "
            "(such as smtp+starttls://mail.example.com:587) and ENKAKU_SMTP_FROM "
            "(docs/operations.md). The /terms page announces the new version all the same.",
            "メールでのお知らせは送っていません: SMTP サーバーが設定されていないためです。"
            "ENKAKU_SMTP_URL (smtp+starttls://mail.example.com:587 など) と ENKAKU_SMTP_FROM "
            "を設定してください (docs/operations.md)。新しい版は /terms ページで告知されています。",
        ),
        "terms_notice_failed": (
            "Notice not sent to {address}: {reason}",
            "{address} へのお知らせを送れませんでした: {reason}",
        ),
        "terms_notice_sent": (
            "E-mail notices sent: {sent} of {total} addresses.",
            "メールでのお知らせを送信しました: {total} 件中 {sent} 件。",
        ),
    }
)


def terms_today() -> date:
    """Today (UTC) for the terms: which version is in force, when one is published."""
    today = datetime.now(UTC).date()
    offset = os.environ.get(CLOCK_OFFSET_ENV)
    if not offset:
        return today
    try:
        return today + timedelta(days=int(offset))
    except ValueError:
        log.warning("%s is not a whole number of days: ignored", CLOCK_OFFSET_ENV)
        return today


def to_terms(row: TermsVersion) -> Terms:
    return Terms(
        version=row.version,
        published=row.published,
        effective=row.effective,
        text={"en": row.text_en, "ja": row.text_ja},
    )


def read_terms_file(path: Path) -> tuple[str, str]:
    """The English and the Japanese text of a terms file; ValueError with the reason."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(t("terms_file_unreadable", path=path, detail=exc.strerror)) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(t("terms_file_unreadable", path=path, detail=exc)) from None
    en, ja = data.get("en"), data.get("ja")
    if not isinstance(en, str) or not isinstance(ja, str) or set(data) != {"en", "ja"}:
        raise ValueError(t("terms_file_format", path=path))
    return en, ja


async def admin_terms(store: Store, args: argparse.Namespace) -> int:
    """`enkaku admin terms publish|list`. Exit 2 when a version is refused."""
    from .store.repo import TermsRefused

    if args.terms_action == "list":
        today = terms_today()
        in_force, _ = await store.current_terms(today)
        for row in await store.list_terms():
            state = (
                "in force"
                if in_force is not None and row.id == in_force.id
                else ("upcoming" if row.effective > today else "superseded")
            )
            print(f"{row.version}\tpublished {row.published}\teffective {row.effective}\t{state}")
        return 0
    from .settings import SettingsError, from_env

    try:
        # Before anything is stored: a bad SMTP setting must not leave a version published
        # whose notices cannot be sent.
        settings = from_env()
    except SettingsError as exc:
        print(f"enkaku: {exc}", file=sys.stderr)
        return 2
    try:
        text_en, text_ja = read_terms_file(args.file)
        row = await store.publish_terms(
            args.terms_version, args.effective, text_en, text_ja, today=terms_today()
        )
    except TermsRefused as exc:
        message = both(exc.key, **exc.kwargs)
        print(f"enkaku: {message['en']}\nenkaku: {message['ja']}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"enkaku: {exc}", file=sys.stderr)
        return 2
    print(t("terms_published", version=row.version, effective=row.effective))
    return await notify_customers(store, settings, row)


async def notify_customers(store: Store, settings: Settings, row: TermsVersion) -> int:
    """E-mail the notice of ``row`` to every customer contact address (server/
    terms_notice.py), report each failure on stderr and the count sent on stdout, and
    audit ``terms_notified`` with counts only. 1 if any notice failed, else 0."""
    import asyncio
    import json

    from .terms_notice import distinct_addresses, send_notices

    addresses = distinct_addresses(
        email for customer in await store.records.customers() for email in customer.emails
    )
    counts: dict[str, object] = {"version": row.version, "addresses": len(addresses)}
    if not settings.smtp_url:
        print(t("terms_notice_unconfigured"))
        counts.update(smtp=False, sent=0, failed=0)
        await store.records.audit_admin(
            "terms_notified", actor=None, target=f"terms:{row.version}", detail=json.dumps(counts)
        )
        return 0
    result = await asyncio.to_thread(
        send_notices, settings, addresses, row.version, row.effective, row.published
    )
    for address, reason in result.failed:
        print(
            f"enkaku: {t('terms_notice_failed', address=address, reason=reason)}", file=sys.stderr
        )
    print(t("terms_notice_sent", sent=len(result.sent), total=len(addresses)))
    counts.update(smtp=True, sent=len(result.sent), failed=len(result.failed))
    await store.records.audit_admin(
        "terms_notified", actor=None, target=f"terms:{row.version}", detail=json.dumps(counts)
    )
    return 1 if result.failed else 0
