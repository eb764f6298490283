"""Replay recorded damage steps through two versions of the agent's damage step, in one
process.

Step 1, record what the damage step (``RFBService._grab_damage``) is given on a real
workload: the kept frame it starts from, then for each step the damaged rectangles the
X server reported, the pixels grabbed there, and the window moves and mapped windows
the capture told of (``benchmarks.rfb_direct --record-damage FILE`` keeps the first
``--record-max`` steps and writes them when it stops)::

    .venv/bin/python -m benchmarks.screen --peers '' --paths direct --profiles tight \\
        --workloads dashboard --duration 20 --verify-duration 0 --keys 0 --only rec \\
        --server "rec=.venv/bin/python -m benchmarks.rfb_direct --record-damage \\
        /tmp/dashboard-damage.npz --record-max 600 --display {display} --port {port}"

Step 2, replay them through the damage step as it is now and as it was at git revision
REV (that tree's compiled core built too), alternated round by round so both see the
same machine, each round from the recorded first frame::

    .venv/bin/python -m benchmarks.damage_replay /tmp/dashboard-damage.npz --before REV

It prints the thread CPU time per step of each (minimum and median over the rounds),
their ratio, and whether both found the same damage, the same copies and the same kept
frame at every step (a damage step that sends other rectangles is a change of
behaviour, not only of speed). The damage step alone: no X server, no encoder, no
socket; ``benchmarks/screen.py`` remains the comparison with peers. A recording holds
screen pixels: keep it on the machine that made it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.damage_step import offline_service
from benchmarks.encode_replay import ROOT, load_tree, old_src

__all__ = ["DamageRecorder", "load_recording", "load_tree", "replay", "step_digest"]


def _rect(r: Any) -> list[int]:
    return [r.x, r.y, r.w, r.h]


class _Tap:
    """Stands in for the capture during one recorded step: what the damage step asks
    of it is answered by the real capture and kept."""

    def __init__(self, capture: Any, step: dict[str, Any], pixels: list[np.ndarray]) -> None:
        self._capture, self._step, self._pixels = capture, step, pixels

    def __getattr__(self, name: str) -> Any:
        return getattr(self._capture, name)

    def _grab(self, grab: Callable[[Any], Any], rects: Any) -> Any:
        parts = grab(rects)  # the views or copies the capture gives, unchanged
        self._step["grabbed"] = parts is not None
        if parts is not None:
            self._pixels.extend(np.array(p) for p in parts)
        return parts

    def grab_rects(self, rects: Any) -> Any:
        return self._grab(self._capture.grab_rects, rects)

    def grab_rects_shared(self, rects: Any) -> Any:
        shared = getattr(self._capture, "grab_rects_shared", self._capture.grab_rects)
        return self._grab(shared, rects)

    # A capture without these tells of no moves and no windows shown: the same to the
    # damage step as an empty answer.
    def take_moves(self) -> Any:
        moves = getattr(self._capture, "take_moves", list)()
        self._step["moves"] = [[_rect(s), _rect(d)] for s, d in moves]
        return moves

    def recently_shown(self) -> Any:
        shown = getattr(self._capture, "recently_shown", list)()
        self._step["shown"] = [_rect(r) for r in shown]
        return shown


class DamageRecorder:
    """Keeps what ``RFBService._grab_damage`` is given (benchmarks only)."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.steps: list[dict[str, Any]] = []
        self.arrays: dict[str, np.ndarray] = {}
        self._kept: Any = None  # the kept frame the last step ended with

    def install(self) -> Callable[[], None]:
        """Wrap ``RFBService._grab_damage`` (this process only); returns what undoes it."""
        from enkaku.agent.rfbservice import RFBService

        grab_damage = RFBService._grab_damage
        recorder = self

        def recorded(service: Any, regions: list[Any]) -> Any:
            if len(recorder.steps) >= recorder.limit:
                return grab_damage(service, regions)
            k = len(recorder.steps)
            step: dict[str, Any] = {
                "regions": [_rect(r) for r in regions], "polls": service.polls,
                "moves": [], "shown": [], "grabbed": False, "parts": 0,
            }  # fmt: skip
            if service._previous is not recorder._kept:
                # The first step, or the screen was grabbed whole since: its frame.
                recorder.arrays[f"reset{k}"] = service._previous.copy()
                step["reset"] = True
            pixels: list[np.ndarray] = []
            capture = service._capture
            service._capture = _Tap(capture, step, pixels)
            try:
                return grab_damage(service, regions)
            finally:
                service._capture = capture
                recorder._kept = service._previous
                step["parts"] = len(pixels)
                for i, p in enumerate(pixels):
                    recorder.arrays[f"s{k}p{i}"] = p
                recorder.steps.append(step)

        RFBService._grab_damage = recorded  # type: ignore[method-assign]

        def uninstall() -> None:
            RFBService._grab_damage = grab_damage  # type: ignore[method-assign]

        return uninstall

    def save(self) -> None:
        np.savez(self.path, steps=np.array(json.dumps(self.steps)), **self.arrays)  # type: ignore[arg-type]


