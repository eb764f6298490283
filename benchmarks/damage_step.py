"""The CPU of the agent's damage step alone (``RFBService._grab_damage``), now and at a
git revision, on synthetic screens: no X server, no encoder, no peer.

``python -m benchmarks.damage_step --before REV``

Workloads on a 1920×1080 kept frame: ``text``, a 900×700 terminal of random glyph-like
pixels (30 % blank lines) scrolling 13 rows per update, damaged as a whole; ``image``,
a new full-screen random picture per update; ``sideways``, a 1920×1080 page of such
pixels scrolled 40 columns sideways per update, damaged whole; ``retext``, a new
1920×1080 page of them per update (no move: the sideways search runs and finds nothing,
its worst case on text). The capture is a stub returning copies of
the damaged rectangles. Prints the median thread CPU time per call and the copies
found, so it supports, not replaces, ``benchmarks/screen.py``'s comparison with peers.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from enkaku.protocol.rfb.encodings import Rect

ROOT = Path(__file__).resolve().parent.parent
W, H = 1920, 1080


class _Capture:
    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def grab_rects(self, rects: list[Rect]) -> list[np.ndarray]:
        return [self.image[r.y : r.y + r.h, r.x : r.x + r.w].copy() for r in rects]


def text_frames(n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, list[Rect]]]:
    lines = rng.integers(0, 2, (n * 13 + 800, 900), dtype=np.uint8)
    lines[rng.random(lines.shape[0]) < 0.3] = 0
    base = np.full((H, W, 4), 40, np.uint8)
    base[..., 3] = 0
    out = []
    for k in range(n):
        frame = base.copy()
        frame[100:800, 100:1000, :3] = (lines[k * 13 : k * 13 + 700] * 200)[..., None]
        out.append((frame, [Rect(100, 100, 900, 700)]))
    return out


def page_frames(n: int, rng: np.random.Generator, step: int) -> list[tuple[np.ndarray, list[Rect]]]:
    """Full-screen pages of glyph-like pixels, ``step`` columns further each update (0:
    a new page each update)."""
    lines = rng.integers(0, 2, (H, W + n * step), dtype=np.uint8)
    lines[rng.random(H) < 0.3] = 0
    out = []
    for k in range(n):
        if step == 0:
            lines = rng.integers(0, 2, (H, W), dtype=np.uint8)
            lines[rng.random(H) < 0.3] = 0
        frame = np.full((H, W, 4), 40, np.uint8)
        frame[..., 3] = 0
        frame[..., :3] = (lines[:, k * step : k * step + W] * 200)[..., None]
        out.append((frame, [Rect(0, 0, W, H)]))
    return out


def image_frames(n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, list[Rect]]]:
    return [(rng.integers(0, 256, (H, W, 4), dtype=np.uint8), [Rect(0, 0, W, H)]) for _ in range(n)]


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def rfbservice_versions(before: str | None, tmp: Path, prefix: str) -> dict[str, ModuleType]:
    """``rfbservice`` as it is now, and (``before``) as it was at that git revision,
    loaded side by side (the old one from a copy written into ``tmp``)."""
    modules = {"now": load(ROOT / "src/enkaku/agent/rfbservice.py", f"{prefix}_now")}
    if before:
        path = tmp / "rfbservice_before.py"
        path.write_bytes(
            subprocess.run(
                ["git", "show", f"{before}:src/enkaku/agent/rfbservice.py"],
                cwd=ROOT, capture_output=True, check=True,
            ).stdout
        )  # fmt: skip
        modules[before] = load(path, f"{prefix}_before")
    return modules


def offline_service(module: ModuleType, capture: Any, name: str) -> Any:
    """An ``RFBService`` of ``module`` on ``capture``, built as the agent builds it
    (every attribute the damage step reads) and never run: no viewer, no input."""

    async def never() -> bytes:
        raise AssertionError("not connected")

    async def drop(data: bytes) -> None:
        raise AssertionError("not connected")

    return module.RFBService(capture, None, never, drop, name=name)


def measure(module: ModuleType, frames: list[tuple[np.ndarray, list[Rect]]]) -> tuple[float, int]:
    capture = _Capture(frames[0][0])
    # Given the first frame as the one kept from the last update.
    service = offline_service(module, capture, "damage-step")
    first = frames[0][0].copy()
    first[..., 3] = 0
    service._previous = first
    times, copies = [], 0
    for frame, regions in frames[1:]:
        capture.image = frame
        service._damage = []
        start = time.thread_time()
        found = service._grab_damage(regions)
        times.append(time.thread_time() - start)
        copies += len(found)
        if not np.array_equal(service._previous[..., :3], frame[..., :3]):
            raise SystemExit("the kept frame is not the screen")
    return float(np.median(times)) * 1e3, copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        modules = rfbservice_versions(args.before, Path(tmp), "_damage")
        for workload, make, n in (
            ("text", text_frames, 40),
            ("image", image_frames, 12),
            ("sideways", lambda n, rng: page_frames(n, rng, 40), 12),
            ("retext", lambda n, rng: page_frames(n, rng, 0), 12),
        ):
            frames = make(n, np.random.default_rng(1))
            for label, module in modules.items():
                ms, copies = measure(module, frames)
                print(f"{workload:6} {label:10} {ms:7.2f} ms CPU per damage step, copies {copies}")


if __name__ == "__main__":
    main()
