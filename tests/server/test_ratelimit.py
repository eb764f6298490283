"""FailureDelay: exponential per-key delays, driven by a fake monotonic clock."""

from __future__ import annotations

import pytest

from enkaku.server.ratelimit import FailureDelay


class FakeClock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kw: float) -> FailureDelay:
    return FailureDelay(clock=clock, **kw)  # type: ignore[arg-type]


def test_no_failures_no_delay(clock: FakeClock) -> None:
    fd = make(clock)
    assert fd.delay("k") == 0.0
    assert fd.failures("k") == 0


def test_exponential_growth(clock: FakeClock) -> None:
    fd = make(clock, base=0.5, cap=1000.0)
    seen = []
    for _ in range(6):
        fd.failed("k")
        seen.append(fd.delay("k"))
    assert seen == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert fd.failures("k") == 6


def test_delay_capped(clock: FakeClock) -> None:
    fd = make(clock, base=1.0, cap=60.0)
    for _ in range(6):
        fd.failed("k")
    assert fd.delay("k") == 32.0
    fd.failed("k")
    assert fd.delay("k") == 60.0
    for _ in range(20):
        fd.failed("k")
    assert fd.delay("k") == 60.0


def test_delay_capped_after_very_many_failures(clock: FakeClock) -> None:
    fd = make(clock, base=1.0, cap=60.0)
    for _ in range(1100):
        fd.failed("k")
    assert fd.delay("k") == 60.0


def test_forgotten_failures_do_not_count(clock: FakeClock) -> None:
    fd = make(clock, forget_after=10.0)
    fd.failed("k")
    clock.now += 11
    assert fd.failures("k") == 0


def test_keys_are_independent(clock: FakeClock) -> None:
    fd = make(clock)
    for _ in range(3):
        fd.failed(("user", "taro"))
    fd.failed(("addr", "192.0.2.1"))
    assert fd.delay(("user", "taro")) == 4.0
    assert fd.delay(("addr", "192.0.2.1")) == 1.0
    assert fd.delay(("user", "hanako")) == 0.0


def test_forgotten_after_quiet_period(clock: FakeClock) -> None:
    fd = make(clock, forget_after=900.0)
    for _ in range(4):
        fd.failed("k")
    clock.now += 900.0  # exactly forget_after: still remembered
    assert fd.delay("k") == 8.0
    clock.now += 0.001
    assert fd.delay("k") == 0.0
    assert fd.failures("k") == 0  # delay() dropped the record
    fd.failed("k")
    assert fd.delay("k") == 1.0  # counting starts again


def test_failure_after_quiet_period_starts_over(clock: FakeClock) -> None:
    fd = make(clock, forget_after=900.0)
    for _ in range(4):
        fd.failed("k")
    clock.now += 901.0
    fd.failed("k")  # without asking delay() first
    assert fd.failures("k") == 1
    assert fd.delay("k") == 1.0


def test_each_failure_extends_memory(clock: FakeClock) -> None:
    fd = make(clock, forget_after=900.0)
    for _ in range(3):
        fd.failed("k")
        clock.now += 600.0  # each gap is shorter than forget_after
    assert fd.delay("k") == 4.0


def test_succeeded_clears(clock: FakeClock) -> None:
    fd = make(clock)
    for _ in range(5):
        fd.failed("k")
    fd.failed("other")
    fd.succeeded("k")
    assert fd.delay("k") == 0.0
    assert fd.failures("k") == 0
    assert fd.delay("other") == 1.0
    fd.succeeded("never-seen")  # no error


def test_eviction_prefers_stale_records(clock: FakeClock) -> None:
    fd = make(clock, forget_after=100.0, max_keys=4)
    fd.failed("old-1")
    fd.failed("old-2")
    clock.now += 150.0
    fd.failed("new-1")
    fd.failed("new-2")
    fd.failed("new-3")  # full: both stale records go, no live one
    assert len(fd._records) == 3
    assert {"new-1", "new-2", "new-3"} == set(fd._records)


def test_eviction_drops_oldest_when_all_live(clock: FakeClock) -> None:
    fd = make(clock, forget_after=10_000.0, max_keys=3)
    for key in ("a", "b", "c"):
        fd.failed(key)
        clock.now += 1.0
    fd.failed("a")  # refresh a: b is now the oldest
    clock.now += 1.0
    fd.failed("d")
    assert set(fd._records) == {"a", "c", "d"}
    assert fd.failures("a") == 2


def test_bounded_under_many_keys(clock: FakeClock) -> None:
    fd = make(clock, forget_after=10_000.0, max_keys=50)
    for i in range(5000):
        fd.failed(("addr", i))
        clock.now += 0.01
        assert len(fd._records) <= 50
    assert len(fd._records) == 50
    # The newest keys survive and keep their counts.
    assert fd.failures(("addr", 4999)) == 1
    assert fd.failures(("addr", 0)) == 0


def test_repeat_failures_of_known_key_do_not_evict(clock: FakeClock) -> None:
    fd = make(clock, forget_after=10_000.0, max_keys=2)
    fd.failed("a")
    fd.failed("b")
    for _ in range(10):
        fd.failed("b")
    assert set(fd._records) == {"a", "b"}
