"""An in-memory relay leg pair and two SecureChannels over it, for tests of the channel
and of the session services that run on it (no server, no sockets)."""

from __future__ import annotations

import asyncio

from enkaku.protocol.handshake import AgentHandshake, TechnicianHandshake
from enkaku.transport.channel import SecureChannel, run_handshake
from enkaku.transport.errors import SessionEnded


class MemoryLeg:
    """One end of an in-memory relay: a bounded queue each way, like the real one."""

    def __init__(self, inbox: asyncio.Queue[bytes | str], outbox: asyncio.Queue[bytes | str]):
        self.inbox, self.outbox = inbox, outbox
        self.sent: list[bytes] = []
        self.tamper = False
        self.broken = False  # sends fail, as a closing WebSocket's do
        self.send_failed = asyncio.Event()

    async def send(self, data: bytes) -> None:
        if self.broken:
            self.send_failed.set()
            raise ConnectionResetError("closing")
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


def wire_bytes(channel: SecureChannel, start: int = 0) -> int:
    """The bytes ``channel`` sent on its in-memory leg, from its ``start``-th message on."""
    leg: MemoryLeg = channel.leg  # type: ignore[assignment]
    return sum(len(message) for message in leg.sent[start:])


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


class GatedLeg(MemoryLeg):
    """A leg whose sends wait for ``gate`` while it is set: the test decides when a
    record leaves, so the order of records is checked without any timing."""

    def __init__(self, inbox: asyncio.Queue[bytes | str], outbox: asyncio.Queue[bytes | str]):
        super().__init__(inbox, outbox)
        self.gate: asyncio.Event | None = None
        self.held = asyncio.Event()  # a send is waiting at the gate

    async def send(self, data: bytes) -> None:
        if self.gate is not None:
            self.held.set()
            await self.gate.wait()
        await super().send(data)


async def gated_channels() -> tuple[SecureChannel, SecureChannel]:
    a: asyncio.Queue[bytes | str] = asyncio.Queue(maxsize=64)
    b: asyncio.Queue[bytes | str] = asyncio.Queue(maxsize=64)
    agent_leg, tech_leg = GatedLeg(a, b), GatedLeg(b, a)
    agent_records, tech_records = await asyncio.gather(
        run_handshake(agent_leg, AgentHandshake("abcd-efgh", "123456789")),  # type: ignore[arg-type]
        run_handshake(tech_leg, TechnicianHandshake("abcd-efgh", "123456789")),  # type: ignore[arg-type]
    )
    agent = SecureChannel(agent_leg, agent_records, "agent")  # type: ignore[arg-type]
    tech = SecureChannel(tech_leg, tech_records, "technician")  # type: ignore[arg-type]
    agent.start()
    tech.start()
    return agent, tech
