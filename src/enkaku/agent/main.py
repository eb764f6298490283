"""`enkaku agent`: builds the runtime from command-line options and runs it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from enkaku.i18n import language, register, t
from enkaku.transport.proxy import ProxyError, proxy_for
from enkaku.transport.tls import client_ssl_context

from .backends import NoBackend, select_backend
from .capture.base import ScreenCapture
from .clipboard import Clipboard
from .consent import AllowAll, ConsentPolicy, DenyAll, TerminalConsent
from .identity import DeviceKey, default_config_dir
from .input.base import InputInjector
from .runtime import AgentRuntime
from .services import FileSettings
from .ui import AgentUI, HeadlessUI

register(
    {
        "agent_bad_keep_partial": (
            "enkaku agent: --keep-partial takes hours, more than 0 and at most 8760 (a year).",
            "enkaku agent: --keep-partial には 0 より大きく 8760 (1 年) 以下の時間数を指定して"
            "ください。",
        )
    }
)


def screen_backends(
    display: str | None,
    backend: str = "auto",
    config_dir: Path | None = None,
) -> tuple[
    Callable[[], ScreenCapture] | None,
    Callable[[], InputInjector] | None,
    Callable[[], Clipboard] | None,
]:
    """Capture, input and clipboard factories for the session (None: no screen to
    serve); see backends.py. Raises ``NoBackend`` when none can serve it."""
    return select_backend(backend, display, config_dir=config_dir)


def run_agent(args: argparse.Namespace) -> int:
    if getattr(args, "lang", None):
        os.environ["ENKAKU_LANG"] = args.lang  # before any thread reads the environment
    consent: ConsentPolicy
    if args.consent == "ask":
        consent = TerminalConsent(timeout=args.consent_timeout)
    else:
        consent = AllowAll() if args.consent == "allow" else DenyAll()
    key = DeviceKey.load_or_create(args.config_dir or default_config_dir())
    try:
        capture, injector, clipboard = screen_backends(
            args.display, getattr(args, "backend", None) or "auto", args.config_dir
        )
    except NoBackend as exc:
        for lang in ("en", "ja"):
            print(exc.message(lang), file=sys.stderr)
        return 2
    try:
        ssl_ctx = client_ssl_context(args.ca_file, insecure=args.insecure)
        proxy_for(args.server)  # a proxy setting we cannot use stops here, not in a retry loop
    except (FileNotFoundError, ProxyError) as exc:
        print(f"enkaku agent: {exc}", file=sys.stderr)
        return 2
    if not 0 < args.keep_partial <= 24 * 365:
        print(t("agent_bad_keep_partial"), file=sys.stderr)
        return 2
    files = FileSettings(
        incoming=(args.incoming or FileSettings().incoming).expanduser().absolute(),
        partial_ttl=args.keep_partial * 3600,
    )

    def build(ui: AgentUI, policy: ConsentPolicy) -> AgentRuntime:
        return AgentRuntime(
            args.server,
            key,
            ui,
            consent=policy,
            capture_factory=capture,
            input_factory=injector,
            clipboard_factory=clipboard,
            ssl_context=ssl_ctx,
            files=files,
            accept_terms=args.accept_terms,
            enrol=getattr(args, "enrol", None),
        )

    if not args.headless:
        code = _run_window(args, build)
        if code is not None:
            return code
    return asyncio.run(_run(build(HeadlessUI(args.server), consent)))


def _run_window(
    args: argparse.Namespace, build: Callable[[AgentUI, ConsentPolicy], AgentRuntime]
) -> int | None:
    """The agent with its window; None (after saying why, in both languages) when Tk
    cannot start here, and the terminal takes over."""
    from .window import texts  # noqa: F401  (registers window_fallback)
    from .window.app import WindowUnavailable, run_window

    display = args.display if args.display and args.display.lower() != "none" else None
    try:
        return run_window(
            build,
            lang=language(),
            consent=args.consent,
            timeout=args.consent_timeout,
            display=display,
        )
    except WindowUnavailable as exc:
        for lang in ("en", "ja"):
            print(t("window_fallback", lang, detail=exc.message(lang)), file=sys.stderr, flush=True)
        return None


async def _run(runtime: AgentRuntime) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    main = asyncio.create_task(runtime.run())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({main, waiter}, return_when=asyncio.FIRST_COMPLETED)
    await runtime.stop("customer_ended")
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(main, 10)
    waiter.cancel()
    return 0
