"""Deleting agent IDs that went unused: offline for ``agent_expiry_days`` and named in
no session record (so in no customer's history). Anyone can register IDs before
authenticating as anything, so they must not accumulate for ever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from .presence import Presence
from .store.repo import Store

log = logging.getLogger(__name__)

#: How often the server looks for expired agent IDs.
EXPIRY_INTERVAL = 3600.0


class AgentExpiry:
    """Owns the periodic clean-up task; ``run_once`` is the whole rule."""

    def __init__(self, store: Store, presence: Presence, expiry_days: float) -> None:
        self.store, self.presence = store, presence
        self.offline_for = timedelta(days=expiry_days) if expiry_days > 0 else None
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Delete the expired IDs now (the store's clock says when "now" is)."""
        if self.offline_for is None:
            return 0
        deleted = await self.store.expire_agents(
            self.offline_for, keep=await self.presence.online_ids()
        )
        if deleted:
            log.info("deleted %d agent ID(s) unused for %s", deleted, self.offline_for)
        return deleted

    def start(self, interval: float = EXPIRY_INTERVAL) -> None:
        if self.offline_for is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(interval))

    async def _loop(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a database hiccup must not end the clean-up for good
                log.warning("agent ID expiry failed; retrying later", exc_info=True)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
