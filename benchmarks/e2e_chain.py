"""The whole product chain as one foreground "VNC server", for benchmarks only.

``python -m benchmarks.e2e_chain --display :42 --port 5942``

Starts, as child processes and with throw-away state in a temporary directory:

1. ``enkaku server`` on a free loopback port with a temporary SQLite database (a
   technician and a contract are created first with ``enkaku user add`` and
   ``enkaku contract add``);
2. ``enkaku agent --headless --consent allow --display D`` (its first stdout JSON line
   gives the agent ID and one-time password);
3. ``enkaku login`` and ``enkaku connect ID --vnc-listen 127.0.0.1:PORT``.

A VNC client on 127.0.0.1:PORT then talks RFB to the agent through the relay and the
end-to-end encrypted channel, exactly as a technician's viewer does. The wrapper stays
in the foreground until SIGTERM/SIGINT and then stops its children by PID.

The harness measures the CPU of the PID it started, which is this wrapper (it only
waits). So the wrapper prints the PIDs of the agent, server and connect processes on
stderr, samples their utime+stime from /proc/PID/stat when the chain is ready and when
it stops, and prints the difference; ``--cpu-log FILE`` also writes one sample line
(JSON) every ``--cpu-interval`` seconds so the CPU can be split per workload.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

USER = "bench"
CONTRACT = "BENCH"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class ChainError(RuntimeError):
    """A step of the chain failed to start."""


def cpu_seconds(pid: int) -> float | None:
    """utime+stime of ``pid`` in seconds from /proc/PID/stat (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, timeout: float, proc: asyncio.subprocess.Process) -> None:
    """Wait until something accepts on 127.0.0.1:port; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise ChainError(f"enkaku server exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise ChainError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


async def read_json_line(
    stream: asyncio.StreamReader, want: str, timeout: float, echo: IO[str]
) -> dict[str, object]:
    """The first JSON line on ``stream`` with "event": ``want`` (other lines are echoed)."""

    async def scan() -> dict[str, object]:
        while line := await stream.readline():
            text = line.decode(errors="replace").strip()
            with contextlib.suppress(ValueError):
                obj = json.loads(text)
                if isinstance(obj, dict) and obj.get("event") == want:
                    return obj
            print(text, file=echo, flush=True)
        raise ChainError(f"stdout closed before a {want!r} line")

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise ChainError(f"no {want!r} line within {timeout} s") from None


async def drain(stream: asyncio.StreamReader | None, prefix: str) -> None:
    """Copy a child's remaining output to our stderr, line by line, with a prefix."""
    if stream is None:
        return
    while line := await stream.readline():
        print(f"[{prefix}] {line.decode(errors='replace').rstrip()}", file=sys.stderr, flush=True)


