"""Consent policies: who decides whether a technician may see and control the screen.

Deny by default: the agent refuses unless a policy says yes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from enkaku.i18n import printable, t

#: No answer within this many seconds is a "no".
DEFAULT_TIMEOUT = 60.0


#: What the server's implicit-consent setting may cover: never screenshots or files.
IMPLICIT_SCOPE = frozenset({"screen", "control"})

PolicyKind = Literal["ask", "allow", "deny"]


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


class ConsentPolicy(Protocol):
    #: The customer's own setting: "ask" prompts, "allow" and "deny" decide alone.
    kind: ClassVar[PolicyKind]

    async def ask(self, who: Requester, scope: list[str]) -> bool:
        """True only if the customer allows ``scope`` for ``who`` now."""
        ...


class DenyAll:
    """The default: nothing is allowed."""

    kind: ClassVar[PolicyKind] = "deny"

    async def ask(self, who: Requester, scope: list[str]) -> bool:
        return False


class AllowAll:
    """Grants every request and says so on stderr (`--consent allow`, or the demo)."""

    kind: ClassVar[PolicyKind] = "allow"

    def __init__(self, notice: str = "consent_auto") -> None:
        self.notice = notice

    async def ask(self, who: Requester, scope: list[str]) -> bool:
        print(t(self.notice, who=who.label), file=sys.stderr, flush=True)
        return True


class ImplicitConsent:
    """The server's "the ID and password are the consent" setting, for one session.

    It only replaces the prompt of an agent whose own setting is "ask", and only for
    screen and control; anything else is still asked (or refused) by ``fallback``.
    """

    kind: ClassVar[PolicyKind] = "ask"

    def __init__(self, fallback: ConsentPolicy) -> None:
        self.fallback = fallback

    async def ask(self, who: Requester, scope: list[str]) -> bool:
        if not set(scope) <= IMPLICIT_SCOPE:
            return await self.fallback.ask(who, scope)
        print(t("consent_implicit", who=who.label), file=sys.stderr, flush=True)
        return True


def session_policy(own: ConsentPolicy, implicit_consent: bool) -> ConsentPolicy:
    """The policy for one session: the agent's own setting is the floor.

    The server's implicit consent may skip the prompt of an "ask" agent; it never
    overrides "deny" (and "allow" needs no help).
    """
    if implicit_consent and own.kind == "ask":
        return ImplicitConsent(own)
    return own


class TerminalConsent:
    """Asks on the controlling terminal; no answer within the timeout is a no."""

    kind: ClassVar[PolicyKind] = "ask"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout

    async def ask(self, who: Requester, scope: list[str]) -> bool:
        try:
            # Opening the terminal does not block; reading it goes through add_reader.
            fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        except OSError:
            print(t("consent_no_terminal"), file=sys.stderr, flush=True)
            return False
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not readable.done():
                readable.set_result(None)

        try:
            termios.tcflush(fd, termios.TCIFLUSH)  # an earlier keystroke is not an answer
            os.write(fd, t("consent_question", who=who.label).encode())
            loop.add_reader(fd, on_readable)
            try:
                await asyncio.wait_for(readable, self.timeout)
                answer = os.read(fd, 256).decode("utf-8", "replace")
            except TimeoutError:
                os.write(fd, b"\n")
                return False
            except asyncio.CancelledError:
                # The question was withdrawn (the technician left, the session ended):
                # end the prompt's line so the next message starts on its own.
                os.write(fd, ("\n" + t("consent_withdrawn") + "\n").encode())
                raise
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)
        return answer.strip().lower() in ("y", "yes", "はい", "ｙ")
