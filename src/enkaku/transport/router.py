"""Dispatch of control messages by type, one handler per type.

Each side of a session registers what it handles; the router reads the channel's control
queue and calls the handler of the message's type. A message of a type this side does
not know (a newer peer) or does not expect (the other side's message) is answered with
``error`` and the session goes on: only an invalid message ends it, in the channel.
Handlers run in the router's task and must not block: a handler that waits for the
customer (a consent prompt) starts its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from enkaku.protocol import control

from .channel import SecureChannel
from .errors import SessionEnded

log = logging.getLogger(__name__)

M = TypeVar("M")
Handler = Callable[[Any], Awaitable[None] | None]


class ControlRouter:
    def __init__(self, channel: SecureChannel) -> None:
        self.channel = channel
        self._handlers: dict[type, Handler] = {}

    def on(self, message_type: type[M], handler: Callable[[M], Awaitable[None] | None]) -> None:
        if message_type in self._handlers:
            raise ValueError(f"{message_type.__name__} already has a handler")
        self._handlers[message_type] = handler

    async def run(self) -> None:
        """Dispatch until the channel closes."""
        channel = self.channel
        while not channel.closed.is_set() or not channel.control_messages.empty():
            get = asyncio.ensure_future(channel.control_messages.get())
            closed = asyncio.ensure_future(channel.closed.wait())
            try:
                await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
            if not get.done():
                get.cancel()
                continue  # closed: drain what is queued, then stop
            await self.dispatch(get.result())

    async def dispatch(self, msg: control.Message | control.Unknown) -> None:
        handler = self._handlers.get(type(msg))
        if handler is not None:
            result = handler(msg)
            if inspect.isawaitable(result):
                await result
            return
        if isinstance(msg, control.End):
            return  # the channel itself records the peer's end
        code = "unknown_message" if isinstance(msg, control.Unknown) else "unexpected_message"
        log.info("control message %r not handled here (%s)", msg.type, code)
        if isinstance(msg, control.Error):
            return  # never answer an error with an error
        with contextlib.suppress(SessionEnded):
            await self.channel.send_control(
                control.Error(code=code, message=f"{msg.type} is not handled by this side")
            )
