"""Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps) and
the recovery codes that stand in for a lost authenticator.

Pure functions; the store keeps the secret, the last accepted step (a code is usable
once) and the recovery codes' digests (docs/console-auth.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

DIGITS = 6
STEP = 30
#: Steps accepted either side of now (clock drift between the phone and the server).
WINDOW = 1
#: Recovery codes issued at enrolment.
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def new_secret() -> str:
    """A new 160-bit secret, base32 without padding (what authenticator apps take)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    padded = secret.upper() + "=" * (-len(secret) % 8)
    return base64.b32decode(padded)


def code_at(secret: str, step: int) -> str:
    """The code for one time step (RFC 4226 HOTP with the step as counter)."""
    mac = hmac.new(_key(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def step_of(now: float) -> int:
    return int(now // STEP)


def now_code(secret: str, now: float | None = None) -> str:
    """The code an authenticator shows at ``now`` (Unix seconds)."""
    return code_at(secret, step_of(time.time() if now is None else now))


def normalize_code(code: str) -> str:
    """The digits of what the user typed (spaces and hyphens dropped)."""
    return "".join(ch for ch in code if ch not in " -\t")


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The step within ±WINDOW of ``now`` whose code is ``code``, else None.

    The caller must still refuse a step at or before the last one accepted (replay).
    """
    code = normalize_code(code)
    if len(code) != DIGITS or not (code.isascii() and code.isdigit()):
        return None
    current = step_of(time.time() if now is None else now)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # Every candidate compared, constant time each: no early exit tells which matched.
        if hmac.compare_digest(code_at(secret, step), code):
            found = step
    return found


def otpauth_uri(secret: str, account: str, issuer: str) -> str:
    """The Key URI authenticator apps read from the QR code."""
    label = quote(f"{issuer}:{account}", safe="")
    query = urlencode(
        {"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS, "period": STEP}
    )
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    """The URI as a QR code, an SVG document (no script, no external reference)."""
    import io

    import segno

    out = io.BytesIO()
    segno.make_qr(uri, error="m").save(out, kind="svg", scale=4, border=4, xmldecl=False)
    return out.getvalue().decode()


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    """``n`` codes like ``k7q2m-x9hwp`` (50 bits each), shown to the user once."""
    codes = []
    for _ in range(n):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalize_recovery(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def recovery_digest(code: str) -> str:
    """What the store keeps of a recovery code: SHA-256 of its normalized form (the codes
    are random, 50 bits: a fast hash is enough, as for API tokens)."""
    return hashlib.sha256(b"enkaku-recovery:" + normalize_recovery(code).encode()).hexdigest()
