"""Rendering: JSON with findings first, HTML that escapes hostile values and carries no
script or outside resource, terminal output that interprets neither markup nor escapes."""

from __future__ import annotations

import html.parser
import io
import json
from typing import Any

from rich.console import Console

from enkaku.agent.sysinfo.report import to_html, to_json, to_text
from tests.agent.sysinfo.test_findings import report, sample

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;"\'</td></table>'
TERMINAL_HOSTILE = "[bold red]fake[/] \x1b[2J\x1b]0;pwned\x07 end"


def hostile_report() -> dict[str, Any]:
    journal, storage, services = sample("journal"), sample("storage"), sample("services")
    journal["data"]["crashes"] = [
        {
            "kind": "segfault",
            "process": HOSTILE,
            "time": HOSTILE,
            "unit": HOSTILE,
            "priority": 6,
            "message": HOSTILE,
        }
    ]
    storage["data"][0].update(mount=HOSTILE, percent=99.0)
    services["data"]["failed"] = [
        {
            "unit": HOSTILE,
            "load": "loaded",
            "active": "failed",
            "sub": "failed",
            "description": TERMINAL_HOSTILE,
        }
    ]
    r = report(
        journal=journal,
        storage=storage,
        services=services,
        **{HOSTILE: {"ok": False, "why": {"en": HOSTILE, "ja": HOSTILE}}},
    )
    r["collected_at"] = HOSTILE
    return r


class Tags(html.parser.HTMLParser):
    """Every start tag and attribute the browser would see."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_escapes_every_hostile_value() -> None:
    for lang in ("ja", "en"):
        page = to_html(hostile_report(), lang)
        parsed = Tags()
        parsed.feed(page)
        assert "script" not in parsed.tags and "img" not in parsed.tags
        assert not any(name.startswith("on") for name, _ in parsed.attrs)
        assert not any(name == "src" or name == "href" for name, _ in parsed.attrs)
        text = "".join(parsed.text)
        assert HOSTILE in text  # shown as text, exactly, in the finding, tables and why
        assert text.count(HOSTILE) >= 5
        assert "&lt;script&gt;" in page and "<script" not in page


def test_html_has_findings_first_in_the_chosen_language() -> None:
    storage = sample("storage")
    storage["data"][0]["percent"] = 95.5
    ja, en = to_html(report(storage=storage), "ja"), to_html(report(storage=storage), "en")
    assert '<html lang="ja">' in ja and '<html lang="en">' in en
    assert ja.index("ファイルシステム / の使用率が 95.5% です") < ja.index("マウントポイント")
    assert en.index("File system / is 95.5% full") < en.index("Mount point")
    assert "Content-Security-Policy" in ja and "default-src 'none'" in ja


def test_html_says_why_a_section_is_missing() -> None:
    why = {"ok": False, "why": {"en": "systemd is not running", "ja": "systemd が動作していません"}}
    ja = to_html(report(services=why), "ja")
    assert "取得できませんでした: systemd が動作していません" in ja
    assert "問題は見つかりませんでした" in ja


def test_html_survives_odd_shapes_from_a_peer() -> None:
    deep: Any = "bottom"
    for _ in range(50):
        deep = {"x": [deep]}
    odd = {
        "findings": [1, {"severity": "<b>", "title": None}],
        "sections": {
            "cpu": {"ok": True, "data": deep},
            "memory": "nonsense",
            "disks": {"ok": True},
        },
    }
    page = to_html(odd, "en")
    assert "<b>" not in page and "bottom" in page  # the depth cap shows the rest as text
    assert page.endswith("</body></html>")
    console = Console(file=io.StringIO(), width=100, record=True)
    console.print(to_text(odd, "en"))
    out = console.export_text()
    assert "CPU" in out and "Disks and SMART health" in out and "None" not in out


def test_json_puts_findings_first_and_is_plain_utf8() -> None:
    storage = sample("storage")
    storage["data"][0]["percent"] = 91.0
    r = report(storage=storage)
    r["collected_at"] = "2026-11-29T11:00:00+00:00"
    doc = to_json(r)
    parsed = json.loads(doc)
    assert list(parsed)[:3] == ["format", "findings", "sections"]
    assert parsed["findings"][0]["id"] == "disk_full"
    assert "ファイルシステム" in doc  # not \u-escaped


def test_terminal_text_shows_values_literally_without_control_characters() -> None:
    console = Console(width=160, record=True, color_system=None, force_terminal=False)
    console.print(to_text(hostile_report(), "ja"))
    out = console.export_text()
    assert "[bold red]fake[/]" in out  # rich markup in a value is shown, not applied
    assert "\x1b" not in out and "\x07" not in out
    assert "重大" in out and "ファイルシステム" in out
