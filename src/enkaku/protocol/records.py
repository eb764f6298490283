"""Encrypted records of the end-to-end channel (written down in docs/protocol/records.md).

Wire form of one record, one binary WebSocket message::

    0x10 | AES-256-GCM(key, nonce, plaintext, aad=0x10) ciphertext | tag (16)

Keys, one per direction, come from the CPace ISK::

    prk              = HKDF-Extract-SHA-256(salt=sid, ikm=ISK)
    agent->technician = HKDF-Expand(prk, b"enkaku/1 agent->technician", 32)
    technician->agent = HKDF-Expand(prk, b"enkaku/1 technician->agent", 32)

The nonce is never sent: ``0x00000000 | counter (u64 big-endian)``, the counter counting
the records sent in that direction under the current key. After ``rekey_after`` records
the direction's key becomes ``HKDF-Expand(key, b"enkaku/1 key update", 32)`` and its
counter restarts at 0; both ends do this implicitly. Any record that fails to open
(tampered, dropped, replayed, reordered, wrong type, wrong size) kills the channel.
"""

from __future__ import annotations

import logging
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from .errors import RecordError

log = logging.getLogger(__name__)

RECORD = 0x10
_HEADER = bytes([RECORD])
MAX_PLAINTEXT = 65536
TAG_BYTES = 16
KEY_BYTES = 32
MAX_RECORD = 1 + MAX_PLAINTEXT + TAG_BYTES
MIN_RECORD = 1 + TAG_BYTES
#: 2**20 records of at most 64 KiB is 2**32 AES blocks per key, well inside AES-GCM's
#: limits (TLS 1.3 allows about 2**34.5 blocks per key).
DEFAULT_REKEY_AFTER = 1 << 20

INFO_AGENT_TO_TECHNICIAN = b"enkaku/1 agent->technician"
INFO_TECHNICIAN_TO_AGENT = b"enkaku/1 technician->agent"
INFO_KEY_UPDATE = b"enkaku/1 key update"


def derive_direction_keys(isk: bytes, sid: bytes) -> tuple[bytes, bytes]:
    """(agent->technician key, technician->agent key) from the ISK and sid."""
    return (_hkdf(isk, sid, INFO_AGENT_TO_TECHNICIAN), _hkdf(isk, sid, INFO_TECHNICIAN_TO_AGENT))


def next_key(key: bytes) -> bytes:
    """The key that replaces ``key`` after ``rekey_after`` records."""
    return HKDFExpand(hashes.SHA256(), KEY_BYTES, INFO_KEY_UPDATE).derive(key)


def _hkdf(isk: bytes, sid: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=sid, info=info).derive(isk)


def _nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + counter.to_bytes(8, "big")


class _Direction:
    """Key and implicit counter of one direction."""

    __slots__ = ("_aead", "_key", "counter", "generation", "rekey_after")

    def __init__(self, key: bytes, rekey_after: int) -> None:
        self._key = key
        self._aead = AESGCM(key)
        self.counter = 0
        self.generation = 0
        self.rekey_after = rekey_after

    def next_nonce(self) -> bytes:
        if self.counter >= self.rekey_after:
            self._key = next_key(self._key)
            self._aead = AESGCM(self._key)
            self.counter = 0
            self.generation += 1
        return _nonce(self.counter)

    def seal(self, plaintext: bytes) -> bytes:
        nonce = self.next_nonce()  # first: it may replace self._aead
        ct = self._aead.encrypt(nonce, plaintext, _HEADER)
        self.counter += 1
        return ct

    def open(self, ciphertext: bytes) -> bytes:
        nonce = self.next_nonce()  # first: it may replace self._aead
        pt = self._aead.decrypt(nonce, ciphertext, _HEADER)
        self.counter += 1
        return pt


class RecordChannel:
    """Sans-IO AEAD channel for one side: seal outgoing records, open incoming ones."""

    def __init__(
        self,
        isk: bytes,
        sid: bytes,
        role: Literal["agent", "technician"],
        *,
        rekey_after: int = DEFAULT_REKEY_AFTER,
    ) -> None:
        if role not in ("agent", "technician"):
            raise ValueError(f"unknown role {role!r}")
        if not 1 <= rekey_after <= DEFAULT_REKEY_AFTER:
            raise ValueError(f"rekey_after must be in 1..{DEFAULT_REKEY_AFTER}")
        a2t, t2a = derive_direction_keys(isk, sid)
        send, recv = (a2t, t2a) if role == "agent" else (t2a, a2t)
        self.role = role
        self._send = _Direction(send, rekey_after)
        self._recv = _Direction(recv, rekey_after)
        self._failed = False
        self.records_sent = 0
        self.records_received = 0

    @property
    def failed(self) -> bool:
        """True once a record failed to open; the channel then refuses everything."""
        return self._failed

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt one record; returns the whole wire message (0x10 | ciphertext | tag)."""
        if self._failed:
            raise RecordError("the channel failed earlier and is closed")
        if len(plaintext) > MAX_PLAINTEXT:
            raise ValueError(f"record plaintext of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT}")
        out = _HEADER + self._send.seal(plaintext)
        self.records_sent += 1
        return out

    def open(self, message: bytes) -> bytes:
        """Decrypt the next record from the peer; any failure is fatal (RecordError)."""
        if self._failed:
            raise RecordError("the channel failed earlier and is closed")
        try:
            if not MIN_RECORD <= len(message) <= MAX_RECORD:
                raise RecordError(f"record of {len(message)} bytes has an invalid size")
            if message[0] != RECORD:
                raise RecordError(f"expected a record (0x10), got message type {message[0]:#04x}")
            try:
                plaintext = self._recv.open(bytes(message[1:]))
            except InvalidTag:
                raise RecordError(
                    "record failed authentication (tampered, dropped, replayed or reordered)"
                ) from None
        except RecordError as exc:
            self._failed = True
            log.debug("record channel (%s) failed: %s", self.role, exc)
            raise
        self.records_received += 1
        return plaintext
