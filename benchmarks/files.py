"""File transfer through the product against scp over loopback, and the key-to-screen
latency while a transfer runs.

``python -m benchmarks.files [--size 1GiB] [--repeat 3] [--keys 60] [--out FILE]``

Starts, with throw-away state in one temporary folder (removed at the end):

- a private Xvfb with an xterm running ``sh`` (the customer's desktop);
- the product chain of ``benchmarks.e2e_chain``: ``enkaku server`` (temporary SQLite),
  ``enkaku agent --headless --consent allow`` on that display, ``enkaku login`` and
  ``enkaku connect ID --vnc-listen 127.0.0.1:PORT``, which holds the session; its control
  socket is in a runtime folder of ours (XDG_RUNTIME_DIR), so ``enkaku session ...`` finds
  exactly this session;
- the peer: Debian's ``sshd -D -e -f CONFIG`` on a free loopback port with a throw-away
  host key, client key and ``authorized_keys`` for the current user (``/run/sshd`` is
  made when missing and removed again).

1. **Throughput.** One file of ``--size`` random bytes. Each round times, one after the
   other, ``scp FILE remote:DIR``, ``enkaku session put FILE DIR``, ``scp remote:FILE
   DIR`` and ``enkaku session get FILE DIR`` (wall time of the command, start to exit, so
   both include their start-up; their fixed cost is measured on its own: ``ssh true``
   and ``enkaku session status``). Every copy is checked against the file's SHA-256 and
   deleted. MB/s is 10^6 bytes per second; the figure is the median of ``--repeat``
   rounds; the ratio is enkaku/scp. Beside it, CPU seconds per GB of every process that
   takes part (enkaku's server, agent, connect and the command; scp with its ssh, sshd
   with its session processes).
2. **Latency.** A minimal RFB viewer (``_files_rfb.py``) on the ``--vnc-listen`` port types
   "x" and BackSpace into the xterm, ``--keys`` times per phase: idle, then while
   ``enkaku session put`` runs, then while ``enkaku session get`` runs (a key counts only
   if a transfer was moving bytes from before it was sent until its echo was read;
   transfers are started one after another until enough keys count, and the last one is
   allowed to finish so no partial file is left to resume). p50/p95 during ÷ idle.

Nothing is asserted: the goals (enkaku ≥ 0.5× scp, latency during a transfer within 20 %
of idle) are printed next to the figures. Results go to stdout and to
``benchmarks/results/DATE-files.json`` and ``.txt`` (``--out``), also for a failed run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._files_harness import Desktop, FilesChain, HarnessError, SshPeer
from ._files_rfb import ProbeError, Sample, Viewer, measure, percentile
from .e2e_chain import ChainError, free_port
from .load import ROOT, git_head, machine_busy, mem_total_kib, server_code

GOAL_THROUGHPUT = 0.5  # enkaku/scp at least
GOAL_LATENCY = 1.2  # during/idle at most
CHUNK = 8 * 1024 * 1024
_SIZE = re.compile(r"(\d+)\s*(|k|m|g|kb|mb|gb|kib|mib|gib)", re.IGNORECASE)
_UNITS = {"": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_UNITS.update({"k": 2**10, "m": 2**20, "g": 2**30, "kib": 2**10, "mib": 2**20, "gib": 2**30})


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


def say(text: str) -> None:
    print(f"files: {text}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    """A size in bytes from 1GiB, 64MiB, 64M (binary), 100MB (decimal) or a plain number."""
    m = _SIZE.fullmatch(text.strip())
    if m is None or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1GiB or 64MiB)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def write_random(path: Path, size: int) -> str:
    """``size`` random bytes into ``path``; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(CHUNK, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages."""
    return Path("/proc/loadavg").read_text().split()[:3]


def children_cpu() -> float:
    """utime+stime of our children that have been waited for (with their own children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def mb_per_s(size: int, seconds: float) -> float:
    return round(size / seconds / 1e6, 1)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


@dataclass
class Transfer:
    """One timed copy."""

    tool: str  # "enkaku" | "scp"
    direction: str  # "put" (technician -> customer) | "get"
    seconds: float
    mb_per_s: float
    machine_busy_pct: float  # of all cores, over the transfer
    #: CPU seconds per process: enkaku's server, agent, connect and the session command;
    #: scp and its ssh, sshd with its session processes.
    cpu_s: dict[str, float] = field(default_factory=dict)


@dataclass
class Command:
    """A finished command: wall time, exit code, output."""

    seconds: float
    returncode: int
    stdout: str
    stderr: str


class Bench:
    """The started processes and the measurements."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size: int = args.size
        self.workdir = Path(tempfile.mkdtemp(prefix="enkaku-files-"))
        self.source = self.workdir / "source.bin"
        self.customer = self.workdir / "customer"  # where puts land (scp and enkaku)
        self.back = self.workdir / "back"  # where gets land
        self.run_dir = self.workdir / "run"
        self.digest = ""
        self.desktop = Desktop(self.workdir)
        self.peer = SshPeer(self.workdir / "ssh")
        self.chain: FilesChain | None = None
        self.transfers: list[Transfer] = []
        self.enkaku_error: str | None = None
        self.results: dict[str, Any] = {}

    # -- set-up ------------------------------------------------------------------------

    async def start(self) -> None:
        for folder in (self.customer, self.back, self.run_dir):
            folder.mkdir(mode=0o700)
        say(f"writing {self.size} random bytes to {self.source}")
        self.digest = await asyncio.to_thread(write_random, self.source, self.size)
        await self.peer.start(free_port())
        self.results["ssh_version"] = await self._ssh_version()
        self.results["ssh_kex"] = await self.peer.ciphers()
        say(f"sshd on 127.0.0.1:{self.peer.port}: {'; '.join(self.results['ssh_kex'])}")
        await asyncio.to_thread(self.desktop.start)
        say(f"Xvfb {self.desktop.display} with an xterm")
        self.chain = FilesChain(
            self.desktop.display,
            free_port(),
            self.workdir / "chain",
            verbose=self.args.verbose,
            run_dir=self.run_dir,
        )
        self.chain.workdir.mkdir()
        await self.chain.start()
        say(f"enkaku connect holds the session; VNC on 127.0.0.1:{self.chain.port}")

    async def _ssh_version(self) -> str:
        """`ssh -V` (it prints on stderr)."""
        proc = await asyncio.create_subprocess_exec(
            "ssh", "-V", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, err = await proc.communicate()
        return err.decode(errors="replace").strip()

    async def stop(self) -> None:
        if self.chain is not None:
            await self.chain.stop()
        await self.peer.stop()
        await asyncio.to_thread(self.desktop.stop)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- commands ----------------------------------------------------------------------

    async def timed(self, args: list[str], env: dict[str, str] | None = None) -> Command:
        """Run a command to its end; wall time from start to exit."""
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.args.transfer_timeout)
        except TimeoutError:
            await interrupt(proc)
            limit = self.args.transfer_timeout
            raise BenchError(f"{' '.join(args[:5])} ... took over {limit} s") from None
        except asyncio.CancelledError:
            await interrupt(proc)
            raise
        seconds = time.perf_counter() - started
        assert proc.returncode is not None
        return Command(
            seconds, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    def session(self, *args: str) -> list[str]:
        assert self.chain is not None
        return self.chain.session_command(*args)

    def transfer_args(self, tool: str, direction: str) -> tuple[list[str], Path]:
        """The command line of one copy and the file it makes."""
        if tool == "scp":
            if direction == "put":
                return self.peer.scp(str(self.source), f"remote:{self.customer}/"), (
                    self.customer / self.source.name
                )
            return self.peer.scp(f"remote:{self.source}", f"{self.back}/"), (
                self.back / self.source.name
            )
        if direction == "put":
            return self.session("put", "--json", str(self.source), str(self.customer)), (
                self.customer / self.source.name
            )
        return self.session("get", "--json", str(self.source), str(self.back)), (
            self.back / self.source.name
        )

    async def copy(self, tool: str, direction: str) -> Transfer:
        """One timed copy, checked byte for byte (outside the timing) and deleted."""
        args, made = self.transfer_args(tool, direction)
        made.unlink(missing_ok=True)
        env = self.chain.env if tool == "enkaku" and self.chain is not None else None
        cpu0 = self.chain.sample() if self.chain is not None else {}
        kids0, sshd0 = children_cpu(), self.peer.cpu_seconds()
        busy0 = machine_busy()
        done = await self.timed(args, env)
        busy1 = machine_busy()
        cpu1 = self.chain.sample() if self.chain is not None else {}
        kids1 = children_cpu()
        if tool == "scp":
            await self.peer.wait_idle()  # its session processes are reaped: CPU counted
        sshd1 = self.peer.cpu_seconds()
        if done.returncode != 0:
            raise BenchError(
                f"{tool} {direction} exited with {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-1500:]}"
            )
        got = await asyncio.to_thread(sha256_of, made)
        made.unlink()
        if got != self.digest:
            raise BenchError(f"{tool} {direction}: the copy differs from the source (SHA-256)")
        cpu = {}
        if tool == "enkaku":
            for name, start in cpu0.items():
                end = cpu1.get(name)
                if start is not None and end is not None:
                    cpu[name] = round(end - start, 2)
            cpu["session_cli"] = round(kids1 - kids0, 2)
        else:
            cpu["scp+ssh"] = round(kids1 - kids0, 2)
            cpu["sshd"] = round(sshd1 - sshd0, 2)
        cpu["total"] = round(sum(cpu.values()), 2)
        busy = 100 * (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1e-9)
        return Transfer(
            tool, direction, round(done.seconds, 3), mb_per_s(self.size, done.seconds),
            round(busy, 1), cpu,
        )  # fmt: skip

    async def enkaku_ready(self) -> None:
        """`enkaku session status` answers (the control socket is up)."""
        deadline = time.monotonic() + 60
        assert self.chain is not None
        while True:
            done = await self.timed(self.session("status", "--json"), self.chain.env)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"`enkaku session status` fails: {done.stderr.strip()[-800:]}")
            await asyncio.sleep(0.5)

    async def fixed_costs(self) -> None:
        """Wall time of a command that moves no file: `ssh true`, `enkaku session status`."""
        assert self.chain is not None
        ssh, status = [], []
        for _ in range(3):
            ssh.append((await self.timed(self.peer.ssh("true"))).seconds)
            status.append(
                (await self.timed(self.session("status", "--json"), self.chain.env)).seconds
            )
        self.results["fixed_cost_s"] = {
            "ssh_true": round(statistics.median(ssh), 3),
            "enkaku_session_status": round(statistics.median(status), 3),
        }

    # -- throughput --------------------------------------------------------------------

    async def throughput(self) -> None:
        """``--repeat`` rounds of scp put, enkaku put, scp get, enkaku get."""
        for round_no in range(1, self.args.repeat + 1):
            for direction in ("put", "get"):
                for tool in ("scp", "enkaku"):
                    if tool == "enkaku" and self.enkaku_error:
                        continue
                    try:
                        done = await self.copy(tool, direction)
                    except BenchError as exc:
                        if tool == "scp":
                            raise
                        self.enkaku_error = str(exc)
                        say(f"enkaku failed, scp goes on: {exc}")
                        continue
                    self.transfers.append(done)
                    say(
                        f"round {round_no}: {tool} {direction} {done.mb_per_s} MB/s "
                        f"({done.seconds} s, machine {done.machine_busy_pct} % busy)"
                    )

    def summary(self, tool: str, direction: str) -> dict[str, Any]:
        runs = [t for t in self.transfers if (t.tool, t.direction) == (tool, direction)]
        rates = [t.mb_per_s for t in runs]
        out: dict[str, Any] = {
            "mb_per_s": round(statistics.median(rates), 1) if rates else None,
            "runs_mb_per_s": rates,
        }
        if runs:
            gb = self.size / 1e9
            out["cpu_s_per_gb"] = {
                name: round(statistics.median(t.cpu_s.get(name, 0) for t in runs) / gb, 2)
                for name in runs[0].cpu_s
            }
        return out

    # -- latency -----------------------------------------------------------------------

    async def latency(self) -> None:
        """Idle, during put, during get; each ``--keys`` counted keys."""
        assert self.chain is not None
        rng = random.Random(self.args.seed)
        viewer = await Viewer.connect("127.0.0.1", self.chain.port)
        try:
            await viewer.point(100, 100)  # inside the xterm at +10+10
            await viewer.quiet(1.0)  # the xterm's prompt is drawn
            phases: dict[str, Any] = {}
            idle = await measure(viewer, self.args.keys, rng)
            phases["idle"] = latency_stats(idle, len(idle))
            say(f"latency idle: {phases['idle']}")
            if not self.enkaku_error:
                for direction in ("put", "get"):
                    phases[direction] = await self.latency_during(viewer, direction, rng)
                    say(f"latency during {direction}: {phases[direction]}")
            self.results["latency"] = phases
        finally:
            await viewer.close()

    async def latency_during(
        self, viewer: Viewer, direction: str, rng: random.Random
    ) -> dict[str, Any]:
        """Keys while transfers in ``direction`` run, one after another."""
        windows: list[list[float]] = []  # [first progress, end] per transfer
        moving = asyncio.Event()
        enough = asyncio.Event()
        transfers: list[float] = []
        runner = asyncio.create_task(
            self.keep_transferring(direction, windows, moving, enough, transfers)
        )
        samples: list[Sample] = []
        try:
            started = asyncio.ensure_future(moving.wait())
            await asyncio.wait({runner, started}, return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            if runner.done():
                runner.result()
                raise BenchError(f"no {direction} transfer started")
            while counted(samples, windows) < self.args.keys:
                if runner.done():
                    runner.result()
                    break
                samples += await measure(viewer, 1, rng, first=len(samples))
            enough.set()
            await runner
        except asyncio.CancelledError:
            runner.cancel()
            raise
        finally:
            enough.set()
            if not runner.done():
                await runner
        valid = [s for s in samples if inside(s, windows)]
        stats = latency_stats(valid, len(samples))
        stats["transfers"] = len(transfers)
        stats["transfer_mb_per_s"] = [mb_per_s(self.size, s) for s in transfers]
        return stats

    async def keep_transferring(
        self,
        direction: str,
        windows: list[list[float]],
        moving: asyncio.Event,
        enough: asyncio.Event,
        seconds: list[float],
    ) -> None:
        """enkaku transfers one after another until ``enough``; each runs to its end."""
        assert self.chain is not None
        for _ in range(self.args.max_transfers):
            if enough.is_set():
                return
            args, made = self.transfer_args("enkaku", direction)
            made.unlink(missing_ok=True)
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                *args,
                env=self.chain.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert proc.stdout is not None and proc.stderr is not None
            errors = asyncio.create_task(proc.stderr.read())
            window: list[float] = []
            try:
                async for line in proc.stdout:
                    if not window and b'"progress"' in line:
                        window += [time.perf_counter(), float("inf")]
                        windows.append(window)
                        moving.set()
                err = await errors
                code = await proc.wait()
            except asyncio.CancelledError:
                errors.cancel()
                await interrupt(proc)
                raise
            if window:
                window[1] = time.perf_counter()
            if code != 0:
                raise BenchError(
                    f"enkaku {direction} during typing exited with {code}: "
                    f"{err.decode(errors='replace').strip()[-1000:]}"
                )
            seconds.append(time.perf_counter() - started)
            await asyncio.to_thread(made.unlink)

    # -- the whole run -------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        await self.start()
        try:
            await self.enkaku_ready()
            await self.fixed_costs()
        except BenchError as exc:
            self.enkaku_error = str(exc)
            say(f"enkaku session commands unavailable: {exc}")
        await self.throughput()
        if not self.args.no_latency:
            await self.latency()
        r = self.results
        r["throughput"] = {
            d: {t: self.summary(t, d) for t in ("enkaku", "scp")} for d in ("put", "get")
        }
        for d in ("put", "get"):
            row = r["throughput"][d]
            row["ratio_enkaku_scp"] = ratio(row["enkaku"]["mb_per_s"], row["scp"]["mb_per_s"])
        lat = r.get("latency", {})
        idle = lat.get("idle", {})
        for d in ("put", "get"):
            if d in lat:
                lat[d]["ratio_p50"] = ratio(lat[d]["p50_ms"], idle.get("p50_ms"))
                lat[d]["ratio_p95"] = ratio(lat[d]["p95_ms"], idle.get("p95_ms"))
        r["transfers"] = [asdict(t) for t in self.transfers]
        r["enkaku_error"] = self.enkaku_error
        return r


async def interrupt(proc: asyncio.subprocess.Process) -> None:
    """Ctrl-C for a command of ours (by PID), then wait for it; SIGKILL after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def inside(sample: Sample, windows: list[list[float]]) -> bool:
    """Whether a transfer moved bytes from before ``sample`` was sent to after its echo."""
    return any(w[0] <= sample.sent and sample.ended <= w[1] for w in windows)


def counted(samples: list[Sample], windows: list[list[float]]) -> int:
    return sum(inside(s, windows) for s in samples)


def latency_stats(samples: list[Sample], sent: int) -> dict[str, Any]:
    ms = [s.ms for s in samples if s.ms is not None]
    p50, p95 = percentile(ms, 50), percentile(ms, 95)
    return {
        "keys": len(samples),
        "keys_sent": sent,
        "missed": sum(s.ms is None for s in samples),
        "p50_ms": None if p50 is None else round(p50, 1),
        "p95_ms": None if p95 is None else round(p95, 1),
        "max_ms": round(max(ms), 1) if ms else None,
        "ms": [round(x, 1) for x in ms],
    }


def fmt(value: Any, unit: str = "") -> str:
    return "n/a" if value is None else f"{value}{unit}"


def report(r: dict[str, Any]) -> str:
    """The human-readable results block."""
    o = r["options"]
    lines = [
        f"enkaku files benchmark {r['date']} git {r['git']} ({r['cores']} cores, "
        f"{r['mem_gib']} GiB; {r['server_code']}){' - ' + r['note'] if r['note'] else ''}",
        f"  file                    {o['size']} bytes ({o['size'] / 2**20:.0f} MiB) random, "
        f"{o['repeat']} rounds, median; MB/s = 10^6 bytes/s, wall time of the command",
        f"  peer                    {r.get('ssh_version', '?')}, sshd on loopback, "
        f"{'; '.join(r.get('ssh_kex', [])) or '?'}",
    ]
    if "fixed_cost_s" in r:
        fc = r["fixed_cost_s"]
        lines.append(
            f"  fixed cost per command  `ssh true` {fc['ssh_true']} s, "
            f"`enkaku session status` {fc['enkaku_session_status']} s"
        )
    for d, what in (("put", "technician -> customer"), ("get", "customer -> technician")):
        row = r.get("throughput", {}).get(d)
        if not row:
            continue
        e, s = row["enkaku"], row["scp"]
        lines.append(
            f"  {d} ({what}) enkaku {fmt(e['mb_per_s'], ' MB/s')} {e['runs_mb_per_s']}, "
            f"scp {fmt(s['mb_per_s'], ' MB/s')} {s['runs_mb_per_s']}: enkaku/scp = "
            f"{fmt(row['ratio_enkaku_scp'])} (goal >= {GOAL_THROUGHPUT})"
        )
        for tool, x in (("enkaku", e), ("scp", s)):
            if x.get("cpu_s_per_gb"):
                cpu = ", ".join(f"{k} {v}" for k, v in x["cpu_s_per_gb"].items())
                lines.append(f"      CPU-s per GB {tool:6s}  {cpu}")
    lat = r.get("latency", {})
    if "idle" in lat:
        i = lat["idle"]
        lines.append(
            f"  key->screen idle        p50 {fmt(i['p50_ms'], ' ms')}, p95 "
            f"{fmt(i['p95_ms'], ' ms')}, max {fmt(i['max_ms'], ' ms')} ({i['keys']} keys, "
            f"{i['missed']} missed)"
        )
    for d in ("put", "get"):
        if d in lat:
            x = lat[d]
            lines.append(
                f"  key->screen during {d}  p50 {fmt(x['p50_ms'], ' ms')}, p95 "
                f"{fmt(x['p95_ms'], ' ms')}, max {fmt(x['max_ms'], ' ms')} ({x['keys']} of "
                f"{x['keys_sent']} keys during a transfer, {x['missed']} missed; "
                f"{x['transfers']} transfers at {x['transfer_mb_per_s']} MB/s): "
                f"during/idle p50 {fmt(x['ratio_p50'])}, p95 {fmt(x['ratio_p95'])} "
                f"(goal <= {GOAL_LATENCY})"
            )
    if r.get("enkaku_error"):
        lines.append(f"  ENKAKU FAILED           {r['enkaku_error']}")
    return "\n".join(lines)


async def run_bench(args: argparse.Namespace) -> int:
    """The whole benchmark, bounded by ``--timeout``; everything stopped at the end."""
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
        "cores": os.cpu_count(),
        "mem_gib": round(mem_total_kib() / 1024 / 1024, 1),
        "loadavg_start": loadavg(),
        "note": args.note,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    out = args.out or ROOT / "benchmarks" / "results" / (
        datetime.now(UTC).strftime("%Y-%m-%d") + "-files.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = await asyncio.wait_for(bench.run(), args.timeout)
    except (
        BenchError, HarnessError, ChainError, ProbeError, TimeoutError, asyncio.CancelledError,
    ) as exc:  # fmt: skip
        reason = str(exc) or (
            "interrupted" if isinstance(exc, asyncio.CancelledError) else repr(exc)
        )
        say(f"failed: {reason}")
        failure = {"failed": reason, **meta, **bench.results}
        failure["transfers"] = [asdict(t) for t in bench.transfers]
        out.write_text(json.dumps(failure, indent=2, default=str) + "\n")
        say(f"what was measured is in {out}")
        return 1
    finally:
        await bench.stop()
    results.update(meta)
    results["loadavg_end"] = loadavg()
    text = report(results)
    print(text, flush=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")
    say(f"results in {out} and {out.with_suffix('.txt')}")
    return 1 if results["enkaku_error"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the benchmark."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.files",
        description="enkaku session put/get against scp over loopback; key->screen latency "
        "idle and during a transfer.",
    )
    p.add_argument(
        "--size", type=parse_size, default=2**30, help="file size: 1GiB (default), 64MiB, ..."
    )
    p.add_argument("--repeat", type=int, default=3, help="throughput rounds (default 3)")
    p.add_argument("--keys", type=int, default=60, help="keys per latency phase (default 60)")
    p.add_argument(
        "--max-transfers", type=int, default=10, help="transfers per latency phase at most (10)"
    )
    p.add_argument("--no-latency", action="store_true", help="throughput only")
    p.add_argument("--seed", type=int, default=1, help="random gaps between keys (default 1)")
    p.add_argument(
        "--transfer-timeout", type=float, default=900.0, help="one command (default 900 s)"
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="whole run (default 3600 s)")
    p.add_argument("--note", default="", help="free text stored with the results")
    p.add_argument(
        "--out", type=Path, help="results JSON (default benchmarks/results/DATE-files.json)"
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="passed to enkaku")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.keys < 1 or args.max_transfers < 1:
        p.error("--repeat, --keys and --max-transfers must be at least 1")
    return asyncio.run(run_bench(args))


if __name__ == "__main__":
    sys.exit(main())
