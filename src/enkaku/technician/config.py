"""Saved technician logins: server URL → API token, in a 0600 JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from enkaku.i18n import t
from enkaku.protocol.jsonlimits import loads_limited
from enkaku.secretfile import SecretFileError, read_secret, write_secret


def config_path() -> Path:
    override = os.environ.get("ENKAKU_TECHNICIAN_CONFIG")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir("enkaku")) / "technician.json"


#: A saved-logins file larger than this is not ours.
MAX_CONFIG = 1024 * 1024


def load() -> dict[str, dict[str, str]]:
    """The saved logins; a file others may read is refused (SecretFileError)."""
    path = config_path()
    raw = read_secret(path, MAX_CONFIG)
    if raw is None:
        return {}
    try:
        data = loads_limited(raw, max_bytes=MAX_CONFIG)
    except ValueError:
        raise SecretFileError(t("secret_file_corrupt", path=path)) from None
    return data if isinstance(data, dict) else {}


def save_login(server: str, user: str, token: str) -> None:
    """Save ``token`` for ``server`` (0600, written through a fresh temporary file)."""
    data = load()
    data[server.rstrip("/")] = {"user": user, "token": token}
    data["_default"] = {"server": server.rstrip("/")}
    write_secret(config_path(), json.dumps(data, indent=2).encode())


def default_server() -> str | None:
    return load().get("_default", {}).get("server")


def token_for(server: str) -> str | None:
    return load().get(server.rstrip("/"), {}).get("token")