class _Capture:
    """The capture a replay's damage step sees: the recorded answers, step by step."""

    def __init__(self, rect_cls: Any) -> None:
        self._rect = rect_cls
        self.parts: list[np.ndarray] | None = None
        self.moves: list[Any] = []
        self.shown: list[Any] = []

    def grab_rects(self, rects: Any) -> list[np.ndarray] | None:
        return self.parts

    def take_moves(self) -> list[Any]:
        return [(self._rect(*s), self._rect(*d)) for s, d in self.moves]

    def recently_shown(self) -> list[Any]:
        return [self._rect(*r) for r in self.shown]


def load_recording(path: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    with np.load(path) as data:
        steps = json.loads(str(data["steps"]))
        arrays = {name: data[name] for name in data.files if name != "steps"}
    return steps, arrays


def replay(
    modules: dict[str, ModuleType], steps: list[dict[str, Any]], arrays: dict[str, np.ndarray]
) -> tuple[list[float], list[str]]:
    """Thread CPU seconds of each step, and a digest of what each step found (damage,
    copies, the kept frame)."""
    rfbservice, geometry = modules["rfbservice"], modules["geometry"]
    capture = _Capture(geometry.Rect)
    service = offline_service(rfbservice, capture, "damage-replay")
    times, digests = [], []
    for k, step in enumerate(steps):
        if step.get("reset"):
            service._previous = arrays[f"reset{k}"].copy()
        # Fresh, writable parts: the damage step clears their X bytes in place.
        parts = [arrays[f"s{k}p{i}"].copy() for i in range(step["parts"])]
        capture.parts = parts if step["grabbed"] else None
        capture.moves, capture.shown = step["moves"], step["shown"]
        service.polls = step["polls"]
        service._damage = []
        regions = [geometry.Rect(*r) for r in step["regions"]]
        start = time.thread_time()
        copies = service._grab_damage(regions)
        times.append(time.thread_time() - start)
        digests.append(step_digest(service, copies, step["regions"], whole=k % 50 == 49))
    return times, digests


def step_digest(service: Any, copies: Any, regions: list[list[int]], *, whole: bool) -> str:
    """What a damage step found: its damage, its copies, and the kept frame where the
    step may write (``whole``: all of it; hashing 8 MB each step would slow the replay
    more than the steps it measures)."""
    digest = hashlib.sha256()
    digest.update(repr(sorted(_rect(r) for r in service._damage)).encode())
    moves = None if copies is None else [(_rect(c.dest), c.src_x, c.src_y) for c in copies]
    digest.update(repr(moves).encode())
    kept = service._previous
    for x, y, w, h in regions:
        digest.update(np.ascontiguousarray(kept[y : y + h, x : x + w]).data)
    if whole:
        digest.update(np.ascontiguousarray(kept).data)
    return digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recording", type=Path, help="a file written by rfb_direct --record-damage")
    p.add_argument("--before", metavar="REV", help="git revision to compare with")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args(argv)
    steps, arrays = load_recording(args.recording)
    if not steps:
        print("damage_replay: the recording is empty", file=sys.stderr)
        return 2
    names = {"rfbservice": "enkaku.agent.rfbservice", "geometry": "enkaku.protocol.geometry"}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": load_tree(ROOT / "src", names)}
        if args.before:
            trees[args.before] = load_tree(old_src(args.before, Path(tmp)), names)
    totals: dict[str, list[float]] = {label: [] for label in trees}
    per_step: dict[str, list[list[float]]] = {label: [] for label in trees}
    found: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for label, modules in trees.items():
            times, digests = replay(modules, steps, arrays)
            totals[label].append(sum(times))
            per_step[label].append(times)
            if found.setdefault(label, digests) != digests:
                print(f"damage_replay: {label} found something else on a second round")
                return 1
    n = len(steps)
    pixels = sum(r[2] * r[3] for s in steps for r in s["regions"])
    print(
        f"{n} damage steps, {pixels / n / 1e3:.0f} K damaged pixels a step, "
        f"{args.rounds} rounds alternated"
    )
    for label, secs in totals.items():
        median_step = np.median(np.median(np.array(per_step[label]), axis=0))
        print(
            f"{label:>12}: {min(secs) / n * 1e6:8.0f} us min, "
            f"{float(np.median(secs)) / n * 1e6:8.0f} us median per step "
            f"(the median step {median_step * 1e6:.0f} us)"
        )
    if args.before:
        before, now = totals[args.before], totals["now"]
        print(
            f"now / {args.before}: {min(now) / min(before):.3f} (min), "
            f"{float(np.median(now)) / float(np.median(before)):.3f} (median)"
        )
        pairs = zip(found["now"], found[args.before], strict=True)
        differ = [k for k, (a, b) in enumerate(pairs) if a != b]
        print(
            "same damage, copies and kept frame at every step"
            if not differ
            else f"different results at {len(differ)} steps (first: step {differ[0]})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
