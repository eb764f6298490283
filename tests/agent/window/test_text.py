"""What the window writes and which font it draws with, without a display."""

from __future__ import annotations

import subprocess

from enkaku.agent.window.fonts import UI_FAMILIES, pick
from enkaku.agent.window.lang import Lang, clock_text, group_id


def test_the_id_is_grouped_as_it_is_read_aloud() -> None:
    assert group_id("123456789") == "123 456 789"


def test_durations_read_as_hours_minutes_seconds() -> None:
    assert clock_text(0) == "0:00:00"
    assert clock_text(754.9) == "0:12:34"
    assert clock_text(3 * 3600 + 5) == "3:00:05"


def test_a_switch_relabels_every_listener_once() -> None:
    lang, seen = Lang("ja"), []
    stop = lang.subscribe(lambda: seen.append(lang.code))
    lang.switch("en")
    lang.switch("en")  # no change: nobody is told
    stop()
    lang.switch("ja")
    assert seen == ["en"]
    assert Lang("fr").code == "en"


def test_the_first_installed_japanese_family_wins() -> None:
    assert pick({"DejaVu Sans", "IPAexGothic"}, UI_FAMILIES, "fixed") == "IPAexGothic"
    assert pick(set(), UI_FAMILIES, "fixed") == "fixed"


def test_this_machine_has_a_font_for_japanese() -> None:
    """fonts-noto-cjk (scripts/bootstrap): without it the window shows boxes for kana."""
    families = subprocess.run(
        ["fc-list", ":lang=ja", "family"], capture_output=True, text=True, check=True
    ).stdout
    assert any(f in families for f in UI_FAMILIES[:-1]), families
