import hashlib
import hmac
import logging
import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enkaku.protocol import cpace
from enkaku.protocol.errors import AuthenticationFailed, HandshakeError, ProtocolError
from enkaku.protocol.handshake import (
    AD_AGENT,
    AD_TECHNICIAN,
    AgentConfirm,
    AgentHandshake,
    AgentShare,
    Failure,
    FailureReason,
    HandshakeState,
    Hello,
    PeerFailed,
    PeerRejectedPassword,
    TechnicianHandshake,
    TechnicianShare,
    UnsupportedVersion,
    channel_identifier,
    failure_message,
    failure_reason_for,
)

PASSWORD = "k7m2-9qzx"
AGENT_ID = "123456789"


def seeded(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return rng.randbytes


def run(
    agent_pw: str = PASSWORD, tech_pw: str = PASSWORD
) -> tuple[AgentHandshake, TechnicianHandshake, list[bytes]]:
    """Run the four messages; returns both sides and the transcript."""
    agent = AgentHandshake(agent_pw, AGENT_ID, randbytes=seeded(1))
    tech = TechnicianHandshake(tech_pw, AGENT_ID, randbytes=seeded(2))
    hello = tech.start()
    [share_a] = agent.receive(hello)
    [share_b] = tech.receive(share_a)
    [confirm] = agent.receive(share_b)
    assert tech.receive(confirm) == []
    return agent, tech, [hello, share_a, share_b, confirm]


def at_agent_share() -> tuple[AgentHandshake, TechnicianHandshake, bytes]:
    agent = AgentHandshake(PASSWORD, AGENT_ID)
    tech = TechnicianHandshake(PASSWORD, AGENT_ID)
    [share_a] = agent.receive(tech.start())
    return agent, tech, share_a


# -- success ---------------------------------------------------------------------------


def test_success_establishes_matching_channels() -> None:
    agent, tech, _ = run()
    assert agent.state is tech.state is HandshakeState.ESTABLISHED
    assert tech.channel.open(agent.channel.seal(b"hello")) == b"hello"
    assert agent.channel.open(tech.channel.seal(b"hi")) == b"hi"
    assert agent.sid == tech.sid and len(agent.sid) == 32


def test_password_spellings_interoperate() -> None:
    agent, tech, _ = run(agent_pw="k7m2-9qzx", tech_pw="K7M2 9QZX")
    assert tech.channel.open(agent.channel.seal(b"x")) == b"x"


def test_wire_format() -> None:
    _, _, (hello, share_a, share_b, confirm) = run()
    nonce_t = seeded(2)(16)
    assert hello == b"\x01\x01\x01" + nonce_t
    assert len(share_a) == 1 + 16 + 32 + 1 + len(AD_AGENT)
    assert share_a[49:] == bytes([len(AD_AGENT)]) + AD_AGENT
    assert share_b[0] == 0x03 and share_b[33:34] == bytes([len(AD_TECHNICIAN)])
    assert len(share_b) == 1 + 32 + 1 + len(AD_TECHNICIAN) + 64
    assert len(confirm) == 65 and confirm[0] == 0x04


def test_transcript_is_cpace_with_draft_key_confirmation() -> None:
    """Recompute every value from the wire with cpace primitives and the documented CI."""
    agent, _, (hello, share_a, share_b, confirm) = run()
    h, a, b, c = (
        Hello.parse(hello),
        AgentShare.parse(share_a),
        TechnicianShare.parse(share_b),
        AgentConfirm.parse(confirm),
    )
    sid = h.nonce_t + a.nonce_a
    ci = b"\x08enkaku/1\x15CPACE-RISTR255-SHA512\x09" + AGENT_ID.encode()
    assert channel_identifier(AGENT_ID) == ci
    g = cpace.calculate_generator(b"k7m29qzx", ci, sid)
    # The agent's scalar is the draft's sample_scalar over its randbytes after nonce_a.
    rb = seeded(1)
    assert rb(16) == a.nonce_a
    ya = cpace.sample_scalar(rb)
    assert cpace.scalar_mult(ya, g) == a.ya
    k = cpace.scalar_mult_vfy(ya, b.yb)
    isk = cpace.derive_isk(sid, k, a.ya, AD_AGENT, b.yb, AD_TECHNICIAN)
    mac_key = hashlib.sha512(b"CPaceMac" + sid + isk).digest()
    assert b.tb == hmac.new(mac_key, cpace.lv_cat(b.yb, AD_TECHNICIAN), hashlib.sha512).digest()
    assert c.ta == hmac.new(mac_key, cpace.lv_cat(a.ya, AD_AGENT), hashlib.sha512).digest()
    # records are keyed from this ISK and sid
    from enkaku.protocol.records import RecordChannel

    assert RecordChannel(isk, sid, "technician").open(agent.channel.seal(b"z")) == b"z"


def test_states_progress() -> None:
    agent = AgentHandshake(PASSWORD, AGENT_ID)
    tech = TechnicianHandshake(PASSWORD, AGENT_ID)
    assert agent.state is HandshakeState.WAITING_FOR_HELLO
    assert tech.state is HandshakeState.NOT_STARTED
    hello = tech.start()
    assert tech.state is HandshakeState.WAITING_FOR_AGENT_SHARE
    assert not agent.attempt_started
    [share_a] = agent.receive(hello)
    assert agent.state is HandshakeState.WAITING_FOR_TECHNICIAN_SHARE
    assert agent.attempt_started
    [share_b] = tech.receive(share_a)
    assert tech.state is HandshakeState.WAITING_FOR_AGENT_CONFIRM
    with pytest.raises(RuntimeError):
        _ = tech.channel
    [confirm] = agent.receive(share_b)
    assert agent.state is HandshakeState.ESTABLISHED
    tech.receive(confirm)
    assert tech.state is HandshakeState.ESTABLISHED


def test_fresh_nonces_and_shares_each_run() -> None:
    _, _, t1 = run()
    a2 = AgentHandshake(PASSWORD, AGENT_ID)
    [share] = a2.receive(t1[0])
    assert share != t1[1]


def test_start_twice() -> None:
    tech = TechnicianHandshake(PASSWORD, AGENT_ID)
    tech.start()
    with pytest.raises(RuntimeError):
        tech.start()


def test_receive_before_start() -> None:
    tech = TechnicianHandshake(PASSWORD, AGENT_ID)
    with pytest.raises(ProtocolError):
        tech.receive(b"\x02")


def test_messages_after_established_are_refused() -> None:
    agent, tech, (_, _, share_b, confirm) = run()
    with pytest.raises(ProtocolError):
        agent.receive(share_b)
    with pytest.raises(ProtocolError):
        tech.receive(confirm)


def test_bad_password_text_is_refused_up_front() -> None:
    with pytest.raises(ProtocolError):
        TechnicianHandshake("abc", AGENT_ID)


def test_logs_carry_no_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="enkaku.protocol")
    run()
    text = caplog.text.lower()
    assert "waiting_for_technician_share -> established" in text
    for secret in ("k7m2", "k7m29qzx"):
        assert secret not in text


