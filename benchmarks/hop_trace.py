"""Where a key's time goes through the relay: each hop of the chain, timed.

``.venv/bin/python -m benchmarks.hop_trace [--keys 40] [--profile tight] [--out STEM]``

Runs ``benchmarks.screen``'s latency cell (the idle xterm, keys typed one at a time) on
the agent directly and through the whole product chain (``benchmarks.e2e_chain``:
``enkaku connect --vnc-listen``, the server's relay, the agent), in one run. The chain's
three processes start with ``benchmarks/_hoptrace`` on ``PYTHONPATH``: each logs the
moments its sockets turned readable and its writes, with sizes and ports only, on one
clock (CLOCK_MONOTONIC). Each key is then followed from process to process: into
``connect`` from the viewer, out to the server, through the server to the agent, the
agent's own time (input, capture, encoding), and the update's way back. Prints each
hop's median and 90th percentile in ms, and the relay's share (everything but the
agent's own time) beside the latency difference the screen benchmark measured.

The tracing costs a few microseconds per socket operation, in the traced chain only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.key_marks import cell_arguments, emit, latency_cell

ROOT = Path(__file__).resolve().parent.parent

#: A viewer's read after this long without one is a key (the latency cell pauses
#: 150-350 ms between keys; an update request follows its update within milliseconds).
QUIET = 0.1

#: The hops, in order: (name, process, direction, socket) where socket is "viewer",
#: "server" (connect's or the agent's connection to the server), "from-connect" or
#: "from-agent" (the server's sockets).
HOPS: list[tuple[str, str, str, str]] = [
    ("connect: key read -> sent to server", "connect", "w", "server"),
    ("socket connect -> server", "server", "r", "from-connect"),
    ("server: relayed to agent", "server", "w", "from-agent"),
    ("socket server -> agent", "agent", "r", "server"),
    ("agent: key in -> update out (own time)", "agent", "w", "server"),
    ("socket agent -> server", "server", "r", "from-agent"),
    ("server: relayed to connect", "server", "w", "from-connect"),
    ("socket server -> connect", "connect", "r", "server"),
    ("connect: update read -> sent to viewer", "connect", "w", "viewer"),
]
OWN = "agent: key in -> update out (own time)"


@dataclass(frozen=True)
class Event:
    t: float
    kind: str  # r or w
    size: int
    local: str
    remote: str


def read_log(path: Path) -> list[Event]:
    events = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5:
            events.append(Event(float(parts[0]), parts[1], int(parts[2]), parts[3], parts[4]))
    return events


def chains(folder: Path) -> list[dict[str, list[Event]]]:
    """The traced chains (one per benchmark cell: each starts fresh processes), each as
    {role: events}, grouped by the server's port that the agent and connect reach."""
    logs: dict[str, list[tuple[str, list[Event]]]] = defaultdict(list)
    for path in sorted(folder.glob("*-*.txt")):
        role = path.name.split("-")[0]
        logs[role].append((path.name, read_log(path)))
    out = []
    for _, server in logs.get("server", []):
        if not server:
            continue
        port = statistics.mode(e.local for e in server)
        chain = {"server": server, "port": [Event(0, "", 0, port, port)]}
        for role in ("agent", "connect"):
            for _, events in logs.get(role, []):
                if any(e.remote == port for e in events):
                    chain[role] = events
        if "agent" in chain and "connect" in chain:
            out.append(chain)
    return out


def follow(chain: dict[str, list[Event]]) -> list[dict[str, float]]:
    """Each key's hop times (ms) through one chain."""
    port = chain["port"][0].local
    connect, agent, server = chain["connect"], chain["agent"], chain["server"]
    to_server = {e.local for e in connect if e.remote == port}
    from_agent = {e.local for e in agent if e.remote == port}

    def sock(role: str, which: str, e: Event) -> bool:
        if role == "server":
            peers = to_server if which == "from-connect" else from_agent
            return e.local == port and e.remote in peers
        if which == "server":
            return e.remote == port
        return e.remote != port and e.remote != "?"  # connect's viewer socket

    streams = {"connect": connect, "agent": agent, "server": server}
    keys = []
    last_read = -1.0
    for e in connect:
        if e.kind != "r" or not sock("connect", "viewer", e):
            continue
        quiet = e.t - last_read >= QUIET
        last_read = e.t
        if not quiet:
            continue
        t, times = e.t, {}
        for name, role, kind, which in HOPS:
            nxt = next(
                (x for x in streams[role] if x.t > t and x.kind == kind and sock(role, which, x)),
                None,
            )
            if nxt is None or nxt.t - e.t > 1.0:
                break
            times[name] = 1000 * (nxt.t - t)
            t = nxt.t
        else:
            keys.append(times)
    return keys


def summary(keys: list[dict[str, float]]) -> list[tuple[str, float, float]]:
    rows = []
    for name, *_ in HOPS:
        values = sorted(k[name] for k in keys)
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        rows.append((name, statistics.median(values), p90))
    relay = sorted(sum(v for n, v in k.items() if n != OWN) for k in keys)
    rows.append(("relay's share (all but the agent's own time)", statistics.median(relay),
                 relay[min(len(relay) - 1, int(0.9 * len(relay)))]))  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hop_trace", description=__doc__)
    cell_arguments(p)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="enkaku-hoptrace-") as folder:
        os.chmod(folder, 0o777)
        path = os.pathsep.join(
            str(p) for p in (ROOT / "benchmarks" / "_hoptrace", ROOT / "src", ROOT)
        )
        traced = (f"traced=env HOPTRACE_DIR={folder} PYTHONPATH={path} {sys.executable} "
                  "-m benchmarks.e2e_chain --display {display} --port {port}")  # fmt: skip
        extra = ["--paths", "direct", "--peers", ""]
        rows = latency_cell(traced, args.profile, args.keys, args.out, folder, extra)
        found = [follow(c) for c in chains(Path(folder))]
    keys = max(found, key=len, default=[])
    if not keys:
        print("hop_trace: no key could be followed through the chain", file=sys.stderr)
        return 1
    p50 = {r["server"]: r["p50"] for r in rows if r.get("workload") == "latency"}
    lines = [f"keys followed through the chain: {len(keys)} (profile {args.profile})", "",
             f"{'hop':48} {'p50 ms':>7} {'p90 ms':>7}"]  # fmt: skip
    lines += [f"{name:48} {a:7.3f} {b:7.3f}" for name, a, b in summary(keys)]
    if "enkaku" in p50 and "traced" in p50:
        lines += ["", f"key-to-screen p50 (the viewer's clock): direct {p50['enkaku']:.2f} ms, "
                  f"traced chain {p50['traced']:.2f} ms, difference "
                  f"{p50['traced'] - p50['enkaku']:+.2f} ms"]  # fmt: skip
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
