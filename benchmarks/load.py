"""One node under load: idle agents, session set-up and full-speed relaying.

``python -m benchmarks.load [--agents 10000] [--sessions 20] [--addresses 20] [--seconds 30]``

Starts, with throw-away state (a temporary SQLite file, or with ``--db postgresql`` a
throw-away database on the PostgreSQL server given by ``--pg-admin-url``, dropped at the
end):

1. technicians (``enkaku user add``) and a contract (``enkaku contract add``) on that
   database, then one ``enkaku server`` process on a free loopback port;
2. ``--addresses`` agent-fleet processes (this file with ``--worker``), each bound to its
   own source address 127.0.0.2, 127.0.0.3, ... so the server's per-address limits apply
   to each fleet as they would to one office behind one NAT. Each fleet runs its share of
   the agents: a real agent-link client (Ed25519 device key, challenge signed, welcome,
   aiohttp heartbeat on the link of half the server's ``agent_heartbeat``, on relay legs
   half its ``heartbeat``, exactly as ``AgentRuntime``) that answers ``session_request``
   by opening its relay leg with ``enkaku.transport.relay.open_leg`` and then echoes
   every binary message;
3. as technicians, in this process: ``--setups`` sessions one after the other
   (POST /api/v1/sessions -> technician leg paired, which the relay only says once both
   legs are there; then ended with ``technician_ended``), and ``--sessions`` sessions
   that pump opaque MAX_RECORD-sized messages through the relay for ``--seconds``
   (the agent echoes them, so both directions carry the same load).

Measured: the server's RSS before and after the agents connected, its CPU over
``--seconds`` with every agent connected and heartbeats running, set-up time p50/p99,
relay MB/s and server CPU-seconds per GB, and every agent disconnect and failed session.
The whole machine's CPU (/proc/stat) is sampled in the same windows, so load from other
processes is in the results.

Connections are paced (``--connect-concurrency`` handshakes in flight per address, at
most ``--connect-rate`` new connections per second per address) so the per-address limits
on unauthenticated connections and registrations are never hit with the server's
default settings; see benchmarks/README.md.

Everything started here is stopped by PID; the run is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pysodium
from aiohttp import WSMsgType

from enkaku.agent.runtime import DEFAULT_LINK_HEARTBEAT
from enkaku.protocol.agentlink import AUTH_CONTEXT
from enkaku.protocol.records import MAX_RECORD
from enkaku.transport.errors import TransportError
from enkaku.transport.relay import RelayLeg, open_leg

from .e2e_chain import CLK_TCK, free_port
from .e2e_chain import cpu_seconds as process_cpu_seconds

CONTRACT = "LOAD"
ROOT = Path(__file__).resolve().parent.parent
#: Agents per source address by default: under the server's default burst of 300 new agent
#: IDs per address (agent_registration_burst), so no registration is ever refused.
AGENTS_PER_ADDRESS = 250
MESHCENTRAL_DEVICES = 14_000  # Ylianst/MeshCentral issues #1302, #2037: AWS t3.medium
MESHCENTRAL_RAM_GB = 4.0  # 2 vCPU, 4 GiB


#: ``enkaku server`` as ``python -m enkaku.cli server``, plus a GC callback that logs every
#: collection pausing the process over 50 ms (the agents' pong deadline is 1.25 s), and
#: with --server-gc-threshold a gc.set_threshold() call first. Nothing else differs.
SERVER_WRAPPER = """
import gc, sys, time
GC_SETUP; t = [0.0]
def pause(phase, info):
    if phase == "start":
        t[0] = time.perf_counter()
    elif time.perf_counter() - t[0] > 0.05:
        print(f"load-gc-pause gen={info['generation']} {time.perf_counter() - t[0]:.3f}",
              file=sys.stderr, flush=True)
