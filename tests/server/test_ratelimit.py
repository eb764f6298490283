"""Slow-downs and lockouts (server/ratelimit.py), driven by a fake monotonic clock."""

from __future__ import annotations

import pytest

from enkaku.server.ratelimit import (
    FailureDelay,
    InFlight,
    Limits,
    LoginLimits,
    RateLimited,
    SessionLimits,
)

from .conftest import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kw: float) -> FailureDelay:
    return FailureDelay(clock=clock, **kw)  # type: ignore[arg-type]


# -- FailureDelay ------------------------------------------------------------------------


def test_no_failures_no_delay(clock: FakeClock) -> None:
    fd = make(clock)
    assert fd.delay("k") == 0.0
    assert fd.failures("k") == 0
    assert fd.retry_after("k") == 0.0
    assert not fd.locked("k")


def test_exponential_growth(clock: FakeClock) -> None:
    fd = make(clock, base=0.5, cap=1000.0, lockout=1000.0)
    seen = []
    for _ in range(6):
        fd.failed("k")
        seen.append(fd.delay("k"))
    assert seen == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert fd.failures("k") == 6


def test_free_failures_cost_nothing_then_the_same_curve(clock: FakeClock) -> None:
    fd = make(clock, base=1.0, free=3)
    seen = []
    for _ in range(6):
        fd.failed("k")
        seen.append(fd.delay("k"))
    assert seen == [0.0, 0.0, 0.0, 1.0, 2.0, 4.0]


def test_delay_capped_after_very_many_failures(clock: FakeClock) -> None:
    fd = make(clock, base=1.0, cap=60.0)
    for _ in range(1100):
        fd.failed("k")
    assert fd.delay("k") == 60.0


def test_lockout_after_the_delay_reaches_it(clock: FakeClock) -> None:
    fd = make(clock, base=1.0, lockout=30.0)
    assert fd.allowed == 5  # 1, 2, 4, 8, 16 s; the 6th failure means 32 s: locked
    for _ in range(5):
        fd.failed("k")
    assert not fd.locked("k") and fd.retry_after("k") == 0.0
    fd.failed("k")
    assert fd.locked("k")


def test_counts_leak_one_per_decay_period(clock: FakeClock) -> None:
    fd = make(clock, base=1.0, decay=100.0)
    for _ in range(4):
        fd.failed("k")
    assert fd.delay("k") == 8.0
    clock.now += 100.0
    assert fd.failures("k") == 3 and fd.delay("k") == 4.0
    clock.now += 50.0  # half a period: the level is 2.5, counted as 3
    assert fd.failures("k") == 3
    clock.now += 250.0
    assert fd.failures("k") == 0 and fd.delay("k") == 0.0
    assert "k" not in fd._records  # a fully leaked record is dropped


def test_a_trickle_of_failures_does_not_renew_a_lockout_forever(clock: FakeClock) -> None:
    """One failure per decay period keeps the level where it is instead of growing."""
    fd = make(clock, base=1.0, lockout=30.0, decay=300.0)
    for _ in range(6):
        fd.failed("k")
    assert fd.locked("k")
    clock.now += fd.retry_after("k")
    assert not fd.locked("k")  # the lockout ends when the caller was told it would
    for _ in range(10):
        fd.failed("k")  # the one attempt allowed...
        assert fd.locked("k")
        clock.now += fd.retry_after("k")  # ...then exactly one decay period
        assert not fd.locked("k")
    assert fd.failures("k") == 5


def test_retry_after_is_the_real_remaining_lockout(clock: FakeClock) -> None:
    fd = make(clock, base=0.5, lockout=30.0, decay=900.0)
    for _ in range(7):
        fd.failed("k")
    assert fd.retry_after("k") == pytest.approx(900.0)
    clock.now += 210.0  # 3½ minutes into a 15-minute lockout
    assert fd.retry_after("k") == pytest.approx(690.0)
    assert fd.delay("k") == 32.0  # what the old message printed instead


