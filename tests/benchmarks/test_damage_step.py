"""benchmarks/damage_step.py builds the service as the agent does and still runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks import damage_step


def test_each_workload_keeps_the_screen_and_text_scrolls_are_found(tmp_path: Path) -> None:
    """A few steps of each workload on the current service: ``measure`` checks the kept
    frame against the screen after every step; the text scroll is found as copies."""
    (module,) = damage_step.rfbservice_versions(None, tmp_path, "_test_damage").values()
    rng = np.random.default_rng(3)
    ms, copies = damage_step.measure(module, damage_step.text_frames(4, rng))
    assert ms >= 0 and copies == 3
    for frames in (
        damage_step.image_frames(3, rng),
        damage_step.page_frames(3, rng, 40),
        damage_step.page_frames(3, rng, 0),
    ):
        damage_step.measure(module, frames)
