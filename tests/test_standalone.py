"""A clone stands on its own: no file points outside the repository, the test data is in it,
and the PostgreSQL tests start the server they need (or fail saying why)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.server import pg

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "protocol" / "vectors"
VECTOR_FILE = "tests/protocol/vectors/cpace-draft21-testvectors.json"

# Built from pieces so that this file does not match itself.
SIBLING = b"shared"
OUTSIDE = re.compile(
    b"|".join(
        [
            rb"\.\./" + SIBLING,  # the sibling folder the project was started from
            rb"(?<![\w./-])" + SIBLING + rb"/(?:DESIGN\.md|STYLE\.md|vectors|bench-peers|hooks)",
            rb"(?<![\w./~-])/" + b"work/",  # an absolute path on the machine it was written on
        ]
    )
)

#: Dated benchmark records keep the text they were produced with.
HISTORICAL = ("benchmarks/results/",)


def tracked_files() -> list[str]:
    """Every file git tracks in this checkout."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"these tests need a git checkout of the project and git ({exc})")
    return [name for name in done.stdout.decode().split("\0") if name]


def test_no_tracked_file_refers_outside_the_repository() -> None:
    found = []
    for name in tracked_files():
        path = ROOT / name
        if name.startswith(HISTORICAL) or not path.is_file():
            continue
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            match = OUTSIDE.search(line)
            if match:
                found.append(f"{name}:{number}: {match.group().decode(errors='replace')}")
    assert not found, "files refer to paths outside the repository:\n" + "\n".join(found)


def test_cpace_vectors_are_tracked_and_unmodified() -> None:
    assert VECTOR_FILE in tracked_files()
    readme = (VECTORS / "README.md").read_text()
    digest = hashlib.sha256((ROOT / VECTOR_FILE).read_bytes()).hexdigest()
    assert f"`{digest}`" in readme, "the vectors differ from the copy the README describes"
    data = json.loads((ROOT / VECTOR_FILE).read_text())
    assert {"G_Coffee25519", "G_Coffee25519_points"} <= set(data)


async def test_throwaway_postgres_serves_loopback_and_is_stopped_by_pid() -> None:
    server = pg.ThrowawayPostgres.start()
    try:
        assert server.pid is not None and pg._alive(server.pid)
        conn = await asyncpg.connect(f"{server.url}/{pg.MAINTENANCE_DB}", timeout=30)
        try:
            data_dir = str(await conn.fetchval("SHOW data_directory"))
            listen = str(await conn.fetchval("SHOW listen_addresses"))
            sockets = str(await conn.fetchval("SHOW unix_socket_directories"))
        finally:
            await conn.close()
        assert Path(data_dir) == server.data
        assert listen == "127.0.0.1"
        assert Path(sockets.strip("'")).parent == server.root
        if os.geteuid() == 0:
            assert server.data.stat().st_uid != 0  # initdb refuses root
    finally:
        pid = server.pid
        server.stop()
    assert pid is not None and not pg._alive(pid)
    assert not server.root.exists()


def test_postgres_tests_fail_when_no_server_can_be_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ENKAKU_TEST_PG"}
    env["ENKAKU_TEST_PG_BINDIR"] = str(tmp_path)  # holds no initdb
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rA",
            "tests/server/test_store.py",
            "-k",
            "recent_enough",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "could not start a throw-away PostgreSQL" in out, out
    assert "set ENKAKU_TEST_PG=" in out and "postgresql package" in out, out
    assert "skipped" not in out, out
