"""The screen benchmark's whole-frame count (the image workload's verify pass)."""

from __future__ import annotations

import numpy as np
from benchmarks.screen import POINTER_PIXELS, whole_frame


def test_a_frame_is_whole_with_a_pointer_in_it_and_not_when_mixed_with_another() -> None:
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 1 << 24, (108, 192), dtype=np.uint32) for _ in range(3)]
    shown = frames[1] | np.uint32(0xFF000000)  # the client's X byte is left out
    assert whole_frame(shown, frames) == 1
    with_pointer = shown.copy()
    with_pointer[40:72, 60:92] = 0xFFFFFF  # a peer's painted pointer, 32×32
    assert whole_frame(with_pointer, frames) == 1
    mixed = frames[1].copy()
    mixed[54:] = frames[2][54:]  # grabbed while the next frame was being drawn
    assert whole_frame(mixed, frames) is None
    worse = frames[1].copy()
    worse.reshape(-1)[: POINTER_PIXELS + 1] ^= 1
    assert whole_frame(worse, frames) is None
