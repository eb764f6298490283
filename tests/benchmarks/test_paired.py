"""``benchmarks/paired.py``: its summary of the rounds, and one short run of two servers at
once on a real Xvfb (no timing is asserted: benchmarks are not tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.paired import summary

ROOT = Path(__file__).resolve().parents[2]


def row(upd_s: float, ms_upd: float | None) -> dict[str, float | None]:
    cpu_s = None if ms_upd is None else ms_upd * upd_s * 10 / 1000
    return {"upd_s": upd_s, "kb_s": 10.0, "cpu_pct": 5.0, "ms_upd": ms_upd, "cpu_s": cpu_s}


def test_summary_takes_the_ratio_round_by_round() -> None:
    rounds = [
        {"a": row(30, 4.0), "b": row(30, 3.0)},  # 0.75
        {"a": row(30, 2.0), "b": row(30, 2.0)},  # 1.0: a slower machine for both
        {"a": row(30, 5.0), "b": row(30, 4.5)},  # 0.9
    ]
    got = summary(rounds, "a", "b")
    assert got["ratios"] == [0.75, 1.0, 0.9]
    assert got["ratio"] == 0.9 and got["ratio_min"] == 0.75 and got["ratio_max"] == 1.0
    assert got["a:ms_upd"] == 4.0 and got["b:ms_upd"] == 3.0  # each side's own median
    assert got["rounds"] == 3


def test_summary_leaves_out_a_round_without_updates() -> None:
    rounds = [{"a": row(0, None), "b": row(30, 3.0)}, {"a": row(30, 2.0), "b": row(30, 3.0)}]
    got = summary(rounds, "a", "b")
    assert got["ratios"] == [1.5] and got["ratio"] == 1.5
    assert summary([{"a": row(0, None), "b": row(0, None)}], "a", "b")["ratio"] is None


@pytest.mark.e2e
@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("Xvfb", "xterm", "xdotool", "display")),
    reason="Xvfb, xterm, xdotool and imagemagick's display",
)
def test_two_servers_measured_at_once(tmp_path: Path) -> None:
    stem = tmp_path / "paired"
    path = f"{ROOT / 'src'}{os.pathsep}{ROOT}"
    server = (
        f"env PYTHONPATH={path} {sys.executable} -m benchmarks.rfb_direct"
        " --display {display} --port {port}"
    )
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.paired", "--server", f"one={server}",
         "--server", f"two={server}", "--workloads", "text", "--rounds", "2",
         "--duration", "1.5", "--out", str(stem)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (cell,) = json.loads(stem.with_suffix(".json").read_text())
    assert cell["workload"] == "text" and cell["rounds"] == 2
    # Both served the scrolling terminal in the same seconds, each to its own client.
    assert cell["one:upd_s"] > 0 and cell["two:upd_s"] > 0
    assert cell["one:kb_s"] > 0 and cell["two:kb_s"] > 0
    assert len(cell["ratios"]) == 2 and cell["ratio"] > 0
    text = stem.with_suffix(".txt").read_text()
    assert "round 2" in text and "ratio" in text
    # 1.5 s of a terminal: too little CPU for a fine ratio, and the output says so.
    assert "a longer --duration tells more" in text
