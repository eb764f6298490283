"""The technician's handle on an established session: ask, open streams, chat.

``TechnicianSession`` wraps the SecureChannel with a ``ControlRouter``: the agent's
``consent`` resolves ``consented``, each ``answer`` resolves the ``ask`` that sent its
``request``, ``status`` and ``chat`` go to callbacks. The CLI's ``connect`` holds one,
the local control socket (``enkaku session ...``) and the web console use the same calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from enkaku.i18n import register, t
from enkaku.protocol import control
from enkaku.transport.channel import SecureChannel, Stream
from enkaku.transport.errors import SessionEnded
from enkaku.transport.router import ControlRouter

log = logging.getLogger(__name__)

#: How long ``ask`` waits for the answer: the agent's own prompt times out first
#: (60 s by default) and answers "timeout"; this only covers an agent that never answers.
ASK_TIMEOUT = 180.0

register(
    {
        "refused_denied": (
            "The customer did not allow it ({action}).",
            "お客様が許可しませんでした ({action})。",
        ),
        "refused_timeout": (
            "The customer did not answer in time ({action}). Ask again when they are at the "
            "screen.",
            "お客様の応答が時間内にありませんでした ({action})。お客様が画面の前にいるときに"
            "もう一度依頼してください。",
        ),
        "refused_policy": (
            "The agent's settings refuse this ({action}): the customer started it with "
            "--consent deny, or the support company's policy does not allow it.",
            "エージェントの設定により拒否されました ({action}): お客様が --consent deny で"
            "起動したか、サポート会社の方針で許可されていません。",
        ),
        "refused_unavailable": (
            "Not available on the customer's side ({action}).",
            "お客様側で利用できません ({action})。",
        ),
        "refused_invalid": (
            "The request was incomplete ({action}); this is a bug in the client.",
            "依頼の内容が不完全です ({action})。クライアントの不具合です。",
        ),
        "refused_busy": (
            "The customer already has several questions open; wait for their answers ({action}).",
            "お客様はすでに複数の確認に応答中です。回答を待ってください ({action})。",
        ),
        "refused_no_answer": (
            "The agent did not answer the request ({action}).",
            "エージェントが依頼に応答しませんでした ({action})。",
        ),
    }
)


class ConsentRefused(Exception):
    """The customer (or the agent's policy) did not allow an action."""

    def __init__(self, action: str, reason: str) -> None:
        self.action, self.reason = action, reason
        key = f"refused_{reason}" if f"refused_{reason}" in REFUSAL_KEYS else "refused_denied"
        super().__init__(t(key, action=action))


#: The message keys of ConsentRefused, one per refusal reason (and no answer at all).
REFUSAL_KEYS = {
    "refused_denied",
    "refused_timeout",
    "refused_policy",
    "refused_unavailable",
    "refused_invalid",
    "refused_busy",
    "refused_no_answer",
}


class TechnicianSession:
    def __init__(
        self,
        channel: SecureChannel,
        *,
        on_chat: Callable[[control.Chat], None] | None = None,
        on_status: Callable[[control.Status], None] | None = None,
    ) -> None:
        self.channel = channel
        self.consented: asyncio.Future[control.Consent] = asyncio.get_running_loop().create_future()
        self.status: control.Status | None = None
        #: Session actions granted by an answer the agent's next status has not yet listed.
        self._answered: set[str] = set()
        self._on_chat, self._on_status = on_chat, on_status
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[control.Answer]] = {}
        self.router = ControlRouter(channel)
        self.router.on(control.Consent, self._consent)
        self.router.on(control.Answer, self._answer)
        self.router.on(control.Status, self._status)
        self.router.on(control.Chat, self._chat)
        self.router.on(control.Error, self._error)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.router.run())
        self._task.add_done_callback(lambda _: self._fail_pending())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def granted(self) -> list[str]:
        """The session actions in force, as the agent last said."""
        if self.status is not None and self.status.granted is not None:
            base = list(self.status.granted)
        else:
            consent = self.consented.result() if self.consented.done() else None
            base = list(consent.scope) if consent is not None and consent.granted else []
        return base + sorted(self._answered - set(base))

    async def ask(
        self,
        action: control.Action,
        details: Mapping[str, str | int | bool] | None = None,
        purpose: str | None = None,
        *,
        timeout: float = ASK_TIMEOUT,
    ) -> control.Answer:
        """Ask the customer to allow ``action``; the granted answer, or ConsentRefused."""
        rid = next(self._ids)
        answer: asyncio.Future[control.Answer] = asyncio.get_running_loop().create_future()
        self._pending[rid] = answer
        try:
            await self.channel.send_control(
                control.Request(id=rid, action=action, purpose=purpose, details=dict(details or {}))
            )
            closed: asyncio.Future[Any] = asyncio.ensure_future(self.channel.closed.wait())
            waiting: set[asyncio.Future[Any]] = {answer, closed}
            try:
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                closed.cancel()
            if answer not in done:
                if self.channel.closed.is_set():
                    raise SessionEnded(self.channel.end_reason or "connection_lost")
                raise ConsentRefused(action, "no_answer")
            result = answer.result()
        finally:
            self._pending.pop(rid, None)
        if not result.granted:
            raise ConsentRefused(action, result.reason or "denied")
        return result

    async def open(
        self,
        kind: str,
        params: Mapping[str, Any] | None = None,
        grant: control.Answer | None = None,
    ) -> Stream:
        """Open a stream of ``kind``; ``grant`` names the answer that allowed it."""
        full = dict(params or {})
        if grant is not None:
            full["grant"] = grant.id
        return await self.channel.open_stream(kind, full)

    async def chat(self, text: str) -> control.Chat:
        at = datetime.now().astimezone().isoformat(timespec="seconds")
        msg = control.Chat(text=text, at=at)
        await self.channel.send_control(msg)
        return msg

    # -- router handlers --------------------------------------------------------------

    def _consent(self, msg: control.Consent) -> None:
        if not self.consented.done():
            self.consented.set_result(msg)

    def _answer(self, msg: control.Answer) -> None:
        if msg.granted and msg.action in control.SESSION_ACTIONS:
            self._answered.add(msg.action)
        future = self._pending.get(msg.id)
        if future is not None and not future.done():
            future.set_result(msg)

    def _status(self, msg: control.Status) -> None:
        self.status = msg
        self._answered.clear()  # the agent's word on what is in force now
        log.info("customer %s control", "paused" if msg.control_paused else "allows")
        if self._on_status is not None:
            self._on_status(msg)

    def _chat(self, msg: control.Chat) -> None:
        if self._on_chat is not None:
            self._on_chat(msg)

    def _error(self, msg: control.Error) -> None:
        log.info("the agent refused a message: %s", msg.code)

    def _fail_pending(self) -> None:
        reason = self.channel.end_reason or "connection_lost"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SessionEnded(reason))