# -- wrong password ----------------------------------------------------------------------


def test_wrong_password_fails_on_both_sides() -> None:
    agent = AgentHandshake(PASSWORD, AGENT_ID)
    tech = TechnicianHandshake("k7m2-9qzy", AGENT_ID)
    [share_a] = agent.receive(tech.start())
    [share_b] = tech.receive(share_a)
    with pytest.raises(AuthenticationFailed) as info:
        agent.receive(share_b)
    assert agent.state is HandshakeState.FAILED
    reason = failure_reason_for(info.value)
    assert reason is FailureReason.WRONG_PASSWORD
    with pytest.raises(AuthenticationFailed) as tinfo:
        tech.receive(failure_message(reason))
    assert isinstance(tinfo.value, PeerRejectedPassword)
    assert tinfo.value.reason is FailureReason.WRONG_PASSWORD
    assert failure_reason_for(tinfo.value) is None  # do not answer a FAILURE
    assert tech.state is HandshakeState.FAILED
    with pytest.raises(RuntimeError):
        _ = agent.channel


def test_agent_sends_nothing_keyed_on_wrong_tb() -> None:
    agent, tech, share_a = at_agent_share()
    [share_b] = tech.receive(share_a)
    bad = bytearray(share_b)
    bad[-1] ^= 1
    with pytest.raises(AuthenticationFailed):
        agent.receive(bytes(bad))
    with pytest.raises(ProtocolError):
        agent.receive(share_b)  # no second try on the same run


def test_wrong_agent_id_is_a_wrong_password() -> None:
    agent = AgentHandshake(PASSWORD, AGENT_ID)
    tech = TechnicianHandshake(PASSWORD, "987654321")
    [share_a] = agent.receive(tech.start())
    with pytest.raises(AuthenticationFailed):
        agent.receive(tech.receive(share_a)[0])


def test_technician_rejects_wrong_ta() -> None:
    agent, tech, share_a = at_agent_share()
    [share_b] = tech.receive(share_a)
    [confirm] = agent.receive(share_b)
    bad = bytearray(confirm)
    bad[5] ^= 0x80
    with pytest.raises(AuthenticationFailed):
        tech.receive(bytes(bad))
    assert tech.state is HandshakeState.FAILED


