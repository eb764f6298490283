"""Consent: whether the customer allows what a technician asks, one question at a time.

Deny by default: the agent refuses unless a policy says yes. A ``Question`` names who
asks, the actions, what the customer needs to decide (file name, size, folder, ...) and
the technician's stated purpose. A policy answers it with a ``Verdict``. The customer's
own setting ("ask", "allow", "deny") is the floor; the server's implicit consent may only
skip the prompt of an "ask" agent, and only for screen and control
(``control.IMPLICIT_ACTIONS``). Asking goes through a ``ConsentPrompt``: the terminal's
here (``--headless``), the agent window's in its own module.
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol

from enkaku.i18n import language, printable, register, t
from enkaku.protocol.control import IMPLICIT_ACTIONS, RefusalReason

#: No answer within this many seconds is a "no".
DEFAULT_TIMEOUT = 60.0

#: Kept for callers of the first version; the set lives in the protocol now.
IMPLICIT_SCOPE = IMPLICIT_ACTIONS

PolicyKind = Literal["ask", "allow", "deny"]

register(
    {
        "consent_ask": (
            "{who} asks to: {what}.",
            "{who} が次の操作を求めています: {what}。",
        ),
        "consent_purpose": ("Purpose given: {purpose}", "目的: {purpose}"),
        "consent_allow_prompt": ("Allow? [y/N] ", "許可しますか? [y/N] "),
        "consent_granted_auto": (
            "Allowed automatically (--consent allow): {who} may {what}.",
            "自動的に許可しました (--consent allow): {who} に次を許可: {what}。",
        ),
        "consent_granted_demo": (
            "Allowed automatically (demo): {who} may {what}.",
            "自動的に許可しました (デモ): {who} に次を許可: {what}。",
        ),
        "consent_granted_implicit": (
            "Allowed by the support company's policy (the ID and password are the consent): "
            "{who} may {what}.",
            "サポート会社の方針 (ID とパスワードの提供が同意とみなされます) により許可しました: "
            "{who} に次を許可: {what}。",
        ),
        "consent_and": (" and ", "、"),
        "action_screen": ("see your screen", "画面を見る"),
        "action_control": ("control your mouse and keyboard", "マウスとキーボードを操作する"),
        "action_system_info": (
            "read this computer's system information (hardware, OS, storage, network, "
            "processes, services, packages, recent errors; never the contents of your files)",
            "このコンピューターのシステム情報を読む (ハードウェア、OS、ストレージ、ネットワーク、"
            "プロセス、サービス、パッケージ、最近のエラー。ファイルの中身は読みません)",
        ),
        "action_browse": (
            "list the files in your folders (names and sizes, not contents)",
            "フォルダー内のファイル一覧を見る (名前とサイズのみ、中身は見ません)",
        ),
        "action_screenshot": (
            "take a screenshot of your screen and keep it",
            "画面のスクリーンショットを撮って保存する",
        ),
        "action_file_to_customer": (
            "send you the file {name} ({size}) into the folder {dest}",
            "ファイル {name} ({size}) をフォルダー {dest} に送る",
        ),
        "action_file_to_customer_overwrite": (
            "send you the file {name} ({size}) into the folder {dest}, REPLACING the file "
            "of that name there",
            "ファイル {name} ({size}) をフォルダー {dest} に送り、同じ名前の既存ファイルを"
            "置き換える",
        ),
        "action_file_from_customer": (
            "receive a copy of your file {path} ({size})",
            "お客様のファイル {path} ({size}) のコピーを受け取る",
        ),
        "action_clipboard": (
            "read and set your clipboard text while you allow it",
            "許可している間、クリップボードの文字を読み取り・設定する",
        ),
        "action_terminal": (
            "open a command terminal on this computer as the user {user}",
            "このコンピューターでユーザー {user} としてコマンド端末を開く",
        ),
        "action_terminal_root": (
            "open a command terminal on this computer as root, the administrator, with full "
            "control of the whole computer",
            "このコンピューターで管理者 (root) としてコマンド端末を開く (コンピューター全体を"
            "操作できます)",
        ),
        "size_unknown": ("size unknown", "サイズ不明"),
    }
)


@dataclass(frozen=True)
class Requester:
    """Who asks, as the server names them (untrusted text: cleaned on construction)."""

    name: str
    company: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", printable(self.name, 128))
        object.__setattr__(self, "company", printable(self.company, 128))

    @property
    def label(self) -> str:
        """How the customer sees the technician: "Name (Company)", or the name alone."""
        return f"{self.name} ({self.company})" if self.company else self.name


def human_size(n: object, lang: str | None = None) -> str:
    """A byte count as the customer reads it: "1.2 MB" (decimal units)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return t("size_unknown", lang)
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Question:
    """One thing the customer is asked to allow."""

    who: Requester
    actions: tuple[str, ...]
    #: Per action: name, size, dest, overwrite (file_to_customer); path, size
    #: (file_from_customer); user (terminal). Untrusted: cleaned when shown.
    details: Mapping[str, str | int | bool] = field(default_factory=dict)
    purpose: str | None = None

    def what(self, lang: str | None = None) -> str:
        """The actions in words, with their details: what the customer decides on."""
        lang = lang or language()
        d = self.details
        shown = {
            "name": printable(str(d.get("name", "?")), 255),
            "dest": printable(str(d.get("dest", "?")), 1024),
            "path": printable(str(d.get("path", "?")), 1024),
            "user": printable(str(d.get("user", "?")), 64),
            "size": human_size(d.get("size"), lang),
        }
        parts = []
        for action in self.actions:
            key = f"action_{action}"
            if action == "file_to_customer" and d.get("overwrite") is True:
                key = "action_file_to_customer_overwrite"
            if action == "terminal" and d.get("user") == "root":
                key = "action_terminal_root"
            parts.append(t(key, lang, **shown))
        return t("consent_and", lang).join(parts)

    def text(self, lang: str | None = None) -> str:
        """The whole question as shown on a terminal, without the "Allow?" prompt."""
        lines = [t("consent_ask", lang, who=self.who.label, what=self.what(lang))]
        if self.purpose:
            lines.append(t("consent_purpose", lang, purpose=printable(self.purpose, 500)))
        return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    granted: bool
    #: Why not, when not granted: the customer said no, did not answer, or a policy.
    reason: RefusalReason | None = None


