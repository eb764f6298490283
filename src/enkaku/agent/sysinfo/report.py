"""The system information report as JSON (findings on top), as a self-contained HTML page
and as a rich renderable for the technician's terminal.

Every value in a report comes from the customer's machine (names of processes, units,
journal messages) and may be hostile: HTML output escapes every text it writes (no
script, no external resource, inline CSS only); terminal output strips control
characters and never interprets rich markup from values. Reports read from a peer may
have any shape, so the renderers accept any JSON value and stop at ``MAX_DEPTH``.
"""

from __future__ import annotations

import html
import json
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from enkaku.agent.sysinfo import labels
from enkaku.agent.sysinfo.collect import GROUPS
from enkaku.agent.sysinfo.findings import SEVERITIES, findings, human_bytes
from enkaku.i18n import printable, register, t

register(
    {
        "sysinfo_title": ("System information report", "システム情報レポート"),
        "sysinfo_findings": ("Findings", "診断結果"),
        "sysinfo_no_findings": (
            "No problems were found in the information that could be read.",
            "取得できた情報からは問題は見つかりませんでした。",
        ),
        "sysinfo_collected": (
            "Collected at {when} (UTC) in {seconds} s.",
            "{when} (UTC) に {seconds} 秒で取得しました。",
        ),
        "sysinfo_evidence": ("Evidence", "根拠"),
        "sysinfo_severity_critical": ("Critical", "重大"),
        "sysinfo_severity_warning": ("Warning", "警告"),
        "sysinfo_severity_info": ("Note", "情報"),
        "sysinfo_yes": ("yes", "はい"),
        "sysinfo_no": ("no", "いいえ"),
        "sysinfo_none": ("none", "なし"),
        "sysinfo_unavailable": ("Not available", "取得できませんでした"),
    }
)

#: Nesting deeper than this is shown as compact JSON text.
MAX_DEPTH = 6
COLORS = {"critical": "#b3261e", "warning": "#a15c00", "info": "#1f5fa8"}
BACKGROUNDS = {"critical": "#fdecea", "warning": "#fff4e0", "info": "#e8f0fb"}
RICH_STYLES = {"critical": "bold red", "warning": "bold yellow", "info": "bold blue"}


def report_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's findings: those it carries (from the agent), else computed now."""
    carried = report.get("findings")
    if isinstance(carried, list):
        return [f for f in carried if isinstance(f, dict)]
    return [f.to_dict() for f in findings(report)]


def to_json(report: dict[str, Any]) -> str:
    """The report as JSON with its findings first, for the technician and for machines."""
    doc = {"format": report.get("format"), "findings": report_findings(report)}
    doc.update((k, v) for k, v in report.items() if k not in doc)
    return json.dumps(doc, ensure_ascii=False, indent=1)


def _lang_text(value: Any, lang: str) -> str:
    """A ``{"en", "ja"}`` pair in ``lang`` (or whatever text there is)."""
    if isinstance(value, dict):
        value = value.get(lang, value.get("en", ""))
    return "" if value is None else str(value)


def _is_pair(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"en", "ja"}


