"""Monitors: the named areas of one screen (RandR 1.5 monitors on X11), and a capture
restricted to one of them.

A desktop spread over several displays is one X screen (one root window) of which each
monitor shows a rectangle. ``Monitor`` is one such rectangle in screen coordinates;
``order()`` numbers them as a viewer picks them: from 1, left to right, then top to
bottom. ``MonitorView`` wraps a whole-screen capture and serves only one monitor's
rectangle, in the monitor's own coordinates (0, 0 at its top-left corner): grabs,
damage and moved windows are translated, so the RFB service serves it as if it were
the whole screen (docs/performance.md, "Monitors").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from enkaku.agent.capture.base import CursorImage, Rect, ScreenCapture


@dataclass(frozen=True, slots=True)
class Monitor:
    """One monitor: its name (RandR's, e.g. ``DP-1``), where it is on the screen, and
    whether it is the primary one."""

    name: str
    rect: Rect
    primary: bool = False


def order(monitors: Sequence[Monitor], width: int, height: int) -> list[Monitor]:
    """The monitors clipped to a ``width``×``height`` screen, empty ones dropped, in the
    order viewers number them (left to right, then top to bottom; name breaks ties)."""
    screen = Rect(0, 0, width, height)
    kept = []
    for mon in monitors:
        clipped = screen.intersect(mon.rect)
        if clipped is not None:
            kept.append(Monitor(mon.name, clipped, mon.primary))
    return sorted(kept, key=lambda mon: (mon.rect.x, mon.rect.y, mon.name))


def _fit(frame: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    out = np.zeros((height, width, 4), dtype=np.uint8)
    h, w = min(height, frame.shape[0]), min(width, frame.shape[1])
    out[:h, :w] = frame[:h, :w]
    return out


class MonitorView:
    """A ``ScreenCapture`` (and event capture, when ``source`` is one) showing only
    ``rect`` of ``source``'s screen. It does not own ``source``: ``close()`` leaves it
    open."""

    def __init__(self, source: ScreenCapture, rect: Rect) -> None:
        self.source = source
        self.rect = rect

    @property
    def size(self) -> tuple[int, int]:
        return self.rect.w, self.rect.h

    def grab(self) -> npt.NDArray[np.uint8]:
        """The monitor's pixels now; black where the screen no longer covers it."""
        r = self.rect
        grab_rects = getattr(self.source, "grab_rects", None)
        if callable(grab_rects):
            try:
                parts = grab_rects([r])
            except ValueError:  # the screen shrank under the monitor
                parts = None
            if parts:
                part: npt.NDArray[np.uint8] = parts[0]
                return part
        frame = self.source.grab()
        return _fit(frame[r.y : r.y + r.h, r.x : r.x + r.w], r.w, r.h)

    def changed_regions(self) -> list[Rect] | None:
        regions = self.source.changed_regions()
        if regions is None:
            return None
        return [self._inside(part) for reg in regions if (part := self.rect.intersect(reg))]

    def cursor(self) -> CursorImage | None:
        return self.source.cursor()

    def close(self) -> None:
        """Nothing to release: the source belongs to whoever made the view."""

    # -- EventCapture, when the source is one ---------------------------------------------

    def fileno(self) -> int | None:
        return self.source.fileno()  # type: ignore[attr-defined]

    def events_queued(self) -> bool:
        return self.source.events_queued()  # type: ignore[attr-defined]

    def grab_rects(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        absolute = [Rect(r.x + self.rect.x, r.y + self.rect.y, r.w, r.h) for r in rects]
        return self.source.grab_rects(absolute)  # type: ignore[attr-defined]

    def grab_rects_shared(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        """The source's views (see ``X11Capture.grab_rects_shared``), or its copies."""
        absolute = [Rect(r.x + self.rect.x, r.y + self.rect.y, r.w, r.h) for r in rects]
        shared = getattr(self.source, "grab_rects_shared", None)
        grab = shared if callable(shared) else self.source.grab_rects  # type: ignore[attr-defined]
        parts: list[npt.NDArray[np.uint8]] | None = grab(absolute)
        return parts

    def take_moves(self) -> list[tuple[Rect, Rect]]:
        """Windows moved wholly within the monitor (a move in or out of it is damage)."""
        take = getattr(self.source, "take_moves", None)
        moves: list[tuple[Rect, Rect]] = take() if callable(take) else []
        r = self.rect
        return [
            (self._inside(src), self._inside(dest))
            for src, dest in moves
            if r.intersect(src) == src and r.intersect(dest) == dest
        ]

    def recently_shown(self) -> list[Rect]:
        """Windows mapped or unmapped (``X11Capture.recently_shown``), clipped to the
        monitor, in its coordinates."""
        take = getattr(self.source, "recently_shown", None)
        shown: list[Rect] = take() if callable(take) else []
        return [self._inside(c) for s in shown if (c := self.rect.intersect(s)) is not None]

    def _inside(self, rect: Rect) -> Rect:
        return Rect(rect.x - self.rect.x, rect.y - self.rect.y, rect.w, rect.h)
