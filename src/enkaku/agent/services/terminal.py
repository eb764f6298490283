"""The ``terminal`` service: the customer's login shell on a PTY, for the technician.

The shell runs as the user the agent runs as (root only when the agent itself is root:
the first frame says so, and the agent logs a warning), in a new session whose
controlling terminal is a fresh PTY, with a clean environment (HOME, USER, LOGNAME,
SHELL, PATH, LANG from the agent's, TERM from the stream's parameters): nothing else of
the agent's environment, so none of its secrets. Frames are in
``enkaku.protocol.terminal`` (docs/protocol/terminal.md).

The shell is started with ``posix_spawn`` (no Python runs between fork and exec, which
is safe in a process with threads): with ``setsid`` it is a session leader, and its
first file action opens the PTY's slave by path, which makes that PTY its controlling
terminal (so job control and Ctrl-C work). The master is non-blocking and watched with
the event loop's readers; the shell's exit is watched through a pidfd.

Output waits for the stream: while a write to the technician waits for credit nothing
more is read from the PTY, so a flood of output blocks the shell, not our memory. When
the stream ends (technician EOF, reset, session end) the shell's process group gets
SIGHUP and the PTY is closed (a hangup), then SIGKILL after ``HANGUP_GRACE``; the shell
is always reaped. When the shell exits, its last output, the EXIT frame and EOF follow.

RESET reasons: ``bad_params`` (cols, rows or term), ``bad_frame`` (the technician sent
a malformed or forbidden frame), ``spawn_failed`` (the shell could not be started).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import pwd
import signal
import struct
import termios
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enkaku.protocol import terminal as wire
from enkaku.protocol.errors import ProtocolError
from enkaku.transport.errors import SessionEnded
from enkaku.transport.fdio import write_fd

from . import ServiceContext, ServiceSpec

if TYPE_CHECKING:
    from enkaku.transport.channel import Stream

log = logging.getLogger(__name__)

RESET_BAD_PARAMS = "bad_params"
RESET_BAD_FRAME = "bad_frame"
RESET_SPAWN_FAILED = "spawn_failed"

#: After SIGHUP, how long the shell may take to exit before SIGKILL.
HANGUP_GRACE = 5.0
READ_CHUNK = 16 * 1024
DEFAULT_TERM = "xterm-256color"
_TERM_RE = wire.TERM_NAME
_FALLBACK_SHELL = "/bin/sh"
#: Signals the shell starts with at their default action (we ignore SIGPIPE, for one).
_DEFAULT_SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


@dataclass(frozen=True)
class Params:
    """The stream's parameters, checked."""

    cols: int
    rows: int
    term: str


def parse_params(params: Mapping[str, Any]) -> Params:
    """Check ``cols``, ``rows`` and ``term``; raises ValueError with a short reason."""
    cols, rows = params.get("cols", 80), params.get("rows", 24)
    term = params.get("term", DEFAULT_TERM)
    for name, value in (("cols", cols), ("rows", rows)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} is not an integer")
    try:
        wire.check_size(cols, rows)
    except ProtocolError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(term, str) or not _TERM_RE.fullmatch(term):
        raise ValueError("term is not a terminal type name")
    return Params(cols, rows, term)


