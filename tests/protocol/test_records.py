import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from enkaku.protocol.errors import RecordError
from enkaku.protocol.records import (
    MAX_PLAINTEXT,
    RecordChannel,
    derive_direction_keys,
    next_key,
)

ISK = bytes(range(64))
SID = bytes(range(100, 132))


def pair(rekey_after: int = 1 << 20) -> tuple[RecordChannel, RecordChannel]:
    return (
        RecordChannel(ISK, SID, "agent", rekey_after=rekey_after),
        RecordChannel(ISK, SID, "technician", rekey_after=rekey_after),
    )


# RFC 5869 written out with hmac, independent of the code under test.
def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int = 32) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def test_key_schedule_matches_rfc5869() -> None:
    prk = hkdf_extract(SID, ISK)
    a2t, t2a = derive_direction_keys(ISK, SID)
    assert a2t == hkdf_expand(prk, b"enkaku/1 agent->technician")
    assert t2a == hkdf_expand(prk, b"enkaku/1 technician->agent")
    assert next_key(a2t) == hkdf_expand(a2t, b"enkaku/1 key update")
    assert a2t != t2a


def test_golden_key_schedule() -> None:
    a2t, t2a = derive_direction_keys(ISK, SID)
    assert a2t.hex() == "b1f19abe1b1d93217e1402fa7048729433353cdd8d55dc16455acd5b29cd75de"
    assert t2a.hex() == "eb61e7bf4bd7925e71e0687cdfae3908581191e66892ac3fdd7fa2cc8337a938"
    assert next_key(a2t).hex() == "b4e3007c4c68246bcdc4e4f95ad8fba72bd9e10aeef2de47f02ff1f34f172314"


def test_golden_records() -> None:
    agent = RecordChannel(ISK, SID, "agent", rekey_after=2)
    assert agent.seal(b"hello").hex() == "10baffbffcbacaecc63ff23d7c7d124ff2a12c868b31"
    assert agent.seal(b"").hex() == "102f7b344ffe21bb8982ea5f2f4eebcf48"
    # third record: first under the updated key, counter back to 0
    assert agent.seal(b"third record, after key update").hex() == (
        "103383b847bb545565002c9bd5403e4c69937b3d01ae29a294ba20e64239f039e32f6d9a7ff509dabcde1d19d4c833"
    )
    tech = RecordChannel(ISK, SID, "technician")
    assert tech.seal(b"hi agent").hex() == "109598d6718b11e9d9e438c118b1d361a831aea9fd91c1a6cb"


def test_wire_format_is_aes_gcm_with_implicit_counter_nonce() -> None:
    a2t, _ = derive_direction_keys(ISK, SID)
    agent, _ = pair()
    msgs = [agent.seal(b"record %d" % i) for i in range(3)]
    for i, msg in enumerate(msgs):
        nonce = bytes(4) + i.to_bytes(8, "big")
        assert msg == b"\x10" + AESGCM(a2t).encrypt(nonce, b"record %d" % i, b"\x10")


def test_round_trip_both_directions() -> None:
    agent, tech = pair()
    for i in range(5):
        assert tech.open(agent.seal(b"a%d" % i)) == b"a%d" % i
        assert agent.open(tech.seal(b"t%d" % i)) == b"t%d" % i
    assert agent.records_sent == agent.records_received == 5


def test_max_plaintext() -> None:
    agent, tech = pair()
    big = bytes(MAX_PLAINTEXT)
    msg = agent.seal(big)
    assert len(msg) == 1 + MAX_PLAINTEXT + 16
    assert tech.open(msg) == big
    with pytest.raises(ValueError):
        agent.seal(bytes(MAX_PLAINTEXT + 1))
    # a seal refused for size does not break the channel
    assert tech.open(agent.seal(b"ok")) == b"ok"


def test_oversized_record_rejected() -> None:
    _, tech = pair()
    with pytest.raises(RecordError, match="size"):
        tech.open(b"\x10" + bytes(MAX_PLAINTEXT + 17))


