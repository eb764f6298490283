import os
import stat
from pathlib import Path

import pysodium
import pytest

from enkaku.agent.identity import DeviceKey
from enkaku.protocol.agentlink import AUTH_CONTEXT
from enkaku.secretfile import SecretFileError, write_secret


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
    (tmp_path / "device_key").chmod(0o600)
    with pytest.raises(ValueError, match="corrupt"):
        DeviceKey.load_or_create(tmp_path)


def test_a_planted_symlink_never_receives_the_seed(tmp_path: Path) -> None:
    # The old writer opened "device_key.tmp" without O_EXCL | O_NOFOLLOW.
    config = tmp_path / "agent"
    config.mkdir(mode=0o700)
    stolen = tmp_path / "stolen"
    (config / "device_key.tmp").symlink_to(stolen)
    key = DeviceKey.load_or_create(config)
    assert not stolen.exists()
    assert DeviceKey.load_or_create(config).public_hex == key.public_hex
    assert [p.name for p in config.iterdir() if p.name.startswith(".")] == []  # no temp left


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=oct)
def test_a_key_others_may_read_or_change_is_refused(tmp_path: Path, mode: int) -> None:
    DeviceKey.load_or_create(tmp_path)
    (tmp_path / "device_key").chmod(mode)
    with pytest.raises(SecretFileError, match="chmod 600") as exc:
        DeviceKey.load_or_create(tmp_path)
    assert str(tmp_path / "device_key") in str(exc.value)


def test_the_refusal_is_in_japanese_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    DeviceKey.load_or_create(tmp_path)
    (tmp_path / "device_key").chmod(0o644)
    monkeypatch.setenv("ENKAKU_LANG", "ja")
    with pytest.raises(SecretFileError, match="他のユーザー"):
        DeviceKey.load_or_create(tmp_path)


def test_a_key_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    real = DeviceKey.load_or_create(tmp_path / "real")
    other = tmp_path / "other"
    other.mkdir()
    (other / "device_key").symlink_to(tmp_path / "real" / "device_key")
    with pytest.raises(SecretFileError, match="symbolic link"):
        DeviceKey.load_or_create(other)
    assert real.public_hex


def test_a_fifo_at_the_key_path_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "device_key", 0o600)
    with pytest.raises(SecretFileError, match="not a regular file"):
        DeviceKey.load_or_create(tmp_path)


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    first = DeviceKey.load_or_create(tmp_path)
    seed = (tmp_path / "device_key").read_bytes()
    assert write_secret(tmp_path / "device_key", b"x" * 32, replace=False) is False
    assert (tmp_path / "device_key").read_bytes() == seed
    assert DeviceKey.load_or_create(tmp_path).public_hex == first.public_hex
