"""Thread CPU time of the RFB service's steps in a live run (benchmarks only).

``benchmarks.rfb_direct --step-times FILE`` wraps the steps of an update (the wait for
damage and what follows it, the poll, the damage step, the encoder, the X server's
damage region and the grab) with ``time.thread_time`` and writes, when the server stops,
each one's calls, total and mean, and the process's CPU time. Run it as
``benchmarks/screen.py --server`` to see where an update's time goes on a workload::

    .venv/bin/python -m benchmarks.screen --peers '' --paths direct --profiles tight \\
        --workloads dashboard --duration 15 --verify-duration 0 --keys 0 --only t \\
        --server "t=.venv/bin/python -m benchmarks.rfb_direct --step-times /tmp/steps.txt \\
        --display {display} --port {port}"

The steps nest (the damage step is part of the poll, both of the wait's step), so their
totals do not add up. ``benchmarks/damage_replay.py`` replays the damage step alone,
warm in the caches; these are its live costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enkaku.agent.capture.x11 import X11Capture
from enkaku.agent.rfbservice import RFBService

#: (class, method) measured.
STEPS: list[tuple[type, str]] = [
    (RFBService, "_damage_step"),
    (RFBService, "_poll"),
    (RFBService, "_grab_damage"),
    (RFBService, "_encode"),
    (X11Capture, "changed_regions"),
    (X11Capture, "grab_rects_shared"),
]


class StepTimes:
    """Counts the calls and thread CPU time of ``STEPS`` (this process only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: dict[str, list[float]] = {}  # name -> [calls, seconds]
        self._start = time.process_time()

    def install(self) -> Callable[[], None]:
        """Wrap the steps; returns what undoes it."""
        undo = []
        for cls, name in STEPS:
            method = cls.__dict__[name]
            undo.append((cls, name, method))
            setattr(cls, name, self._wrap(f"{cls.__name__}.{name}", method))

        def uninstall() -> None:
            for cls, name, method in undo:
                setattr(cls, name, method)

        return uninstall

    def _wrap(self, label: str, method: Any) -> Any:
        kept = self.times.setdefault(label, [0, 0.0])

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                kept[0] += 1
                kept[1] += time.thread_time() - start

        return timed

    def save(self) -> None:
        lines = [f"process CPU {time.process_time() - self._start:.3f} s"]
        for label, (calls, seconds) in sorted(self.times.items(), key=lambda kv: -kv[1][1]):
            mean = seconds / calls * 1e6 if calls else 0.0
            lines.append(
                f"{label:34} calls {calls:7d}  total {seconds * 1e3:9.1f} ms  mean {mean:8.0f} us"
            )
        self.path.write_text("\n".join(lines) + "\n")
