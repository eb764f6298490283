"""CPace, suite CPACE-RISTR255-SHA512, as specified by draft-irtf-cfrg-cpace-21.

The group is ristretto255 (RFC 9496) through libsodium (``pysodium``), the hash SHA-512.
libsodium has no separate internal point representation in its API, so every group
element here is its 32-byte public encoding; the generator ``g`` is returned encoded
(which is also how the draft's test vectors print it).

Only the pieces the draft defines live here; the enkaku handshake that carries them is
in :mod:`enkaku.protocol.handshake`. Section references are to draft-21.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

import pysodium

from .errors import HandshakeError

#: G_Ristretto255.DSI (§"CPace group objects G_Ristretto255 and G_Decaf448")
DSI = b"CPaceRistretto255"
DSI_ISK = DSI + b"_ISK"
SUITE = b"CPACE-RISTR255-SHA512"
#: SHA-512's input block size, H.s_in_bytes.
S_IN_BYTES = 128
FIELD_SIZE_BYTES = 32
SCALAR_BYTES = 32
POINT_BYTES = 32
#: HMAC-SHA-512 tag length.
TAG_BYTES = 64
#: G.I, the public encoding of the neutral element.
IDENTITY = bytes(POINT_BYTES)


# -- string utilities (Appendix "CPace function definitions") ---------------------------


def prepend_len(data: bytes) -> bytes:
    """``data`` with its length prepended as LEB128."""
    length = len(data)
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out) + data


def lv_cat(*args: bytes) -> bytes:
    """Length-value concatenation of ``args``."""
    return b"".join(prepend_len(a) for a in args)


def o_cat(bytes1: bytes, bytes2: bytes) -> bytes:
    """Ordered concatenation: b"oc", then the lexicographically larger string first."""
    return b"oc" + (bytes1 + bytes2 if bytes1 > bytes2 else bytes2 + bytes1)


def transcript_ir(ya: bytes, ada: bytes, yb: bytes, adb: bytes) -> bytes:
    """Initiator-responder transcript: A's message first."""
    return lv_cat(ya, ada) + lv_cat(yb, adb)


def transcript_oc(ya: bytes, ada: bytes, yb: bytes, adb: bytes) -> bytes:
    """Transcript for the symmetric setting (not used by enkaku; kept for the vectors)."""
    return o_cat(lv_cat(ya, ada), lv_cat(yb, adb))


def _hash(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


# -- group environment G_Ristretto255 ----------------------------------------------------


def generator_string(prs: bytes, ci: bytes, sid: bytes) -> bytes:
    """generator_string(G.DSI, PRS, CI, sid, H.s_in_bytes), zero padding included."""
    len_zpad = max(0, S_IN_BYTES - 1 - len(prepend_len(prs)) - len(prepend_len(DSI)))
    return lv_cat(DSI, prs, bytes(len_zpad), ci, sid)


def calculate_generator(prs: bytes, ci: bytes, sid: bytes) -> bytes:
    """The encoded generator g derived from the password, CI and sid."""
    gen_str_hash = _hash(generator_string(prs, ci, sid))[: 2 * FIELD_SIZE_BYTES]
    # RFC 9496 element derivation (libsodium's crypto_core_ristretto255_from_hash).
    return pysodium.crypto_core_ristretto255_from_hash(gen_str_hash)


def sample_scalar(randbytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh secret scalar, sampled as the draft recommends for ristretto255."""
    while True:
        raw = bytearray(randbytes(SCALAR_BYTES))
        if len(raw) != SCALAR_BYTES:
            raise ValueError("randbytes returned the wrong number of bytes")
        # Clear the bits above group_size_bits = 252 (little-endian).
        raw[31] &= 0x0F
        if any(raw):  # zero would give the identity; astronomically unlikely
            return bytes(raw)


def scalar_mult(y: bytes, g: bytes) -> bytes:
    """encode(y * g) for our own scalar and a generator we derived."""
    try:
        return pysodium.crypto_scalarmult_ristretto255(y, g)
    except ValueError:
        raise HandshakeError("scalar multiplication gave the identity") from None


def scalar_mult_vfy(y: bytes, x: bytes) -> bytes:
    """encode(y * decode(x)) for a peer's share; HandshakeError where the draft gives G.I."""
    if len(x) != POINT_BYTES:
        raise HandshakeError("peer share is not a 32-byte ristretto255 encoding")
    # RFC 9496 §4.3.1 refuses any encoding >= p; libsodium 1.0.18 ignores bit 255 instead.
    if x[31] & 0x80 or not pysodium.crypto_core_ristretto255_is_valid_point(x):
        # Not canonical, or not a point of the group.
        raise HandshakeError("peer share is not a valid ristretto255 element")
    try:
        k = pysodium.crypto_scalarmult_ristretto255(y, x)
    except ValueError:
        # libsodium refuses a product equal to the identity.
        raise HandshakeError("peer share gives the identity element") from None
    if hmac.compare_digest(k, IDENTITY):  # belt and braces: the draft's abort condition
        raise HandshakeError("peer share gives the identity element")
    return k


# -- outputs -----------------------------------------------------------------------------


def derive_isk(sid: bytes, k: bytes, ya: bytes, ada: bytes, yb: bytes, adb: bytes) -> bytes:
    """ISK = H(lv_cat(DSI || "_ISK", sid, K) || transcript_ir(Ya, ADa, Yb, ADb))."""
    return _hash(lv_cat(DSI_ISK, sid, k) + transcript_ir(ya, ada, yb, adb))


def derive_isk_symmetric(
    sid: bytes, k: bytes, ya: bytes, ada: bytes, yb: bytes, adb: bytes
) -> bytes:
    """ISK with the ordered-concatenation transcript (symmetric setting; vectors only)."""
    return _hash(lv_cat(DSI_ISK, sid, k) + transcript_oc(ya, ada, yb, adb))


def sid_output(transcript: bytes) -> bytes:
    """sid_output = H(b"CPaceSidOutput" || transcript), for runs without an input sid."""
    return _hash(b"CPaceSidOutput" + transcript)


def mac_key(sid: bytes, isk: bytes) -> bytes:
    """mac_key = H(b"CPaceMac" || sid || ISK) (draft §"Key confirmation")."""
    return _hash(b"CPaceMac" + sid + isk)


def confirmation_tag(key: bytes, y: bytes, ad: bytes) -> bytes:
    """A party's tag over the message it sent: HMAC-SHA-512(mac_key, lv_cat(Y, AD))."""
    return hmac.new(key, lv_cat(y, ad), hashlib.sha512).digest()


def verify_tag(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of confirmation tags."""
    return hmac.compare_digest(expected, received)