def test_keys_are_independent(clock: FakeClock) -> None:
    fd = make(clock)
    for _ in range(3):
        fd.failed(("taro", "192.0.2.1"))
    fd.failed("192.0.2.1")
    assert fd.delay(("taro", "192.0.2.1")) == 4.0
    assert fd.delay("192.0.2.1") == 1.0
    assert fd.delay(("hanako", "192.0.2.1")) == 0.0


def test_refund_takes_back_one_reserved_failure(clock: FakeClock) -> None:
    fd = make(clock)
    fd.failed("k")
    fd.failed("k")
    fd.refund("k")
    assert fd.failures("k") == 1
    fd.refund("k")
    fd.refund("k")  # never below zero
    assert fd.failures("k") == 0 and "k" not in fd._records


def test_succeeded_clears_only_its_key(clock: FakeClock) -> None:
    fd = make(clock)
    for _ in range(5):
        fd.failed("k")
    fd.failed("other")
    fd.succeeded("k")
    assert fd.delay("k") == 0.0
    assert fd.delay("other") == 1.0
    fd.succeeded("never-seen")  # no error


def test_eviction_prefers_leaked_records(clock: FakeClock) -> None:
    fd = make(clock, decay=100.0, max_keys=4)
    fd.failed("old-1")
    fd.failed("old-2")
    clock.now += 150.0
    fd.failed("new-1")
    fd.failed("new-2")
    fd.failed("new-3")  # full: both leaked records go, no live one
    assert set(fd._records) == {"new-1", "new-2", "new-3"}


def test_eviction_drops_oldest_when_all_live(clock: FakeClock) -> None:
    fd = make(clock, decay=10_000.0, max_keys=3)
    for key in ("a", "b", "c"):
        fd.failed(key)
        clock.now += 1.0
    fd.failed("a")  # refresh a: b is now the oldest
    clock.now += 1.0
    fd.failed("d")
    assert set(fd._records) == {"a", "c", "d"}
    assert fd.failures("a") == 2


def test_bounded_under_many_keys(clock: FakeClock) -> None:
    fd = make(clock, decay=10_000.0, max_keys=50)
    for i in range(5000):
        fd.failed(("addr", i))
        clock.now += 0.01
        assert len(fd._records) <= 50
    assert fd.failures(("addr", 4999)) == 1
    assert fd.failures(("addr", 0)) == 0


def test_in_flight_counts_and_caps() -> None:
    inf = InFlight(2)
    inf.enter("a")
    inf.enter("a")
    assert inf.full("a") and not inf.full("b")
    inf.leave("a")
    assert not inf.full("a") and inf.count("a") == 1
    inf.leave("a")
    inf.leave("a")  # never negative
    assert inf.count("a") == 0


# -- logins -------------------------------------------------------------------------------


def test_login_attempts_are_reserved_before_the_check(clock: FakeClock) -> None:
    lim = LoginLimits(clock, in_flight_per_user=100, in_flight_per_address=100)
    waits = [lim.begin("taro", "192.0.2.1") for _ in range(7)]  # none finished yet
    assert waits == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    with pytest.raises(RateLimited) as exc:
        lim.begin("taro", "192.0.2.1")
    assert exc.value.code == "rate_limited" and exc.value.retry_after == pytest.approx(300.0)


def test_logins_in_progress_are_capped_per_user_and_per_address(clock: FakeClock) -> None:
    lim = LoginLimits(clock, in_flight_per_user=2, in_flight_per_address=3)
    lim.begin("taro", "192.0.2.1")
    lim.begin("taro", "192.0.2.2")
    with pytest.raises(RateLimited) as exc:
        lim.begin("taro", "192.0.2.3")
    assert exc.value.code == "login_in_progress" and exc.value.seconds == 1
    lim.begin("hanako", "192.0.2.1")
    lim.begin("jiro", "192.0.2.1")
    with pytest.raises(RateLimited):
        lim.begin("saburo", "192.0.2.1")  # the address is full
    lim.finish("taro", "192.0.2.1", ok=False)
    lim.begin("saburo", "192.0.2.1")


