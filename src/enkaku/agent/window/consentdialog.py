"""The consent dialog: who asks, what exactly, why; Allow or Deny before a countdown ends.

``TkConsentPrompt`` is the window's ``ConsentPrompt``; ``AskCustomer`` (consent.py) wraps
it with the timeout and one-question-at-a-time, so the countdown shown is that policy's
timeout, passed in. No answer is a refusal: the policy cancels the prompt when time is
up, which closes the dialog. While any dialog is open the technician's control is paused,
because XTEST input is indistinguishable from the customer's mouse: otherwise the
technician could click Allow themselves.
"""

from __future__ import annotations

import math
import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import Protocol

from enkaku.i18n import printable, t

from ..consent import Question
from . import texts as _texts  # noqa: F401  (registers the window's messages)
from .bridge import Bridge
from .fonts import Fonts
from .lang import Lang

WRAP = 480


class Pausable(Protocol):
    """What pausing needs of a session (``AgentSession``)."""

    async def pause_control(self, paused: bool) -> None: ...


class PauseControl:
    """Control is paused while the customer asked for it or any consent dialog is open.

    Lives on the loop: both the banner's toggle and the dialogs go through it, so closing
    a dialog never resumes control the customer paused themselves.
    """

    def __init__(self) -> None:
        self.session: Pausable | None = None
        self.customer = False
        self.dialogs = 0

    @property
    def paused(self) -> bool:
        return self.customer or self.dialogs > 0

    def _for(self, session: Pausable | None) -> None:
        if session is not self.session:  # a new session starts unpaused, no dialogs
            self.session, self.customer, self.dialogs = session, False, 0

    async def set_customer(self, session: Pausable | None, paused: bool) -> None:
        """The customer's own "Pause control" toggle."""
        self._for(session)
        self.customer = paused
        await self._apply()

    async def dialog(self, session: Pausable | None, opened: bool) -> None:
        """A consent dialog opened (True) or closed (False)."""
        self._for(session)
        self.dialogs = self.dialogs + 1 if opened else max(0, self.dialogs - 1)
        await self._apply()

    async def _apply(self) -> None:
        if self.session is not None:
            await self.session.pause_control(self.paused)


class Allowed:
    """What the customer allowed in the current session, for the end summary (on the
    loop; a new session starts an empty list)."""

    def __init__(self) -> None:
        self.session: object | None = None
        self.questions: list[Question] = []

    def add(self, session: object | None, question: Question) -> None:
        if session is not self.session:
            self.session, self.questions = session, []
        self.questions.append(question)

    def of(self, session: object | None) -> tuple[Question, ...]:
        """The questions allowed in ``session`` (none if it asked nothing here)."""
        return tuple(self.questions) if session is self.session else ()


class TkConsentPrompt:
    """Asks in a dialog on the Tk thread; runs on the loop (``ConsentPrompt``)."""

    def __init__(
        self,
        bridge: Bridge,
        fonts: Fonts,
        lang: Lang,
        *,
        timeout: float,
        session_of: Callable[[], Pausable | None],
        pause: PauseControl,
        allowed: Allowed | None = None,
    ) -> None:
        self.bridge, self.fonts, self.lang = bridge, fonts, lang
        self.timeout, self.session_of, self.pause = timeout, session_of, pause
        self.allowed = allowed if allowed is not None else Allowed()
        self._reminded: Pausable | None = None
        self.dialog: ConsentDialog | None = None  # the open one, on the Tk thread

    async def prompt(self, question: Question) -> bool:
        session = self.session_of()
        remind = session is None or session is not self._reminded
        self._reminded = session
        await self.pause.dialog(session, True)
        try:
            yes: bool = await self.bridge.ask_tk(lambda reply: self._open(question, remind, reply))
            if yes:
                self.allowed.add(session, question)
            return yes
        finally:
            await self.pause.dialog(session, False)

    def _open(
        self, question: Question, remind: bool, reply: Callable[[bool], None]
    ) -> Callable[[], None]:
        dialog = ConsentDialog(
            self.bridge.root, self.fonts, self.lang, question, reply,
            timeout=self.timeout, remind=remind,
        )  # fmt: skip
        self.dialog = dialog
        return dialog.close


