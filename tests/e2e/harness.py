"""Real processes for end-to-end tests: server, agent, technician CLI, VNC peers.

Every process is started by a Proc and stopped by PID in close(); nothing is left
running. Deadlines in waits are generous limits for a hung run, not measurements.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from enkaku.server.app import build_app
from enkaku.server.services import SERVICES, Services
from enkaku.server.settings import Settings
from tests.xdisplay import stop

VENV_BIN = Path(sys.executable).parent
ENKAKU = str(VENV_BIN / "enkaku")
VNCDO = str(VENV_BIN / "vncdo")
LOGIN_PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Proc:
    """A child process whose stdout JSON lines are collected by a reader thread."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        name: str,
        log_dir: Path,
        stdin: int = subprocess.DEVNULL,
    ) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        n = 1
        while self.stderr_path.exists():  # a restarted process keeps its earlier log
            n += 1
            self.stderr_path = log_dir / f"{name}.{n}.stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=self._stderr, stdin=stdin
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.all_lines: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            self.all_lines.append(line)
            self.lines.put(line)

    def next_line(self, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        """The next stdout JSON line whose keys equal ``match``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name}: no line matching {match}; stderr:\n{self.stderr()}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if all(line.get(k) == v for k, v in match.items()):
                return line

    def stderr(self, tail: int | None = 4000) -> str:
        """What the process wrote to stderr (the last ``tail`` characters; None: all)."""
        text = self.stderr_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


@dataclass
class World:
    """The processes of one end-to-end scenario."""

    tmp: Path
    server_url: str = ""
    procs: list[Proc] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("DISPLAY", None)
        env["ENKAKU_TECHNICIAN_CONFIG"] = str(self.tmp / "technician.json")
        env["ENKAKU_LANG"] = "en"
        env.update(extra)
        return env

    def spawn(
        self, args: list[str], name: str, stdin: int = subprocess.DEVNULL, **env: str
    ) -> Proc:
        proc = Proc(args, env=self.env(**env), name=name, log_dir=self.tmp, stdin=stdin)
        self.procs.append(proc)
        return proc

    def agent(
        self,
        display: str | None,
        name: str = "agent",
        consent: str = "allow",
        *extra: str,
        stdin: int = subprocess.DEVNULL,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Proc:
        args = [
            ENKAKU,
            "-vv",
            "agent",
            "--server",
            self.server_url,
            "--headless",
            "--consent",
            consent,
            "--config-dir",
            str(self.tmp / f"{name}-config"),
        ]
        if display:
            args += ["--display", display]
        return self.spawn([*prefix, *args, *extra], name, stdin=stdin, **(env or {}))

    def login(self, *extra: str, env: dict[str, str] | None = None) -> None:
        subprocess.run(
            [ENKAKU, "login", "--server", self.server_url, "--user", "tech", *extra],
            env=self.env(ENKAKU_LOGIN_PASSWORD=LOGIN_PASSWORD, **(env or {})),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def connect(
        self,
        agent_id: str,
        password: str,
        *extra: str,
        vnc: bool = True,
        name: str = "connect",
        env: dict[str, str] | None = None,
    ) -> Proc:
        args = [ENKAKU, "-vv", "connect", agent_id, *extra]
        if vnc:
            args += ["--vnc-listen", "127.0.0.1:0"]
        return self.spawn(args, name, subprocess.DEVNULL, ENKAKU_PASSWORD=password, **(env or {}))

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.close()


@functools.cache
def _template_db() -> Path:
    """The database every test starts from, made once per test process through the real
    CLI (``admin user add --create``, ``admin customer add``, ``admin contract add``): a
    technician with a password, and a contract. Each test gets a copy, not a new one:
    the CLI runs cost about 4 s of CPU (interpreter starts, schema, the password's hash)."""
    folder = Path(tempfile.mkdtemp(prefix="enkaku-template-db-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    db = f"sqlite:///{folder}/server.db"
    env = dict(os.environ, ENKAKU_NEW_PASSWORD=LOGIN_PASSWORD)
    for args in (
        [
            "user",
            "--db",
            db,
            "--create",
            "add",
            "tech",
            "--display-name",
            "Taro Tanaka",
            "--company",
            "ACME Support",
        ],
        ["customer", "--db", db, "add", "Example Ltd"],
        ["contract", "--db", db, "add", "C-100", "--customer", "Example Ltd"],
    ):
        subprocess.run(
            [ENKAKU, "admin", *args], env=env, check=True, capture_output=True, timeout=60
        )
    return folder / "server.db"


def make_db(tmp: Path) -> str:
    """A SQLite database with a technician and a contract (a copy of the one the real
    CLI made for this test process; see ``_template_db``)."""
    shutil.copyfile(_template_db(), tmp / "server.db")
    return f"sqlite:///{tmp}/server.db"


def server_process(
    world: World,
    db: str,
    port: int,
    *extra: str,
    scheme: str = "http",
    env: dict[str, str] | None = None,
) -> Proc:
    """`enkaku server` as a child process, returned once it accepts connections."""
    proc = world.spawn(
        [
            ENKAKU,
            "-vv",
            "server",
            "--db",
            db,
            "--port",
            str(port),
            "--node-id",
            "e2e",
            "--heartbeat-timeout",
            "5",
            *extra,
        ],
        "server",
        subprocess.DEVNULL,
        **(env or {}),
    )
    world.server_url = f"{scheme}://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            if proc.proc.poll() is not None:
                raise AssertionError(f"server exited:\n{proc.stderr()}") from None
            return False

    wait_for(healthy, 60, "server to listen")
    return proc


class InProcessServer:
    """The real server app in this process (own thread and loop), so a test can observe
    what the relay carries."""

    def __init__(self, db: str) -> None:
        self.port = free_port()
        self.relayed: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()
        self.settings = Settings(port=self.port, db_url=db, node_id="inproc")
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None

    def _observe(self, session: str, role: str, data: bytes) -> None:
        with self._lock:
            self.relayed.append((session, role, data))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._started.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.app = build_app(self.settings, relay_observer=self._observe)
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def start(self) -> str:
        self._thread.start()
        self._started.wait(60)
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> Services:
        assert self.app is not None
        return self.app[SERVICES]

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.runner is not None:
            self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def session_record(
    server_url: str, token: str, session_id: str, *, ended: bool = True, timeout: float = 30
) -> dict[str, Any]:
    """Poll the API until the session record is ended."""

    async def fetch() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{server_url}/api/v1/sessions/{session_id}",
                headers={"Authorization": f"Bearer {token}"},
            ) as r,
        ):
            return dict(await r.json())

    def poll() -> dict[str, Any] | None:
        rec = asyncio.run(fetch())
        return rec if (rec.get("ended_at") is not None) == ended else None

    return dict(wait_for(poll, timeout, f"session {session_id[:8]} record"))


def saved_token(world: World) -> str:
    data = json.loads((world.tmp / "technician.json").read_text())
    return str(data[world.server_url]["token"])


@contextmanager
def xterm_on(display: str, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """An xterm running a shell in ``cwd`` on ``display``."""
    env = dict(os.environ, DISPLAY=display, PS1="$ ")
    proc = subprocess.Popen(
        ["xterm", "-geometry", "80x24+10+10", "-e", "sh"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: (
                subprocess.run(
                    ["xdotool", "search", "--class", "xterm"], env=env, capture_output=True
                ).returncode
                == 0
            ),
            90,  # a limit for a hung run: the machine may be busy
            "xterm window",
        )
        time.sleep(0.5)  # let the shell draw its prompt
        yield proc
    finally:
        stop(proc)
