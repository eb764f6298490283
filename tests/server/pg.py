"""PostgreSQL for the store tests: a server you give, or a throw-away one the run starts.

- ``ENKAKU_TEST_PG=postgresql://user@host:port`` (no database name): the tests use that
  server. The role must be allowed to create databases; ``postgres`` is the maintenance
  database.
- Unset: the session fixture ``pg_server`` (tests/server/conftest.py) starts a throw-away
  cluster for the run with :class:`ThrowawayPostgres`: ``initdb`` into a new temporary
  directory, trust authentication, listening on 127.0.0.1 on a free port with its Unix
  socket inside that directory; at the end it is stopped by PID (``pg_ctl stop -m fast``)
  and the directory is removed. ``initdb`` and ``postgres`` refuse to run as root, so under
  root the cluster runs as the unprivileged user ``nobody`` (through ``setpriv``). The
  programs come from ``ENKAKU_TEST_PG_BINDIR``, else PATH, else Debian's
  ``/usr/lib/postgresql/<version>/bin`` (package ``postgresql``, which scripts/bootstrap
  installs). Nothing is started when only SQLite tests run.

Each test gets its own database with a random name, created before and dropped after it.
A PostgreSQL that cannot be started or reached fails the tests (never skips), with what
to do: schemas are tested on SQLite and PostgreSQL both.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.harness import free_port

#: The environment variable naming a server to use instead of a throw-away one.
ENV = "ENKAKU_TEST_PG"
#: Where to find initdb/pg_ctl/postgres when they are neither on PATH nor in Debian's place.
ENV_BINDIR = "ENKAKU_TEST_PG_BINDIR"
MAINTENANCE_DB = "postgres"
SUPERUSER = "postgres"
#: The user a throw-away cluster runs as when the tests run as root.
UNPRIVILEGED_USER = "nobody"
#: Prefix of the throw-away cluster's temporary directory.
DIR_PREFIX = "enkaku-pg-"

WHAT_TO_DO = (
    "install Debian's postgresql package (scripts/bootstrap does), or set "
    f"{ENV}=postgresql://user@host:port to use a running server"
)

# Appended to the throw-away cluster's postgresql.conf: loopback only, socket in our
# directory, and durability off (the data is thrown away; this makes the run faster).
CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{sock}'
fsync = off
synchronous_commit = off
full_page_writes = off
"""


class PostgresUnavailable(Exception):
    """A throw-away PostgreSQL could not be started; the message says why and what to do."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres."""
    given = os.environ.get(ENV_BINDIR)
    if given:
        if not (Path(given) / "initdb").is_file():
            raise PostgresUnavailable(f"{ENV_BINDIR}={given} holds no initdb; {WHAT_TO_DO}")
        return Path(given)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    debian = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if p.parent.parent.name.isdigit()
    ]
    if not debian:
        raise PostgresUnavailable(
            f"initdb was found neither on PATH nor in /usr/lib/postgresql/*/bin; {WHAT_TO_DO}"
        )
    return max(debian, key=lambda p: int(p.parent.name))


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory, for one test run."""

    root: Path
    bindir: Path
    run_as: tuple[int, int] | None  # (uid, gid), or None to run as ourselves
    port: int = 0
    pid: int | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        """The server URL without a database name."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}"

    @classmethod
    def start(cls) -> ThrowawayPostgres:
        """Create, configure and start a cluster; raise PostgresUnavailable if it fails."""
        bindir = find_bindir()
        run_as = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(UNPRIVILEGED_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"initdb refuses root and there is no user {UNPRIVILEGED_USER!r} to run "
                    f"it as; create one, run the tests as a normal user, or set {ENV}"
                ) from None
            run_as = (user.pw_uid, user.pw_gid)
        root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        server = cls(root, bindir, run_as)
        try:
            server._init()
            server._launch()
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, args: Sequence[str], timeout: float = 120) -> None:
        """Run one PostgreSQL program as the cluster's user; raise with its output on failure."""
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as is not None:
            uid, gid = self.run_as
            cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *cmd]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        try:
            done = subprocess.run(
                cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"{args[0]} could not run ({exc}); {WHAT_TO_DO}") from None
        if done.returncode != 0:
            out = (done.stderr or done.stdout).strip()[-1500:]
            raise PostgresUnavailable(f"{args[0]} failed (exit {done.returncode}): {out}")

    def _init(self) -> None:
        if self.run_as is not None:
            os.chown(self.root, *self.run_as)
        (self.root / "sock").mkdir(mode=0o700)
        if self.run_as is not None:
            os.chown(self.root / "sock", *self.run_as)
        try:
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        except PostgresUnavailable as exc:
            raise PostgresUnavailable(
                f"{exc}; the cluster's directory {self.root} must be reachable by the user it "
                "runs as (set TMPDIR to a directory such as /tmp if it is not)"
            ) from None
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(CONF.format(sock=self.root / "sock"))

    def _launch(self) -> None:
        # The free port may be taken between our check and the server's bind: try again.
        for attempt in range(3):
            self.port = free_port()
            log = self.root / f"server-{attempt}.log"
            try:
                self._run(
                    [
                        "pg_ctl",
                        "start",
                        "-w",
                        "-t",
                        "60",
                        "-D",
                        str(self.data),
                        "-l",
                        str(log),
                        "-o",
                        f"-p {self.port}",
                    ]
                )
            except PostgresUnavailable as exc:
                text = log.read_text(errors="replace") if log.is_file() else ""
                if "could not bind" in text and attempt < 2:
                    continue
                raise PostgresUnavailable(f"{exc}\n{text[-1500:]}") from None
            self.pid = self._postmaster_pid()
            return

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if re.fullmatch(r"\d+", first.strip()) else None

    def stop(self) -> None:
        """Stop the server by its PID (fast shutdown) and remove the directory."""
        pid = self.pid or self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(PostgresUnavailable):  # checked just below, by PID
                self._run(["pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.data)])
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                for _ in range(100):  # reaped by init: wait for it to go, at most ~10 s
                    if not _alive(pid):
                        break
                    time.sleep(0.1)
        self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _admin(server: str) -> asyncpg.Connection:
    url = f"{server}/{MAINTENANCE_DB}"
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    hint = (
        f"start it, or unset {ENV} so the tests start a throw-away PostgreSQL"
        if os.environ.get(ENV)
        else WHAT_TO_DO
    )
    # Outside the except block, so the report is the hint and not a chained traceback.
    pytest.fail(f"PostgreSQL is not reachable at {url} ({problem}); {hint}", pytrace=False)


async def server_version(server: str) -> str:
    """The server's version string, e.g. ``15.20``."""
    conn = await _admin(server)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def create_database(server: str) -> str:
    """Create an empty database with a random name and return its plain SQLAlchemy URL."""
    name = f"enkaku_t_{secrets.token_hex(6)}"
    conn = await _admin(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{server}/{name}"


async def drop_database(server: str, url: str) -> None:
    """Drop the database ``url`` names, disconnecting anyone still using it."""
    name = url.rsplit("/", 1)[1]
    assert name.startswith("enkaku_t_"), name  # never drop anything we did not create
    conn = await _admin(server)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
