"""The local control socket of a held session (`enkaku session ...`), as ssh's ControlMaster.

While `enkaku connect` holds a session it listens on a Unix socket that only its own
user can reach: ``$XDG_RUNTIME_DIR/enkaku/<session_id>.sock`` (else
``~/.cache/enkaku/run/``), in a folder of mode 0700 that must belong to the user and be
writable by nobody else, socket mode 0600, and each peer's uid checked (SO_PEERCRED).
The socket is removed when the session ends; one left by a crashed holder is replaced.

Protocol: one command per connection. The client sends one JSON line
``{"command": NAME, ...}``; the holder asks the customer (``session.ask``), opens the
stream, does the work, and answers with JSON lines: ``asking`` (waiting for the
customer), ``progress`` (``done``, ``total`` bytes), then one ``result`` or one ``error``
(``code``, ``message`` in the client's language, ``exit`` code). The holder runs as the
same user on the same machine, so ``get``/``put``/``screenshot`` read and write the
absolute local paths the client sends. Commands: ``status``, ``info``, ``get``, ``put``,
``screenshot``, ``type`` (one ``text`` typed on the customer's keyboard), ``chat`` (one
``text``, or ``follow``: then ``{"text"}`` lines in,
``{"event": "chat"}`` lines out), ``shell`` (after ``{"event": "ready"}`` the connection
carries the terminal stream's bytes both ways), ``end``. Closing the connection cancels
the command (a download keeps its hidden part for resumption). A malformed command is
answered with an error; it never disturbs the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from enkaku.i18n import printable, reason_text, register, t
from enkaku.protocol import control
from enkaku.protocol import filexfer as fx
from enkaku.transport.channel import Stream
from enkaku.transport.errors import SessionEnded

from . import files
from .client import ClientError, ExitCode
from .session import REFUSAL_KEYS, ConsentRefused, TechnicianSession

log = logging.getLogger(__name__)

#: The longest command line a client may send (chat text, paths, a comment).
MAX_COMMAND = 64 * 1024
#: Progress events are sent at most this often (seconds), plus the last one.
PROGRESS_EVERY = 0.1
#: Incoming chat lines a slow ``chat`` follower may have queued before more are dropped.
CHAT_BACKLOG = 256
#: How long the end of the session waits for an ``end`` command to answer its client
#: (the server ends the session before its HTTP answer may arrive).
END_GRACE = 10.0
#: Bytes moved at a time between the socket and a terminal stream.
SHELL_CHUNK = 64 * 1024

register(
    {
        "session_sock_foreign_dir": (
            "The folder {path} belongs to another user: the session's control socket is "
            "not created there. Remove it or set XDG_RUNTIME_DIR to a folder of your own.",
            "フォルダー {path} は別のユーザーのものです。セッションの制御ソケットは作成しません。"
            "削除するか、XDG_RUNTIME_DIR を自分のフォルダーに設定してください。",
        ),
        "session_sock_open_dir": (
            "The folder {path} is writable by other users: the session's control socket is "
            "not created there. Run: chmod 700 {path}",
            "フォルダー {path} は他のユーザーが書き込めます。セッションの制御ソケットは"
            "作成しません。実行してください: chmod 700 {path}",
        ),
        "session_sock_not_dir": (
            "{path} is not a folder: the session's control socket cannot be created.",
            "{path} はフォルダーではありません。セッションの制御ソケットを作成できません。",
        ),
        "session_sock_in_use": (
            "Another program already listens on {path}.",
            "{path} はすでに別のプログラムが使用しています。",
        ),
        "session_sock_failed": (
            "The session commands are not available (enkaku session): {detail}",
            "セッションコマンド (enkaku session) は使えません: {detail}",
        ),
        "session_bad_command": (
            "The session did not understand the command ({detail}); enkaku session and "
            "enkaku connect may be different versions.",
            "セッションがコマンドを理解できませんでした ({detail})。enkaku session と "
            "enkaku connect のバージョンが異なる可能性があります。",
        ),
        "session_ended_during": (
            "The session ended ({reason}).",
            "セッションが終了しました ({reason})。",
        ),
        "session_local_exists": (
            "{path} already exists; nothing was replaced. Choose another name.",
            "{path} はすでに存在します。置き換えていません。別の名前を指定してください。",
        ),
        "session_local_no_dir": (
            "The folder {path} does not exist.",
            "フォルダー {path} は存在しません。",
        ),
        "session_local_error": (
            "Cannot use {path}: {detail}",
            "{path} を使用できません: {detail}",
        ),
        "session_failed": (
            "The command failed: {detail}",
            "コマンドが失敗しました: {detail}",
        ),
    }
)


class ControlSocketError(Exception):
    """The socket cannot be set up safely; the message says why and what to do."""


# -- where the socket lives ---------------------------------------------------------


def socket_dir() -> Path:
    """The folder of the control sockets: per user, private."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "enkaku"
    return Path.home() / ".cache" / "enkaku" / "run"


