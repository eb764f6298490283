"""The terminal service with a real PTY and shell, over two real SecureChannels."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import pwd
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enkaku.agent.consent import Requester
from enkaku.agent.services import FileSettings, Grant, ServiceContext
from enkaku.agent.services import terminal as terminal_service
from enkaku.agent.services.terminal import SPEC, login_shell, serve
from enkaku.protocol import terminal as wire
from enkaku.protocol.errors import ProtocolError
from enkaku.technician.terminal import TerminalError, run_command
from enkaku.transport.channel import SecureChannel, Stream
from enkaku.transport.fdio import wait_fd
from tests.channelpair import channels

#: A bound on every wait, so that a broken service fails the test instead of hanging it.
LIMIT = 30


@dataclass
class Audit:
    """The audit events a service reported."""

    events: list[tuple[str, str | None]] = field(default_factory=list)

    async def __call__(self, event: str, detail: str | None = None) -> None:
        self.events.append((event, detail))


def context(audit: Audit, action: str = "terminal") -> ServiceContext:
    return ServiceContext(
        session_id="s1",
        agent_id="123456789",
        who=Requester("Taro", "Support Co"),
        grant=Grant(id=1, action=action, details={}),
        report=audit,
        files=FileSettings(),
    )


@dataclass
class Opened:
    tech: SecureChannel
    stream: Stream
    serving: asyncio.Future[None]
    audit: Audit

    async def served(self) -> None:
        """Wait for the service to return (bounded: a hang fails)."""
        await asyncio.wait_for(asyncio.shield(self.serving), LIMIT)


@contextlib.asynccontextmanager
async def opened(**params: object) -> AsyncIterator[Opened]:
    """A terminal stream from technician to agent, served by ``serve``."""
    agent, tech = await channels()
    audit = Audit()
    stream = await tech.open_stream("terminal", {"grant": 1, "cols": 80, "rows": 24} | params)
    served = await asyncio.wait_for(agent.incoming.get(), LIMIT)
    serving = asyncio.ensure_future(serve(served, context(audit)))
    try:
        yield Opened(tech, stream, serving, audit)
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await tech.close("technician_ended")


class Shell:
    """Reads the agent's frames and types into the shell, like a technician would."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.decoder = wire.Decoder("agent")
        self.output = bytearray()
        self.transcript = bytearray()  # all output, never trimmed
        self.hello: wire.Hello | None = None
        self.status: int | None = None

    async def send(self, text: str) -> None:
        await self.stream.write(wire.data_frames(text.encode()))

    async def _more(self) -> bool:
        chunk = await asyncio.wait_for(self.stream.read(), LIMIT)
        for frame in self.decoder.feed(chunk):
            if isinstance(frame, wire.Hello):
                self.hello = frame
            elif isinstance(frame, wire.Data):
                self.output += frame.data
                self.transcript += frame.data
            elif isinstance(frame, wire.Exit):
                self.status = frame.status
        return bool(chunk)

    async def expect(self, pattern: bytes) -> re.Match[bytes]:
        """Read until the output matches ``pattern``; drop the output up to the match."""
        while (match := re.search(pattern, bytes(self.output))) is None:
            assert await self._more(), f"ended before {pattern!r}: {bytes(self.output)!r}"
        del self.output[: match.end()]
        return match

    async def until_end(self) -> None:
        while await self._more():
            pass


