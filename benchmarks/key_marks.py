"""Where a key's time goes inside the agent: moments along its path, timed.

``.venv/bin/python -m benchmarks.key_marks [--wayland] [--keys 40] [--profile tight]``

Runs ``benchmarks.screen``'s latency cell (the idle terminal, keys typed one at a time)
on the agent directly (``benchmarks.screen_paths direct``, X11 on Xvfb or, with
``--wayland``, the wayland-wlroots backend on headless sway), beside the agent without
marks and the peer (x0vncserver, or wayvnc), in one run. The marked agent notes, with
``time.perf_counter()``, when each key-down event is handled (0) and when the steps
after it begin (``<``) or end: the injection, the capture's first sight of the change
(wlroots: the compositor's ``ready`` for the frame), the event loop's wake-up, the
poll, the damage step, the encoding, the write. Prints each mark's median over the
keys, in ms from the key event, beside the viewer's key-to-screen medians.

The marks cost a few microseconds each; the unmarked agent's latency in the same run
shows what they add.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: (module, class, method, label, where): "start" marks the call, "end" its return,
#: "both" marks both ("label<" and "label").
MARKS: list[tuple[str, str, str, str, str]] = [
    ("enkaku.agent.input.x11", "X11Input", "key", "injected", "end"),
    ("enkaku.agent.input.wlroots", "WlrootsInput", "key", "injected", "end"),
    ("enkaku.agent.capture.wlroots", "WlrootsCapture", "_on_ready", "compositor ready", "both"),
    ("enkaku.agent.rfbservice", "RFBService", "_on_damage", "loop woken", "start"),
    ("enkaku.agent.rfbservice", "RFBService", "_damage_step", "waiter's step", "both"),
    ("enkaku.agent.rfbservice", "RFBService", "_wait_for_damage", "loop has the step", "end"),
    ("enkaku.agent.rfbservice", "RFBService", "_poll", "poll", "both"),
    ("enkaku.agent.rfbservice", "RFBService", "_grab_damage", "damage step", "both"),
    ("enkaku.agent.rfbservice", "RFBService", "_encode", "encode", "both"),
    ("enkaku.agent.rfbservice", "RFBService", "_flush", "written", "end"),
]


def install(marks: list[tuple[str, float]]) -> None:
    """Wrap ``MARKS`` (and the key-down handling, which starts each key)."""
    import importlib

    from enkaku.agent.rfbservice import RFBService
    from enkaku.protocol.rfb import messages as m

    clock = time.perf_counter

    def wrap(cls: Any, name: str, label: str, where: str, when: Callable[..., bool]) -> None:
        f = getattr(cls, name)
        if inspect.iscoroutinefunction(f):

            @functools.wraps(f)
            async def coro(*a: Any, **k: Any) -> Any:
                if where in ("start", "both") and when(*a, **k):
                    marks.append((label + ("<" if where == "both" else ""), clock()))
                r = await f(*a, **k)
                if where in ("end", "both") and when(*a, **k):
                    marks.append((label, clock()))
                return r

            setattr(cls, name, coro)
        else:

            @functools.wraps(f)
            def plain(*a: Any, **k: Any) -> Any:
                if where in ("start", "both") and when(*a, **k):
                    marks.append((label + ("<" if where == "both" else ""), clock()))
                r = f(*a, **k)
                if where in ("end", "both") and when(*a, **k):
                    marks.append((label, clock()))
                return r

            setattr(cls, name, plain)

    def always(*_a: Any, **_k: Any) -> bool:
        return True

    def key_down(_self: Any, event: object, *_a: Any) -> bool:
        return isinstance(event, m.KeyEvent) and event.down

    def down(_self: Any, _keysym: int, is_down: bool, *_a: Any) -> bool:
        return is_down

    wrap(RFBService, "_handle_event", "key", "start", key_down)
    for module, cls_name, name, label, where in MARKS:
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except ImportError:  # pywayland missing on an X11-only machine
            continue
        wrap(cls, name, label, where, down if label == "injected" else always)


def per_key(marks: list[tuple[str, float]]) -> list[dict[str, float]]:
    """Each key's marks in ms from its key-down event: the first of each label."""
    keys: list[dict[str, float]] = []
    start = 0.0
    for label, t in marks:
        if label == "key":
            start = t
            keys.append({})
        elif keys and label not in keys[-1]:
            keys[-1][label] = 1000 * (t - start)
    return keys


