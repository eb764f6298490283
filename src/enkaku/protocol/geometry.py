"""Screen rectangles, shared by capture, damage tracking and the RFB encoders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RectLike(Protocol):
    """Anything with x, y, w, h: the capture layer's ``Rect`` and ours alike."""

    @property
    def x(self) -> int: ...
    @property
    def y(self) -> int: ...
    @property
    def w(self) -> int: ...
    @property
    def h(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Rect:
    """A framebuffer rectangle; x, y is the top-left corner."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    def intersect(self, other: RectLike) -> Rect | None:
        """The overlap with ``other``, or None when they do not overlap."""
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.w, other.x + other.w)
        y1 = min(self.y + self.h, other.y + other.h)
        if x1 <= x0 or y1 <= y0:
            return None
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def union(self, other: RectLike) -> Rect:
        """The bounding box of both."""
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.w, other.x + other.w)
        y1 = max(self.y + self.h, other.y + other.h)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def subtract(self, cut: RectLike) -> list[Rect]:
        """This rectangle without ``cut``: up to four rectangles (the bands above and
        below it, then the parts left and right of it)."""
        inner = self.intersect(cut)
        if inner is None:
            return [self]
        x, y, w, h = self.x, self.y, self.w, self.h
        out = []
        if inner.y > y:
            out.append(Rect(x, y, w, inner.y - y))
        if inner.y + inner.h < y + h:
            out.append(Rect(x, inner.y + inner.h, w, y + h - inner.y - inner.h))
        if inner.x > x:
            out.append(Rect(x, inner.y, inner.x - x, inner.h))
        if inner.x + inner.w < x + w:
            out.append(Rect(inner.x + inner.w, inner.y, x + w - inner.x - inner.w, inner.h))
        return out
