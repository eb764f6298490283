"""Tampering with the handshake on the wire: flip any bit of any of the four messages.

A relay between agent and technician flips bits in one message (every byte position,
exhaustively, and any mask through Hypothesis). Both parties answer errors as the
adapter does (``transport/channel.py``: a FAILURE message where ``failure_reason_for``
gives one). Whatever was flipped:

- the handshake never succeeds on both sides, and the technician never succeeds;
- every error is a ``ProtocolError`` (never another exception type), and the side
  that raised it is FAILED with its secrets dropped;
- the agent's attempt is spent exactly when it failed after sending its share
  (``attempt_started`` and FAILED: the agent session counts it, DESIGN.md "a share not
  followed by a valid Tb is a failed attempt"). Only a flip in the agent's own
  confirmation Ta spends nothing: the agent has already checked the technician's Tb,
  so the technician knew the password; the technician fails and the session ends.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enkaku.protocol.errors import AuthenticationFailed, ProtocolError
from enkaku.protocol.handshake import (
    AgentHandshake,
    FailureReason,
    HandshakeState,
    PeerFailed,
    TechnicianHandshake,
    UnsupportedVersion,
    failure_message,
    failure_reason_for,
)
from tests.protocol.test_handshake import AGENT_ID, PASSWORD, run, seeded

NAMES = ("HELLO", "AGENT_SHARE", "TECH_SHARE", "AGENT_CONFIRM")


def parties() -> tuple[AgentHandshake, TechnicianHandshake]:
    return (
        AgentHandshake(PASSWORD, AGENT_ID, randbytes=seeded(1)),
        TechnicianHandshake(PASSWORD, AGENT_ID, randbytes=seeded(2)),
    )


TRANSCRIPT = run()[2]  # the four messages, with the same seeded parties
LENGTHS = [len(msg) for msg in TRANSCRIPT]


class Outcome:
    """What each side raised, if anything."""

    def __init__(self) -> None:
        self.errors: dict[str, ProtocolError] = {}


def run_tampered(
    step: int, position: int, mask: int
) -> tuple[AgentHandshake, TechnicianHandshake, Outcome]:
    """Run the handshake with message ``step`` XORed by ``mask`` at ``position``."""
    agent, tech = parties()
    out = Outcome()
    party: dict[str, AgentHandshake | TechnicianHandshake] = {"agent": agent, "technician": tech}
    # Messages in flight: (receiver, bytes). The relay tampers with the step-th handshake
    # message it carries; FAILURE messages the parties send pass untouched.
    queue: list[tuple[str, bytes]] = [("agent", tech.start())]
    carried = 0
    while queue:
        receiver, message = queue.pop(0)
        is_handshake = message[:1] != b"\x05"
        if is_handshake:
            if carried == step:
                tampered = bytearray(message)
                tampered[position] ^= mask
                message = bytes(tampered)
            carried += 1
        sender = "technician" if receiver == "agent" else "agent"
        try:
            replies = party[receiver].receive(message)
        except ProtocolError as exc:
            assert receiver not in out.errors, "a party answered after it failed"
            out.errors[receiver] = exc
            reason = failure_reason_for(exc)
            if reason is not None and party[receiver].state is HandshakeState.FAILED:
                queue.append((sender, failure_message(reason)))
            continue
        queue += [(sender, reply) for reply in replies]
    return agent, tech, out


def attempt_spent(agent: AgentHandshake) -> bool:
    """The observable the agent session counts: it failed after sending its share."""
    return agent.attempt_started and agent.state is HandshakeState.FAILED


def check(step: int, position: int, mask: int) -> None:
    agent, tech, out = run_tampered(step, position, mask)
    assert tech.state is not HandshakeState.ESTABLISHED, "a tampered handshake succeeded"
    assert "technician" in out.errors
    assert tech.state is HandshakeState.FAILED
    if agent.state is HandshakeState.ESTABLISHED:
        # Only when Ta itself was hit; the agent then refuses the technician's FAILURE.
        assert step == 3
        assert isinstance(out.errors["technician"], ProtocolError)
    else:
        assert agent.state is HandshakeState.FAILED
        assert "agent" in out.errors
    # Secrets are gone from every failed party.
    for side in (agent, tech):
        if side.state is HandshakeState.FAILED:
            assert side._prs == b"" and side._scalar is None
    # The attempt: spent exactly when the agent's share had gone out and it failed.
    share_went_out = step in (1, 2) or (step == 0 and position >= 3)
    assert attempt_spent(agent) is share_went_out
    assert agent.attempt_started is (step > 0 or position >= 3)
    # The documented error of each kind of flip.
    if step == 0 and position in (1, 2):
        assert isinstance(out.errors["agent"], UnsupportedVersion)
        assert failure_reason_for(out.errors["agent"]) is FailureReason.UNSUPPORTED_VERSION
    if step == 2 and position > 0 and not isinstance(out.errors["agent"], PeerFailed):
        # Yb, ADb or Tb changed: the agent sees a wrong password or a bad share.
        assert isinstance(out.errors["agent"], ProtocolError)
    if step == 0 and position >= 3:
        # A different nonce_t: the sids differ and Tb cannot verify.
        assert isinstance(out.errors["agent"], AuthenticationFailed)


@pytest.mark.parametrize("step", range(4), ids=NAMES)
@pytest.mark.parametrize("mask", [0x01, 0x80])
def test_every_flipped_byte_fails_the_handshake(step: int, mask: int) -> None:
    for position in range(LENGTHS[step]):
        check(step, position, mask)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    step=st.integers(0, 3),
    position=st.integers(0, max(LENGTHS)),
    mask=st.integers(1, 255),
)
def test_any_flip_fails_the_handshake(step: int, position: int, mask: int) -> None:
    check(step, position % LENGTHS[step], mask)


def test_untampered_run_succeeds() -> None:
    """The harness itself: with nothing flipped both sides are established."""
    agent, tech, out = run_tampered(step=99, position=0, mask=1)
    assert out.errors == {}
    assert agent.state is tech.state is HandshakeState.ESTABLISHED
    assert agent.attempt_started and not attempt_spent(agent)


@pytest.mark.parametrize("step", range(4), ids=NAMES)
@pytest.mark.parametrize("reason", list(FailureReason))
def test_a_forged_failure_in_place_of_any_message(step: int, reason: FailureReason) -> None:
    """The relay answers for a party with FAILURE: the handshake fails, PeerFailed names
    the reason, nobody answers a FAILURE, and once the agent's share is out its attempt
    is started (the adapter counts it on this path and on the timeout that follows)."""
    agent, tech = parties()
    messages = [tech.start()]
    receivers: list[AgentHandshake | TechnicianHandshake] = [agent, tech, agent, tech]
    for i in range(step):
        messages += receivers[i].receive(messages[i])
    victim = receivers[step]
    with pytest.raises(PeerFailed) as info:
        victim.receive(failure_message(reason))
    assert info.value.reason is reason
    assert failure_reason_for(info.value) is None
    assert victim.state is HandshakeState.FAILED
    assert tech.state is not HandshakeState.ESTABLISHED
    assert agent.attempt_started is (step > 0)
    if victim is agent:
        assert agent.state is HandshakeState.FAILED
        assert attempt_spent(agent) is (step == 2)
