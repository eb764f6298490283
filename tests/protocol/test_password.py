from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.password import ALPHABET, generate_password, normalize_password


def test_alphabet_is_crockford_lowercase() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set("ilou") & set(ALPHABET)


def test_generate_format() -> None:
    pw = generate_password()
    assert len(pw) == 9
    assert pw[4] == "-"
    assert set(pw.replace("-", "")) <= set(ALPHABET)


def test_generate_is_exactly_40_bits() -> None:
    assert generate_password(lambda n: bytes(n)) == "0000-0000"
    assert generate_password(lambda n: b"\xff" * n) == "zzzz-zzzz"
    # 0x0123456789 = 00000 00100 10001 10100 01010 11001 11100 01001
    assert generate_password(lambda n: bytes.fromhex("0123456789")) == "04hm-asw9"


def test_generate_asks_for_five_bytes() -> None:
    asked = []

    def rb(n: int) -> bytes:
        asked.append(n)
        return bytes(n)

    generate_password(rb)
    assert asked == [5]


def _fixed(raw: bytes) -> Callable[[int], bytes]:
    return lambda n: raw


def test_generate_is_unbiased_per_position() -> None:
    # Every 5-bit value maps to one symbol: sweeping one position over all 32 values hits
    # every symbol once.
    for pos in range(8):
        seen: Counter[str] = Counter()
        for v in range(32):
            raw = (v << (5 * (7 - pos))).to_bytes(5, "big")
            seen[generate_password(_fixed(raw)).replace("-", "")[pos]] += 1
        assert set(seen) == set(ALPHABET)
        assert set(seen.values()) == {1}


def test_generated_password_normalizes_to_itself() -> None:
    for _ in range(50):
        pw = generate_password()
        assert normalize_password(pw) == pw.replace("-", "").encode()


@pytest.mark.parametrize(
    "typed",
    [
        "abcd-efgh",
        "ABCD EFGH",
        "ABCDEFGH",
        " abcd.efgh ",
        "ab_cd-ef gh",
        "ＡＢＣＤ－ＥＦＧＨ",  # full-width, as a Japanese IME types it
        "abcdーefgh",  # long-vowel mark for the hyphen
        "abcd\u3000efgh",  # ideographic space
        "abcd–efgh",  # en dash from a word processor
    ],
)
def test_spellings_normalize_alike(typed: str) -> None:
    assert normalize_password(typed) == b"abcdefgh"


def test_look_alikes() -> None:
    assert normalize_password("oOiI-lLuU") == b"001111vv"
    assert normalize_password("oIlU-0123") == b"011v0123"
    assert normalize_password("OOOO-IIII") == b"00001111"
    assert normalize_password("uuuu llll") == b"vvvv1111"


@pytest.mark.parametrize("typed", ["abcd-efg", "abcd-efghj", "", "----", "abc"])
def test_wrong_length(typed: str) -> None:
    with pytest.raises(ProtocolError, match="8 letters and digits"):
        normalize_password(typed)


@pytest.mark.parametrize(
    "typed", ["abcd-efg!", "abcd-efgé", "abcd/efgh", "abcd-efgあ", "abc\x00defgh"]
)
def test_foreign_characters(typed: str) -> None:
    with pytest.raises(ProtocolError, match="not a letter or digit"):
        normalize_password(typed)


def test_error_does_not_echo_the_password() -> None:
    with pytest.raises(ProtocolError) as info:
        normalize_password("secr!t12")
    assert "secr" not in str(info.value)
    assert "character 5" in str(info.value)


@given(st.text(max_size=40))
def test_normalize_never_raises_other_errors(text: str) -> None:
    try:
        out = normalize_password(text)
    except ProtocolError:
        return
    assert len(out) == 8
    assert set(out.decode()) <= set(ALPHABET)
