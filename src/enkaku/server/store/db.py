"""Database engine creation and schema migrations (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from enkaku.i18n import t

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration's revision. A database already at it is opened without Alembic,
#: whose import and scan of the migrations cost about 0.4 s of CPU on every server start
#: and admin command. tests/server/test_store.py checks it against the migrations.
SCHEMA_HEAD = "0007"


class DatabaseError(RuntimeError):
    """The database URL is unusable or the schema cannot be brought up to date."""


def async_url(url: str) -> str:
    """Map a plain SQLAlchemy URL to its asyncio driver (aiosqlite, asyncpg)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseError(t("db_invalid_url", detail=exc)) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseError(t("db_unsupported", backend=backend))


def _create_private(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite opens it (SQLite would create it 0644
    under the usual umask); its -wal and -shm files take the same mode from it. The
    database holds password hashes and token digests."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(path, flags, 0o600))
    except FileExistsError:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:  # e.g. a dangling symlink: SQLite reports it
            return
        if mode & 0o077:
            log.warning(
                "database %s may be read by other users (mode %04o); run: chmod 600 %s",
                path,
                mode,
                path,
            )


def alembic_config(connection: Connection) -> Config:
    """An Alembic config that runs the packaged migrations on ``connection``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _at_head(connection: Connection) -> bool:
    """Whether the schema is at ``SCHEMA_HEAD`` (a new database has no version table)."""
    if not inspect(connection).has_table("alembic_version"):
        return False
    versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return [row[0] for row in versions] == [SCHEMA_HEAD]


def _upgrade(connection: Connection) -> None:
    if _at_head(connection):
        return
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


async def open_engine(url: str) -> AsyncEngine:
    """Create the engine and migrate the schema to the newest revision."""
    full = async_url(url)
    if full.startswith("sqlite"):
        db_path = make_url(full).database
        if db_path and db_path != ":memory:":
            _create_private(Path(db_path))
    engine = create_async_engine(full, pool_pre_ping=True)
    if full.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    except Exception as exc:
        await engine.dispose()
        raise DatabaseError(t("db_cannot_open", detail=exc)) from exc
    log.info("database ready (%s)", make_url(full).render_as_string(hide_password=True))
    return engine
