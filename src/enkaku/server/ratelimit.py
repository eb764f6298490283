"""Slow-downs and lockouts after failures: logins and session requests.

Every count *leaks*: each failure adds one to its key's level, and the level drops by one
every ``decay`` seconds, so a key is never stuck and a slow trickle of failures keeps it
slowed instead of renewing a fixed lockout. Nobody clears a count but its owner's own
success (docs/operations.md#rate-limits). In-process; with several nodes each node counts
what it sees. The clock and the sleep are injected.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field


class RateLimited(Exception):
    """A request refused now; ``retry_after`` is the real wait in seconds."""

    def __init__(self, retry_after: float, code: str = "rate_limited") -> None:
        super().__init__(code)
        self.retry_after, self.code = retry_after, code

    @property
    def seconds(self) -> int:
        """The wait rounded up to whole seconds (what Retry-After and the message say)."""
        return max(1, math.ceil(self.retry_after - 1e-6))  # not 170 for 169.00000000003


@dataclass(slots=True)
class _Record:
    level: float
    at: float


class FailureDelay:
    """Leaky failure counts per key, the delay they impose and the lockout they cause.

    With ``n`` = the level rounded up, the next attempt waits ``base * 2**(n-free-1)``
    seconds once ``n > free`` (capped at ``cap``); when that delay reaches ``lockout``
    the key is locked out and the caller refuses instead of waiting.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 60.0,
        lockout: float = 30.0,
        free: int = 0,
        decay: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.base, self.cap, self.lockout, self.free, self.decay = base, cap, lockout, free, decay
        self._clock = clock
        self._max_keys = max_keys
        self._records: dict[Hashable, _Record] = {}
        #: The largest whole count whose delay is still below the lockout.
        self.allowed = next(
            n for n in range(free, free + 200) if self._delay_for(n + 1) >= lockout or n > 190
        )

    def _delay_for(self, n: int) -> float:
        if n <= self.free:
            return 0.0
        # Cap the exponent first: 2**n for a huge n would not fit in a float.
        return min(self.cap, self.base * 2.0 ** min(n - self.free - 1, 64))

    def level(self, key: Hashable) -> float:
        """The key's current (leaked) failure level."""
        rec = self._records.get(key)
        if rec is None:
            return 0.0
        level = rec.level - (self._clock() - rec.at) / self.decay
        if level <= 0:
            del self._records[key]
            return 0.0
        return level

    def failures(self, key: Hashable) -> int:
        """Recent failures for ``key``, leaked ones not counted (the level rounded up)."""
        return math.ceil(self.level(key) - 1e-9)

    def failed(self, key: Hashable) -> None:
        """Record one failure for ``key``."""
        level = self.level(key)
        if key not in self._records and len(self._records) >= self._max_keys:
            self._evict()
        self._records[key] = _Record(level + 1.0, self._clock())

    def refund(self, key: Hashable) -> None:
        """Take back one failure recorded in advance (a reserved attempt that succeeded)."""
        level = self.level(key) - 1.0
        if level <= 0:
            self._records.pop(key, None)
        else:
            self._records[key] = _Record(level, self._clock())

    def succeeded(self, key: Hashable) -> None:
        """Forget ``key``'s failures: only for the owner's own success on that key."""
        self._records.pop(key, None)

    def delay(self, key: Hashable) -> float:
        """Seconds the next attempt for ``key`` must wait (0 when none)."""
        return self._delay_for(self.failures(key))

    def locked(self, key: Hashable) -> bool:
        return self.delay(key) >= self.lockout

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` is no longer locked out (0 when it is not)."""
        return max(0.0, (self.level(key) - self.allowed) * self.decay)

    def _evict(self) -> None:
        for k in list(self._records):
            self.level(k)  # drops fully leaked records
        if len(self._records) >= self._max_keys:  # still full: drop the oldest
            oldest = min(self._records, key=lambda k: self._records[k].at)
            del self._records[oldest]


class InFlight:
    """Counts attempts in progress per key, refusing past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[Hashable, int] = {}

    def full(self, key: Hashable) -> bool:
        return self._counts.get(key, 0) >= self.limit

    def enter(self, key: Hashable) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1

    def leave(self, key: Hashable) -> None:
        n = self._counts.get(key, 0) - 1
        if n > 0:
            self._counts[key] = n
        else:
            self._counts.pop(key, None)

    def count(self, key: Hashable) -> int:
        return self._counts.get(key, 0)


class LoginLimits:
    """Logins: a lockout per (user name, address), a looser one per address, and caps on
    logins in progress per user name and per address.

    An attempt is counted (reserved) before the password is checked, so concurrent
    guesses see each other; a right password takes its reservation back.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        in_flight_per_user: int = 2,
        in_flight_per_address: int = 8,
    ) -> None:
        #: (user, address): locked after 7 wrong passwords in a row; one more per 5 min.
        self.pair = FailureDelay(base=0.5, cap=60.0, lockout=30.0, decay=300.0, clock=clock)
        #: address, over all user names: 20 free failures, then the same curve.
        self.address = FailureDelay(
            base=0.5, cap=60.0, lockout=30.0, free=20, decay=300.0, clock=clock
        )
        self.users = InFlight(in_flight_per_user)
        self.addresses = InFlight(in_flight_per_address)

    def begin(self, user: str, address: str) -> float:
        """Reserve one attempt; the delay to wait before checking it, or RateLimited."""
        pair = (user, address)
        locked = [d.retry_after(k) for d, k in ((self.pair, pair), (self.address, address))]
        if max(locked) > 0:
            raise RateLimited(max(locked))
        if self.users.full(user) or self.addresses.full(address):
            raise RateLimited(1.0, "login_in_progress")
        wait = max(self.pair.delay(pair), self.address.delay(address))
        self.pair.failed(pair)
        self.address.failed(address)
        self.users.enter(user)
        self.addresses.enter(address)
        return wait

    def finish(self, user: str, address: str, *, ok: bool) -> None:
        """End a reserved attempt; a right password takes the reservation back."""
        self.users.leave(user)
        self.addresses.leave(address)
        if ok:
            self.pair.succeeded((user, address))  # the owner's own success on its own key
            self.address.refund(address)  # the address keeps its other failures


class SessionLimits:
    """Session requests: slowed per (technician, agent ID) by wrong passwords and sessions
    the technician never joined; a per-agent ceiling (wrong passwords only) that one
    technician cannot reach alone; a per-technician ceiling over all agents."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        #: (technician id, agent ID): 1, 2, 4, 8, 16 s, then locked; one more per 5 min.
        self.pair = FailureDelay(base=1.0, cap=60.0, lockout=30.0, decay=300.0, clock=clock)
        #: agent ID: 12 free failures, then the same curve (locked at 18).
        self.agent = FailureDelay(
            base=1.0, cap=60.0, lockout=30.0, free=12, decay=300.0, clock=clock
        )
        #: technician id, over all agents: 6 free failures, then the same curve.
        self.technician = FailureDelay(
            base=1.0, cap=60.0, lockout=30.0, free=6, decay=300.0, clock=clock
        )

    def _keys(self, technician_id: int, agent_id: str) -> list[tuple[FailureDelay, Hashable]]:
        return [
            (self.pair, (technician_id, agent_id)),
            (self.agent, agent_id),
            (self.technician, technician_id),
        ]

    def check(self, technician_id: int, agent_id: str) -> float:
        """The delay before this request may proceed, or RateLimited with the real wait."""
        keys = self._keys(technician_id, agent_id)
        locked = max(d.retry_after(k) for d, k in keys)
        if locked > 0:
            raise RateLimited(locked)
        return max(d.delay(k) for d, k in keys)

    def wait(self, technician_id: int, agent_id: str) -> float:
        """The delay (or the lockout's remaining time) this technician now has for the agent."""
        try:
            return self.check(technician_id, agent_id)
        except RateLimited as exc:
            return exc.retry_after

    def wrong_password(self, technician_id: int, agent_id: str) -> None:
        """One guess spent, as the agent reported it."""
        pair = (technician_id, agent_id)
        # One technician adds to the agent's ceiling only up to her own lockout, so she
        # alone can never lock the customer's agent for everyone else.
        if self.pair.failures(pair) <= self.pair.allowed:
            self.agent.failed(agent_id)
        self.pair.failed(pair)
        self.technician.failed(technician_id)

    def no_show(self, technician_id: int, agent_id: str) -> None:
        """A session this technician requested and never joined (the agent was held)."""
        self.pair.failed((technician_id, agent_id))

    def verified(self, technician_id: int, agent_id: str) -> None:
        """The agent verified this technician's key confirmation: her count for it ends."""
        self.pair.succeeded((technician_id, agent_id))


@dataclass
class Limits:
    """Everything the server slows or refuses, with the clock and sleep it uses."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    login: LoginLimits = field(init=False)
    sessions: SessionLimits = field(init=False)

    def __post_init__(self) -> None:
        self.login = LoginLimits(self.clock)
        self.sessions = SessionLimits(self.clock)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (the injected sleep in tests)."""
        if seconds > 0:
            await self.sleep(seconds)
