"""`enkaku login`, `enkaku connect` and `enkaku end`: the technician's side of a session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from enkaku.i18n import printable, reason_text, register, t
from enkaku.protocol import control
from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.handshake import FailureReason, PeerRejectedPassword, TechnicianHandshake
from enkaku.protocol.jsonlimits import loads_limited
from enkaku.protocol.password import normalize_password
from enkaku.transport.channel import SecureChannel, run_handshake
from enkaku.transport.errors import SessionEnded, TransportError
from enkaku.transport.proxy import proxy_kwargs
from enkaku.transport.relay import open_leg

from .session import TechnicianSession

if TYPE_CHECKING:
    from .control_socket import ChatHub
    from .vncbridge import VNCBridge

log = logging.getLogger(__name__)

CONSENT_WAIT = 120.0

register(
    {
        "chat_from_customer": ("[{at}] customer: {text}", "[{at}] お客様: {text}"),
        "passwd_http_error": (
            "The password was not changed (HTTP {status}).",
            "パスワードは変更されませんでした (HTTP {status})。",
        ),
    }
)


class ExitCode:
    """`enkaku connect` / `login` / `end` / `session` exit codes (docs/cli.md)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_LOGGED_IN = 3
    REFUSED = 4  # agent offline, unknown contract, rate limited, ...
    WRONG_PASSWORD = 5
    PASSWORD_REPLACED = 6
    CONSENT_DENIED = 7
    ENDED_BY_PEER = 8
    CONNECTION_LOST = 9
    NO_SESSION = 10  # `enkaku session`: no `enkaku connect` holds a session (or several do)


class ClientError(Exception):
    """A failure with a user-facing message and an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _lang_message(body: Any, fallback: str) -> str:
    from enkaku.i18n import language, printable

    # The server's text, printed on the technician's terminal: no control characters.
    # A problem document's own message first; the deprecated "error" member of older
    # servers (and of the allowance warning) after it.
    for source in (body, body.get("error") if isinstance(body, dict) else None):
        try:
            return printable(str(source["message"][language()]), 1000)  # type: ignore[index]
        except (KeyError, TypeError):
            continue
    return fallback


#: The largest API response the client parses (the real ones are a few hundred bytes).
MAX_API_RESPONSE = 1024 * 1024


async def api_call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = None,
    json_body: dict[str, Any] | None = None,
    ssl_context: ssl.SSLContext | bool = True,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with http.request(
            method, url, json=json_body, headers=headers, ssl=ssl_context, **proxy_kwargs(url)
        ) as r:
            # Size- and depth-checked: a hostile or broken server cannot send the CLI
            # into a RecursionError or an unbounded read.
            raw = b""
            while len(raw) <= MAX_API_RESPONSE:
                chunk = await r.content.read(MAX_API_RESPONSE + 1 - len(raw))
                if not chunk:
                    break
                raw += chunk
            try:
                body = loads_limited(raw, max_bytes=MAX_API_RESPONSE)
            except ValueError:  # ProtocolError: empty, not JSON, too large, too deep
                body = None
            return r.status, body
    except (aiohttp.ClientError, OSError) as exc:
        server = str(url).split("/api/")[0]
        raise ClientError(
            t("server_unreachable", server=server, detail=exc), ExitCode.CONNECTION_LOST
        ) from None


class TotpRequired(ClientError):
    """The password was right and the account has a second factor: ask for its code."""


def _error_code(body: Any) -> str | None:
    for source in (body, body.get("error") if isinstance(body, dict) else None):
        try:
            return str(source["code"])  # type: ignore[index]
        except (KeyError, TypeError):
            continue
    return None


async def login(
    server: str,
    user: str,
    password: str,
    *,
    totp: str | None = None,
    ssl_context: ssl.SSLContext | bool = True,
) -> str:
    """Exchange credentials (and the authenticator's code, or a recovery code, when the
    account has one) for an API token; TotpRequired when the code is needed."""
    body: dict[str, Any] = {"username": user, "password": password, "label": "enkaku CLI"}
    if totp is not None:
        body["totp"] = totp
    async with aiohttp.ClientSession() as http:
        status, answer = await api_call(
            http, "POST", f"{server}/api/v1/auth/token", json_body=body, ssl_context=ssl_context
        )
    if status != 201:
        message = _lang_message(answer, t("login_http_error", status=status))
        if status == 401 and _error_code(answer) == "totp_required":
            raise TotpRequired(message, ExitCode.NOT_LOGGED_IN)
        raise ClientError(message, ExitCode.NOT_LOGGED_IN if status == 401 else ExitCode.REFUSED)
    return str(answer["token"])


async def change_password(
    server: str,
    token: str,
    current: str,
    new: str,
    *,
    ssl_context: ssl.SSLContext | bool = True,
) -> None:
    """Change the logged-in technician's own password (`enkaku user passwd`)."""
    async with aiohttp.ClientSession() as http:
        status, answer = await api_call(
            http,
            "POST",
            f"{server}/api/v1/me/password",
            token=token,
            json_body={"current": current, "new": new},
            ssl_context=ssl_context,
        )
    if status == 401:
        raise ClientError(t("not_logged_in", server=server), ExitCode.NOT_LOGGED_IN)
    if not 200 <= status < 300:
        raise ClientError(
            _lang_message(answer, t("passwd_http_error", status=status)), ExitCode.REFUSED
        )


