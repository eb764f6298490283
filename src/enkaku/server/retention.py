"""Retention (docs/privacy.md): session records older than ``session_retention_days``
(with their audit events), audit events older than ``audit_retention_days``, and
expired API tokens and console sign-ins are purged by a task of the server, at start
and then every hour. "Now" is the store's clock, so tests move it instead of waiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from .store.repo import Store
from .store.reports import Purged

log = logging.getLogger(__name__)

#: How often the server purges what retention no longer allows.
RETENTION_INTERVAL = 3600.0


class Retention:
    """Owns the periodic purge; ``run_once`` is the whole rule."""

    def __init__(self, store: Store, session_days: int, audit_days: int) -> None:
        self.store = store
        self.session_days, self.audit_days = session_days, audit_days
        self._task: asyncio.Task[None] | None = None
        #: What the last run purged (None before the first).
        self.last: Purged | None = None

    @property
    def enabled(self) -> bool:
        return self.session_days > 0 or self.audit_days > 0

    async def run_once(self) -> Purged:
        """Purge now: ended sessions that ended more than ``session_days`` ago with
        their events, events older than ``audit_days``; what is exactly at the limit
        or newer stays."""
        purged = await self.store.reports.purge(self.session_days, self.audit_days)
        if purged.sessions or purged.events or purged.sign_ins:
            log.info(
                "retention: purged %d session record(s), %d audit event(s), %d expired sign-in(s)",
                purged.sessions,
                purged.events,
                purged.sign_ins,
            )
        self.last = purged
        return purged

    def start(self, interval: float = RETENTION_INTERVAL) -> None:
        # Even with both settings 0: expired API tokens and console sign-ins still go.
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(interval))

    async def _loop(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a database hiccup must not end retention for good
                log.warning("retention purge failed; retrying later", exc_info=True)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


#: The server's retention task (tests read what it purged).
RETENTION: web.AppKey[Retention] = web.AppKey("retention", Retention)
