"""The agent's one-time password: generation and normalisation.

A password is 8 characters of Crockford's base32 alphabet in lowercase (digits and
letters without ``i``, ``l``, ``o``, ``u``), shown as ``xxxx-xxxx``: 40 bits, read aloud
over the phone by the customer and typed by the technician. What the technician types
goes through :func:`normalize_password` (Unicode NFKC, case folding, separators dropped,
look-alike letters mapped) so that every reasonable spelling of the same password gives
the same bytes, which are CPace's PRS.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable

from .errors import ProtocolError

#: Crockford base32, lowercase: 0-9 and a-z without i, l, o, u.
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
PASSWORD_LENGTH = 8
_GROUP = 4

# Characters a person may type between groups. NFKC already folds full-width forms
# (U+FF0D, U+3000, ...) to ASCII; these are the dashes it leaves alone, including the
# Japanese long-vowel mark an IME produces for "-".
_SEPARATORS = frozenset("-._‐‑‒–—―−ー・")
# Crockford's decoding rules for look-alikes, plus u -> v (sound and shape).
_LOOK_ALIKES = {"o": "0", "i": "1", "l": "1", "u": "v"}
_VALID = frozenset(ALPHABET)


def generate_password(randbytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A fresh one-time password, formatted ``xxxx-xxxx`` (40 bits, unbiased)."""
    raw = randbytes(5)
    if len(raw) != 5:
        raise ValueError("randbytes returned the wrong number of bytes")
    value = int.from_bytes(raw, "big")
    # 40 bits are exactly 8 groups of 5 bits: every character is uniform.
    chars = [ALPHABET[(value >> (5 * (7 - i))) & 31] for i in range(PASSWORD_LENGTH)]
    text = "".join(chars)
    return f"{text[:_GROUP]}-{text[_GROUP:]}"


def normalize_password(text: str) -> bytes:
    """Canonical bytes of a typed password; raises ProtocolError if it cannot be one."""
    out: list[str] = []
    for position, original in enumerate(text, start=1):
        for ch in unicodedata.normalize("NFKC", original).lower():
            if ch.isspace() or ch in _SEPARATORS:
                continue
            ch = _LOOK_ALIKES.get(ch, ch)
            if ch not in _VALID:
                # Name the position, not the character: this text may end up in a log.
                raise ProtocolError(
                    f"character {position} of the password is not a letter or digit "
                    "used in passwords"
                )
            out.append(ch)
    if len(out) != PASSWORD_LENGTH:
        raise ProtocolError(
            f"a password has {PASSWORD_LENGTH} letters and digits, this one has {len(out)}"
        )
    return "".join(out).encode("ascii")
