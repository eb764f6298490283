"""Closing an injector after its settle (``enkaku.agent.input.settle``): held keys let
go at once, the close a settle after the last input, at once when the agent stops. On a
real X server with the keys of a stopped xterm: tests/agent/test_typetext.py and
tests/agent/test_screen_service.py."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from enkaku.agent.input import settle
from enkaku.agent.input.settle import close_after_settle


class Injector:
    """Records when it let go of its keys and when it was closed (loop time)."""

    def __init__(self) -> None:
        self.released: float | None = None
        self.closed: float | None = None

    def key(self, keysym: int, down: bool, scancode: int | None = None) -> None:
        raise AssertionError("no keys here")

    def pointer(self, x: int, y: int, buttons: int) -> None:
        raise AssertionError("no pointer here")

    def release_all(self) -> None:
        self.released = time.monotonic()  # the loop's clock

    def close(self) -> None:
        self.closed = time.monotonic()  # the loop's clock


@pytest.fixture(autouse=True)
def short_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settle, "SETTLE", 0.3)


async def test_no_input_closes_at_once() -> None:
    injector = Injector()
    await close_after_settle(injector, None)
    assert injector.released is not None and injector.closed is not None


async def test_input_long_ago_closes_at_once() -> None:
    injector = Injector()
    await close_after_settle(injector, asyncio.get_running_loop().time() - 1.0)
    assert injector.closed is not None


async def test_recent_input_lets_go_at_once_and_closes_after_the_settle() -> None:
    loop = asyncio.get_running_loop()
    injector = Injector()
    last = loop.time()
    await close_after_settle(injector, last)  # returns without waiting for the close
    for _ in range(100):  # the keys held are let go at once, in the closing task
        if injector.released is not None:
            break
        await asyncio.sleep(0.01)
    assert injector.released is not None and injector.closed is None
    for _ in range(100):
        if injector.closed is not None:
            break
        await asyncio.sleep(0.02)
    assert injector.closed is not None
    assert injector.closed >= last + 0.3


@pytest.mark.parametrize("started", [True, False])
async def test_the_agent_stopping_closes_at_once(started: bool) -> None:
    injector = Injector()
    await close_after_settle(injector, asyncio.get_running_loop().time() + 60)
    if started:
        await asyncio.sleep(0.05)  # the wait began (else: cancelled before it ran)
    assert injector.closed is None
    (waiting,) = settle._closing
    waiting.cancel()  # what asyncio.run does to every task left when the agent stops
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert injector.closed is not None


async def test_the_caller_cancelled_while_keys_are_released_still_closes() -> None:
    """The session's end may cancel the stream's task at any await, also while the keys
    held are being released: the close still comes, after the settle. (The release was
    awaited by the caller before: a cancel there left the injector open and the spare
    keycodes bound for good; a clean-clone CI run saw it.)"""

    class Slow(Injector):
        def release_all(self) -> None:
            time.sleep(0.1)
            super().release_all()

    injector = Slow()
    caller = asyncio.ensure_future(close_after_settle(injector, asyncio.get_running_loop().time()))
    await asyncio.sleep(0.03)  # in the release
    caller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    for _ in range(100):
        if injector.closed is not None:
            break
        await asyncio.sleep(0.02)
    assert injector.released is not None and injector.closed is not None
