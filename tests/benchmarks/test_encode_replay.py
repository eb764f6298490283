"""benchmarks/encode_replay.py: what rfb_direct --record keeps replays to the same bytes."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks import encode_replay
from enkaku.protocol.rfb.encodings import EncodeOptions
from enkaku.protocol.rfb.encodings.tight import TightEncoder
from enkaku.protocol.rfb.encodings.zrle import ZRLEEncoder
from enkaku.protocol.rfb.pixelformat import NATIVE
from tests.protocol.rfb.decoders import photo_image, sample_image

ROOT = Path(__file__).resolve().parents[2]


def test_a_recording_replays_to_the_bytes_the_encoders_gave(tmp_path: Path) -> None:
    recorder = encode_replay.Recorder(tmp_path / "rec.npz", limit=4)
    uninstall = recorder.install()
    frames = [sample_image(170, 480), photo_image(130, 200), sample_image(64, 64)]
    options = EncodeOptions(compress_level=2, jpeg_quality=92)
    try:
        tight = TightEncoder()
        given = [r.payload for f in frames for r in tight.encode(f, NATIVE, options)]
        ZRLEEncoder().encode(frames[2], NATIVE, EncodeOptions())
        ZRLEEncoder().encode(frames[2], NATIVE, EncodeOptions())  # past the limit
    finally:
        uninstall()
    TightEncoder().encode(frames[2], NATIVE, options)  # no longer recorded
    recorder.save()
    recording = encode_replay.load_recording(tmp_path / "rec.npz")
    assert [r[0] for r in recording] == ["tight", "tight", "tight", "zrle"]
    kept = [r[3] for r in recording]
    assert all(np.array_equal(k, f) for k, f in zip(kept, [*frames, frames[2]], strict=True))
    modules = encode_replay.load_tree(ROOT / "src")
    _, digest = encode_replay.replay(modules, recording[:3])
    assert digest == hashlib.sha256(b"".join(given)).hexdigest()[:16]
    assert encode_replay.replay(modules, recording[:3])[1] == digest


def test_the_replay_compares_with_a_git_revision(tmp_path: Path) -> None:
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    recorder = encode_replay.Recorder(tmp_path / "rec.npz", limit=10)
    uninstall = recorder.install()
    try:
        ZRLEEncoder().encode(sample_image(100, 150), NATIVE, EncodeOptions())
    finally:
        uninstall()
    recorder.save()
    printed = replay_against_head("benchmarks.encode_replay", tmp_path / "rec.npz")
    assert "1 rectangles (tight 0, zrle 1)" in printed
    assert "same bytes" in printed


def replay_against_head(module: str, recording: Path) -> str:
    """What ``python -m MODULE RECORDING --before HEAD`` prints (two rounds)."""
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    return subprocess.run(
        [encode_replay.sys.executable, "-m", module, str(recording), "--before", "HEAD",
         "--rounds", "2"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_loading_a_tree_leaves_the_imported_package_in_place() -> None:
    import enkaku.protocol.rfb.encodings.tight as tight

    modules = encode_replay.load_tree(ROOT / "src")
    assert modules["tight"] is not tight
    import enkaku.protocol.rfb.encodings.tight as again

    assert again is tight
