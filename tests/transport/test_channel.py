"""SecureChannel over an in-memory leg pair: streams, flow control, endings, tampering."""

from __future__ import annotations

import asyncio
import itertools
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
from enkaku.transport.channel import ALONE_SLICE, SLICE, SecureChannel, Stream, run_handshake
from enkaku.transport.errors import SessionEnded
from tests.channelpair import GatedLeg, MemoryLeg, channels, gated_channels, leg_pair, wire_bytes


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
    sent = wire_bytes(tech)
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


# -- the writer: priority, round-robin, reading never waits for writing, byte counters ------


def frames_seen(channel: SecureChannel) -> list[tuple[int, int]]:
    """(frame type, stream id) of every record ``channel`` opens, in wire order."""
    seen: list[tuple[int, int]] = []
    original = channel.records.open

    def recording_open(message: bytes) -> bytes:
        frame = original(message)
        seen.append((frame[0], int.from_bytes(frame[1:5], "big")))
        return frame

    channel.records.open = recording_open  # type: ignore[method-assign]
    return seen


def data_sizes(channel: SecureChannel) -> list[tuple[int, int]]:
    """(stream id, payload size) of every DATA record ``channel`` opens, in wire order."""
    seen: list[tuple[int, int]] = []
    original = channel.records.open

    def recording_open(message: bytes) -> bytes:
        frame = original(message)
        if frame[0] == DATA:
            seen.append((int.from_bytes(frame[1:5], "big"), len(frame) - 5))
        return frame

    channel.records.open = recording_open  # type: ignore[method-assign]
    return seen


async def drain(stream: Stream) -> int:
    total = 0
    while chunk := await stream.read():
        total += len(chunk)
    return total


DATA, WINDOW = 2, 3


async def test_a_control_message_overtakes_a_big_write_in_progress() -> None:
    agent, tech = await gated_channels()
    stream = await tech.open_stream("file")
    reader = asyncio.ensure_future(drain(await asyncio.wait_for(agent.incoming.get(), 5)))
    seen = frames_seen(agent)
    leg: GatedLeg = tech.leg  # type: ignore[assignment]
    leg.gate = asyncio.Event()
    writing = asyncio.ensure_future(stream.write(b"x" * (2 * INITIAL_WINDOW)))
    await asyncio.wait_for(leg.held.wait(), 5)  # the first record of the big write is on its way
    controlling = asyncio.ensure_future(tech.send_control(control.Status(control_paused=True)))
    for _ in range(3):
        await asyncio.sleep(0)  # the control message is queued behind that one record
    leg.gate.set()
    leg.gate = None
    await asyncio.wait_for(asyncio.gather(writing, controlling), 10)
    await stream.write_eof()
    assert await asyncio.wait_for(reader, 10) == 2 * INITIAL_WINDOW
    data_sids = [sid for ftype, sid in seen if ftype == DATA]
    # At most the record already in flight went out before the control message.
    assert data_sids.index(0) <= 1
    await tech.close("technician_ended")


async def test_two_big_writes_take_turns() -> None:
    agent, tech = await channels()
    first, second = await tech.open_stream("file"), await tech.open_stream("rfb")
    readers = [
        asyncio.ensure_future(drain(await asyncio.wait_for(agent.incoming.get(), 5)))
        for _ in range(2)
    ]
    seen = frames_seen(agent)
    await asyncio.gather(first.write(b"a" * INITIAL_WINDOW), second.write(b"b" * INITIAL_WINDOW))
    await first.write_eof()
    await second.write_eof()
    assert await asyncio.wait_for(asyncio.gather(*readers), 10) == [INITIAL_WINDOW] * 2
    data_sids = [sid for ftype, sid in seen if ftype == DATA]
    runs = [1]
    for prev, cur in itertools.pairwise(data_sids):
        runs.append(runs[-1] + 1 if cur == prev else 1)
    # Round-robin slices: neither stream sends two records in a row (the very first
    # slice may go before the other write is queued).
    assert max(runs) <= 2
    await tech.close("technician_ended")


