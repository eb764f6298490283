"""The agent's long-running loop: control connection, ID, password, sessions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiohttp import WSMsgType
from yarl import URL

from enkaku import __version__
from enkaku.agent.capture.base import ScreenCapture
from enkaku.agent.clipboard import Clipboard
from enkaku.agent.input.base import InputInjector
from enkaku.i18n import register
from enkaku.protocol.agentlink import CLOSE_INCOMPATIBLE, CLOSE_REPLACED, PROTOCOL
from enkaku.protocol.handshake import FailureReason
from enkaku.protocol.jsonlimits import loads_object
from enkaku.protocol.password import generate_password
from enkaku.protocol.terms import Terms
from enkaku.transport.proxy import proxy_kwargs

from .consent import ConsentPolicy, DenyAll, human_size
from .identity import DeviceKey
from .services import FileSettings
from .session import AgentSession, SessionRequest, expire_partials
from .ui import AgentUI, support_contact

log = logging.getLogger(__name__)

MAX_FAILED_ATTEMPTS = 3


class AgentReplaced(Exception):
    """Another agent process with this device key took over."""


class TermsRefused(Exception):
    """The customer did not accept the terms of use in force: the agent stops."""


class IncompatibleServer(Exception):
    """The server speaks another version of the agent link: retrying cannot help."""


_T = TypeVar("_T")

register(
    {
        "agent_update_available": (
            "A newer version of this support program is available: {url}",
            "このサポート用プログラムの新しいバージョンがあります: {url}",
        ),
        "agent_incompatible_server": (
            "This support program does not match the support server {server} (it is too old "
            "or too new). Download the current program from {server}/download/agent and "
            "start that one.",
            "このサポート用プログラムはサポートサーバー {server} と互換性がありません "
            "(古すぎるか新しすぎます)。{server}/download/agent から最新のプログラムを"
            "ダウンロードして起動してください。",
        ),
        "agent_terms_refused": (
            "The terms of use were not accepted: this computer cannot be supported, and the "
            "agent stops. Start it again to read and accept them.",
            "利用規約に同意いただけなかったため、このコンピューターはサポートを受けられません。"
            "エージェントを終了します。再度起動すると規約を確認して同意できます。",
        ),
        "agent_enrolment_linked": (
            "This computer is now registered to your company with the support company "
            "(enrolment code accepted).",
            "このコンピューターをサポート会社にお客様の会社のものとして登録しました "
            "(登録コードを確認しました)。",
        ),
        "agent_enrolment_already_linked_typed": (
            "This computer is already registered with the support company: no code is needed.",
            "このコンピューターはすでにサポート会社に登録されています。登録コードは不要です。",
        ),
        "agent_enrolment_invalid": (
            "The enrolment code is not valid (mistyped or withdrawn). Check it, or ask the "
            "support company for a new one. Support cannot be given until then.",
            "登録コードが正しくありません (入力間違いか、無効にされています)。コードを確認するか、"
            "サポート会社に新しいコードを依頼してください。それまではサポートを受けられません。",
        ),
        "agent_enrolment_expired": (
            "The enrolment code has expired. Ask the support company for a new one.",
            "登録コードの有効期限が切れています。サポート会社に新しいコードを依頼してください。",
        ),
        "agent_enrolment_used_up": (
            "The enrolment code was already used for as many computers as it allows. Ask the "
            "support company for a new one.",
            "この登録コードは登録できる台数まで使用済みです。サポート会社に新しいコードを"
            "依頼してください。",
        ),
        "agent_enrolment_required": (
            "This computer is not registered with the support company yet: start the "
            "support program with the enrolment code they gave you (--enrol CODE), or "
            "download it from the link they sent.",
            "このコンピューターはまだサポート会社に登録されていません。受け取った登録コードを"
            "付けて (--enrol コード) サポート用プログラムを起動するか、送られたリンクから"
            "ダウンロードしてください。",
        ),
        "agent_terms_accepted_option": (
            "Terms of use version {version} accepted (--accept-terms).",
            "利用規約 第 {version} 版に同意しました (--accept-terms)。",
        ),
    }
)


#: The welcome's enrolment outcomes the customer is told about (docs/records.md).
ENROLMENT_NOTICES = {
    status: f"agent_enrolment_{status}"
    for status in ("linked", "already_linked_typed", "invalid", "expired", "used_up", "required")
}

BACKOFF_MAX = 30.0
#: The control link's aiohttp heartbeat until the server says otherwise: a ping after
#: 15 s of silence, gone without a pong within 7.5 s (half the server's default
#: agent_heartbeat of 30 s; docs/protocol/agent-control.md).
DEFAULT_LINK_HEARTBEAT = 15.0
#: The largest message the agent reads from the server (docs/protocol/agent-control.md):
#: a welcome carries up to two versions of the terms of use (protocol.terms.MAX_WIRE).
MAX_SERVER_MESSAGE = 256 * 1024


class AgentRuntime:
    """Owns the control connection and at most one session at a time."""

    def __init__(
        self,
        server_url: str,
        key: DeviceKey,
        ui: AgentUI,
        *,
        consent: ConsentPolicy | None = None,
        capture_factory: Callable[[], ScreenCapture] | None = None,
        input_factory: Callable[[], InputInjector] | None = None,
        clipboard_factory: Callable[[], Clipboard] | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        new_password: Callable[[], str] = generate_password,
        files: FileSettings | None = None,
        accept_terms: str | None = None,
        enrol: str | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.key, self.ui = key, ui
        self.consent: ConsentPolicy = consent or DenyAll()
        self.capture_factory, self.input_factory = capture_factory, input_factory
        self.clipboard_factory = clipboard_factory
        self.files = files or FileSettings()
        #: --accept-terms: this exact version is accepted without asking (scripted installs).
        self.accept_terms = accept_terms
        #: The enrolment code sent in every hello (docs/records.md); the server links
        #: the machine on the first one and reports "already_linked" after that.
        self.enrol = (enrol or "").strip() or None
        self._enrolment_told: str | None = None
        #: The code was typed in the window: its answer is told even when it is
        #: "already linked" (the field waits for one).
        self._enrol_typed = False
        self.ssl_context = ssl_context
        self._new_password = new_password
        self.password = new_password()
        self.failed_attempts = 0
        self.agent_id = ""
        #: Relay legs' aiohttp heartbeat: half the server's heartbeat_timeout (welcome).
        self.heartbeat = 2.5
        #: The control link's: half the server's agent_heartbeat (welcome). The first
        #: connection, before any welcome, uses the server's default: a pong deadline of
        #: 1.25 s there made every agent drop at once when the server paused that long
        #: (benchmarks/README.md, Load).
        self.link_heartbeat = DEFAULT_LINK_HEARTBEAT
        self.http: aiohttp.ClientSession
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.session: AgentSession | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._update_told = False
        self._background: set[asyncio.Future[None]] = set()
        #: A terms version the server announced during the connection, being asked.
        self._terms_task: asyncio.Task[None] | None = None
        self._terms_refused = False
        #: The link was closed to send a new hello (enrol_with): reconnect without pause.
        self._reconnect_now = False

    # -- password ---------------------------------------------------------------

    def replace_password(self) -> None:
        self.password = self._new_password()
        self.failed_attempts = 0
        if self.agent_id:
            self.ui.credentials(self.agent_id, self.password)

    # -- enrolment ----------------------------------------------------------------

    def enrol_with(self, code: str) -> bool:
        """A code the customer typed in the window: sent in the hello of a new link
        connection made at once (the password and the ID stay). Not during a session (the
        link carries its reports): False then, and nothing changes."""
        code = code.strip()
        if not code or self.session is not None:
            return False
        self.enrol, self._enrolment_told, self._enrol_typed = code, None, True
        if self._ws is not None and not self._ws.closed:
            self._reconnect_now = True
            task = asyncio.ensure_future(self._close_link(self._ws))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return True

    @staticmethod
    async def _close_link(ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.close()

    def count_failed_attempt(self) -> FailureReason:
        """One more wrong password; the third replaces it. Returns what to tell the peer."""
        self.failed_attempts += 1
        if self.failed_attempts >= MAX_FAILED_ATTEMPTS:
            # Say why, then show the new credentials once (replace_password shows them).
            self.ui.notice("agent_password_replaced", limit=MAX_FAILED_ATTEMPTS)
            self.replace_password()
            self._report_later("password_replaced")
            return FailureReason.PASSWORD_REPLACED
        self.ui.notice(
            "agent_wrong_attempt", attempt=self.failed_attempts, limit=MAX_FAILED_ATTEMPTS
        )
        return FailureReason.WRONG_PASSWORD

    # -- main loop --------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected (with backoff) until stop()."""
        await expire_partials(self.files)
        delay = 1.0
        async with aiohttp.ClientSession() as self.http:
            while not self._stopping:
                try:
                    await self._connect_once()
                    delay = 1.0
                except AgentReplaced:
                    self.ui.notice("agent_replaced")
                    self._stopping = True
                    break
                except TermsRefused:
                    self.ui.notice("agent_terms_refused")
                    self._stopping = True
                    break
                except IncompatibleServer:
                    self.ui.notice("agent_incompatible_server", server=self.server_url)
                    self._stopping = True
                    break
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    if self._stopping:
                        break
                    wait = min(BACKOFF_MAX, delay) * (0.8 + 0.4 * random.random())
                    self.ui.notice(
                        "agent_offline_retry",
                        server=self.server_url,
                        detail=str(exc) or type(exc).__name__,
                        delay=wait,
                    )
                    await asyncio.sleep(wait)
                    delay = min(BACKOFF_MAX, delay * 2)
                    continue
                if self._reconnect_now:
                    self._reconnect_now = False
                elif not self._stopping:
                    await asyncio.sleep(0.5 + random.random())
            await self._end_session("customer_ended")

    async def stop(self, reason: str = "customer_ended") -> None:
        self._stopping = True
        await self._end_session(reason)
        if self._ws is not None:
            await self._ws.close()

    async def _connect_once(self) -> None:
        url = str(
            URL(self.server_url).with_scheme("wss" if self.server_url.startswith("https") else "ws")
            / "ws"
            / "agent"
        )
        async with self.http.ws_connect(
            url,
            heartbeat=self.link_heartbeat,
            ssl=self.ssl_context,
            compress=0,
            max_msg_size=MAX_SERVER_MESSAGE,
            **proxy_kwargs(url),
        ) as ws:
            self._ws = ws
            challenge = await self._receive_json(ws, timeout=15)
            raw_nonce = challenge.get("nonce")
            if not (isinstance(raw_nonce, str) and re.fullmatch(r"[0-9a-f]{64}", raw_nonce)):
                raise ValueError("malformed challenge from the server")
            if challenge.get("protocol", PROTOCOL) != PROTOCOL:
                raise IncompatibleServer
            nonce = bytes.fromhex(raw_nonce)
            await ws.send_str(
                json.dumps(
                    {
                        "type": "hello",
                        "public_key": self.key.public_hex,
                        "signature": self.key.sign_challenge(nonce),
                        "agent_version": __version__,
                        "platform": "linux",
                        "protocol": PROTOCOL,
                        **({"enrol": self.enrol} if self.enrol else {}),
                    }
                )
            )
            welcome = await self._receive_json(ws, timeout=15)
            if welcome.get("type") != "welcome":
                raise ValueError("server refused the device key")
            agent_id, heartbeat = welcome.get("agent_id"), welcome.get("heartbeat", 5.0)
            # Both are shown or used as they are: the ID is printed for the customer to
            # read aloud, so it must be the 9 digits and nothing else.
            if not (isinstance(agent_id, str | int) and re.fullmatch(r"[0-9]{9}", str(agent_id))):
                raise ValueError("malformed welcome from the server (agent_id)")
            # A server before agent_heartbeat existed: its heartbeat is the link's too.
            link_heartbeat = welcome.get("agent_heartbeat", heartbeat)
            for value in (heartbeat, link_heartbeat):
                if not isinstance(value, int | float) or not 0 < value <= 3600:
                    raise ValueError("malformed welcome from the server (heartbeat)")
            changed = self.agent_id != str(agent_id)
            self.agent_id = str(agent_id)
            self.heartbeat = max(0.5, float(heartbeat) / 2)
            # Used from the next connection on (this one keeps its own).
            self.link_heartbeat = max(0.5, float(link_heartbeat) / 2)
            self.ui.notice("agent_online", server=self.server_url)
            update_url = welcome.get("update_url")  # this agent is older than the server
            if (
                not self._update_told
                and isinstance(update_url, str)
                and re.fullmatch(r"https?://[!-~]{1,200}", update_url)
            ):
                self._update_told = True
                self.ui.notice("agent_update_available", url=update_url)
            self._enrolment_step(welcome.get("enrolment"))
            support = support_contact(welcome.get("support"))
            if support is not None:
                self.ui.support_contact(*support)
            # No ID is shown before the terms in force are accepted.
            asked = await self._terms_step(ws, welcome)
            if changed or asked:  # first contact, another ID (database reset), new terms
                self.ui.credentials(self.agent_id, self.password)
            try:
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT:
                        break
                    try:
                        # A ProtocolError (oversized, nested too deep, not an object) is a
                        # ValueError: logged and ignored like any malformed message.
                        await self._handle(loads_object(msg.data, max_bytes=MAX_SERVER_MESSAGE))
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("ignoring a malformed message from the server: %s", exc)
            finally:
                await self._cancel_terms_question()
        self._ws = None
        if ws.close_code == CLOSE_REPLACED:
            raise AgentReplaced
        if self._terms_refused:
            raise TermsRefused

    def _enrolment_step(self, enrolment: object) -> None:
        """Tell the customer how the enrolment code went (once per outcome; a code
        already used by this machine says nothing)."""
        status = enrolment.get("status") if isinstance(enrolment, dict) else None
        if status == "already_linked" and self._enrol_typed:
            status = "already_linked_typed"  # the window's field waits for an answer
        self._enrol_typed = False
        if status not in ENROLMENT_NOTICES or status == self._enrolment_told:
            return
        self._enrolment_told = status
        self.ui.notice(ENROLMENT_NOTICES[status])

    async def _terms_step(
        self, ws: aiohttp.ClientWebSocketResponse, welcome: dict[str, Any]
    ) -> bool:
        """The welcome's terms: the version in force accepted here if it was not yet
        (asking the customer unless --accept-terms names it), the upcoming one shown as a
        notice. True if this connection accepted a version. Raises TermsRefused."""
        raw, raw_upcoming = welcome.get("terms"), welcome.get("terms_upcoming")
        if raw_upcoming is not None:
            self.ui.terms_upcoming(Terms.from_json(raw_upcoming))
        if raw is None:  # none published: nothing to accept
            return False
        terms = Terms.from_json(raw)
        if raw.get("accepted") is True:
            return False
        if terms.version == self.accept_terms:
            self.ui.notice("agent_terms_accepted_option", version=terms.version)
        elif not await self._while_reading(ws, self.ui.ask_terms(terms)):
            raise TermsRefused
        await ws.send_str(json.dumps({"type": "accept_terms", "version": terms.version}))
        async with asyncio.timeout(15):
            while True:
                msg = await self._receive_json(ws, timeout=15)
                if msg.get("type") == "terms_accepted" and msg.get("version") == terms.version:
                    return True

    def _terms_changed(self, msg: dict[str, Any]) -> None:
        """The server's ``terms`` message (the terms changed during the connection): the
        new version in force is asked in the background (the link keeps being read), an
        upcoming one shown."""
        raw, raw_upcoming = msg.get("terms"), msg.get("terms_upcoming")
        if raw_upcoming is not None:
            self.ui.terms_upcoming(Terms.from_json(raw_upcoming))
        if raw is None:
            return
        terms = Terms.from_json(raw)  # ValueError unless an object of the right shape
        if raw.get("accepted") is True:
            return
        if self._terms_task is not None and not self._terms_task.done():
            self._terms_task.cancel()  # a question about a version no longer in force
        self._terms_task = asyncio.create_task(self._ask_terms_later(terms))

    async def _ask_terms_later(self, terms: Terms) -> None:
        ws = self._ws
        if terms.version == self.accept_terms:
            self.ui.notice("agent_terms_accepted_option", version=terms.version)
        elif not await self.ui.ask_terms(terms):
            self._terms_refused = True
            if ws is not None:
                await ws.close()
            return
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps({"type": "accept_terms", "version": terms.version}))

    async def _cancel_terms_question(self) -> None:
        task, self._terms_task = self._terms_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _while_reading(self, ws: aiohttp.ClientWebSocketResponse, work: Awaitable[_T]) -> _T:
        """Run ``work`` (the customer reading the terms) while reading the link, whose
        pings must be answered. A closed link ends it with ValueError; other messages are
        ignored (the server sends no session request before the terms are accepted)."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                recv = asyncio.ensure_future(ws.receive())
                await asyncio.wait({recv, task}, return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    recv.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await recv
                    return task.result()
                msg = recv.result()
                if msg.type != WSMsgType.TEXT:
                    raise ValueError(f"server closed the control connection ({msg.data})")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _receive_json(
        self, ws: aiohttp.ClientWebSocketResponse, timeout: float
    ) -> dict[str, Any]:
        msg = await ws.receive(timeout=timeout)
        if msg.type == WSMsgType.CLOSE and msg.data == CLOSE_INCOMPATIBLE:
            raise IncompatibleServer
        if msg.type != WSMsgType.TEXT:
            raise ValueError(f"server closed the control connection ({msg.data} {msg.extra or ''})")
        return loads_object(msg.data, max_bytes=MAX_SERVER_MESSAGE)

    async def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "terms":
            self._terms_changed(msg)
        elif kind == "terms_accepted":
            # A version announced during the connection was accepted: the ID again.
            self.ui.credentials(self.agent_id, self.password)
        elif kind == "session_request":
            req = SessionRequest.parse(msg, self._resolve)
            if self.session is not None:
                await self.report(req.session_id, "busy")
                return
            self.session = AgentSession(self, req)
            self._session_task = asyncio.create_task(self._run_session(self.session))
        elif (
            kind == "session_end"
            and self.session is not None
            and self.session.req.session_id == msg.get("session_id")
        ):
            self.session.end(str(msg.get("reason", "timeout")))

    def _resolve(self, path: str) -> str:
        base = URL(self.server_url)
        return str(base.with_scheme("wss" if base.scheme == "https" else "ws").with_path(path))

    async def _run_session(self, session: AgentSession) -> None:
        reason = "connection_lost"
        try:
            reason = await session.run()
        except Exception:
            log.exception("session %s failed", session.req.session_id[:8])
        finally:
            self.session = None
            paired_and_authenticated = session.channel is not None
            log.info("session %s ended: %s", session.req.session_id[:8], reason)
            if paired_and_authenticated:
                self.ui.session_ended(reason)
                stats = session.traffic()
                if stats is not None:  # what the customer's connection carried (billed)
                    self.ui.notice(
                        "agent_traffic",
                        sent=human_size(stats.sent),
                        received=human_size(stats.received),
                    )
                # Every session ends with a new password: the same credentials never
                # reconnect.
                self.replace_password()
            await self.report(session.req.session_id, "ended", reason)

    async def _end_session(self, reason: str) -> None:
        if self.session is not None:
            self.session.end(reason)
        if self._session_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._session_task), 10)

    async def report(self, session_id: str, event: str, detail: str | None = None) -> None:
        """Tell the server a metadata event about a session (never content)."""
        ws = self._ws
        if ws is None or ws.closed:
            return
        msg: dict[str, Any] = {"type": "session_event", "session_id": session_id, "event": event}
        if detail:
            msg["detail"] = detail
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(json.dumps(msg))

    def _report_later(self, event: str) -> None:
        if self.session is not None:
            task = asyncio.ensure_future(self.report(self.session.req.session_id, event))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
