"""The session banner (always on top while a session is live) and the end summary.

The banner shows who is connected, for how long, how much data the session has used in
each direction (the agent's own connection: what the customer's line carries), what is
active, and the customer's controls: pause control, end the session, chat. Figures come
from a snapshot taken on the agent's loop once a second (``Bridge.ask_loop``); Tk never
reads the session's objects itself.
"""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass
from tkinter import ttk
from typing import Protocol

from enkaku.i18n import printable, reason_text, t
from enkaku.transport.channel import ChannelStats

from ..consent import Question, Requester, human_size
from . import texts as _texts  # noqa: F401  (registers the window's messages)
from .activity import ActivityLog
from .bridge import Bridge
from .consentdialog import PauseControl
from .fonts import Fonts
from .lang import Lang, clock_text

#: Chat lines kept in the banner.
CHAT_LINES = 50
REFRESH_MS = 1000
WRAP = 380


class GrantList(Protocol):
    def in_force(self) -> list[str]: ...


class LiveSession(Protocol):
    """What the banner uses of a session (``AgentSession``)."""

    @property
    def grants(self) -> GrantList: ...

    @property
    def control_paused(self) -> bool: ...

    def traffic(self) -> ChannelStats | None: ...

    def end(self, reason: str) -> None: ...

    async def pause_control(self, paused: bool) -> None: ...

    async def send_chat(self, text: str) -> None: ...


@dataclass(frozen=True)
class Snapshot:
    """The session's figures at one moment (taken on the loop)."""

    sent: int
    received: int
    active: tuple[str, ...]
    control_paused: bool


def snapshot(session: LiveSession) -> Snapshot:
    """Read the session on the loop's thread."""
    stats = session.traffic()
    return Snapshot(
        sent=stats.sent if stats else 0,
        received=stats.received if stats else 0,
        active=tuple(session.grants.in_force()),
        control_paused=session.control_paused,
    )


def active_text(snap: Snapshot, lang: str) -> str:
    """What the technician may use now, in words."""
    names = []
    for action in snap.active:
        key = f"window_act_{action}"
        try:
            name = t(key, lang)
        except KeyError:
            name = printable(action, 32)
        if action == "control" and snap.control_paused:
            name = f"{name} ({t('window_banner_control_paused', lang)})"
        names.append(name)
    return (
        t("window_list_separator", lang).join(names) if names else t("window_banner_nothing", lang)
    )


