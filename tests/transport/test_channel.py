"""SecureChannel over an in-memory leg pair: streams, flow control, endings, tampering."""

from __future__ import annotations

import asyncio
import os

import pytest

from enkaku.protocol import control
from enkaku.protocol.errors import AuthenticationFailed
from enkaku.protocol.handshake import (
    AgentHandshake,
    FailureReason,
    PeerRejectedPassword,
    TechnicianHandshake,
)
from enkaku.protocol.streams import INITIAL_WINDOW
from enkaku.transport.channel import SecureChannel, run_handshake
from enkaku.transport.errors import SessionEnded


class MemoryLeg:
    """One end of an in-memory relay: a bounded queue each way, like the real one."""

    def __init__(self, inbox: asyncio.Queue[bytes | str], outbox: asyncio.Queue[bytes | str]):
        self.inbox, self.outbox = inbox, outbox
        self.sent: list[bytes] = []
        self.tamper = False

    async def send(self, data: bytes) -> None:
        self.sent.append(data)
        if self.tamper and data[0] == 0x10:
            data = data[:-1] + bytes([data[-1] ^ 1])
        await self.outbox.put(data)

    async def receive(self, timeout: float | None = None) -> bytes:
        item = await self.inbox.get()
        if isinstance(item, str):
            raise SessionEnded(item)
        return item

    async def close(self, reason: str) -> None:
        await self.outbox.put(reason)


def leg_pair() -> tuple[MemoryLeg, MemoryLeg]:
    a: asyncio.Queue[bytes | str] = asyncio.Queue(maxsize=64)
    b: asyncio.Queue[bytes | str] = asyncio.Queue(maxsize=64)
    return MemoryLeg(a, b), MemoryLeg(b, a)


async def channels(password_t: str = "abcd-efgh") -> tuple[SecureChannel, SecureChannel]:
    agent_leg, tech_leg = leg_pair()
    agent_records, tech_records = await asyncio.gather(
        run_handshake(agent_leg, AgentHandshake("abcd-efgh", "123456789")),  # type: ignore[arg-type]
        run_handshake(tech_leg, TechnicianHandshake(password_t, "123456789")),  # type: ignore[arg-type]
    )
    agent = SecureChannel(agent_leg, agent_records, "agent")  # type: ignore[arg-type]
    tech = SecureChannel(tech_leg, tech_records, "technician")  # type: ignore[arg-type]
    agent.start()
    tech.start()
    return agent, tech


async def test_streams_carry_bytes_both_ways_beyond_the_window() -> None:
    agent, tech = await channels()
    payload = os.urandom(3 * INITIAL_WINDOW + 12345)
    stream = await tech.open_stream("rfb", {"k": 1})
    accepted = await asyncio.wait_for(agent.incoming.get(), 5)
    assert (accepted.kind, accepted.params) == ("rfb", {"k": 1})

    async def drain() -> bytes:
        out = bytearray()
        while chunk := await accepted.read():
            out += chunk
        return bytes(out)

    reader = asyncio.ensure_future(drain())
    await stream.write(payload)
    await stream.write_eof()
    assert await asyncio.wait_for(reader, 10) == payload
    await accepted.write(b"reply")
    assert await stream.read() == b"reply"
    await tech.close("technician_ended")
    assert await asyncio.wait_for(agent.wait_closed(), 5) == "technician_ended"


async def test_a_slow_reader_stops_the_writer_at_the_window() -> None:
    agent, tech = await channels()
    stream = await tech.open_stream("file")
    await asyncio.wait_for(agent.incoming.get(), 5)
    writer = asyncio.ensure_future(stream.write(b"x" * (2 * INITIAL_WINDOW)))
    await asyncio.sleep(0.2)
    # Nobody reads on the agent side: the writer is parked on the window, not buffering.
    assert not writer.done()
    sent = sum(len(d) for d in tech.leg.sent)  # type: ignore[attr-defined]
    assert sent < INITIAL_WINDOW + 64 * 1024
    writer.cancel()
    await tech.close("technician_ended")


async def test_control_messages_and_end_reason() -> None:
    agent, tech = await channels()
    await agent.send_control(control.Consent(granted=True, scope=["screen", "control"]))
    msg = await asyncio.wait_for(tech.control_messages.get(), 5)
    assert msg == control.Consent(granted=True, scope=["screen", "control"])
    await agent.close("customer_ended")
    assert await asyncio.wait_for(tech.wait_closed(), 5) == "customer_ended"


async def test_a_tampered_record_ends_the_session_as_a_protocol_error() -> None:
    agent, tech = await channels()
    tech.leg.tamper = True  # type: ignore[attr-defined]
    stream = await tech.open_stream("rfb")
    with pytest.raises(SessionEnded):
        await stream.write(b"hello")
        await asyncio.wait_for(agent.closed.wait(), 5)
        await stream.write(b"more")
    assert agent.end_reason == "protocol_error"


async def test_wrong_password_fails_both_handshakes_and_tells_the_technician() -> None:
    agent_leg, tech_leg = leg_pair()
    agent_result, tech_result = await asyncio.gather(
        run_handshake(agent_leg, AgentHandshake("abcd-efgh", "123456789")),  # type: ignore[arg-type]
        run_handshake(tech_leg, TechnicianHandshake("zzzz-zzzz", "123456789")),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert isinstance(agent_result, AuthenticationFailed)  # the agent checked Tb and refused
    assert isinstance(tech_result, PeerRejectedPassword)  # and said so with a FAILURE
    assert tech_result.reason is FailureReason.WRONG_PASSWORD
    # The agent sent nothing keyed: no record ever crossed.
    assert all(m[0] != 0x10 for m in agent_leg.sent)


def record_closes(channel: SecureChannel) -> list[str]:
    """The reasons ``channel`` closes its relay leg with, in order."""
    closes: list[str] = []
    original = channel.leg.close

    async def recording_close(reason: str) -> None:
        closes.append(reason)
        await original(reason)

    channel.leg.close = recording_close  # type: ignore[method-assign]
    return closes


async def test_a_side_never_claims_the_peers_reason_on_its_own_leg() -> None:
    # The customer denies: the agent says `end consent_denied` and closes its leg with it.
    # The technician, told end to end, must not close its own leg with the agent's reason
    # (the server would refuse the claim and might record it first as technician_ended).
    agent, tech = await channels()
    closes = record_closes(tech)
    await agent.send_control(control.End(reason="consent_denied"))
    msg = await asyncio.wait_for(tech.control_messages.get(), 5)
    assert msg == control.End(reason="consent_denied")
    closing = asyncio.ensure_future(tech.close("consent_denied"))
    await asyncio.sleep(0.05)  # the technician is now waiting for the relay's word
    await agent.leg.close("consent_denied")  # the agent's leg closes; the relay tells us
    await asyncio.wait_for(closing, 5)
    assert closes == []
    assert tech.end_reason == "consent_denied"


async def test_a_peer_that_never_closes_its_leg_gets_our_own_ending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("enkaku.transport.channel.PEER_END_GRACE", 0.05)
    agent, tech = await channels()
    await agent.send_control(control.End(reason="customer_ended"))  # but the leg stays open
    closes = record_closes(tech)
    await asyncio.wait_for(tech.control_messages.get(), 5)
    await tech.close("customer_ended")
    assert closes == ["technician_ended"]
    await agent.close("customer_ended")
