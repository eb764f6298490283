"""The consent dialog: real clicks and keys answer it, no answer is a refusal with the
countdown shown, control is paused while it is open, the first one reminds the customer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import tkinter as tk
from typing import Any

import pytest

from enkaku.agent.consent import AskCustomer, Question, Requester, Verdict
from enkaku.agent.window.bridge import Bridge
from enkaku.agent.window.consentdialog import PauseControl, TkConsentPrompt
from enkaku.agent.window.fonts import Fonts
from enkaku.agent.window.lang import Lang

from .helpers import FakeSession, click, find, loop_thread, need, pump_until, xdotool

pytestmark = pytest.mark.x11

WHO = Requester("Sato", "Mirai Support")
FILE = Question(
    WHO, ("file_to_customer",), {"name": "driver.deb", "size": 1_234_567, "dest": "/tmp/in"},
    "install the printer driver",
)  # fmt: skip


def ask(
    bridge: Bridge, prompt: TkConsentPrompt, question: Question, timeout: float = 60
) -> concurrent.futures.Future[Verdict]:
    fut = bridge.to_loop(AskCustomer(prompt, timeout).decide(question))
    assert fut is not None
    return fut


def prompt_for(
    bridge: Bridge, fonts: Fonts, session: Any, timeout: float = 60, lang: str = "en"
) -> TkConsentPrompt:
    return TkConsentPrompt(
        bridge, fonts, Lang(lang), timeout=timeout, session_of=lambda: session,
        pause=PauseControl(),
    )  # fmt: skip


def done(root: tk.Tk, fut: concurrent.futures.Future[Verdict]) -> Verdict:
    """The verdict, with Tk running meanwhile (the click is Tk's to handle)."""
    pump_until(root, fut.done, what="the answer")
    return fut.result()


def visible_dialog(root: tk.Tk, prompt: TkConsentPrompt) -> Any:
    pump_until(root, lambda: prompt.dialog is not None and not prompt.dialog.answered)
    assert prompt.dialog is not None
    return prompt.dialog


@pytest.mark.parametrize(("button", "granted"), [("allow", True), ("deny", False)])
def test_a_click_answers_and_control_is_paused_meanwhile(
    root: tk.Tk, fonts: Fonts, display: str, button: str, granted: bool
) -> None:
    root.withdraw()
    session = FakeSession()
    with loop_thread(root) as bridge:
        prompt = prompt_for(bridge, fonts, session)
        fut = ask(bridge, prompt, FILE)
        dialog = visible_dialog(root, prompt)
        top = dialog.top
        assert "driver.deb (1.2 MB) into the folder /tmp/in" in need(top, "what").cget("text")
        assert "Sato (Mirai Support)" in need(top, "who").cget("text")
        assert "install the printer driver" in need(top, "purpose").cget("text")
        assert session.pauses == [True] and session.control_paused  # paused while shown
        click(display, need(top, button))
        verdict = done(root, fut)
        assert verdict.granted is granted
        assert verdict.reason == (None if granted else "denied")
        pump_until(root, lambda: session.pauses == [True, False], what="control resumed")
        assert not top.winfo_exists()


def test_no_answer_is_a_refusal_after_the_countdown(
    root: tk.Tk, fonts: Fonts, display: str
) -> None:
    root.withdraw()
    session = FakeSession()
    with loop_thread(root) as bridge:
        prompt = prompt_for(bridge, fonts, session, timeout=3)
        fut = ask(bridge, prompt, FILE, timeout=3)
        dialog = visible_dialog(root, prompt)
        countdown = need(dialog.top, "countdown")
        shown: set[int] = set()

        def seconds() -> bool:
            if countdown.winfo_exists():
                match = re.search(r"within (\d+) s", countdown.cget("text"))
                assert match, countdown.cget("text")
                shown.add(int(match.group(1)))
            return fut.done()

        pump_until(root, seconds, what="the timeout")
        assert fut.result() == Verdict(False, "timeout")
        assert len(shown) >= 2 and max(shown) <= 3  # counted down, visibly
        pump_until(root, lambda: not dialog.top.winfo_exists(), what="the dialog gone")
        pump_until(root, lambda: session.pauses == [True, False], what="control resumed")


def test_escape_denies_and_only_the_first_question_reminds(
    root: tk.Tk, fonts: Fonts, display: str
) -> None:
    root.withdraw()
    session = FakeSession()
    with loop_thread(root) as bridge:
        prompt = prompt_for(bridge, fonts, session, lang="ja")
        first = ask(bridge, prompt, Question(WHO, ("screen", "control")))
        dialog = visible_dialog(root, prompt)
        assert "大切なデータのバックアップ" in need(dialog.top, "reminder").cget("text")
        assert "画面を見る" in need(dialog.top, "what").cget("text")
        click(display, need(dialog.top, "allow"))
        assert done(root, first).granted
        second = ask(bridge, prompt, FILE)
        dialog2 = visible_dialog(root, prompt)
        assert dialog2 is not dialog
        need(dialog2.top, "what")
        assert find(dialog2.top, "reminder") is None
        click(display, need(dialog2.top, "what"))  # focus the dialog, answer nothing
        xdotool(display, "key", "Escape")
        assert done(root, second) == Verdict(False, "denied")


def test_the_customers_own_pause_outlasts_a_dialog() -> None:
    session = FakeSession()
    pause = PauseControl()

    async def scenario() -> None:
        await pause.set_customer(session, True)
        await pause.dialog(session, True)
        await pause.dialog(session, False)
        await pause.set_customer(session, False)
        await pause.dialog(FakeSession(), True)  # a new session starts unpaused

    asyncio.run(scenario())
    assert session.pauses == [True, True, True, False]
