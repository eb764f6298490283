"""Proxy lookup from the environment: scheme mapping, NO_PROXY, credentials, bad values."""

from __future__ import annotations

import base64

import pytest
from yarl import URL

from enkaku.transport.proxy import ProxyError, proxy_for

P = "http://proxy.example:3128"


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        # WebSocket URLs use the HTTPS/HTTP variables (aiohttp alone would look for WSS_PROXY).
        ("wss://s.example/ws/agent", {"HTTPS_PROXY": P}, P),
        ("https://s.example/api", {"https_proxy": P}, P),
        ("ws://s.example/ws/agent", {"HTTP_PROXY": P}, P),
        ("ws://s.example/ws/agent", {"HTTPS_PROXY": P}, None),
        ("wss://s.example/ws", {"HTTPS_PROXY": P, "WSS_PROXY": "http://w:1"}, "http://w:1"),
        ("wss://s.example/ws", {"HTTPS_PROXY": "proxy.example:3128"}, P),
        # Loopback is proxied like anything else unless NO_PROXY says otherwise.
        ("wss://127.0.0.1:8443/ws", {"HTTPS_PROXY": P}, P),
        ("wss://127.0.0.1:8443/ws", {"HTTPS_PROXY": P, "NO_PROXY": "127.0.0.1"}, None),
        ("wss://s.example/ws", {"HTTPS_PROXY": P, "NO_PROXY": "*"}, None),
        ("wss://a.s.example/ws", {"HTTPS_PROXY": P, "NO_PROXY": ".s.example"}, None),
        ("wss://a.s.example/ws", {"HTTPS_PROXY": P, "NO_PROXY": "s.example"}, None),
        ("wss://nots.example/ws", {"HTTPS_PROXY": P, "NO_PROXY": "s.example"}, P),
        ("wss://s.example:8443/", {"HTTPS_PROXY": P, "NO_PROXY": "s.example:443"}, P),
        ("wss://s.example:8443/", {"HTTPS_PROXY": P, "NO_PROXY": "x, s.example:8443"}, None),
        # Lower-case wins, even when empty (as urllib and curl read them).
        ("wss://s.example/", {"HTTPS_PROXY": P, "NO_PROXY": "s.example", "no_proxy": ""}, P),
        ("wss://s.example/", {}, None),
    ],
)
def test_proxy_for(url: str, env: dict[str, str], expected: str | None) -> None:
    found = proxy_for(url, env)
    assert (str(found[0]) if found else None) == expected


def test_credentials_are_passed_as_proxy_auth() -> None:
    found = proxy_for("wss://s.example/", {"HTTPS_PROXY": "http://u:p%40ss@proxy:3128"})
    assert found == (
        URL("http://proxy:3128"),
        {"Proxy-Authorization": "Basic " + base64.b64encode(b"u:p@ss").decode()},
    )


def test_an_https_proxy_url_is_refused_clearly() -> None:
    with pytest.raises(ProxyError, match="HTTPS_PROXY must be an http:// proxy URL"):
        proxy_for("wss://s.example/", {"HTTPS_PROXY": "https://u:secret@proxy:3128"})
    try:
        proxy_for("wss://s.example/", {"HTTPS_PROXY": "https://u:secret@proxy:3128"})
    except ProxyError as exc:
        assert "secret" not in str(exc)
