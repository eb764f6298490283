"""Consent policies: who decides whether a technician may see and control the screen.

Deny by default: the agent refuses unless a policy says yes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
from dataclasses import dataclass
from typing import Protocol

from enkaku.i18n import t

#: No answer within this many seconds is a "no".
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Requester:
    name: str
    company: str

    @property
    def label(self) -> str:
        """How the customer sees the technician: "Name (Company)", or the name alone."""
        return f"{self.name} ({self.company})" if self.company else self.name


class ConsentPolicy(Protocol):
    async def ask(self, who: Requester, scope: list[str]) -> bool:
        """True only if the customer allows ``scope`` for ``who`` now."""
        ...


class DenyAll:
    """The default: nothing is allowed."""

    async def ask(self, who: Requester, scope: list[str]) -> bool:
        return False


class AllowAll:
    """Grants every request and says so on stderr (demo, or implicit-consent policy)."""

    async def ask(self, who: Requester, scope: list[str]) -> bool:
        print(t("consent_auto", who=who.label), file=sys.stderr, flush=True)
        return True


class TerminalConsent:
    """Asks on the controlling terminal; no answer within the timeout is a no."""

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
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)
        return answer.strip().lower() in ("y", "yes", "はい", "ｙ")
