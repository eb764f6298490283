"""Closing an input injector once the customer's applications have read its last keys.

An X client looks a keycode's keysym up when it handles the event, in the keyboard map
of that moment. The X11 injector binds keysyms the map lacks (Japanese, é, ...) to
spare keycodes and unbinds them on ``close()``; closed right after the last key, a
slow application (a busy machine) would read that key as no character at all. So a
stream that ends (the session ends, the technician disconnects) releases whatever is
held down at once and closes its injector ``SETTLE`` seconds after its last input, in a
task the stream's cancellation does not reach; only the agent's own stop (which cancels
every task) closes it at once, so the customer's keymap is restored before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import InputInjector

logger = logging.getLogger(__name__)

#: Seconds the injector stays open after the last input it injected.
SETTLE = 1.0

#: Injectors waiting for their settle (referenced until closed).
_closing: set[asyncio.Future[None]] = set()


async def close_after_settle(injector: InputInjector, last_input: float | None) -> None:
    """Release what ``injector`` holds down now and close it ``SETTLE`` seconds after
    ``last_input`` (the event loop's time of its last input; None: none). Both run in a
    task of their own, which cancelling the caller does not reach (a session's end may
    cancel it at any await); a close due now is awaited, a later one runs in the
    background and this returns at once, so the stream's end is not held up by the
    settle."""
    delay = 0.0
    if last_input is not None:
        delay = max(0.0, last_input + SETTLE - asyncio.get_running_loop().time())
    closed: list[bool] = []
    closing = asyncio.ensure_future(_close(injector, delay, closed))

    def done(task: asyncio.Future[None]) -> None:
        _closing.discard(task)
        if not closed:  # cancelled before it ran (the agent stopping at once)
            with contextlib.suppress(Exception):
                injector.close()

    _closing.add(closing)
    closing.add_done_callback(done)
    if not delay:
        await asyncio.shield(closing)


async def _close(injector: InputInjector, delay: float, closed: list[bool]) -> None:
    try:
        try:
            await asyncio.to_thread(injector.release_all)
        except Exception as exc:  # a display gone: close() below tidies what it can
            logger.debug("cannot release the keys held: %s", exc)
        if delay:
            await asyncio.sleep(delay)
    finally:  # also when cancelled: the agent is stopping
        closed.append(True)
        await asyncio.to_thread(injector.close)
