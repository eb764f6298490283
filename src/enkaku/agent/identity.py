"""The agent's device key (Ed25519), kept in the user's config folder."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from enkaku.i18n import t
from enkaku.protocol.agentlink import AUTH_CONTEXT
from enkaku.secretfile import SecretFileError, read_secret, write_secret

SEED_SIZE = 32


def default_config_dir() -> Path:
    return Path(platformdirs.user_config_dir("enkaku")) / "agent"


class DeviceKey:
    """The key that binds this machine to its 9-digit ID."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def load_or_create(cls, config_dir: Path) -> DeviceKey:
        """Load ``config_dir/device_key`` or create it (0600, exclusively) on first run.

        A key file that others may read, that belongs to someone else or that is a
        symbolic link is refused with a message that says what to do (SecretFileError).
        """
        path = config_dir / "device_key"
        for _ in range(2):
            seed = read_secret(path, SEED_SIZE)
            if seed is not None:
                if len(seed) != SEED_SIZE:
                    raise SecretFileError(t("secret_file_corrupt", path=path))
                return cls(Ed25519PrivateKey.from_private_bytes(seed))
            key = Ed25519PrivateKey.generate()
            if write_secret(path, key.private_bytes_raw(), replace=False):
                return cls(key)
            # Another agent process created the key meanwhile: use that one.
        raise SecretFileError(t("secret_file_unreadable", path=path, error="created concurrently"))

    @property
    def public_hex(self) -> str:
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign_challenge(self, nonce: bytes) -> str:
        """Hex signature proving the key to the server."""
        return self._private.sign(AUTH_CONTEXT + nonce).hex()
