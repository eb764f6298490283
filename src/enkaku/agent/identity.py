"""The agent's device key (Ed25519), kept in the user's config folder."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from enkaku.protocol.agentlink import AUTH_CONTEXT


def default_config_dir() -> Path:
    return Path(platformdirs.user_config_dir("enkaku")) / "agent"


class DeviceKey:
    """The key that binds this machine to its 9-digit ID."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def load_or_create(cls, config_dir: Path) -> DeviceKey:
        """Load ``config_dir/device_key`` or create it (0600) on first run."""
        path = config_dir / "device_key"
        if path.exists():
            seed = path.read_bytes()
            if len(seed) != 32:
                raise ValueError(
                    f"{path} is corrupt (expected 32 bytes); delete it to get a new ID"
                )
            return cls(Ed25519PrivateKey.from_private_bytes(seed))
        config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes_raw()
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return cls(key)

    @property
    def public_hex(self) -> str:
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign_challenge(self, nonce: bytes) -> str:
        """Hex signature proving the key to the server."""
        return self._private.sign(AUTH_CONTEXT + nonce).hex()
