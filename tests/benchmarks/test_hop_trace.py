"""``benchmarks/hop_trace.py``'s reading of the chain's socket logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.hop_trace import HOPS, OWN, chains, follow, summary

SERVER = "9000"  # the server's port; connect's socket to it 41001, the agent's 41002


def write(folder: Path, name: str, lines: list[tuple[float, str, int, str, str]]) -> None:
    (folder / name).write_text("".join(f"{t:.7f} {k} {n} {a} {b}\n" for t, k, n, a, b in lines))


def key_at(t: float) -> dict[str, list[tuple[float, str, int, str, str]]]:
    """One key's way through the chain, starting at ``t`` (each hop a known length)."""
    ms = 0.001
    viewer, to_server, to_agent = ("5900", "50000"), ("41001", SERVER), ("41002", SERVER)
    return {
        "connect": [(t, "r", 0, *viewer), (t + 0.3 * ms, "w", 44, *to_server),
                    (t + 3.3 * ms, "r", 0, *to_server), (t + 3.5 * ms, "w", 49, *viewer)],
        "server": [(t + 0.5 * ms, "r", 0, SERVER, "41001"),
                   (t + 0.7 * ms, "w", 40, SERVER, "41002"),
                   (t + 3.0 * ms, "r", 0, SERVER, "41002"),
                   (t + 3.1 * ms, "w", 73, SERVER, "41001")],
        "agent": [(t + 0.9 * ms, "r", 0, *to_agent), (t + 2.9 * ms, "w", 77, *to_agent)],
    }  # fmt: skip


def test_each_key_is_followed_hop_by_hop(tmp_path: Path) -> None:
    logs: dict[str, list[tuple[float, str, int, str, str]]] = {
        "connect": [],
        "server": [],
        "agent": [],
    }
    for i in range(5):
        t = 100.0 + 0.3 * i
        for role, lines in key_at(t).items():
            logs[role] += lines
        # The viewer's update request right after the update: not a key.
        logs["connect"].append((t + 0.0042, "r", 0, "5900", "50000"))
        logs["connect"].append((t + 0.0043, "w", 38, "41001", SERVER))
    for role, lines in logs.items():
        write(tmp_path, f"{role}-1.txt", sorted(lines))
    write(tmp_path, "server-2.txt", [])  # a chain that never started: ignored
    found = chains(tmp_path)
    assert len(found) == 1
    keys = follow(found[0])
    assert len(keys) == 5
    expected = [0.3, 0.2, 0.2, 0.2, 2.0, 0.1, 0.1, 0.2, 0.2]
    for key in keys:
        assert [key[name] for name, *_ in HOPS] == pytest.approx(expected, abs=1e-6)
    rows = {name: p50 for name, p50, _ in summary(keys)}
    assert rows[OWN] == pytest.approx(2.0, abs=1e-6)
    assert rows["relay's share (all but the agent's own time)"] == pytest.approx(1.5, abs=1e-6)


def test_a_key_lost_on_the_way_is_not_counted(tmp_path: Path) -> None:
    way = key_at(100.0)
    way["agent"] = way["agent"][:1]  # the agent never answered
    for role, lines in way.items():
        write(tmp_path, f"{role}-1.txt", lines)
    assert follow(chains(tmp_path)[0]) == []
