"""One support session on the agent side: relay leg, handshake, consent, services, end.

The session moves through the states of ``Lifecycle`` (pairing, handshake, consent,
active, paused, ending, ended). Once the customer allowed it, a ``ControlRouter``
dispatches the technician's control messages: ``request`` asks the customer through the
consent policy (one question at a time, deny by default) and is answered; ``chat`` is
shown to the customer. Streams are served by the kind's entry in the service registry,
only with a grant (``Grants``). What the session needs of the agent is ``SessionHost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import aiohttp

from enkaku.protocol import control
from enkaku.protocol.errors import AuthenticationFailed, ProtocolError
from enkaku.protocol.handshake import AgentHandshake, FailureReason
from enkaku.transport.channel import ChannelStats, SecureChannel, Stream, run_handshake
from enkaku.transport.errors import SessionEnded, TransportError
from enkaku.transport.relay import open_leg
from enkaku.transport.router import ControlRouter

from .capture.base import ScreenCapture
from .clipboard import Clipboard
from .consent import ConsentPolicy, Question, Requester, Verdict, session_policy
from .grants import Grants
from .input.base import InputInjector
from .lifecycle import Lifecycle, State
from .services import (
    RESET_NO_GRANT,
    RESET_UNKNOWN_KIND,
    FileSettings,
    Grant,
    Registry,
    ServiceContext,
    ServiceSpec,
)
from .services.registry import default_registry
from .ui import AgentUI

log = logging.getLogger(__name__)

#: What the session itself is asked for: seeing the screen and controlling it.
SESSION_SCOPE: tuple[control.Action, ...] = ("screen", "control")
#: Requests waiting for the customer at once; more are answered "busy".
MAX_PENDING_REQUESTS = 4
#: The detail fields each action needs (type checked), beyond which nothing is shown.
REQUIRED_DETAILS: dict[str, dict[str, type]] = {
    "file_to_customer": {"name": str, "size": int, "dest": str},
    "file_from_customer": {"path": str},
}


class SessionHost(Protocol):
    """What a session uses of the agent runtime, and nothing else."""

    http: aiohttp.ClientSession
    server_url: str
    heartbeat: float
    ssl_context: Any
    password: str
    agent_id: str
    ui: AgentUI
    consent: ConsentPolicy
    capture_factory: Callable[[], ScreenCapture] | None
    input_factory: Callable[[], InputInjector] | None
    clipboard_factory: Callable[[], Clipboard] | None
    files: FileSettings

    def count_failed_attempt(self) -> FailureReason: ...

    async def report(self, session_id: str, event: str, detail: str | None = None) -> None: ...


@dataclass
class SessionRequest:
    session_id: str
    relay_url: str
    relay_token: str
    who: Requester
    implicit_consent: bool

    @classmethod
    def parse(cls, msg: dict[str, Any], resolve: Callable[[str], str]) -> SessionRequest:
        tech = msg.get("technician") or {}
        return cls(
            session_id=str(msg["session_id"]),
            relay_url=str(msg.get("relay_url") or resolve(str(msg["relay_path"]))),
            relay_token=str(msg["relay_token"]),
            # Requester strips control and bidi characters: these strings are printed.
            who=Requester(str(tech.get("name", "?")), str(tech.get("company", ""))),
            implicit_consent=bool(msg.get("implicit_consent", False)),
        )


class AgentSession:
    """Owns one session's tasks; ``run()`` returns the end reason."""

    def __init__(
        self,
        rt: SessionHost,
        req: SessionRequest,
        *,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rt, self.req = rt, req
        self.registry = registry or default_registry(rt.server_url)
        self.lifecycle = Lifecycle(clock)
        self.grants = Grants()
        self.channel: SecureChannel | None = None
        self.policy: ConsentPolicy = session_policy(rt.consent, req.implicit_consent)
        self._local_end: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_requests = 0

    @property
    def control_paused(self) -> bool:
        return self.lifecycle.state is State.PAUSED

    def end(self, reason: str) -> None:
        """Ask the session to end (customer pressed End, agent stopping, server said so)."""
        if not self._local_end.done():
            self._local_end.set_result(reason)

    def traffic(self) -> ChannelStats | None:
        """What this agent's own connection carried so far (None before the handshake)."""
        return self.channel.stats if self.channel is not None else None

    async def pause_control(self, paused: bool) -> None:
        """The customer pauses (or resumes) remote control; the technician is told."""
        if not self.lifecycle.is_live or paused == self.control_paused:
            return
        self.lifecycle.move(State.PAUSED if paused else State.ACTIVE)
        await self._send_status()

    async def withdraw(self, action: str) -> None:
        """The customer takes back a session grant (clipboard, terminal, ...)."""
        if self.grants.withdraw(action):
            await self._report("action_withdrawn", action)
            await self._send_status()

    async def send_chat(self, text: str) -> None:
        """A chat line from the customer to the technician."""
        if self.channel is not None and self.lifecycle.is_live:
            at = datetime.now().astimezone().isoformat(timespec="seconds")
            await self.channel.send_control(control.Chat(text=text, at=at))

    def allowed(self, action: str) -> bool:
        """Whether a session action may be used now (control also needs no pause)."""
        if action == "control" and self.control_paused:
            return False
        return self.lifecycle.is_live and self.grants.allowed(action)

    async def run(self) -> str:
        reason = "connection_lost"
        try:
            reason = await self._run()
        except SessionEnded as exc:
            reason = exc.reason
        except TransportError as exc:
            log.warning("session %s: %s", self.req.session_id[:8], exc)
            reason = "connection_lost"
        finally:
            self.lifecycle.end()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.grants.clear()
            if self.channel is not None:
                await self.channel.close(
                    reason if reason in control.END_REASONS else "customer_ended"
                )
            self.lifecycle.move(State.ENDED)
        return reason

    async def _run(self) -> str:
        rt, req = self.rt, self.req
        leg_task = asyncio.ensure_future(
            open_leg(
                rt.http,
                req.relay_url,
                req.relay_token,
                heartbeat=rt.heartbeat,
                ssl_context=rt.ssl_context,
            )
        )
        first: set[asyncio.Future[Any]] = {leg_task, self._local_end}
        done, _ = await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if self._local_end in done:
            leg_task.cancel()
            return self._local_end.result()
        leg = leg_task.result()
        self.lifecycle.move(State.HANDSHAKE)
        hs = AgentHandshake(rt.password, rt.agent_id)
        counted = False

        def wrong_password() -> FailureReason:
            nonlocal counted
            counted = True
            return rt.count_failed_attempt()

        shake = asyncio.ensure_future(run_handshake(leg, hs, on_wrong_password=wrong_password))
        pending: set[asyncio.Future[Any]] = {shake, self._local_end}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not shake.done():  # ended mid-handshake: by the customer, or the server said so
            shake.cancel()
            reason = self._local_end.result()
            # A technician who got our share and then had the session ended through the
            # server (API end, timeout) spent a guess like any other; only the customer's
            # own ending (or the agent stopping) is not theirs.
            if hs.attempt_started and reason != "customer_ended":
                rt.count_failed_attempt()
                await rt.report(req.session_id, "handshake_failed")
            await leg.close(reason if reason in control.END_REASONS else "customer_ended")
            return reason
        try:
            records = shake.result()
        except (ProtocolError, TimeoutError, SessionEnded) as exc:
            # DESIGN: a share not followed by a valid Tb is a failed attempt, whatever
            # came instead: a wrong tag, a FAILURE from the technician (any reason),
            # garbage, silence, or the technician leaving. Counted once.
            if hs.attempt_started and not counted:
                rt.count_failed_attempt()
            wrong = isinstance(exc, AuthenticationFailed)
            outcome = "wrong_password" if wrong else "handshake_failed"
            if hs.attempt_started:
                await rt.report(req.session_id, outcome)
            if isinstance(exc, SessionEnded):
                raise
            log.info("session %s: handshake failed: %s", req.session_id[:8], exc or "timeout")
            await leg.close(outcome)
            return outcome
        self.channel = channel = SecureChannel(leg, records, "agent")
        channel.start()
        self.lifecycle.move(State.CONSENT)

        # The agent's own setting is the floor: the server may only skip an "ask" prompt.
        ask = asyncio.ensure_future(self.policy.decide(Question(req.who, SESSION_SCOPE)))
        closed = asyncio.ensure_future(channel.closed.wait())
        waiting: set[asyncio.Future[Any]] = {ask, closed, self._local_end}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if ask not in done:
            ask.cancel()
            return (
                self._local_end.result() if self._local_end.done() else await channel.wait_closed()
            )
        verdict: Verdict = ask.result()
        granted = verdict.granted
        await rt.report(req.session_id, "consent_granted" if granted else "consent_denied")
        scope = list(SESSION_SCOPE) if granted else []
        await channel.send_control(control.Consent(granted=granted, scope=scope))
        if not granted:
            return "consent_denied"
        for action in SESSION_SCOPE:
            self.grants.add(Grant(id=0, action=action, details={}))
        self.lifecycle.move(State.ACTIVE)
        rt.ui.session_started(req.who)
        self._spawn(expire_partials(rt.files))
        router = ControlRouter(channel)
        router.on(control.End, lambda msg: self.end(msg.reason))
        router.on(control.Request, self._on_request)
        router.on(control.Chat, self._on_chat)
        router.on(control.Error, self._on_error)
        self._spawn(router.run())
        self._spawn(self._accept_streams(channel))
        closed = asyncio.ensure_future(channel.closed.wait())
        running: set[asyncio.Future[Any]] = {closed, self._local_end}
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if self._local_end.done():
            return self._local_end.result()
        return channel.end_reason or "connection_lost"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _activity(self, kind: str, info: dict[str, Any]) -> None:
        """A service's progress, for the customer's UI only (never sent to the server)."""
        self.rt.ui.activity(kind, info)

    async def _report(self, event: str, detail: str | None = None) -> None:
        await self.rt.report(self.req.session_id, event, detail)

    async def _send_status(self) -> None:
        if self.channel is not None:
            with contextlib.suppress(SessionEnded):
                await self.channel.send_control(
                    control.Status(
                        control_paused=self.control_paused,
                        granted=self.grants.in_force(),  # type: ignore[arg-type]
                    )
                )

    # -- control messages -------------------------------------------------------------

    async def _answer(self, msg: control.Request, verdict: Verdict) -> None:
        assert self.channel is not None
        await self.channel.send_control(
            control.Answer(
                id=msg.id, action=msg.action, granted=verdict.granted, reason=verdict.reason
            )
        )

    async def _on_request(self, msg: control.Request) -> None:
        if msg.action in control.SESSION_ACTIONS and self.grants.allowed(msg.action):
            await self._answer(msg, Verdict(True))  # already allowed: no second question
            return
        details = self._question_details(msg)
        if details is None:
            await self._answer(msg, Verdict(False, "invalid"))
            return
        if self._pending_requests >= MAX_PENDING_REQUESTS:
            await self._answer(msg, Verdict(False, "busy"))
            return
        self._pending_requests += 1
        self._spawn(self._decide(msg, details))

    def _question_details(self, msg: control.Request) -> dict[str, str | int | bool] | None:
        """What the customer is shown: the technician's details, checked, and what only
        the agent can say (the terminal's user, a file's real size)."""
        details = dict(msg.details)
        for name, kind in REQUIRED_DETAILS.get(msg.action, {}).items():
            value = details.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                return None
        if msg.action == "terminal":
            details["user"] = _user_label()
        if msg.action == "file_from_customer":
            details["size"] = _file_size(str(details["path"]))
        if msg.action == "file_to_customer":
            from .services.files import shown_details

            details = shown_details(msg.action, details, self.rt.files)
        return details

    async def _decide(self, msg: control.Request, details: dict[str, str | int | bool]) -> None:
        try:
            question = Question(self.req.who, (msg.action,), details, msg.purpose)
            verdict = await self.policy.decide(question)
            if verdict.granted and self.lifecycle.is_live:
                # The grant keeps the technician's own details: they are what the stream
                # repeats (a put's dest "" is shown as the incoming folder, kept as "").
                self.grants.add(Grant(msg.id, msg.action, dict(msg.details), msg.purpose))
            elif verdict.granted:
                verdict = Verdict(False, "unavailable")
            await self._answer(msg, verdict)
            outcome = "action_granted" if verdict.granted else "action_denied"
            await self._report(
                outcome, msg.action if verdict.granted else f"{msg.action}:{verdict.reason}"
            )
            if verdict.granted and msg.action in control.SESSION_ACTIONS:
                await self._send_status()
        except SessionEnded:
            pass
        finally:
            self._pending_requests -= 1

    def _on_chat(self, msg: control.Chat) -> None:
        self.rt.ui.chat(self.req.who, msg.text, msg.at)

    def _on_error(self, msg: control.Error) -> None:
        log.info("technician refused a message: %s", msg.code)

    # -- streams ----------------------------------------------------------------------

    async def _accept_streams(self, channel: SecureChannel) -> None:
        while True:
            stream = await channel.incoming.get()
            spec = self.registry.get(stream.kind)
            if spec is None:
                await stream.reset(RESET_UNKNOWN_KIND)
                continue
            grant = self.grants.take(spec, stream.params) if self.allowed_to_start(spec) else None
            if grant is None:
                await stream.reset(RESET_NO_GRANT)
                continue
            self._spawn(self._serve(spec, stream, grant))

    def allowed_to_start(self, spec: ServiceSpec) -> bool:
        return self.lifecycle.is_live and (
            spec.action not in control.SESSION_ACTIONS or self.allowed(spec.action)
        )

    async def _serve(self, spec: ServiceSpec, stream: Stream, grant: Grant) -> None:
        rt = self.rt
        ctx = ServiceContext(
            session_id=self.req.session_id,
            agent_id=rt.agent_id,
            who=self.req.who,
            grant=grant,
            report=self._report,
            files=rt.files,
            capture_factory=rt.capture_factory,
            input_factory=rt.input_factory,
            clipboard_factory=rt.clipboard_factory,
            allowed=self.allowed,
            clock=self.lifecycle.clock,
            activity=self._activity,
        )
        try:
            await spec.serve(stream, ctx)
        except (SessionEnded, ConnectionError):
            pass
        except Exception:
            log.exception("the %s service failed", spec.kind)
            with contextlib.suppress(Exception):
                await stream.reset("service_error")


async def expire_partials(files: FileSettings) -> None:
    """Remove interrupted transfers' parts in the incoming folder older than their time
    (at agent start and at each session start; a put also clears its own folder)."""
    from .partials import expire_partials as expire

    try:
        n = await asyncio.to_thread(expire, files.incoming, files.partial_ttl, time.time())
    except OSError as exc:
        log.warning("cannot clear expired partial files: %s", exc.strerror or exc)
        return
    if n:
        log.info("removed %d expired partial file(s)", n)


def _user_label() -> str:
    """The account a terminal runs as, as the customer reads it ("root" says so)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _file_size(path: str) -> int | str:
    """A regular file's size for the question, or "?" (the service checks the rest)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return "?"
    return st.st_size if stat.S_ISREG(st.st_mode) else "?"