@pytest.mark.parametrize("n", [0, 1, 16])
def test_undersized_record_rejected(n: int) -> None:
    _, tech = pair()
    with pytest.raises(RecordError):
        tech.open(b"\x10" + bytes(n)[: max(0, n - 1)])


def test_tamper_each_byte() -> None:
    agent, _ = pair()
    msg = agent.seal(b"some plaintext")
    for i in range(len(msg)):
        _, tech = pair()
        bad = bytearray(msg)
        bad[i] ^= 0x01
        with pytest.raises(RecordError):
            tech.open(bytes(bad))


def test_drop_is_fatal() -> None:
    agent, tech = pair()
    agent.seal(b"lost")
    with pytest.raises(RecordError):
        tech.open(agent.seal(b"second"))


def test_replay_is_fatal() -> None:
    agent, tech = pair()
    msg = agent.seal(b"once")
    assert tech.open(msg) == b"once"
    with pytest.raises(RecordError):
        tech.open(msg)


def test_reorder_is_fatal() -> None:
    agent, tech = pair()
    first, second = agent.seal(b"1"), agent.seal(b"2")
    with pytest.raises(RecordError):
        tech.open(second)
    with pytest.raises(RecordError):
        tech.open(first)


def test_reflection_is_fatal() -> None:
    agent, _ = pair()
    with pytest.raises(RecordError):
        agent.open(agent.seal(b"to myself"))


def test_wrong_type_byte() -> None:
    agent, tech = pair()
    msg = agent.seal(b"x")
    with pytest.raises(RecordError, match="0x05"):
        tech.open(b"\x05" + msg[1:])


def test_failure_kills_the_channel() -> None:
    agent, tech = pair()
    good = agent.seal(b"good")
    with pytest.raises(RecordError):
        tech.open(b"\x10" + bytes(20))
    assert tech.failed
    with pytest.raises(RecordError, match="failed earlier"):
        tech.open(good)
    with pytest.raises(RecordError, match="failed earlier"):
        tech.seal(b"anything")


def test_different_sid_or_isk_do_not_interoperate() -> None:
    agent = RecordChannel(ISK, SID, "agent")
    other_sid = RecordChannel(ISK, bytes(32), "technician")
    other_isk = RecordChannel(bytes(64), SID, "technician")
    msg = agent.seal(b"x")
    with pytest.raises(RecordError):
        other_sid.open(msg)
    with pytest.raises(RecordError):
        other_isk.open(msg)


@pytest.mark.parametrize("rekey_after", [1, 2, 3, 7])
def test_rekey_boundary_interoperates(rekey_after: int) -> None:
    agent, tech = pair(rekey_after)
    for i in range(4 * rekey_after + 1):
        assert tech.open(agent.seal(b"a%d" % i)) == b"a%d" % i
        if i % 2:
            assert agent.open(tech.seal(b"t%d" % i)) == b"t%d" % i


def test_rekey_changes_the_key() -> None:
    a2t, _ = derive_direction_keys(ISK, SID)
    agent, _ = pair(rekey_after=2)
    agent.seal(b"0")
    agent.seal(b"1")
    third = agent.seal(b"2")
    assert third == b"\x10" + AESGCM(next_key(a2t)).encrypt(bytes(12), b"2", b"\x10")


def test_rekey_mismatch_is_fatal() -> None:
    agent = RecordChannel(ISK, SID, "agent", rekey_after=2)
    tech = RecordChannel(ISK, SID, "technician", rekey_after=3)
    tech.open(agent.seal(b"0"))
    tech.open(agent.seal(b"1"))
    with pytest.raises(RecordError):
        tech.open(agent.seal(b"2"))


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        RecordChannel(ISK, SID, "server")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RecordChannel(ISK, SID, "agent", rekey_after=0)
    with pytest.raises(ValueError):
        RecordChannel(ISK, SID, "agent", rekey_after=(1 << 20) + 1)


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_open_garbage_raises_only_record_error(data: bytes) -> None:
    _, tech = pair()
    with pytest.raises(RecordError):
        tech.open(data)
