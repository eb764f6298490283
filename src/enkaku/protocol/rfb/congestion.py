"""Link throughput and congestion from RFB Fence round trips (pure; clock injected).

The server appends a Fence request ("ping") after each FramebufferUpdate; the viewer
answers it once it has read (for BlockBefore-honouring viewers: processed) everything
before it. The answer therefore tells us, for the byte position the ping was sent at:

* the round-trip time: its minimum is the base RTT (the wire without queues). A ping
  right after an update also waits for the update to cross the link, so the server
  sends one *before* an update too when nothing is in flight: its answer is the bare
  round trip;
* that every byte up to that position has arrived: bytes in flight = sent - acknowledged;
* the delivery rate: bytes acknowledged over the last few answers, divided by the time
  they took (never reaching back past the moment the link went busy after an idle
  spell). Such a sample is at most the link's rate (idle time only lowers it) except
  for jitter in when answers arrive, which the span of several answers keeps small; the
  estimate is the largest recent sample, as TCP BBR does, and old samples age out, so a
  link that slows down is followed.

``Congestion.congested`` says whether more than a window is in flight: the window is
what the link drains in the target delay (twice the base RTT, at least 100 ms), never
below ``MIN_WINDOW``. Answers come only after whole updates: one update bigger than the
window was alone on the link, and the next waited for its answer, so the link stood idle
a round trip per update (2 Mbit/s with 40 ms each way: 189 of 250 KB/s used,
``benchmarks/slowlink.py --delay``). So the next one may also go when the *estimate* of
what is still to drain is within two base round trips of the link: what was unanswered
at the last answer (or at the start of the busy spell), less what the link drains at its
estimated rate since (TigerVNC's ``Congestion::getInFlight`` interpolates the same way),
never past the next ping still waiting for its answer. The estimate starts counting at
the answer, when the link has already drained about a round trip more: it errs towards
more in flight. Below ``ESTIMATE_MIN_RTT`` of base round trip the estimate is not used:
a big update waits for its answer, as before. Holding updates back
while congested lowers the frame rate on a slow link by itself, and keeps the queue (the
lag behind the screen) short: an update waits on our side, where the next one replaces
it, rather than in a network buffer.

``QualityGovernor`` lowers the JPEG quality a step at a time while the link is the
bottleneck: an update was held back, or a ping came back more than ``LAG_BUDGET`` later
than the bare round trip (one update alone took that long to cross the link). It raises
it a step at a time, never above what the client asked for, once the link has been
quiet and half idle for a while (hysteresis: down quickly, up slowly).
``refresh_pixels`` sizes the parts of a lossless refresh to about ``REFRESH_SLICE`` of
the link. TigerVNC (common/rfb/Congestion.cxx) does the window part with TCP Vegas on
the same fences; it keeps the picture quality fixed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: Never hold updates back while less than this is in flight (a LAN is never limited:
#: its delivery rate makes the window far larger anyway).
MIN_WINDOW = 16 * 1024
#: The queueing we accept: the window is what the link drains in this long (or in two
#: base round trips, if that is longer).
TARGET_DELAY = 0.1
#: The in-flight estimate releases updates only on a base round trip at least this long.
#: Below it the round trip an update waits for its answer costs little, and measured at
#: 2 Mbit/s without delay the estimate made a key's echo slower (0.46 s p50 against
#: 0.28 s; not understood yet: docs/performance.md, "Slow link with delay").
ESTIMATE_MIN_RTT = 0.05
#: Delivery-rate samples kept; the estimate is their maximum.
RATE_SAMPLES = 12
#: A sample spans this many answers (fewer just after the link went busy).
SAMPLE_SPAN = 4
#: Samples smaller than this say little (a cursor move, a fence alone).
MIN_SAMPLE_BYTES = 2048
#: A lossless refresh goes out in parts of about this many seconds of the link each, so
#: changes (a key's echo) never wait behind a whole screen of lossless pixels.
REFRESH_SLICE = 0.25
#: What a lossless pixel of a photo costs in Tight (bytes; text costs far less).
LOSSLESS_BYTES_PER_PIXEL = 2.0
#: Quality steps below the client's own choice (JPEG quality 0..100), coarsest last.
QUALITY_STEPS = (80, 65, 50, 40, 30, 20)
#: A step down at most this often (or every two round trips, if that is longer).
DOWN_INTERVAL = 0.3
#: An update whose ping came back this much later than the base round trip lagged
#: behind the screen: a step down, as for one held back (two beyond 4x this).
LAG_BUDGET = 0.2
#: A step up once the link has carried no held-back update for this long...
UP_INTERVAL = 1.0
#: ...and was used at most this fraction of its estimated rate meanwhile.
UP_UTILISATION = 0.5


@dataclass(frozen=True, slots=True)
class _Ping:
    seq: int
    sent_at: float
    position: int  # bytes queued to the client before this ping


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """A read-only snapshot for logs and tests (no content)."""

    quality: int | None  # the JPEG quality used now (None: lossless only)
    client_quality: int | None  # what the client asked for
    rate: float | None  # estimated bytes/s, None before the first measurement
    rtt: float | None  # last round trip, seconds
    base_rtt: float | None  # smallest round trip seen
    in_flight: int  # bytes sent and not acknowledged yet
    window: int  # bytes that may be in flight before updates are held back
    congested: bool


class Congestion:
    """Bytes in flight, round-trip times and delivery rate from ping/pong pairs."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._pings: deque[_Ping] = deque()
        self._next_seq = 0
        self.position = 0  # bytes queued to the client so far
        self.acked = 0  # position of the last answered ping
        #: (time, acked) at the start of the busy spell and at the answers since: the
        #: reference points of rate samples.
        self._points: deque[tuple[float, int]] = deque(maxlen=SAMPLE_SPAN + 1)
        self._samples: deque[float] = deque(maxlen=RATE_SAMPLES)
        self.rtt: float | None = None
        self.base_rtt: float | None = None
        #: Since when the bytes after ``acked`` have been draining (the last answer, or
        #: the start of the busy spell): the start of the in-flight estimate.
        self._draining_since = clock()

    # -- what the server tells us ------------------------------------------------------

    def sent(self, nbytes: int) -> None:
        """``nbytes`` more were queued to the client."""
        if nbytes <= 0:
            return
        if self.position == self.acked:  # the link was idle: a busy spell starts
            self._points.clear()
            self._points.append((self._clock(), self.acked))
            self._draining_since = self._clock()
        self.position += nbytes

    def ping(self, size: int = 0) -> int:
        """A ping of ``size`` bytes goes out now, after everything sent so far; returns
        its sequence number. Its answer acknowledges the ping's own bytes too, so a link
        that carried nothing after it is idle again (the next bytes start a busy spell:
        the delivery rate never counts the time between updates)."""
        seq = self._next_seq
        self._next_seq = (seq + 1) & 0xFFFFFFFF
        self.sent(size)
        self._pings.append(_Ping(seq, self._clock(), self.position))
        return seq

    def pong(self, seq: int) -> bool:
        """The answer to ping ``seq`` arrived; False if it is not one we are waiting for."""
        if not any(p.seq == seq for p in self._pings):
            return False
        while True:  # answers come in order: earlier unanswered pings are answered too
            ping = self._pings.popleft()
            if ping.seq == seq:
                break
        now = self._clock()
        rtt = max(now - ping.sent_at, 1e-6)
        self.rtt = rtt
        self.base_rtt = rtt if self.base_rtt is None else min(self.base_rtt, rtt)
        self.acked = max(self.acked, ping.position)
        self._draining_since = now
        if self._points:
            since, acked_then = self._points[0]
            delivered = self.acked - acked_then
            if delivered >= MIN_SAMPLE_BYTES and now > since:
                self._samples.append(delivered / (now - since))
        self._points.append((now, self.acked))
        return True

    # -- what it asks --------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Pings not answered yet."""
        return len(self._pings)

    @property
    def queue_delay(self) -> float:
        """How much longer than the bare round trip the last answer took (0: none yet)."""
        if self.rtt is None or self.base_rtt is None:
            return 0.0
        return self.rtt - self.base_rtt

    @property
    def in_flight(self) -> int:
        return self.position - self.acked

    @property
    def in_flight_estimate(self) -> int:
        """``in_flight`` less what the link has drained at its estimated rate since the
        last answer (or the start of the busy spell), never past the next ping waiting
        for its answer (idle time before later bytes is not drained); ``in_flight``
        without an estimate."""
        rate = self.rate
        if rate is None or self.position == self.acked:
            return self.in_flight
        drained = int(rate * max(0.0, self._clock() - self._draining_since))
        upto = next((p.position for p in self._pings if p.position > self.acked), self.position)
        return self.position - max(self.acked, min(self.acked + drained, upto))

    @property
    def room_in(self) -> float | None:
        """Seconds until the estimate leaves room for an update (0: room now), or None if
        only an answer can (no rate yet, or the next unanswered ping is reached first)."""
        if not self.congested:
            return 0.0
        rate, budget = self.rate, self._round_trips
        if rate is None or budget is None:
            return None
        upto = next((p.position for p in self._pings if p.position > self.acked), self.position)
        if self.position - upto > budget:  # past that ping: its answer is needed
            return None
        return (self.in_flight_estimate - budget) / rate

    @property
    def rate(self) -> float | None:
        """Estimated link rate in bytes/s (None before the first sample)."""
        return max(self._samples) if self._samples else None

    @property
    def target_delay(self) -> float:
        return max(TARGET_DELAY, 2 * self.base_rtt) if self.base_rtt is not None else TARGET_DELAY

    @property
    def window(self) -> int:
        rate = self.rate
        if rate is None:
            return MIN_WINDOW
        return max(MIN_WINDOW, int(rate * self.target_delay))

    @property
    def refresh_pixels(self) -> int | None:
        """How many pixels one lossless refresh update should cover at most (None: no
        estimate yet; the owner then refreshes everything at once, as without fences)."""
        rate = self.rate
        if rate is None:
            return None
        slice_bytes = rate * max(REFRESH_SLICE, self.target_delay)
        return max(64 * 64, int(slice_bytes / LOSSLESS_BYTES_PER_PIXEL))

    @property
    def congested(self) -> bool:
        """More is in flight than the link drains in the target delay, and the estimate
        says more than two round trips of the link are still to drain."""
        if self.in_flight <= self.window:
            return False
        budget = self._round_trips
        return budget is None or self.in_flight_estimate > budget

    @property
    def _round_trips(self) -> float | None:
        """What the link drains in two base round trips: how much of the in-flight
        estimate may remain when the next update goes (None: no estimate yet, or a
        round trip shorter than ``ESTIMATE_MIN_RTT``: updates wait for answers)."""
        rate = self.rate
        if rate is None or self.base_rtt is None or self.base_rtt < ESTIMATE_MIN_RTT:
            return None
        return rate * 2 * self.base_rtt


