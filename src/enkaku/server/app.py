"""The composition root of `enkaku server`: builds the aiohttp application."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from .agents import AgentGateway
from .api import admin as _admin_routes  # noqa: F401  (registers its routes on api)
from .api import auth as _auth_routes  # noqa: F401  (registers its routes on api)
from .api import reports as _report_routes  # noqa: F401  (registers its routes on api)
from .api.framework import ApiError, problem_middleware
from .api.routes import api
from .console import authenticate_cookie, setup_console
from .downloads import setup_downloads
from .expiry import AgentExpiry
from .home import home
from .preauth import PendingConnections, RegistrationLimiter
from .presence import MemoryPresence
from .ratelimit import Limits
from .relay import RelayHub, RelayObserver
from .retention import RETENTION, Retention
from .services import SERVICES, Services
from .settings import Settings
from .store.db import open_engine
from .store.models import Technician
from .store.repo import Store, dummy_password_hash
from .terms_page import terms_page

log = logging.getLogger(__name__)


async def _authenticate(request: web.Request, token: str | None) -> Technician | None:
    # The token comes parsed from api.framework.bearer_token (one parser for all routes);
    # without one, the web console's cookie (console.py checks its CSRF token).
    if token is None:
        return await authenticate_cookie(request)
    return await request.app[SERVICES].store.technician_for_token(token)


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except ApiError as exc:
        resp = exc
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("Cache-Control", "no-store")
    if request.app[SERVICES].settings.tls or request.app[SERVICES].settings.behind_proxy:
        resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if isinstance(resp, ApiError):
        raise resp
    return resp


def build_app(
    settings: Settings,
    *,
    store: Store | None = None,
    relay_observer: RelayObserver | None = None,
    clock: Callable[[], float] = time.monotonic,
    limits: Limits | None = None,
) -> web.Application:
    """The application; the database opens on startup unless ``store`` is given.

    ``clock`` (monotonic seconds) drives the per-address registration limit and the
    login and session slow-downs; ``limits`` replaces those slow-downs (tests inject a
    sleep that advances a fake clock).
    """
    app = web.Application(
        middlewares=[_security_headers, problem_middleware()], client_max_size=64 * 1024
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        own_store = store or Store(await open_engine(settings.db_url))
        # The unknown-user hash ahead of the first login, on a worker: no login pays it.
        warm = asyncio.ensure_future(asyncio.to_thread(dummy_password_hash))
        orphans = await own_store.end_orphaned_sessions(settings.node)
        if orphans:
            log.warning("closed %d session record(s) left open by a previous run", orphans)
        presence = MemoryPresence()
        own_limits = limits or Limits(clock)
        failures = own_limits.sessions
        pending = PendingConnections(settings.max_unauthenticated_per_address)
        relay = RelayHub(
            settings, own_store, presence, failures, observer=relay_observer, pending=pending
        )
        registrations = RegistrationLimiter(
            settings.agent_registration_burst,
            settings.agent_registrations_per_minute,
            clock=clock,
        )
        agents = AgentGateway(
            settings,
            own_store,
            presence,
            relay,
            failures,
            pending=pending,
            registrations=registrations,
        )
        expiry = AgentExpiry(own_store, presence, settings.agent_expiry_days)
        expiry.start()
        retention = Retention(
            own_store, settings.session_retention_days, settings.audit_retention_days
        )
        retention.start()
        app[RETENTION] = retention
        app[SERVICES] = Services(settings, own_store, presence, relay, agents, own_limits)
        yield
        await warm
        await expiry.stop()
        await retention.stop()
        await agents.drain()
        if store is None:
            await own_store.close()

    async def end_sessions(app: web.Application) -> None:
        # on_shutdown runs before aiohttp drops the connections, so every session is
        # recorded (and both legs told) as ended by the server, not as a lost peer.
        await app[SERVICES].relay.shutdown()
        await app[SERVICES].agents.shutdown()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_sessions)
    api.install(app, _authenticate, body_timeout=settings.body_timeout)

    async def agent_ws(request: web.Request) -> web.StreamResponse:
        return await request.app[SERVICES].agents.handle(request)

    async def relay_ws(request: web.Request) -> web.StreamResponse:
        return await request.app[SERVICES].relay.handle(request)

    app.router.add_get("/", home)
    setup_downloads(app, settings)
    app.router.add_get("/terms", terms_page)
    setup_console(app)
    app.router.add_get("/ws/agent", agent_ws)
    app.router.add_get("/ws/relay/{session_id}", relay_ws)
    return app


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    return ctx


def make_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    """The runner of the server's own listener, with its connection deadlines.

    aiohttp's ``keepalive_timeout`` is a hard deadline from the moment a connection
    opens (or its previous response ends) until a complete request head has arrived,
    however slowly the bytes trickle in: it is the header timeout. aiohttp closes the
    connection silently when it passes.
    """
    return web.AppRunner(
        app, access_log=None, shutdown_timeout=5, keepalive_timeout=settings.header_timeout
    )


#: Young-generation threshold and older-generation ratios for a long-running server.
GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc_for_serving() -> None:
    """Make CPython's cyclic garbage collector fit a long-running server; call once,
    after start-up, in the serving process only (never at import: tests and the CLI's
    other commands keep the interpreter's defaults).

    A full (generation 2) collection stops the event loop for a time that grows with
    every object alive. Measured with 2 vCPUs (benchmarks/README.md, Load): 0.5 s with
    3,500 idle agents, 1.24 s with 6,100, 2.1 s in a reconnect storm; with the default
    thresholds (700, 10, 10) they came often enough that one passed the agents' pong
    deadline and every agent dropped at once. Two remedies:

    - gc.freeze() moves everything start-up built (modules, SQLAlchemy metadata, the
      application) to the permanent generation, which no collection scans again;
    - higher thresholds make collections rare: almost every object a connection makes
      is freed by reference counting, so a young collection per 700 allocations is
      wasted work; with these values full collections were about one per run.

    Reference cycles are still collected; memory held by cyclic garbage just waits
    longer. The agent link's heartbeat (agent_heartbeat) is the margin for the pauses
    that remain.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Run the server until SIGINT/SIGTERM."""
    app = build_app(settings)
    runner = make_runner(app, settings)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.host, settings.port, ssl_context=ssl_context(settings), reuse_address=True
    )
    await site.start()
    log.info("enkaku server listening on %s (node %s)", settings.base_url, settings.node)
    tune_gc_for_serving()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("enkaku server stopping")
        await runner.cleanup()
