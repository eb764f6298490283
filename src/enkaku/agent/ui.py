"""What the agent tells the customer. The headless UI prints; the Tk window is ui/ (later)."""

from __future__ import annotations

import json
import sys
from typing import Protocol

from enkaku.i18n import printable, reason_text, register, t

from .consent import Requester

register(
    {
        "agent_chat": ("[{at}] {who}: {text}", "[{at}] {who}: {text}"),
        "agent_traffic": (
            "Traffic of this session: {sent} sent, {received} received.",
            "このセッションの通信量: 送信 {sent}、受信 {received}。",
        ),
    }
)


class AgentUI(Protocol):
    def credentials(self, agent_id: str, password: str) -> None:
        """Show the ID and the current one-time password."""
        ...

    def notice(self, key: str, **kwargs: object) -> None:
        """Show a status message (an i18n catalog key)."""
        ...

    def session_started(self, who: Requester) -> None: ...

    def session_ended(self, reason: str) -> None: ...

    def chat(self, who: Requester, text: str, at: str) -> None:
        """Show a chat line from the technician (untrusted text)."""
        ...


class HeadlessUI:
    """--headless: one JSON line per credential change on stdout, messages on stderr."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url

    def credentials(self, agent_id: str, password: str) -> None:
        line = {
            "event": "credentials",
            "agent_id": agent_id,
            "password": password,
            "server": self.server_url,
        }
        print(json.dumps(line), flush=True)
        print(t("agent_ready", agent_id=agent_id, password=password), file=sys.stderr, flush=True)

    def notice(self, key: str, **kwargs: object) -> None:
        print(t(key, **printable_args(kwargs)), file=sys.stderr, flush=True)

    def session_started(self, who: Requester) -> None:
        print(t("session_active", who=who.label), file=sys.stderr, flush=True)

    def session_ended(self, reason: str) -> None:
        print(t("agent_session_ended", reason=reason_text(reason)), file=sys.stderr, flush=True)

    def chat(self, who: Requester, text: str, at: str) -> None:
        line = t("agent_chat", at=printable(at, 40), who=who.label, text=printable(text, 4000))
        print(line, file=sys.stderr, flush=True)


def printable_args(kwargs: dict[str, object]) -> dict[str, object]:
    """Message arguments with every string made printable (they may come from the server:
    error details, close reasons)."""
    return {k: printable(v) if isinstance(v, str) else v for k, v in kwargs.items()}
