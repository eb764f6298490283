"""``benchmarks/key_marks.py``'s reading of the marks a key leaves."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from benchmarks.key_marks import MARKS, install, medians, per_key

from enkaku.agent.rfbservice import RFBService
from enkaku.protocol.rfb import messages as m


def test_each_key_counts_the_first_of_each_mark_from_its_own_start() -> None:
    marks = [("poll<", 0.5)]  # before any key: ignored
    for i, start in enumerate((10.0, 20.0, 30.0)):
        poll = start + 0.003 + i * 0.001
        marks += [("key", start), ("injected", start + 0.0003), ("poll<", poll),
                  ("poll", start + 0.004), ("poll<", start + 0.009)]  # fmt: skip
    keys = per_key(marks)
    assert len(keys) == 3
    assert keys[1] == pytest.approx({"injected": 0.3, "poll<": 4.0, "poll": 4.0})
    rows = medians(keys)
    assert [label for label, *_ in rows] == ["injected", "poll<", "poll"]
    assert rows[1][1:] == pytest.approx((4.0, 3))


def test_the_marks_wrap_the_service_and_start_a_key_at_key_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handled: list[object] = []

    async def handle(self: RFBService, event: object) -> None:
        handled.append(event)

    monkeypatch.setattr(RFBService, "_handle_event", handle)
    for module, cls_name, name, *_ in MARKS:  # restored after the test
        cls = getattr(importlib.import_module(module), cls_name)
        monkeypatch.setattr(cls, name, getattr(cls, name))
    marks: list[tuple[str, float]] = []
    install(marks)
    service = object.__new__(RFBService)
    asyncio.run(service._handle_event(m.KeyEvent(down=True, keysym=0x61)))
    asyncio.run(service._handle_event(m.KeyEvent(down=False, keysym=0x61)))
    assert len(handled) == 2
    assert [label for label, _ in marks] == ["key"]  # the release starts nothing