def gone(pid: int) -> bool:
    """Whether ``pid`` exited (a zombie someone else must reap counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_spec() -> None:
    assert (SPEC.kind, SPEC.action, SPEC.serve, SPEC.bound) == ("terminal", "terminal", serve, ())


async def test_command_output_and_exit_status() -> None:
    async with opened() as t:
        status, output = await asyncio.wait_for(
            run_command(t.stream, "echo $((6*7)); (exit 3)"), LIMIT
        )
        await t.served()
    assert status == 3
    assert b"42\r\n" in output  # the echoed command line holds $((6*7)), not 42
    assert t.audit.events == [("terminal_opened", None), ("terminal_closed", "3")]


async def test_exit_status_of_exit() -> None:
    async with opened() as t:
        status, _ = await asyncio.wait_for(run_command(t.stream, "exit 7"), LIMIT)
        await t.served()
    assert status == 7


async def test_first_frame_says_whose_shell_it_is() -> None:
    me = pwd.getpwuid(os.geteuid())
    async with opened() as t:
        shell = Shell(t.stream)
        await shell.send("exit 0\n")
        await shell.until_end()
    assert shell.hello == wire.Hello(me.pw_name, me.pw_uid, os.geteuid() == 0, "/bin/sh")
    assert shell.status == 0


def test_which_shell_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The operator's ENKAKU_TERMINAL_SHELL when it is an executable absolute path, else
    the user's shell, else /bin/sh (no shell is started here: no profile runs)."""
    me = pwd.getpwuid(os.geteuid())
    user = pwd.struct_passwd((*me[:6], "/bin/bash"))
    assert login_shell(user, {}) == "/bin/bash"
    assert login_shell(user, {"ENKAKU_TERMINAL_SHELL": "/bin/sh"}) == "/bin/sh"
    not_executable = tmp_path / "shell"
    not_executable.write_text("")
    for bad in ("sh", str(not_executable), str(tmp_path / "missing")):
        with caplog.at_level(logging.WARNING):
            assert login_shell(user, {"ENKAKU_TERMINAL_SHELL": bad}) == "/bin/bash"
        assert "ENKAKU_TERMINAL_SHELL" in caplog.text and "ignored" in caplog.text
        caplog.clear()
    unusable = pwd.struct_passwd((*me[:6], str(tmp_path / "missing")))
    assert login_shell(unusable, {}) == "/bin/sh"


async def test_size_from_parameters_then_resize() -> None:
    async with opened(cols=90, rows=20) as t:
        shell = Shell(t.stream)
        await shell.send("echo SIZE=$(stty size)\n")  # the echoed line holds no digits
        assert (await shell.expect(rb"SIZE=(\d+ \d+)")).group(1) == b"20 90"
        await t.stream.write(wire.resize_frame(132, 43))
        await shell.send("echo SIZE=$(stty size)\n")
        assert (await shell.expect(rb"SIZE=(\d+ \d+)")).group(1) == b"43 132"
        await shell.send("exit\n")
        await shell.until_end()
    assert shell.status == 0


async def test_environment_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_SECRET_TEST", "hunter2-must-not-leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    async with opened(term="vt220") as t:
        status, output = await asyncio.wait_for(run_command(t.stream, "env"), LIMIT)
    assert status == 0
    assert b"hunter2-must-not-leak" not in output
    assert b"ENKAKU_SECRET_TEST" not in output
    # A prompt may precede the first line of env's output (dash prints "# " there).
    lines = [re.sub(r"^[$#] ", "", line) for line in output.decode().splitlines()]
    assert "TERM=vt220" in lines
    assert "LANG=C.UTF-8" in lines
    assert f"USER={pwd.getpwuid(os.geteuid()).pw_name}" in lines
    assert not [line for line in lines if line.startswith("OLDPWD=")]  # the agent's folder


async def test_closing_the_stream_hangs_up_the_shell_and_its_job() -> None:
    async with opened() as t:
        shell = Shell(t.stream)
        await shell.send("echo PID=$$\n")
        pid = int((await shell.expect(rb"PID=(\d+)")).group(1))
        await shell.send("sh -c 'echo JOB=$$; exec sleep 1000'\n")
        job = int((await shell.expect(rb"JOB=(\d+)")).group(1))
        job_exit = os.pidfd_open(job)
        try:
            await t.stream.write_eof()
            await t.served()
            await shell.until_end()  # the agent ends its side too
            await asyncio.wait_for(wait_fd(job_exit), LIMIT)
        finally:
            os.close(job_exit)
    with pytest.raises(ProcessLookupError):  # exited and reaped: no zombie left
        os.kill(pid, 0)
    assert gone(job)
    assert shell.status is None  # hung up: no exit status
    assert t.audit.events == [("terminal_opened", None), ("terminal_closed", "129")]  # SIGHUP


async def test_a_shell_that_ignores_the_hangup_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(terminal_service, "HANGUP_GRACE", 0.0)  # SIGKILL at once
    async with opened() as t:
        shell = Shell(t.stream)
        # The shell becomes a process that ignores SIGHUP and never reads the terminal.
        await shell.send("trap '' HUP; exec sh -c 'echo PID=$$; exec sleep 1000'\n")
        pid = int((await shell.expect(rb"PID=(\d+)")).group(1))
        await t.stream.write_eof()
        await t.served()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert t.audit.events[-1] == ("terminal_closed", "137")  # 128 + SIGKILL