async def test_a_stream_alone_sends_whole_data_frames_and_shares_slices_when_not() -> None:
    """A stream alone in the writer's line sends a large write a whole DATA frame to a
    record (``ALONE_SLICE``: half the records of ``SLICE``); while another stream waits
    its turn, each sends ``SLICE`` at a time, taking turns, and both arrive whole."""
    assert SLICE < ALONE_SLICE
    agent, tech = await channels()
    screen = await tech.open_stream("rfb")
    reader = asyncio.ensure_future(drain(await asyncio.wait_for(agent.incoming.get(), 5)))
    sizes = data_sizes(agent)
    await screen.write(b"s" * (INITIAL_WINDOW // 2))
    alone = [n for sid, n in sizes if sid == screen.id]
    assert sum(alone) == INITIAL_WINDOW // 2
    assert alone == [ALONE_SLICE] * (INITIAL_WINDOW // 2 // ALONE_SLICE)
    upload = await tech.open_stream("file")
    uploaded = asyncio.ensure_future(drain(await asyncio.wait_for(agent.incoming.get(), 5)))
    sizes.clear()
    await asyncio.gather(screen.write(b"s" * INITIAL_WINDOW), upload.write(b"u" * INITIAL_WINDOW))
    both = sizes[1:-1]  # the first may go before the other write is queued, the last after
    assert {sid for sid, _ in both} == {screen.id, upload.id}
    assert all(n <= SLICE for _, n in both)
    runs = [1]
    for (prev, _), (cur, _) in itertools.pairwise(both):
        runs.append(runs[-1] + 1 if cur == prev else 1)
    assert max(runs) <= 2  # in turns (as in test_two_big_writes_take_turns)
    await screen.write_eof()
    await upload.write_eof()
    assert await asyncio.wait_for(asyncio.gather(reader, uploaded), 10) == [
        INITIAL_WINDOW * 3 // 2, INITIAL_WINDOW,
    ]  # fmt: skip
    await tech.close("technician_ended")


async def test_reading_returns_credit_while_the_writer_is_stuck() -> None:
    agent, tech = await gated_channels()
    upload = await tech.open_stream("file")
    incoming = await asyncio.wait_for(agent.incoming.get(), 5)
    screen = await agent.open_stream("rfb")
    await asyncio.wait_for(tech.incoming.get(), 5)
    seen = frames_seen(tech)
    # The agent's big screen write is stuck on its leg (the relay is not taking records).
    leg: GatedLeg = agent.leg  # type: ignore[assignment]
    leg.gate = asyncio.Event()
    writing = asyncio.ensure_future(screen.write(b"s" * INITIAL_WINDOW))
    await asyncio.wait_for(leg.held.wait(), 5)
    # Reading the upload on the agent neither waits for that write nor for credit.
    await upload.write(b"u" * (INITIAL_WINDOW // 2))
    got = 0
    while got < INITIAL_WINDOW // 2:
        got += len(await asyncio.wait_for(incoming.read(), 5))
    assert not writing.done()
    leg.gate.set()
    leg.gate = None
    await asyncio.wait_for(writing, 10)
    # The credit it returned went out right after the record that was in flight.
    order = [(ftype, sid) for ftype, sid in seen if sid != 0]
    assert (WINDOW, incoming.id) in order[:2]
    await tech.close("technician_ended")


async def test_byte_counters_equal_the_records_on_the_wire() -> None:
    agent, tech = await channels()
    before = {side: len(side.leg.sent) for side in (agent, tech)}  # type: ignore[attr-defined]
    stream = await tech.open_stream("file")
    reader = asyncio.ensure_future(drain(await asyncio.wait_for(agent.incoming.get(), 5)))
    await tech.send_control(control.Status(control_paused=True))
    await stream.write(b"f" * (INITIAL_WINDOW + 1000))
    await stream.write_eof()
    assert await asyncio.wait_for(reader, 10) == INITIAL_WINDOW + 1000
    await tech.close("technician_ended")
    await asyncio.wait_for(agent.wait_closed(), 5)
    on_wire = {side: wire_bytes(side, before[side]) for side in (agent, tech)}
    assert tech.stats.sent == on_wire[tech] == agent.stats.received
    assert agent.stats.sent == on_wire[agent] == tech.stats.received > 0  # credit returned
    assert sum(tech.stats.sent_by_kind.values()) == tech.stats.sent
    assert tech.stats.sent_by_kind["file"] > INITIAL_WINDOW + 1000
    assert tech.stats.sent_by_kind["control"] > 0
    assert agent.stats.received_by_kind == tech.stats.sent_by_kind
    # The peer ended the session: the agent's writer stopped on its own (no orphan task).
    await asyncio.wait_for(asyncio.shield(agent._writer), 5)  # type: ignore[arg-type]
    await agent.close("customer_ended")


async def test_writing_after_eof_is_refused_and_a_waiting_write_ends_at_eof() -> None:
    agent, tech = await channels()
    stream = await tech.open_stream("file")
    await asyncio.wait_for(agent.incoming.get(), 5)  # nobody reads: the window runs out
    waiting = asyncio.ensure_future(stream.write(b"w" * (2 * INITIAL_WINDOW)))
    await asyncio.sleep(0)
    await stream.write_eof()
    with pytest.raises(SessionEnded, match="stream_closed"):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(SessionEnded, match="stream_closed"):
        await stream.write(b"late")
    await tech.close("technician_ended")
    assert await asyncio.wait_for(agent.wait_closed(), 5) == "technician_ended"
    assert agent.end_reason == "technician_ended"  # no DATA after EOF reached the agent


async def test_a_failed_send_keeps_the_reason_the_relay_gives() -> None:
    agent, tech = await channels()
    stream = await tech.open_stream("file")
    await asyncio.wait_for(agent.incoming.get(), 5)
    leg: MemoryLeg = tech.leg  # type: ignore[assignment]
    leg.broken = True
    writing = asyncio.ensure_future(stream.write(b"w"))
    await asyncio.wait_for(leg.send_failed.wait(), 5)
    await agent.leg.close("customer_ended")  # the relay closes the technician's leg
    with pytest.raises(SessionEnded, match="customer_ended"):
        await asyncio.wait_for(writing, 5)
    assert tech.end_reason == "customer_ended"
    await tech.close("customer_ended")
    await agent.close("customer_ended")
