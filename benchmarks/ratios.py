"""Ratios of our servers to the named peers from one bench-peers run.

``python -m benchmarks.ratios RESULTS.jsonl [--ours A,B] [--peers x11vnc,x0vncserver]``

Reads the ``results.jsonl`` that the peer harness's ``run.sh`` wrote (every server
measured in the same run; see benchmarks/README.md and ``run_peers.sh --harness DIR``)
and prints, per profile and workload, the throughput rows (``--decode parse``) as
ours/peer for updates/s, KB/s and server CPU %, then the key->screen latency medians. A
ratio is "-" when the peer's figure is 0 or missing, and the CPU ratio also when the peer
used under ``MIN_PEER_CPU_S`` (noise at 10 ms ticks). Servers named in ``--wrapper-cpu``
are run through a wrapper whose own PID is what the harness measured
(benchmarks.e2e_chain): their CPU column says "wrapper".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]

#: Below this many CPU seconds in the window, a peer's CPU is too small to divide by.
MIN_PEER_CPU_S = 0.05


def load(path: Path) -> list[Row]:
    """All JSON records of a results.jsonl file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cpu_pct(row: Row) -> float | None:
    """Server CPU as % of one core over the measured window."""
    cpu = row.get("server_cpu_s")
    return None if cpu is None else 100.0 * cpu / row["duration_s"]


def ratio(ours: float | None, peer: float | None) -> str:
    """ours/peer formatted, or "-" when it is undefined."""
    if ours is None or peer is None or peer == 0:
        return "-"
    return f"{ours / peer:.2f}"


def num(v: float | None, fmt: str = "{:.1f}") -> str:
    """A figure, or "-"."""
    return "-" if v is None else fmt.format(v)


def render(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns with a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for j, r in enumerate(rows):
        out.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def cpu_ratio(mine: Row, other: Row) -> str:
    """ours/peer CPU %, or "-" when the peer's CPU is within tick noise."""
    peer_cpu = other.get("server_cpu_s")
    if peer_cpu is None or peer_cpu < MIN_PEER_CPU_S:
        return "-"
    return ratio(cpu_pct(mine), cpu_pct(other))


def throughput_table(
    rows: list[Row], ours: list[str], peers: list[str], wrapper_cpu: Collection[str] = ()
) -> str:
    """ours/peer for upd/s, KB/s and srvCPU% per profile and workload (parse runs)."""
    thr = {
        (r["server"], r["profile"], r["workload"]): r
        for r in rows
        if r["mode"] == "throughput" and r["decode"] == "parse"
    }
    keys = sorted({(p, w) for (_, p, w) in thr}, key=lambda k: (k[0], _wl_order(k[1])))
    header = ["ours", "profile", "workload", "upd/s", "KB/s", "CPU%"]
    for peer in peers:
        header += [f"upd/s÷{peer}", f"KB/s÷{peer}", f"CPU%÷{peer}"]
    table: list[tuple[str, ...]] = [tuple(header)]
    for name in ours:
        for prof, wl in keys:
            mine = thr.get((name, prof, wl))
            if mine is None:
                continue
            cells = [
                name,
                prof,
                wl,
                num(mine["updates_per_s"]),
                num(mine["kbytes_per_s"], "{:.0f}"),
                "wrapper" if name in wrapper_cpu else num(cpu_pct(mine), "{:.0f}"),
            ]
            for peer in peers:
                other = thr.get((peer, prof, wl))
                if other is None:
                    cells += ["-", "-", "-"]
                    continue
                cells += [
                    ratio(mine["updates_per_s"], other["updates_per_s"]),
                    ratio(mine["kbytes_per_s"], other["kbytes_per_s"]),
                    "wrapper" if name in wrapper_cpu else cpu_ratio(mine, other),
                ]
            table.append(tuple(cells))
    return render(table)


def latency_table(rows: list[Row], servers: list[str]) -> str:
    """Key->screen latency median (and misses) per server and profile."""
    table: list[tuple[str, ...]] = [("server", "profile", "median ms", "p95 ms", "misses")]
    for r in rows:
        if r["mode"] == "latency" and r["server"] in servers:
            table.append(
                (
                    r["server"],
                    r["profile"],
                    num(r.get("lat_median_ms"), "{:.1f}"),
                    num(r.get("lat_p95_ms"), "{:.1f}"),
                    f"{r['misses']}/{r['keys']}",
                )
            )
    return render(table)


def _wl_order(workload: str) -> int:
    order = ["idle", "text", "winmove", "image"]
    return order.index(workload) if workload in order else len(order)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the ratio and latency tables."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.ratios", description=__doc__)
    p.add_argument("results", type=Path, help="results.jsonl of one run.sh run")
    p.add_argument("--ours", default="enkaku,enkaku-e2e", help="comma-separated server names")
    p.add_argument("--peers", default="x11vnc,x0vncserver", help="comma-separated peer names")
    p.add_argument(
        "--wrapper-cpu",
        default="enkaku-e2e",
        help="comma-separated servers whose measured PID is only a wrapper (no CPU ratio)",
    )
    args = p.parse_args(argv)
    try:
        rows = load(args.results)
    except (OSError, ValueError) as exc:
        p.error(f"cannot read {args.results}: {exc}")
    ours, peers = args.ours.split(","), args.peers.split(",")
    print(throughput_table(rows, ours, peers, set(args.wrapper_cpu.split(","))))
    print()
    print(latency_table(rows, peers + ours))
    return 0


if __name__ == "__main__":
    sys.exit(main())