def current_user() -> pwd.struct_passwd:
    """The password database entry of the user the agent runs as (a stand-in when the
    uid has none, as in some containers)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        home = os.environ.get("HOME") or "/"
        return pwd.struct_passwd((str(uid), "x", uid, os.getegid(), "", home, _FALLBACK_SHELL))


#: The environment variable that names the shell to start instead of the user's own.
SHELL_OVERRIDE = "ENKAKU_TERMINAL_SHELL"


def _usable(shell: str | None) -> bool:
    return bool(shell) and os.path.isabs(shell or "") and os.access(shell or "", os.X_OK)


def login_shell(user: pwd.struct_passwd, agent_env: Mapping[str, str] | None = None) -> str:
    """The shell to start: ``ENKAKU_TERMINAL_SHELL`` from the agent's environment when it
    names an executable by absolute path (an operator's choice, say /bin/sh where the
    user's profile hangs or prompts), else the user's shell from the password database,
    else /bin/sh."""
    override = (agent_env or {}).get(SHELL_OVERRIDE)
    if override:
        if _usable(override):
            return override
        log.warning("%s=%r is not an executable absolute path: ignored", SHELL_OVERRIDE, override)
    if _usable(user.pw_shell):
        return user.pw_shell
    return _FALLBACK_SHELL


def shell_environment(
    user: pwd.struct_passwd, shell: str, term: str, agent_env: Mapping[str, str]
) -> dict[str, str]:
    """The shell's whole environment: who and where, never the agent's other variables."""
    env = {
        "HOME": user.pw_dir or "/",
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "SHELL": shell,
        "PATH": agent_env.get("PATH") or os.defpath,
        "TERM": term,
    }
    if agent_env.get("LANG"):
        env["LANG"] = agent_env["LANG"]
    return env


def _set_winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _shell_status(wait_status: int) -> int:
    """The exit status as the shell reports it ($?): 128 + N after signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


class Pty:
    """A shell on a PTY: its master (non-blocking) and its exit, watched through a pidfd
    (reaped as soon as it exits, so no zombie outlives a stream)."""

    def __init__(self, master: int, pid: int) -> None:
        self.master, self.pid = master, pid
        self._loop = asyncio.get_running_loop()
        self.exit: asyncio.Future[int] = self._loop.create_future()  # the shell's status
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._exited)
        self._reading: asyncio.Future[None] | None = None

    @classmethod
    def spawn(cls, argv: list[str], env: Mapping[str, str], cols: int, rows: int) -> Pty:
        """Start ``argv`` as a session leader whose controlling terminal is a new PTY
        (returns as soon as the child has exec'd: quick enough for the event loop)."""
        master, slave = os.openpty()
        try:
            _set_winsize(slave, cols, rows)
            pid = os.posix_spawn(
                argv[0], argv, env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.ttyname(slave), os.O_RDWR, 0),
                    (os.POSIX_SPAWN_DUP2, 0, 1),
                    (os.POSIX_SPAWN_DUP2, 0, 2),
                ],
                setsid=True, setsigdef=_DEFAULT_SIGNALS, setsigmask=(),
            )  # fmt: skip
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the child has its own: the master sees EIO once it closes it
        try:
            os.set_blocking(master, False)
            return cls(master, pid)
        except BaseException:  # no pidfd (a kernel before 5.3): do not leave the shell
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(master)
            raise

    def _exited(self) -> None:
        """The pidfd is readable: reap the shell, and wake a read waiting for output."""
        self._loop.remove_reader(self._pidfd)
        self._reap(os.WNOHANG)
        if self._reading is not None and not self._reading.done():
            self._reading.set_result(None)

    def _reap(self, flags: int) -> None:
        if self.exit.done():
            return
        pid, wait_status = os.waitpid(self.pid, flags)
        if pid == self.pid:
            self.exit.set_result(_shell_status(wait_status))

    async def read(self) -> bytes:
        """The next output; b"" once no process holds the terminal, or once the shell
        exited and everything it wrote has been read (the kernel hands over pending
        output before it reports that nothing is left, however slow we were)."""
        while True:
            try:
                return os.read(self.master, READ_CHUNK)
            except BlockingIOError:
                if self.exit.done():
                    return b""  # output of background jobs after the shell's exit is not ours
            except OSError as exc:
                if exc.errno == errno.EIO:  # Linux: every slave descriptor is closed
                    return b""
                raise
            self._reading = self._loop.create_future()
            self._loop.add_reader(self.master, _wake, self._reading)
            try:
                await self._reading
            finally:
                self._loop.remove_reader(self.master)
                self._reading = None

    async def write(self, data: bytes) -> None:
        """Type ``data``; waits while the terminal's input queue is full (dropped once
        the shell is gone)."""
        await write_fd(self.master, data)

    def resize(self, cols: int, rows: int) -> None:
        """Set the window size; the kernel sends the foreground job SIGWINCH."""
        _set_winsize(self.master, cols, rows)

    def _signal_group(self, sig: signal.Signals) -> None:
        if not self.exit.done():  # not reaped: the pid (= group id) cannot be reused
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    async def close(self) -> int:
        """Hang up if the shell still runs (SIGHUP, then SIGKILL after HANGUP_GRACE),
        make sure it is reaped, free the descriptors; its exit status."""
        self._signal_group(signal.SIGHUP)
        if self.master >= 0:
            os.close(self.master)  # a hangup: the terminal's processes get SIGHUP and EIO
            self.master = -1
        try:
            if not self.exit.done():
                await asyncio.wait({self.exit}, timeout=HANGUP_GRACE)
        finally:  # also when cancelled: never leave the shell running or unreaped
            if not self.exit.done():
                self._signal_group(signal.SIGKILL)
                self._reap(0)  # returns at once after SIGKILL
            if self._pidfd >= 0:
                self._loop.remove_reader(self._pidfd)
                os.close(self._pidfd)
                self._pidfd = -1
        return self.exit.result()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _pump_output(stream: Stream, pty: Pty) -> bool:
    """PTY → stream until the terminal is done (True) or the stream is gone (False)."""
    try:
        while data := await pty.read():
            await stream.write(wire.data_frames(data))  # no read until this is sent
    except SessionEnded:
        return False
    return True


