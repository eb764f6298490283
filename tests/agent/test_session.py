"""The agent's session over an in-memory relay leg: attempts, consent floor, printed text."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from enkaku.agent import session as session_mod
from enkaku.agent.consent import (
    AllowAll,
    ConsentPolicy,
    DenyAll,
    ImplicitConsent,
    PolicyKind,
    Question,
    Requester,
    TerminalConsent,
    Verdict,
    session_policy,
)
from enkaku.agent.identity import DeviceKey
from enkaku.agent.runtime import MAX_FAILED_ATTEMPTS, AgentRuntime
from enkaku.agent.session import AgentSession, SessionRequest
from enkaku.i18n import printable
from enkaku.protocol import control
from enkaku.protocol.handshake import FailureReason, TechnicianHandshake, failure_message
from enkaku.protocol.streams import CONTROL_STREAM, FrameType, encode_frame
from enkaku.transport.channel import SecureChannel, run_handshake
from tests.channelpair import MemoryLeg, leg_pair

AGENT_ID = "123456789"
PASSWORDS = iter(f"{n:04d}-abcd" for n in range(1000))


class RecordingUI:
    """Keeps what the agent would show the customer."""

    def __init__(self) -> None:
        self.credentials_shown: list[str] = []
        self.notices: list[tuple[str, dict[str, object]]] = []
        self.chats: list[tuple[str, str]] = []
        self.activities: list[tuple[str, dict[str, object]]] = []

    def credentials(self, agent_id: str, password: str) -> None:
        self.credentials_shown.append(password)

    def notice(self, key: str, **kwargs: object) -> None:
        self.notices.append((key, kwargs))

    def session_started(self, who: Requester) -> None:
        pass

    def session_ended(self, reason: str) -> None:
        pass

    def chat(self, who: Requester, text: str, at: str) -> None:
        self.chats.append((who.label, text))

    def activity(self, kind: str, info: dict[str, object]) -> None:
        self.activities.append((kind, info))


class Agent:
    """A real AgentRuntime (not connected) whose sessions use an in-memory relay leg."""

    def __init__(self, tmp: Path, consent: ConsentPolicy) -> None:
        self.ui = RecordingUI()
        self.rt = AgentRuntime(
            "http://127.0.0.1:1",
            DeviceKey.load_or_create(tmp / "key"),
            self.ui,
            consent=consent,
            new_password=lambda: next(PASSWORDS),
        )
        self.rt.agent_id = AGENT_ID
        self.rt.http = None  # type: ignore[assignment]  # the fake open_leg needs none
        self.reports: list[str] = []
        self.session: AgentSession | None = None

        async def report(session_id: str, event: str, detail: str | None = None) -> None:
            self.reports.append(event)

        self.rt.report = report  # type: ignore[method-assign]

    def start(
        self,
        monkeypatch: pytest.MonkeyPatch,
        *,
        implicit: bool = False,
        name: str = "Taro Tanaka",
        company: str = "ACME",
    ) -> tuple[asyncio.Task[str], MemoryLeg]:
        agent_leg, tech_leg = leg_pair()

        async def fake_open_leg(*args: Any, **kwargs: Any) -> MemoryLeg:
            return agent_leg

        monkeypatch.setattr(session_mod, "open_leg", fake_open_leg)
        req = SessionRequest.parse(
            {
                "session_id": "ab" * 16,
                "relay_url": "ws://127.0.0.1:1/ws/relay/x",
                "relay_token": "t",
                "technician": {"name": name, "company": company},
                "implicit_consent": implicit,
            },
            str,
        )
        self.session = sess = AgentSession(self.rt, req)
        return asyncio.ensure_future(sess.run()), tech_leg


async def technician_fails_after_share(tech_leg: MemoryLeg, reason: FailureReason) -> None:
    """HELLO, read the agent's share, answer FAILURE instead of a share and Tb."""
    hs = TechnicianHandshake("zzzz-zzzz", AGENT_ID)
    await tech_leg.send(hs.start())
    share = await asyncio.wait_for(tech_leg.receive(), 5)
    assert share[0] == 0x02  # the agent's share: from here on, an attempt is spent
    await tech_leg.send(failure_message(reason))


