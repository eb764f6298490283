"""The bridge between the Tk main thread and the agent's loop thread, in isolation."""

from __future__ import annotations

import asyncio
import threading
import tkinter as tk
from collections.abc import Callable

import pytest

from enkaku.agent.window.bridge import Bridge

from .helpers import loop_thread, pump_until

pytestmark = pytest.mark.x11


def test_loop_to_tk_runs_on_the_tk_thread(root: tk.Tk) -> None:
    seen: list[tuple[str, int]] = []
    with loop_thread(root) as bridge:

        async def from_loop() -> int:
            bridge.to_tk(lambda v: seen.append((v, threading.get_ident())), "hello")
            return threading.get_ident()

        fut = bridge.to_loop(from_loop())
        assert fut is not None
        loop_ident = fut.result(10)
        pump_until(root, lambda: seen, what="the call on Tk")
    assert seen == [("hello", threading.get_ident())]
    assert loop_ident != threading.get_ident()


def test_tk_to_loop_does_not_wait_and_runs_on_the_loop(root: tk.Tk) -> None:
    results: list[tuple[int, int]] = []
    with loop_thread(root) as bridge:
        release = threading.Event()

        async def slow() -> int:
            await asyncio.to_thread(release.wait)
            return threading.get_ident()

        fut = bridge.to_loop(slow())
        assert fut is not None and not fut.done()  # to_loop returned at once
        release.set()
        loop_ident = fut.result(10)
        bridge.ask_loop(
            lambda: threading.get_ident(),
            lambda ident: results.append((ident, threading.get_ident())),
        )
        pump_until(root, lambda: results, what="ask_loop's answer")
    assert results == [(loop_ident, threading.get_ident())]


def test_the_loop_awaits_an_answer_given_on_tk(root: tk.Tk) -> None:
    with loop_thread(root) as bridge:
        replies: list[Callable[[str], None]] = []

        def show(reply: Callable[[str], None]) -> None:
            assert threading.current_thread() is threading.main_thread()
            replies.append(reply)

        fut = bridge.to_loop(bridge.ask_tk(show))
        assert fut is not None
        pump_until(root, lambda: replies, what="the question on Tk")
        assert not fut.done()
        replies[0]("yes")
        assert fut.result(10) == "yes"


def test_a_cancelled_wait_runs_the_cancel_callback_on_tk(root: tk.Tk) -> None:
    cancelled: list[int] = []
    with loop_thread(root) as bridge:

        def show(reply: Callable[[bool], None]) -> Callable[[], None]:
            return lambda: cancelled.append(threading.get_ident())

        async def withdrawn() -> str:
            try:
                await asyncio.wait_for(bridge.ask_tk(show), 0.2)
            except TimeoutError:
                return "timeout"
            return "answered"

        fut = bridge.to_loop(withdrawn())
        assert fut is not None
        assert pump_until(root, lambda: fut.done() and fut.result(), what="timeout") == "timeout"
        pump_until(root, lambda: cancelled, what="the cancel callback")
    assert cancelled == [threading.get_ident()]


def test_shutdown_reports_the_end_and_a_failure_to_tk(root: tk.Tk) -> None:
    ends: list[BaseException | None] = []
    bridge = Bridge(root)

    async def failing() -> None:
        raise RuntimeError("boom")

    bridge.start(failing, ends.append)
    pump_until(root, lambda: ends, what="the end")
    assert bridge.join(10)
    assert isinstance(ends[0], RuntimeError)
    # Once the loop is gone, calls towards it are dropped, not raised.
    coro = asyncio.sleep(0)
    assert bridge.to_loop(coro) is None
