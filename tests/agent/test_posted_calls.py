"""``RemoteSession.post``: input events sent without waiting for mutter's answers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from enkaku.agent.gnome.mutter import MutterUnavailable, RemoteSession


class Session(RemoteSession):
    """mutter's session without mutter: its loop in a thread, calls that the test
    answers."""

    def __init__(self) -> None:  # no D-Bus connection, no mutter
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.closed = threading.Event()
        self.users = 0
        self._stop_timer = None
        self.sent: list[int] = []

    async def _stop(self) -> None:
        pass

    async def call(self, n: int, fail: bool = False, answer: asyncio.Event | None = None) -> None:
        self.sent.append(n)  # as a D-Bus call goes out at its first step
        if answer is not None:
            await answer.wait()  # the answer, when the test lets it come
        if fail:
            raise MutterUnavailable(f"NotifyKeyboardKeysym: refused {n}")


def wait_until(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_posted_calls_go_in_order_without_waiting_for_their_answers() -> None:
    session = Session()
    answer = asyncio.Event()  # no call is answered until the end (a frozen desktop)
    try:
        posting = threading.Thread(
            target=lambda: [session.post(session.call(n, answer=answer)) for n in range(50)]
        )
        posting.start()
        posting.join(10)  # a hang guard: posting must not wait for an answer
        assert not posting.is_alive()
        wait_until(lambda: len(session.sent) == 50)
        assert session.sent == list(range(50))
    finally:
        session._loop.call_soon_threadsafe(answer.set)
        session.stop()


def test_a_refused_call_is_logged_and_the_next_one_raises(caplog: pytest.LogCaptureFixture) -> None:
    session = Session()
    try:
        session.post(session.call(1, fail=True))
        wait_until(lambda: session._post_failure is not None)
        with pytest.raises(MutterUnavailable, match="refused 1"):
            session.post(session.call(2))
        assert session.sent == [1]
        assert "an input event was not taken: NotifyKeyboardKeysym: refused 1" in caplog.text
    finally:
        session.stop()


def test_posting_to_an_ended_session_raises_its_error() -> None:
    session = Session()
    session.stop()
    with pytest.raises(MutterUnavailable, match="has ended"):
        session.post(session.call(1))