@pytest.mark.parametrize("reason", list(FailureReason))
def test_failure_from_peer(reason: FailureReason) -> None:
    tech = TechnicianHandshake(PASSWORD, AGENT_ID)
    tech.start()
    with pytest.raises(HandshakeError) as info:
        tech.receive(failure_message(reason))
    assert isinstance(info.value, PeerFailed)
    assert info.value.reason is reason
    is_auth = reason in (FailureReason.WRONG_PASSWORD, FailureReason.PASSWORD_REPLACED)
    assert isinstance(info.value, AuthenticationFailed) is is_auth


def test_agent_handles_failure_from_technician() -> None:
    agent, _, _ = at_agent_share()
    with pytest.raises(PeerFailed) as info:
        agent.receive(failure_message(FailureReason.PROTOCOL_ERROR))
    assert info.value.reason is FailureReason.PROTOCOL_ERROR


def test_failure_message_bytes() -> None:
    assert failure_message(1) == b"\x05\x01"
    assert failure_message(FailureReason.BUSY) == b"\x05\x03"
    with pytest.raises(ValueError):
        failure_message(9)
    with pytest.raises(ProtocolError, match="unknown failure reason"):
        Failure.parse(b"\x05\x09")


# -- roles and reflection ----------------------------------------------------------------


def test_agent_rejects_its_own_share_reflected() -> None:
    agent, _, share_a = at_agent_share()
    with pytest.raises(ProtocolError):
        agent.receive(share_a)
    assert agent.state is HandshakeState.FAILED


def test_agent_rejects_its_share_in_a_technician_message() -> None:
    for ad in (AD_TECHNICIAN, AD_AGENT):
        agent, _, share_a = at_agent_share()
        ya = AgentShare.parse(share_a).ya
        forged = bytes(TechnicianShare(ya, ad, bytes(64)))
        with pytest.raises(HandshakeError, match=r"reflects|role name"):
            agent.receive(forged)


def test_technician_rejects_unknown_agent_ad() -> None:
    tech = TechnicianHandshake(PASSWORD, AGENT_ID)
    tech.start()
    forged = bytes(AgentShare(bytes(16), cpace.scalar_mult(bytes([9]) + bytes(31), _g()), b"x"))
    with pytest.raises(HandshakeError, match="role name"):
        tech.receive(forged)


def test_technician_rejects_its_own_share_reflected() -> None:
    _, tech, share_a = at_agent_share()
    [share_b] = tech.receive(share_a)
    with pytest.raises(ProtocolError):
        tech.receive(share_b)
    assert tech.state is HandshakeState.FAILED


def test_technician_rejects_agent_share_with_technician_ad() -> None:
    _, _, share_a = at_agent_share()
    a = AgentShare.parse(share_a)
    tech = TechnicianHandshake(PASSWORD, AGENT_ID)
    tech.start()
    with pytest.raises(HandshakeError, match="role name"):
        tech.receive(bytes(AgentShare(a.nonce_a, a.ya, AD_TECHNICIAN)))


def _g() -> bytes:
    return cpace.calculate_generator(b"k7m29qzx", channel_identifier(AGENT_ID), bytes(32))


@pytest.mark.parametrize(
    "point",
    [bytes(32), bytes.fromhex("2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c")],
)
def test_invalid_points_abort(point: bytes) -> None:
    agent, tech, share_a = at_agent_share()
    with pytest.raises(HandshakeError):
        agent.receive(bytes(TechnicianShare(point, AD_TECHNICIAN, bytes(64))))
    a = AgentShare.parse(share_a)
    with pytest.raises(HandshakeError):
        tech.receive(bytes(AgentShare(a.nonce_a, point, AD_AGENT)))


# -- strict parsing --------------------------------------------------------------------


def test_unsupported_version_and_suite() -> None:
    for hello in (b"\x01\x02\x01" + bytes(16), b"\x01\x01\x02" + bytes(16), b"\x01\x02\x01"):
        agent = AgentHandshake(PASSWORD, AGENT_ID)
        with pytest.raises(UnsupportedVersion) as info:
            agent.receive(hello)
        assert failure_reason_for(info.value) is FailureReason.UNSUPPORTED_VERSION


def _messages() -> list[bytes]:
    return run()[2]


@pytest.mark.parametrize("step", [0, 1, 2, 3])
def test_truncated_messages(step: int) -> None:
    msg = _messages()[step]
    for n in range(len(msg)):
        side = _side_at(step)
        with pytest.raises(ProtocolError) as info:
            side.receive(msg[:n])
        assert failure_reason_for(info.value) is FailureReason.PROTOCOL_ERROR


@pytest.mark.parametrize("step", [0, 1, 2, 3])
def test_oversized_messages(step: int) -> None:
    msg = _messages()[step]
    for extra in (b"\x00", bytes(64), bytes(70000)):
        side = _side_at(step)
        with pytest.raises(ProtocolError):
            side.receive(msg + extra)