def socket_path(session_id: str, directory: Path | None = None) -> Path:
    return (directory or socket_dir()) / f"{session_id}.sock"


def check_private_dir(path: Path) -> None:
    """Raise ControlSocketError unless ``path`` is a real folder of this user that
    nobody else may write to (a symlink is refused too)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ControlSocketError(t("session_sock_not_dir", path=path))
    if st.st_uid != os.geteuid():
        raise ControlSocketError(t("session_sock_foreign_dir", path=path))
    if st.st_mode & 0o022:
        raise ControlSocketError(t("session_sock_open_dir", path=path))


def private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700 if missing, check it, and make it 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_dir(path)
    os.chmod(path, 0o700)  # ours and not writable by others: no one else reads it either
    return path


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _clear_stale(path: Path) -> None:
    """Remove a socket no one listens on (a crashed holder's); refuse a live one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(st.st_mode):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            return
        finally:
            probe.close()
    raise ControlSocketError(t("session_sock_in_use", path=path))


# -- chat fan-out -------------------------------------------------------------------


class ChatHub:
    """The session's ``on_chat``: the holder's own printer, plus each ``chat`` follower."""

    def __init__(self, first: Callable[[control.Chat], None]) -> None:
        self._listeners: list[Callable[[control.Chat], None]] = [first]

    def __call__(self, msg: control.Chat) -> None:
        for listener in list(self._listeners):
            listener(msg)

    def add(self, listener: Callable[[control.Chat], None]) -> None:
        self._listeners.append(listener)

    def remove(self, listener: Callable[[control.Chat], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)


# -- the holder ---------------------------------------------------------------------

#: Ends the session through the API with a reason and an optional comment.
EndSession = Callable[[str, str | None], Awaitable[None]]


class CommandError(Exception):
    """A command failed: what the client prints, and its exit code."""

    def __init__(self, code: str, message: str, exit_code: int = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.code, self.exit_code = code, exit_code


class _Conn:
    """One client connection: JSON lines out, with the client's language."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lang: str | None = None
        #: The task serving this connection (it sends the result).
        self.task = asyncio.current_task()
        self._last_progress = 0.0

    async def send(self, obj: dict[str, Any]) -> None:
        self.writer.write(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
        await self.writer.drain()

    async def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last_progress < PROGRESS_EVERY:
            return
        self._last_progress = now
        await self.send({"event": "progress", "done": done, "total": total})


Handler = Callable[[_Conn, dict[str, Any]], Awaitable[dict[str, Any] | None]]


class ControlSocket:
    """Serves ``enkaku session`` commands for one held session until ``close()``."""

    def __init__(
        self,
        session: TechnicianSession,
        session_id: str,
        agent_id: str,
        *,
        chats: ChatHub,
        end: EndSession,
        directory: Path | None = None,
    ) -> None:
        self.session, self.session_id, self.agent_id = session, session_id, agent_id
        self.chats, self._end = chats, end
        self.path = socket_path(session_id, directory)
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._ending: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Handler] = {
            "status": self._status,
            "allow": self._allow,
            "info": self._info,
            "get": self._get,
            "put": self._put,
            "screenshot": self._screenshot,
            "chat": self._chat,
            "shell": self._shell,
            "type": self._type,
            "end": self._end_command,
        }

    async def start(self) -> Path:
        """Listen; raises ControlSocketError (or OSError) when it cannot be done safely."""
        private_dir(self.path.parent)
        _clear_stale(self.path)
        self._server = await asyncio.start_unix_server(
            self._accept, path=str(self.path), limit=MAX_COMMAND
        )
        os.chmod(self.path, 0o600)
        return self.path

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        if self._ending:  # let `enkaku session end` hear that it worked
            await asyncio.wait(self._ending, timeout=END_GRACE)
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)

    # -- connections ------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            sock = writer.get_extra_info("socket")
            if sock is None or peer_uid(sock) != os.geteuid():
                log.warning("refused a control socket client of another user")
                return
            await self._serve(_Conn(reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("a session command failed")
        finally:
            self._clients.discard(task)
            self._ending.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, conn: _Conn) -> None:
        try:
            request = await self._read_command(conn)
            conn.lang = request.get("lang") if request.get("lang") in ("en", "ja") else None
            handler = self._handlers[request["command"]]
            log.debug("session command %s", request["command"])
            if request["command"] in ("chat", "shell") and (
                request.get("follow") or request["command"] == "shell"
            ):
                try:  # these read the connection themselves
                    result = await handler(conn, request)
                except (CommandError, ConnectionError):
                    raise
                except Exception as exc:
                    raise command_error(exc, conn.lang) from None
            else:
                result = await self._until_hangup(conn, handler(conn, request))
        except CommandError as exc:
            await conn.send(
                {"event": "error", "code": exc.code, "message": str(exc), "exit": exc.exit_code}
            )
            return
        if result is not None:
            await conn.send({"event": "result", **result})

    async def _read_command(self, conn: _Conn) -> dict[str, Any]:
        try:
            line = await conn.reader.readline()
            if not line:  # a client that only looked whether the session is held
                raise ConnectionResetError("no command")
            request = json.loads(line)
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise self._bad(f"{type(exc).__name__}") from None
        if not isinstance(request, dict) or request.get("command") not in self._handlers:
            command = request.get("command") if isinstance(request, dict) else None
            raise self._bad(printable(str(command), 32))
        return request

    @staticmethod
    def _bad(detail: str) -> CommandError:
        return CommandError("bad_command", t("session_bad_command", detail=detail), ExitCode.USAGE)

    async def _until_hangup(
        self, conn: _Conn, work: Awaitable[dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Run ``work``; cancel it if the client goes away (Ctrl-C on its side)."""
        task = asyncio.ensure_future(work)
        hangup = asyncio.ensure_future(conn.reader.read(1))
        try:
            await asyncio.wait({task, hangup}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                raise ConnectionResetError("client went away")
            return self._result(conn, task)
        finally:
            hangup.cancel()
            task.cancel()

    def _result(self, conn: _Conn, task: asyncio.Future[dict[str, Any] | None]) -> Any:
        """The task's result, with the library's failures as CommandErrors."""
        try:
            return task.result()
        except Exception as exc:
            raise command_error(exc, conn.lang) from None

    # -- consent ----------------------------------------------------------------------

    async def _grant(
        self,
        conn: _Conn,
        action: control.Action,
        request: dict[str, Any],
        details: dict[str, str | int | bool] | None = None,
    ) -> control.Answer | None:
        """Ask the customer for ``action`` (a session action already in force is not
        asked again); the answer to name in the stream, or None for a session grant."""
        if action in control.SESSION_ACTIONS and action in self.session.granted:
            return None
        await conn.send({"event": "asking", "action": action})
        purpose = request.get("purpose")
        purpose = printable(purpose, 500) if isinstance(purpose, str) and purpose else None
        return await self.session.ask(action, details, purpose)

    # -- commands ---------------------------------------------------------------------

    async def _status(self, conn: _Conn, request: dict[str, Any]) -> dict[str, Any]:
        status = self.session.status
        return {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "granted": self.session.granted,
            "control_paused": bool(status.control_paused) if status else False,
        }

    async def _allow(self, conn: _Conn, request: dict[str, Any]) -> dict[str, Any]:
        """Ask for a session action with no command of its own (clipboard, browse, ...):
        granted, it stays in force until the customer withdraws it."""
        action = request.get("action")
        if action not in control.SESSION_ACTIONS:
            raise self._bad("action")
        await self._grant(conn, action, request)
        return {"action": action, "granted": self.session.granted}

    async def _info(self, conn: _Conn, request: dict[str, Any]) -> dict[str, Any]:
        from .sysinfo import fetch

        grant = await self._grant(conn, "system_info", request)
        stream = await self.session.open("system_info", {}, grant)
        return {"report": await fetch(stream, conn.lang)}

    async def _put(self, conn: _Conn, request: dict[str, Any]) -> dict[str, Any]:
        local = _abs(request.get("local"), conn.lang)
        dest = request.get("dest") or ""
        if not isinstance(dest, str):
            raise self._bad("dest")
        try:
            params = await asyncio.to_thread(
                files.put_params, local, dest, bool(request.get("overwrite"))
            )
        except files.TransferError as exc:  # about the local file: say which
            detail = exc.message(conn.lang)
            raise CommandError(
                exc.reason, t("session_local_error", conn.lang, path=local, detail=detail)
            ) from None
        details = files.consent_details(fx.KIND_PUT, params)
        grant = await self._grant(conn, "file_to_customer", request, details)
        stream = await self.session.open(fx.KIND_PUT, params, grant)
        # The first progress is files.put's own: the offset it starts from (a resumed
        # transfer starts where the verified part ends, not at 0).
        name = await _transfer(conn, stream, lambda progress: files.put(stream, local, progress))
        return {"name": name, "size": params["size"], "sha256": params["sha256"]}

    async def _get(self, conn: _Conn, request: dict[str, Any]) -> dict[str, Any]:
        remote = request.get("remote")
        if not isinstance(remote, str):
            raise self._bad("remote")
        target = _abs(request.get("local"), conn.lang)
        dest_dir, rename_to = await asyncio.to_thread(_get_target, target, conn.lang)
        params = await asyncio.to_thread(files.get_params, remote, dest_dir)
        details = files.consent_details(fx.KIND_GET, params)
        grant = await self._grant(conn, "file_from_customer", request, details)
        stream = await self.session.open(fx.KIND_GET, params, grant)
        saved = await _transfer(
            conn, stream, lambda progress: files.get(stream, dest_dir, progress)
        )
        if rename_to is not None:
            try:  # link, not rename: an existing file is never replaced
                os.link(saved, rename_to)
            except FileExistsError:
                raise CommandError(
                    "local_exists", t("session_local_exists", conn.lang, path=rename_to)
                ) from None
            os.unlink(saved)
            saved = rename_to
        return {"path": str(saved), "size": saved.stat().st_size}

    async def _screenshot(self, conn: _Conn, request: dict[str, Any]) -> dict[str, Any]:
        from .screenshot import receive

        target = _abs(request.get("local"), conn.lang)
        if not target.parent.is_dir():
            raise CommandError(
                "local_error", t("session_local_no_dir", conn.lang, path=target.parent)
            )
        grant = await self._grant(conn, "screenshot", request)
        stream = await self.session.open("screenshot", {}, grant)
        try:
            width, height = await receive(stream, target)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await stream.reset("cancelled")
            raise
        return {"path": str(target), "width": width, "height": height}

    async def _type(self, conn: _Conn, request: dict[str, Any]) -> dict[str, Any]:
        """Type ``text`` on the customer's keyboard (needs ``control``; never logged)."""
        from .typetext import TypeTextError, check_text, type_text

        text = request.get("text")
        if not isinstance(text, str):
            raise self._bad("text")
        check_text(text)  # refused before the customer is asked anything
        status = self.session.status
        if status is not None and status.control_paused:  # the agent would refuse it
            raise TypeTextError("control_paused")
        grant = await self._grant(conn, "control", request)
        stream = await self.session.open("type_text", {}, grant)
        try:
            typed = await type_text(stream, text)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await stream.reset("cancelled")
            raise
        return {"typed": typed}

    async def _end_command(self, conn: _Conn, request: dict[str, Any]) -> dict[str, Any]:
        reason, comment = request.get("reason"), request.get("comment")
        if not isinstance(reason, str) or not (comment is None or isinstance(comment, str)):
            raise self._bad("reason")
        if conn.task is not None:
            self._ending.add(conn.task)
        await self._end(reason, comment)
        return {"session_id": self.session_id, "reason": reason}

    async def _chat(self, conn: _Conn, request: dict[str, Any]) -> dict[str, Any] | None:
        if not request.get("follow"):
            text = request.get("text")
            if not isinstance(text, str) or not text.strip():
                raise self._bad("text")
            msg = await self.session.chat(text[:4000])
            return {"at": msg.at}
        await self._follow_chat(conn)
        return None

    async def _follow_chat(self, conn: _Conn) -> None:
        """Chat lines both ways until the client closes, or the session ends."""
        incoming: asyncio.Queue[control.Chat] = asyncio.Queue(CHAT_BACKLOG)

        def deliver(msg: control.Chat) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a follower that stopped reading
                incoming.put_nowait(msg)

        async def forward() -> None:
            while True:
                msg = await incoming.get()
                await conn.send({"event": "chat", "at": msg.at, "text": msg.text})

        self.chats.add(deliver)
        forwarding = asyncio.ensure_future(forward())
        closed = asyncio.ensure_future(self.session.channel.closed.wait())
        try:
            await conn.send({"event": "ready"})
            while True:
                line = asyncio.ensure_future(conn.reader.readline())
                await asyncio.wait({line, closed, forwarding}, return_when=asyncio.FIRST_COMPLETED)
                if not line.done():
                    line.cancel()
                    break
                raw = line.result()
                if not raw:
                    break
                text = _chat_text(raw)
                if text is None:
                    raise self._bad("text")
                msg = await self.session.chat(text)
                await conn.send({"event": "sent", "at": msg.at})
            if closed.done():
                reason = self.session.channel.end_reason or "connection_lost"
                raise CommandError(
                    "session_ended",
                    t("session_ended_during", conn.lang, reason=reason_text(reason, conn.lang)),
                    ExitCode.ENDED_BY_PEER,
                )
        finally:
            self.chats.remove(deliver)
            for task in (forwarding, closed):
                task.cancel()
            await asyncio.gather(forwarding, closed, return_exceptions=True)
        return None

    async def _shell(self, conn: _Conn, request: dict[str, Any]) -> None:
        params: dict[str, Any] = {k: request[k] for k in ("cols", "rows", "term") if k in request}
        stream = await self._until_hangup(conn, self._open_terminal(conn, request, params))
        assert stream is not None
        await conn.send({"event": "ready"})
        await _bridge(conn, stream["stream"])
        return None

    async def _open_terminal(
        self, conn: _Conn, request: dict[str, Any], params: dict[str, Any]
    ) -> dict[str, Any]:
        grant = await self._grant(conn, "terminal", request)
        return {"stream": await self.session.open("terminal", params, grant)}


def command_error(exc: BaseException, lang: str | None) -> CommandError:
    """A command's failure as the client shows it: message and exit code."""
    if isinstance(exc, CommandError):
        return exc
    if isinstance(exc, ConsentRefused):
        key = f"refused_{exc.reason}"
        message = t(key, lang, action=exc.action) if key in REFUSAL_KEYS else str(exc)
        return CommandError("refused", message, ExitCode.CONSENT_DENIED)
    if isinstance(exc, SessionEnded):
        return CommandError(
            "session_ended",
            t("session_ended_during", lang, reason=reason_text(exc.reason, lang)),
            ExitCode.ENDED_BY_PEER,
        )
    if isinstance(exc, files.TransferError):
        return CommandError(exc.reason, exc.message(lang))
    from .typetext import TypeTextError

    if isinstance(exc, TypeTextError):
        return CommandError(exc.reason, exc.message(lang))
    if isinstance(exc, ClientError):
        return CommandError("end_refused", str(exc), exc.exit_code)
    if isinstance(exc, OSError):
        detail = os.strerror(exc.errno) if exc.errno else str(exc)
        path = exc.filename or "?"
        return CommandError("local_error", t("session_local_error", lang, path=path, detail=detail))
    # The helpers' own errors (screenshot, terminal, sysinfo) carry a message for the user.
    log.debug("session command failed", exc_info=exc)
    return CommandError(
        type(exc).__name__, t("session_failed", lang, detail=printable(str(exc), 500))
    )


def _abs(value: Any, lang: str | None) -> Path:
    if not isinstance(value, str) or not os.path.isabs(value):
        raise CommandError(
            "bad_command", t("session_bad_command", lang, detail="path"), ExitCode.USAGE
        )
    return Path(value)


def _get_target(target: Path, lang: str | None) -> tuple[Path, Path | None]:
    """Where a download goes: (folder, None) into an existing folder, else (its parent,
    the new file's path), refused when that file exists or the folder does not."""
    if target.is_dir():
        return target, None
    if not target.parent.is_dir():
        raise CommandError("local_error", t("session_local_no_dir", lang, path=target.parent))
    if os.path.lexists(target):
        raise CommandError("local_exists", t("session_local_exists", lang, path=target))
    return target.parent, target


def _chat_text(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    text = obj.get("text") if isinstance(obj, dict) else None
    if not isinstance(text, str) or not text.strip():
        return None
    return text[:4000]


T = TypeVar("T")


async def _transfer(conn: _Conn, stream: Stream, run: Callable[[_Progress], Awaitable[T]]) -> T:
    """Run one transfer with its progress events; a cancelled command (the client hung
    up, Ctrl-C) resets the stream so the other side stops too."""
    progress = _Progress(conn)
    try:
        return await run(progress)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await stream.reset("cancelled")
        raise
    finally:
        await progress.close()


class _Progress:
    """The transfer's ``on_progress`` (called synchronously): sends events in order from
    a task of its own, keeping only the latest when the client reads slowly."""

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self._latest: tuple[int, int] | None = None
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    def __call__(self, done: int, total: int) -> None:
        self._latest = (done, total)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._latest is not None:
                await self._conn.progress(*self._latest)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._task
        if self._latest is not None:
            with contextlib.suppress(ConnectionError):
                await self._conn.send(
                    {"event": "progress", "done": self._latest[0], "total": self._latest[1]}
                )


async def _bridge(conn: _Conn, stream: Stream) -> None:
    """Copy bytes both ways between the client and a terminal stream until both ends
    are done (the client sends EOF after the shell's exit status); the client going
    away resets the stream, which hangs up the remote shell."""

    async def up() -> None:  # client -> customer
        while data := await conn.reader.read(SHELL_CHUNK):
            await stream.write(data)
        if stream.reset_reason is None:
            await stream.write_eof()

    async def down() -> None:  # customer -> client
        while data := await stream.read():
            conn.writer.write(data)
            await conn.writer.drain()
        if conn.writer.can_write_eof():
            conn.writer.write_eof()

    upward, downward = asyncio.ensure_future(up()), asyncio.ensure_future(down())
    try:
        await asyncio.wait({upward, downward}, return_when=asyncio.FIRST_COMPLETED)
        if upward.done() and upward.exception() is not None:
            await stream.reset("detached")
        await downward  # the shell's last output and exit status
        await upward
    except (ConnectionError, SessionEnded):
        with contextlib.suppress(Exception):
            await stream.reset("detached")
    finally:
        for task in (upward, downward):
            task.cancel()
        await asyncio.gather(upward, downward, return_exceptions=True)
