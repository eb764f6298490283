"""The main window: ID and password, new password, status and notices, language,
closing by the window manager and by signals."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import tkinter as tk
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from enkaku.agent.window.app import AgentWindow
from tests.xdisplay import x_env

from .helpers import FakeRuntime, click, close_window, need, pump_until

pytestmark = pytest.mark.x11


def window(root: tk.Tk, lang: str = "en") -> tuple[AgentWindow, FakeRuntime]:
    made: list[FakeRuntime] = []

    def build(ui: Any, policy: Any) -> FakeRuntime:
        made.append(FakeRuntime(ui, policy))
        return made[0]

    win = AgentWindow(root, build, lang=lang)
    return win, made[0]


def test_id_in_groups_and_the_password_are_shown_and_drawn(
    root: tk.Tk, display: str, tmp_path: Path
) -> None:
    win, rt = window(root)
    win.start()
    entry = need(root, "agent_id")
    pump_until(root, lambda: entry.get() == "123 456 789", what="the ID")
    assert need(root, "password").get() == "k7dq-m2xa"
    # Drawn on the X server, not only set: the password entry's pixels hold dark text on
    # a light field.
    shot = tmp_path / "root.png"
    root.update()
    subprocess.run(["import", "-window", "root", str(shot)], env=x_env(display), check=True)
    pw = need(root, "password")
    x, y, w, h = pw.winfo_rootx(), pw.winfo_rooty(), pw.winfo_width(), pw.winfo_height()
    pixels = np.asarray(Image.open(shot).convert("L"))[y : y + h, x : x + w]
    assert pixels.min() < 60 and pixels.max() > 200
    rt.stops.clear()
    win.close()
    pump_until(root, lambda: rt.stops, what="stop")


def test_new_password_button_replaces_it_on_the_loop(root: tk.Tk, display: str) -> None:
    win, rt = window(root)
    win.start()
    pw = need(root, "password")
    pump_until(root, lambda: pw.get() == "k7dq-m2xa", what="the first password")
    click(display, need(root, "new_password"))
    pump_until(root, lambda: pw.get() == "n3wp-4ssw", what="the new password")
    assert rt.replaced_on and rt.replaced_on[0] != threading.get_ident()
    win.close()
    pump_until(root, lambda: rt.stops, what="stop")


def test_notices_and_status_in_the_chosen_language(root: tk.Tk, display: str) -> None:
    win, rt = window(root, lang="ja")
    win.start()
    rt_started = pump_until(root, rt.started.is_set, what="runtime")
    assert rt_started
    ui = win.ui

    async def notices() -> None:
        ui.notice("agent_offline_retry", server="https://s.example", detail="refused", delay=4.0)
        ui.notice("agent_wrong_attempt", attempt=1, limit=3)
        ui.notice("agent_wrong_attempt", attempt=2, limit=3)
        ui.notice("agent_password_replaced", limit=3)

    fut = win.bridge.to_loop(notices())
    assert fut is not None
    fut.result(10)
    status, notes = need(root, "status"), need(root, "notices")
    pump_until(root, lambda: "3 回目" in notes.cget("text") or "新しい" in notes.cget("text"))
    pump_until(root, lambda: "新しいワンタイムパスワード" in notes.cget("text"), what="replaced")
    text = notes.cget("text")
    assert "3 回中 1 回目" in text and "3 回中 2 回目" in text
    assert "https://s.example に接続できません" in status.cget("text")
    assert "インターネット" in need(root, "status_help").cget("text")
    # The customer switches to English with a real click: everything is relabelled.
    click(display, need(root, "lang_en"))
    pump_until(root, lambda: "attempt 2 of 3" in notes.cget("text"), what="English")
    assert "cannot be reached" in status.cget("text")
    win.fut = win.bridge.to_loop(_online(ui))  # type: ignore[attr-defined]
    pump_until(root, lambda: status.cget("text").startswith("Ready"), what="online")
    assert need(root, "status_help").cget("text") == ""
    win.close()
    pump_until(root, lambda: rt.stops, what="stop")


async def _online(ui: Any) -> None:
    ui.notice("agent_online", server="https://s.example")


def test_closing_the_window_stops_the_agent(root: tk.Tk, display: str) -> None:
    win, rt = window(root)

    def close_when_running() -> None:
        if rt.started.is_set():
            close_window(display, root)
        else:
            root.after(20, close_when_running)

    root.after(20, close_when_running)
    assert win.run() == 0  # the mainloop ended: the window is gone
    assert rt.stops == ["customer_ended"]
    assert win.bridge.join(0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_the_window_and_stops_the_agent(root: tk.Tk, sig: int) -> None:
    win, rt = window(root)

    def signal_when_running() -> None:
        if rt.started.is_set():
            os.kill(os.getpid(), sig)
        else:
            root.after(20, signal_when_running)

    before = signal.getsignal(sig)
    root.after(20, signal_when_running)
    assert win.run() == 0
    assert rt.stops == ["customer_ended"]
    assert signal.getsignal(sig) == before  # the handlers are given back


def test_a_close_right_after_the_start_is_not_lost(root: tk.Tk) -> None:
    win, rt = window(root)
    win.start()
    win.close()  # before the loop's main task has taken its first step, perhaps
    pump_until(root, lambda: win.bridge.join(0), what="the loop to end")
    assert rt.stops == ["customer_ended"]


def test_tk_draws_with_a_japanese_family(root: tk.Tk) -> None:
    from enkaku.agent.window.fonts import UI_FAMILIES, setup

    fonts = setup(root)
    assert fonts.family in UI_FAMILIES[:-1]
    assert fonts.body.actual("family") == fonts.family  # Tk found it, no substitution
    # Kana are as wide as kanji, as in a CJK font (Tk measures the glyphs it draws).
    assert fonts.body.measure("あ") == fonts.body.measure("日") > 0
