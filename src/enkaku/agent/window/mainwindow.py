"""The main window: the ID and the one-time password, the connection status, notices.

What the customer reads aloud is large and selectable (a read-only entry: select and
Ctrl-C copy it). Status and notices arrive as i18n keys with their arguments and are
formatted here, in the language the customer picked, so a switch relabels them too.
"""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from enkaku.i18n import reason_text, t

from ..ui import printable_args, support_line
from . import texts as _texts  # noqa: F401  (registers the window's messages)
from .fonts import Fonts
from .lang import Lang, group_id

#: How many notices the window keeps on screen, newest first.
NOTICES_SHOWN = 4
#: The Tcl variable the language radio buttons share.
LANG_VAR = "enkaku_lang"


class MainWindow:
    """The window the agent opens on start; closing it stops the agent."""

    def __init__(
        self,
        root: tk.Tk,
        fonts: Fonts,
        lang: Lang,
        *,
        on_new_password: Callable[[], None],
        on_close: Callable[[], None],
        on_enrol: Callable[[str], None] | None = None,
    ) -> None:
        self.root, self.fonts, self.lang = root, fonts, lang
        self.agent_id = ""
        self.password = ""
        self.support: tuple[str, str | None] | None = None
        self.status: tuple[str, dict[str, object]] = ("window_status_connecting", {})
        self.notices: list[tuple[str, str, dict[str, object]]] = []
        root.protocol("WM_DELETE_WINDOW", on_close)
        root.minsize(520, 0)
        frame = ttk.Frame(root, name="main", padding=16)
        frame.pack(fill="both", expand=True)
        frame.columnconfigure(1, weight=1)
        self.intro = ttk.Label(frame, name="intro", font=fonts.bold, wraplength=560)
        self.intro.grid(row=0, column=0, columnspan=3, sticky="w", pady=(0, 12))
        self.id_label = ttk.Label(frame, name="id_label", font=fonts.body)
        self.id_label.grid(row=1, column=0, sticky="w", padx=(0, 12))
        self.id_entry = ttk.Entry(
            frame, name="agent_id", font=fonts.big,
            width=12, state="readonly", justify="center",
        )  # fmt: skip
        self.id_entry.grid(row=1, column=1, columnspan=2, sticky="we", pady=4)
        self.pw_label = ttk.Label(frame, name="password_label", font=fonts.body)
        self.pw_label.grid(row=2, column=0, sticky="w", padx=(0, 12))
        self.pw_entry = ttk.Entry(
            frame, name="password", font=fonts.big,
            width=12, state="readonly", justify="center",
        )  # fmt: skip
        self.pw_entry.grid(row=2, column=1, sticky="we", pady=4)
        self.new_pw = ttk.Button(frame, name="new_password", command=on_new_password)
        self.new_pw.grid(row=2, column=2, sticky="e", padx=(8, 0))
        # Who to call: the support company's name and phone (the server's settings).
        self.support_label = ttk.Label(frame, name="support", font=fonts.bold, wraplength=560)
        self.support_label.grid(row=3, column=0, columnspan=3, sticky="w", pady=(8, 0))
        self.status_label = ttk.Label(frame, name="status", font=fonts.bold, wraplength=560)
        self.status_label.grid(row=4, column=0, columnspan=3, sticky="w", pady=(12, 0))
        self.help_label = ttk.Label(frame, name="status_help", font=fonts.small, wraplength=560)
        self.help_label.grid(row=5, column=0, columnspan=3, sticky="w")
        # The enrolment code, shown only when the server asks for one (or refused one).
        self.on_enrol = on_enrol
        self.enrol_state: str | None = None  # None (hidden), "asking" or "checking"
        self.enrol_frame = ttk.Frame(frame, name="enrolment")
        self.enrol_frame.grid(row=6, column=0, columnspan=3, sticky="we", pady=(8, 0))
        self.enrol_frame.columnconfigure(1, weight=1)
        self.enrol_label = ttk.Label(self.enrol_frame, name="enrol_label", font=fonts.body)
        self.enrol_label.grid(row=0, column=0, sticky="w", padx=(0, 12))
        self.enrol_entry = ttk.Entry(self.enrol_frame, name="enrol_code", font=fonts.body)
        self.enrol_entry.grid(row=0, column=1, sticky="we")
        self.enrol_entry.bind("<Return>", lambda _e: self._submit_enrolment())
        self.enrol_button = ttk.Button(
            self.enrol_frame, name="enrol_send", command=self._submit_enrolment
        )
        self.enrol_button.grid(row=0, column=2, sticky="e", padx=(8, 0))
        self.enrol_help = ttk.Label(
            self.enrol_frame, name="enrol_help", font=fonts.small, wraplength=560
        )
        self.enrol_help.grid(row=1, column=0, columnspan=3, sticky="w")
        self.enrol_frame.grid_remove()
        self.notice_label = ttk.Label(
            frame, name="notices", font=fonts.small, wraplength=560, foreground="#8a4b00"
        )
        self.notice_label.grid(row=7, column=0, columnspan=3, sticky="w", pady=(8, 0))
        langs = ttk.Frame(frame, name="langs")
        langs.grid(row=8, column=0, columnspan=3, sticky="e", pady=(12, 0))
        self.lang_caption = ttk.Label(langs, name="lang_caption", font=fonts.small)
        self.lang_caption.pack(side="left", padx=(0, 6))
        # A Tcl variable by name, not a tk.StringVar: a Python Variable's finalizer calls
        # Tk, and a garbage collection on the loop's thread would run it there.
        root.setvar(LANG_VAR, lang.code)
        for code, label in (("ja", "日本語"), ("en", "English")):
            ttk.Radiobutton(
                langs, name=f"lang_{code}", text=label, value=code,
                variable=LANG_VAR,  # type: ignore[arg-type]  # Tk takes a variable name
                command=lambda: self.lang.switch(str(self.root.getvar(LANG_VAR))),
            ).pack(side="left")  # fmt: skip
        lang.subscribe(self.relabel)
        self.relabel()

    # -- what the agent tells it (on the Tk thread, through the bridge) ----------------

    def show_credentials(self, agent_id: str, password: str) -> None:
        self.agent_id, self.password = agent_id, password
        _show(self.id_entry, group_id(agent_id))
        _show(self.pw_entry, password)

    def show_support(self, name: str, phone: str | None) -> None:
        self.support = (name, phone)
        self.relabel()

    def show_status(self, key: str, **kwargs: object) -> None:
        self.status = (key, printable_args(kwargs))
        self.relabel()

    def add_notice(self, key: str, **kwargs: object) -> None:
        self.notices.insert(0, (time.strftime("%H:%M"), key, printable_args(kwargs)))
        del self.notices[NOTICES_SHOWN:]
        self.relabel()

    def ask_enrolment(self, show: bool) -> None:
        """Show the code field (the server asks for a code, or refused the one sent), or
        hide it (the machine is linked)."""
        if show:
            self.enrol_state = "asking"
            self.enrol_frame.grid()
            self.enrol_entry.state(["!disabled"])
            self.enrol_button.state(["!disabled"])
        else:
            self.enrol_state = None
            self.enrol_frame.grid_remove()
        self.relabel()

    def enrolment_refused_now(self) -> None:
        """The code could not be sent (a session is running): the field stays."""
        self.enrol_state = "busy"
        self.enrol_entry.state(["!disabled"])
        self.enrol_button.state(["!disabled"])
        self.relabel()

    def _submit_enrolment(self) -> None:
        code = self.enrol_entry.get().strip()
        if not code or self.on_enrol is None or self.enrol_state == "checking":
            return
        self.enrol_state = "checking"
        self.enrol_entry.state(["disabled"])
        self.enrol_button.state(["disabled"])
        self.relabel()
        self.on_enrol(code)

    # -- drawing -------------------------------------------------------------------------

    def relabel(self) -> None:
        """Every text in the current language."""
        lang = self.lang.code
        if self.root.getvar(LANG_VAR) != lang:
            self.root.setvar(LANG_VAR, lang)
        self.root.title(t("window_title", lang))
        self.intro.configure(text=t("window_intro", lang))
        self.id_label.configure(text=t("window_id", lang))
        self.pw_label.configure(text=t("window_password", lang))
        self.new_pw.configure(text=t("window_new_password", lang))
        self.lang_caption.configure(text=t("window_language", lang))
        self.enrol_label.configure(text=t("window_enrol_code", lang))
        self.enrol_button.configure(text=t("window_enrol_send", lang))
        self.enrol_help.configure(
            text=t(f"window_enrol_{self.enrol_state}", lang) if self.enrol_state else ""
        )
        self.support_label.configure(
            text=support_line(*self.support, lang) if self.support is not None else ""
        )
        key, kwargs = self.status
        self.status_label.configure(
            text=t(key, lang, **kwargs),
            foreground="#b00020" if key == "window_status_offline" else "#1b5e20",
        )
        self.help_label.configure(
            text=t("window_offline_help", lang) if key == "window_status_offline" else ""
        )
        self.notice_label.configure(
            text="\n".join(f"{at}  {_notice(k, lang, kw)}" for at, k, kw in self.notices)
        )
        if not self.agent_id:
            _show(self.id_entry, "…")
            _show(self.pw_entry, "…")


def _notice(key: str, lang: str, kwargs: dict[str, object]) -> str:
    """A notice in ``lang``; a ``reason`` argument is a session end reason code, put in
    words in that language too."""
    if isinstance(kwargs.get("reason"), str):
        kwargs = kwargs | {"reason": reason_text(str(kwargs["reason"]), lang)}
    return t(key, lang, **kwargs)


def _show(entry: ttk.Entry, text: str) -> None:
    """Set a read-only entry's text (it stays selectable and copyable)."""
    entry.state(["!readonly"])
    entry.delete(0, "end")
    entry.insert(0, text)
    entry.state(["readonly"])
