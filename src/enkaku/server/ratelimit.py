"""Exponential delays after repeated failures, per key (technician, agent ID, login name)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int
    last: float


class FailureDelay:
    """Counts recent failures per key and says how long the next attempt must wait.

    The delay after n failures is ``base * 2**(n-1)`` seconds, capped; failures older
    than ``forget_after`` seconds are forgotten. In-process; with several nodes each node
    slows the attempts it sees.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 60.0,
        forget_after: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.base, self.cap, self.forget_after = base, cap, forget_after
        self._clock = clock
        self._max_keys = max_keys
        self._records: dict[Hashable, _Record] = {}

    def failed(self, key: Hashable) -> None:
        """Record one failure for ``key``."""
        now = self._clock()
        rec = self._records.get(key)
        if rec is None or now - rec.last > self.forget_after:
            if len(self._records) >= self._max_keys:
                self._evict(now)
            self._records[key] = _Record(1, now)
        else:
            rec.failures += 1
            rec.last = now

    def succeeded(self, key: Hashable) -> None:
        self._records.pop(key, None)

    def delay(self, key: Hashable) -> float:
        """Seconds the next attempt for ``key`` must wait (0 when none)."""
        rec = self._records.get(key)
        if rec is None:
            return 0.0
        now = self._clock()
        if now - rec.last > self.forget_after:
            del self._records[key]
            return 0.0
        # Cap the exponent first: 2**n for a huge n would not fit in a float.
        return min(self.cap, self.base * 2.0 ** min(rec.failures - 1, 64))

    def failures(self, key: Hashable) -> int:
        """Recent failures for ``key`` (forgotten ones do not count)."""
        rec = self._records.get(key)
        if rec is None or self._clock() - rec.last > self.forget_after:
            return 0
        return rec.failures

    def _evict(self, now: float) -> None:
        stale = [k for k, r in self._records.items() if now - r.last > self.forget_after]
        for k in stale:
            del self._records[k]
        if len(self._records) >= self._max_keys:  # still full: drop the oldest
            oldest = min(self._records, key=lambda k: self._records[k].last)
            del self._records[oldest]
