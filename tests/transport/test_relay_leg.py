"""The client's relay leg against a hostile relay (issue 5 §3)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from enkaku.transport.errors import SessionEnded
from enkaku.transport.relay import open_leg


@pytest.mark.parametrize("answer", ["[" * 15_000, "[1]", "x" * 2000])
async def test_a_hostile_pairing_answer_ends_the_leg_cleanly(answer: str) -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # the token
        await ws.send_str(answer)
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws/relay/s", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(SessionEnded) as exc:
                await open_leg(
                    http, str(server.make_url("/ws/relay/s")), "t", heartbeat=5, pairing_timeout=10
                )
        assert exc.value.reason == "protocol_error"
    finally:
        await server.close()
