"""A throw-away aiohttp server on loopback, for tests that play a (hostile) peer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: A step of ``scripted_ws``: wait for one message from the client.
RECEIVE = None


@asynccontextmanager
async def serving(method: str, path: str, handler: Handler) -> AsyncIterator[TestServer]:
    """``handler`` for ``method path`` on a loopback TestServer, closed on exit."""
    app = web.Application()
    app.router.add_route(method, path, handler)
    server = TestServer(app)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def scripted_ws(*steps: str | None) -> Handler:
    """A WebSocket handler that goes through ``steps`` in order: it sends each string and
    waits for one message at each ``RECEIVE``, then returns."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for step in steps:
            if step is RECEIVE:
                await ws.receive()
            else:
                await ws.send_str(step)
        return ws

    return handler