@pytest.mark.parametrize(
    "reason",
    [FailureReason.WRONG_PASSWORD, FailureReason.PROTOCOL_ERROR, FailureReason.BUSY],
)
async def test_a_failure_answer_to_the_share_counts_an_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reason: FailureReason
) -> None:
    agent = Agent(tmp_path, DenyAll())
    first = agent.rt.password
    for attempt in range(1, MAX_FAILED_ATTEMPTS + 1):
        run, tech_leg = agent.start(monkeypatch)
        await technician_fails_after_share(tech_leg, reason)
        await asyncio.wait_for(run, 5)
        if attempt < MAX_FAILED_ATTEMPTS:
            assert agent.rt.failed_attempts == attempt
            # The customer is told about every wrong attempt, not only the last.
            assert agent.ui.notices[-1] == (
                "agent_wrong_attempt",
                {"attempt": attempt, "limit": MAX_FAILED_ATTEMPTS},
            )
    assert agent.rt.password != first
    assert agent.rt.failed_attempts == 0
    # The new password is shown once (credentials), after one notice saying why.
    assert agent.ui.credentials_shown == [agent.rt.password]
    assert agent.ui.notices[-1][0] == "agent_password_replaced"
    assert all(agent.rt.password not in str(kw) for _, kw in agent.ui.notices)


async def test_a_failure_before_the_share_costs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = Agent(tmp_path, DenyAll())
    run, tech_leg = agent.start(monkeypatch)
    await tech_leg.send(failure_message(FailureReason.WRONG_PASSWORD))
    assert await asyncio.wait_for(run, 5) == "wrong_password"
    assert agent.rt.failed_attempts == 0
    assert agent.reports == []  # no attempt was made: nothing to report


async def test_a_wrong_tag_is_counted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent(tmp_path, DenyAll())
    run, tech_leg = agent.start(monkeypatch)
    with pytest.raises(Exception):  # noqa: B017 - the technician's side fails too
        hs = TechnicianHandshake("zzzz-zzzz", AGENT_ID)
        await run_handshake(tech_leg, hs, timeout=5)  # type: ignore[arg-type]
    assert await asyncio.wait_for(run, 5) == "wrong_password"
    assert agent.rt.failed_attempts == 1
    assert agent.reports == ["wrong_password"]


async def established(tech_leg: MemoryLeg, password: str) -> SecureChannel:
    hs = TechnicianHandshake(password, AGENT_ID)
    records = await run_handshake(tech_leg, hs, timeout=5)  # type: ignore[arg-type]
    channel = SecureChannel(tech_leg, records, "technician")  # type: ignore[arg-type]
    channel.start()
    return channel


