"""Reports on the records (docs/records.md#reports): a customer's month as CSV and as a
printable HTML page, one session's audit trail, in the server's time zone. Used by the
API (api/reports.py) and `enkaku admin report` alike."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from enkaku.i18n import register

from .store.models import AuditEvent, Customer
from .store.reports import SessionRecord

register(
    {
        "report_bad_month": (
            "{value!r} is not a month: use YYYY-MM, such as 2026-11",
            "{value!r} は月の指定ではありません。2026-11 のように YYYY-MM で指定してください",
        ),
    }
)

_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class Month:
    """A calendar month in a time zone, and its bounds as UTC instants."""

    year: int
    month: int
    zone: ZoneInfo

    @classmethod
    def parse(cls, value: str, zone: ZoneInfo) -> Month:
        """``YYYY-MM``; ValueError (message key ``report_bad_month``) otherwise."""
        match = _MONTH.fullmatch(value.strip())
        if not match or not 1970 <= int(match.group(1)) <= 9998:
            raise ValueError(value)
        return cls(int(match.group(1)), int(match.group(2)), zone)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        y, m = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return datetime(y, m, 1, tzinfo=self.zone).astimezone(UTC)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def local(dt: datetime | None, zone: ZoneInfo) -> str:
    """A time in ``zone``, to the second, with its UTC offset (ISO 8601)."""
    if dt is None:
        return ""
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    return aware.astimezone(zone).isoformat(timespec="seconds")


def _shown(dt: datetime | None, zone: ZoneInfo) -> str:
    """A time in ``zone`` for people: 2026-11-02 10:15:03."""
    if dt is None:
        return "-"
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    return f"{aware.astimezone(zone):%Y-%m-%d %H:%M:%S}"


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


# -- what an event means -----------------------------------------------------------------

_LABELS: dict[str, tuple[str, str]] = {
    "session_request": ("Session requested (contract {d})", "セッション要求 (契約 {d})"),
    "consent_granted": ("The customer consented to the session", "お客様がセッションに同意"),
    "consent_denied": ("The customer refused the session", "お客様がセッションを拒否"),
    "action_granted": ("The customer allowed: {d}", "お客様が許可: {d}"),
    "action_denied": ("The customer refused: {d}", "お客様が拒否: {d}"),
    "action_withdrawn": ("The customer withdrew: {d}", "お客様が許可を取り消し: {d}"),
    "file_received": ("File to the customer", "お客様へのファイル送信"),
    "file_sent": ("File from the customer", "お客様からのファイル受信"),
    "file_failed": ("File transfer failed ({d})", "ファイル転送失敗 ({d})"),
    "screenshot_sent": ("Screenshot taken ({d})", "スクリーンショット取得 ({d})"),
    "system_info_sent": ("System information sent ({d} bytes)", "システム情報送信 ({d} バイト)"),
    "terminal_opened": ("Terminal opened", "端末を開始"),
    "terminal_closed": ("Terminal closed (exit status {d})", "端末を終了 (終了コード {d})"),
    "clipboard_to_customer": (
        "Clipboard to the customer ({d} characters)",
        "クリップボードをお客様へ ({d} 文字)",
    ),
    "clipboard_from_customer": (
        "Clipboard from the customer ({d} characters)",
        "クリップボードをお客様から ({d} 文字)",
    ),
    "text_typed": ("Text typed ({d} characters)", "テキスト入力 ({d} 文字)"),
    "busy": ("The customer's machine was busy", "お客様のマシンは使用中"),
    "wrong_password": ("Wrong session password", "セッションパスワードの誤り"),
    "handshake_failed": ("Key exchange failed", "鍵交換に失敗"),
    "password_replaced": ("The customer replaced the password", "お客様がパスワードを変更"),
    "ended": ("The agent ended the session ({d})", "エージェントがセッションを終了 ({d})"),
    "session_end": ("Session ended: {d}", "セッション終了: {d}"),
    "agent_linked": ("Machine linked to the customer", "マシンを顧客に関連付け"),
    "agent_enrolled": ("Machine enrolled by code", "登録コードでマシンを登録"),
}


def describe(e: AuditEvent) -> tuple[str, str]:
    """What an event says, in English and Japanese (metadata only)."""
    en, ja = _LABELS.get(e.event, (e.event + (" ({d})" if e.detail else ""),) * 2)
    d = e.detail or "-"
    en, ja = en.format(d=d), ja.format(d=d)
    if e.file_size is not None and e.event in ("file_received", "file_sent"):
        name = e.file_name or "-"
        sha = e.file_sha256 or "-"
        en += f": {name}, {e.file_size} bytes, SHA-256 {sha}"
        ja += f": {name}、{e.file_size} バイト、SHA-256 {sha}"
    return en, ja


def _files(events: Iterable[AuditEvent], event: str) -> list[AuditEvent]:
    return [e for e in events if e.event == event]


def _actions(r: SessionRecord) -> str:
    """The customer's decisions in one session, in order: ``action granted``,
    ``action denied (reason)``, ``action withdrawn``."""
    out = []
    for e in r.events:
        if e.event == "action_granted":
            out.append(f"{e.detail or '-'} granted")
        elif e.event == "action_denied":
            action, _, reason = (e.detail or "-:-").partition(":")
            out.append(f"{action} denied ({reason or '-'})")
        elif e.event == "action_withdrawn":
            out.append(f"{e.detail or '-'} withdrawn")
    return "; ".join(out)


def _consent(r: SessionRecord) -> str:
    kinds = [e.event for e in r.events if e.event in ("consent_granted", "consent_denied")]
    if not kinds:
        return ""
    return "granted" if kinds[-1] == "consent_granted" else "denied"


def _file_list(events: list[AuditEvent]) -> str:
    return "; ".join(
        f"{e.file_name or '-'} {e.file_size if e.file_size is not None else e.detail} "
        f"sha256:{e.file_sha256 or '-'}"
        for e in events
    )


# -- the monthly report ------------------------------------------------------------------

CSV_COLUMNS = (
    "session_id",
    "requested",
    "connected",
    "ended",
    "duration_seconds",
    "technician",
    "contract",
    "agent_id",
    "bytes_to_customer",
    "bytes_from_customer",
    "consent",
    "actions",
    "screenshots",
    "files_to_customer",
    "files_from_customer",
    "files_failed",
    "end_reason",
    "end_asserted_by",
    "ended_by",
    "comment",
)


def monthly_csv(records: list[SessionRecord], zone: ZoneInfo) -> str:
    """One row per session (docs/records.md#reports lists the columns)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for r in records:
        w.writerow(
            [
                r.id,
                local(r.requested_at, zone),
                local(r.paired_at, zone),
                local(r.ended_at, zone),
                "" if r.duration is None else r.duration,
                _safe_cell(r.technician),
                _safe_cell(r.contract),
                r.agent_id,
                r.bytes_to_agent,
                r.bytes_to_technician,
                _consent(r),
                _actions(r),
                len(_files(r.events, "screenshot_sent")),
                _safe_cell(_file_list(_files(r.events, "file_received"))),
                _safe_cell(_file_list(_files(r.events, "file_sent"))),
                "; ".join(e.detail or "-" for e in _files(r.events, "file_failed")),
                r.end_reason or "",
                r.end_asserted_by or "",
                _safe_cell(r.ended_by or ""),
                _safe_cell(r.end_comment or ""),
            ]
        )
    return buf.getvalue()


def _safe_cell(text: str) -> str:
    """A free-text cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


_CSS = """
body { font-family: "Noto Sans CJK JP", "Noto Sans", sans-serif; margin: 2em; color: #000; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
h2 { font-size: 1.1em; margin-top: 1.5em; border-bottom: 1px solid #444; }
table { border-collapse: collapse; width: 100%; font-size: 0.85em; }
th, td { border: 1px solid #888; padding: 0.2em 0.4em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.meta { width: auto; }
.meta td { border: none; padding: 0.1em 1.5em 0.1em 0; }
.trail { table-layout: fixed; }
.trail col.t { width: 10em; } .trail col.s { width: 5em; } .trail col.e { width: 11em; }
.trail td { overflow-wrap: anywhere; }
.session { page-break-inside: avoid; break-inside: avoid; }
.ja { color: #333; }
@page { size: A4; margin: 15mm; }
@media print {
  body { margin: 0; font-size: 10pt; }
  th { background: #eee !important; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  a { color: #000; text-decoration: none; }
  h2 { page-break-after: avoid; break-after: avoid; }
}
"""


def _h(en: str, ja: str) -> str:
    return f'{html.escape(en)} <span class="ja" lang="ja">/ {html.escape(ja)}</span>'


def monthly_html(
    customer: Customer,
    month: Month,
    records: list[SessionRecord],
    *,
    company: str = "",
    generated: datetime | None = None,
) -> str:
    """The printable monthly report: totals, one table row per session, then each
    session's events (headings in English and Japanese, times in the month's zone)."""
    zone = month.zone
    e = html.escape
    total_in = sum(r.bytes_to_agent for r in records)
    total_out = sum(r.bytes_to_technician for r in records)
    total_time = sum(r.duration or 0 for r in records)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(customer.name)} {month}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_h('Remote support report', 'リモートサポート月次報告書')}</h1>",
        '<table class="meta">',
        f"<tr><td>{_h('Customer', '顧客')}</td><td>{e(customer.name)}</td></tr>",
        f"<tr><td>{_h('Month', '対象月')}</td><td>{month}</td></tr>",
        f"<tr><td>{_h('Time zone', 'タイムゾーン')}</td><td>{e(str(zone))}</td></tr>",
    ]
    if company:
        parts.append(f"<tr><td>{_h('Provided by', '提供')}</td><td>{e(company)}</td></tr>")
    if generated is not None:
        parts.append(
            f"<tr><td>{_h('Generated', '作成日時')}</td><td>{_shown(generated, zone)}</td></tr>"
        )
    parts += [
        "</table>",
        f"<h2>{_h('Summary', '概要')}</h2>",
        '<table class="meta">',
        f"<tr><td>{_h('Sessions', 'セッション数')}</td><td class='n'>{len(records)}</td></tr>",
        f"<tr><td>{_h('Connected time', '接続時間')}</td>"
        f"<td class='n'>{duration(total_time)}</td></tr>",
        f"<tr><td>{_h('Data to the customer', 'お客様への送信量')}</td>"
        f"<td class='n'>{total_in:,} bytes</td></tr>",
        f"<tr><td>{_h('Data from the customer', 'お客様からの受信量')}</td>"
        f"<td class='n'>{total_out:,} bytes</td></tr>",
        "</table>",
        f"<h2>{_h('Sessions', 'セッション一覧')}</h2>",
        "<table><thead><tr>",
        *(
            f"<th>{_h(en, ja)}</th>"
            for en, ja in (
                ("Requested", "要求日時"),
                ("Duration", "接続時間"),
                ("Technician", "担当者"),
                ("Contract", "契約"),
                ("Machine", "マシン"),
                ("To customer (bytes)", "送信 (バイト)"),
                ("From customer (bytes)", "受信 (バイト)"),
                ("End reason", "終了理由"),
                ("Asserted by", "申告者"),
                ("Comment", "コメント"),
            )
        ),
        "</tr></thead><tbody>",
    ]
    for r in records:
        parts.append(
            "<tr>"
            f"<td>{_shown(r.requested_at, zone)}</td>"
            f"<td class='n'>{duration(r.duration)}</td>"
            f"<td>{e(r.technician)}</td><td>{e(r.contract)}</td><td>{e(r.agent_id)}</td>"
            f"<td class='n'>{r.bytes_to_agent:,}</td>"
            f"<td class='n'>{r.bytes_to_technician:,}</td>"
            f"<td>{e(r.end_reason or '-')}</td>"
            f"<td>{e(r.end_asserted_by or '-')}"
            f"{' (' + e(r.ended_by) + ')' if r.ended_by else ''}</td>"
            f"<td>{e(r.end_comment or '')}</td>"
            "</tr>"
        )
    parts.append("</tbody></table>")
    parts.append(f"<h2>{_h('What was done, with the consent given', '作業内容と同意')}</h2>")
    for r in records:
        parts.append(f'<div class="session"><h3>{_shown(r.requested_at, zone)} — {e(r.id)}</h3>')
        parts.append(trail_table(r.events, zone))
        parts.append("</div>")
    if not records:
        parts.append(f"<p>{_h('No session this month.', '今月のセッションはありません。')}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def trail_table(events: list[AuditEvent], zone: ZoneInfo) -> str:
    rows = [
        '<table class="trail"><colgroup><col class="t"><col class="s"><col class="e"><col>'
        "</colgroup><thead><tr>",
        f"<th>{_h('Time', '日時')}</th><th>{_h('Source', '発生元')}</th>",
        f"<th>{_h('Event', 'イベント')}</th><th>{_h('Meaning', '内容')}</th>",
        "</tr></thead><tbody>",
    ]
    for ev in events:
        en, ja = describe(ev)
        rows.append(
            f"<tr><td>{_shown(ev.at, zone)}</td><td>{html.escape(ev.source)}</td>"
            f"<td>{html.escape(ev.event)}</td>"
            f'<td>{html.escape(en)}<br><span class="ja" lang="ja">{html.escape(ja)}</span></td>'
            "</tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def trail_text(r: SessionRecord, zone: ZoneInfo, lang: str = "en") -> str:
    """One session and its audit trail as lines of text (the command line's view)."""
    lines = [
        f"session\t{r.id}",
        f"customer\t{r.customer}",
        f"contract\t{r.contract}",
        f"technician\t{r.technician}",
        f"agent\t{r.agent_id}",
        f"requested\t{local(r.requested_at, zone)}",
        f"connected\t{local(r.paired_at, zone) or '-'}",
        f"ended\t{local(r.ended_at, zone) or '-'}",
        f"duration\t{duration(r.duration)}",
        f"bytes to customer\t{r.bytes_to_agent}",
        f"bytes from customer\t{r.bytes_to_technician}",
        f"end reason\t{r.end_reason or '-'} (by {r.end_asserted_by or '-'}"
        f"{', ' + r.ended_by if r.ended_by else ''})",
        f"comment\t{r.end_comment or '-'}",
    ]
    for ev in r.events:
        en, ja = describe(ev)
        lines.append(f"{local(ev.at, zone)}\t{ev.source}\t{ev.event}\t{ja if lang == 'ja' else en}")
    return "\n".join(lines) + "\n"
