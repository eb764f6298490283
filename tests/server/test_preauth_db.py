"""The SQLite database holds password hashes and token digests: it is created 0600."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from enkaku.server.store.db import open_engine
from enkaku.server.store.repo import Store


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what SQLite's own 0644 default meets on most systems
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("usual_umask")
async def test_a_new_database_is_created_private(tmp_path: Path) -> None:
    db = tmp_path / "new" / "enkaku.db"
    store = Store(await open_engine(f"sqlite:///{db}"))
    try:
        await store.create_technician("alice", "secret password")  # forces the WAL
        assert mode(db) == 0o600
        for side in ("-wal", "-shm"):
            extra = db.with_name(db.name + side)
            if extra.exists():
                assert mode(extra) == 0o600, side
        assert mode(db.parent) == 0o700
    finally:
        await store.close()


@pytest.mark.usefixtures("usual_umask")
async def test_an_existing_loose_database_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "old.db"
    await (await open_engine(f"sqlite:///{db}")).dispose()
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="enkaku.server.store.db"):
        engine = await open_engine(f"sqlite:///{db}")
    await engine.dispose()
    assert any("chmod 600" in r.getMessage() for r in caplog.records)
    assert mode(db) == 0o644  # reported, not changed behind the operator's back
