"""What the agent tells the customer. The headless UI prints; the Tk window is ui/ (later)."""

from __future__ import annotations

import json
import sys
from typing import Any, Protocol

from enkaku.i18n import language, printable, reason_text, register, t
from enkaku.protocol.terms import Terms

from .consent import Requester, ask_terminal

register(
    {
        "agent_chat": ("[{at}] {who}: {text}", "[{at}] {who}: {text}"),
        "agent_traffic": (
            "Traffic of this session: {sent} sent, {received} received.",
            "このセッションの通信量: 送信 {sent}、受信 {received}。",
        ),
        "agent_terms_header": (
            "Terms of use, version {version} (in force since {effective}):",
            "利用規約 第 {version} 版 ({effective} から有効):",
        ),
        "agent_terms_prompt": (
            "The ID and password are shown once you accept these terms. Accept? [y/N] ",
            "この規約に同意すると ID とパスワードが表示されます。同意しますか? [y/N] ",
        ),
        "agent_terms_no_terminal": (
            "The terms of use (version {version}) must be accepted before this computer can "
            "be supported, and there is no terminal to ask on. Read them at the server's "
            "/terms page and start the agent with --accept-terms {version}.",
            "サポートを受けるには利用規約 (第 {version} 版) への同意が必要ですが、確認できる"
            "端末がありません。サーバーの /terms ページで規約を読み、--accept-terms {version} "
            "を付けてエージェントを起動してください。",
        ),
        "agent_support_contact": (
            "Support: {name}, phone {phone}",
            "サポート窓口: {name}、電話 {phone}",
        ),
        "agent_support_contact_no_phone": ("Support: {name}", "サポート窓口: {name}"),
        "agent_terms_upcoming": (
            "Notice: new terms of use (version {version}) take effect on {effective}; you will "
            "be asked to accept them then. Read them at {server}/terms.",
            "お知らせ: 新しい利用規約 (第 {version} 版) が {effective} から有効になります。その際に"
            "同意をお願いします。{server}/terms でご覧いただけます。",
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

    async def ask_terms(self, terms: Terms) -> bool:
        """Show the terms of use in force and ask the customer to accept them; True only
        if accepted. Until then the agent shows no ID."""
        ...

    def terms_upcoming(self, terms: Terms) -> None:
        """A new version is announced: show it as a notice with its effective date."""
        ...

    def support_contact(self, name: str, phone: str | None) -> None:
        """Who the customer can call (the server's settings, already made printable)."""
        ...

    def activity(self, kind: str, info: dict[str, Any]) -> None:
        """A service's progress (services.Activity: a transfer, a screenshot), shown
        locally only."""
        ...


class HeadlessUI:
    """--headless: one JSON line per credential change on stdout, messages on stderr."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url

    def credentials(self, agent_id: str, password: str) -> None:
        print(credentials_line(agent_id, password, self.server_url), flush=True)
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

    async def ask_terms(self, terms: Terms) -> bool:
        text = terms_text(terms) + "\n" + t("agent_terms_prompt")
        answer = await ask_terminal(text)
        if answer is None:
            print(t("agent_terms_no_terminal", version=terms.version), file=sys.stderr, flush=True)
            return False
        return answer

    def terms_upcoming(self, terms: Terms) -> None:
        line = t(
            "agent_terms_upcoming",
            version=terms.version,
            effective=terms.effective.isoformat(),
            server=printable(self.server_url),
        )
        print(line, file=sys.stderr, flush=True)

    def activity(self, kind: str, info: dict[str, Any]) -> None:
        """Nothing: the terminal's audit lines say what was done, without file names."""

    def support_contact(self, name: str, phone: str | None) -> None:
        # Every welcome carries it: said again only when it changed (not per reconnect).
        if (name, phone) != getattr(self, "_support", None):
            self._support = (name, phone)
            print(support_line(name, phone), file=sys.stderr, flush=True)


def credentials_line(agent_id: str, password: str, server: str) -> str:
    """The stdout JSON line for IT staff and scripts (--headless and the window alike)."""
    line = {"event": "credentials", "agent_id": agent_id, "password": password, "server": server}
    return json.dumps(line)


def support_line(name: str, phone: str | None, lang: str | None = None) -> str:
    """The line "Support: NAME, phone PHONE" in ``lang`` (default: the customer's)."""
    if phone is None:
        return t("agent_support_contact_no_phone", lang, name=name)
    return t("agent_support_contact", lang, name=name, phone=phone)


def terms_text(terms: Terms) -> str:
    """The header and the text in the customer's language, each line made printable (the
    text comes from the server)."""
    body = "\n".join(printable(line, 4000) for line in terms.text_for(language()).splitlines())
    header = t("agent_terms_header", version=terms.version, effective=terms.effective.isoformat())
    return f"{header}\n\n{body}\n"


def printable_args(kwargs: dict[str, object]) -> dict[str, object]:
    """Message arguments with every string made printable (they may come from the server:
    error details, close reasons)."""
    return {k: printable(v) if isinstance(v, str) else v for k, v in kwargs.items()}


def support_contact(raw: object) -> tuple[str, str | None] | None:
    """The welcome's ``support`` (the company's name and phone) made printable and cut to
    the server's limits, or None when absent or malformed (then nothing is shown)."""
    if not isinstance(raw, dict):
        return None
    name, phone = raw.get("name"), raw.get("phone")
    if not isinstance(name, str) or not (name := printable(name, 80).strip()):
        return None
    if not isinstance(phone, str) or not (phone := printable(phone, 40).strip()):
        phone = None
    return name, phone
