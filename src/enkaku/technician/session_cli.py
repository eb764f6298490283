"""`enkaku session ...`: act on the session a running `enkaku connect` holds.

Each command connects to the holder's control socket (``control_socket.py``), sends one
command and shows what comes back: "asking" while the customer decides, a progress bar
(rich, on stderr) during transfers, then the result, or the error's message and exit
code. ``--json`` prints the holder's events as JSON lines on stdout instead. Ctrl-C
closes the connection, which cancels the command in the holder (a download's verified
part stays hidden and resumes on the next ``get``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from enkaku.i18n import language, printable, reason_text, register, t
from enkaku.protocol.terminal import MAX_DIMENSION, TERM_NAME
from enkaku.transport.errors import SessionEnded

from .client import ExitCode
from .control_socket import (
    ControlSocketError,
    check_private_dir,
    peer_uid,
    socket_dir,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from enkaku.transport.channel import Stream

#: The largest line the holder sends (a system information report is at most 8 MiB).
MAX_LINE = 32 * 1024 * 1024
_SESSION_SOCK = re.compile(r"[0-9a-f]{32}\.sock")

register(
    {
        "session_cli_none": (
            "No session is held on this computer: run `enkaku connect ID` in another "
            "terminal first, and use `enkaku session` while it is connected.",
            "このコンピューターで保持中のセッションはありません。先に別の端末で "
            "`enkaku connect ID` を実行し、接続中に `enkaku session` を使ってください。",
        ),
        "session_cli_several": (
            "Several sessions are held ({ids}): choose one with --session ID.",
            "複数のセッションを保持中です ({ids})。--session ID で選んでください。",
        ),
        "session_cli_unknown": (
            "No session {session} is held on this computer (held: {ids}).",
            "セッション {session} はこのコンピューターで保持されていません (保持中: {ids})。",
        ),
        "session_cli_lost": (
            "The session ended, or `enkaku connect` stopped, before the command finished.",
            "コマンドが終わる前にセッションが終了したか、`enkaku connect` が停止しました。",
        ),
        "session_cli_asking": (
            "Waiting for the customer to allow it ({action}) ...",
            "お客様の許可を待っています ({action}) ...",
        ),
        "session_cli_saved": (
            "Saved {path} ({size} bytes).",
            "{path} に保存しました ({size} バイト)。",
        ),
        "session_cli_sent": (
            "Sent {size} bytes; on the customer's computer the file is named {name}.",
            "{size} バイトを送信しました。お客様のコンピューターでのファイル名は {name} です。",
        ),
        "session_cli_screenshot": (
            "Screenshot saved to {path} ({width}x{height}).",
            "スクリーンショットを {path} に保存しました ({width}x{height})。",
        ),
        "session_cli_report_saved": (
            "The system information report was saved to {path}.",
            "システム情報レポートを {path} に保存しました。",
        ),
        "session_cli_cancelled": (
            "Cancelled. A download's received part is kept hidden and resumes on the next try.",
            "キャンセルしました。ダウンロード済みの部分は隠しファイルとして残り、"
            "次回の実行で再開します。",
        ),
        "session_cli_stopped": ("Stopped.", "中止しました。"),
        "session_cli_chat_hint": (
            "Chat with the customer: type a line and press Enter; Ctrl-D ends.",
            "お客様とのチャット: 1 行入力して Enter で送信、Ctrl-D で終了します。",
        ),
        "session_cli_remote_absolute": (
            "{what} must be an absolute path on the customer's computer (starting with /): {path}",
            "{what} はお客様のコンピューター上の絶対パス (/ で始まる) で指定してください: {path}",
        ),
        "session_cli_allowed": (
            "The customer allowed {action}; it stays allowed until they withdraw it.",
            "お客様が {action} を許可しました。お客様が取り消すまで有効です。",
        ),
        "session_cli_typed": (
            "Typed {count} keys on the customer's screen.",
            "お客様の画面に {count} 文字を入力しました。",
        ),
        "session_cli_type_prompt": (
            "Text to type on the customer's screen (not shown): ",
            "お客様の画面に入力するテキスト (表示されません): ",
        ),
        "session_cli_type_missing": (
            "Give the text to type, or --stdin to read it (a password need not be on the "
            "command line).",
            "入力するテキストを指定するか、--stdin で読み込んでください (パスワードを"
            "コマンドラインに書かずに済みます)。",
        ),
        "session_cli_status": (
            "Session {session_id} with agent {agent_id}; allowed now: {granted}.",
            "セッション {session_id} (エージェント {agent_id})。"
            "現在許可されているもの: {granted}。",
        ),
    }
)


class SessionCommandError(Exception):
    """What to print, and the exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- finding the held session -------------------------------------------------------


