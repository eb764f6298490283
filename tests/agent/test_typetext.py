"""The ``type_text`` service: checks before the first key, the keysyms typed, the pause,
the answer and the audit (a count, never the text). Typing on a real X server is in
tests/e2e/test_type_text.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from enkaku.agent.input import settle
from enkaku.agent.input.base import InputError
from enkaku.agent.services import typetext
from enkaku.agent.services.typetext import MAX_CHARS, SPEC, keysyms, serve
from enkaku.transport.errors import SessionEnded
from tests.agent.test_terminal import LIMIT, Audit, context
from tests.channelpair import channels
from tests.e2e.test_type_text import cat_into
from tests.xdisplay import keysym_bound, xvfb


class Keys:
    """An input injector that records the keys; ``fail_at``: the press that fails;
    ``on_press``: called after each press (the test pauses control there)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.events: list[tuple[int, bool]] = []
        self.closed = False
        self.fail_at = fail_at
        self.on_press: Callable[[int], None] = lambda n: None

    def key(self, keysym: int, down: bool, scancode: int | None = None) -> None:
        presses = sum(1 for _, d in self.events if d)
        if down and presses == self.fail_at:
            raise InputError("display gone")
        self.events.append((keysym, down))
        if down:
            self.on_press(presses + 1)

    def pointer(self, x: int, y: int, buttons: int) -> None:
        raise AssertionError("typing moves no pointer")

    def release_all(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def typed(self) -> list[int]:
        pressed = [k for k, down in self.events if down]
        assert [k for k, down in self.events if not down] == pressed  # each one released
        return pressed


async def run(
    body: bytes, keys: Keys | None, allowed: Callable[[str], bool] = lambda a: True
) -> tuple[bytes, str | None, Audit]:
    """Send ``body`` and EOF on a ``type_text`` stream; the agent's answer, its reset
    reason and the audit."""
    agent, tech = await channels()
    audit = Audit()
    ctx = dataclasses.replace(
        context(audit, "control"),
        input_factory=(lambda: keys) if keys is not None else None,
        allowed=allowed,
    )
    stream = await tech.open_stream("type_text", {})
    serving = asyncio.ensure_future(serve(await agent.incoming.get(), ctx))
    try:
        with contextlib.suppress(SessionEnded):  # an early reset stops the writes
            for i in range(0, len(body), 1000):
                await stream.write(body[i : i + 1000])
            await stream.write_eof()
        answer = bytearray()
        while chunk := await asyncio.wait_for(stream.read(), LIMIT):
            answer += chunk
        await asyncio.wait_for(serving, LIMIT)
        return bytes(answer), stream.reset_reason, audit
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await tech.close("technician_ended")


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pauses are for X clients; the recording injector needs none."""
    monkeypatch.setattr(typetext, "PACE_PAUSE", 0.0)
    monkeypatch.setattr(settle, "SETTLE", 0.0)


def test_spec_needs_the_control_grant() -> None:
    assert (SPEC.kind, SPEC.action, SPEC.bound) == ("type_text", "control", ())


def test_keysyms() -> None:
    assert keysyms('|~_"@ aZ') == [0x7C, 0x7E, 0x5F, 0x22, 0x40, 0x20, 0x61, 0x5A]
    assert keysyms("é¥") == [0xE9, 0xA5]  # Latin-1: the legacy keysyms
    assert keysyms("日本€😀") == [0x10065E5, 0x100672C, 0x10020AC, 0x101F600]
    assert keysyms("a\r\nb\nc\rd\te") == [
        0x61, 0xFF0D, 0x62, 0xFF0D, 0x63, 0xFF0D, 0x64, 0xFF09, 0x65,
    ]  # fmt: skip
    for bad in ("\x00", "a\x1bb", "\x7f", "\x85", "\b"):
        with pytest.raises(ValueError):
            keysyms(bad)


async def test_types_each_key_and_answers_the_count() -> None:
    keys = Keys()
    text = 'pass|~_"@ 日本語é\n'
    answer, reset, audit = await run(text.encode(), keys)
    assert reset is None
    assert json.loads(answer) == {"ok": True, "typed": len(text)}
    assert answer == typetext.done_line(len(text))
    assert keys.typed() == keysyms(text)
    assert keys.closed
    assert audit.events == [("text_typed", str(len(text)))]  # the count, never the text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "bad_text"),
        (b"ok\x1b[2J", "bad_text"),
        (b"x" * (MAX_CHARS + 1), "text_too_long"),
        ("あ".encode() * (MAX_CHARS + 1), "text_too_long"),  # over the byte limit too
    ],
)
async def test_refused_before_any_key(body: bytes, reason: str) -> None:
    keys = Keys()
    answer, reset, audit = await run(body, keys)
    assert (answer, reset) == (b"", reason)
    assert keys.events == [] and audit.events == []


async def test_the_longest_text_is_typed() -> None:
    keys = Keys()
    answer, reset, _ = await run("あ".encode() * MAX_CHARS, keys)
    assert reset is None and json.loads(answer)["typed"] == MAX_CHARS


async def test_paused_control_types_nothing_or_stops() -> None:
    keys = Keys()
    answer, reset, audit = await run(b"secret", keys, allowed=lambda action: action != "control")
    assert (answer, reset, keys.events, audit.events) == (b"", "control_paused", [], [])

    paused = False
    keys = Keys()

    def pause_after(n: int) -> None:
        nonlocal paused
        paused = n == 3 or paused

    keys.on_press = pause_after
    answer, reset, audit = await run(b"secret", keys, allowed=lambda action: not paused)
    assert (answer, reset) == (b"", "control_paused")
    assert keys.typed() == [ord(c) for c in "sec"]
    assert keys.closed and audit.events == []


async def test_no_display_and_a_failing_display() -> None:
    answer, reset, _ = await run(b"abc", None)
    assert (answer, reset) == (b"", "no_display")

    keys = Keys(fail_at=1)
    answer, reset, _ = await run(b"abc", keys)
    assert (answer, reset) == (b"", "input_failed")
    assert keys.typed() == [ord("a")] and keys.closed


async def test_the_text_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    await run("hunter2-秘密".encode(), Keys())
    assert caplog.records
    assert "hunter2" not in caplog.text and "秘密" not in caplog.text


@pytest.mark.x11
async def test_a_session_that_ends_after_the_text_leaves_the_keys_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The technician types Japanese and the session ends at once, while the customer's
    application has not read its keys yet (a busy machine: here the xterm is stopped):
    the spare keycodes stay bound for ``SETTLE`` after the last key, so the application
    still reads the text; then the keymap is restored. (Before, the session's end
    unbound them at once and the characters were lost: a clean-clone CI run saw it.)"""
    from enkaku.agent.input.x11 import X11Input

    # Longer than the agent's own second: the xterm, resumed 0.3 s after the session
    # ended, must have read its keys before the unbinding even on a loaded machine.
    monkeypatch.setattr(settle, "SETTLE", 3.0)
    monkeypatch.setattr(typetext, "PACE_PAUSE", 0.02)
    target = tmp_path / "typed.txt"
    text = "日本語\n"
    with xvfb(640, 480) as display, cat_into(display, target) as xterm:
        agent, tech = await channels()
        ctx = dataclasses.replace(
            context(Audit(), "control"), input_factory=lambda: X11Input(display)
        )
        os.kill(xterm.pid, signal.SIGSTOP)
        try:
            stream = await tech.open_stream("type_text", {})
            serving = asyncio.ensure_future(serve(await agent.incoming.get(), ctx))
            await stream.write(text.encode())
            await stream.write_eof()
            answer = bytearray()
            while chunk := await asyncio.wait_for(stream.read(), LIMIT):
                answer += chunk
            assert json.loads(answer) == {"ok": True, "typed": len(text)}
            serving.cancel()  # the session ends
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            await tech.close("technician_ended")
            assert keysym_bound(display, "U65E5")  # 日, still bound for the application
            await asyncio.sleep(0.3)
        finally:
            os.kill(xterm.pid, signal.SIGCONT)
        for _ in range(200):
            if target.read_text(encoding="utf-8") == text:
                break
            await asyncio.sleep(0.05)
        assert target.read_text(encoding="utf-8") == text
        for _ in range(200):  # then the keymap is the customer's again
            if not keysym_bound(display, "U65E5"):
                break
            await asyncio.sleep(0.05)
        assert not keysym_bound(display, "U65E5")
