"""The screen benchmark's order of measurement (cell by cell, every server in turn) and
its ratios."""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.screen import Server, measure_all, table


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(
        **({"profiles": "tight,zrle", "workloads": "text,image", "keys": 5, "by_server": False,
            "rounds": 1} | kw)
    )  # fmt: skip


def test_cells_go_server_by_server_and_a_failed_server_is_left_out() -> None:
    servers = {"a": Server("a"), "b": Server("b"), "c": Server("c")}
    calls: list[tuple[str, str, str, int]] = []

    def measure(name: str, server: Server, a: argparse.Namespace) -> list[dict[str, Any]]:
        calls.append((name, a.profiles, a.workloads, a.keys))
        if name == "b" and a.workloads == "image":
            return [{"server": "b", "workload": "error", "profile": "-", "error": "died"}]
        return [{"server": name, "workload": a.workloads or "latency", "profile": a.profiles}]

    results = measure_all(servers, _args(), measure)
    assert calls[:7] == [
        ("a", "tight", "text", 0), ("b", "tight", "text", 0), ("c", "tight", "text", 0),
        ("a", "tight", "image", 0), ("b", "tight", "image", 0), ("c", "tight", "image", 0),
        ("a", "tight", "", 5),
    ]  # fmt: skip
    assert ("b", "tight", "", 5) not in calls and ("b", "zrle", "text", 0) not in calls
    assert len(calls) == 7 + 1 + 2 * 2 + 2  # c's latency, then zrle on a and c
    assert sum(r["workload"] == "error" for r in results) == 1


def test_by_server_runs_each_server_once_with_all_its_cells() -> None:
    servers = {"a": Server("a"), "b": Server("b")}
    seen: list[tuple[str, str, str]] = []

    def measure(name: str, server: Server, a: argparse.Namespace) -> list[dict[str, Any]]:
        seen.append((name, a.profiles, a.workloads))
        return []

    measure_all(servers, _args(by_server=True), measure)
    assert seen == [("a", "tight,zrle", "text,image"), ("b", "tight,zrle", "text,image")]


def test_rounds_alternate_the_order_and_report_each_servers_median() -> None:
    """--rounds 3: each workload cell's servers three times, the order reversed in the
    second round; the latency once; one row per server and cell, each rate its rounds'
    median, the totals summed, a verification that was not exact in any round shown."""
    servers = {"a": Server("a"), "b": Server("b")}
    calls: list[tuple[str, str]] = []
    speed = {"a": iter([4.0, 9.0, 5.0]), "b": iter([2.0, 3.0, 1.0])}

    def measure(name: str, server: Server, a: argparse.Namespace) -> list[dict[str, Any]]:
        calls.append((name, a.workloads or "latency"))
        if not a.workloads:
            return [{"server": name, "workload": "latency", "profile": a.profiles, "p50": 1.0}]
        ms = next(speed[name])
        return [{
            "server": name, "workload": a.workloads, "profile": a.profiles, "secs": 10.0,
            "updates": 100, "cpu_s": ms / 10, "upd_s": 10.0, "kb_upd": 1.0, "kb_s": 10.0,
            "cpu_pct": ms, "ms_upd": ms, "xvfb_pct": 1.0, "chain_pct": ms, "client_pct": 1.0,
            "rects": {"raw": 1}, "verify": "0.1%px" if (name, ms) == ("a", 9.0) else "exact",
        }]  # fmt: skip

    results = measure_all(servers, _args(profiles="tight", workloads="text", rounds=3), measure)
    assert calls == [
        ("a", "text"), ("b", "text"), ("b", "text"), ("a", "text"), ("a", "text"), ("b", "text"),
        ("a", "latency"), ("b", "latency"),
    ]  # fmt: skip
    rows = {(r["server"], r["workload"]): r for r in results}
    assert len(results) == 4
    a, b = rows[("a", "text")], rows[("b", "text")]
    assert (a["ms_upd"], b["ms_upd"]) == (5.0, 2.0)  # medians
    assert a["ms_upd_rounds"] == [4.0, 9.0, 5.0] and a["rounds"] == 3
    assert a["upd_s_rounds"] == [10.0, 10.0, 10.0]
    assert (a["updates"], a["secs"]) == (300, 30.0)
    assert a["verify"] == "0.1%px" and b["verify"] == "exact"
    assert rows[("a", "latency")]["p50"] == 1.0


def test_the_ratios_count_the_display_servers_cpu_beside_the_servers() -> None:
    """The ``+disp`` ratio: CPU per update of each server and the display server
    together (x11vnc has the X server copy its scan lines: part of its work is there)."""

    def row(name: str, cpu: float, xvfb: float) -> dict[str, Any]:
        return {
            "server": name, "workload": "dashboard", "profile": "tight", "secs": 10.0,
            "updates": 300, "cpu_s": cpu / 10, "upd_s": 30.0, "kb_upd": 10.0, "kb_s": 300.0,
            "cpu_pct": cpu, "ms_upd": cpu / 3, "xvfb_pct": xvfb, "chain_pct": cpu,
            "client_pct": 1.0, "rects": {"tight": 1}, "verify": "exact",
        }  # fmt: skip

    text = table([row("enkaku", 12.0, 2.0), row("x11vnc", 8.0, 6.0)])
    (line,) = [s for s in text.splitlines() if s.startswith("enkaku ") and "x11vnc" in s]
    # upd/s 1.00, KB/s 1.00, ms/upd 12/8 = 1.50, +disp (12+2)/(8+6) = 1.00
    assert line.split()[-4:] == ["1.00", "1.00", "1.50", "1.00"]
    assert "+disp" in text
