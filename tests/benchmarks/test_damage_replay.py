"""benchmarks/damage_replay.py: what rfb_direct --record-damage keeps replays to the same
damage, copies and kept frame as the live damage step found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import damage_replay, damage_step, step_times
from enkaku.agent import rfbservice
from enkaku.agent.rfbservice import RFBService
from tests.benchmarks.test_encode_replay import replay_against_head

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"rfbservice": "enkaku.agent.rfbservice", "geometry": "enkaku.protocol.geometry"}


def _live(frames: list[tuple[np.ndarray, list[Any]]], path: Path, limit: int) -> list[str]:
    """The damage steps of ``frames`` on a service built as the agent builds it, recorded
    into ``path``; each step's digest as the replay makes it."""
    capture = damage_step._Capture(frames[0][0])
    service = damage_step.offline_service(rfbservice, capture, "damage-replay-test")
    first = frames[0][0].copy()
    first[..., 3] = 0
    service._previous = first
    recorder = damage_replay.DamageRecorder(path, limit)
    uninstall = recorder.install()
    digests = []
    try:
        for k, (frame, regions) in enumerate(frames[1:]):
            capture.image = frame
            service._damage = []
            copies = service._grab_damage(regions)
            rects = [[r.x, r.y, r.w, r.h] for r in regions]
            digests.append(damage_replay.step_digest(service, copies, rects, whole=k % 50 == 49))
    finally:
        uninstall()
    recorder.save()
    return digests


def test_a_recording_replays_to_what_the_live_steps_found(tmp_path: Path) -> None:
    frames = damage_step.text_frames(6, np.random.default_rng(4))  # a terminal scrolling
    live = _live(frames, tmp_path / "rec.npz", limit=4)
    steps, arrays = damage_replay.load_recording(tmp_path / "rec.npz")
    assert len(steps) == 4 and steps[0].get("reset") and not steps[1].get("reset")
    modules = damage_replay.load_tree(ROOT / "src", NAMES)
    times, digests = damage_replay.replay(modules, steps, arrays)
    assert digests == live[:4] and len(times) == 4
    assert damage_replay.replay(modules, steps, arrays)[1] == digests  # repeatable
    assert len(set(digests)) == 4  # each step found something else (the text moved on)


def test_step_times_count_the_live_steps(tmp_path: Path) -> None:
    """``rfb_direct --step-times``: each damage step counted once, with its CPU time."""
    original = RFBService.__dict__["_grab_damage"]
    steps = step_times.StepTimes(tmp_path / "steps.txt")
    uninstall = steps.install()
    try:
        _live(damage_step.text_frames(4, np.random.default_rng(6)), tmp_path / "r.npz", limit=1)
    finally:
        uninstall()
    assert RFBService.__dict__["_grab_damage"] is original  # undone
    steps.save()
    lines = (tmp_path / "steps.txt").read_text().splitlines()
    assert lines[0].startswith("process CPU ")
    row = next(line for line in lines if line.startswith("RFBService._grab_damage "))
    assert row.split()[2] == "3" and float(row.split()[4]) > 0
    assert any(line.startswith("RFBService._encode ") and " 0 " in line for line in lines)


def test_the_replay_compares_with_a_git_revision(tmp_path: Path) -> None:
    _live(damage_step.text_frames(3, np.random.default_rng(5)), tmp_path / "rec.npz", limit=9)
    printed = replay_against_head("benchmarks.damage_replay", tmp_path / "rec.npz")
    assert "2 damage steps" in printed
    assert "same damage, copies and kept frame at every step" in printed
