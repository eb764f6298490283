from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import InProcessServer, World, free_port, make_db, server_process


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A real server process with a technician (logged in) and a contract."""
    w = World(tmp_path)
    try:
        w.db = make_db(tmp_path)  # type: ignore[attr-defined]
        w.port = free_port()  # type: ignore[attr-defined]
        server_process(w, w.db, w.port)  # type: ignore[attr-defined]
        w.login()
        yield w
    finally:
        w.close()


@pytest.fixture
def inproc(tmp_path: Path) -> Iterator[tuple[World, InProcessServer]]:
    """The server app in this process (to observe the relay), plus a logged-in technician."""
    w = World(tmp_path)
    server = InProcessServer(make_db(tmp_path))
    try:
        w.server_url = server.start()
        w.login()
        yield w, server
    finally:
        w.close()
        server.stop()


@pytest.fixture
def rundir() -> Iterator[Path]:
    """A folder with a short path for XDG_RUNTIME_DIR: `enkaku connect` puts its control
    socket there, and a Unix socket's path is limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ek"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
