import stat
from pathlib import Path

import pysodium
import pytest

from enkaku.agent.identity import DeviceKey
from enkaku.protocol.agentlink import AUTH_CONTEXT


def test_key_is_created_once_privately_and_reloaded(tmp_path: Path) -> None:
    first = DeviceKey.load_or_create(tmp_path / "agent")
    again = DeviceKey.load_or_create(tmp_path / "agent")
    assert first.public_hex == again.public_hex
    key_file = tmp_path / "agent" / "device_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "agent").stat().st_mode) == 0o700


def test_signature_verifies_with_libsodium_as_the_server_does(tmp_path: Path) -> None:
    key = DeviceKey.load_or_create(tmp_path)
    nonce = b"n" * 32
    sig = bytes.fromhex(key.sign_challenge(nonce))
    pysodium.crypto_sign_verify_detached(sig, AUTH_CONTEXT + nonce, bytes.fromhex(key.public_hex))
    with pytest.raises(ValueError):
        pysodium.crypto_sign_verify_detached(
            sig, AUTH_CONTEXT + b"m" * 32, bytes.fromhex(key.public_hex)
        )


def test_a_corrupt_key_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "device_key").write_bytes(b"short")
    with pytest.raises(ValueError, match="corrupt"):
        DeviceKey.load_or_create(tmp_path)
