"""Which HTTP proxy the agent and the technician CLI use to reach the server.

The usual variables, as curl and most tools read them: ``HTTPS_PROXY`` for ``https://``
and ``wss://`` URLs, ``HTTP_PROXY`` for ``http://`` and ``ws://`` (``WSS_PROXY`` /
``WS_PROXY`` take precedence when set), lower-case forms first, and ``NO_PROXY`` for
hosts reached directly. aiohttp's own ``trust_env`` looks WebSocket URLs up under
``ws``/``wss`` only, so a plain ``HTTPS_PROXY`` would not carry the agent's control
connection or a relay leg: the lookup is done here and passed to every call.

The proxy itself is spoken to in plain HTTP (``CONNECT`` for TLS, so it sees only the
host name and port); an ``https://`` proxy URL is refused with a clear message.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from typing import Any

from aiohttp import encode_basic_auth
from yarl import URL

from enkaku.i18n import t


class ProxyError(ValueError):
    """The proxy setting in the environment cannot be used."""


def proxy_for(
    url: str | URL, env: Mapping[str, str] | None = None
) -> tuple[URL, dict[str, str]] | None:
    """The proxy to reach ``url`` through and the headers for it (credentials from the
    proxy URL), or None for a direct connection. ``env`` defaults to the environment."""
    target = URL(url)
    proxies = _proxies(env)
    host = target.host or ""
    if not proxies or (host and _bypass(host, target.port, proxies)):
        return None
    secure = target.scheme in ("https", "wss")
    keys = ("wss", "https") if secure else ("ws", "http")
    raw = next((proxies[k] for k in keys if proxies.get(k)), None)
    if raw is None:
        return None
    proxy = URL(raw if "://" in raw else f"http://{raw}")
    if proxy.scheme != "http" or not proxy.host:
        name = f"{keys[1].upper()}_PROXY"
        raise ProxyError(
            t("proxy_not_http", name=name, url=proxy.with_user(None).with_password(None))
        )
    headers = {}
    if proxy.user is not None:
        credentials = encode_basic_auth(proxy.user, proxy.password or "")
        headers["Proxy-Authorization"] = credentials
    return proxy.with_user(None).with_password(None), headers


def proxy_kwargs(url: str | URL) -> dict[str, Any]:
    """``proxy=``/``proxy_headers=`` for an aiohttp request or ws_connect to ``url``."""
    found = proxy_for(url)
    if found is None:
        return {}
    proxy, headers = found
    return {"proxy": proxy, "proxy_headers": headers or None}


def _proxies(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return urllib.request.getproxies_environment()
    # urllib.request.getproxies_environment's rules: lower-case names win, even empty.
    out: dict[str, str] = {}
    for name, value in env.items():
        if value and name.lower().endswith("_proxy"):
            out[name.lower()[:-6]] = value
    for name, value in env.items():
        if name.endswith("_proxy"):
            if value:
                out[name[:-6]] = value
            else:
                out.pop(name[:-6], None)
    return out


def _bypass(host: str, port: int | None, proxies: dict[str, str]) -> bool:
    no_proxy = proxies.get("no", "")
    if not no_proxy:
        return False
    if no_proxy.strip() == "*":
        return True
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and port is not None and entry_port != str(port):
            continue
        name = name.lstrip("*").lstrip(".") if name.startswith(("*", ".")) else name
        if host == name or host.endswith("." + name):
            return True
    return False