async def end_session(
    server: str,
    token: str,
    session_id: str,
    reason: str,
    comment: str | None,
    *,
    ssl_context: ssl.SSLContext | bool = True,
) -> None:
    """End a session through the API with a recorded reason (`enkaku end`).

    Says so on stderr and prints ``{"event": "ended", ...}`` on stdout; a refusal is a
    ClientError carrying the server's message in the user's language.
    """
    body: dict[str, Any] = {"reason": reason}
    if comment is not None:
        body["comment"] = comment
    async with aiohttp.ClientSession() as http:
        status, answer = await api_call(
            http,
            "POST",
            f"{server}/api/v1/sessions/{session_id}/end",
            token=token,
            json_body=body,
            ssl_context=ssl_context,
        )
    if status == 401:
        raise ClientError(t("not_logged_in", server=server), ExitCode.NOT_LOGGED_IN)
    if not 200 <= status < 300:
        raise ClientError(
            _lang_message(answer, t("end_http_error", status=status)), ExitCode.REFUSED
        )
    say(t("end_done", session_id=session_id, reason=reason_text(reason)))
    print(json.dumps({"event": "ended", "session_id": session_id, "reason": reason}), flush=True)


@dataclass
class ConnectOptions:
    server: str
    token: str
    agent_id: str
    password: str
    contract: str | None = None
    vnc_listen: tuple[str, int] | None = None
    #: Show only this monitor of the customer's (from 1, left to right) to VNC viewers.
    monitor: int | None = None
    ssl_context: ssl.SSLContext | bool = True
    heartbeat: float = 2.5


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def connect(opts: ConnectOptions, *, stop: asyncio.Event | None = None) -> int:
    """Run one session until it ends; returns the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    progress = _Progress()
    bridge = None
    try:
        if opts.vnc_listen:
            # Take the VNC address before the session is asked for: a busy port must fail
            # before the customer consents and the one-time password is spent.
            from .vncbridge import VNCBridge  # numpy and the RFB codecs: connect only

            bridge = VNCBridge(*opts.vnc_listen, monitor=opts.monitor)
            try:
                await bridge.bind()
            except OSError as exc:
                host, port = opts.vnc_listen
                addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                raise ClientError(
                    t(
                        "vnc_listen_failed",
                        addr=addr,
                        detail=os.strerror(exc.errno) if exc.errno else exc,
                    ),
                    ExitCode.USAGE,
                ) from None
        async with aiohttp.ClientSession() as http:
            task = asyncio.ensure_future(_connect(http, opts, stop, progress, bridge))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if task.done() or progress.established:
                return await task  # once established, the session handles Ctrl-C itself
            # Ctrl-C while pairing or in the handshake: give up and tell the server why.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClientError):
                await task
            if progress.session_id:
                with contextlib.suppress(ClientError):
                    await api_call(
                        http,
                        "POST",
                        f"{opts.server}/api/v1/sessions/{progress.session_id}/end",
                        token=opts.token,
                        json_body={"reason": "technician_ended"},
                        ssl_context=opts.ssl_context,
                    )
            say(t("interrupted"))
            return ExitCode.OK
    except ClientError as exc:
        say(str(exc))
        return exc.exit_code
    finally:
        if bridge is not None:
            await bridge.close()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


@dataclass
class _Progress:
    session_id: str | None = None
    established: bool = False


async def _connect(
    http: aiohttp.ClientSession,
    opts: ConnectOptions,
    stop: asyncio.Event,
    progress: _Progress,
    bridge: VNCBridge | None,
) -> int:
    try:
        normalize_password(opts.password)  # a typo is caught before it costs an attempt
    except ProtocolError as exc:
        raise ClientError(t("malformed_password", detail=exc), ExitCode.USAGE) from None
    say(t("connecting", agent_id=opts.agent_id))
    body: dict[str, Any] = {"agent_id": opts.agent_id}
    if opts.contract:
        body["contract"] = opts.contract
    status, created = await api_call(
        http,
        "POST",
        f"{opts.server}/api/v1/sessions",
        token=opts.token,
        json_body=body,
        ssl_context=opts.ssl_context,
    )
    if status == 401:
        raise ClientError(t("not_logged_in", server=opts.server), ExitCode.NOT_LOGGED_IN)
    if status != 201:
        raise ClientError(
            _lang_message(created, t("session_http_error", status=status)), ExitCode.REFUSED
        )
    progress.session_id = created["session_id"]
    if created.get("warning"):  # e.g. past the contract's monthly allowance
        say(_lang_message({"error": created["warning"]}, str(created["warning"])))
    # Machine-readable lines on stdout for scripts; human messages go to stderr.
    print(
        json.dumps(
            {
                "event": "session",
                "session_id": created["session_id"],
                "contract": created["contract"],
            }
        ),
        flush=True,
    )
    try:
        leg = await open_leg(
            http,
            created["relay_url"],
            created["relay_token"],
            heartbeat=opts.heartbeat,
            ssl_context=opts.ssl_context,
        )
    except SessionEnded as exc:
        raise ClientError(
            t("session_ended", reason=reason_text(exc.reason)), ExitCode.ENDED_BY_PEER
        ) from None
    except TransportError as exc:
        raise ClientError(str(exc), ExitCode.CONNECTION_LOST) from None
    hs = TechnicianHandshake(opts.password, opts.agent_id)
    try:
        records = await run_handshake(leg, hs)
    except PeerRejectedPassword as exc:
        await leg.close("wrong_password")
        if exc.reason is FailureReason.PASSWORD_REPLACED:
            raise ClientError(t("password_replaced"), ExitCode.PASSWORD_REPLACED) from None
        raise ClientError(t("wrong_password"), ExitCode.WRONG_PASSWORD) from None
    except ProtocolError as exc:
        await leg.close("handshake_failed")
        raise ClientError(t("handshake_failed", detail=exc), ExitCode.ERROR) from None
    except SessionEnded as exc:
        raise ClientError(
            t("session_ended", reason=reason_text(exc.reason)), ExitCode.ENDED_BY_PEER
        ) from None
    except TimeoutError:
        await leg.close("handshake_failed")
        raise ClientError(
            t("handshake_failed", detail=reason_text("timeout")), ExitCode.CONNECTION_LOST
        ) from None
    channel = SecureChannel(leg, records, "technician")
    channel.start()
    progress.established = True
    try:
        return await _session(channel, opts, stop, bridge, str(created["session_id"]))
    finally:
        await channel.close(channel.end_reason or "technician_ended")


async def _first_of(stop: asyncio.Event, *aws: asyncio.Future[Any], timeout: float) -> None:
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({stopped, *aws}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()


async def _session(
    channel: SecureChannel,
    opts: ConnectOptions,
    stop: asyncio.Event,
    bridge: VNCBridge | None,
    session_id: str,
) -> int:
    from .control_socket import ChatHub

    chats = ChatHub(_print_chat)  # the session commands' `chat` listens too
    session = TechnicianSession(channel, on_chat=chats)
    session.start()
    closed = asyncio.ensure_future(channel.closed.wait())
    try:
        say(t("waiting_consent"))
        await _first_of(stop, session.consented, closed, timeout=CONSENT_WAIT)
        if stop.is_set():
            say(t("interrupted"))
            return ExitCode.OK
        if not session.consented.done():
            reason = channel.end_reason or "timeout"
            if reason == "consent_denied":
                say(t("consent_denied"))
                return ExitCode.CONSENT_DENIED
            say(t("session_ended", reason=reason_text(reason)))
            return ExitCode.ENDED_BY_PEER
        if not session.consented.result().granted:
            say(t("consent_denied"))
            await channel.close("consent_denied")
            return ExitCode.CONSENT_DENIED
        return await _active(session, opts, stop, bridge, session_id, closed, chats)
    finally:
        closed.cancel()
        await session.stop()


async def _active(
    session: TechnicianSession,
    opts: ConnectOptions,
    stop: asyncio.Event,
    bridge: VNCBridge | None,
    session_id: str,
    closed: asyncio.Future[Any],
    chats: ChatHub,
) -> int:
    from .control_socket import ControlSocket, ControlSocketError

    channel = session.channel
    say(t("connected", agent_id=opts.agent_id))
    say(t("connected_end_hint", session_id=session_id))
    print(
        json.dumps({"event": "connected", "agent_id": opts.agent_id, "session_id": session_id}),
        flush=True,
    )
    if bridge is not None:
        await bridge.start(channel)
        host, port = bridge.address
        say(t("vnc_listening", addr=f"{host}:{port}", viewer=f"{host}::{port}"))
        # A machine-readable line for scripts.
        print(json.dumps({"event": "vnc_listening", "host": host, "port": port}), flush=True)

    async def end(reason: str, comment: str | None) -> None:
        await end_session(
            opts.server, opts.token, session_id, reason, comment, ssl_context=opts.ssl_context
        )

    commands = ControlSocket(session, session_id, opts.agent_id, chats=chats, end=end)
    try:
        path = await commands.start()
        print(json.dumps({"event": "control_socket", "path": str(path)}), flush=True)
    except (ControlSocketError, OSError) as exc:  # the session goes on without them
        say(t("session_sock_failed", detail=exc))
    try:
        await _first_of(stop, closed, timeout=None)  # type: ignore[arg-type]
        if stop.is_set() and not channel.closed.is_set():
            say(t("interrupted"))
            return ExitCode.OK
        reason = channel.end_reason or "connection_lost"
        say(t("session_ended", reason=reason_text(reason)))
        return (
            ExitCode.CONNECTION_LOST
            if reason in ("connection_lost", "protocol_error")
            else ExitCode.ENDED_BY_PEER
        )
    finally:
        await commands.close()
        if bridge is not None:
            await bridge.close()  # viewers first, then the channel (see _connect)


def _print_chat(msg: control.Chat) -> None:
    """A chat line from the customer: on stderr for people, a JSON line for scripts."""
    say(t("chat_from_customer", at=printable(msg.at, 40), text=printable(msg.text, 4000)))
    print(json.dumps({"event": "chat", "at": msg.at, "text": msg.text}), flush=True)