class ConsentDialog:
    """One question on screen, above every other window."""

    _count = 0

    def __init__(
        self,
        root: tk.Misc,
        fonts: Fonts,
        lang: Lang,
        question: Question,
        reply: Callable[[bool], None],
        *,
        timeout: float,
        remind: bool,
    ) -> None:
        ConsentDialog._count += 1
        self.question, self.lang, self._reply = question, lang, reply
        self.deadline = time.monotonic() + timeout
        self.answered = False
        self.top = top = tk.Toplevel(root, name=f"consent{ConsentDialog._count}")
        top.attributes("-topmost", True)
        top.protocol("WM_DELETE_WINDOW", lambda: self.answer(False))
        top.bind("<Escape>", lambda _e: self.answer(False))
        frame = ttk.Frame(top, name="body", padding=16)
        frame.pack(fill="both", expand=True)
        self.who = ttk.Label(frame, name="who", font=fonts.bold, wraplength=WRAP)
        self.who.pack(anchor="w")
        self.what = ttk.Label(frame, name="what", font=fonts.bold, wraplength=WRAP,
                              foreground="#0d47a1")  # fmt: skip
        self.what.pack(anchor="w", pady=(6, 6))
        self.purpose = ttk.Label(frame, name="purpose", font=fonts.body, wraplength=WRAP)
        self.purpose.pack(anchor="w")
        self.reminder: ttk.Label | None = None
        if remind:
            self.reminder = ttk.Label(
                frame, name="reminder", font=fonts.body, wraplength=WRAP,
                foreground="#8a4b00",
            )  # fmt: skip
            self.reminder.pack(anchor="w", pady=(10, 0))
        self.paused = ttk.Label(frame, name="paused", font=fonts.small, wraplength=WRAP)
        self.paused.pack(anchor="w", pady=(10, 0))
        self.countdown = ttk.Label(frame, name="countdown", font=fonts.bold, wraplength=WRAP)
        self.countdown.pack(anchor="w", pady=(4, 10))
        buttons = ttk.Frame(frame, name="buttons")
        buttons.pack(fill="x")
        self.deny = ttk.Button(buttons, name="deny", command=lambda: self.answer(False))
        self.deny.pack(side="right")
        self.allow = ttk.Button(buttons, name="allow", command=lambda: self.answer(True))
        self.allow.pack(side="right", padx=(0, 8))
        self._unsubscribe = lang.subscribe(self.relabel)
        self.relabel()
        # Keyboard focus on the dialog itself, not on a button: a key pressed meanwhile
        # (Return, space) answers nothing.
        top.lift()
        top.focus_force()
        self._tick()

    def relabel(self) -> None:
        lang, q = self.lang.code, self.question
        self.top.title(t("window_consent_title", lang))
        self.who.configure(text=t("window_consent_who", lang, who=q.who.label))
        self.what.configure(text=q.what(lang))
        purpose = t("consent_purpose", lang, purpose=printable(q.purpose, 500)) if q.purpose else ""
        self.purpose.configure(text=purpose)
        if self.reminder is not None:
            self.reminder.configure(text=t("window_consent_reminder", lang))
        self.paused.configure(text=t("window_consent_paused", lang))
        self.allow.configure(text=t("window_consent_allow", lang))
        self.deny.configure(text=t("window_consent_deny", lang))
        self._show_countdown()

    def seconds_left(self) -> int:
        return max(0, math.ceil(self.deadline - time.monotonic()))

    def _show_countdown(self) -> None:
        self.countdown.configure(
            text=t("window_consent_countdown", self.lang.code, seconds=self.seconds_left())
        )

    def _tick(self) -> None:
        if self.answered:
            return
        self._show_countdown()
        if self.seconds_left() == 0:
            # The policy's timeout cancels the prompt (a refusal "timeout"); until then
            # nothing can be allowed any more.
            self.allow.state(["disabled"])
            return
        self.top.after(250, self._tick)

    def answer(self, yes: bool) -> None:
        if self.answered:
            return
        if yes and self.seconds_left() == 0:
            return
        self._reply(yes)
        self.close()

    def close(self) -> None:
        """Withdrawn, timed out or answered: the dialog goes."""
        self.answered = True
        self._unsubscribe()
        if self.top.winfo_exists():
            self.top.destroy()