@pytest.mark.parametrize("step", [0, 1, 2, 3])
@pytest.mark.parametrize("mtype", [0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x10, 0xFF])
def test_wrong_message_type(step: int, mtype: int) -> None:
    msg = _messages()[step]
    if mtype == msg[0]:
        return
    side = _side_at(step)
    with pytest.raises(ProtocolError):
        side.receive(bytes([mtype]) + msg[1:])


def test_ad_length_mismatch() -> None:
    _, _, share_a = at_agent_share()
    tech = TechnicianHandshake(PASSWORD, AGENT_ID)
    tech.start()
    bad = bytearray(share_a)
    bad[49] += 1  # AD length claims one byte more than present
    with pytest.raises(ProtocolError, match="truncated"):
        tech.receive(bytes(bad))


def _side_at(step: int) -> AgentHandshake | TechnicianHandshake:
    """A fresh party in the state where message ``step`` is expected."""
    agent = AgentHandshake(PASSWORD, AGENT_ID, randbytes=seeded(1))
    tech = TechnicianHandshake(PASSWORD, AGENT_ID, randbytes=seeded(2))
    hello = tech.start()
    if step == 0:
        return agent
    [share_a] = agent.receive(hello)
    if step == 1:
        return tech
    tech.receive(share_a)
    if step == 2:
        return agent
    return tech


# -- fuzzing -----------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(step=st.integers(0, 3), data=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_error(step: int, data: bytes) -> None:
    side = _side_at(step)
    try:
        side.receive(data)
    except ProtocolError:
        assert side.state is HandshakeState.FAILED


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(step=st.integers(0, 3), data=st.data())
def test_mutated_messages_raise_only_protocol_error(step: int, data: st.DataObject) -> None:
    msg = bytearray(_messages()[step])
    i = data.draw(st.integers(0, len(msg) - 1))
    msg[i] ^= data.draw(st.integers(1, 255))
    side = _side_at(step)
    try:
        side.receive(bytes(msg))
    except ProtocolError:
        assert side.state is HandshakeState.FAILED


# -- golden transcript (also in docs/protocol/handshake.md, for the browser side) -------

GOLDEN = {
    "hello": "010101000102030405060708090a0b0c0d0e0f",
    "agent_share": "02101112131415161718191a1b1c1d1e1f322ebdf22acd977cc2881492b5ce7914c743b7c5"
    "2690fd9f08caf890e1369a570c656e6b616b75206167656e74",
    "tech_share": "033887a7cdca5ba96703fbfcc24b5dfb8ccfd9c307be95436049d5a08525e8dd0311656e6b61"
    "6b7520746563686e696369616e2c000e635f011b8981cee896c5a8154e6ee4b1228fd123d04a486de0b59042"
    "e14dd63883453e00249739f8eb90e11d017c34b65cbf817375da90cb154143011f",
    "agent_confirm": "04d3efa88646baa56e23baa6aaae041786a75381078a6c9ac8c68fa176e0c6f39a0955e1e3"
    "4babaad2ee71c508261f2ce69221e312f8f201988e464e84acaedf58",
    "record_a2t": "10772e3e2892dfb8af1344587f851aba53b6cb639184",
    "record_t2a": "10ed93ddc7067cd0bd05679c6c783599053b143d7ae6",
}


def scripted(*chunks: bytes) -> Callable[[int], bytes]:
    it = iter(chunks)

    def randbytes(n: int) -> bytes:
        chunk = next(it)
        assert len(chunk) == n
        return chunk

    return randbytes


def test_golden_transcript() -> None:
    nonce_t, nonce_a = bytes(range(16)), bytes(range(16, 32))
    agent = AgentHandshake(
        "k7m2-9qzx", "123456789", randbytes=scripted(nonce_a, bytes(range(32, 64)))
    )
    tech = TechnicianHandshake(
        "K7M2 9QZX", "123456789", randbytes=scripted(nonce_t, bytes(range(64, 96)))
    )
    hello = tech.start()
    assert hello.hex() == GOLDEN["hello"]
    [share_a] = agent.receive(hello)
    assert share_a.hex() == GOLDEN["agent_share"]
    [share_b] = tech.receive(share_a)
    assert share_b.hex() == GOLDEN["tech_share"]
    [confirm] = agent.receive(share_b)
    assert confirm.hex() == GOLDEN["agent_confirm"]
    assert tech.receive(confirm) == []
    assert agent.channel.seal(b"hello").hex() == GOLDEN["record_a2t"]
    assert tech.channel.seal(b"hello").hex() == GOLDEN["record_t2a"]
