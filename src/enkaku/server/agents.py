"""The agents' control WebSocket: /ws/agent.

Wire (JSON text messages, docs/protocol/agent-control.md):

    server → agent  {"type": "challenge", "nonce": <hex 32 bytes>, "protocol": 1}
    agent → server  {"type": "hello", "public_key": <hex Ed25519>, "signature": <hex>,
                     "agent_version": str, "platform": str, "protocol": 1,
                     "enrol"?: str}
                    enrol: an enrolment code (docs/records.md) linking the machine to a
                    customer; the welcome's "enrolment" says how it went
                    protocol: the link version the agent speaks (absent: 1, as
                    agents before the field sent none); any other closes 4426
                    signature = Ed25519(b"enkaku/1 agent-auth\\0" + nonce)
    server → agent  {"type": "welcome", "agent_id": "123456789", "heartbeat": seconds,
                     "agent_heartbeat": seconds,
                     "terms": {version, published, effective, text: {en, ja},
                               "accepted": bool} | null,
                     "terms_upcoming": {version, published, effective, text} | null,
                     "support": {"name": str, "phone": str | null} | null,
                     "enrolment"?: {"status": "linked" | "already_linked" | "invalid" |
                                    "expired" | "used_up" | "required"}}
                    heartbeat: relay legs (heartbeat_timeout); agent_heartbeat: this link
    agent → server  {"type": "accept_terms", "version": V}   (V: the version in force)
    server → agent  {"type": "terms_accepted", "version": V}
    server → agent  {"type": "terms", "terms": ..., "terms_upcoming": ...}   (as in welcome)
                    when the versions in force or upcoming change while it is connected
    server → agent  {"type": "session_request", "session_id", "relay_url" (absolute, or
                     null: then resolve "relay_path" against the agent's server URL),
                     "relay_path", "relay_token",
                     "technician": {"name", "company"}, "implicit_consent": bool}
    server → agent  {"type": "session_end", "session_id", "reason"}
    agent → server  {"type": "session_event", "session_id", "event", "detail"?}
                    events and the shape of their detail: SESSION_EVENTS below

The agent's ID is bound to its device key: the same key always gets the same ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Coroutine
from datetime import date
from typing import Any

import pysodium
from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy.exc import OperationalError

from enkaku import __version__
from enkaku.protocol.agentlink import (
    AUTH_CONTEXT,
    CLOSE_INCOMPATIBLE,
    CLOSE_MALFORMED,
    CLOSE_RATE_LIMITED,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    MAX_HELLO,
    PROTOCOL,
)
from enkaku.protocol.jsonlimits import loads_object

from .preauth import PendingConnections, RegistrationLimiter, peer_address, too_many_connections
from .presence import Presence
from .ratelimit import SessionLimits
from .relay import RelayHub
from .settings import Settings
from .store.models import TermsVersion
from .store.repo import Store
from .terms import terms_today, to_terms

log = logging.getLogger(__name__)

MAX_CONTROL = 16 * 1024
#: Seconds the versions of the terms in force and upcoming are kept in memory.
TERMS_CACHE = 5.0
#: An enrolment code longer than this is not one (they are 19 characters).
MAX_ENROLMENT_CODE = 64
#: How often connected agents are checked for a change of the terms (a version that came
#: into force, one newly published).
TERMS_CHECK = 60.0
#: Close code for an agent whose bookkeeping the database could not do right now
#: ("try again later"; the agent reconnects with its backoff).
CLOSE_TRY_AGAIN = 1013
#: Metadata the agent may report about a session, and the shape its detail must have:
#: short codes and numbers, never content (no file names, text or keystrokes).
_CODE = r"[a-z_]{1,32}"
#: A transfer's detail: its size, then optionally the SHA-256 of its bytes and its name
#: (no folder; printable, at most 1,020 characters; docs/protocol/files.md).
_FILE = r"([0-9]{1,15})(?::([0-9a-f]{64}):([^\x00-\x1f\x7f/]{1,1020}))?"
FILE_EVENTS = ("file_received", "file_sent")
SESSION_EVENTS: dict[str, re.Pattern[str] | None] = {
    "busy": None,
    "wrong_password": None,
    "password_replaced": None,
    "consent_granted": None,
    "consent_denied": None,
    "ended": re.compile(_CODE),
    "handshake_failed": None,
    # consent per action (docs/protocol/control.md): the action, and why not
    "action_granted": re.compile(_CODE),
    "action_denied": re.compile(rf"{_CODE}:{_CODE}"),
    "action_withdrawn": re.compile(_CODE),
    # what the tools did: sizes and counts only
    "system_info_sent": re.compile(r"[0-9]{1,12}"),
    # SIZE, or SIZE:SHA256:NAME (the name kept as the audit_file_names setting says)
    "file_received": re.compile(_FILE),
    "file_sent": re.compile(_FILE),
    "file_failed": re.compile(_CODE),
    "screenshot_sent": re.compile(r"[0-9]{1,5}x[0-9]{1,5}"),
    "terminal_opened": None,
    "terminal_closed": re.compile(r"-?[0-9]{1,5}"),
    "clipboard_to_customer": re.compile(r"[0-9]{1,9}"),
    "clipboard_from_customer": re.compile(r"[0-9]{1,9}"),
    "text_typed": re.compile(r"[0-9]{1,5}"),
}


def file_audit(detail: str, names: str) -> tuple[str, dict[str, Any]]:
    """A transfer's detail (already of the shape ``_FILE``) as the audit event's detail
    (the size) and file fields; ``names`` is the audit_file_names setting: "clear" keeps
    the name, "hash" only ``sha256:`` and the SHA-256 of its UTF-8 bytes."""
    match = re.fullmatch(_FILE, detail)
    assert match is not None
    size, sha, name = match.groups()
    fields: dict[str, Any] = {"file_size": int(size)}
    if sha is not None and name is not None:
        fields["file_sha256"] = sha
        fields["file_name"] = name if names == "clear" else hash_file_name(name)
    return size, fields


def hash_file_name(name: str) -> str:
    """How audit events keep a file name with audit_file_names = hash (docs/privacy.md)."""
    return "sha256:" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


class AgentConnection:
    """The server's end of one authenticated agent control connection."""

    def __init__(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        self.agent_id = agent_id
        self.ws = ws
        self._lock = asyncio.Lock()
        #: The terms versions (in force, upcoming) this agent was last told about.
        self.terms_told: tuple[str | None, str | None] = (None, None)

    async def send(self, message: dict[str, Any]) -> None:
        async with self._lock:
            await self.ws.send_str(json.dumps(message))

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode())


