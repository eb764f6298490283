"""The technician's client against a server that answers hostile JSON (issue 5 §3)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from enkaku.technician.client import MAX_API_RESPONSE, ClientError, login


@pytest.mark.parametrize(
    "body", [b"[" * 15_000, b"x" * (MAX_API_RESPONSE + 10)], ids=["deep", "oversized"]
)
async def test_a_hostile_api_answer_is_a_clean_error(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def token(request: web.Request) -> web.Response:
        return web.Response(status=401, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/v1/auth/token", token)
    server = TestServer(app)
    await server.start_server()
    monkeypatch.setenv("ENKAKU_LANG", "en")
    try:
        with pytest.raises(ClientError, match="HTTP 401"):
            await login(str(server.make_url("")).rstrip("/"), "u", "p")
    finally:
        await server.close()