def _live(path: Path) -> bool:
    """Whether a holder listens on ``path``; a socket nobody listens on is removed."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # a crashed holder's, in our own private folder
        return False
    except OSError:
        return False
    finally:
        probe.close()
    return True


def find_socket(session: str | None, directory: Path | None = None) -> Path:
    """The control socket of the held session (``session``: its ID or a unique prefix)."""
    folder = directory or socket_dir()
    try:
        check_private_dir(folder)
    except FileNotFoundError:
        raise SessionCommandError(t("session_cli_none"), ExitCode.NO_SESSION) from None
    except ControlSocketError as exc:
        raise SessionCommandError(str(exc), ExitCode.NO_SESSION) from None
    held = []
    for entry in sorted(folder.iterdir()):
        st = os.lstat(entry)
        if (
            _SESSION_SOCK.fullmatch(entry.name)
            and stat.S_ISSOCK(st.st_mode)
            and st.st_uid == os.geteuid()
            and _live(entry)
        ):
            held.append(entry)
    ids = ", ".join(p.stem for p in held)
    if session:
        wanted = session.strip().lower()
        matches = [p for p in held if p.stem.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if not held:
            raise SessionCommandError(t("session_cli_none"), ExitCode.NO_SESSION)
        key = "session_cli_several" if matches else "session_cli_unknown"
        raise SessionCommandError(
            t(key, ids=ids, session=printable(session, 40)), ExitCode.NO_SESSION
        )
    if not held:
        raise SessionCommandError(t("session_cli_none"), ExitCode.NO_SESSION)
    if len(held) > 1:
        raise SessionCommandError(t("session_cli_several", ids=ids), ExitCode.NO_SESSION)
    return held[0]


# -- talking to the holder ----------------------------------------------------------


class Holder:
    """One connection to the holder: one command, its events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: Path) -> Holder:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
        except OSError:
            raise SessionCommandError(t("session_cli_none"), ExitCode.NO_SESSION) from None
        sock = writer.get_extra_info("socket")
        if sock is None or peer_uid(sock) != os.geteuid():  # not our own `enkaku connect`
            writer.close()
            raise SessionCommandError(t("session_cli_none"), ExitCode.NO_SESSION)
        return cls(reader, writer)

    async def send(self, obj: dict[str, Any]) -> None:
        self.writer.write(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
        await self.writer.drain()

    async def event(self) -> dict[str, Any]:
        """The next event; raises SessionCommandError at the end of the connection."""
        try:
            line = await self.reader.readline()
        except (ConnectionError, ValueError):
            line = b""
        if not line:
            raise SessionCommandError(t("session_cli_lost"), ExitCode.ENDED_BY_PEER)
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise SessionCommandError(t("session_cli_lost"), ExitCode.ENDED_BY_PEER)
        return obj

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class Output:
    """Where the events go: people (stderr, progress bars) or scripts (--json)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._bar: Progress | None = None
        self._task: Any = None

    def line(self, obj: dict[str, Any]) -> None:
        print(json.dumps(obj, ensure_ascii=False), flush=True)

    def handle(self, event: dict[str, Any]) -> None:
        """Show an event that is not the result."""
        kind = event.get("event")
        if self.as_json and kind != "ready":
            self.line(event)
        elif kind == "asking":
            say(t("session_cli_asking", action=printable(str(event.get("action")), 32)))
        elif kind == "progress":
            self._progress(int(event.get("done", 0)), int(event.get("total", 0)))

    def _progress(self, done: int, total: int) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=total)
        self._bar.update(self._task, completed=done, total=total)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


async def _command(path: Path, request: dict[str, Any], out: Output) -> dict[str, Any]:
    """Send ``request``; show its events; the result (or SessionCommandError)."""
    holder = await Holder.connect(path)
    try:
        await holder.send({**request, "lang": language()})
        while True:
            event = await holder.event()
            if event.get("event") == "result":
                return event
            if event.get("event") == "error":
                raise SessionCommandError(
                    printable(str(event.get("message")), 2000),
                    int(event.get("exit", ExitCode.ERROR)),
                )
            out.handle(event)
    finally:
        out.stop()
        await holder.close()


# -- commands -----------------------------------------------------------------------


async def _info(path: Path, args: argparse.Namespace, out: Output) -> int:
    from enkaku.agent.sysinfo.report import to_html, to_json, to_text

    result = await _command(path, {"command": "info", "purpose": args.purpose}, out)
    report = result.get("report")
    if not isinstance(report, dict):
        raise SessionCommandError(t("session_cli_lost"), ExitCode.ERROR)
    if args.html:
        from enkaku.secretfile import write_secret

        target = Path(args.html)
        await asyncio.to_thread(write_secret, target, to_html(report, language()).encode())
        say(t("session_cli_report_saved", path=target))
    if args.json:
        print(to_json(report), flush=True)
    elif not args.html:
        from rich.console import Console

        Console().print(to_text(report, language()))
    return ExitCode.OK


async def _get(path: Path, args: argparse.Namespace, out: Output) -> int:
    request = {
        "command": "get",
        "remote": args.remote,
        "local": args.local,
        "purpose": args.purpose,
    }
    result = await _command(path, request, out)
    if out.as_json:
        out.line(result)
    else:
        say(t("session_cli_saved", path=result.get("path"), size=result.get("size")))
    return ExitCode.OK


async def _put(path: Path, args: argparse.Namespace, out: Output) -> int:
    request = {
        "command": "put",
        "local": args.local,
        "dest": args.remote_dir or "",
        "overwrite": args.overwrite,
        "purpose": args.purpose,
    }
    result = await _command(path, request, out)
    if out.as_json:
        out.line(result)
    else:
        name = printable(str(result.get("name")), 255)
        say(t("session_cli_sent", name=name, size=result.get("size")))
    return ExitCode.OK


async def _screenshot(path: Path, args: argparse.Namespace, out: Output) -> int:
    request = {"command": "screenshot", "local": args.file, "purpose": args.purpose}
    result = await _command(path, request, out)
    if out.as_json:
        out.line(result)
    else:
        say(t("session_cli_screenshot", **{k: result.get(k) for k in ("path", "width", "height")}))
    return ExitCode.OK


def _text_to_type(args: argparse.Namespace) -> str:
    """The text: the argument, or stdin (a terminal: asked without echo, one line; a pipe
    or file: all of it, less one final line break). ``--enter`` adds a Return."""
    if args.stdin == (args.text is not None):
        raise SessionCommandError(t("session_cli_type_missing"), ExitCode.USAGE)
    if args.text is not None:
        text = str(args.text)
    elif sys.stdin.isatty():
        import getpass

        text = getpass.getpass(t("session_cli_type_prompt"))
    else:
        text = sys.stdin.read()
        text = text.removesuffix("\n").removesuffix("\r")
    return text + "\n" if args.enter else text


async def _type(path: Path, args: argparse.Namespace, out: Output) -> int:
    text = _text_to_type(args)
    request = {"command": "type", "text": text, "purpose": args.purpose}
    result = await _command(path, request, out)
    if out.as_json:
        out.line(result)
    else:
        say(t("session_cli_typed", count=result.get("typed")))
    return ExitCode.OK


async def _allow(path: Path, args: argparse.Namespace, out: Output) -> int:
    request = {"command": "allow", "action": args.action, "purpose": args.purpose}
    result = await _command(path, request, out)
    if out.as_json:
        out.line(result)
    else:
        say(t("session_cli_allowed", action=args.action))
    return ExitCode.OK


async def _status(path: Path, args: argparse.Namespace, out: Output) -> int:
    result = await _command(path, {"command": "status"}, out)
    if out.as_json:
        out.line(result)
    else:
        granted = ", ".join(map(str, result.get("granted") or [])) or "-"
        say(
            t(
                "session_cli_status",
                session_id=result.get("session_id"),
                agent_id=result.get("agent_id"),
                granted=granted,
            )
        )
    return ExitCode.OK


async def _end(path: Path, args: argparse.Namespace, out: Output) -> int:
    from enkaku.cli import MAX_END_COMMENT

    comment = (args.comment or "").strip() or None
    if args.reason != "technician_ended" and comment is None:
        raise SessionCommandError(t("end_comment_missing", reason=args.reason), ExitCode.USAGE)
    if comment is not None and len(comment) > MAX_END_COMMENT:
        raise SessionCommandError(
            t("end_comment_too_long", length=len(comment), limit=MAX_END_COMMENT), ExitCode.USAGE
        )
    request = {"command": "end", "reason": args.reason, "comment": comment}
    result = await _command(path, request, out)
    session_id = str(result.get("session_id"))
    if not out.as_json:
        say(t("end_done", session_id=session_id, reason=reason_text(args.reason)))
    out.line({"event": "ended", "session_id": session_id, "reason": args.reason})
    return ExitCode.OK


# -- chat ---------------------------------------------------------------------------


def _show_chat(event: dict[str, Any], out: Output) -> None:
    if out.as_json:
        out.line(event)
        return
    at, text = printable(str(event.get("at")), 40), printable(str(event.get("text")), 4000)
    print(t("chat_from_customer", at=at, text=text), flush=True)


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin on a daemon thread (it may be a terminal, a pipe or a file); None at EOF."""

    def run() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=run, name="chat-stdin", daemon=True).start()