class AgentGateway:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        presence: Presence,
        relay: RelayHub,
        failures: SessionLimits,
        *,
        pending: PendingConnections | None = None,
        registrations: RegistrationLimiter | None = None,
    ) -> None:
        self.settings, self.store, self.presence = settings, store, presence
        self.relay, self.failures = relay, failures
        #: Unauthenticated sockets per address, shared with the relay.
        self.pending = pending or relay.pending
        self.registrations = registrations or RegistrationLimiter(
            settings.agent_registration_burst, settings.agent_registrations_per_minute
        )
        self.connections: set[web.WebSocketResponse] = set()
        self._terms_cache: (
            tuple[date, float, tuple[TermsVersion | None, TermsVersion | None]] | None
        ) = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Authenticated links by agent ID, to tell them of a change of the terms.
        self._live: dict[str, AgentConnection] = {}
        self._terms_watch: asyncio.Task[None] | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        address = peer_address(request, self.settings.behind_proxy)
        if not self.pending.acquire(address):
            raise too_many_connections(self.settings.auth_timeout)
        pending = True
        # The control link has its own, longer heartbeat than the relay legs: a ping every
        # agent_heartbeat / 2, a pong within agent_heartbeat / 4 (aiohttp). A closed TCP
        # connection is noticed at once either way; the heartbeat only finds silent loss.
        ws = web.WebSocketResponse(
            heartbeat=self.settings.agent_heartbeat / 2, max_msg_size=MAX_CONTROL, compress=False
        )
        try:
            await ws.prepare(request)
            self.connections.add(ws)
            try:
                authenticated = await self._authenticate(ws, address)
            except ConnectionError:
                # The peer vanished (e.g. gave up waiting) while we wrote to it.
                log.debug("agent link from %s closed during authentication", address)
                return ws
            except OperationalError as exc:
                # E.g. SQLite's "database is locked" under a burst of reconnects: this
                # agent retries with its backoff; nothing is half-written.
                log.warning(
                    "agent link from %s: database busy (%s); asked to retry",
                    address,
                    _first_line(exc),
                )
                with contextlib.suppress(Exception):
                    await ws.close(code=CLOSE_TRY_AGAIN, message=b"server busy; retry later")
                return ws
            self.pending.release(address)
            pending = False
            if authenticated is None:
                return ws
            agent_id, terms = authenticated
            conn = AgentConnection(agent_id, ws)
            conn.terms_told = _versions(terms)
            self._live[agent_id] = conn
            if self._terms_watch is None:
                self._terms_watch = asyncio.get_running_loop().create_task(self._watch_terms())
            replaced = await self.presence.register(conn)
            if replaced is not None:
                with contextlib.suppress(Exception):
                    await replaced.close(CLOSE_REPLACED, "replaced by a newer connection")
            log.info("agent %s online", agent_id)
            try:
                await conn.send(
                    {
                        "type": "welcome",
                        "agent_id": agent_id,
                        "heartbeat": self.settings.heartbeat_timeout,
                        "agent_heartbeat": self.settings.agent_heartbeat,
                        "support": self.settings.support,
                        **terms,
                    }
                )
                await self._serve(conn)
            except ConnectionError:
                # The agent went away while we wrote to it: an ordinary disconnect.
                log.debug("agent %s closed its link while we were sending", agent_id)
            finally:
                await self.presence.unregister(conn)
                if self._live.get(agent_id) is conn:
                    del self._live[agent_id]
                # Its own task: aiohttp may cancel this handler, and the write must
                # finish before the store closes (drain()).
                self._spawn(self._went_offline(agent_id))
                log.info("agent %s offline", agent_id)
            return ws
        finally:
            if pending:
                self.pending.release(address)
            self.connections.discard(ws)

    async def _went_offline(self, agent_id: str) -> None:
        try:
            await self.store.touch_agent(agent_id)
        except OperationalError as exc:
            # Only last_seen_at (for expiry) is lost, and the next contact sets it again.
            log.warning(
                "agent %s: last-seen time not recorded, database busy (%s)",
                agent_id,
                _first_line(exc),
            )

    async def _authenticate(
        self, ws: web.WebSocketResponse, address: str
    ) -> tuple[str, dict[str, Any]] | None:
        """The agent's ID and the welcome's terms (and update) fields, or None (the link is
        closed)."""
        nonce = secrets.token_bytes(32)
        await ws.send_str(
            json.dumps({"type": "challenge", "nonce": nonce.hex(), "protocol": PROTOCOL})
        )
        try:
            msg = await asyncio.wait_for(ws.receive(), self.settings.auth_timeout)
            if msg.type != WSMsgType.TEXT:
                raise ValueError("expected hello")
            if len(msg.data) > MAX_HELLO:  # characters ≤ bytes: the exact check follows
                await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=b"hello too large")
                return None
            hello = loads_object(msg.data, max_bytes=MAX_HELLO)
            if hello.get("type") != "hello":
                raise ValueError("expected hello")
            key_hex, sig_hex = hello["public_key"], hello["signature"]
            public_key, signature = bytes.fromhex(key_hex), bytes.fromhex(sig_hex)
            if len(public_key) != 32 or len(signature) != 64:
                raise ValueError("bad key or signature length")
            # libsodium, unlike OpenSSL, refuses small-order keys and non-canonical
            # signatures: an all-zero key must never verify.
            pysodium.crypto_sign_verify_detached(signature, AUTH_CONTEXT + nonce, public_key)
        except (TimeoutError, ValueError, KeyError, TypeError):
            # ProtocolError (oversized, too deep, not JSON) is a ValueError too.
            log.info("agent authentication failed from %s", address)
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"device key proof failed")
            return None
        # An agent for another version of this link (a newer one that read our challenge,
        # or a build that speaks only its own) is told so, in a close the agent turns into
        # "download the current program": serving it could only fail in odd places.
        spoken = hello.get("protocol", PROTOCOL)
        if spoken != PROTOCOL:
            log.info("agent from %s speaks link protocol %r, not %d", address, spoken, PROTOCOL)
            await ws.close(
                code=CLOSE_INCOMPATIBLE,
                message=f"agent link protocol {PROTOCOL} required".encode(),
            )
            return None
        key = public_key.hex()  # canonical: one key, one spelling, one ID
        update = _update_fields(hello.get("agent_version"), self.settings.base_url)
        in_force, upcoming = await self._current_terms()
        known = await self.store.find_agent(key)
        if known is not None:
            accepted = in_force is not None and await self.store.has_accepted(
                known, in_force.version
            )
            enrolment = await self._enrolment(known, hello.get("enrol"))
            return known, {
                **_terms_fields(in_force, upcoming, accepted),
                **update,
                **enrolment,
            }
        # Only a key never seen before costs a token: reconnects are not registrations.
        if not self.registrations.allow(address):
            log.info("agent registration from %s refused: rate limit", address)
            await ws.close(code=CLOSE_RATE_LIMITED, message=b"too many new agents; retry later")
            return None
        # A new agent has accepted nothing: no query (the welcome follows at once).
        agent_id = await self.store.agent_for_key(key)
        return agent_id, {
            **_terms_fields(in_force, upcoming, False),
            **update,
            **await self._enrolment(agent_id, hello.get("enrol")),
        }

    async def _enrolment(self, agent_id: str, code: object) -> dict[str, Any]:
        """The welcome's ``enrolment`` field: the outcome of the hello's enrolment code
        (linked, already_linked, invalid, expired, used_up), or "required" when this
        server serves only enrolled machines and this one is not; nothing otherwise
        (docs/records.md#enrolment-codes)."""
        if isinstance(code, str) and code.strip():
            if len(code) > MAX_ENROLMENT_CODE:
                status = "invalid"
            else:
                status, _ = await self.store.records.enrol(agent_id, code)
            if status == "linked":
                log.info("agent %s linked to its customer by an enrolment code", agent_id)
            elif status != "already_linked":
                log.info("agent %s: enrolment code refused (%s)", agent_id, status)
            return {"enrolment": {"status": status}}
        if (
            self.settings.require_enrolment
            and await self.store.records.agent_link(agent_id) is None
        ):
            return {"enrolment": {"status": "required"}}
        return {}

    async def _current_terms(self) -> tuple[TermsVersion | None, TermsVersion | None]:
        """The versions in force and upcoming, read at most every TERMS_CACHE seconds:
        every (re)connection needs them, thousands at once after a network blip, and a
        version published with `enkaku admin terms` is seen within that time."""
        today, now = terms_today(), time.monotonic()
        cached = self._terms_cache
        if cached is not None and cached[0] == today and now - cached[1] < TERMS_CACHE:
            return cached[2]
        current = await self.store.current_terms(today)
        self._terms_cache = (today, now, current)
        return current

    async def _accept_terms(self, conn: AgentConnection, data: dict[str, Any]) -> None:
        """Record the agent's acceptance of the version in force, and confirm it. Any
        other version (e.g. one superseded since the welcome) is a malformed message: the
        agent reconnects and is shown the version in force."""
        version = data["version"]
        in_force, _ = await self.store.current_terms(terms_today())
        if in_force is None or version != in_force.version:
            raise ValueError("accept_terms for a version not in force")
        await self.store.accept_terms(conn.agent_id, in_force.version)
        log.info("agent %s accepted terms version %s", conn.agent_id, in_force.version)
        await conn.send({"type": "terms_accepted", "version": in_force.version})

    async def _serve(self, conn: AgentConnection) -> None:
        ws = conn.ws
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            try:
                data = loads_object(msg.data, max_bytes=MAX_CONTROL)
                await self._handle_message(conn, data)
            except (ValueError, KeyError, TypeError):
                log.debug("agent %s sent a malformed control message", conn.agent_id)
                await ws.close(code=CLOSE_MALFORMED, message=b"malformed control message")
                break

    async def _handle_message(self, conn: AgentConnection, data: dict[str, Any]) -> None:
        if data.get("type") == "accept_terms":
            await self._accept_terms(conn, data)
            return
        if data.get("type") != "session_event":
            raise ValueError("unknown message type")
        session_id, event = str(data["session_id"]), str(data["event"])
        if event not in SESSION_EVENTS:
            raise ValueError("unknown session event")
        detail = data.get("detail")
        shape = SESSION_EVENTS[event]
        if detail is not None and (shape is None or not shape.fullmatch(str(detail))):
            # Not metadata of the expected shape: recorded without it, never stored.
            log.info("agent %s: %s event with an unexpected detail", conn.agent_id, event)
            detail = None
        detail = str(detail) if detail is not None else None
        file_fields: dict[str, Any] = {}
        if event in FILE_EVENTS and detail is not None:
            detail, file_fields = file_audit(detail, self.settings.audit_file_names)
        live = self.relay.sessions.get(session_id)
        if live is not None:
            agent_id, technician_id = live.agent_id, live.technician_id
        else:  # the relay already closed it (e.g. the "ended" report): use the record
            row = await self.store.get_session(session_id)
            if row is None:
                return
            agent_id, technician_id = row.agent_id, row.technician_id
        if agent_id != conn.agent_id:
            return  # a foreign session: never trust it
        await self.store.audit(
            "agent",
            event,
            session_id=session_id,
            agent_id=agent_id,
            technician_id=technician_id,
            detail=detail,
            **file_fields,
        )
        if event == "busy":
            await self.relay.end(session_id, "busy", by="agent")
        elif event in ("wrong_password", "handshake_failed"):
            # Both are spent guesses: a share answered wrongly or not at all. Only this
            # authenticated report counts them, never a relay close or the API.
            self.relay.count_wrong_password(session_id, agent_id, technician_id)
        elif event in ("consent_granted", "consent_denied"):
            # The agent checked the technician's key confirmation: the password was right.
            # That ends her count for this agent only, never anyone else's.
            self.failures.verified(technician_id, agent_id)
            if event == "consent_granted" and live is not None:
                live.consent_granted = True
            if live is not None:
                live.consent_answered.set()
            if event == "consent_granted":
                # A machine not linked to a customer yet becomes the customer's whose
                # contract this session is billed to (audited; docs/records.md).
                link = await self.store.records.link_on_consent(session_id)
                if link is not None:
                    log.info("agent %s linked to its customer by consent", agent_id)

    async def check_terms(self) -> int:
        """Tell every connected agent whose terms changed since it was last told (a
        version came into force, or one was published) with a ``terms`` message, as in
        ``welcome``. Returns how many were told."""
        in_force, upcoming = await self.store.current_terms(terms_today())
        now = (in_force.version if in_force else None, upcoming.version if upcoming else None)
        told = 0
        for conn in list(self._live.values()):
            if conn.terms_told == now:
                continue
            accepted = in_force is not None and await self.store.has_accepted(
                conn.agent_id, in_force.version
            )
            conn.terms_told = now
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.send({"type": "terms", **_terms_fields(in_force, upcoming, accepted)})
                told += 1
        return told

    async def _watch_terms(self) -> None:
        while True:
            await asyncio.sleep(TERMS_CHECK)
            try:
                told = await self.check_terms()
            except OperationalError as exc:  # the next round tries again
                log.warning("terms check skipped, database busy (%s)", _first_line(exc))
                continue
            if told:
                log.info("told %d connected agent(s) of a change of the terms", told)

    async def shutdown(self) -> None:
        if self._terms_watch is not None:
            self._terms_watch.cancel()
        for ws in list(self.connections):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server shutting down")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the bookkeeping writes of connections that ended (before the store
        closes)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _update_fields(agent_version: object, base_url: str) -> dict[str, str]:
    """``update_url`` for an agent older than this server: where the current one is
    (server/downloads.py). Versions are compared as numbers; anything else is not older."""
    try:
        older = _numbers(str(agent_version)) < _numbers(__version__)
    except ValueError:
        return {}
    return {"update_url": base_url + "/download/agent"} if older else {}


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _terms_fields(
    in_force: TermsVersion | None, upcoming: TermsVersion | None, accepted: bool
) -> dict[str, Any]:
    """The welcome's terms fields: the version in force (and whether this agent accepted
    it) and the one announced next; both null when none is published."""
    current: dict[str, Any] | None = None
    if in_force is not None:
        current = {**to_terms(in_force).to_json(), "accepted": accepted}
    return {
        "terms": current,
        "terms_upcoming": to_terms(upcoming).to_json() if upcoming is not None else None,
    }


def _versions(fields: dict[str, Any]) -> tuple[str | None, str | None]:
    """(in force, upcoming) versions of a welcome's or terms message's fields."""
    current, upcoming = fields.get("terms"), fields.get("terms_upcoming")
    return (
        current["version"] if current else None,
        upcoming["version"] if upcoming else None,
    )


def _first_line(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's statement and parameters."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0][:200]