async def test_a_reset_in_the_middle_of_output_does_not_hang() -> None:
    async with opened() as t:
        shell = Shell(t.stream)
        await shell.send("echo PID=$$; yes\n")
        pid = int((await shell.expect(rb"PID=(\d+)")).group(1))
        await shell.expect(rb"(y\r\n){100}")
        await t.stream.reset("gone")
        await t.served()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert t.audit.events[-1][0] == "terminal_closed"


async def test_the_session_ending_hangs_up_the_shell() -> None:
    async with opened() as t:
        shell = Shell(t.stream)
        await shell.send("echo PID=$$\n")
        pid = int((await shell.expect(rb"PID=(\d+)")).group(1))
        await t.tech.close("technician_ended")
        await t.served()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize(
    "params",
    [{"term": "xterm; rm -rf /"}, {"term": ""}, {"cols": 0}, {"rows": 5000}, {"cols": "80"}],
)
async def test_bad_parameters_reset_the_stream(params: dict[str, object]) -> None:
    async with opened(**params) as t:
        with pytest.raises(TerminalError, match="bad_params"):
            await asyncio.wait_for(run_command(t.stream, "true"), LIMIT)
        await t.served()
    assert t.stream.reset_reason == "bad_params"
    assert t.audit.events == []


async def test_a_forbidden_frame_resets_the_stream_and_hangs_up() -> None:
    async with opened() as t:
        shell = Shell(t.stream)
        await shell.send("echo PID=$$\n")
        pid = int((await shell.expect(rb"PID=(\d+)")).group(1))
        await t.stream.write(wire.exit_frame(0))  # only the agent may send EXIT
        await shell.until_end()
        await t.served()
    assert t.stream.reset_reason == "bad_frame"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- the frames (enkaku.protocol.terminal) ------------------------------------------------


def test_golden_frames() -> None:
    assert wire.resize_frame(132, 43) == bytes.fromhex("03 00000004 0084 002b")
    assert wire.exit_frame(130) == bytes.fromhex("04 00000004 00000082")
    assert wire.exit_frame(-1) == bytes.fromhex("04 00000004 ffffffff")
    assert wire.data_frames(b"ls\r") == bytes.fromhex("02 00000003 6c730d")
    hello = bytes(wire.Hello("ゆき", 1000, False, "/bin/bash"))
    assert hello[:1] == b"\x01" and int.from_bytes(hello[1:5], "big") == len(hello) - 5
    assert wire.Decoder("agent").feed(hello) == [wire.Hello("ゆき", 1000, False, "/bin/bash")]


@pytest.mark.parametrize(
    ("sender", "data", "error"),
    [
        ("agent", wire.data_frames(b"x"), "DATA before HELLO"),
        ("agent", wire.resize_frame(80, 24), "agent may not send terminal RESIZE"),
        ("technician", wire.exit_frame(0), "technician may not send terminal EXIT"),
        ("technician", bytes(wire.Hello("a", 1, False, "/bin/sh")), "may not send terminal HELLO"),
        ("technician", bytes.fromhex("09 00000000"), "unknown terminal frame type 9"),
        ("technician", bytes.fromhex("03 00000005"), "RESIZE payload of 5 bytes"),
        ("technician", bytes.fromhex("02 00010001"), "DATA payload of 65537 bytes"),
        ("technician", bytes.fromhex("03 00000004 0000 0018"), "cols 0 is outside"),
        ("agent", wire.frame(wire.FrameType.HELLO, b"[]"), "not a JSON object"),
        ("agent", wire.frame(wire.FrameType.HELLO, b'{"user": 1}'), "HELLO needs user"),
    ],
)
def test_bad_frames(sender: Literal["agent", "technician"], data: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        wire.Decoder(sender).feed(data)


def test_nothing_after_exit() -> None:
    decoder = wire.Decoder("agent")
    decoder.feed(bytes(wire.Hello("a", 1, False, "/bin/sh")) + wire.exit_frame(0))
    with pytest.raises(ProtocolError, match="DATA after EXIT"):
        decoder.feed(wire.data_frames(b"late"))


agent_frames = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=200).map(wire.Data),
        st.integers(-(2**31), 2**31 - 1).map(wire.Exit),
    ),
    max_size=8,
)


