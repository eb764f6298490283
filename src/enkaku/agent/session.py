"""One support session on the agent side: relay leg, handshake, consent, streams, end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from enkaku.protocol import control
from enkaku.protocol.errors import AuthenticationFailed, ProtocolError
from enkaku.protocol.handshake import AgentHandshake, FailureReason
from enkaku.transport.channel import SecureChannel, Stream, run_handshake
from enkaku.transport.errors import SessionEnded, TransportError
from enkaku.transport.relay import open_leg

from .consent import Requester, session_policy

if TYPE_CHECKING:
    from .runtime import AgentRuntime

log = logging.getLogger(__name__)

SCOPE = ["screen", "control"]


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

    def __init__(self, rt: AgentRuntime, req: SessionRequest) -> None:
        self.rt, self.req = rt, req
        self.channel: SecureChannel | None = None
        self.control_paused = False
        self._local_end: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()

    def end(self, reason: str) -> None:
        """Ask the session to end (customer pressed End, agent stopping, server said so)."""
        if not self._local_end.done():
            self._local_end.set_result(reason)

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
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.channel is not None:
                await self.channel.close(
                    reason if reason in control.END_REASONS else "customer_ended"
                )
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
            # DESIGN.md: a share not followed by a valid Tb is a failed attempt, whatever
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

        # The agent's own setting is the floor: the server may only skip an "ask" prompt.
        policy = session_policy(rt.consent, req.implicit_consent)
        ask = asyncio.ensure_future(policy.ask(req.who, SCOPE))
        closed = asyncio.ensure_future(channel.closed.wait())
        waiting: set[asyncio.Future[Any]] = {ask, closed, self._local_end}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if ask not in done:
            ask.cancel()
            return (
                self._local_end.result() if self._local_end.done() else await channel.wait_closed()
            )
        granted = ask.result()
        await rt.report(req.session_id, "consent_granted" if granted else "consent_denied")
        scope: list[Literal["screen", "control"]] = ["screen", "control"] if granted else []
        await channel.send_control(control.Consent(granted=granted, scope=scope))
        if not granted:
            return "consent_denied"
        rt.ui.session_started(req.who)
        self._spawn(self._accept_streams(channel))
        self._spawn(self._read_control(channel))
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

    async def _read_control(self, channel: SecureChannel) -> None:
        while True:
            msg = await channel.control_messages.get()
            if isinstance(msg, control.End):
                self.end(msg.reason)
                return

    async def _accept_streams(self, channel: SecureChannel) -> None:
        while True:
            stream = await channel.incoming.get()
            if stream.kind == "rfb":
                self._spawn(self._serve_rfb(stream))
            else:
                await stream.reset("unsupported_stream")

    async def _serve_rfb(self, stream: Stream) -> None:
        from .rfbservice import RFBService

        rt = self.rt
        if rt.capture_factory is None or rt.input_factory is None:
            await stream.reset("no_display")
            return
        try:
            capture = await asyncio.to_thread(rt.capture_factory)
            injector = await asyncio.to_thread(rt.input_factory)
        except Exception as exc:  # the display went away or an extension is missing
            log.warning("cannot serve the screen: %s", exc)
            await stream.reset("no_display")
            return
        try:
            service = RFBService(
                capture,
                injector,
                stream.read,
                stream.write,
                name=f"enkaku {rt.agent_id}",
                control_allowed=lambda: not self.control_paused,
            )
            await service.run()
        except (SessionEnded, ConnectionError):
            pass
        finally:
            await asyncio.to_thread(injector.close)
            await asyncio.to_thread(capture.close)
            with contextlib.suppress(Exception):
                await stream.write_eof()