async def _pump_input(stream: Stream, pty: Pty) -> None:
    """Stream → PTY until the technician's side ends (EOF, reset, session end)."""
    decoder = wire.Decoder("technician")
    while chunk := await stream.read():
        try:
            frames = decoder.feed(chunk)
        except ProtocolError as exc:
            log.info("terminal stream refused: %s", exc)
            await stream.reset(RESET_BAD_FRAME)
            return
        for frame in frames:
            if isinstance(frame, wire.Data):
                await pty.write(frame.data)
            elif isinstance(frame, wire.Resize):
                pty.resize(frame.cols, frame.rows)


async def _run(stream: Stream, pty: Pty) -> None:
    """Move bytes both ways until the shell exits (then its last output, EXIT and EOF)
    or the stream ends (the caller then hangs up)."""
    inbound = asyncio.ensure_future(_pump_input(stream, pty))
    outbound = asyncio.ensure_future(_pump_output(stream, pty))
    try:
        await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
        if not outbound.done() or not outbound.result():
            return
        # All output is sent; the exit normally came first (or follows at once).
        ending: set[asyncio.Future[Any]] = {inbound, pty.exit}
        await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
        if pty.exit.done():
            await stream.write(wire.exit_frame(pty.exit.result()))
            await stream.write_eof()
    finally:
        for task in (inbound, outbound):
            task.cancel()
        await asyncio.gather(inbound, outbound, return_exceptions=True)


async def serve(stream: Stream, ctx: ServiceContext) -> None:
    """Serve one ``terminal`` stream: a login shell until it exits or the stream ends."""
    try:
        params = parse_params(stream.params)
    except ValueError as exc:
        log.info("terminal refused: %s", exc)
        await stream.reset(RESET_BAD_PARAMS)
        return
    user = current_user()
    shell = login_shell(user, os.environ)
    root = os.geteuid() == 0
    env = shell_environment(user, shell, params.term, os.environ)
    # Start in the home folder as a login shell; posix_spawn cannot change directory.
    # (OLDPWD, which cd sets, would tell the shell the agent's own folder).
    script = 'cd "$HOME" 2>/dev/null || cd /; unset OLDPWD; exec "$0" -l'
    argv = ["/bin/sh", "-c", script, shell]
    try:
        pty = Pty.spawn(argv, env, params.cols, params.rows)
    except OSError as exc:
        log.warning("cannot start a shell for the technician: %s", exc)
        await stream.reset(RESET_SPAWN_FAILED)
        return
    if root:
        log.warning("the technician's terminal runs as root, because the agent runs as root")
    log.info("terminal opened for the technician (user %s, pid %d)", user.pw_name, pty.pid)
    try:
        await ctx.report("terminal_opened")
        with contextlib.suppress(SessionEnded):
            await stream.write(bytes(wire.Hello(user.pw_name, user.pw_uid, root, shell)))
            await _run(stream, pty)
    finally:
        status = await pty.close()
        await stream.write_eof()  # no-op after EXIT; else the technician's read ends too
        log.info("terminal closed (status %d)", status)
        await ctx.report("terminal_closed", f"{status}")


SPEC = ServiceSpec(kind="terminal", action="terminal", serve=serve)
