"""Replay recorded encoder inputs through two versions of the encoders, in one process.

Step 1, record what the agent's encoder is given on a real workload (``benchmarks.rfb_direct
--record FILE`` keeps the first ``--record-max`` rectangles handed to Tight or ZRLE, with
their options, and writes them when it stops)::

    .venv/bin/python -m benchmarks.screen --peers '' --paths direct --profiles tight \\
        --workloads dialogs --duration 20 --verify-duration 0 --keys 0 --only rec \\
        --server "rec=.venv/bin/python -m benchmarks.rfb_direct --record /tmp/dialogs.npz \\
        --display {display} --port {port}"

Step 2, replay them through the encoders as they are now and as they were at git revision
REV, alternated round by round (so both see the same machine), each round with fresh
encoders (fresh zlib streams)::

    .venv/bin/python -m benchmarks.encode_replay /tmp/dialogs.npz --before REV [--rounds 10]

It prints the thread CPU time per rectangle (minimum and median over the rounds) of each,
their ratio, and whether both gave the same bytes. The encoders alone: no capture, no
damage step, no socket; ``benchmarks/screen.py`` remains the comparison with peers. A
recording holds screen pixels: keep it on the machine that made it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ENCODERS = {"tight": "TightEncoder", "zrle": "ZRLEEncoder"}


class Recorder:
    """Keeps copies of what the Tight and ZRLE encoders are given (benchmarks only)."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.frames: list[np.ndarray] = []
        self.meta: list[dict[str, Any]] = []

    def install(self) -> Callable[[], None]:
        """Wrap the encoders' ``encode`` (this process only); returns what undoes it."""
        undo = []
        for name, cls_name in ENCODERS.items():
            module = importlib.import_module(f"enkaku.protocol.rfb.encodings.{name}")
            cls = getattr(module, cls_name)
            undo.append((cls, cls.encode))
            cls.encode = self._wrap(name, cls.encode)

        def uninstall() -> None:
            for cls, encode in undo:
                cls.encode = encode

        return uninstall

    def _wrap(self, name: str, encode: Any) -> Any:
        def recorded(encoder: Any, frame: np.ndarray, pf: Any, options: Any) -> Any:
            if len(self.frames) < self.limit:
                self.frames.append(np.array(frame))
                self.meta.append(
                    {"encoder": name, "pf": bytes(pf).hex(), "options": asdict(options)}
                )
            return encode(encoder, frame, pf, options)

        return recorded

    def save(self) -> None:
        arrays = {f"f{i}": f for i, f in enumerate(self.frames)}
        np.savez(self.path, meta=np.array(json.dumps(self.meta)), **arrays)  # type: ignore[arg-type]


def load_recording(path: Path) -> list[tuple[str, bytes, dict[str, Any], np.ndarray]]:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return [
            (m["encoder"], bytes.fromhex(m["pf"]), m["options"], data[f"f{i}"])
            for i, m in enumerate(meta)
        ]


def load_tree(src: Path, names: dict[str, str] | None = None) -> dict[str, ModuleType]:
    """The encoder and pixel format modules of the ``enkaku`` package under ``src`` (or
    ``names``: label -> module), imported afresh; the ``enkaku`` imported before (if
    any) is put back afterwards, so two trees' modules live side by side."""

    def ours() -> dict[str, ModuleType]:
        return {n: m for n, m in sys.modules.items() if n == "enkaku" or n.startswith("enkaku.")}

    before = ours()
    for name in before:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    if names is None:
        names = {name: f"enkaku.protocol.rfb.encodings.{name}" for name in ENCODERS}
        names["pixelformat"] = "enkaku.protocol.rfb.pixelformat"
        names["messages"] = "enkaku.protocol.rfb.messages"
    try:
        modules = {label: importlib.import_module(name) for label, name in names.items()}
    finally:
        sys.path.remove(str(src))
        for name in ours():
            del sys.modules[name]
        sys.modules.update(before)
    return modules


def build_native(src: Path) -> None:
    """Build the compiled encoder core in the tree ``src`` when this checkout has one
    built and that tree has the module (an older revision may not): both sides then
    run as they would be deployed. Without a build here, neither side uses it."""
    here = importlib.import_module("enkaku.native")
    if here.LIB is None or not (src / "enkaku" / "native" / "rfbcore.c").exists():
        return
    subprocess.run(
        [sys.executable, "-m", "enkaku.native", "build"], cwd=src, check=True,
        env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True,
    )  # fmt: skip


def old_src(rev: str, tmp: Path) -> Path:
    """The ``src`` tree of git revision ``rev``, written into ``tmp``, its compiled core
    built where this checkout has one (``build_native``)."""
    archive = subprocess.run(
        ["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    build_native(tmp / "src")
    return tmp / "src"


def replay(
    modules: dict[str, ModuleType], recording: list[tuple[str, bytes, dict[str, Any], np.ndarray]]
) -> tuple[float, str]:
    """Thread CPU seconds to encode the whole recording, and a digest of the bytes."""
    encoders = {name: getattr(modules[name], cls)() for name, cls in ENCODERS.items()}
    parse = modules["pixelformat"].PixelFormat.parse
    options_cls = modules["messages"].EncodeOptions
    known = set(options_cls.__dataclass_fields__)
    prepared = [
        (encoders[name], parse(pf), options_cls(**{k: v for k, v in opts.items() if k in known}), f)
        for name, pf, opts, f in recording
    ]
    digest = hashlib.sha256()
    start = time.thread_time()
    for encoder, pf, options, frame in prepared:
        for rect in encoder.encode(frame, pf, options):
            digest.update(rect.payload)
    return time.thread_time() - start, digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recording", type=Path, help="a file written by rfb_direct --record")
    p.add_argument("--before", required=True, metavar="REV", help="git revision to compare with")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args(argv)
    recording = load_recording(args.recording)
    if not recording:
        print("encode_replay: the recording is empty", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        before = load_tree(old_src(args.before, Path(tmp)))
        trees = {args.before: before, "now": load_tree(ROOT / "src")}
    times: dict[str, list[float]] = {label: [] for label in trees}
    digests: dict[str, set[str]] = {label: set() for label in trees}
    for _ in range(args.rounds):
        for label, modules in trees.items():
            spent, digest = replay(modules, recording)
            times[label].append(spent)
            digests[label].add(digest)
    n = len(recording)
    kinds = ", ".join(f"{k} {sum(r[0] == k for r in recording)}" for k in ENCODERS)
    print(f"{n} rectangles ({kinds}), {args.rounds} rounds alternated")
    for label, secs in times.items():
        print(
            f"{label:>12}: {min(secs) / n * 1e6:8.0f} us min, "
            f"{float(np.median(secs)) / n * 1e6:8.0f} us median per rectangle"
        )
    before, now = times[args.before], times["now"]
    print(
        f"now / {args.before}: {min(now) / min(before):.3f} (min), "
        f"{float(np.median(now)) / float(np.median(before)):.3f} (median)"
    )
    same = len(digests["now"] | digests[args.before]) == 1
    print("same bytes" if same else "different bytes (the encoders' output changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
