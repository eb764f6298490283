"""Throwaway PostgreSQL databases for the store tests.

The machine runs a PostgreSQL cluster on 127.0.0.1:5432 with trust auth. Each test gets
its own database, created from the maintenance database ``test`` and dropped afterwards.
An unreachable server fails the test (it never skips): schemas are tested on SQLite and
PostgreSQL both (STYLE.md rule 20).
"""

from __future__ import annotations

import os
import secrets

import asyncpg
import pytest

#: Override with ENKAKU_TEST_PG=postgresql://user@host:port (no database name).
SERVER = os.environ.get("ENKAKU_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
MAINTENANCE_DB = "test"

START_HINT = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)


async def _admin() -> asyncpg.Connection:
    url = f"{SERVER}/{MAINTENANCE_DB}"
    try:
        return await asyncpg.connect(url, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    # Outside the except block, so the report is the hint and not a chained traceback.
    pytest.fail(f"PostgreSQL is not reachable at {url} ({problem}); {START_HINT}", pytrace=False)


async def server_version() -> str:
    """The server's version string, e.g. ``15.20``."""
    conn = await _admin()
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def create_database() -> str:
    """Create an empty database with a random name and return its plain SQLAlchemy URL."""
    name = f"enkaku_t_{secrets.token_hex(6)}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{SERVER}/{name}"


async def drop_database(url: str) -> None:
    """Drop the database ``url`` names, disconnecting anyone still using it."""
    name = url.rsplit("/", 1)[1]
    assert name.startswith("enkaku_t_"), name  # never drop anything we did not create
    conn = await _admin()
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
