"""attach() with a PTY pair standing in for the technician's terminal, against the real
terminal service: raw mode, window sizes, the ``~.`` escape, and the terminal's mode
restored on every way out."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import struct
import termios
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from enkaku.protocol import terminal as wire
from enkaku.technician.terminal import DETACHED, EscapeFilter, TerminalError, attach
from enkaku.transport.fdio import read_fd, write_fd
from tests.agent.test_terminal import LIMIT, opened


@dataclass
class LocalTerminal:
    """The technician's terminal: ``slave`` is what attach gets, ``master`` is the
    emulator's side, where the test types and reads the screen."""

    master: int
    slave: int
    screen: bytearray

    async def type(self, text: str) -> None:
        await write_fd(self.master, text.encode())

    async def expect(self, pattern: bytes) -> re.Match[bytes]:
        while (match := re.search(pattern, bytes(self.screen))) is None:
            chunk = await asyncio.wait_for(read_fd(self.master, 4096), LIMIT)
            assert chunk, f"terminal closed before {pattern!r}: {bytes(self.screen)!r}"
            self.screen += chunk
        del self.screen[: match.end()]
        return match

    def resize(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@contextlib.contextmanager
def local_terminal(cols: int = 111, rows: int = 33) -> Iterator[LocalTerminal]:
    master, slave = os.openpty()
    os.set_blocking(master, False)
    term = LocalTerminal(master, slave, bytearray())
    term.resize(cols, rows)
    try:
        yield term
    finally:
        os.close(master)
        os.close(slave)


def mode(fd: int) -> list[object]:
    return [termios.tcgetattr(fd), fcntl.fcntl(fd, fcntl.F_GETFL)]


async def test_raw_mode_size_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with local_terminal(cols=111, rows=33) as term:
        before = mode(term.slave)
        async with opened(cols=80, rows=24) as t:
            attached = asyncio.ensure_future(
                attach(t.stream, stdin_fd=term.slave, stdout_fd=term.slave)
            )
            # The local size replaces the stream's parameters.
            await term.type("echo SIZE=$(stty size)\r")
            assert (await term.expect(rb"SIZE=(\d+ \d+)")).group(1) == b"33 111"
            attrs = termios.tcgetattr(term.slave)
            assert not attrs[3] & (termios.ICANON | termios.ECHO | termios.ISIG)  # raw
            # Ctrl-C reaches the remote shell (it interrupts sleep), not this process.
            # Ctrl-C only once the job prints, i.e. holds the terminal's foreground.
            await term.type("sh -c 'echo STARTED=$((1+1)); exec sleep 1000'\r")
            await term.expect(rb"STARTED=2")
            await term.type("\x03")
            await term.type("echo AFTER=$((40+2))\r")
            await term.expect(rb"AFTER=42")
            await term.type("exit 5\r")
            assert await asyncio.wait_for(attached, LIMIT) == 5
            await t.served()
        assert mode(term.slave) == before
    assert "~." in capsys.readouterr().err


async def test_window_change_is_forwarded(monkeypatch: pytest.MonkeyPatch) -> None:
    with local_terminal(cols=100, rows=30) as term:
        async with opened() as t:
            resizes: list[bytes] = []
            sent = asyncio.Event()
            write = t.stream.write

            async def recording(data: bytes) -> None:
                if data[0] == wire.FrameType.RESIZE:
                    resizes.append(data)
                    sent.set()
                await write(data)

            monkeypatch.setattr(t.stream, "write", recording)
            attached = asyncio.ensure_future(
                attach(t.stream, stdin_fd=term.slave, stdout_fd=term.slave)
            )
            await asyncio.wait_for(sent.wait(), LIMIT)  # the initial size
            sent.clear()
            term.resize(120, 40)
            os.kill(os.getpid(), signal.SIGWINCH)
            await asyncio.wait_for(sent.wait(), LIMIT)
            await term.type("echo SIZE=$(stty size)\r")
            assert (await term.expect(rb"SIZE=(\d+ \d+)")).group(1) == b"40 120"
            await term.type("exit\r")
            assert await asyncio.wait_for(attached, LIMIT) == 0
    assert resizes == [wire.resize_frame(100, 30), wire.resize_frame(120, 40)]


async def test_escape_disconnects_and_hangs_up() -> None:
    with local_terminal() as term:
        before = mode(term.slave)
        async with opened() as t:
            attached = asyncio.ensure_future(
                attach(t.stream, stdin_fd=term.slave, stdout_fd=term.slave)
            )
            await term.type("echo PID=$$\r")
            pid = int((await term.expect(rb"PID=(\d+)")).group(1))
            await term.type("~.")
            assert await asyncio.wait_for(attached, LIMIT) == DETACHED
            await t.served()
        assert mode(term.slave) == before
    assert t.stream.reset_reason == "detached"
    assert t.audit.events[-1] == ("terminal_closed", "129")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("how", ["session_end", "cancel"])
async def test_mode_restored_when_it_ends_otherwise(how: str) -> None:
    with local_terminal() as term:
        before = mode(term.slave)
        async with opened() as t:
            attached = asyncio.ensure_future(
                attach(t.stream, stdin_fd=term.slave, stdout_fd=term.slave)
            )
            await term.type("echo READY=$((1+1))\r")
            await term.expect(rb"READY=2")
            assert mode(term.slave) != before
            if how == "cancel":  # as Ctrl-C (SIGINT) in the technician's CLI would
                attached.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await attached
            else:
                await t.tech.close("technician_ended")
                with pytest.raises(TerminalError, match="without an exit status"):
                    await asyncio.wait_for(attached, LIMIT)
        assert mode(term.slave) == before


async def test_not_a_terminal() -> None:
    read_end, write_end = os.pipe()
    try:
        async with opened() as t:
            with pytest.raises(TerminalError, match="not a terminal"):
                await attach(t.stream, stdin_fd=read_end, stdout_fd=write_end)
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize(
    ("chunks", "sent", "detach"),
    [
        ([b"~."], b"", True),  # the very start is a line start
        ([b"ls\r~."], b"ls\r", True),
        ([b"ls\n", b"~", b"."], b"ls\n", True),  # cut anywhere
        ([b"a~."], b"a~.", False),  # not at a line start
        ([b"~~."], b"~.", False),  # ~~ is one literal tilde
        ([b"~x"], b"~x", False),
        ([b"\r~\r~."], b"\r~\r", True),
    ],
)
def test_escape_filter(chunks: list[bytes], sent: bytes, detach: bool) -> None:
    escape = EscapeFilter()
    out, stop = b"", False
    for chunk in chunks:
        keys, stop = escape.feed(chunk)
        out += keys
    assert (out, stop) == (sent, detach)