gc.callbacks.append(pause)
from enkaku.cli import main
sys.exit(main())
"""


class LoadError(RuntimeError):
    """A step of the benchmark failed."""


# -- /proc ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` in seconds (0 once it is gone)."""
    return process_cpu_seconds(pid) or 0.0


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    """VmRSS (or another Vm* line) of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LoadError(f"no {key} for PID {pid}")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def mem_total_kib() -> int:
    """MemTotal of the machine in KiB."""
    return int(Path("/proc/meminfo").read_text().split()[1])


def raise_nofile() -> int:
    """Raise our (and so our children's) open-file limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# -- agent fleet (one process per source address) ---------------------------------------


def device_key(seed: bytes, index: int) -> tuple[bytes, bytes]:
    """The Ed25519 key pair of agent ``index`` (derived, so reruns are reproducible)."""
    return pysodium.crypto_sign_seed_keypair(
        hashlib.sha256(seed + index.to_bytes(4, "big")).digest()
    )


@dataclass
class FleetStats:
    """What one fleet saw; printed as its last JSON line."""

    welcomed: int = 0
    disconnects: int = 0
    disconnect_codes: dict[str, int] = field(default_factory=dict)
    connect_failures: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    sessions: int = 0
    session_errors: int = 0
    end_reasons: dict[str, int] = field(default_factory=dict)
    echoed_bytes: int = 0


class Fleet:
    """``count`` minimal agents on one source address, speaking /ws/agent like AgentRuntime."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.server = args.server.rstrip("/")
        self.source, self.count, self.first = args.source, args.count, args.first
        self.seed = bytes.fromhex(args.seed)
        self.inflight = asyncio.Semaphore(args.connect_concurrency)
        self.interval = 1.0 / args.connect_rate if args.connect_rate > 0 else 0.0
        self.next_start = 0.0
        self.stats = FleetStats()
        self.ids: dict[int, str] = {}
        self.online = 0
        self.heartbeat: dict[int, float] = {}
        self.stopping = False
        self.sockets: set[aiohttp.ClientWebSocketResponse] = set()
        self.ready = asyncio.Event()
        self.relays: set[asyncio.Task[None]] = set()

    def _count(self, bucket: dict[str, int], key: str) -> None:
        bucket[key] = bucket.get(key, 0) + 1

    async def _pace(self) -> None:
        """Space connection starts ``interval`` apart (per fleet = per address)."""
        if not self.interval:
            return
        now = time.monotonic()
        start = max(now, self.next_start)
        self.next_start = start + self.interval
        await asyncio.sleep(start - now)

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(local_addr=(self.source, 0), limit=0)
        async with aiohttp.ClientSession(connector=connector) as self.http:
            tasks = [asyncio.create_task(self.agent(i)) for i in range(self.count)]
            reporter = asyncio.create_task(self.report_progress())
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            self.stopping = True
            reporter.cancel()
            for relay in list(self.relays):
                relay.cancel()
            await asyncio.gather(*(ws.close() for ws in list(self.sockets)), return_exceptions=True)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, *self.relays, return_exceptions=True)
        emit({"event": "stats", **self.stats.__dict__})

    async def report_progress(self) -> None:
        while True:
            await asyncio.sleep(2)
            emit({"event": "progress", "online": self.online, **self.stats.__dict__})
            if not self.ready.is_set() and self.online == self.count:
                self.ready.set()
                emit({"event": "ready", "ids": [self.ids[i] for i in range(self.count)]})

    async def agent(self, i: int) -> None:
        """One agent: connect, authenticate, serve; reconnect after a drop (counted)."""
        public, secret = device_key(self.seed, self.first + i)
        delay = 1.0
        while not self.stopping:
            try:
                await self.serve(i, public, secret)
                delay = 1.0
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                if self.stopping:
                    return
                self.stats.connect_failures += 1
                self._count(self.stats.failure_kinds, type(exc).__name__ + ": " + str(exc)[:60])
                await asyncio.sleep(min(30.0, delay) * (0.8 + 0.4 * secrets.randbelow(1000) / 1000))
                delay *= 2
                continue
            await asyncio.sleep(0.5 + secrets.randbelow(1000) / 1000)  # as AgentRuntime

    async def serve(self, i: int, public: bytes, secret: bytes) -> None:
        url = self.server.replace("http", "ws", 1) + "/ws/agent"
        async with self.inflight:
            await self._pace()
            ws = await self.http.ws_connect(
                url,
                heartbeat=self.heartbeat.get(i, DEFAULT_LINK_HEARTBEAT),
                compress=0,
                max_msg_size=64 * 1024,
            )
            self.sockets.add(ws)
            try:
                challenge = await receive_json(ws, 15)
                nonce = bytes.fromhex(challenge["nonce"])
                signature = pysodium.crypto_sign_detached(AUTH_CONTEXT + nonce, secret)
                hello = {
                    "type": "hello",
                    "public_key": public.hex(),
                    "signature": signature.hex(),
                    "agent_version": "0.1.0",
                    "platform": "linux",
                }
                await ws.send_str(json.dumps(hello))
                welcome = await receive_json(ws, 15)
                if welcome.get("type") != "welcome":
                    raise ValueError("no welcome")
            except BaseException:
                self.sockets.discard(ws)
                await ws.close()
                raise
        try:
            # As AgentRuntime: this connection keeps the heartbeat it was opened with
            # (DEFAULT_LINK_HEARTBEAT the first time); half the welcome's heartbeat is
            # used for relay legs, half its agent_heartbeat for the next connection.
            heartbeat = max(0.5, float(welcome.get("heartbeat", 5.0)) / 2)
            link = welcome.get("agent_heartbeat", welcome.get("heartbeat", 5.0))
            self.heartbeat[i] = max(0.5, float(link) / 2)
            if i not in self.ids:
                self.stats.welcomed += 1
            self.ids[i] = str(welcome["agent_id"])
            self.online += 1
            try:
                await self.listen(ws, heartbeat)
            finally:
                self.online -= 1
        finally:
            self.sockets.discard(ws)
            await ws.close()
        if not self.stopping:
            self.stats.disconnects += 1
            exc = ws.exception()
            why = f"{ws.close_code} {type(exc).__name__ if exc else ''}".strip()
            self._count(self.stats.disconnect_codes, why)

    async def listen(self, ws: aiohttp.ClientWebSocketResponse, heartbeat: float) -> None:
        """Serve the control connection: each session_request gets its relay leg."""
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data.get("type") == "session_request":
                task = asyncio.create_task(self.relay(data, heartbeat))
                self.relays.add(task)
                task.add_done_callback(self.relays.discard)

    async def relay(self, request: dict[str, Any], heartbeat: float) -> None:
        """The agent's relay leg: pair, then echo every binary message until the end."""
        url = request.get("relay_url") or (
            self.server.replace("http", "ws", 1) + str(request["relay_path"])
        )
        self.stats.sessions += 1
        try:
            leg = await open_leg(self.http, url, str(request["relay_token"]), heartbeat=heartbeat)
        except TransportError as exc:
            self.stats.session_errors += 1
            self._count(self.stats.end_reasons, "open: " + str(exc)[:60])
            return
        reason = "connection_lost"
        try:
            while True:
                msg = await leg.ws.receive()
                if msg.type != WSMsgType.BINARY:
                    reason = (
                        str(msg.extra) if msg.data == 4000 and msg.extra else f"close {msg.data}"
                    )
                    break
                await leg.ws.send_bytes(msg.data)
                self.stats.echoed_bytes += len(msg.data)
        except (ConnectionError, aiohttp.ClientError) as exc:
            reason = type(exc).__name__
        finally:
            await leg.ws.close()
        self._count(self.stats.end_reasons, reason)


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:
    """The next text message as a JSON object."""
    msg = await ws.receive(timeout=timeout)
    if msg.type != WSMsgType.TEXT:
        raise ValueError(f"closed during the handshake ({msg.data} {msg.extra or ''})")
    data = json.loads(msg.data)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def emit(obj: dict[str, Any]) -> None:
    """One JSON line on stdout (the fleet's report to the benchmark)."""
    print(json.dumps(obj), flush=True)


# -- the benchmark ----------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    last: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    ids: list[str] | None = None


class Bench:
    """Owns the server, the fleets, the database and the technician side."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="enkaku-load-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: asyncio.subprocess.Process | None = None
        self.fleets: list[Child] = []
        self.readers: list[asyncio.Task[None]] = []
        self.pg_db: str | None = None
        self.tokens: list[str] = []
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []

    # -- set-up --

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENKAKU_")}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def db_url(self) -> str:
        if self.args.db == "sqlite":
            return f"sqlite:///{self.workdir}/load.db"
        assert self.pg_db is not None
        admin = self.args.pg_admin_url
        return admin.rsplit("/", 1)[0] + "/" + self.pg_db

    def psql(self, sql: str) -> None:
        subprocess.run(
            ["psql", self.args.pg_admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            check=True,
            timeout=60,
            capture_output=True,
        )

    async def cli(self, *args: str, env: dict[str, str] | None = None) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "enkaku.cli",
            *args,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        if proc.returncode != 0:
            raise LoadError(f"enkaku {args[0]} failed: {out.decode(errors='replace')}")

    async def prepare(self) -> list[tuple[str, str]]:
        """Database, technicians (CLI) and contract (CLI); returns (user, password)."""
        if self.args.db == "postgresql":
            self.pg_db = f"enkaku_load_{os.getpid()}_{secrets.token_hex(3)}"
            self.psql(f"CREATE DATABASE {self.pg_db}")
        db = self.db_url()
        users = [(f"tech{n:02d}", secrets.token_urlsafe(16)) for n in range(self.args.technicians)]
        # The first command creates the SQLite file on purpose (`--create`, docs/cli.md).
        create = ["--create"] if self.args.db == "sqlite" else []
        await self.cli(
            "user",
            "--db",
            db,
            *create,
            "add",
            users[0][0],
            "--display-name",
            users[0][0],
            env={"ENKAKU_NEW_PASSWORD": users[0][1]},
        )
        sem = asyncio.Semaphore(2)

        async def add(user: str, password: str) -> None:
            async with sem:
                await self.cli(
                    "user",
                    "--db",
                    db,
                    "add",
                    user,
                    "--display-name",
                    user,
                    "--company",
                    "Load",
                    env={"ENKAKU_NEW_PASSWORD": password},
                )

        await asyncio.gather(*(add(u, p) for u, p in users[1:]))
        await self.cli("contract", "--db", db, "add", CONTRACT, "--customer", "Load test")
        return users

    async def start_server(self) -> None:
        log = (self.workdir / "server.log").open("wb")
        gc_setup = ""
        if self.args.server_gc_threshold:
            a, b, c = (int(x) for x in self.args.server_gc_threshold.split(","))
            gc_setup = f"gc.set_threshold({a}, {b}, {c}); "
        cmd = [
            sys.executable,
            "-c",
            SERVER_WRAPPER.replace("GC_SETUP; ", gc_setup),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            self.db_url(),
            *self.args.server_arg,
        ]
        self.server = await asyncio.create_subprocess_exec(
            *cmd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.returncode is not None:
                raise LoadError(f"server exited: {self.server_log_tail()}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.2)
        raise LoadError("server did not listen within 60 s")

    def gc_pauses(self) -> dict[str, Any]:
        """The server's GC pauses over 50 ms, from its log: count, max, over 1.25 s."""
        pauses: dict[int, list[float]] = {}
        for line in (self.workdir / "server.log").read_text(errors="replace").splitlines():
            if line.startswith("load-gc-pause "):
                _, gen, secs = line.split()
                pauses.setdefault(int(gen[4:]), []).append(float(secs))
        return {
            f"gen{g}": {
                "count": len(v),
                "max_s": max(v),
                "over_1_25_s": sum(1 for x in v if x > 1.25),
            }
            for g, v in sorted(pauses.items())
        }

    def server_log_tail(self, lines: int = 20) -> str:
        text = (self.workdir / "server.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    async def start_fleets(self, seed: bytes) -> None:
        n, k = self.args.agents, self.args.addresses
        first = 0
        for a in range(k):
            count = n // k + (1 if a < n % k else 0)
            if count == 0:
                continue
            source = f"127.0.0.{2 + a}"
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.load",
                "--worker",
                "--server",
                self.url,
                "--source",
                source,
                "--count",
                str(count),
                "--first",
                str(first),
                "--seed",
                seed.hex(),
                "--connect-concurrency",
                str(self.args.connect_concurrency),
                "--connect-rate",
                str(self.args.connect_rate),
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=(self.workdir / f"fleet-{a}.log").open("wb"),
                start_new_session=True,
            )
            child = Child(source, proc)
            self.fleets.append(child)
            self.readers.append(asyncio.create_task(self.read_child(child)))
            first += count

    async def read_child(self, child: Child) -> None:
        assert child.proc.stdout is not None
        while line := await child.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                child.last = obj
                if obj.get("event") == "progress":
                    child.progress = obj
                elif obj.get("event") == "ready":
                    child.ids = list(obj["ids"])

    async def wait_ready(self) -> list[str]:
        """Every fleet's agent IDs, once all its agents are online (progress on stderr)."""
        deadline = time.monotonic() + self.args.connect_timeout
        last_print = 0.0
        while any(child.ids is None for child in self.fleets):
            totals = sum_stats([c.progress for c in self.fleets])
            if time.monotonic() > deadline:
                raise LoadError(f"only {totals.get('online', 0)} agents online in time")
            for child in self.fleets:
                if child.proc.returncode is not None:
                    raise LoadError(f"fleet {child.name} exited ({child.proc.returncode})")
            if time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                say(
                    f"agents online: {totals.get('online', 0)}/{self.args.agents} "
                    f"({totals.get('disconnects', 0)} disconnects, "
                    f"{totals.get('connect_failures', 0)} failed connection attempts so far)"
                )
            await asyncio.sleep(0.5)
        return [i for child in self.fleets for i in child.ids or []]

    async def login(self, http: aiohttp.ClientSession, users: list[tuple[str, str]]) -> None:
        for user, password in users:
            async with http.post(
                f"{self.url}/api/v1/auth/token", json={"username": user, "password": password}
            ) as r:
                if r.status != 201:
                    raise LoadError(f"login {user}: HTTP {r.status} {await r.text()}")
                self.tokens.append((await r.json())["token"])

    # -- measurements --

    def window_start(self) -> dict[str, float]:
        assert self.server is not None
        busy, total = machine_busy()
        return {
            "t": time.monotonic(),
            "server": cpu_seconds(self.server.pid),
            "fleets": sum(cpu_seconds(c.proc.pid) for c in self.fleets),
            "bench": cpu_seconds(os.getpid()),
            "busy": busy,
            "total": total,
        }

    def window_end(self, start: dict[str, float]) -> dict[str, float]:
        end = self.window_start()
        secs = end["t"] - start["t"]
        d = {k: end[k] - start[k] for k in start}
        machine_cores = d["total"] / secs if secs else 0.0
        other = d["busy"] - d["server"] - d["fleets"] - d["bench"]
        return {
            "seconds": round(secs, 2),
            "server_cpu_s": round(d["server"], 2),
            "server_cpu_pct": round(100 * d["server"] / secs, 1),
            "fleets_cpu_pct": round(100 * d["fleets"] / secs, 1),
            "bench_cpu_pct": round(100 * d["bench"] / secs, 1),
            "machine_busy_pct_of_all_cores": round(100 * d["busy"] / d["total"], 1),
            "other_processes_cpu_pct": round(100 * max(0.0, other) / secs, 1),
            "cores_seen": round(machine_cores, 2),
            "loadavg": float(Path("/proc/loadavg").read_text().split()[0]),
        }

    async def online(self, http: aiohttp.ClientSession) -> int:
        async with http.get(f"{self.url}/api/v1/health") as r:
            return int((await r.json())["agents_online"])

    async def open_session(
        self, http: aiohttp.ClientSession, token: str, agent_id: str
    ) -> tuple[str, RelayLeg, float]:
        """POST /sessions and pair the technician leg; returns (id, leg, seconds)."""
        t0 = time.perf_counter()
        async with http.post(
            f"{self.url}/api/v1/sessions",
            json={"agent_id": agent_id, "contract": CONTRACT},
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            if r.status != 201:
                raise LoadError(f"POST /sessions for {agent_id}: HTTP {r.status} {await r.text()}")
            created = await r.json()
        leg = await open_leg(http, created["relay_url"], created["relay_token"], heartbeat=2.5)
        return created["session_id"], leg, time.perf_counter() - t0

    async def session_record(
        self, http: aiohttp.ClientSession, token: str, session_id: str
    ) -> dict[str, Any]:
        for _ in range(50):  # the record is written just after the legs close
            async with http.get(
                f"{self.url}/api/v1/sessions/{session_id}",
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                record: dict[str, Any] = await r.json()
            if record.get("ended_at"):
                return record
            await asyncio.sleep(0.1)
        return record

    async def setups(self, http: aiohttp.ClientSession, agents: list[str]) -> list[float]:
        """Sessions set up one after the other and ended at once; set-up times in s."""
        times: list[float] = []
        failed: list[str] = []
        for n, agent_id in enumerate(agents):
            token = self.tokens[n % len(self.tokens)]
            try:
                session_id, leg, secs = await self.open_session(http, token, agent_id)
            except (LoadError, TransportError) as exc:
                failed.append(str(exc)[:120])
                continue
            times.append(secs)
            await leg.close("technician_ended")
            record = await self.session_record(http, token, session_id)
            if record.get("end_reason") != "technician_ended":
                failed.append(f"{session_id[:8]} ended {record.get('end_reason')}")
        self.results["setup_failures"] = failed
        return times

    async def pump(self, http: aiohttp.ClientSession, agents: list[str]) -> dict[str, Any]:
        """``--sessions`` sessions pumping MAX_RECORD-sized messages both ways."""
        opened = await asyncio.gather(
            *(
                self.open_session(http, self.tokens[n % len(self.tokens)], a)
                for n, a in enumerate(agents)
            ),
            return_exceptions=True,
        )
        legs = [o for o in opened if not isinstance(o, BaseException)]
        errors = [str(o)[:120] for o in opened if isinstance(o, BaseException)]
        payload = os.urandom(MAX_RECORD)
        stop = asyncio.Event()
        received = [0] * len(legs)

        async def send(leg: RelayLeg) -> None:
            while not stop.is_set():
                await leg.ws.send_bytes(payload)

        async def receive(n: int, leg: RelayLeg) -> None:
            while True:
                msg = await leg.ws.receive()
                if msg.type != WSMsgType.BINARY:
                    return
                received[n] += len(msg.data)

        window = self.window_start()
        tasks = [asyncio.create_task(send(leg)) for _, leg, _ in legs]
        tasks += [asyncio.create_task(receive(n, leg)) for n, (_, leg, _) in enumerate(legs)]
        await asyncio.sleep(self.args.seconds)
        stop.set()
        # The senders finish their current message before the legs close (a close frame
        # racing a send would be a different end than the one measured).
        done = await asyncio.gather(*tasks[: len(legs)], return_exceptions=True)
        await asyncio.gather(*(leg.close("technician_ended") for _, leg, _ in legs))
        done += await asyncio.gather(*tasks[len(legs) :], return_exceptions=True)
        errors += [repr(e)[:120] for e in done if isinstance(e, BaseException)]
        cpu = self.window_end(window)
        records = [
            await self.session_record(http, self.tokens[n % len(self.tokens)], sid)
            for n, (sid, _, _) in enumerate(legs)
        ]
        relayed = sum(r["bytes_to_agent"] + r["bytes_to_technician"] for r in records)
        bad = [r["end_reason"] for r in records if r.get("end_reason") != "technician_ended"]
        return {
            "sessions": len(legs),
            "open_errors": errors,
            "bad_end_reasons": bad,
            "setup_s": [round(s, 4) for _, _, s in legs],
            "relayed_bytes": relayed,
            "technician_received_bytes": sum(received),
            "mb_per_s": round(relayed / 1e6 / cpu["seconds"], 1),
            "server_cpu_s_per_gb": round(cpu["server_cpu_s"] / (relayed / 1e9), 2)
            if relayed
            else None,
            "cpu": cpu,
        }

    # -- the run --

    async def run(self) -> dict[str, Any]:
        a = self.args
        seed = os.urandom(16)
        say(f"workdir {self.workdir}; preparing {a.db} database and {a.technicians} technicians")
        users = await self.prepare()
        await self.start_server()
        assert self.server is not None
        say(f"server PID {self.server.pid} on {self.url}")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await self.login(http, users)
            await self.online(http)
            await asyncio.sleep(3)
            rss0 = rss_kib(self.server.pid)
            t0 = time.monotonic()
            await self.start_fleets(seed)
            ids = await self.wait_ready()
            connect_s = time.monotonic() - t0
            say(f"{len(ids)} agents connected in {connect_s:.0f} s; settling {a.settle} s")
            await asyncio.sleep(a.settle)
            online0 = await self.online(http)
            rss1 = rss_kib(self.server.pid)
            at_start = sum_stats([c.progress for c in self.fleets])
            say(f"idle window: {a.seconds} s")
            window = self.window_start()
            await asyncio.sleep(a.seconds)
            idle = self.window_end(window)
            rss_idle = rss_kib(self.server.pid)
            pump_agents, setup_agents = ids[: a.sessions], ids[a.sessions : a.sessions + a.setups]
            say(f"{len(setup_agents)} session set-ups, one after the other")
            setup_times = await self.setups(http, setup_agents)
            say(f"{a.sessions} sessions relaying for {a.seconds} s")
            relay = await self.pump(http, pump_agents)
            rss_relay = rss_kib(self.server.pid)
            await asyncio.sleep(2)
            online1 = await self.online(http)
        await asyncio.sleep(2.5)  # one more progress line from every fleet
        at_end = sum_stats([c.progress for c in self.fleets])
        fleet_stats = await self.stop_fleets()
        measured_drops = at_end.get("disconnects", 0) - at_start.get("disconnects", 0)
        per_agent = (rss1 - rss0) * 1024 / len(ids)
        all_setups = setup_times + relay["setup_s"]
        if relay["relayed_bytes"]:
            # The relay window also carries the idle agents' heartbeats: take the idle
            # window's rate out to get the cost of the relaying itself.
            idle_cpu = idle["server_cpu_pct"] / 100 * relay["cpu"]["seconds"]
            net = max(0.0, relay["cpu"]["server_cpu_s"] - idle_cpu)
            relay["server_cpu_s_per_gb_net_of_idle"] = round(
                net / (relay["relayed_bytes"] / 1e9), 2
            )
        self.results.update(
            {
                "agents": len(ids),
                "addresses": len(self.fleets),
                "connect_seconds": round(connect_s, 1),
                "rss_before_mib": round(rss0 / 1024, 1),
                "rss_after_connect_mib": round(rss1 / 1024, 1),
                "rss_after_idle_window_mib": round(rss_idle / 1024, 1),
                "rss_after_relay_mib": round(rss_relay / 1024, 1),
                "rss_per_idle_agent_kib": round(per_agent / 1024, 1),
                "idle": idle,
                "online_before": online0,
                "online_after": online1,
                "setup_samples": len(setup_times),
                "setup_p50_ms": round(1000 * percentile(setup_times, 50), 1)
                if setup_times
                else None,
                "setup_p99_ms": round(1000 * percentile(setup_times, 99), 1)
                if setup_times
                else None,
                "setup_max_ms": round(1000 * max(setup_times), 1) if setup_times else None,
                "pump_setup_p50_ms": round(1000 * percentile(relay["setup_s"], 50), 1)
                if relay["setup_s"]
                else None,
                "all_setups_p99_ms": round(1000 * percentile(all_setups, 99), 1)
                if all_setups
                else None,
                "relay": relay,
                "fleets": fleet_stats,
                "ramp_disconnects": at_start.get("disconnects", 0),
                "ramp_connect_failures": at_start.get("connect_failures", 0),
                "measured_disconnects": measured_drops,
                "measured_connect_failures": at_end.get("connect_failures", 0)
                - at_start.get("connect_failures", 0),
            }
        )
        return self.results

    async def stop_fleets(self) -> dict[str, Any]:
        """SIGTERM every fleet, wait for its last stats line; the summed stats."""
        for child in self.fleets:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        for child in self.fleets:
            try:
                await asyncio.wait_for(child.proc.wait(), 60)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)
        missing = [c.name for c in self.fleets if c.last.get("event") != "stats"]
        totals = sum_stats([c.last for c in self.fleets if c.name not in missing])
        if missing:
            totals["missing_stats"] = missing
        return totals

    async def stop(self) -> None:
        """Stop every child by PID (fleets, then the server), drop the database."""
        for child in self.fleets:
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        for task in self.readers:
            task.cancel()
        if self.server is not None and self.server.returncode is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.server.wait(), 30)
            except TimeoutError:
                say(f"server PID {self.server.pid} ignored SIGTERM, killing")
                self.server.kill()
                await self.server.wait()
        if self.pg_db is not None:
            try:
                self.psql(f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)")
            except subprocess.CalledProcessError as exc:
                say(f"could not drop {self.pg_db}: {exc.stderr.decode(errors='replace')}")


def sum_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fleet stats summed: integers added, dicts of counts merged."""
    total: dict[str, Any] = {}
    for row in rows:
        for k, v in row.items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
            elif isinstance(v, dict):
                bucket = total.setdefault(k, {})
                for kk, vv in v.items():
                    bucket[kk] = bucket.get(kk, 0) + vv
    return total


def say(text: str) -> None:
    print(f"load: {text}", file=sys.stderr, flush=True)


def anchor(results: dict[str, Any]) -> dict[str, Any]:
    """Agents one node could hold at the measured RSS and CPU, against MeshCentral's 14k."""
    agents = results["agents"]
    per_agent_kib = results["rss_per_idle_agent_kib"]
    idle_pct = results["idle"]["server_cpu_pct"]
    ram_budget_kib = MESHCENTRAL_RAM_GB * 1024 * 1024 - results["rss_before_mib"] * 1024
    by_ram = int(ram_budget_kib / per_agent_kib) if per_agent_kib > 0 else None
    # One `enkaku server` is one asyncio process: at most one core, whatever the vCPUs.
    by_cpu = int(100 * agents / idle_pct) if idle_pct > 0 else None
    limits = [x for x in (by_ram, by_cpu) if x is not None]
    per_node = min(limits) if limits else None
    # What this run showed, not what a straight line promises: a linear extrapolation
    # ignores GC pauses, which grow with the heap (docs: benchmarks/README.md).
    held = agents if not results.get("measured_disconnects") else None
    return {
        "agents_held": held,
        "ratio_held": round(held / MESHCENTRAL_DEVICES, 2) if held else None,
        "ram_gib": MESHCENTRAL_RAM_GB,
        "agents_by_ram": by_ram,
        "agents_by_one_core": by_cpu,
        "agents_per_node": per_node,
        "meshcentral_devices": MESHCENTRAL_DEVICES,
        "ratio": round(per_node / MESHCENTRAL_DEVICES, 2) if per_node else None,
    }


def report(results: dict[str, Any]) -> str:
    """The human-readable results block."""
    r, relay, idle, fleets = results, results["relay"], results["idle"], results["fleets"]
    anc = r["anchor"]
    gc_line = ", ".join(
        f"{g} {v['count']} (max {v['max_s']:.2f} s, {v['over_1_25_s']} over 1.25 s)"
        for g, v in r["server_gc_pauses"].items()
    )
    lines = [
        f"enkaku load benchmark {r['date']} git {r['git']} ({r['db']}, {r['cores']} cores, "
        f"{r['mem_gib']} GiB){' - ' + r['note'] if r['note'] else ''}",
        f"  server                  {r['server_code']}; GC thresholds "
        f"{r['options']['server_gc_threshold'] or 'default'}; pauses > 50 ms: {gc_line or 'none'}",
        f"  agents connected        {r['agents']} from {r['addresses']} source addresses "
        f"in {r['connect_seconds']} s",
        f"  server RSS              {r['rss_before_mib']} MiB before -> "
        f"{r['rss_after_connect_mib']} MiB with agents "
        f"({r['rss_after_relay_mib']} MiB after relay)",
        f"  RSS per idle agent      {r['rss_per_idle_agent_kib']} KiB",
        f"  CPU at idle             server {idle['server_cpu_pct']} % of one core over "
        f"{idle['seconds']} s (fleets {idle['fleets_cpu_pct']} %, other processes "
        f"{idle['other_processes_cpu_pct']} %, machine {idle['machine_busy_pct_of_all_cores']} % "
        f"of all cores, loadavg {idle['loadavg']})",
        f"  session set-up          p50 {r['setup_p50_ms']} ms, p99 {r['setup_p99_ms']} ms, "
        f"max {r['setup_max_ms']} ms over {r['setup_samples']} sequential sessions "
        f"(the {relay['sessions']} pump sessions at once: p50 {r['pump_setup_p50_ms']} ms)",
        f"  relay, {relay['sessions']} sessions        {relay['mb_per_s']} MB/s total "
        f"({relay['relayed_bytes'] / 1e9:.2f} GB in {relay['cpu']['seconds']} s), server "
        f"{relay['cpu']['server_cpu_pct']} % of one core, {relay['server_cpu_s_per_gb']} CPU-s/GB "
        f"({relay.get('server_cpu_s_per_gb_net_of_idle')} net of the idle agents' share) "
        f"(fleets {relay['cpu']['fleets_cpu_pct']} %, technician side "
        f"{relay['cpu']['bench_cpu_pct']} %, other {relay['cpu']['other_processes_cpu_pct']} %)",
        f"  failures                sessions: {len(r['setup_failures'])} set-up, "
        f"{len(relay['open_errors'])} pump open, {len(relay['bad_end_reasons'])} bad end; "
        f"agents: {r['measured_disconnects']} disconnects while measured "
        f"({r['ramp_disconnects']} during the ramp-up, "
        f"{fleets.get('disconnect_codes', {})}), {r['ramp_connect_failures']} + "
        f"{r['measured_connect_failures']} failed connection attempts; online "
        f"{r['online_before']} -> {r['online_after']}",
        f"  anchor                  held {anc['agents_held']} agents = "
        f"{anc['ratio_held']} x MeshCentral's {anc['meshcentral_devices']}; linear extrapolation "
        f"{anc['agents_per_node']} agents per node "
        f"(RAM {anc['ram_gib']} GiB: {anc['agents_by_ram']}, one core: "
        f"{anc['agents_by_one_core']}) / MeshCentral {anc['meshcentral_devices']} on 2 vCPU "
        f"4 GiB = {anc['ratio']}",
    ]
    return "\n".join(lines)


def git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def server_code() -> str:
    """Where the server's ``enkaku`` package came from, and whether src/ had local edits."""
    import enkaku

    where = str(Path(enkaku.__file__).resolve().parent)
    if not where.startswith(str(ROOT)):
        return f"{where} (PYTHONPATH)"
    out = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return "src/ of this checkout" + (" with uncommitted edits" if out.stdout.strip() else "")


async def run_bench(args: argparse.Namespace) -> int:
    """The whole benchmark, bounded by ``--timeout``; everything stopped at the end."""
    nofile = raise_nofile()
    need = args.agents + 4 * args.sessions + 200
    if nofile < need:
        say(f"open-file limit {nofile} is below the {need} the server needs; raise the hard limit")
        return 2
    bench = Bench(args)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_head(),
        "server_code": server_code(),
        "db": args.db,
        "cores": os.cpu_count(),
        "mem_gib": round(mem_total_kib() / 1024 / 1024, 1),
        "note": args.note,
        "options": {k: v for k, v in vars(args).items() if k != "worker"},
    }
    out = args.out or ROOT / "benchmarks" / "results" / (
        datetime.now(UTC).strftime("%Y-%m-%d") + f"-load-{args.db}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = await asyncio.wait_for(bench.run(), args.timeout)
    except (LoadError, TimeoutError, asyncio.CancelledError) as exc:
        say(f"failed: {exc!r}")
        failure: dict[str, Any] = {"failed": repr(exc), **meta}
        if bench.fleets:
            failure["fleets"] = await bench.stop_fleets()
            say(f"fleets: {json.dumps(failure['fleets'])}")
        if bench.server is not None and (bench.workdir / "server.log").exists():
            failure["server_gc_pauses"] = bench.gc_pauses()
            say(f"server GC pauses: {json.dumps(failure['server_gc_pauses'])}")
            say("server log tail:\n" + bench.server_log_tail())
        out.write_text(json.dumps(failure, indent=2, default=str) + "\n")
        say(f"what was measured is in {out}; logs in {bench.workdir}")
        return 1
    finally:
        await bench.stop()
    results.update(meta)
    results["server_gc_pauses"] = bench.gc_pauses()
    results["anchor"] = anchor(results)
    text = report(results)
    print(text, flush=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")
    say(f"results in {out} and {out.with_suffix('.txt')}")
    shutil.rmtree(bench.workdir, ignore_errors=True)
    failed = (
        results["setup_failures"]
        or results["relay"]["open_errors"]
        or results["relay"]["bad_end_reasons"]
        or results["measured_disconnects"]
        or results["online_after"] != results["agents"]
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line; run the benchmark, or one agent fleet with --worker."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description="One enkaku server under idle agents, session set-ups and relaying.",
    )
    p.add_argument("--agents", type=int, default=10_000, help="idle agents (default 10000)")
    p.add_argument("--sessions", type=int, default=20, help="relaying sessions (default 20)")
    p.add_argument(
        "--addresses",
        type=int,
        default=0,
        help="source addresses 127.0.0.2... (default: one per 250 agents, so each stays "
        "within the server's default registration burst of 300)",
    )
    p.add_argument(
        "--seconds", type=float, default=30.0, help="idle and relay windows (default 30)"
    )
    p.add_argument("--setups", type=int, default=200, help="sequential set-ups (default 200)")
    p.add_argument("--technicians", type=int, default=20, help="accounts (default 20)")
    p.add_argument("--settle", type=float, default=10.0, help="wait after connecting (10 s)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="with --db postgresql: where to CREATE and DROP the throw-away database",
    )
    p.add_argument(
        "--connect-concurrency", type=int, default=8, help="handshakes in flight per address (8)"
    )
    p.add_argument(
        "--connect-rate", type=float, default=0.0, help="new connections/s per address (0: no cap)"
    )
    p.add_argument("--connect-timeout", type=float, default=900.0, help="for all agents (900 s)")
    p.add_argument("--timeout", type=float, default=1800.0, help="whole run (1800 s)")
    p.add_argument(
        "--server-arg", action="append", default=[], help="extra `enkaku server` argument"
    )
    p.add_argument(
        "--server-gc-threshold",
        metavar="G0,G1,G2",
        help="experiment: gc.set_threshold(G0, G1, G2) in the server process before it starts",
    )
    p.add_argument("--note", default="", help="free text stored with the results")
    p.add_argument(
        "--out", type=Path, help="results JSON (default benchmarks/results/DATE-load-DB.json)"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--server", help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        raise_nofile()
        asyncio.run(Fleet(args).run())
        return 0
    if args.addresses == 0:
        args.addresses = max(1, math.ceil(args.agents / AGENTS_PER_ADDRESS))
    if not 1 <= args.addresses <= 250 or args.agents < args.sessions + 1:
        p.error("--addresses must be 1..250 and --agents more than --sessions")
    return asyncio.run(run_bench(args))


if __name__ == "__main__":
    sys.exit(main())