GRANTED = Verdict(True)


class ConsentPolicy(Protocol):
    #: The customer's own setting: "ask" prompts, "allow" and "deny" decide alone.
    kind: ClassVar[PolicyKind]

    async def decide(self, question: Question) -> Verdict:
        """Granted only if the customer allows ``question`` now."""
        ...


class ConsentPrompt(Protocol):
    """Puts a question to the customer: the terminal's, or the agent window's."""

    async def prompt(self, question: Question) -> bool:
        """True for yes, False for no; cancelled when the question is withdrawn."""
        ...


class DenyAll:
    """The default: nothing is allowed."""

    kind: ClassVar[PolicyKind] = "deny"

    async def decide(self, question: Question) -> Verdict:
        return Verdict(False, "policy")


class AllowAll:
    """Grants every request and says so on stderr (`--consent allow`, or the demo)."""

    kind: ClassVar[PolicyKind] = "allow"

    def __init__(self, notice: str = "consent_granted_auto") -> None:
        self.notice = notice

    async def decide(self, question: Question) -> Verdict:
        print(t(self.notice, who=question.who.label, what=question.what()), file=sys.stderr)
        return GRANTED


class ImplicitConsent:
    """The server's "the ID and password are the consent" setting, for one session.

    It only replaces the prompt of an agent whose own setting is "ask", and only for
    screen and control; anything else is still asked (or refused) by ``fallback``.
    """

    kind: ClassVar[PolicyKind] = "ask"

    def __init__(self, fallback: ConsentPolicy) -> None:
        self.fallback = fallback

    async def decide(self, question: Question) -> Verdict:
        if not set(question.actions) <= IMPLICIT_ACTIONS:
            return await self.fallback.decide(question)
        print(
            t("consent_granted_implicit", who=question.who.label, what=question.what()),
            file=sys.stderr,
            flush=True,
        )
        return GRANTED


def session_policy(own: ConsentPolicy, implicit_consent: bool) -> ConsentPolicy:
    """The policy for one session: the agent's own setting is the floor.

    The server's implicit consent may skip the prompt of an "ask" agent; it never
    overrides "deny" (and "allow" needs no help).
    """
    if implicit_consent and own.kind == "ask":
        return ImplicitConsent(own)
    return own


class AskCustomer:
    """Asks the customer through ``prompt``, one question at a time; no answer within
    ``timeout`` is a refusal."""

    kind: ClassVar[PolicyKind] = "ask"

    def __init__(self, prompt: ConsentPrompt, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.prompt_ui, self.timeout = prompt, timeout
        self._one_at_a_time = asyncio.Lock()

    async def decide(self, question: Question) -> Verdict:
        async with self._one_at_a_time:
            try:
                yes = await asyncio.wait_for(self.prompt_ui.prompt(question), self.timeout)
            except TimeoutError:
                return Verdict(False, "timeout")
        return GRANTED if yes else Verdict(False, "denied")


async def ask_terminal(text: str, *, withdrawn: str | None = None) -> bool | None:
    """Write ``text`` on the controlling terminal and read one answer: True for yes, False
    for anything else, None if there is no terminal. It reads through the event loop, so
    the agent keeps serving its link while the customer reads. A cancelled question (the
    technician left, the timeout passed) ends its line with ``withdrawn``."""
    try:
        # Opening the terminal does not block; reading it goes through add_reader.
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    try:
        termios.tcflush(fd, termios.TCIFLUSH)  # an earlier keystroke is not an answer
        os.write(fd, text.encode())
        loop.add_reader(fd, on_readable)
        try:
            await readable
            answer = os.read(fd, 256).decode("utf-8", "replace")
        except asyncio.CancelledError:
            if withdrawn is not None:
                os.write(fd, ("\n" + withdrawn + "\n").encode())
            raise
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
    return answer.strip().lower() in ("y", "yes", "はい", "ｙ")


class TerminalPrompt:
    """Asks on the controlling terminal (``--headless --consent ask``)."""

    async def prompt(self, question: Question) -> bool:
        text = question.text() + "\n" + t("consent_allow_prompt")
        answer = await ask_terminal(text, withdrawn=t("consent_withdrawn"))
        if answer is None:
            print(t("consent_no_terminal"), file=sys.stderr, flush=True)
            return False
        return answer


class TerminalConsent(AskCustomer):
    """``--consent ask`` under ``--headless``: the terminal prompt with its timeout."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(TerminalPrompt(), timeout)
