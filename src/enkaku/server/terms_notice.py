"""E-mail notices of a new terms version to every customer contact address
(docs/operations.md#e-mail-notices-of-new-terms).

One bilingual plain-text message (Japanese first, then English) per distinct address,
so no address is disclosed to another, sent with the standard library's smtplib over one
connection to the configured server. A refused address is reported and the next one is
tried (on a new connection if the old one was lost); when no connection can be made, the
addresses left are reported as not sent with that reason. The URL's password is never
shown or logged.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from .settings import Settings, SmtpServer, smtp_server

#: Seconds one SMTP connection or command may take.
SMTP_TIMEOUT = 30.0


@dataclass
class NoticeResult:
    sent: list[str] = field(default_factory=list)
    #: (address, reason) of every address not sent to.
    failed: list[tuple[str, str]] = field(default_factory=list)


def distinct_addresses(addresses: Iterable[str]) -> list[str]:
    """Each address once (compared without case), in the order first seen."""
    seen: set[str] = set()
    out = []
    for address in addresses:
        key = address.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append(address.strip())
    return out


def notice_message(
    settings: Settings, to: str, version: str, effective: date, published: date
) -> EmailMessage:
    """The notice of ``version`` for one recipient."""
    url = f"{settings.base_url}/terms"
    msg = EmailMessage()
    msg["Subject"] = f"利用規約 第 {version} 版のお知らせ / New terms of use, version {version}"
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    signature = f"\n{settings.support_name}\n" if settings.support_name else ""
    body = (
        "お客様各位\n"
        "\n"
        f"リモートサポートの利用規約 第 {version} 版を {published.isoformat()} に公開しました。"
        f"{effective.isoformat()} から適用されます。\n"
        "全文は次のページでご覧いただけます:\n"
        f"{url}\n"
        "\n"
        "適用日以降は、サポートセッションを始める前に、お客様のコンピュータのエージェントが"
        "新しい規約への同意をお願いします。\n"
        f"{signature}"
        "\n"
        "----------------------------------------------------------------\n"
        "\n"
        "Dear customer,\n"
        "\n"
        f"We published version {version} of the remote support terms of use on "
        f"{published.isoformat()}. It takes effect on {effective.isoformat()}.\n"
        "The full text is on this page:\n"
        f"{url}\n"
        "\n"
        "From that date, the agent on your computer asks you to accept the new terms before "
        "a support session starts.\n"
        f"{signature}"
    )
    msg.set_content(body, charset="utf-8")
    return msg


def _connect(server: SmtpServer) -> smtplib.SMTP:
    context = ssl.create_default_context()
    conn: smtplib.SMTP
    if server.security == "tls":
        conn = smtplib.SMTP_SSL(server.host, server.port, timeout=SMTP_TIMEOUT, context=context)
    else:
        conn = smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT)
    try:
        if server.security == "starttls":
            conn.starttls(context=context)
        if server.user:
            conn.login(server.user, server.password)
    except BaseException:
        conn.close()
        raise
    return conn


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [f"{code} {_text(text)}" for code, text in exc.recipients.values()]
        return "; ".join(codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return str(exc) or type(exc).__name__


def send_notices(
    settings: Settings,
    addresses: Iterable[str],
    version: str,
    effective: date,
    published: date,
) -> NoticeResult:
    """Send the notice to each address (blocking: run it in a thread)."""
    server = smtp_server(settings.smtp_url)
    result = NoticeResult()
    pending = distinct_addresses(addresses)
    conn: smtplib.SMTP | None = None
    try:
        while pending:
            address = pending.pop(0)
            if conn is None:
                try:
                    conn = _connect(server)
                except (smtplib.SMTPException, OSError) as exc:
                    reason = _reason(exc)
                    result.failed += [(a, reason) for a in [address, *pending]]
                    return result
            message = notice_message(settings, address, version, effective, published)
            try:
                conn.send_message(message, settings.smtp_from, [address])
            except (
                smtplib.SMTPRecipientsRefused,
                smtplib.SMTPSenderRefused,
                smtplib.SMTPDataError,
            ) as exc:
                result.failed.append((address, _reason(exc)))
            except (smtplib.SMTPException, OSError) as exc:
                # The connection is gone: try the next address on a new one.
                result.failed.append((address, _reason(exc)))
                conn.close()
                conn = None
            else:
                result.sent.append(address)
    finally:
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()
    return result
