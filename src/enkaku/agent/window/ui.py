"""``WindowUI``: the agent's ``AgentUI`` shown in Tk windows.

The runtime calls these methods on its loop (worker thread); each one only hands a call
to the Tk thread through the bridge, or (``ask_terms``) awaits the customer's answer from
it. Nothing here touches Tk directly.
"""

from __future__ import annotations

import contextlib
import tkinter as tk
from collections.abc import Callable
from typing import Any

from enkaku.protocol.terms import Terms

from ..consent import Question, Requester
from ..ui import credentials_line
from .activity import ActivityLog
from .banner import Banner, LiveSession, Snapshot, Summary, snapshot
from .bridge import Bridge
from .consentdialog import Allowed, PauseControl
from .fonts import Fonts
from .lang import Lang
from .mainwindow import MainWindow
from .termsdialog import TermsDialog

#: Runtime notices that set the connection status rather than add a notice line.
STATUS_NOTICES = {
    "agent_online": "window_status_online",
    "agent_offline_retry": "window_status_offline",
}


#: Enrolment outcomes that show the code field, with the notice the window gives.
ENROLMENT_ASKS = {
    "agent_enrolment_required": "window_enrolment_required",
    "agent_enrolment_invalid": "agent_enrolment_invalid",
    "agent_enrolment_expired": "agent_enrolment_expired",
    "agent_enrolment_used_up": "agent_enrolment_used_up",
}


class WindowUI:
    """Implements ``enkaku.agent.ui.AgentUI`` for the window."""

    def __init__(
        self,
        bridge: Bridge,
        fonts: Fonts,
        lang: Lang,
        main: MainWindow,
        pause: PauseControl,
        session_of: Callable[[], LiveSession | None],
        allowed: Allowed | None = None,
    ) -> None:
        self.bridge, self.fonts, self.lang, self.main = bridge, fonts, lang, main
        self.pause, self.session_of = pause, session_of
        self.allowed = allowed if allowed is not None else Allowed()
        self._session: LiveSession | None = None  # on the loop: the session shown
        self.server_url = ""  # for the stdout credentials line (set once the runtime exists)
        self.banner: Banner | None = None  # on Tk
        self.summary: Summary | None = None  # on Tk
        self.log = ActivityLog()  # on Tk: the current (or last) session's activity

    @property
    def root(self) -> tk.Misc:
        return self.bridge.root

    # -- AgentUI (called on the loop) ----------------------------------------------------

    def credentials(self, agent_id: str, password: str) -> None:
        # The same stdout line as --headless, for IT staff and scripts; a launcher that
        # gave the program no usable stdout loses only that line.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            print(credentials_line(agent_id, password, self.server_url), flush=True)
        self.bridge.to_tk(self.main.show_credentials, agent_id, password)

    def notice(self, key: str, **kwargs: object) -> None:
        if key in ENROLMENT_ASKS:  # the code is entered in the window, not as --enrol
            self.bridge.to_tk(self.main.ask_enrolment, True)
            key = ENROLMENT_ASKS[key]
        elif key in ("agent_enrolment_linked", "agent_enrolment_already_linked_typed"):
            self.bridge.to_tk(self.main.ask_enrolment, False)
        if key in STATUS_NOTICES:
            self.bridge.to_tk(lambda: self.main.show_status(STATUS_NOTICES[key], **kwargs))
        elif key != "agent_traffic":  # the end summary shows the traffic
            self.bridge.to_tk(lambda: self.main.add_notice(key, **kwargs))

    def session_started(self, who: Requester) -> None:
        session = self.session_of()
        if session is None:
            return
        self._session = session
        self.bridge.to_tk(self._open_banner, who, session)

    def session_ended(self, reason: str) -> None:
        session, self._session = self._session, None
        snap = snapshot(session) if session is not None else Snapshot(0, 0, (), False)
        self.bridge.to_tk(self._close_banner, reason, snap, self.allowed.of(session))

    def chat(self, who: Requester, text: str, at: str) -> None:
        self.bridge.to_tk(self._chat, who.label, text, at)

    async def ask_terms(self, terms: Terms) -> bool:
        def show(reply: Callable[[bool], None]) -> Callable[[], None]:
            return TermsDialog(self.root, self.fonts, self.lang, terms, reply).close

        return await self.bridge.ask_tk(show)

    def terms_upcoming(self, terms: Terms) -> None:
        self.bridge.to_tk(
            lambda: self.main.add_notice(
                "window_terms_upcoming", version=terms.version,
                effective=terms.effective.isoformat(),
            )
        )  # fmt: skip

    def support_contact(self, name: str, phone: str | None) -> None:
        self.bridge.to_tk(self.main.show_support, name, phone)

    def activity(self, kind: str, info: dict[str, Any]) -> None:
        self.bridge.to_tk(self._activity, kind, dict(info))

    # -- on Tk ----------------------------------------------------------------------------

    def _open_banner(self, who: Requester, session: LiveSession) -> None:
        if self.banner is not None:
            self.banner.close()
        if self.summary is not None:
            self.summary.close()
            self.summary = None
        self.log = ActivityLog()
        self.banner = Banner(
            self.root, self.fonts, self.lang, self.bridge, who, session, self.pause,
            activity=self.log,
        )  # fmt: skip

    def _activity(self, kind: str, info: dict[str, Any]) -> None:
        self.log.add(kind, info)
        if self.banner is not None:
            self.banner.relabel()

    def _close_banner(self, reason: str, snap: Snapshot, allowed: tuple[Question, ...]) -> None:
        if self.banner is None:  # it never started (refused, no answer): a notice says so
            self.main.add_notice("agent_session_ended", reason=reason)
            return
        seconds = self.banner.close()
        self.banner = None
        self.summary = Summary(
            self.root, self.fonts, self.lang, reason, seconds, snap, allowed, self.log
        )

    def _chat(self, who: str, text: str, at: str) -> None:
        if self.banner is not None:
            self.banner.add_chat(who, text, at)
