"""Two versions of the agent's RFB server on one screen at the same time: a paired A/B.

``python -m benchmarks.paired --before REV [--workloads dashboard] [--profiles tight]
[--rounds 5] [--duration 10] [--out STEM]``

``benchmarks/screen.py --before REV`` measures the two versions one after the other; on
this VM one round of a cell spreads by 10-15 % (the same code's Tight dashboard: 3.57,
4.33 and 4.51 ms an update in three rounds minutes apart), more than most single steps
of the screen engine are worth. Here both serve the same X server at once, each to its
own greedy client (``benchmarks.screen.Client``, one request outstanding, in one thread
each), while one workload runs: both see the same pixels, the same damage and the same
machine in the same seconds, so the machine's drift cancels out of their ratio. Each
round connects the two clients in the other order; the servers' processes stay up for
the whole run.

What it costs: the two servers and their clients share the two cores with the workload,
so each server's absolute figures are not those of a run alone (``benchmarks/screen.py``
gives those, and the comparison with the peers); the ratio of the two is the point.
Both grab the same damage from the X server, so the X server's CPU is not told apart.

Prints, per profile and workload, each round's updates a second and CPU milliseconds an
update of both, their ratio (``--server`` names: the second over the first; with
``--before``: the working tree over REV), and the median ratio with the spread of the
rounds. ``--server NAME=CMD`` twice compares any two commands (``{display}`` and
``{port}`` are filled in; the command must stay in the foreground). Needs what
``benchmarks/screen.py`` needs for the workloads chosen.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from tests.xdisplay import x_env

from benchmarks.screen import (
    PROFILES,
    ROOT,
    Client,
    Desktop,
    cpu,
    fmt,
    free_port,
    make_images,
    spawn,
    split,
    stop,
    tree_at,
    wait_port,
    x11_desktop,
)

#: Seconds of the workload before the measured window (both clients already reading).
WARM_UP = 1.0
#: The resolution of a process's CPU time (psutil reads clock ticks), and the CPU a round
#: must measure for it to be 1 % of the figure.
TICK = 0.01
TICKS_FOR_1PCT = 100 * TICK


def greedy(client: Client, start: float, end: float, out: dict[str, Any]) -> None:
    """Keep one request outstanding until ``end``; count the updates and bytes read
    from ``start`` on (a thread per client)."""
    updates, at_start = 0, None
    while (now := time.monotonic()) < end:
        if at_start is None and now >= start:
            at_start = client.r.consumed
        got = client.read((start if at_start is None else end) - now)
        if got:
            client.request()
            if at_start is not None:
                updates += 1
    out["updates"] = updates
    out["bytes"] = 0 if at_start is None else client.r.consumed - at_start


def measure_pair(
    names: list[str], ports: dict[str, int], pids: dict[str, int], desk: Desktop,
    profile: str, workload: str, duration: float,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """One round: both servers through the same ``duration`` s of ``workload``."""
    clients = {name: Client(ports[name], PROFILES[profile], full=False) for name in names}
    try:
        for client in clients.values():
            client.request(False)
            client.drain(0.5)
        with desk.workload(workload, duration + WARM_UP + 1):
            start = time.monotonic() + WARM_UP
            end = start + duration
            got: dict[str, dict[str, Any]] = {name: {} for name in names}
            threads = [
                threading.Thread(target=greedy, args=(clients[n], start, end, got[n]), daemon=True)
                for n in names
            ]
            for t in threads:
                t.start()
            time.sleep(max(0.0, start - time.monotonic()))
            cpu0 = {n: cpu(pids[n]) for n in names}
            time.sleep(max(0.0, end - time.monotonic()))
            cpu1 = {n: cpu(pids[n]) for n in names}
            for t in threads:
                t.join(30)
        for client in clients.values():
            client.drain(0.5, limit=10)
    finally:
        for client in clients.values():
            client.close()
    rows = {}
    for n in names:
        updates, secs = got[n].get("updates", 0), duration
        cpu_s = cpu1[n] - cpu0[n]
        rows[n] = {
            "upd_s": updates / secs,
            "kb_s": got[n].get("bytes", 0) / 1024 / secs,
            "cpu_pct": 100 * cpu_s / secs,
            "ms_upd": 1000 * cpu_s / updates if updates else None,
            "cpu_s": cpu_s,
        }
    return rows


def summary(rounds: list[dict[str, dict[str, Any]]], a: str, b: str) -> dict[str, Any]:
    """The rounds of one cell: each server's median rates, and the ratio ``b`` / ``a``
    of CPU an update per round, its median and its range (None where a round had no
    update on either side)."""
    ratios = [
        r[b]["ms_upd"] / r[a]["ms_upd"]
        for r in rounds
        if r[a]["ms_upd"] and r[b]["ms_upd"] is not None
    ]
    out: dict[str, Any] = {"rounds": len(rounds), "ratios": [round(x, 3) for x in ratios]}
    for name in (a, b):
        for key in ("upd_s", "kb_s", "cpu_pct", "ms_upd", "cpu_s"):
            values = [r[name][key] for r in rounds if r[name][key] is not None]
            out[f"{name}:{key}"] = float(np.median(values)) if values else None
    out["ratio"] = float(np.median(ratios)) if ratios else None
    out["ratio_min"] = min(ratios) if ratios else None
    out["ratio_max"] = max(ratios) if ratios else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", metavar="REV", help="compare the working tree with REV")
    p.add_argument("--server", action="append", default=[], metavar="NAME=CMD",
                   help="a server to compare (twice, instead of --before)")  # fmt: skip
    p.add_argument("--workloads", default="dashboard")
    p.add_argument("--profiles", default="tight")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--out", help="STEM: writes STEM.txt and STEM.json")
    args = p.parse_args(argv)
    if bool(args.before) == bool(args.server) or (args.server and len(args.server) != 2):
        p.error("give --before REV, or --server NAME=CMD twice")
    for tool in ("Xvfb", "xterm", "xdotool", "display"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (see benchmarks/screen.py's docstring)")
    py = sys.executable
    direct = f"{py} -m benchmarks.rfb_direct --display {{display}} --port {{port}}"
    tmp = Path(tempfile.mkdtemp(prefix="enkaku-paired-"))
    logs = tmp / "logs"
    logs.mkdir()
    commands: dict[str, tuple[str, dict[str, str]]] = {}
    if args.before:
        here = f"{ROOT / 'src'}{os.pathsep}{ROOT}"
        old = f"{tree_at(args.before, tmp)}{os.pathsep}{ROOT}"
        commands[f"enkaku@{args.before}"] = (direct, {"PYTHONPATH": old})
        commands["enkaku"] = (direct, {"PYTHONPATH": here})
    else:
        for spec in args.server:
            name, _, cmd = spec.partition("=")
            commands[name] = (cmd, {})
    names = list(commands)
    if len(set(names)) != 2:
        p.error("the two servers need two names")
    (tmp / "images").mkdir()
    if "image" in split(args.workloads):
        make_images(tmp / "images")
    lines: list[str] = []
    cells: list[dict[str, Any]] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"benchmarks/paired.py, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs")  # fmt: skip
    given = sys.argv[1:] if argv is None else argv
    say("command: python -m benchmarks.paired " + shlex.join(given))
    say(f"load average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    procs: dict[str, subprocess.Popen[Any]] = {}
    try:
        with x11_desktop(tmp, logs) as (desk, _xpid):
            ports = {name: free_port() for name in names}
            for name, (cmd, env) in commands.items():
                argv_ = shlex.split(cmd.format(display=desk.display, port=ports[name]))
                procs[name] = spawn(argv_, desk.display, logs / f"{name}.log",
                                    env=x_env(desk.display) | env, cwd=ROOT)  # fmt: skip
                wait_port(ports[name], procs[name])
            pids = {name: proc.pid for name, proc in procs.items()}
            a, b = names
            for profile in split(args.profiles):
                for workload in split(args.workloads):
                    rounds = []
                    for k in range(args.rounds):
                        order = names if k % 2 == 0 else names[::-1]
                        rows = measure_pair(order, ports, pids, desk, profile, workload,
                                            args.duration)  # fmt: skip
                        rounds.append(rows)
                        each = (
                            f"{n} {rows[n]['upd_s']:.1f} upd/s {fmt(rows[n]['ms_upd'], '.2f')}"
                            " ms/upd"
                            for n in names
                        )
                        say(f"  {profile:6} {workload:10} round {k + 1}: " + "  ".join(each))
                    cell = summary(rounds, a, b) | {"profile": profile, "workload": workload}
                    cells.append(cell)
    finally:
        for proc in procs.values():
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    a, b = names
    say("")
    say(f"{'profile':8}{'workload':11}{a + ' upd/s':>22}{b + ' upd/s':>22}"
        f"{a + ' ms/upd':>22}{b + ' ms/upd':>22}   ratio (min-max)")  # fmt: skip
    for c in cells:
        say(f"{c['profile']:8}{c['workload']:11}{fmt(c[f'{a}:upd_s'], '.1f'):>22}"
            f"{fmt(c[f'{b}:upd_s'], '.1f'):>22}{fmt(c[f'{a}:ms_upd'], '.2f'):>22}"
            f"{fmt(c[f'{b}:ms_upd'], '.2f'):>22}   {fmt(c['ratio'], '.3f')} "
            f"({fmt(c['ratio_min'], '.3f')}-{fmt(c['ratio_max'], '.3f')})")  # fmt: skip
    say(f"ratio: {b}'s CPU an update over {a}'s, per round; the median of {args.rounds} rounds")
    # The kernel counts a process's CPU in clock ticks (10 ms here): a round that
    # measured little CPU cannot tell small differences (a process monitor's 4 updates
    # a second: 0.5 s in 8 s, 2 % a side).
    coarse = [c for c in cells if min(c[f"{a}:cpu_s"] or 0, c[f"{b}:cpu_s"] or 0) < TICKS_FOR_1PCT]
    for c in coarse:
        least = min(c[f"{a}:cpu_s"] or 0, c[f"{b}:cpu_s"] or 0)
        say(
            f"note: {c['profile']} {c['workload']}: {least:.2f} CPU s a round, ratios good to "
            f"about {100 * TICK / max(least, TICK):.0f} % a side: a longer --duration tells more"
        )
    if args.out:
        Path(args.out + ".txt").write_text("\n".join(lines) + "\n")
        Path(args.out + ".json").write_text(json.dumps(cells, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
