"""The window's current language, switchable while it runs ('ja' or 'en')."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("ja", "en")


class Lang:
    """The language every window of the agent shows; listeners relabel on a switch.

    Lives on the Tk thread only (the loop formats nothing: it passes message keys).
    """

    def __init__(self, code: str) -> None:
        self.code = code if code in LANGUAGES else "en"
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` after each switch; returns the unsubscribe function."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def switch(self, code: str) -> None:
        if code in LANGUAGES and code != self.code:
            self.code = code
            for fn in list(self._listeners):
                fn()


def group_id(agent_id: str) -> str:
    """``123456789`` as the customer reads it aloud: ``123 456 789``."""
    return " ".join(agent_id[i : i + 3] for i in range(0, len(agent_id), 3))


def clock_text(seconds: float) -> str:
    """A duration as ``H:MM:SS``."""
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
