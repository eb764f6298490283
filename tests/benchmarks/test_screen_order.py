"""The screen benchmark's order of measurement: cell by cell, every server in turn."""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.screen import Server, measure_all


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(
        **({"profiles": "tight,zrle", "workloads": "text,image", "keys": 5, "by_server": False}
           | kw)
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