class Banner:
    """The small always-on-top window of a live session."""

    def __init__(
        self,
        root: tk.Misc,
        fonts: Fonts,
        lang: Lang,
        bridge: Bridge,
        who: Requester,
        session: LiveSession,
        pause: PauseControl,
        clock: Callable[[], float] = time.monotonic,
        activity: ActivityLog | None = None,
    ) -> None:
        self.activity = activity if activity is not None else ActivityLog()
        self.fonts, self.lang, self.bridge = fonts, lang, bridge
        self.who, self.session, self.pause, self.clock = who, session, pause, clock
        self.started = clock()
        self.snap = Snapshot(0, 0, (), False)
        self.customer_paused = False
        self.chat_lines: list[str] = []
        self.top = top = tk.Toplevel(root, name="banner")
        top.attributes("-topmost", True)
        top.protocol("WM_DELETE_WINDOW", lambda: None)  # it goes when the session does
        top.resizable(False, False)
        frame = ttk.Frame(top, name="body", padding=10)
        frame.pack(fill="both", expand=True)
        self.title = ttk.Label(frame, name="title", font=fonts.bold)
        self.title.pack(anchor="w")
        self.who_label = ttk.Label(frame, name="who", font=fonts.body, wraplength=WRAP)
        self.who_label.pack(anchor="w")
        self.elapsed = ttk.Label(frame, name="elapsed", font=fonts.body)
        self.elapsed.pack(anchor="w")
        self.data = ttk.Label(frame, name="data", font=fonts.body, wraplength=WRAP)
        self.data.pack(anchor="w")
        self.active = ttk.Label(frame, name="active", font=fonts.body, wraplength=WRAP)
        self.active.pack(anchor="w")
        self.transfers = ttk.Label(frame, name="transfers", font=fonts.body, wraplength=WRAP)
        self.transfers.pack(anchor="w")
        buttons = ttk.Frame(frame, name="buttons")
        buttons.pack(fill="x", pady=(8, 6))
        self.pause_button = ttk.Button(buttons, name="pause", command=self.toggle_pause)
        self.pause_button.pack(side="left")
        self.end_button = ttk.Button(buttons, name="end", command=self.end)
        self.end_button.pack(side="right")
        self.chat_log = tk.Text(
            frame, name="chat_log", height=4, width=44, wrap="word", font=fonts.small,
            state="disabled", relief="flat", background="#f4f4f4",
        )  # fmt: skip
        self.chat_log.pack(fill="x")
        line = ttk.Frame(frame, name="chat")
        line.pack(fill="x", pady=(4, 0))
        self.chat_entry = ttk.Entry(line, name="chat_entry", font=fonts.small)
        self.chat_entry.pack(side="left", fill="x", expand=True)
        self.chat_entry.bind("<Return>", lambda _e: self.send_chat())
        self.chat_send = ttk.Button(line, name="chat_send", command=self.send_chat)
        self.chat_send.pack(side="left", padx=(4, 0))
        self._unsubscribe = lang.subscribe(self.relabel)
        self.relabel()
        top.update_idletasks()
        top.geometry(f"+{max(0, top.winfo_screenwidth() - top.winfo_reqwidth() - 16)}+16")
        self._timer: str | None = None
        self._refresh()

    # -- live figures -------------------------------------------------------------------

    def _refresh(self) -> None:
        self.bridge.ask_loop(lambda: snapshot(self.session), self.show)
        self._timer = self.top.after(REFRESH_MS, self._refresh)

    def show(self, snap: Snapshot) -> None:
        if self.top.winfo_exists():
            self.snap = snap
            self.relabel()

    def relabel(self) -> None:
        lang = self.lang.code
        self.top.title(t("window_banner_title", lang))
        self.title.configure(text=t("window_banner_title", lang))
        self.who_label.configure(text=t("window_banner_who", lang, who=self.who.label))
        self.elapsed.configure(
            text=t("window_banner_elapsed", lang, elapsed=clock_text(self.clock() - self.started))
        )
        self.data.configure(
            text=t(
                "window_banner_data", lang, sent=human_size(self.snap.sent, lang),
                received=human_size(self.snap.received, lang),
            )
        )  # fmt: skip
        self.active.configure(
            text=t("window_banner_active", lang, what=active_text(self.snap, lang))
        )
        self.transfers.configure(text=self.activity.live_text(lang))
        self.pause_button.configure(
            text=t("window_resume" if self.customer_paused else "window_pause", lang)
        )
        self.end_button.configure(text=t("window_end", lang))
        self.chat_send.configure(text=t("window_chat_send", lang))

    # -- the customer's controls ---------------------------------------------------------

    def toggle_pause(self) -> None:
        self.customer_paused = not self.customer_paused
        self.bridge.to_loop(self.pause.set_customer(self.session, self.customer_paused))
        self.relabel()

    def end(self) -> None:
        self.end_button.state(["disabled"])
        self.bridge.ask_loop(lambda: self.session.end("customer_ended"), lambda _r: None)

    def send_chat(self) -> None:
        text = self.chat_entry.get().strip()
        if not text:
            return
        self.chat_entry.delete(0, "end")
        self.bridge.to_loop(self.session.send_chat(text))
        self.add_chat(t("window_chat_you", self.lang.code), text, time.strftime("%H:%M"))

    def add_chat(self, who: str, text: str, at: str) -> None:
        """A chat line (untrusted text from the technician: made printable)."""
        self.chat_lines.append(f"[{printable(at, 40)}] {who}: {printable(text, 4000)}")
        del self.chat_lines[:-CHAT_LINES]
        self.chat_log.configure(state="normal")
        self.chat_log.delete("1.0", "end")
        self.chat_log.insert("end", "\n".join(self.chat_lines))
        self.chat_log.see("end")
        self.chat_log.configure(state="disabled")

    def close(self) -> float:
        """The session ended: the banner goes; returns how long it lasted (s)."""
        if self._timer is not None:
            self.top.after_cancel(self._timer)
        self._unsubscribe()
        if self.top.winfo_exists():
            self.top.destroy()
        return self.clock() - self.started


class Summary:
    """After a session: why it ended, how long it lasted, how much data it used."""

    def __init__(
        self,
        root: tk.Misc,
        fonts: Fonts,
        lang: Lang,
        reason: str,
        seconds: float,
        snap: Snapshot,
        allowed: tuple[Question, ...] = (),
        activity: ActivityLog | None = None,
    ) -> None:
        self.lang, self.reason, self.seconds, self.snap = lang, reason, seconds, snap
        self.allowed = allowed
        self.activity = activity if activity is not None else ActivityLog()
        self.top = top = tk.Toplevel(root, name="summary")
        top.attributes("-topmost", True)
        top.protocol("WM_DELETE_WINDOW", self.close)
        frame = ttk.Frame(top, name="body", padding=16)
        frame.pack(fill="both", expand=True)
        self.text = ttk.Label(frame, name="text", font=fonts.body, wraplength=420)
        self.text.pack(anchor="w")
        self.done = ttk.Label(frame, name="allowed", font=fonts.small, wraplength=420)
        self.done.pack(anchor="w", pady=(8, 0))
        self.did = ttk.Label(frame, name="done", font=fonts.small, wraplength=420)
        self.did.pack(anchor="w", pady=(8, 0))
        self.ok = ttk.Button(frame, name="ok", command=self.close)
        self.ok.pack(anchor="e", pady=(12, 0))
        self._unsubscribe = lang.subscribe(self.relabel)
        self.relabel()

    def relabel(self) -> None:
        lang = self.lang.code
        self.top.title(t("window_summary_title", lang))
        self.text.configure(
            text=t(
                "window_summary", lang, reason=reason_text(self.reason, lang),
                elapsed=clock_text(self.seconds), sent=human_size(self.snap.sent, lang),
                received=human_size(self.snap.received, lang),
            )
        )  # fmt: skip
        done = ""
        if self.allowed:
            done = "\n".join(
                [t("window_summary_allowed", lang)] + [f"• {q.what(lang)}" for q in self.allowed]
            )
        self.done.configure(text=done)
        self.did.configure(text=self.activity.done_text(lang))
        self.ok.configure(text=t("window_ok", lang))

    def close(self) -> None:
        self._unsubscribe()
        if self.top.winfo_exists():
            self.top.destroy()
