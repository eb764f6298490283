"""What a client may cost the server before it has authenticated (docs/operations.md,
"Limits before authentication").

- ``PendingConnections``: how many WebSockets one address holds open that have not yet
  authenticated (agent links before a verified ``hello``, relay legs before their
  token). Over the cap the upgrade is refused with HTTP 429.
- ``RegistrationLimiter``: a token bucket per address for *new* agent IDs (a device key
  the server has never seen). Reconnects of known keys never take a token.

Both are in-process and IO-free; the clock is injected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from .api.framework import ApiError
from .ratelimit import InFlight


def peer_address(request: web.Request, behind_proxy: bool) -> str:
    """The client's address; behind a trusted proxy, the entry the proxy appended last.

    A client may send its own ``X-Forwarded-For`` lines; the proxy appends to the last
    one, so only the last entry of the last line is the proxy's.
    """
    if behind_proxy:
        lines = request.headers.getall("X-Forwarded-For", [])
        if lines:
            last = lines[-1].split(",")[-1].strip()
            if last:
                return last[:64]
    return request.remote or "?"


def too_many_connections(retry_after: float) -> ApiError:
    """HTTP 429 for an upgrade over the per-address cap of unauthenticated sockets."""
    return ApiError(
        429,
        "too_many_connections",
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


class PendingConnections(InFlight):
    """Counts unauthenticated connections per address against a cap (``limit``)."""

    def acquire(self, address: str) -> bool:
        """Take a slot for ``address``; False when it already holds the maximum."""
        if self.full(address):
            return False
        self.enter(address)
        return True

    def release(self, address: str) -> None:
        """Give back a slot taken by ``acquire``."""
        self.leave(address)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RegistrationLimiter:
    """A token bucket per address: ``burst`` new agent IDs at once, then
    ``per_minute`` a minute. Sized so that an office of a few hundred machines behind
    one NAT address can register all of them on its first day."""

    def __init__(
        self,
        burst: int,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.burst, self.rate = float(burst), per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def _level(self, bucket: _Bucket, now: float) -> float:
        return min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)

    def allow(self, address: str) -> bool:
        """Take one token for ``address``; False when its bucket is empty."""
        now = self._clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            bucket = self._buckets[address] = _Bucket(self.burst, now)
        level = self._level(bucket, now)
        if level < 1.0:
            return False
        bucket.tokens, bucket.at = level - 1.0, now
        return True

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may register one more agent (0 when it may now)."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return 0.0
        level = self._level(bucket, self._clock())
        if level >= 1.0:
            return 0.0
        return (1.0 - level) / self.rate if self.rate > 0 else float("inf")

    def _prune(self, now: float) -> None:
        # A full bucket is the same as none: forget those first, then the oldest.
        for key in [k for k, b in self._buckets.items() if self._level(b, now) >= self.burst]:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            del self._buckets[min(self._buckets, key=lambda k: self._buckets[k].at)]