async def test_implicit_consent_never_overrides_deny(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = Agent(tmp_path, DenyAll())
    run, tech_leg = agent.start(monkeypatch, implicit=True)
    channel = await established(tech_leg, agent.rt.password)
    msg = await asyncio.wait_for(channel.control_messages.get(), 5)
    assert msg == control.Consent(granted=False, scope=[])
    assert await asyncio.wait_for(run, 5) == "consent_denied"
    assert "--consent allow" not in capsys.readouterr().err


async def test_implicit_consent_skips_the_prompt_of_an_asking_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = Agent(tmp_path, TerminalConsent(timeout=0.01))
    run, tech_leg = agent.start(monkeypatch, implicit=True)
    channel = await established(tech_leg, agent.rt.password)
    msg = await asyncio.wait_for(channel.control_messages.get(), 5)
    assert msg == control.Consent(granted=True, scope=["screen", "control"])
    err = capsys.readouterr().err
    assert "--consent allow" not in err
    assert "policy" in err and "Taro Tanaka (ACME)" in err
    await channel.close("technician_ended")
    assert await asyncio.wait_for(run, 5) == "technician_ended"


async def test_server_strings_are_printed_without_control_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = Agent(tmp_path, AllowAll())
    run, tech_leg = agent.start(
        monkeypatch,
        name="Evil\x1b[2J\x1b]0;owned\x07 Tech\u202egnp.exe",
        company="ACME\r\nYour bank\x9b31m",
    )
    channel = await established(tech_leg, agent.rt.password)
    await asyncio.wait_for(channel.control_messages.get(), 5)
    err = capsys.readouterr().err
    assert "Evil[2J]0;owned Techgnp.exe (ACME  Your bank31m)" in err
    for bad in ("\x1b", "\x07", "\u202e", "\r", "\x9b"):
        assert bad not in err
    await channel.close("technician_ended")
    await asyncio.wait_for(run, 5)


class Recording:
    kind: ClassVar[PolicyKind] = "ask"

    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    async def decide(self, question: Question) -> Verdict:
        self.asked.append(question.actions)
        return Verdict(False, "denied")


async def test_session_policy_floor() -> None:
    deny, allow, ask = DenyAll(), AllowAll(), Recording()
    assert session_policy(deny, True) is deny
    assert session_policy(allow, True) is allow
    assert session_policy(ask, False) is ask
    implicit = session_policy(ask, True)
    assert isinstance(implicit, ImplicitConsent)
    who = Requester("a", "b")
    assert (await implicit.decide(Question(who, ("screen", "control")))).granted
    assert ask.asked == []
    # Beyond screen and control, the customer is still asked: screenshots, files,
    # system information and every other receipt of the customer's data.
    for action in sorted(set(control.ACTIONS) - {"screen", "control"}):
        assert not (await implicit.decide(Question(who, (action,)))).granted
    assert ask.asked == [(a,) for a in sorted(set(control.ACTIONS) - {"screen", "control"})]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Taro Tanaka", "Taro Tanaka"),
        ("田中 太郎 (サポート)", "田中 太郎 (サポート)"),
        ("a\x1b[31mb", "a[31mb"),
        ("a\x00b\x7fc\x85d\x9be", "abc de"),
        ("x\u202ey\u2066z\u2069\u200b", "xyz"),
        ("line1\nline2\tx\u2028y", "line1 line2 x y"),
        ("lone \ud800 surrogate", "lone  surrogate"),
    ],
)
def test_printable(raw: str, clean: str) -> None:
    assert printable(raw) == clean


def test_printable_cuts_at_the_limit() -> None:
    assert printable("x" * 1000, 128) == "x" * 128


@pytest.mark.parametrize("ftype", [FrameType.EOF, FrameType.RESET])
async def test_ending_the_control_stream_ends_the_session_as_a_protocol_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftype: FrameType
) -> None:
    agent = Agent(tmp_path, AllowAll())
    run, tech_leg = agent.start(monkeypatch)
    channel = await established(tech_leg, agent.rt.password)
    assert (await asyncio.wait_for(channel.control_messages.get(), 5)).granted  # type: ignore[union-attr]
    # A raw EOF/RESET for stream 0 (our own Mux refuses to write one).
    await tech_leg.send(channel.records.seal(encode_frame(ftype, CONTROL_STREAM)))
    # Accepted, it would leave a session whose `end` can never arrive; it ends instead.
    assert await asyncio.wait_for(run, 5) == "protocol_error"


@pytest.mark.parametrize(("ended_by", "counted"), [("technician_ended", 1), ("customer_ended", 0)])
async def test_a_session_ended_through_the_server_after_the_share_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ended_by: str, counted: int
) -> None:
    agent = Agent(tmp_path, DenyAll())
    run, tech_leg = agent.start(monkeypatch)
    sess = agent.session
    assert sess is not None
    hs = TechnicianHandshake("zzzz-zzzz", AGENT_ID)
    await tech_leg.send(hs.start())
    assert (await asyncio.wait_for(tech_leg.receive(), 5))[0] == 0x02  # the share is out
    # The server relays the technician's API end (session_end), or the customer ends it.
    sess.end(ended_by)
    assert await asyncio.wait_for(run, 5) == ended_by
    assert agent.rt.failed_attempts == counted