async def _chat(path: Path, args: argparse.Namespace, out: Output) -> int:
    if args.text is not None:
        result = await _command(path, {"command": "chat", "text": args.text}, out)
        if out.as_json:
            out.line(result)
        return ExitCode.OK
    holder = await Holder.connect(path)
    try:
        await holder.send({"command": "chat", "follow": True, "lang": language()})
        ready = await holder.event()
        if ready.get("event") == "error":
            raise SessionCommandError(str(ready.get("message")), int(ready.get("exit", 1)))
        if sys.stdin.isatty() and not out.as_json:
            say(t("session_cli_chat_hint"))
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        _stdin_lines(asyncio.get_running_loop(), lines)
        typed = asyncio.ensure_future(lines.get())
        heard = asyncio.ensure_future(holder.event())
        try:
            while True:
                await asyncio.wait({typed, heard}, return_when=asyncio.FIRST_COMPLETED)
                if heard.done():
                    event = heard.result()  # raises at the end of the session
                    if event.get("event") == "error":
                        raise SessionCommandError(
                            str(event.get("message")), int(event.get("exit", 1))
                        )
                    if event.get("event") == "chat":
                        _show_chat(event, out)
                    elif out.as_json:
                        out.line(event)
                    heard = asyncio.ensure_future(holder.event())
                if typed.done():
                    line = typed.result()
                    if line is None:
                        break
                    if line.strip():
                        await holder.send({"text": line.rstrip("\r\n")})
                    typed = asyncio.ensure_future(lines.get())
            # Stdin ended: let the holder confirm what was sent, then hang up.
            holder.writer.write_eof()
            with contextlib.suppress(SessionCommandError):
                while True:
                    event = await heard
                    if event.get("event") == "chat":
                        _show_chat(event, out)
                    elif out.as_json:
                        out.line(event)
                    heard = asyncio.ensure_future(holder.event())
        finally:
            for task in (typed, heard):
                task.cancel()
            await asyncio.gather(typed, heard, return_exceptions=True)
    finally:
        await holder.close()
    return ExitCode.OK


