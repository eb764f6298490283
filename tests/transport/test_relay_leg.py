"""The client's relay leg against a hostile relay (issue 5 §3)."""

from __future__ import annotations

import aiohttp
import pytest

from enkaku.transport.errors import SessionEnded
from enkaku.transport.relay import open_leg
from tests.fakeserver import RECEIVE, scripted_ws, serving


@pytest.mark.parametrize("answer", ["[" * 15_000, "[1]", "x" * 2000])
async def test_a_hostile_pairing_answer_ends_the_leg_cleanly(answer: str) -> None:
    relay = scripted_ws(RECEIVE, answer, RECEIVE)  # RECEIVE the token, answer, wait
    async with serving("GET", "/ws/relay/s", relay) as server, aiohttp.ClientSession() as http:
        with pytest.raises(SessionEnded) as exc:
            await open_leg(
                http, str(server.make_url("/ws/relay/s")), "t", heartbeat=5, pairing_timeout=10
            )
    assert exc.value.reason == "protocol_error"
