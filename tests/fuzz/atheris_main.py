"""Run one fuzz target under atheris (libFuzzer, coverage-guided over enkaku's code).

    python -m tests.fuzz.atheris_main TARGET [libFuzzer flags] [CORPUS_DIR ...]

for example ``python -m tests.fuzz.atheris_main record_channel -runs=5000 -seed=1``.
TARGET is a name from tests/fuzz/targets.py. With no corpus directory the target's
SEEDS start the run; JSON targets get tests/fuzz/json.dict unless -dict is given.
libFuzzer prints ``Done N runs`` and exits 0, or prints the crash, writes the input to
``crash-<sha1>`` (see -artifact_prefix) and exits non-zero.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["enkaku", "tests.fuzz"]):
    from tests.fuzz.targets import SEEDS, TARGETS, close_loop

JSON_TARGETS = {"json_limits", "agent_link", "relay_token", "control_reader"}
DICTIONARY = Path(__file__).with_name("json.dict")


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(
            f"usage: {argv[0]} TARGET [libFuzzer flags] [CORPUS]; targets: {', '.join(TARGETS)}"
        )
    name = argv.pop(1)
    target = TARGETS[name]
    args = list(argv)
    if name in JSON_TARGETS and not any(a.startswith("-dict=") for a in args):
        args.append(f"-dict={DICTIONARY}")
    if not any(not a.startswith("-") for a in args[1:]):
        # No corpus given: start from the seeds, in a directory that goes away after.
        seeds = Path(tempfile.mkdtemp(prefix=f"enkaku-fuzz-{name}-"))
        for i, seed in enumerate(SEEDS[name]):
            (seeds / f"seed-{i}").write_bytes(seed)
        args.append(str(seeds))
    atheris.Setup(args, target)
    try:
        atheris.Fuzz()
    finally:
        close_loop()


if __name__ == "__main__":
    main(sys.argv)
