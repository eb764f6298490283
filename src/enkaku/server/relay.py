"""Pairing and opaque relaying of session traffic: /ws/relay/{session_id}.

Wire (docs/protocol/relay.md):

1. Each leg (technician, agent) opens the WebSocket and sends one text message
   ``{"token": "<one-use relay token>"}`` within AUTH_TIMEOUT. The token says which leg
   it is; a token is accepted once.
2. When both legs are there the server sends each ``{"type": "paired"}`` (text).
3. From then on the server copies binary messages from one leg to the other, untouched,
   and counts their bytes. Reading from a leg pauses while the other leg cannot take
   more (backpressure through the WebSocket writer's drain).
4. A leg ends the session by closing with code 4000 and an end reason (control.END_REASONS)
   as the close message. The server then closes the other leg with 4000 and the reason it
   records: the leg's, if the leg's role may assert it (control.REASON_ROLES, policy
   reasons excepted), else the leg's own ending (technician_ended / customer_ended).
   Text after the token message, a binary message before pairing or a message over
   max_frame is a protocol error: the session ends with ``protocol_error``.
   A leg that disappears or stops answering heartbeats ends it as
   ``<role>_disconnected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import WSCloseCode, WSMsgType, web

from enkaku.protocol.control import END_REASONS, OWN_END, POLICY_REASONS, EndRole, may_assert
from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.jsonlimits import loads_object
from enkaku.transport.tcp import limit_unsent

from .preauth import PendingConnections, peer_address, too_many_connections
from .presence import Presence
from .ratelimit import SessionLimits
from .settings import Settings
from .store.repo import Store

log = logging.getLogger(__name__)

Role = Literal["technician", "agent"]
#: The token message is ``{"token": "<32 characters>"}``; nothing longer is read as one.
MAX_TOKEN_MESSAGE = 1024
CLOSE_SESSION_END = 4000
CLOSE_UNAUTHORIZED = 4401
CLOSE_CONFLICT = 4409

#: Observers see every relayed message (tests use one to prove the relay carries no
#: plaintext). Never used in production code paths other than counting.
RelayObserver = Callable[[str, Role, bytes], None]


def _size(data: str | bytes) -> int:
    return len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def leg_claim(role: Role, reason: str) -> tuple[str, str | None, EndRole]:
    """What a leg's 4000 close records: its reason if its role may assert it (policy
    reasons only through the API, with a comment), else the leg's own ending."""
    if may_assert(role, reason) and reason not in POLICY_REASONS:
        return reason, f"ended by {role}", role
    return OWN_END[role], f"ended by {role}, which claimed {reason}", role


@dataclass(eq=False)
class RelaySession:
    id: str
    agent_id: str
    technician_id: int
    token_digests: dict[Role, bytes]
    legs: dict[Role, web.WebSocketResponse] = field(default_factory=dict)
    used: set[Role] = field(default_factory=set)
    paired: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False
    end_reason: str | None = None
    bytes_to: dict[Role, int] = field(default_factory=lambda: {"technician": 0, "agent": 0})
    timer: asyncio.TimerHandle | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: The agent reported consent_granted: the technician has had access to the device.
    consent_granted: bool = False
    #: Set once the agent reported the customer's answer (granted or denied).
    consent_answered: asyncio.Event = field(default_factory=asyncio.Event)


