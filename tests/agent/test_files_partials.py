"""The kept-part store on its own: resume, lock, commit without replacing, rewind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from enkaku.agent.partials import Part, open_folder, read_info, stem_for
from enkaku.protocol.filexfer import Refused

DATA = os.urandom(100_000)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    fd = open_folder(tmp_path)
    yield tmp_path, fd
    os.close(fd)


def test_keep_then_resume_then_commit(folder: tuple[Path, int]) -> None:
    path, fd = folder
    part = Part.open(fd, "k", len(DATA), SHA, 10.0)
    part.write(DATA[:30_000])
    part.keep(20.0)
    info = read_info(fd, stem_for("k"))
    assert info is not None and (info.verified, info.created, info.updated) == (30_000, 10.0, 20.0)
    again = Part.open(fd, "k", len(DATA), SHA, 30.0)
    assert again.offset == 30_000
    again.write(DATA[30_000:])
    again.commit("out.bin", overwrite=False)
    assert (path / "out.bin").read_bytes() == DATA
    assert sorted(p.name for p in path.iterdir()) == ["out.bin"]


def test_a_part_in_use_is_busy(folder: tuple[Path, int]) -> None:
    _, fd = folder
    first = Part.open(fd, "k", len(DATA), SHA, 0.0)
    with pytest.raises(Refused, match="busy"):
        Part.open(fd, "k", len(DATA), SHA, 0.0)
    first.discard()
    Part.open(fd, "k", len(DATA), SHA, 0.0).discard()


def test_commit_never_replaces_a_file_that_appeared_meanwhile(folder: tuple[Path, int]) -> None:
    path, fd = folder
    part = Part.open(fd, "k", len(DATA), SHA, 0.0)
    part.write(DATA)
    (path / "out.bin").write_bytes(b"theirs")
    with pytest.raises(Refused, match="exists"):
        part.commit("out.bin", overwrite=False)
    assert (path / "out.bin").read_bytes() == b"theirs"
    part.keep(1.0)  # kept whole: asking again with overwrite finishes at once
    again = Part.open(fd, "k", len(DATA), SHA, 2.0)
    assert again.offset == len(DATA)
    again.commit("out.bin", overwrite=True)
    assert (path / "out.bin").read_bytes() == DATA


def test_rewind_cuts_and_rehashes(folder: tuple[Path, int]) -> None:
    path, fd = folder
    part = Part.open(fd, "k", len(DATA), SHA, 0.0)
    part.write(DATA[:500] + b"garbage")
    part.rewind(500)
    with pytest.raises(Refused, match="resume_mismatch"):
        part.rewind(600)
    part.write(DATA[500:])
    part.commit("x", overwrite=False)
    assert (path / "x").read_bytes() == DATA


def test_an_empty_part_is_not_kept(folder: tuple[Path, int]) -> None:
    path, fd = folder
    Part.open(fd, "k", len(DATA), SHA, 0.0).keep(1.0)
    assert list(path.iterdir()) == []


def test_a_sidecar_that_is_not_ours_is_ignored(folder: tuple[Path, int]) -> None:
    path, fd = folder
    stem = stem_for("k")
    (path / f"{stem}.part").write_bytes(DATA[:1000])
    for junk in (b"{", b"[]", b'{"key":"k"}', b"x" * 9000):
        (path / f"{stem}.part.json").write_bytes(junk)
        assert read_info(fd, stem) is None
        part = Part.open(fd, "k", len(DATA), SHA, 0.0)
        assert part.offset == 0  # nothing trusted without a valid sidecar
        part.close()