# -- shell --------------------------------------------------------------------------


class SocketStream:
    """The terminal stream as the holder bridges it: the same read/write/write_eof/reset
    the terminal helper uses on a channel Stream."""

    def __init__(self, holder: Holder) -> None:
        self.holder = holder
        self.reset_reason: str | None = None
        self.eof = False

    async def read(self) -> bytes:
        if self.reset_reason is not None:
            return b""
        try:
            data = await self.holder.reader.read(64 * 1024)
        except ConnectionError:
            data = b""
        self.eof = not data
        return data

    async def write(self, data: bytes) -> None:
        if self.reset_reason is not None:
            raise SessionEnded("stream_reset", self.reset_reason)
        try:
            self.holder.writer.write(data)
            await self.holder.writer.drain()
        except ConnectionError:
            raise SessionEnded("connection_lost") from None

    async def write_eof(self) -> None:
        with contextlib.suppress(OSError):
            if self.holder.writer.can_write_eof():
                self.holder.writer.write_eof()

    async def reset(self, reason: str) -> None:
        self.reset_reason = reason
        self.holder.writer.close()


def _wrapped(command: str, token: str) -> str:
    """One line for the remote shell: no echo, no CR added, ``command`` (in a subshell,
    so that its own ``exit`` ends only it) between two markers, then ``exit`` with its
    status (the markers are split in the echo, so only the printed ones match)."""
    import shlex

    return (
        f"stty -echo -onlcr 2>/dev/null; printf '%s%s\\n' ENKAKU_ {token}B; "
        f"(eval {shlex.quote(command)}); __enkaku_status=$?; "
        f"printf '\\n%s%s\\n' ENKAKU_ {token}E; exit $__enkaku_status"
    )


