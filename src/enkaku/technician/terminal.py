"""The technician's side of a ``terminal`` stream: the local terminal, or a script.

``attach`` puts the local terminal in raw mode, so every key (Ctrl-C, Ctrl-Z, Ctrl-D
too) goes to the remote shell, forwards window size changes (SIGWINCH) and returns the
remote shell's exit status. To end the session locally, type ``~.`` at the start of a
line (after Enter), as with ssh; ``~~`` sends one ``~``. The terminal's mode and flags
are restored on every way out (exit, detach, error, cancellation).

``run_command`` types a command and ``exit`` into the shell and collects what the
terminal printed, for scripts and tests where standard input is not a terminal.
Frames: ``enkaku.protocol.terminal`` (docs/protocol/terminal.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import termios
import tty
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from enkaku.i18n import register, t
from enkaku.protocol import terminal as wire
from enkaku.protocol.errors import ProtocolError
from enkaku.transport.errors import SessionEnded
from enkaku.transport.fdio import read_fd, wait_fd, write_fd

if TYPE_CHECKING:
    from enkaku.transport.channel import Stream

log = logging.getLogger(__name__)

#: What ``attach`` returns when the technician typed the escape (as ssh does).
DETACHED = 255
#: Largest output ``run_command`` collects by default.
MAX_OUTPUT = 16 * 1024 * 1024
_CR, _LF, _TILDE, _DOT = 0x0D, 0x0A, ord("~"), ord(".")

register(
    {
        "terminal_hello": (
            "Shell of {user} on the customer's computer."
            " Type ~. at the start of a line to disconnect.",
            "お客様のコンピューターの {user} のシェルです。"
            "切断するには行頭で ~. と入力してください。",
        ),
        "terminal_root": (
            "Warning: this shell runs as root (the agent runs as root):"
            " every command has full control of the customer's computer.",
            "警告: このシェルは root で動いています（エージェントが root で動いているため）。"
            "すべてのコマンドがお客様のコンピューターを完全に操作できます。",
        ),
        "terminal_detached": (
            "Disconnected (~.); the remote shell was hung up.",
            "切断しました（~.）。リモートのシェルは終了させました。",
        ),
        "terminal_refused": (
            "The customer's computer closed the terminal ({reason}).",
            "お客様のコンピューターが端末を閉じました（{reason}）。",
        ),
        "terminal_no_status": (
            "The terminal ended without an exit status (the session or the connection ended).",
            "終了ステータスなしで端末が終わりました（セッションまたは接続が終了しました）。",
        ),
        "terminal_bad_frame": (
            "The customer's computer sent invalid terminal data: {detail}",
            "お客様のコンピューターから不正な端末データが届きました: {detail}",
        ),
        "terminal_too_much_output": (
            "The command printed more than {limit} bytes; the terminal was closed.",
            "コマンドの出力が {limit} バイトを超えたため、端末を閉じました。",
        ),
        "terminal_not_a_tty": (
            "Standard input is not a terminal: run a command non-interactively instead.",
            "標準入力が端末ではありません。コマンドを非対話で実行してください。",
        ),
    }
)


class TerminalError(RuntimeError):
    """The terminal ended without the shell's exit status; ``message(lang)`` says why
    (``key``: the catalog key)."""

    def __init__(self, key: str, **fields: object) -> None:
        super().__init__(key)
        self.key, self.fields = key, fields

    def message(self, lang: str | None = None) -> str:
        """What went wrong, in ``lang`` (default: the environment's language)."""
        return t(self.key, lang, **self.fields)

    def __str__(self) -> str:
        return self.message()


class EscapeFilter:
    """Finds ``~.`` at the start of a line in what the technician types (``~~`` is a
    literal ``~``); everything else passes through unchanged."""

    def __init__(self) -> None:
        self._line_start = True
        self._tilde = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes to send, and whether the technician asked to disconnect."""
        out = bytearray()
        for byte in data:
            if self._tilde:
                self._tilde = False
                if byte == _DOT:
                    return bytes(out), True
                if byte != _TILDE:
                    out.append(_TILDE)  # not an escape: the tilde was meant
            elif self._line_start and byte == _TILDE:
                self._tilde = True
                continue
            out.append(byte)
            self._line_start = byte in (_CR, _LF)
        return bytes(out), False


def _printable(reason: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in reason)[:64]


def _ended(stream: Stream) -> TerminalError:
    if stream.reset_reason is not None:
        return TerminalError("terminal_refused", reason=_printable(stream.reset_reason))
    return TerminalError("terminal_no_status")


async def _frames(stream: Stream) -> AsyncGenerator[wire.Frame, None]:
    """The agent's frames; raises TerminalError when the stream ends before EXIT."""
    decoder = wire.Decoder("agent")
    while chunk := await stream.read():
        try:
            frames = decoder.feed(chunk)
        except ProtocolError as exc:
            await stream.reset("bad_frame")
            raise TerminalError("terminal_bad_frame", detail=str(exc)) from None
        for frame in frames:
            yield frame
    raise _ended(stream)


def _warn_if_root(hello: wire.Hello) -> None:
    if hello.root:
        log.warning("the remote shell runs as root")


async def run_command(
    stream: Stream, command: str, *, limit: int = MAX_OUTPUT
) -> tuple[int, bytes]:
    """Type ``command`` and ``exit`` into the shell; its exit status and everything the
    terminal printed (echo and prompts included, with CRLF line ends)."""
    try:
        await stream.write(wire.data_frames(f"{command}\nexit\n".encode()))
    except SessionEnded:
        raise _ended(stream) from None
    output = bytearray()
    async for frame in _frames(stream):
        if isinstance(frame, wire.Hello):
            _warn_if_root(frame)
        elif isinstance(frame, wire.Data):
            output += frame.data
            if len(output) > limit:
                await stream.reset("too_much_output")
                raise TerminalError("terminal_too_much_output", limit=limit)
        elif isinstance(frame, wire.Exit):
            await stream.write_eof()
            return frame.status, bytes(output)
    raise AssertionError("unreachable: _frames raises at the end")


def _window_size(*fds: int) -> tuple[int, int] | None:
    for fd in fds:
        with contextlib.suppress(OSError):
            cols, rows = os.get_terminal_size(fd)
            if cols > 0 and rows > 0:
                return min(cols, wire.MAX_DIMENSION), min(rows, wire.MAX_DIMENSION)
    return None


async def _show(frames: AsyncIterator[wire.Frame], stdout_fd: int) -> int:
    """Print the shell's output until its exit status arrives."""
    async for frame in frames:
        if isinstance(frame, wire.Data):
            await write_fd(stdout_fd, frame.data)
        elif isinstance(frame, wire.Exit):
            return frame.status
    raise AssertionError("unreachable: _frames raises at the end")


async def _type(stream: Stream, stdin_fd: int, stdout_fd: int, resized: asyncio.Event) -> None:
    """Send keys and window sizes until the technician types ``~.`` (or stdin ends)."""
    escape = EscapeFilter()
    reading = asyncio.ensure_future(wait_fd(stdin_fd))
    resizing = asyncio.ensure_future(resized.wait())
    try:
        while True:
            await asyncio.wait({reading, resizing}, return_when=asyncio.FIRST_COMPLETED)
            if resizing.done():  # before keys typed after the resize
                resized.clear()
                size = _window_size(stdout_fd, stdin_fd)
                if size is not None:
                    await stream.write(wire.resize_frame(*size))
                resizing = asyncio.ensure_future(resized.wait())
            if reading.done():
                data = await read_fd(stdin_fd, 4096)
                if not data:
                    return
                keys, detach = escape.feed(data)
                if keys:
                    await stream.write(wire.data_frames(keys))
                if detach:
                    return
                reading = asyncio.ensure_future(wait_fd(stdin_fd))
    finally:
        for task in (reading, resizing):
            task.cancel()
        await asyncio.gather(reading, resizing, return_exceptions=True)


async def attach(stream: Stream, *, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Connect the local terminal to the remote shell; the shell's exit status, or
    DETACHED after ``~.``. Raises TerminalError when it ends otherwise."""
    try:
        saved = termios.tcgetattr(stdin_fd)
    except termios.error:
        raise TerminalError("terminal_not_a_tty") from None
    frames = _frames(stream)
    hello = await anext(frames)  # the decoder makes HELLO the first frame
    assert isinstance(hello, wire.Hello)
    print(t("terminal_hello", user=hello.user), file=sys.stderr)
    if hello.root:
        print(t("terminal_root"), file=sys.stderr)
    loop = asyncio.get_running_loop()
    flags = {fd: fcntl.fcntl(fd, fcntl.F_GETFL) for fd in (stdin_fd, stdout_fd)}
    resized = asyncio.Event()
    resized.set()  # send the local size first: the stream's parameters were a guess
    handler = False
    tasks: list[asyncio.Future[Any]] = []
    try:
        tty.setraw(stdin_fd, termios.TCSANOW)
        for fd in flags:
            os.set_blocking(fd, False)
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signal.SIGWINCH, resized.set)
            handler = True
        shown = asyncio.ensure_future(_show(frames, stdout_fd))
        typed = asyncio.ensure_future(_type(stream, stdin_fd, stdout_fd, resized))
        tasks = [shown, typed]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if shown.done():
            status = shown.result()
            await stream.write_eof()
            return status
        if isinstance(typed.exception(), SessionEnded):  # the stream ended under a key
            return await shown  # which ends with the reason
        typed.result()  # raises anything else that failed
        await stream.reset("detached")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await frames.aclose()
        if handler:
            loop.remove_signal_handler(signal.SIGWINCH)
        for fd, value in flags.items():
            fcntl.fcntl(fd, fcntl.F_SETFL, value)
        termios.tcsetattr(stdin_fd, termios.TCSANOW, saved)
    print(t("terminal_detached"), file=sys.stderr)
    return DETACHED
