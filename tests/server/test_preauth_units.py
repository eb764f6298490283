"""The pre-authentication limits as plain objects, with a fake clock."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from enkaku.server.preauth import PendingConnections, RegistrationLimiter, peer_address
from enkaku.server.settings import Settings, SettingsError, from_env

from .conftest import FakeClock


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock(0.0)
    limiter = RegistrationLimiter(300, 30, clock=clock)  # the defaults
    assert all(limiter.allow("office") for _ in range(300))  # a whole office at once
    assert not limiter.allow("office")
    assert limiter.retry_after("office") == pytest.approx(2.0)
    assert limiter.allow("elsewhere")  # per address
    clock.now += 2.0
    assert limiter.allow("office") and not limiter.allow("office")
    clock.now += 3600
    assert sum(limiter.allow("office") for _ in range(400)) == 300  # refills to the burst only


def test_bucket_with_no_rate_never_refills() -> None:
    clock = FakeClock(0.0)
    limiter = RegistrationLimiter(1, 0, clock=clock)
    assert limiter.allow("a")
    clock.now += 1e9
    assert not limiter.allow("a")
    assert limiter.retry_after("a") == float("inf")


def test_bucket_memory_is_bounded() -> None:
    clock = FakeClock(0.0)
    limiter = RegistrationLimiter(2, 60, clock=clock, max_keys=10)
    for i in range(100):
        limiter.allow(f"10.0.0.{i}")
        clock.now += 0.001
    assert len(limiter._buckets) <= 10
    limiter.allow("x")
    limiter.allow("x")
    assert not limiter.allow("x")  # a busy address is not the one forgotten first


def test_pending_slots_are_per_address_and_released() -> None:
    pending = PendingConnections(2)
    assert pending.acquire("a") and pending.acquire("a") and not pending.acquire("a")
    assert pending.acquire("b")
    pending.release("a")
    assert pending.count("a") == 1 and pending.acquire("a")
    for _ in range(2):
        pending.release("a")
    pending.release("b")
    assert pending._counts == {}  # nothing left behind for gone addresses


def test_peer_address_trusts_only_the_proxy_entry() -> None:
    headers = CIMultiDict(
        [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.1.1.1, 203.0.113.7")]
    )
    req = make_mocked_request("GET", "/ws/agent", headers=headers)
    assert peer_address(req, behind_proxy=True) == "203.0.113.7"
    assert peer_address(req, behind_proxy=False) == (req.remote or "?")


def test_settings_of_the_limits_name_their_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="auth_timeout"):
        Settings(auth_timeout=0)
    with pytest.raises(SettingsError, match="max_unauthenticated_per_address"):
        Settings(max_unauthenticated_per_address=0)
    with pytest.raises(SettingsError, match="agent_expiry_days"):
        Settings(agent_expiry_days=-1)
    monkeypatch.setenv("ENKAKU_AGENT_REGISTRATION_BURST", "50")
    monkeypatch.setenv("ENKAKU_HEADER_TIMEOUT", "3.5")
    monkeypatch.setenv("ENKAKU_AGENT_EXPIRY_DAYS", "0")
    s = from_env()
    assert (s.agent_registration_burst, s.header_timeout, s.agent_expiry_days) == (50, 3.5, 0)
    monkeypatch.setenv("ENKAKU_AUTH_TIMEOUT", "soon")
    with pytest.raises(SettingsError, match="ENKAKU_AUTH_TIMEOUT"):
        from_env()


def test_server_flags_set_the_limits_and_name_a_bad_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from enkaku import cli

    args = cli.build_parser().parse_args(
        ["server", "--header-timeout", "3", "--agent-registration-burst", "50"]
    )
    assert (args.header_timeout, args.agent_registration_burst, args.auth_timeout) == (
        3.0,
        50,
        None,
    )
    monkeypatch.setenv("ENKAKU_AUTH_TIMEOUT", "7")
    assert cli.main(["server", "--auth-timeout", "0"]) == 2  # the flag wins over the variable
    err = capsys.readouterr().err
    assert "auth_timeout" in err and "Traceback" not in err
