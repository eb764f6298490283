"""The terms of use through WindowUI: shown with version and date, Accept or Decline by a
real click; an upcoming version is a notice."""

from __future__ import annotations

import tkinter as tk
from datetime import date

import pytest

from enkaku.agent.window.consentdialog import PauseControl
from enkaku.agent.window.fonts import Fonts
from enkaku.agent.window.lang import Lang
from enkaku.agent.window.mainwindow import MainWindow
from enkaku.agent.window.ui import WindowUI
from enkaku.protocol.terms import Terms

from .helpers import click, find, loop_thread, need, pump_until

pytestmark = pytest.mark.x11

TERMS = Terms("2027-01", date(2026, 11, 1), date(2027, 1, 1), {"en": "Art. 1 ...", "ja": "第1条"})


@pytest.mark.parametrize(("button", "accepted"), [("accept", True), ("decline", False)])
def test_terms_are_accepted_or_declined_with_a_click(
    root: tk.Tk, fonts: Fonts, display: str, button: str, accepted: bool
) -> None:
    lang = Lang("en")
    main = MainWindow(root, fonts, lang, on_new_password=lambda: None, on_close=lambda: None)
    root.withdraw()
    with loop_thread(root) as bridge:
        ui = WindowUI(bridge, fonts, lang, main, PauseControl(), lambda: None)
        fut = bridge.to_loop(ui.ask_terms(TERMS))
        assert fut is not None
        dialog = need(root, "terms")
        head = need(dialog, "head").cget("text")
        assert "version 2027-01, in force from 2027-01-01" in head
        assert need(dialog, "text").get("1.0", "end").strip() == "Art. 1 ..."
        click(display, need(dialog, button))
        pump_until(root, fut.done, what="the answer")
        assert fut.result() is accepted
        assert find(root, "terms") is None


def test_an_upcoming_version_is_a_notice(root: tk.Tk, fonts: Fonts) -> None:
    lang = Lang("ja")
    main = MainWindow(root, fonts, lang, on_new_password=lambda: None, on_close=lambda: None)
    with loop_thread(root) as bridge:
        ui = WindowUI(bridge, fonts, lang, main, PauseControl(), lambda: None)
        done: list[object] = []
        bridge.ask_loop(lambda: ui.terms_upcoming(TERMS), done.append)
        notices = need(root, "notices")
        pump_until(root, lambda: "2027-01-01 から有効" in notices.cget("text"), what="notice")