class RelayHub:
    """Owns every session this node relays."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        presence: Presence,
        limits: SessionLimits,
        *,
        observer: RelayObserver | None = None,
        pending: PendingConnections | None = None,
    ) -> None:
        #: Unauthenticated sockets per address, shared with the agent gateway.
        self.pending = pending or PendingConnections(settings.max_unauthenticated_per_address)
        self.settings, self.store, self.presence, self.limits = (
            settings,
            store,
            presence,
            limits,
        )
        self.observer = observer
        self.sessions: dict[str, RelaySession] = {}
        self._tasks: set[asyncio.Task[bool]] = set()
        self.on_end: list[Callable[[RelaySession], Awaitable[None]]] = []
        self._counted: OrderedDict[str, None] = OrderedDict()
        #: Sessions that ended lately, so a leg arriving late is told why (bounded).
        self._recently_ended: OrderedDict[str, RelaySession] = OrderedDict()

    def create(self, session_id: str, agent_id: str, technician_id: int) -> dict[Role, str]:
        """Register a session; returns one fresh relay token per leg."""
        tokens: dict[Role, str] = {
            "technician": secrets.token_urlsafe(24),
            "agent": secrets.token_urlsafe(24),
        }
        sess = RelaySession(
            session_id, agent_id, technician_id, {r: _digest(t) for r, t in tokens.items()}
        )
        loop = asyncio.get_running_loop()
        sess.timer = loop.call_later(self.settings.pairing_timeout, self._pairing_expired, sess)
        self.sessions[session_id] = sess
        return tokens

    def pending_for(self, technician_id: int) -> int:
        """Sessions this technician requested that are not paired yet."""
        return sum(
            1
            for s in self.sessions.values()
            if s.technician_id == technician_id and not s.paired.is_set() and not s.ended
        )

    def _pairing_expired(self, sess: RelaySession) -> None:
        """The pairing timer: end the session, and count a technician who never came."""
        if sess.ended or sess.paired.is_set():
            return
        if "technician" not in sess.used:
            # The request held the agent (it joins at once) and the technician never
            # came: counted like a spent guess for this technician and this agent only.
            self.limits.no_show(sess.technician_id, sess.agent_id)
            detail = "pairing timed out: the technician did not join"
        else:
            detail = "pairing timed out: the agent did not join"
        self._spawn_end(sess.id, "timeout", detail)

    def _spawn_end(
        self,
        session_id: str,
        reason: str,
        detail: str | None = None,
        by: EndRole = "server",
    ) -> asyncio.Task[bool]:
        task = asyncio.get_running_loop().create_task(self.end(session_id, reason, detail, by=by))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The /ws/relay/{session_id} endpoint."""
        address = peer_address(request, self.settings.behind_proxy)
        if not self.pending.acquire(address):
            raise too_many_connections(self.settings.auth_timeout)
        try:
            ws = web.WebSocketResponse(
                heartbeat=self.settings.heartbeat_timeout / 2,
                max_msg_size=self.settings.max_frame,
                compress=False,
            )
            await ws.prepare(request)
            if request.transport is not None:
                limit_unsent(request.transport.get_extra_info("socket"))
            session_id = request.match_info["session_id"]
            sess = self.sessions.get(session_id) or self._recently_ended.get(session_id)
            role = await self._authenticate(ws, sess)
        finally:
            self.pending.release(address)
        if sess is None or role is None:
            return ws
        sess.legs[role] = ws
        log.info("session %s: %s leg connected", sess.id[:8], role)
        other: Role = "agent" if role == "technician" else "technician"
        if other in sess.legs:
            if sess.timer:
                sess.timer.cancel()
            sess.paired.set()
            await self.store.mark_paired(sess.id)
            for leg in sess.legs.values():
                with contextlib.suppress(ConnectionError):
                    await leg.send_str('{"type":"paired"}')
            log.info("session %s: paired", sess.id[:8])
        try:
            reason, detail, by = await self._pipe(sess, role, ws, other)
        except asyncio.CancelledError:
            # aiohttp cancels a handler whose connection dropped: that leg is gone.
            self._spawn_end(sess.id, f"{role}_disconnected", "connection lost")
            raise
        # Shielded: the ending must finish even if this handler is cancelled meanwhile.
        await asyncio.shield(self._spawn_end(sess.id, reason, detail, by))
        return ws

    async def _authenticate(
        self, ws: web.WebSocketResponse, sess: RelaySession | None
    ) -> Role | None:
        try:
            msg = await asyncio.wait_for(ws.receive(), self.settings.auth_timeout)
        except TimeoutError:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"no relay token")
            return None
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and _size(msg.data) > MAX_TOKEN_MESSAGE:
            await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=b"token message too large")
            return None
        token = None
        if msg.type == WSMsgType.TEXT:
            try:
                token = loads_object(msg.data, max_bytes=MAX_TOKEN_MESSAGE).get("token")
            except ProtocolError as exc:
                log.debug("relay token message refused: %s", exc)
        # A real token is URL-safe base64; anything else (a lone surrogate cannot even be
        # hashed) is simply a bad token.
        if not isinstance(token, str) or not token.isascii() or sess is None:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"unknown session or bad token")
            return None
        digest = _digest(token)
        role = next(
            (r for r, d in sess.token_digests.items() if hmac.compare_digest(d, digest)), None
        )
        if role is None:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"unknown session or bad token")
            return None
        if sess.ended:
            # A leg arriving just after the end (busy agent, pairing timeout, ended through
            # the API) learns why, like a leg that was there.
            reason = (sess.end_reason or "timeout").encode()
            await ws.close(code=CLOSE_SESSION_END, message=reason)
            return None
        if role in sess.used:
            await ws.close(code=CLOSE_CONFLICT, message=b"relay token already used")
            return None
        sess.used.add(role)
        return role

    async def _pipe(
        self,
        sess: RelaySession,
        role: Role,
        ws: web.WebSocketResponse,
        other: Role,
    ) -> tuple[str, str | None, EndRole]:
        """Copy this leg's messages to the other leg until something ends the session."""
        observer = self.observer
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.BINARY:
                if not sess.paired.is_set():
                    return "protocol_error", f"{role} sent data before pairing", "server"
                data: bytes = msg.data
                sess.bytes_to[other] += len(data)
                if observer is not None:
                    observer(sess.id, role, data)
                peer = sess.legs.get(other)
                if peer is None or peer.closed:
                    return f"{other}_disconnected", None, "server"
                try:
                    await peer.send_bytes(data)
                except ConnectionError:
                    return f"{other}_disconnected", None, "server"
            elif msg.type == WSMsgType.TEXT:
                return "protocol_error", f"{role} sent text after authentication", "server"
            elif msg.type == WSMsgType.CLOSE:
                code, text = msg.data, (msg.extra or "")
                if code == CLOSE_SESSION_END and text in END_REASONS:
                    return leg_claim(role, text)
                if code == WSCloseCode.MESSAGE_TOO_BIG:
                    return "protocol_error", f"{role} sent an oversized frame", "server"
                return f"{role}_disconnected", f"close code {code}", "server"
            elif msg.type == WSMsgType.ERROR:
                exc = msg.data
                if getattr(exc, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                    return "protocol_error", f"{role} sent an oversized frame", "server"
                return f"{role}_disconnected", type(exc).__name__ if exc else None, "server"
            else:  # CLOSING / CLOSED: we closed it (the session already ended) or it died
                if sess.ended and sess.end_reason:
                    return sess.end_reason, None, "server"
                return f"{role}_disconnected", None, "server"

    async def end(
        self,
        session_id: str,
        reason: str,
        detail: str | None = None,
        *,
        by: EndRole = "server",
        technician_id: int | None = None,
        comment: str | None = None,
    ) -> bool:
        """End a session once: close both legs with the reason, record it with who
        asserted it (``by``; ``technician_id`` for an end through the API). False when
        the session was not live here (already ended). The caller checks the role may
        assert the reason (control.REASON_ROLES)."""
        sess = self.sessions.get(session_id)
        if sess is None or sess.ended:
            return False
        sess.ended, sess.end_reason = True, reason
        if sess.timer:
            sess.timer.cancel()
        log.info("session %s: ended (%s)", session_id[:8], reason)
        try:
            for leg in list(sess.legs.values()):
                if not leg.closed:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await leg.close(code=CLOSE_SESSION_END, message=reason.encode())
            if not sess.legs.get("agent"):
                # The agent may not have joined yet: tell it over its control link.
                await self.presence.send(
                    sess.agent_id,
                    {"type": "session_end", "session_id": session_id, "reason": reason},
                )
            await self.store.end_session(
                session_id,
                reason,
                detail=detail,
                bytes_to_agent=sess.bytes_to["agent"],
                bytes_to_technician=sess.bytes_to["technician"],
                asserted_by=by,
                ended_by_technician_id=technician_id,
                comment=comment,
                audit=(sess.agent_id, sess.technician_id),  # one transaction with the end
            )
            for cb in self.on_end:
                await cb(sess)
        finally:
            self.sessions.pop(session_id, None)
            sess.legs.clear()  # the closed sockets need not live on in the memo below
            self._recently_ended[session_id] = sess
            if len(self._recently_ended) > 1000:
                self._recently_ended.popitem(last=False)
            sess.done.set()
        return True

    def count_wrong_password(self, session_id: str, agent_id: str, technician_id: int) -> None:
        """One spent guess in this session, as the agent reported it over its authenticated
        control connection (never from a relay close or the API), counted once per session
        whenever the report arrives."""
        if session_id in self._counted:
            return
        self._counted[session_id] = None
        if len(self._counted) > 10_000:  # bounded memory: forget the oldest
            self._counted.popitem(last=False)
        self.limits.wrong_password(technician_id, agent_id)

    async def shutdown(self) -> None:
        """End every session (server stopping)."""
        for sid in list(self.sessions):
            await self.end(sid, "server_shutdown")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
