"""`enkaku agent`: builds the runtime from command-line options and runs it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

from enkaku.i18n import t
from enkaku.transport.proxy import ProxyError, proxy_for
from enkaku.transport.tls import client_ssl_context

from .capture.base import ScreenCapture
from .consent import AllowAll, ConsentPolicy, DenyAll, TerminalConsent
from .identity import DeviceKey, default_config_dir
from .input.base import InputInjector
from .runtime import AgentRuntime
from .ui import HeadlessUI


def screen_backends(
    display: str | None,
) -> tuple[Callable[[], ScreenCapture] | None, Callable[[], InputInjector] | None]:
    """Capture and input factories for ``display`` (None: no screen to serve)."""
    if not display or display.lower() == "none":
        return None, None
    from .capture.x11 import X11Capture
    from .input.x11 import X11Input

    return (lambda: X11Capture(display)), (lambda: X11Input(display))


def run_agent(args: argparse.Namespace) -> int:
    if not args.headless:
        print(t("agent_no_window"), file=sys.stderr)
        return 2
    consent: ConsentPolicy
    if args.consent == "ask":
        consent = TerminalConsent(timeout=args.consent_timeout)
    else:
        consent = AllowAll() if args.consent == "allow" else DenyAll()
    key = DeviceKey.load_or_create(args.config_dir or default_config_dir())
    capture, injector = screen_backends(args.display or os.environ.get("DISPLAY"))
    try:
        ssl_ctx = client_ssl_context(args.ca_file, insecure=args.insecure)
        proxy_for(args.server)  # a proxy setting we cannot use stops here, not in a retry loop
    except (FileNotFoundError, ProxyError) as exc:
        print(f"enkaku agent: {exc}", file=sys.stderr)
        return 2
    runtime = AgentRuntime(
        args.server,
        key,
        HeadlessUI(args.server),
        consent=consent,
        capture_factory=capture,
        input_factory=injector,
        ssl_context=ssl_ctx,
    )
    return asyncio.run(_run(runtime))


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
