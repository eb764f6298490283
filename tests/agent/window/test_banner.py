"""The session banner: who, live data used, pause, end, chat; the summary at the end."""

from __future__ import annotations

import tkinter as tk
from typing import Any

import pytest

from enkaku.agent.consent import Question, Requester
from enkaku.agent.window.bridge import Bridge
from enkaku.agent.window.consentdialog import Allowed, PauseControl
from enkaku.agent.window.fonts import Fonts
from enkaku.agent.window.lang import Lang
from enkaku.agent.window.mainwindow import MainWindow
from enkaku.agent.window.ui import WindowUI

from .helpers import FakeSession, click, find, loop_thread, need, pump_until, type_text

pytestmark = pytest.mark.x11

WHO = Requester("Sato", "Mirai Support")


def window_ui(
    root: tk.Tk, fonts: Fonts, bridge: Bridge, session: Any, allowed: Allowed | None = None
) -> WindowUI:
    lang = Lang("en")
    main = MainWindow(root, fonts, lang, on_new_password=lambda: None, on_close=lambda: None)
    root.withdraw()
    return WindowUI(bridge, fonts, lang, main, PauseControl(), lambda: session, allowed)


def on_loop(root: tk.Tk, bridge: Bridge, fn: Any) -> None:
    """Run ``fn`` on the loop (as the runtime calls the UI) and wait for it."""
    done: list[object] = []
    bridge.ask_loop(fn, done.append)
    pump_until(root, lambda: done, what="the call on the loop")


def test_banner_shows_who_and_live_data_and_the_customer_controls_work(
    root: tk.Tk, fonts: Fonts, display: str
) -> None:
    session = FakeSession(sent=900, received=2_000)
    with loop_thread(root) as bridge:
        ui = window_ui(root, fonts, bridge, session)
        on_loop(root, bridge, lambda: ui.session_started(WHO))
        banner = need(root, "banner")
        assert "Sato (Mirai Support)" in need(banner, "who").cget("text")
        data = need(banner, "data")
        pump_until(root, lambda: "900 B sent, 2.0 kB received" in data.cget("text"))
        assert "control, screen" in need(banner, "active").cget("text")

        def grow() -> None:
            session.sent, session.received = 5_300_000, 12_000

        on_loop(root, bridge, grow)  # the screen changed: more bytes went out
        pump_until(root, lambda: "5.3 MB sent, 12.0 kB received" in data.cget("text"))

        pause = need(banner, "pause")
        click(display, pause)
        pump_until(root, lambda: session.pauses == [True], what="control paused")
        assert pause.cget("text") == "Resume control"
        pump_until(root, lambda: "control (control paused)" in need(banner, "active").cget("text"))
        click(display, pause)
        pump_until(root, lambda: session.pauses == [True, False], what="control resumed")

        type_text(display, need(banner, "chat_entry"), "thanks")
        pump_until(root, lambda: session.chats == ["thanks"], what="the chat line sent")
        on_loop(root, bridge, lambda: ui.chat(WHO, "one moment\x1b[31m", "10:02"))
        log = need(banner, "chat_log")
        pump_until(root, lambda: "Sato (Mirai Support): one moment[31m" in log.get("1.0", "end"))
        assert "You: thanks" in log.get("1.0", "end")

        click(display, need(banner, "end"))
        pump_until(root, lambda: session.ended == ["customer_ended"], what="the end")


def test_the_end_replaces_the_banner_with_a_summary(root: tk.Tk, fonts: Fonts) -> None:
    session = FakeSession(sent=3_000_000, received=40_000)
    allowed = Allowed()
    allowed.add(session, Question(WHO, ("screenshot",)))
    with loop_thread(root) as bridge:
        ui = window_ui(root, fonts, bridge, session, allowed)
        on_loop(root, bridge, lambda: ui.session_started(WHO))
        need(root, "banner")
        on_loop(root, bridge, lambda: ui.session_ended("technician_ended"))
        summary = need(root, "summary")
        text = need(summary, "text").cget("text")
        assert "the technician ended it" in text
        assert "3.0 MB sent, 40.0 kB received" in text
        assert "Duration: 0:00:" in text
        assert find(root, "banner") is None
        done = need(summary, "allowed").cget("text")
        assert "What you allowed" in done and "take a screenshot of your screen" in done


def test_a_session_that_never_started_ends_with_a_notice(root: tk.Tk, fonts: Fonts) -> None:
    with loop_thread(root) as bridge:
        ui = window_ui(root, fonts, bridge, None)
        on_loop(root, bridge, lambda: ui.session_ended("consent_denied"))
        notices = ui.main.notice_label  # the main window is withdrawn here
        pump_until(root, lambda: "the customer did not allow it" in notices.cget("text"))
        ui.lang.switch("ja")
        assert "お客様が許可しませんでした" in notices.cget("text")
        assert find(root, "summary") is None
