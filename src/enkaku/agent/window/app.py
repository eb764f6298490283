"""``enkaku agent`` with a window: Tk on the main thread, the runtime on a worker loop.

Closing the main window stops the agent (``runtime.stop("customer_ended")``, which ends a
live session with that reason) and the program exits once the loop has finished;
SIGINT and SIGTERM close the window the same way. If Tk cannot start (no tkinter, no
display) ``WindowUnavailable`` is raised before anything else has started, and the caller
falls back to the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from enkaku.i18n import t

from ..consent import AllowAll, AskCustomer, ConsentPolicy, DenyAll
from . import texts  # noqa: F401  (registers the window's messages)

if TYPE_CHECKING:
    import tkinter as tk

    from .banner import LiveSession
    from .ui import WindowUI

#: How long the agent may take to stop once asked (its session ends within this).
STOP_GRACE = 10.0


class WindowUnavailable(Exception):
    """Tk cannot start here (no tkinter module, no display): ``key`` names the message
    (window/texts.py), ``detail`` is Tk's own words, if any."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(detail or key)
        self.key, self.detail = key, detail

    def message(self, lang: str | None = None) -> str:
        return t(self.key, lang, detail=self.detail)


class Runtime(Protocol):
    """What the window needs of ``AgentRuntime``."""

    session: Any
    server_url: str

    async def run(self) -> None: ...

    async def stop(self, reason: str = "customer_ended") -> None: ...

    def replace_password(self) -> None: ...

    def enrol_with(self, code: str) -> bool: ...


def open_root(display: str | None = None) -> tk.Tk:
    """The Tk root window, or ``WindowUnavailable`` saying why not."""
    try:
        import tkinter as tk
    except ImportError as exc:
        raise WindowUnavailable("window_no_tk") from exc
    try:
        return tk.Tk(screenName=display, className="enkaku")
    except tk.TclError as exc:
        raise WindowUnavailable("window_no_display", str(exc)) from exc


class AgentWindow:
    """Everything the window needs, built on the Tk thread; ``run()`` is the mainloop."""

    def __init__(
        self,
        root: tk.Tk,
        build: Callable[[WindowUI, ConsentPolicy], Runtime],
        *,
        lang: str,
        consent: str = "ask",
        timeout: float = 60.0,
    ) -> None:
        from tkinter import ttk

        from .bridge import Bridge
        from .consentdialog import Allowed, PauseControl, TkConsentPrompt
        from .fonts import setup
        from .lang import Lang
        from .mainwindow import MainWindow
        from .ui import WindowUI

        self.root = root
        with contextlib.suppress(Exception):
            ttk.Style(root).theme_use("clam")
        self.fonts = setup(root)
        self.lang = Lang(lang)
        self.bridge = Bridge(root)
        self.pause = PauseControl()
        self.allowed = Allowed()
        self.closing = False
        self.error: BaseException | None = None
        self.main = MainWindow(
            root, self.fonts, self.lang,
            on_new_password=self.new_password, on_close=self.close, on_enrol=self.enrol,
        )  # fmt: skip
        self.ui = WindowUI(
            self.bridge, self.fonts, self.lang, self.main, self.pause, self._session,
            self.allowed,
        )  # fmt: skip
        self.prompt = TkConsentPrompt(
            self.bridge, self.fonts, self.lang, timeout=timeout,
            session_of=self._session, pause=self.pause, allowed=self.allowed,
        )  # fmt: skip
        policy: ConsentPolicy
        if consent == "ask":
            policy = AskCustomer(self.prompt, timeout)
        else:
            policy = AllowAll() if consent == "allow" else DenyAll()
        self.runtime = build(self.ui, policy)
        self.ui.server_url = self.runtime.server_url
        # Made here, not in _main: a close may arrive before _main's first step runs.
        self._stop = asyncio.Event()

    def _session(self) -> LiveSession | None:
        """The live session (read on the loop)."""
        session: LiveSession | None = self.runtime.session
        return session

    async def _main(self) -> None:
        run = asyncio.create_task(self.runtime.run())
        waiter = asyncio.create_task(self._stop.wait())
        await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        await self.runtime.stop("customer_ended")
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(run, STOP_GRACE)

    async def _request_stop(self) -> None:
        self._stop.set()

    def new_password(self) -> None:
        """The "New password" button: drawn on the loop, shown through credentials()."""
        self.bridge.ask_loop(self.runtime.replace_password, lambda _r: None)

    def enrol(self, code: str) -> None:
        """The enrolment code the customer typed: a new hello carries it (on the loop);
        the welcome's answer comes back as a notice."""

        def sent(ok: bool) -> None:
            if not ok:
                self.main.enrolment_refused_now()

        self.bridge.ask_loop(lambda: self.runtime.enrol_with(code), sent)

    def close(self) -> None:
        """The window was closed (or a signal came): stop the agent, then exit."""
        if self.closing:
            return
        self.closing = True
        self.main.show_status("window_status_stopped")
        if self.bridge.to_loop(self._request_stop()) is None:
            self._destroy()

    def _loop_done(self, error: BaseException | None) -> None:
        self.error = error
        if self.closing:
            self._destroy()
        else:  # stopped by itself (another agent took over): say so, wait for the close
            self.main.show_status("window_status_stopped")
            self.closing = True
            self.root.protocol("WM_DELETE_WINDOW", self._destroy)

    def _destroy(self) -> None:
        self.bridge.close()
        self.root.destroy()

    def start(self) -> None:
        """Start the agent's loop thread (``run`` does; tests drive Tk themselves)."""
        self.bridge.start(self._main, self._loop_done)

    def run(self) -> int:
        """Show the window until it is closed; 0 when the agent stopped cleanly."""

        def on_signal(_sig: int, _frame: FrameType | None) -> None:
            self.bridge.to_tk(self.close)  # a SimpleQueue put: safe in a signal handler

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            self.root.mainloop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.bridge.join(STOP_GRACE)
        return 0 if self.error is None else 1


def run_window(
    build: Callable[[WindowUI, ConsentPolicy], Runtime],
    *,
    lang: str,
    consent: str = "ask",
    timeout: float = 60.0,
    display: str | None = None,
) -> int:
    """Open the agent window and run the agent until the window closes."""
    root = open_root(display)
    return AgentWindow(root, build, lang=lang, consent=consent, timeout=timeout).run()
