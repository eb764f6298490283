"""The session core: consent per action, grants, the service registry, the control router
and the lifecycle, with a real AgentSession and TechnicianSession over an in-memory relay."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from enkaku.agent.consent import AskCustomer, PolicyKind, Question, Requester, Verdict
from enkaku.agent.lifecycle import InvalidMove, Lifecycle, State
from enkaku.agent.services import Registry, ServiceContext, ServiceSpec
from enkaku.agent.session import AgentSession
from enkaku.protocol import control
from enkaku.protocol.streams import CONTROL_STREAM
from enkaku.technician.session import ConsentRefused, TechnicianSession
from enkaku.transport.channel import Stream
from tests.agent.test_session import Agent, established


class Scripted:
    """The customer: answers each action as told, keeps every question; an action
    missing from ``answers`` waits until ``release`` is set."""

    kind: ClassVar[PolicyKind] = "ask"

    def __init__(self, **answers: bool) -> None:
        self.answers = {"screen": True, "control": True, **answers}
        self.questions: list[Question] = []
        self.release = asyncio.Event()
        self._asked = asyncio.Condition()

    async def asked(self, n: int) -> None:
        """Wait until ``n`` questions have been put to the customer."""
        async with self._asked:
            await asyncio.wait_for(self._asked.wait_for(lambda: len(self.questions) >= n), 5)

    async def decide(self, question: Question) -> Verdict:
        self.questions.append(question)
        async with self._asked:
            self._asked.notify_all()
        action = question.actions[-1]
        if action not in self.answers:
            await self.release.wait()
        return Verdict(True) if self.answers.get(action) else Verdict(False, "denied")


async def echo(stream: Stream, ctx: ServiceContext) -> None:
    """Writes back what it was granted, then EOF."""
    await stream.write(f"{ctx.grant.action} {dict(ctx.grant.details)}".encode())
    await stream.write_eof()


def registry() -> Registry:
    reg = Registry()
    reg.add(ServiceSpec(kind="shot", action="screenshot", serve=echo, bound=("name",)))
    reg.add(ServiceSpec(kind="info", action="system_info", serve=echo))
    reg.add(ServiceSpec(kind="clip", action="clipboard", serve=echo))
    return reg


class Reporting(Agent):
    def __init__(self, tmp: Path, policy: Any) -> None:
        super().__init__(tmp, policy)
        self.events: list[tuple[str, str | None]] = []

        async def report(session_id: str, event: str, detail: str | None = None) -> None:
            self.events.append((event, detail))

        self.rt.report = report  # type: ignore[method-assign]


class Live:
    def __init__(self, agent: Reporting, session: AgentSession, tech: TechnicianSession):
        self.agent, self.session, self.tech = agent, session, tech
        self.chats: asyncio.Queue[control.Chat] = asyncio.Queue()
        self.statuses: asyncio.Queue[control.Status] = asyncio.Queue()

    async def next_status(self) -> control.Status:
        return await asyncio.wait_for(self.statuses.get(), 5)


Start = Callable[..., Awaitable[Live]]


@pytest.fixture
async def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Start]:
    """``await start(policy, implicit=False)``: an established session, consent given."""
    opened: list[tuple[Live, asyncio.Task[str]]] = []

    async def open_session(policy: Any = None, *, implicit: bool = False) -> Live:
        agent = Reporting(tmp_path, policy or Scripted())
        run, tech_leg = agent.start(monkeypatch, implicit=implicit)
        assert agent.session is not None
        agent.session.registry = registry()
        channel = await established(tech_leg, agent.rt.password)
        box = Live(agent, agent.session, None)  # type: ignore[arg-type]
        box.tech = TechnicianSession(
            channel, on_chat=box.chats.put_nowait, on_status=box.statuses.put_nowait
        )
        box.tech.start()
        opened.append((box, run))
        consent = await asyncio.wait_for(box.tech.consented, 5)
        assert consent.granted
        return box

    yield open_session
    for box, run in opened:
        await box.tech.channel.close("technician_ended")
        assert await asyncio.wait_for(run, 5) == "technician_ended"
        await box.tech.stop()


async def read_all(stream: Stream) -> bytes:
    out = b""
    while chunk := await asyncio.wait_for(stream.read(), 5):
        out += chunk
    return out


async def test_a_session_action_is_asked_once_and_then_serves_its_streams(start: Start) -> None:
    live = await start(Scripted(system_info=True))
    answer = await live.tech.ask("system_info", purpose="disk errors")
    assert answer.granted and answer.action == "system_info"
    again = await live.tech.ask("system_info")
    assert again.granted and again.id != answer.id
    policy: Scripted = live.agent.rt.consent  # type: ignore[assignment]
    asked = [q.actions for q in policy.questions]
    assert asked == [("screen", "control"), ("system_info",)]  # the second was not asked
    assert policy.questions[1].purpose == "disk errors"
    # Two streams on the one session grant.
    for _ in range(2):
        stream = await live.tech.open("info")
        assert (await read_all(stream)).startswith(b"system_info")
    assert ("action_granted", "system_info") in live.agent.events
    assert (await live.next_status()).granted == ["control", "screen", "system_info"]


async def test_a_stream_without_its_grant_is_refused_and_the_session_goes_on(start: Start) -> None:
    live = await start()
    stream = await live.tech.open("info")
    assert await read_all(stream) == b""
    assert stream.reset_reason == "consent_required"
    unknown = await live.tech.open("format_disk")
    assert await read_all(unknown) == b""
    assert unknown.reset_reason == "unsupported_stream"
    assert not live.tech.channel.closed.is_set()


async def test_a_one_time_grant_serves_one_stream_with_what_the_customer_saw(start: Start) -> None:
    live = await start(Scripted(screenshot=True))
    answer = await live.tech.ask("screenshot", {"name": "screen.png"})
    policy: Scripted = live.agent.rt.consent  # type: ignore[assignment]
    assert policy.questions[-1].details == {"name": "screen.png"}
    other = await live.tech.open("shot", {"name": "passwords.txt"}, answer)
    assert await read_all(other) == b"" and other.reset_reason == "consent_required"
    # The mismatched attempt did not spend the grant; the right one does.
    right = await live.tech.open("shot", {"name": "screen.png"}, answer)
    assert (await read_all(right)).startswith(b"screenshot")
    spent = await live.tech.open("shot", {"name": "screen.png"}, answer)
    assert await read_all(spent) == b"" and spent.reset_reason == "consent_required"


async def test_a_refusal_is_told_and_audited_without_content(
    start: Start,
) -> None:
    live = await start(Scripted(screenshot=False))
    with pytest.raises(ConsentRefused) as refused:
        await live.tech.ask("screenshot", purpose="my secret purpose")
    assert refused.value.reason == "denied"
    assert "did not allow" in str(refused.value)
    assert ("action_denied", "screenshot:denied") in live.agent.events
    assert all("secret" not in str(e) for e in live.agent.events)


async def test_implicit_consent_never_covers_the_customers_data(
    start: Start,
) -> None:
    live = await start(Scripted(), implicit=True)
    policy: Scripted = live.agent.rt.consent  # type: ignore[assignment]
    policy.answers.update(file_from_customer=False)
    assert policy.questions == []  # the session itself needed no question
    with pytest.raises(ConsentRefused):
        await live.tech.ask("file_from_customer", {"path": "/etc/hostname"})
    assert [q.actions for q in policy.questions] == [("file_from_customer",)]
    # The agent adds what only it knows: the file's real size.
    assert policy.questions[0].details["size"] == os.stat("/etc/hostname").st_size


async def test_a_request_missing_what_the_customer_needs_is_invalid(
    start: Start,
) -> None:
    live = await start()
    with pytest.raises(ConsentRefused) as refused:
        await live.tech.ask("file_to_customer", {"name": "a.txt", "dest": "/tmp"})  # no size
    assert refused.value.reason == "invalid"
    policy: Scripted = live.agent.rt.consent  # type: ignore[assignment]
    assert len(policy.questions) == 1  # only the session's own question was asked


async def test_more_open_questions_than_allowed_are_answered_busy(start: Start) -> None:
    live = await start()
    policy: Scripted = live.agent.rt.consent  # type: ignore[assignment]
    waiting = [asyncio.ensure_future(live.tech.ask("terminal")) for _ in range(4)]
    await policy.asked(1 + 4)  # the session's own question, then the four
    with pytest.raises(ConsentRefused) as refused:
        await live.tech.ask("browse")
    assert refused.value.reason == "busy"
    policy.answers["terminal"] = True
    policy.release.set()
    answers = await asyncio.gather(*waiting)
    assert all(a.granted for a in answers)
    # The terminal question names the account the shell would run as.
    assert all("user" in q.details for q in policy.questions[1:])


async def test_pausing_control_and_withdrawing_a_grant_reach_the_technician(start: Start) -> None:
    live = await start(Scripted(clipboard=True))
    await live.tech.ask("clipboard")
    session = live.session
    await session.pause_control(True)
    assert session.lifecycle.state is State.PAUSED
    assert not session.allowed("control") and session.allowed("screen")
    assert (await live.next_status()).granted == ["clipboard", "control", "screen"]
    paused = await live.next_status()
    assert paused.control_paused and paused.granted == ["clipboard", "control", "screen"]
    await session.withdraw("clipboard")
    withdrawn = await live.next_status()
    assert withdrawn.control_paused and withdrawn.granted == ["control", "screen"]
    stream = await live.tech.open("clip")
    assert await read_all(stream) == b"" and stream.reset_reason == "consent_required"
    await session.pause_control(False)
    assert session.allowed("control")
    assert not (await live.next_status()).control_paused
    assert ("action_withdrawn", "clipboard") in live.agent.events


async def test_chat_goes_both_ways(start: Start) -> None:
    live = await start()
    await live.tech.chat("再起動してもよろしいですか?")
    await live.session.send_chat("はい、どうぞ")
    assert (await asyncio.wait_for(live.chats.get(), 5)).text == "はい、どうぞ"
    assert live.agent.ui.chats == [("Taro Tanaka (ACME)", "再起動してもよろしいですか?")]
    # The chat text never reaches the server's audit events.
    assert all("再起動" not in str(e) and "どうぞ" not in str(e) for e in live.agent.events)


async def test_an_unknown_message_type_is_answered_and_the_session_goes_on(start: Start) -> None:
    live = await start()
    errors: asyncio.Queue[control.Error] = asyncio.Queue()
    live.tech.router._handlers[control.Error] = errors.put_nowait
    body = b'{"type":"whiteboard","strokes":[]}'
    await live.tech.channel._write(CONTROL_STREAM, struct.pack(">I", len(body)) + body)
    assert (await asyncio.wait_for(errors.get(), 5)).code == "unknown_message"
    assert (await live.tech.ask("screen")).granted  # still alive


# -- lifecycle -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_lifecycle_moves_only_along_its_edges_and_times_each_state() -> None:
    clock = FakeClock()
    life = Lifecycle(clock)
    seen: list[State] = []
    life.listen(seen.append)
    with pytest.raises(InvalidMove):
        life.move(State.ACTIVE)  # no consent yet
    for state, spent in ((State.HANDSHAKE, 1), (State.CONSENT, 2), (State.ACTIVE, 30)):
        clock.now += spent
        life.move(state)
    clock.now += 10
    life.move(State.PAUSED)
    clock.now += 5
    life.move(State.ACTIVE)
    clock.now += 20
    assert life.seconds_in(State.ACTIVE, State.PAUSED) == 35
    assert life.seconds_in(State.PAUSED) == 5
    life.end()
    life.end()  # idempotent
    life.move(State.ENDED)
    with pytest.raises(InvalidMove):
        life.move(State.ACTIVE)
    assert seen == [
        State.HANDSHAKE,
        State.CONSENT,
        State.ACTIVE,
        State.PAUSED,
        State.ACTIVE,
        State.ENDING,
        State.ENDED,
    ]


def test_every_state_can_end() -> None:
    for state in State:
        if state in (State.ENDING, State.ENDED):
            continue
        life = Lifecycle(FakeClock())
        life.state = state
        life.end()
        assert life.state is State.ENDING


async def test_a_put_into_the_default_folder_shows_the_folder_and_keeps_the_grant_as_asked(
    start: Start,
) -> None:
    live = await start(Scripted(file_to_customer=True))
    details = {"name": "fix.sh", "size": 120, "dest": ""}
    answer = await live.tech.ask("file_to_customer", details)
    policy: Scripted = live.agent.rt.consent  # type: ignore[assignment]
    shown = policy.questions[-1]
    assert shown.details["dest"] == str(live.agent.rt.files.incoming)
    assert str(live.agent.rt.files.incoming) in shown.what("en")
    grant = live.session.grants._once[answer.id]
    assert grant.details == details  # what the stream repeats


def test_a_terminal_as_root_says_so_in_the_question() -> None:
    who = Requester("Taro", "ACME")
    as_root = Question(who, ("terminal",), {"user": "root"}).what("en")
    assert "root, the administrator" in as_root
    assert "管理者 (root)" in Question(who, ("terminal",), {"user": "root"}).what("ja")
    assert "as the user taro" in Question(who, ("terminal",), {"user": "taro"}).what("en")


class SilentPrompt:
    """A customer who never answers; records whether the question was withdrawn."""

    def __init__(self) -> None:
        self.withdrawn = False

    async def prompt(self, question: Question) -> bool:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.withdrawn = True
            raise
        raise AssertionError("unreachable")


async def test_no_answer_within_the_timeout_is_a_refusal_and_the_question_is_withdrawn() -> None:
    prompt = SilentPrompt()
    policy = AskCustomer(prompt, timeout=0.05)
    verdict = await policy.decide(Question(Requester("Taro", ""), ("screenshot",)))
    assert verdict == Verdict(False, "timeout")
    assert prompt.withdrawn