def _encode(frame: wire.Frame) -> bytes:
    if isinstance(frame, wire.Data):
        return wire.data_frames(frame.data)
    if isinstance(frame, wire.Exit):
        return wire.exit_frame(frame.status)
    raise AssertionError(frame)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(agent_frames, st.lists(st.integers(min_value=0), max_size=10))
def test_any_cut_gives_the_same_frames(frames: list[wire.Frame], cuts: list[int]) -> None:
    hello = wire.Hello("root", 0, True, "/bin/sh")
    # EXIT ends the stream: keep frames up to the first one.
    ends = [i for i, f in enumerate(frames) if isinstance(f, wire.Exit)]
    frames = [hello, *frames[: ends[0] + 1 if ends else len(frames)]]
    data = bytes(hello) + b"".join(_encode(f) for f in frames[1:])
    points = sorted({c % (len(data) + 1) for c in cuts})
    decoder, got = wire.Decoder("agent"), []
    for start, end in zip([0, *points], [*points, len(data)], strict=True):
        got += decoder.feed(data[start:end])
    assert got == frames


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(["agent", "technician"]), st.binary(max_size=64))
def test_arbitrary_bytes_give_frames_or_a_protocol_error(
    sender: Literal["agent", "technician"], data: bytes
) -> None:
    with contextlib.suppress(ProtocolError):
        for frame in wire.Decoder(sender).feed(data):
            assert isinstance(frame, wire.Hello | wire.Data | wire.Resize | wire.Exit)


async def test_last_output_arrives_when_the_technician_reads_after_the_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Regression: the agent waited a grace period for the last output after the exit, so a
    # technician slower than that (here: reading only once the shell is gone) lost it.
    monkeypatch.setattr(terminal_service, "DRAIN_GRACE", 0, raising=False)
    size = 530_000  # more than the stream's window (512 KiB): the rest waits in the PTY
    async with opened() as t:
        shell = Shell(t.stream)
        await shell.send("echo PID=$$\n")
        pid = int((await shell.expect(rb"PID=(\d+)")).group(1))
        exited = os.pidfd_open(pid)
        try:
            await shell.send(f"stty -opost; head -c {size} /dev/zero | tr '\\0' x; exit 4\n")
            await asyncio.wait_for(wait_fd(exited), LIMIT)
        finally:
            os.close(exited)
        await shell.until_end()
    assert max(len(run) for run in re.findall(rb"x+", shell.output)) == size
    assert shell.status == 4


WRITE_SYSCALL = {"x86_64": 1, "aarch64": 64}.get(platform.machine())


def in_write(pid: int) -> bool:
    """Whether ``pid`` sleeps in write(2)."""
    return Path(f"/proc/{pid}/syscall").read_text().split()[:1] == [str(WRITE_SYSCALL)]


async def blocked_in_write(pid: int) -> None:
    """Wait (bounded) until ``pid`` sleeps in write(2): another process's state, which
    gives no event, so poll it."""
    for _ in range(500):
        if in_write(pid):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{pid} never blocked writing to the terminal")


@pytest.mark.skipif(WRITE_SYSCALL is None, reason="write(2)'s number on this machine")
async def test_output_waits_for_the_technician() -> None:
    size = 2 * 1024 * 1024  # four times the stream's window
    async with opened() as t:
        shell = Shell(t.stream)
        await shell.send(
            "stty -opost; sh -c 'echo W=$$; exec dd if=/dev/zero bs=64k count=32 status=none';"
            " echo DONE=$((1+1))\n"
        )
        pid = int((await shell.expect(rb"W=(\d+)")).group(1))
        # The technician reads nothing now: the agent must stop reading the PTY, so the
        # writer blocks instead of the agent buffering its output.
        await blocked_in_write(pid)
        assert not gone(pid)
        await shell.expect(rb"DONE=2")
        await shell.send("exit\n")
        await shell.until_end()
    assert shell.status == 0
    assert shell.transcript.count(b"\0") == size  # nothing lost while paused