@dataclass
class Chain:
    """The child processes and their state directory."""

    display: str
    port: int
    workdir: Path
    verbose: int = 0
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    drains: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """Environment for every child: our temp config, no inherited enkaku secrets."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENKAKU_")}
        env["ENKAKU_TECHNICIAN_CONFIG"] = str(self.workdir / "technician.json")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def enkaku(self, *args: str) -> list[str]:
        """Command line for ``enkaku ARGS`` with this Python (the project's venv)."""
        verbose = ["-" + "v" * self.verbose] if self.verbose else []
        return [sys.executable, "-m", "enkaku.cli", *verbose, *args]

    async def run_once(self, name: str, args: list[str], extra_env: dict[str, str]) -> None:
        """Run a short enkaku command to completion; raise with its output if it fails."""
        proc = await asyncio.create_subprocess_exec(
            *self.enkaku(*args),
            env={**self.env, **extra_env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise ChainError(f"{name} failed ({proc.returncode}): {out.decode(errors='replace')}")

    async def spawn(
        self, name: str, args: list[str], extra_env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        """Start a long-running enkaku child in its own session; stderr is copied to ours."""
        proc = await asyncio.create_subprocess_exec(
            *self.enkaku(*args),
            env={**self.env, **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.procs[name] = proc
        self.drains.append(asyncio.create_task(drain(proc.stderr, name)))
        return proc

    async def start(self) -> None:
        """Bring the chain up until the VNC port listens."""
        db_url = f"sqlite:///{self.workdir}/e2e.db"
        login_password = secrets.token_urlsafe(16)
        await self.run_once(
            "user add",
            ["user", "--db", db_url, "--create", "add", USER, "--display-name", "Bench"],
            {"ENKAKU_NEW_PASSWORD": login_password},
        )
        await self.run_once(
            "contract add",
            ["contract", "--db", db_url, "add", CONTRACT, "--customer", "Benchmark"],
            {},
        )
        http_port = free_port()
        server_url = f"http://127.0.0.1:{http_port}"
        server = await self.spawn(
            "server",
            ["server", "--host", "127.0.0.1", "--port", str(http_port), "--db", db_url],
        )
        self.drains.append(asyncio.create_task(drain(server.stdout, "server")))
        await wait_port(http_port, 30, server)

        agent = await self.spawn(
            "agent",
            [
                "agent",
                "--server",
                server_url,
                "--headless",
                "--consent",
                "allow",
                "--display",
                self.display,
                "--config-dir",
                str(self.workdir / "agent"),
            ],
        )
        assert agent.stdout is not None
        creds = await read_json_line(agent.stdout, "credentials", 30, sys.stderr)
        self.drains.append(asyncio.create_task(drain(agent.stdout, "agent")))
        agent_id, password = str(creds["agent_id"]), str(creds["password"])

        await self.run_once(
            "login",
            ["login", "--server", server_url, "--user", USER],
            {"ENKAKU_LOGIN_PASSWORD": login_password},
        )
        connect = await self.spawn(
            "connect",
            [
                "connect",
                agent_id,
                "--server",
                server_url,
                "--contract",
                CONTRACT,
                "--vnc-listen",
                f"127.0.0.1:{self.port}",
            ],
            {"ENKAKU_PASSWORD": password},
        )
        assert connect.stdout is not None
        await read_json_line(connect.stdout, "vnc_listening", 60, sys.stderr)
        self.drains.append(asyncio.create_task(drain(connect.stdout, "connect")))

    def pids(self) -> dict[str, int]:
        """name -> PID of the running children."""
        return {name: p.pid for name, p in self.procs.items()}

    def sample(self) -> dict[str, float | None]:
        """name -> utime+stime seconds, now."""
        return {name: cpu_seconds(pid) for name, pid in self.pids().items()}

    async def stop(self) -> None:
        """TERM each child by PID (connect, agent, server), KILL after 5 s."""
        for name in ("connect", "agent", "server"):
            proc = self.procs.get(name)
            if proc is None or proc.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                print(
                    f"e2e_chain: {name} (PID {proc.pid}) ignored SIGTERM, killing", file=sys.stderr
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self.drains:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 2)


def cpu_report(start: dict[str, float | None], end: dict[str, float | None], secs: float) -> str:
    """One line per process: CPU seconds and % of one core between two samples."""
    lines = [f"e2e_chain: CPU over {secs:.1f} s (utime+stime from /proc/PID/stat)"]
    for name in start:
        a, b = start[name], end.get(name)
        if a is None or b is None:
            lines.append(f"  {name:8s} n/a (process gone)")
        else:
            lines.append(f"  {name:8s} {b - a:8.2f} s  {100 * (b - a) / secs:6.1f} % of one core")
    return "\n".join(lines)


async def sample_loop(chain: Chain, path: Path, interval: float) -> None:
    """Append one JSON sample (wall time, CPU seconds per child) every ``interval`` s."""
    with path.open("a") as f:
        while True:
            row = {"t": round(time.time(), 3), **chain.sample()}
            f.write(json.dumps(row) + "\n")
            f.flush()
            await asyncio.sleep(interval)


async def run(args: argparse.Namespace) -> int:
    """Start the chain, wait for a signal, report CPU, stop the chain."""
    workdir = Path(tempfile.mkdtemp(prefix="enkaku-e2e-bench-"))
    chain = Chain(args.display, args.port, workdir, verbose=args.verbose)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sampler: asyncio.Task[None] | None = None
    try:
        starting = asyncio.create_task(chain.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            return 130
        stopping.cancel()
        starting.result()
        pids = chain.pids()
        print(f"e2e_chain: agent PID {pids['agent']}", file=sys.stderr, flush=True)
        print(
            "e2e_chain: PIDs " + " ".join(f"{k}={v}" for k, v in pids.items()),
            file=sys.stderr,
            flush=True,
        )
        print(
            f"e2e_chain: VNC on 127.0.0.1:{args.port} -> connect -> server relay -> agent "
            f"({args.display})",
            file=sys.stderr,
            flush=True,
        )
        if args.cpu_log:
            sampler = asyncio.create_task(sample_loop(chain, args.cpu_log, args.cpu_interval))
        t0, cpu0 = time.monotonic(), chain.sample()
        print(f"e2e_chain: CPU at start {json.dumps(cpu0)}", file=sys.stderr, flush=True)
        died = [asyncio.create_task(p.wait()) for p in chain.procs.values()]
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({waiter, *died}, return_when=asyncio.FIRST_COMPLETED)
        t1, cpu1 = time.monotonic(), chain.sample()
        for task in (waiter, *died):
            task.cancel()
        print(f"e2e_chain: CPU at end {json.dumps(cpu1)}", file=sys.stderr, flush=True)
        print(cpu_report(cpu0, cpu1, t1 - t0), file=sys.stderr, flush=True)
        if waiter not in done:
            gone = [
                f"{n} ({p.returncode})" for n, p in chain.procs.items() if p.returncode is not None
            ]
            print(f"e2e_chain: child exited early: {', '.join(gone)}", file=sys.stderr)
            return 1
        return 0
    except ChainError as exc:
        print(f"e2e_chain: {exc}", file=sys.stderr)
        return 1
    finally:
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        await chain.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chain."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e_chain",
        description="Benchmark-only: server + agent + connect --vnc-listen as one VNC server.",
    )
    p.add_argument("--display", required=True, help="X display the agent serves, e.g. :42")
    p.add_argument("--port", type=int, default=5942, help="VNC port on 127.0.0.1 (default 5942)")
    p.add_argument("--cpu-log", type=Path, help="append a JSON CPU sample line per interval")
    p.add_argument("--cpu-interval", type=float, default=0.5, help="seconds (default 0.5)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="passed to enkaku")
    args = p.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
