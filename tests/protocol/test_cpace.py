"""CPace against the draft-irtf-cfrg-cpace-21 vectors (suite CPACE-RISTR255-SHA512)."""

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from enkaku.protocol import cpace
from enkaku.protocol.errors import HandshakeError

#: The draft's public test vectors, copied into the repository (see vectors/README.md).
VECTOR_FILE = Path(__file__).resolve().parent / "vectors" / "cpace-draft21-testvectors.json"

# Every value of the suite's entry and what checks it; a new key in the file fails the
# completeness test below instead of going unchecked.
SUITE_KEYS = {
    "PRS", "CI", "sid", "ADa", "ADb", "ya", "yb",  # inputs
    "g", "Ya", "Yb", "K", "ISK_IR", "ISK_SY", "sid_output_ir", "sid_output_oc",
}  # fmt: skip
POINT_KEYS = {"Valid", "Invalid Y1", "Invalid Y2"}


def load(entry: str) -> Any:
    if not VECTOR_FILE.is_file():
        pytest.fail(
            f"CPace test vectors not found at {VECTOR_FILE}: the file is part of the "
            "repository (tests/protocol/vectors/README.md); restore it with git"
        )
    return json.loads(VECTOR_FILE.read_text())[entry]


@pytest.fixture(scope="module")
def v() -> dict[str, bytes]:
    return {k: bytes.fromhex(x) for k, x in load("G_Coffee25519").items()}


@pytest.fixture(scope="module")
def points() -> Any:
    return load("G_Coffee25519_points")


def test_vector_entries_are_all_covered() -> None:
    assert set(load("G_Coffee25519")) == SUITE_KEYS
    assert set(load("G_Coffee25519_points")) == POINT_KEYS


def test_prepend_len_and_lv_cat() -> None:
    # Appendix "Definition and test vectors for string utility functions"
    assert cpace.prepend_len(b"") == bytes.fromhex("00")
    assert cpace.prepend_len(b"1234") == bytes.fromhex("0431323334")
    assert cpace.prepend_len(bytes(range(127)))[:1] == b"\x7f"
    assert cpace.prepend_len(bytes(range(128))) == b"\x80\x01" + bytes(range(128))
    assert cpace.prepend_len(bytes(300))[:2] == bytes([0xAC, 0x02])
    assert cpace.lv_cat(b"1234", b"5", b"", b"678") == bytes.fromhex("043132333401350003363738")


def test_transcripts() -> None:
    assert cpace.transcript_ir(b"123", b"PartyA", b"234", b"PartyB") == bytes.fromhex(
        "03313233065061727479410332333406506172747942"
    )
    assert cpace.transcript_ir(b"3456", b"PartyA", b"2345", b"PartyB") == bytes.fromhex(
        "043334353606506172747941043233343506506172747942"
    )
    assert cpace.o_cat(b"ABCD", b"BCD") == b"ocBCDABCD"
    assert cpace.o_cat(b"BCD", b"ABCDE") == b"ocBCDABCDE"


def test_generator_string(v: dict[str, bytes]) -> None:
    gen = cpace.generator_string(v["PRS"], v["CI"], v["sid"])
    assert len(gen) == 170
    # DSI, PRS, then a 100-byte zero pad that completes the first SHA-512 block
    assert gen.startswith(b"\x11CPaceRistretto255\x08Password\x64" + bytes(100))
    assert gen.endswith(b"\x18" + v["CI"] + b"\x10" + v["sid"])
    assert hashlib.sha512(gen).digest() == bytes.fromhex(
        "da6d3ddc8802fca9058755ffd3ebde08a9c2c74945901a258482a288"
        "b6663af06bf645c93cd1c51512307199c80e84908916d983b34af772"
        "05f90851a657ee27"
    )


def test_generator_string_long_password_has_no_padding() -> None:
    prs = bytes(200)
    gen = cpace.generator_string(prs, b"", b"")
    assert gen == cpace.lv_cat(cpace.DSI, prs, b"", b"", b"")


def test_calculate_generator(v: dict[str, bytes]) -> None:
    assert cpace.calculate_generator(v["PRS"], v["CI"], v["sid"]) == v["g"]


def test_shares(v: dict[str, bytes]) -> None:
    assert cpace.scalar_mult(v["ya"], v["g"]) == v["Ya"]
    assert cpace.scalar_mult(v["yb"], v["g"]) == v["Yb"]


def test_secret_point(v: dict[str, bytes]) -> None:
    assert cpace.scalar_mult_vfy(v["ya"], v["Yb"]) == v["K"]
    assert cpace.scalar_mult_vfy(v["yb"], v["Ya"]) == v["K"]


