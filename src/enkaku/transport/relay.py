"""Client side of a relay leg: connect, present the one-use token, wait to be paired."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType

from enkaku.i18n import t
from enkaku.protocol.jsonlimits import loads_object
from enkaku.protocol.records import MAX_RECORD

from .errors import SessionEnded, TransportError
from .proxy import proxy_kwargs
from .tcp import limit_unsent

CLOSE_SESSION_END = 4000


@dataclass
class RelayLeg:
    ws: aiohttp.ClientWebSocketResponse

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next binary message; raises SessionEnded when the leg closes."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == WSMsgType.BINARY:
            return bytes(msg.data)
        raise ended_from(msg, self.ws)

    async def close(self, reason: str) -> None:
        if not self.ws.closed:
            await self.ws.close(code=CLOSE_SESSION_END, message=reason.encode())


def ended_from(msg: aiohttp.WSMessage, ws: aiohttp.ClientWebSocketResponse) -> SessionEnded:
    """The SessionEnded a non-binary relay message means."""
    if msg.type == WSMsgType.CLOSE and msg.data == CLOSE_SESSION_END and msg.extra:
        return SessionEnded(str(msg.extra))
    if msg.type == WSMsgType.CLOSE:
        return SessionEnded(
            "connection_lost", f"relay closed ({msg.data} {msg.extra or ''})".strip()
        )
    if msg.type == WSMsgType.TEXT:
        return SessionEnded("protocol_error", "unexpected text message from the relay")
    if msg.type == WSMsgType.ERROR:
        return SessionEnded("connection_lost", type(msg.data).__name__)
    return SessionEnded("connection_lost")


async def open_leg(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    *,
    heartbeat: float,
    pairing_timeout: float = 90.0,
    ssl_context: ssl.SSLContext | bool = True,
    on_waiting: Callable[[], None] | None = None,
) -> RelayLeg:
    """Connect one leg and wait until the server pairs it with the other side."""
    try:
        ws = await http.ws_connect(
            url,
            heartbeat=heartbeat,
            max_msg_size=MAX_RECORD + 1024,
            compress=0,
            ssl=ssl_context,
            autoping=True,
            **proxy_kwargs(url),
        )
    except (aiohttp.ClientError, OSError) as exc:
        raise TransportError(t("relay_open_failed", detail=exc)) from exc
    limit_unsent(ws.get_extra_info("socket"))
    await ws.send_str(json.dumps({"token": token}))
    if on_waiting:
        on_waiting()
    msg = await ws.receive(timeout=pairing_timeout)
    if msg.type == WSMsgType.TEXT:
        try:
            ok = loads_object(msg.data, max_bytes=1024).get("type") == "paired"
        except ValueError:  # ProtocolError: too large, too deep, not JSON, not an object
            ok = False
        if ok:
            return RelayLeg(ws)
    await ws.close()
    raise ended_from(msg, ws)
