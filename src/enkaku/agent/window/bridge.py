"""The one place where the Tk thread and the agent's asyncio loop meet.

Tk is not thread-safe: every Tk call happens on the main thread, which runs Tk's
mainloop. The agent's asyncio loop runs in a worker thread and must never block on Tk.
So calls cross in two ways only:

- loop (or any thread, or a signal handler) -> Tk: ``to_tk(fn, *args)`` puts the call on a
  ``SimpleQueue`` (reentrant, so a signal handler may use it); Tk drains the queue from a
  ``root.after`` timer and runs the calls on the main thread.
- Tk -> loop: ``to_loop(coro)`` hands a coroutine to ``run_coroutine_threadsafe`` and
  returns at once; ``ask_loop(fn, then)`` runs a plain function on the loop and gives its
  result to ``then`` back on the Tk thread (a snapshot of the session, never a live read
  of the loop's objects from Tk).
- The loop awaits an answer from Tk with ``await ask_tk(fn)``: ``fn`` runs on Tk and gets
  a ``reply`` callable; whatever it passes to ``reply`` (from a button, later) is the
  awaited result. Cancelling the await runs the cancel callback ``fn`` returned, on Tk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import tkinter as tk
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often Tk looks at the queue (ms): short enough that a click's effect and a
#: signal feel immediate, long enough to cost nothing.
POLL_MS = 25


class Bridge:
    """Calls both ways between the Tk main thread and one asyncio loop in a worker thread."""

    def __init__(self, root: tk.Misc) -> None:
        self.root = root
        self._calls: queue.SimpleQueue[tuple[Callable[..., object], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._polling = False
        self._after: str | None = None

    # -- the worker thread ------------------------------------------------------------

    def start(self, main: Callable[[], Coroutine[Any, Any, object]],
              done: Callable[[BaseException | None], None]) -> None:  # fmt: skip
        """Run ``main()`` on a new loop in a worker thread; ``done(error)`` then runs on Tk."""
        ready = threading.Event()

        def run() -> None:
            error: BaseException | None = None
            try:
                # As asyncio.run: on the way out, tasks still pending are cancelled and
                # awaited, async generators and the default executor shut down.
                with asyncio.Runner() as runner:
                    self.loop = runner.get_loop()
                    ready.set()
                    runner.run(main())
            except BaseException as exc:  # reported to Tk, which decides what to show
                log.exception("the agent loop failed")
                error = exc
            finally:
                ready.set()
                self.to_tk(done, error)

        self._thread = threading.Thread(target=run, name="enkaku-agent-loop", daemon=True)
        self._thread.start()
        ready.wait()
        self.poll()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True when it has finished."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- towards Tk ---------------------------------------------------------------------

    def to_tk(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on the Tk thread soon (from any thread or a signal handler)."""
        self._calls.put((fn, args))

    def poll(self) -> None:
        """Start draining the queue on the Tk thread (idempotent)."""
        if not self._polling:
            self._polling = True
            self._after = self.root.after(POLL_MS, self._drain)

    def close(self) -> None:
        """Stop draining (before the root is destroyed: no timer may outlive it)."""
        self._polling = False
        if self._after is not None:
            with contextlib.suppress(tk.TclError):
                self.root.after_cancel(self._after)
            self._after = None

    def _drain(self) -> None:
        while True:
            try:
                fn, args = self._calls.get_nowait()
            except queue.Empty:
                break
            try:
                fn(*args)
            except Exception:  # one failed UI update must not stop the others
                log.exception("a window update failed")
        if not self._polling:
            return
        try:
            self._after = self.root.after(POLL_MS, self._drain)
        except (RuntimeError, tk.TclError):  # the root was destroyed
            self._polling = False

    async def ask_tk(self, fn: Callable[[Callable[[T], None]], Callable[[], None] | None]) -> T:
        """On the loop: run ``fn(reply)`` on Tk and wait for the value passed to ``reply``.

        ``fn`` may return a callable run on Tk if the wait is cancelled (a withdrawn
        question closes its dialog).
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()
        cancel: list[Callable[[], None] | None] = [None]

        def reply(value: T) -> None:  # called on Tk
            loop.call_soon_threadsafe(_settle, answer, value)

        def show() -> None:
            cancel[0] = fn(reply)

        self.to_tk(show)
        try:
            return await answer
        except asyncio.CancelledError:
            self.to_tk(lambda: cancel[0]() if cancel[0] is not None else None)
            raise

    # -- towards the loop ---------------------------------------------------------------

    def to_loop(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T] | None:
        """From Tk: start ``coro`` on the loop and return at once (None if it has stopped)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            coro.close()
            return None
        try:
            return asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # closed between the check and the call
            coro.close()
            return None

    def ask_loop(self, fn: Callable[[], T], then: Callable[[T], None]) -> None:
        """From Tk: run ``fn()`` on the loop, then ``then(result)`` on Tk."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def run() -> None:
            try:
                value = fn()
            except Exception:
                log.exception("reading the agent's state failed")
                return
            self.to_tk(then, value)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(run)


def _settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)