def medians(keys: list[dict[str, float]]) -> list[tuple[str, float, int]]:
    """(label, median ms, keys that had it), in the order of the medians."""
    labels = list(dict.fromkeys(label for k in keys for label in k))  # as first seen
    rows = [(label, statistics.median(k[label] for k in keys if label in k),
             sum(label in k for k in keys)) for label in labels]  # fmt: skip
    return sorted(rows, key=lambda r: r[1])  # stable: ties stay in the order seen


def serve(argv: list[str]) -> int:
    """The marked agent: ``benchmarks.screen_paths direct ARGS`` with the marks on."""
    marks: list[tuple[str, float]] = []
    install(marks)
    out = os.environ["KEY_MARKS_OUT"]

    @atexit.register
    def dump() -> None:
        Path(out).write_text(json.dumps(marks))

    from benchmarks.screen_paths import main as paths_main

    return paths_main(["direct", *argv])


def latency_cell(
    server: str, profile: str, keys: int, out: str | None, folder: str, extra: list[str]
) -> list[dict[str, Any]]:
    """``benchmarks.screen``'s latency cell (the idle workload and ``keys`` keys) with
    the server ``NAME=CMD`` beside those ``extra`` arguments pick; the run's rows. The
    run's own tables go to ``OUT-screen.{txt,json}`` (or into ``folder``)."""
    stem = Path(out + "-screen") if out else Path(folder) / "screen"
    cmd = [sys.executable, "-m", "benchmarks.screen", "--profiles", profile,
           "--workloads", "idle", "--duration", "1", "--verify-duration", "1",
           "--keys", str(keys), "--server", server, "--out", str(stem), *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return list(json.loads(stem.with_suffix(".json").read_text())["results"])


def cell_arguments(p: argparse.ArgumentParser) -> None:
    """The latency cell's options (``latency_cell``)."""
    p.add_argument("--keys", type=int, default=40)
    p.add_argument("--profile", default="tight")
    p.add_argument("--out", help="STEM: writes STEM.txt (and the screen run's STEM-screen.*)")


def emit(lines: list[str], out: str | None) -> None:
    """Print the report, and write it to ``OUT.txt`` when asked."""
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out + ".txt").write_text(text + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_serve"]:
        return serve(argv[1:])
    p = argparse.ArgumentParser(prog="python -m benchmarks.key_marks", description=__doc__)
    p.add_argument("--wayland", action="store_true")
    cell_arguments(p)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="enkaku-keymarks-") as folder:
        os.chmod(folder, 0o777)
        dump = Path(folder) / "marks.json"
        backend = "--backend wayland-wlroots " if args.wayland else ""
        marked = (f"marked=env KEY_MARKS_OUT={dump} {sys.executable} -m benchmarks.key_marks "
                  f"_serve {backend}--display {{display}} --port {{port}}")  # fmt: skip
        extra = ["--wayland"] if args.wayland else ["--paths", "direct", "--peers", "x0vncserver"]
        results = latency_cell(marked, args.profile, args.keys, args.out, folder, extra)
        keys = per_key([(label, t) for label, t in json.loads(dump.read_text())])
    if not keys:
        print("key_marks: the marked agent saw no key", file=sys.stderr)
        return 1
    lines = [f"keys: {len(keys)} ({'Wayland, wlroots' if args.wayland else 'X11'}, "
             f"profile {args.profile}); ms from the key-down event in the agent", "",
             f"{'mark':24} {'p50 ms':>7} {'keys':>5}"]  # fmt: skip
    lines += [f"{label:24} {ms:7.3f} {n:5d}" for label, ms, n in medians(keys)]
    lines.append("")
    for r in results:
        if r.get("workload") == "latency":
            lines.append(
                f"key-to-screen p50 (the viewer's clock): {r['server']:10} {r['p50']:.2f} ms"
            )
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
