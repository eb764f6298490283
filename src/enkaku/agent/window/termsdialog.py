"""The terms of use dialog: the text in force, its version and effective date; Accept or
Decline. Until the customer accepts, the agent offers no ID (the runtime's rule)."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from enkaku.i18n import printable, t
from enkaku.protocol.terms import Terms

from . import texts as _texts  # noqa: F401  (registers the window's messages)
from .fonts import Fonts
from .lang import Lang

#: The longest terms text shown (characters): more is cut, never drawn without bound.
MAX_TEXT = 200_000


def terms_text(terms: Terms, lang: str) -> str:
    """The text in ``lang``, else in the other language."""
    text = terms.text.get(lang) or next(iter(terms.text.values()), "")
    return text[:MAX_TEXT]


class TermsDialog:
    """Shows one version of the terms; ``reply(True)`` only on Accept."""

    def __init__(
        self, root: tk.Misc, fonts: Fonts, lang: Lang, terms: Terms, reply: Callable[[bool], None]
    ) -> None:
        self.lang, self.terms, self._reply = lang, terms, reply
        self.answered = False
        self.top = top = tk.Toplevel(root, name="terms")
        top.attributes("-topmost", True)
        top.protocol("WM_DELETE_WINDOW", lambda: self.answer(False))
        frame = ttk.Frame(top, name="body", padding=16)
        frame.pack(fill="both", expand=True)
        self.head = ttk.Label(frame, name="head", font=fonts.bold, wraplength=640)
        self.head.pack(anchor="w", pady=(0, 8))
        box = ttk.Frame(frame, name="box")
        box.pack(fill="both", expand=True)
        self.text = tk.Text(box, name="text", width=70, height=18, wrap="word", font=fonts.body)
        scroll = ttk.Scrollbar(box, name="scroll", command=self.text.yview)
        self.text.configure(yscrollcommand=scroll.set)
        self.text.pack(side="left", fill="both", expand=True)
        scroll.pack(side="right", fill="y")
        buttons = ttk.Frame(frame, name="buttons")
        buttons.pack(fill="x", pady=(10, 0))
        self.decline = ttk.Button(buttons, name="decline", command=lambda: self.answer(False))
        self.decline.pack(side="right")
        self.accept = ttk.Button(buttons, name="accept", command=lambda: self.answer(True))
        self.accept.pack(side="right", padx=(0, 8))
        self._unsubscribe = lang.subscribe(self.relabel)
        self.relabel()

    def relabel(self) -> None:
        lang, terms = self.lang.code, self.terms
        self.top.title(t("window_terms_title", lang))
        self.head.configure(
            text=t(
                "window_terms_head", lang, version=printable(terms.version, 64),
                effective=terms.effective.isoformat(),
            )
        )  # fmt: skip
        self.text.configure(state="normal")
        self.text.delete("1.0", "end")
        self.text.insert("1.0", terms_text(terms, lang))
        self.text.configure(state="disabled")
        self.accept.configure(text=t("window_terms_accept", lang))
        self.decline.configure(text=t("window_terms_decline", lang))

    def answer(self, yes: bool) -> None:
        if not self.answered:
            self._reply(yes)
            self.close()

    def close(self) -> None:
        self.answered = True
        self._unsubscribe()
        if self.top.winfo_exists():
            self.top.destroy()