def _between(output: bytes, token: str) -> bytes:
    """What ``command`` printed, between the markers (everything when they are missing)."""
    begin, end = f"ENKAKU_{token}B\n".encode(), f"\nENKAKU_{token}E\n".encode()
    start = output.find(begin)
    stop = output.rfind(end)
    if start < 0 or stop < start:
        return output
    return output[start + len(begin) : stop]


async def _shell(path: Path, args: argparse.Namespace, out: Output) -> int:
    from .terminal import TerminalError, attach, run_command

    interactive = args.shell_command is None
    if interactive and not sys.stdin.isatty():
        raise SessionCommandError(t("terminal_not_a_tty"), ExitCode.USAGE)
    size = os.get_terminal_size(sys.stdout.fileno()) if sys.stdout.isatty() else None
    request: dict[str, Any] = {"command": "shell", "purpose": args.purpose}
    if size is not None:
        limit = MAX_DIMENSION
        request.update(cols=min(size.columns, limit), rows=min(size.lines, limit))
    term = os.environ.get("TERM")
    if term and TERM_NAME.fullmatch(term):  # else the agent's default (xterm-256color)
        request["term"] = term
    holder = await Holder.connect(path)
    try:
        await holder.send({**request, "lang": language()})
        while (event := await holder.event()).get("event") != "ready":
            if event.get("event") == "error":
                raise SessionCommandError(
                    str(event.get("message")), int(event.get("exit", ExitCode.ERROR))
                )
            out.handle(event)
        stream = cast("Stream", SocketStream(holder))
        try:
            if interactive:
                return await attach(stream)
            token = secrets.token_hex(8)
            status, output = await run_command(stream, _wrapped(args.shell_command, token))
        except TerminalError as exc:
            raise SessionCommandError(str(exc), ExitCode.ENDED_BY_PEER) from None
        sys.stdout.buffer.write(_between(output, token))
        sys.stdout.buffer.flush()
        return status
    finally:
        await holder.close()


# -- entry --------------------------------------------------------------------------

Command = Callable[[Path, argparse.Namespace, Output], Any]
COMMANDS: dict[str, Command] = {
    "info": _info,
    "get": _get,
    "put": _put,
    "screenshot": _screenshot,
    "chat": _chat,
    "shell": _shell,
    "type": _type,
    "end": _end,
    "status": _status,
    "allow": _allow,
}


async def _main(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    handled = False
    if args.session_command != "shell":  # a shell's Ctrl-C belongs to the remote shell
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, task.cancel)
            handled = True
    try:
        path = find_socket(args.session)
        out = Output(bool(getattr(args, "json", False)) and args.session_command != "info")
        return int(await COMMANDS[args.session_command](path, args, out))
    except asyncio.CancelledError:
        transfer = args.session_command in ("get", "put")
        say(t("session_cli_cancelled" if transfer else "session_cli_stopped"))
        return 130
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)


def _absolute(args: argparse.Namespace) -> None:
    """Local paths as the holder needs them: absolute (it runs in another folder)."""
    if args.session_command == "get":
        args.local = os.path.abspath(args.local or ".")
    elif args.session_command == "put":
        args.local = os.path.abspath(args.local)
    elif args.session_command == "screenshot":
        name = args.file or datetime.now().strftime("screenshot-%Y%m%d-%H%M%S.png")
        args.file = os.path.abspath(name)
    elif args.session_command == "info" and args.html:
        args.html = os.path.abspath(args.html)


def _check_remote(args: argparse.Namespace) -> None:
    """A relative customer path is refused before anything is asked."""
    what, value = {
        "get": ("REMOTE_PATH", getattr(args, "remote", None)),
        "put": ("REMOTE_DIR", getattr(args, "remote_dir", None)),
    }.get(args.session_command, ("", None))
    if value and not value.startswith("/"):
        message = t("session_cli_remote_absolute", what=what, path=printable(value, 300))
        raise SessionCommandError(message, ExitCode.USAGE)


def run(args: argparse.Namespace) -> int:
    """`enkaku session ...` (arguments from cli.build_parser)."""
    _absolute(args)
    try:
        _check_remote(args)
        return asyncio.run(_main(args))
    except SessionCommandError as exc:
        say(str(exc))
        return exc.exit_code
