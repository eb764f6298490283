"""The long fuzz run: every target in tests/fuzz/targets.py under atheris for a while.

``python -m benchmarks.fuzz [--seconds-per-target 90] [--targets a,b] [--out DIR]``

Runs each target coverage-guided (tests/fuzz/atheris_main.py, libFuzzer) for the given
time, one after the other (one core), keeping the corpus in ``DIR/corpus/<target>`` so
that a later run with the same ``--out`` continues from it. Prints, per target, the
executions, the coverage reached (libFuzzer's ``cov``/``ft``), and the crash file if
one was found (libFuzzer stops a target at its first crash; the input is written to
``DIR/<target>-crash-<sha1>``). Without atheris it falls back to Hypothesis with
``--examples`` per target (not coverage-guided). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_CRASH = re.compile(r"Test unit written to (\S+)")


@dataclass
class Result:
    target: str
    execs: int
    seconds: float
    cov: int
    ft: int
    corpus: int
    crash: str


def run_atheris(name: str, seconds: int, out: Path) -> Result:
    """One target for ``seconds``; its figures."""
    corpus = out / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = Path(tempfile.mkdtemp(prefix=f"enkaku-fuzz-seeds-{name}-"))
    from tests.fuzz.targets import SEEDS

    for i, seed in enumerate(SEEDS[name]):
        (seeds / f"seed-{i}").write_bytes(seed)
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable, "-m", "tests.fuzz.atheris_main", name,
            f"-max_total_time={seconds}", f"-artifact_prefix={out}/{name}-",
            "-print_final_stats=1", str(corpus), str(seeds),
        ],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    log = proc.stderr
    (out / f"{name}.log").write_text(log)
    stats = _STAT.findall(log)
    done = _DONE.search(log)
    execs = int(done.group(1)) if done else int(stats[-1][0]) if stats else 0
    crash = _CRASH.search(log)
    last = stats[-1] if stats else ("0", "0", "0", "0")
    failed = f"exit {proc.returncode}" if proc.returncode else ""
    return Result(
        name, execs, round(elapsed, 1), int(last[1]), int(last[2]), int(last[3]),
        crash.group(1) if crash else failed,
    )  # fmt: skip


def run_hypothesis(names: list[str], examples: int) -> int:
    """The fallback: the suite's Hypothesis fuzz tests with more examples."""
    env = dict(os.environ, ENKAKU_FUZZ_EXAMPLES=str(examples))
    keys = " or ".join(f"test_hypothesis[{n}]" for n in names)
    cmd = [sys.executable, "-m", "pytest", "-q", "tests/fuzz/test_fuzz.py", "-k", keys]
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds-per-target", type=int, default=90)
    parser.add_argument("--targets", help="comma-separated names (default: all)")
    parser.add_argument("--out", type=Path, help="corpus, logs and crashes (default: a temp dir)")
    parser.add_argument("--examples", type=int, default=20000, help="Hypothesis fallback")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.fuzz.targets import TARGETS

    names = args.targets.split(",") if args.targets else list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: Hypothesis instead (not coverage-guided)")
        return run_hypothesis(names, args.examples)
    out = args.out or Path(tempfile.mkdtemp(prefix="enkaku-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    head = ("target", "execs", "s", "exec/s", "cov", "ft", "corpus")
    print("{:26} {:>10} {:>6} {:>7} {:>5} {:>6} {:>6}  crash".format(*head))
    total, crashes = 0, 0
    for name in names:
        r = run_atheris(name, args.seconds_per_target, out)
        total += r.execs
        crashes += bool(r.crash)
        rate = r.execs / max(r.seconds, 0.1)
        print(
            f"{name:26} {r.execs:>10} {r.seconds:>6} {rate:>7.0f} {r.cov:>5} "
            f"{r.ft:>6} {r.corpus:>6}  {r.crash or '-'}",
            flush=True,
        )
    print(f"total {total} executions, {crashes} target(s) crashed; logs and corpus in {out}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
