"""The technician's client against a server that answers hostile JSON (issue 5 §3)."""

from __future__ import annotations

import pytest
from aiohttp import web

from enkaku.technician.client import MAX_API_RESPONSE, ClientError, login
from tests.fakeserver import serving


@pytest.mark.parametrize(
    "body", [b"[" * 15_000, b"x" * (MAX_API_RESPONSE + 10)], ids=["deep", "oversized"]
)
async def test_a_hostile_api_answer_is_a_clean_error(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def token(request: web.Request) -> web.Response:
        return web.Response(status=401, body=body, content_type="application/json")

    monkeypatch.setenv("ENKAKU_LANG", "en")
    async with serving("POST", "/api/v1/auth/token", token) as server:
        with pytest.raises(ClientError, match="HTTP 401"):
            await login(str(server.make_url("")).rstrip("/"), "u", "p")