def _uptime(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    return f"{days}d {rest // 3600}h {rest % 3600 // 60}m"


def scalar(key: str, value: Any, lang: str) -> str:
    """One value as plain text (not yet escaped)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return t("sysinfo_yes" if value else "sysinfo_no", lang)
    if isinstance(value, int | float) and key in labels.BYTE_FIELDS:
        return human_bytes(value)
    if isinstance(value, int | float) and key == "uptime_s":
        return _uptime(int(value))
    if _is_pair(value):
        return _lang_text(value, lang)
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return ", ".join(scalar(key, v, lang) for v in value) or t("sysinfo_none", lang)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)[:2000]
    return str(value)


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,"Noto Sans CJK JP","Noto Sans JP","Hiragino Sans","Yu Gothic",
Meiryo,sans-serif;margin:24px;color:#1d1d1f;background:#fff;line-height:1.5;max-width:1100px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.3em;border-bottom:2px solid #ccc;
margin-top:32px;padding-bottom:4px}h3{font-size:1.05em;margin:20px 0 6px}
.meta{color:#555;margin:0 0 16px}
.finding{border-left:6px solid;border-radius:4px;padding:10px 14px;margin:10px 0}
.badge{display:inline-block;color:#fff;border-radius:3px;padding:0 8px;margin-right:8px;
font-size:.85em;font-weight:bold;vertical-align:middle}
.ftitle{font-weight:bold}.finding p{margin:6px 0}
.evidence{font-size:.85em;color:#333;overflow-wrap:anywhere}
.none{background:#e9f7ec;border-left:6px solid #2e7d32;padding:10px 14px;border-radius:4px}
table{border-collapse:collapse;margin:4px 0 8px;font-size:.9em;max-width:100%}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;
overflow-wrap:break-word}
td.long{overflow-wrap:anywhere;min-width:12em}th{word-break:keep-all}
th{background:#f2f2f4;font-weight:600}table.kv>tbody>tr>th{white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
td.nw{white-space:nowrap}td .why{display:block}
td table{margin:0;font-size:1em}
.why{background:#f4f4f4;color:#444;border-left:6px solid #999;padding:8px 12px;
border-radius:4px}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _nowrap(key: str) -> str:
    """Short fields stay on one line; free text may break anywhere (hostile long words)."""
    if key in labels.NOWRAP_FIELDS:
        return ' class="nw"'
    return ' class="long"' if key in labels.LONG_FIELDS else ""


def _html_value(key: str, value: Any, lang: str, depth: int = 0) -> str:
    if depth >= MAX_DEPTH or _is_pair(value):
        return _e(scalar(key, value, lang))
    if isinstance(value, dict):
        if value.get("ok") is False and "why" in value:  # a part that could not be read
            return f'<span class="why">{_e(_lang_text(value["why"], lang))}</span>'
        rows = "".join(
            f"<tr><th>{_e(labels.field_label(str(k), lang))}</th>"
            f"<td{_nowrap(str(k))}>{_html_value(str(k), v, lang, depth + 1)}</td></tr>"
            for k, v in value.items()
            if k != "ok"
        )
        return f'<table class="kv">{rows}</table>'
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        columns: list[str] = []
        for row in value:
            columns.extend(str(k) for k in row if str(k) not in columns and k != "ok")
        head = "".join(f"<th>{_e(labels.field_label(c, lang))}</th>" for c in columns)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td{_nowrap(c)}>{_html_value(c, row.get(c), lang, depth + 1)}</td>"
                for c in columns
            )
            + "</tr>"
            for row in value
        )
        return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'
    return _e(scalar(key, value, lang))


def _html_finding(f: dict[str, Any], lang: str) -> str:
    sev, evidence = _severity(f), _evidence(f)
    ev = "; ".join(
        f"{_e(labels.field_label(str(k), lang))}: {_e(scalar(str(k), v, lang))}"
        for k, v in evidence.items()
    )
    return (
        f'<div class="finding" style="border-color:{COLORS[sev]};background:{BACKGROUNDS[sev]}">'
        f'<span class="badge" style="background:{COLORS[sev]}">'
        f"{_e(t('sysinfo_severity_' + sev, lang))}</span>"
        f'<span class="ftitle">{_e(_lang_text(f.get("title", ""), lang))}</span>'
        f"<p>{_e(_lang_text(f.get('explanation', ''), lang))}</p>"
        f'<div class="evidence">{_e(t("sysinfo_evidence", lang))}: {ev}</div></div>'
    )


def _sections(report: dict[str, Any]) -> dict[str, Any]:
    sections = report.get("sections")
    return sections if isinstance(sections, dict) else {}


def _ordered(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Groups and their sections present in the report; unknown sections go last."""
    present = _sections(report)
    known = {s for names in GROUPS.values() for s in names}
    out = [(g, [s for s in names if s in present]) for g, names in GROUPS.items()]
    extra = [str(s) for s in present if s not in known]
    return [(g, names) for g, names in out if names] + ([("other", extra)] if extra else [])


def _collected(report: dict[str, Any], lang: str) -> str:
    return t(
        "sysinfo_collected",
        lang,
        when=report.get("collected_at") or "?",
        seconds=report.get("duration_s") or "?",
    )


def _severity(f: dict[str, Any]) -> str:
    sev = f.get("severity")
    return sev if isinstance(sev, str) and sev in SEVERITIES else "info"


def _evidence(f: dict[str, Any]) -> dict[str, Any]:
    ev = f.get("evidence")
    return ev if isinstance(ev, dict) else {}


def to_html(report: dict[str, Any], lang: str) -> str:
    """A self-contained HTML page: findings first with severity colours, then every
    section as tables, in ``lang`` ("ja" or "en")."""
    lang = "ja" if lang == "ja" else "en"
    found = report_findings(report)
    parts = [
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        f"<title>{_e(t('sysinfo_title', lang))}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(t('sysinfo_title', lang))}</h1>",
        f'<p class="meta">{_e(_collected(report, lang))}</p>',
        f"<h2>{_e(t('sysinfo_findings', lang))}</h2>",
    ]
    parts += [_html_finding(f, lang) for f in found] or [
        f'<div class="none">{_e(t("sysinfo_no_findings", lang))}</div>'
    ]
    sections = _sections(report)
    for group, names in _ordered(report):
        parts.append(f"<h2>{_e(labels.group(group, lang))}</h2>")
        for name in names:
            sec = sections[name]
            parts.append(f"<h3>{_e(labels.section(name, lang))}</h3>")
            if isinstance(sec, dict) and sec.get("ok") is True:
                parts.append(_html_value(name, sec.get("data"), lang))
            else:
                why = sec.get("why") if isinstance(sec, dict) else None
                parts.append(
                    f'<div class="why">{_e(t("sysinfo_unavailable", lang))}: '
                    f"{_e(_lang_text(why or '', lang))}</div>"
                )
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------- terminal


def _txt(value: Any, limit: int = 300) -> Text:
    return Text(printable(str(value), limit))


def _rich_value(key: str, value: Any, lang: str, depth: int = 0) -> RenderableType:
    if depth >= MAX_DEPTH or _is_pair(value):
        return _txt(scalar(key, value, lang))
    if isinstance(value, dict):
        if value.get("ok") is False and "why" in value:
            return Text(printable(_lang_text(value["why"], lang), 300), style="dim")
        table = Table(show_header=False, box=None, padding=(0, 1))
        for k, v in value.items():
            if k != "ok":
                table.add_row(
                    Text(printable(labels.field_label(str(k), lang), 64), style="bold"),
                    _rich_value(str(k), v, lang, depth + 1),
                )
        return table
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        columns: list[str] = []
        for row in value:
            columns.extend(str(k) for k in row if str(k) not in columns and k != "ok")
        table = Table()
        for c in columns:
            table.add_column(header=Text(printable(labels.field_label(c, lang), 64)))
        for row in value:
            table.add_row(*[_rich_value(c, row.get(c), lang, depth + 1) for c in columns])
        return table
    return _txt(scalar(key, value, lang))


def to_text(report: dict[str, Any], lang: str) -> RenderableType:
    """The report for the technician's terminal (print it with a rich Console)."""
    lang = "ja" if lang == "ja" else "en"
    items: list[RenderableType] = [
        Text(t("sysinfo_title", lang), style="bold underline"),
        _txt(_collected(report, lang)),
    ]
    found = report_findings(report)
    for f in found:
        sev, evidence = _severity(f), _evidence(f)
        body = Text.assemble(
            (printable(_lang_text(f.get("explanation", ""), lang), 1000) + "\n", ""),
            (
                printable(
                    t("sysinfo_evidence", lang)
                    + ": "
                    + "; ".join(
                        f"{labels.field_label(str(k), lang)}: {scalar(str(k), v, lang)}"
                        for k, v in evidence.items()
                    ),
                    1000,
                ),
                "dim",
            ),
        )
        items.append(
            Panel(
                body,
                title=_txt(
                    f"{t('sysinfo_severity_' + sev, lang)}: {_lang_text(f.get('title', ''), lang)}"
                ),
                title_align="left",
                border_style=RICH_STYLES[sev],
            )
        )
    if not found:
        items.append(Text(t("sysinfo_no_findings", lang), style="green"))
    sections = _sections(report)
    for group, names in _ordered(report):
        items.append(Text("\n" + labels.group(group, lang), style="bold reverse"))
        for name in names:
            sec = sections[name]
            items.append(Text(labels.section(name, lang), style="bold"))
            if isinstance(sec, dict) and sec.get("ok") is True:
                items.append(_rich_value(name, sec.get("data"), lang))
            else:
                why = sec.get("why") if isinstance(sec, dict) else ""
                items.append(
                    Text(
                        printable(
                            t("sysinfo_unavailable", lang) + ": " + _lang_text(why, lang), 500
                        ),
                        style="dim",
                    )
                )
    return Group(*items)
