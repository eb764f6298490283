"""The recorded transcripts the browser tests replay equal what the Python code produces
now: a protocol change that forgets to regenerate them fails here, not in the browser."""

from __future__ import annotations

import pytest

from .record_transcripts import DIR, build


@pytest.mark.parametrize("name", sorted(build()))
def test_committed_transcript_is_current(name: str) -> None:
    path = DIR / name
    assert path.is_file(), (
        f"{path} is missing: run .venv/bin/python -m tests.protocol.record_transcripts"
    )
    assert path.read_text(encoding="utf-8") == build()[name], (
        f"{name} is stale: run .venv/bin/python -m tests.protocol.record_transcripts"
    )


def test_transcripts_are_deterministic() -> None:
    assert build() == build()


def test_no_unexpected_files() -> None:
    assert {p.name for p in DIR.glob("*.json")} == set(build())
