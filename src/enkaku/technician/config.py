"""Saved technician logins: server URL → API token, in a 0600 JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs


def config_path() -> Path:
    override = os.environ.get("ENKAKU_TECHNICIAN_CONFIG")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir("enkaku")) / "technician.json"


def load() -> dict[str, dict[str, str]]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise ValueError(f"{path} is not valid JSON; delete it and log in again") from None
    return data if isinstance(data, dict) else {}


def save_login(server: str, user: str, token: str) -> None:
    data = load()
    data[server.rstrip("/")] = {"user": user, "token": token}
    data["_default"] = {"server": server.rstrip("/")}
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def default_server() -> str | None:
    return load().get("_default", {}).get("server")


def token_for(server: str) -> str | None:
    return load().get(server.rstrip("/"), {}).get("token")