class QualityGovernor:
    """The JPEG quality to use now, given the client's choice and the link's state."""

    def __init__(self, congestion: Congestion, clock: Callable[[], float]) -> None:
        self._link = congestion
        self._clock = clock
        self._step = 0  # 0: the client's quality; n: QUALITY_STEPS below it, n-th
        self._blocked_at: float | None = None  # last time an update was held back
        self._changed_at = clock()  # last step either way
        self._position_at_change = 0

    def held_back(self, steps: int = 1) -> None:
        """An update was held back because the link is full: step down if it is time."""
        now = self._clock()
        self._blocked_at = now
        interval = DOWN_INTERVAL
        if self._link.base_rtt is not None:
            interval = max(interval, 2 * self._link.base_rtt)
        if now - self._changed_at >= interval:
            self._change(steps, now)

    def answered(self) -> None:
        """A ping was answered: an update that lagged behind the screen is like one held
        back (a single update bigger than the window is never held back itself)."""
        delay = self._link.queue_delay
        if delay > LAG_BUDGET:
            self.held_back(2 if delay > 4 * LAG_BUDGET else 1)

    def quality(self, client: int | None) -> int | None:
        """The quality for an update now: ``client`` (None stays None) or a step below."""
        if client is None:
            return None
        steps = [s for s in QUALITY_STEPS if s < client - 5]
        self._step = min(self._step, len(steps))
        self._maybe_step_up(len(steps))
        return client if self._step == 0 else steps[self._step - 1]

    @property
    def degraded(self) -> bool:
        return self._step > 0

    def _maybe_step_up(self, lowest: int) -> None:
        if self._step == 0:
            return
        now = self._clock()
        quiet_since = max(self._changed_at, self._blocked_at or self._changed_at)
        steps = int((now - quiet_since) / UP_INTERVAL)  # one per quiet interval
        if steps < 1:
            return
        rate = self._link.rate
        used = (self._link.position - self._position_at_change) / (now - self._changed_at)
        if rate is None or used <= UP_UTILISATION * rate:
            self._change(-steps, quiet_since + steps * UP_INTERVAL, lowest)

    def _change(self, delta: int, now: float, lowest: int = len(QUALITY_STEPS)) -> None:
        self._step = max(0, min(lowest, self._step + delta))
        self._changed_at = now
        self._position_at_change = self._link.position
