"""The transport package's exceptions."""

from __future__ import annotations


class TransportError(Exception):
    """A relay or channel failure."""


class SessionEnded(TransportError):
    """The session is over; ``reason`` is one of control.END_REASONS (or a close reason)."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
