"""Smoke tests of ``benchmarks/screen.py``'s relay path and Wayland run: one short run
each produces figures (no timing is asserted: benchmarks are not tests)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e]


def bench(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    stem = tmp_path / "screen"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.screen", "--profiles", "tight", "--workloads", "text",
         "--duration", "1", "--verify-duration", "0", "--keys", "2", "--out", str(stem), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "load average" in stem.with_suffix(".txt").read_text()
    return list(json.loads(stem.with_suffix(".json").read_text())["results"])


def check(results: list[dict[str, Any]], server: str) -> None:
    rows = {r["workload"]: r for r in results if r["server"] == server}
    assert rows["text"]["updates"] > 0 and rows["text"]["kb_s"] > 0
    assert rows["text"]["cpu_s"] >= 0
    assert rows["latency"]["misses"] < 2 and not math.isnan(rows["latency"]["p50"])


@pytest.mark.x11
def test_the_relay_path_produces_figures(tmp_path: Path) -> None:
    results = bench(tmp_path, "--paths", "relay", "--peers", "")
    check(results, "enkaku-relay")


def test_the_wayland_run_produces_figures(tmp_path: Path) -> None:
    for tool in ("sway", "foot", "grim"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/bootstrap)")
    results = bench(tmp_path, "--wayland", "--peers", "")
    check(results, "enkaku")