def test_a_right_password_takes_its_reservation_back(clock: FakeClock) -> None:
    lim = LoginLimits(clock)
    for _ in range(3):
        lim.begin("taro", "192.0.2.1")
        lim.finish("taro", "192.0.2.1", ok=False)
    lim.begin("taro", "192.0.2.1")
    lim.finish("taro", "192.0.2.1", ok=True)
    assert lim.pair.failures(("taro", "192.0.2.1")) == 0  # her own key, her own success
    assert lim.address.failures("192.0.2.1") == 3  # the address keeps its failures


def test_a_colleagues_failures_elsewhere_do_not_lock_a_user_out(clock: FakeClock) -> None:
    lim = LoginLimits(clock)
    for _ in range(7):
        lim.begin("taro", "198.51.100.66")
        lim.finish("taro", "198.51.100.66", ok=False)
    with pytest.raises(RateLimited):
        lim.begin("taro", "198.51.100.66")
    assert lim.begin("taro", "192.0.2.1") == 0.0


def test_the_address_ceiling_spans_user_names(clock: FakeClock) -> None:
    lim = LoginLimits(clock)
    for i in range(27):
        lim.begin(f"user{i}", "198.51.100.66")
        lim.finish(f"user{i}", "198.51.100.66", ok=False)
    with pytest.raises(RateLimited):
        lim.begin("someone-else", "198.51.100.66")


# -- session requests -------------------------------------------------------------------


def test_one_technician_cannot_lock_an_agent_for_everyone(clock: FakeClock) -> None:
    lim = SessionLimits(clock)
    for _ in range(40):  # far more reports than she can cause while locked out
        lim.wrong_password(1, "123456789")
    with pytest.raises(RateLimited):
        lim.check(1, "123456789")
    assert lim.check(2, "123456789") == 0.0
    assert lim.agent.failures("123456789") <= lim.pair.allowed + 1


def test_several_technicians_reach_the_agent_ceiling(clock: FakeClock) -> None:
    lim = SessionLimits(clock)
    for tech in (1, 2, 3):
        for _ in range(6):
            lim.wrong_password(tech, "123456789")
    with pytest.raises(RateLimited):
        lim.check(4, "123456789")


def test_success_clears_only_that_technician_for_that_agent(clock: FakeClock) -> None:
    lim = SessionLimits(clock)
    lim.wrong_password(1, "111111111")
    for _ in range(3):
        lim.wrong_password(1, "333333333")
    lim.wrong_password(2, "222222222")
    lim.verified(1, "222222222")  # her own agent: clears nothing of hers elsewhere
    assert lim.wait(1, "111111111") == 1.0
    assert lim.wait(1, "333333333") == 4.0
    assert lim.technician.failures(1) == 4
    assert lim.wait(2, "222222222") == 1.0  # and nothing of a colleague's
    lim.verified(1, "333333333")
    assert lim.wait(1, "333333333") == 0.0
    assert lim.agent.failures("333333333") == 3  # the agent's ceiling only leaks


def test_no_shows_count_for_the_pair_only(clock: FakeClock) -> None:
    lim = SessionLimits(clock)
    for _ in range(6):
        lim.no_show(1, "123456789")
    with pytest.raises(RateLimited):
        lim.check(1, "123456789")
    assert lim.agent.failures("123456789") == 0
    assert lim.check(2, "123456789") == 0.0


async def test_limits_pause_uses_the_injected_sleep(clock: FakeClock) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limits = Limits(clock, sleep)
    await limits.pause(0.0)
    await limits.pause(2.0)
    assert slept == [2.0]
