"""The fuzz targets in the suite: a fixed number of Hypothesis examples per target, then
a short coverage-guided atheris run per target (fixed run count and seed) when atheris
is installed. The longer run is benchmarks/fuzz.py (benchmarks/README.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import SEEDS, TARGETS, close_loop

ROOT = Path(__file__).resolve().parents[2]
#: Examples per target under Hypothesis (ENKAKU_FUZZ_EXAMPLES raises it for long runs).
EXAMPLES = int(os.environ.get("ENKAKU_FUZZ_EXAMPLES", "150"))
#: libFuzzer executions per target in the suite.
ATHERIS_RUNS = int(os.environ.get("ENKAKU_FUZZ_RUNS", "3000"))


@pytest.fixture(autouse=True, scope="module")
def _shared_loop() -> Iterator[None]:
    yield
    close_loop()


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed with a few bytes flipped, inserted, deleted, or cut off."""

    def apply(seed: bytes, edits: list[tuple[int, int, int]], cut: int | None) -> bytes:
        data = bytearray(seed)
        for op, pos, value in edits:
            i = pos % (len(data) + 1)
            if op == 0 and i < len(data):
                data[i] ^= value or 1
            elif op == 1:
                data.insert(i, value)
            elif op == 2 and i < len(data):
                del data[i]
        return bytes(data[:cut] if cut is not None else data)

    edit = st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255))
    return st.builds(
        apply,
        st.sampled_from(seeds),
        st.lists(edit, max_size=4),
        st.none() | st.integers(0, 300),
    )


# Strings as JSON can carry them: lone surrogates and control characters included.
_char = st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates: json.loads makes them
    st.sampled_from(list('"\\[]{}\x00\n\u202e')),
)
_text = st.text(_char, max_size=12)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


def _dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _json_messages(shape: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[bytes]:
    fields = {k: v | _json_value for k, v in shape.items()}
    return st.builds(
        _dumps, st.fixed_dictionaries({}, optional=fields) | _json_value, st.booleans()
    )


_SHAPES: dict[str, st.SearchStrategy[bytes]] = {
    "agent_link": _json_messages(
        {
            "type": st.sampled_from(["hello", "session_event", "x"]),
            "session_id": st.sampled_from(["s1", "s2"]) | _text,
            "event": st.sampled_from(["busy", "ended", "wrong_password", "consent_granted"]),
            "detail": _text,
            "public_key": st.just("00" * 32) | _text,
            "signature": st.just("00" * 64) | _text,
        }
    ),
    "relay_token": _json_messages({"token": st.just("a" * 32) | _text})
    | st.builds(lambda token, a: _dumps({"token": token}, a), _text, st.booleans()),
    "json_limits": st.builds(_dumps, _json_value, st.booleans()),
}


def inputs(name: str) -> st.SearchStrategy[bytes]:
    strategies = [st.binary(max_size=400), mutated(SEEDS[name])]
    if name in _SHAPES:
        strategies.append(_SHAPES[name])
    return st.one_of(strategies)


@pytest.mark.parametrize("name", list(TARGETS))
def test_hypothesis(name: str) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=inputs(name))
    def run(data: bytes) -> None:
        TARGETS[name](data)

    run()


def test_seeds_pass() -> None:
    """The seeds are valid input: every target accepts them (a check of the harness)."""
    for name, seeds in SEEDS.items():
        for seed in seeds:
            TARGETS[name](seed)


def test_relay_token_with_a_lone_surrogate_is_refused_cleanly() -> None:
    """Found by the relay_token target: the server's hash of the token raised
    UnicodeEncodeError (fixed in 7a57425)."""
    TARGETS["relay_token"](b'{"token": "\\ud800"}')


# -- atheris ---------------------------------------------------------------------------------

_DONE = re.compile(r"Done (\d+) runs")


@pytest.mark.parametrize("name", list(TARGETS))
def test_atheris(name: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.atheris_main",
            name,
            f"-runs={ATHERIS_RUNS}",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path / "corpus"),
            *[str(p) for p in _seed_dir(name, tmp_path)],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    done = _DONE.search(proc.stderr)
    assert done is not None and int(done.group(1)) >= ATHERIS_RUNS, tail


def _seed_dir(name: str, tmp_path: Path) -> list[Path]:
    (tmp_path / "corpus").mkdir()
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for i, seed in enumerate(SEEDS[name]):
        (seeds / f"seed-{i}").write_bytes(seed)
    return [seeds]