def test_isk_initiator_responder(v: dict[str, bytes]) -> None:
    isk = cpace.derive_isk(v["sid"], v["K"], v["Ya"], v["ADa"], v["Yb"], v["ADb"])
    assert isk == v["ISK_IR"]


def test_isk_symmetric(v: dict[str, bytes]) -> None:
    isk = cpace.derive_isk_symmetric(v["sid"], v["K"], v["Ya"], v["ADa"], v["Yb"], v["ADb"])
    assert isk == v["ISK_SY"]


def test_sid_output(v: dict[str, bytes]) -> None:
    ir = cpace.transcript_ir(v["Ya"], v["ADa"], v["Yb"], v["ADb"])
    oc = cpace.transcript_oc(v["Ya"], v["ADa"], v["Yb"], v["ADb"])
    assert cpace.sid_output(ir) == v["sid_output_ir"]
    assert cpace.sid_output(oc) == v["sid_output_oc"]


def test_scalar_mult_valid_point(points: Any) -> None:
    valid = {k: bytes.fromhex(x) for k, x in points["Valid"].items()}
    assert cpace.scalar_mult(valid["s"], valid["X"]) == valid["G.scalar_mult(s,decode(X))"]
    assert cpace.scalar_mult_vfy(valid["s"], valid["X"]) == valid["G.scalar_mult_vfy(s,X)"]


@pytest.mark.parametrize("name", ["Invalid Y1", "Invalid Y2"])
def test_scalar_mult_vfy_aborts_on_invalid_points(points: Any, name: str) -> None:
    s = bytes.fromhex(points["Valid"]["s"])
    with pytest.raises(HandshakeError):
        cpace.scalar_mult_vfy(s, bytes.fromhex(points[name]))


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        bytes(31),
        bytes(33),
        b"\xff" * 32,
        bytes([0xED]) + b"\xff" * 30 + b"\x7f",  # p itself: not reduced
        bytes([1]) + bytes(31),  # odd, i.e. negative: not canonical
    ],
)
def test_scalar_mult_vfy_aborts_on_bad_encodings(bad: bytes) -> None:
    with pytest.raises(HandshakeError):
        cpace.scalar_mult_vfy(bytes([1]) + bytes(31), bad)


def test_scalar_mult_vfy_aborts_on_non_canonical_encoding(v: dict[str, bytes]) -> None:
    # RFC 9496 §4.3.1: an encoding with bit 255 set is not canonical and must be refused.
    y = bytearray(v["Ya"])
    y[31] |= 0x80
    with pytest.raises(HandshakeError):
        cpace.scalar_mult_vfy(v["yb"], bytes(y))


def test_sample_scalar_follows_the_draft() -> None:
    s = cpace.sample_scalar(lambda n: b"\xff" * n)
    assert s == b"\xff" * 31 + b"\x0f"  # bits above 252 cleared
    calls = iter([bytes(32), bytes([7]) + bytes(31)])
    assert cpace.sample_scalar(lambda n: next(calls)) == bytes([7]) + bytes(31)  # zero redrawn


def test_random_run_agrees() -> None:
    g = cpace.calculate_generator(b"abcd0efg", b"ci", b"sid")
    ya, yb = cpace.sample_scalar(), cpace.sample_scalar()
    big_ya, big_yb = cpace.scalar_mult(ya, g), cpace.scalar_mult(yb, g)
    assert cpace.scalar_mult_vfy(ya, big_yb) == cpace.scalar_mult_vfy(yb, big_ya)


def test_key_confirmation_tags(v: dict[str, bytes]) -> None:
    # Draft §"Key confirmation": mac_key = H(b"CPaceMac" || sid || ISK), tags over lv_cat(Y, AD)
    key = cpace.mac_key(v["sid"], v["ISK_IR"])
    assert key == hashlib.sha512(b"CPaceMac" + v["sid"] + v["ISK_IR"]).digest()
    ta = cpace.confirmation_tag(key, v["Ya"], v["ADa"])
    tb = cpace.confirmation_tag(key, v["Yb"], v["ADb"])
    assert ta == hmac.new(key, b"\x20" + v["Ya"] + b"\x03ADa", hashlib.sha512).digest()
    assert tb == hmac.new(key, b"\x20" + v["Yb"] + b"\x03ADb", hashlib.sha512).digest()
    assert len(ta) == cpace.TAG_BYTES
    assert cpace.verify_tag(ta, ta)
    assert not cpace.verify_tag(ta, tb)
