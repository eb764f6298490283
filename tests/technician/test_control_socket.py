"""The control socket of a held session: a private folder and socket, a stale socket
replaced, bad commands answered without harm, chat both ways, and a client that hangs
up cancelling its download (the part stays for resumption). A real AgentSession and
TechnicianSession over an in-memory relay; real files and Unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from enkaku.agent.consent import AllowAll
from enkaku.agent.session import AgentSession
from enkaku.protocol import control
from enkaku.protocol import filexfer as fx
from enkaku.technician.control_socket import ChatHub, ControlSocket, ControlSocketError
from enkaku.technician.session import TechnicianSession
from enkaku.technician.session_cli import Holder, SessionCommandError, SocketStream, find_socket
from enkaku.technician.terminal import DETACHED, attach
from tests.agent.test_session import Agent, established
from tests.technician.test_terminal_attach import local_terminal

if TYPE_CHECKING:
    from enkaku.transport.channel import Stream

LIMIT = 10.0
SESSION_ID = "ab" * 16


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: a Unix socket's path is limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ek"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Held:
    agent: Agent
    session: AgentSession
    tech: TechnicianSession
    sock: ControlSocket
    printed: list[control.Chat] = field(default_factory=list)
    ended: list[tuple[str, str | None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def holding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: Path
) -> AsyncIterator[Held]:
    agent = Agent(tmp_path, AllowAll())
    run, tech_leg = agent.start(monkeypatch)
    assert agent.session is not None
    channel = await established(tech_leg, agent.rt.password)
    printed: list[control.Chat] = []
    chats = ChatHub(printed.append)
    tech = TechnicianSession(channel, on_chat=chats)
    tech.start()
    assert (await asyncio.wait_for(tech.consented, LIMIT)).granted
    ended: list[tuple[str, str | None]] = []

    async def end(reason: str, comment: str | None) -> None:
        ended.append((reason, comment))

    sock = ControlSocket(tech, SESSION_ID, "123456789", chats=chats, end=end, directory=folder)
    held = Held(agent, agent.session, tech, sock, printed, ended)
    try:
        yield held
    finally:
        await sock.close()
        await channel.close("technician_ended")
        await asyncio.wait_for(run, LIMIT)
        await tech.stop()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: Path) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, obj: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(obj).encode() + b"\n")

    async def event(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), LIMIT)
        assert line, "the holder closed the connection"
        event = json.loads(line)
        assert isinstance(event, dict)
        return event

    async def until(self, kind: str) -> dict[str, Any]:
        while (event := await self.event()).get("event") != kind:
            assert event.get("event") != "error", event
        return event

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def command(path: Path, obj: dict[str, Any]) -> dict[str, Any]:
    """Send one command; its last event (result or error)."""
    client = await Client.connect(path)
    try:
        await client.send(obj)
        while (event := await client.event()).get("event") not in ("result", "error"):
            pass
        return event
    finally:
        await client.close()


async def test_the_folder_and_the_socket_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    folder = short_dir / "enkaku"
    folder.mkdir(mode=0o755)  # ours, readable by others: tightened
    async with holding(tmp_path, monkeypatch, folder) as held:
        path = await held.sock.start()
        assert path == folder / f"{SESSION_ID}.sock"
        assert os.stat(folder).st_mode & 0o777 == 0o700
        assert os.stat(path).st_mode & 0o777 == 0o600
        status = await command(path, {"command": "status"})
        assert status["event"] == "result"
        assert status["session_id"] == SESSION_ID
        assert status["granted"] == ["screen", "control"]
        assert find_socket(None, folder) == path
        assert find_socket(SESSION_ID[:6], folder) == path
    assert not path.exists()  # removed at the end of the session
    with pytest.raises(SessionCommandError) as none:
        find_socket(None, folder)
    assert none.value.exit_code == 10
    assert "enkaku connect" in str(none.value)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
async def test_a_folder_others_may_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path, mode: int
) -> None:
    folder = short_dir / "enkaku"
    folder.mkdir()
    os.chmod(folder, mode)
    async with holding(tmp_path, monkeypatch, folder) as held:
        with pytest.raises(ControlSocketError, match="writable by other users"):
            await held.sock.start()
    assert list(folder.iterdir()) == []
    with pytest.raises(SessionCommandError, match="writable by other users"):
        find_socket(None, folder)  # the client does not trust it either


async def test_a_folder_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    folder = short_dir / "enkaku"
    folder.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(folder, 65534, 65534)  # nobody
    else:  # not allowed to give a folder away: be someone else instead
        real = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: real + 1)
    async with holding(tmp_path, monkeypatch, folder) as held:
        with pytest.raises(ControlSocketError, match="belongs to another user"):
            await held.sock.start()
    assert list(folder.iterdir()) == []


async def test_a_symlinked_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    real = short_dir / "elsewhere"
    real.mkdir(mode=0o700)
    (short_dir / "enkaku").symlink_to(real)
    async with holding(tmp_path, monkeypatch, short_dir / "enkaku") as held:
        with pytest.raises(ControlSocketError, match="not a folder"):
            await held.sock.start()


async def test_a_stale_socket_is_replaced_and_a_live_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    folder = short_dir / "enkaku"
    folder.mkdir(mode=0o700)
    stale = folder / f"{SESSION_ID}.sock"
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(stale))  # a holder that died: the file stays, nobody listens
    crashed.close()
    assert stale.is_socket()
    async with holding(tmp_path, monkeypatch, folder) as held:
        path = await held.sock.start()
        assert (await command(path, {"command": "status"}))["event"] == "result"
        second = ControlSocket(
            held.tech, SESSION_ID, "123456789", chats=held.sock.chats, end=held.sock._end,
            directory=folder,
        )  # fmt: skip
        with pytest.raises(ControlSocketError, match="already listens"):
            await second.start()
        assert (await command(path, {"command": "status"}))["event"] == "result"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json\n",
        b"[1, 2]\n",
        b'{"command": "format_disk"}\n',
        b'{"no_command": true}\n',
        b'{"command": "get", "remote": "/etc/hostname", "local": "relative/path"}\n',
        b'{"command": "chat", "text": 42}\n',
        b'{"command": "end", "reason": ["technician_ended"]}\n',
        b"x" * (200 * 1024) + b"\n",
    ],
)
async def test_a_malformed_command_is_answered_and_the_holder_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path, raw: bytes
) -> None:
    async with holding(tmp_path, monkeypatch, short_dir) as held:
        path = await held.sock.start()
        client = await Client.connect(path)
        with contextlib.suppress(ConnectionError):  # the holder may stop reading early
            await client.send_raw(raw)
        error = await client.event()
        await client.close()
        assert error["event"] == "error"
        assert error["code"] == "bad_command" and error["exit"] == 2
        assert "did not understand" in error["message"]
        assert held.ended == []  # nothing else happened
        # The holder and the session go on.
        assert (await command(path, {"command": "status"}))["event"] == "result"
        assert not held.tech.channel.closed.is_set()


async def test_a_client_that_hangs_up_is_harmless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    async with holding(tmp_path, monkeypatch, short_dir) as held:
        path = await held.sock.start()
        client = await Client.connect(path)
        await client.send_raw(b'{"command": "sta')
        await client.close()
        assert (await command(path, {"command": "status"}))["event"] == "result"


async def test_chat_goes_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    async with holding(tmp_path, monkeypatch, short_dir) as held:
        path = await held.sock.start()
        one = await command(path, {"command": "chat", "text": "Shall I restart it?"})
        assert one["event"] == "result"
        follower = await Client.connect(path)
        await follower.send({"command": "chat", "follow": True})
        assert (await follower.event())["event"] == "ready"
        await follower.send({"text": "再起動してもよろしいですか?"})
        assert (await follower.event())["event"] == "sent"
        assert held.agent.ui.chats == [
            ("Taro Tanaka (ACME)", "Shall I restart it?"),
            ("Taro Tanaka (ACME)", "再起動してもよろしいですか?"),
        ]
        await held.session.send_chat("はい、どうぞ")
        heard = await follower.until("chat")
        assert heard["text"] == "はい、どうぞ" and heard["at"]
        # The holder's own terminal still shows it.
        assert [m.text for m in held.printed] == ["はい、どうぞ"]
        await follower.close()


async def test_hanging_up_cancels_a_download_and_the_next_one_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(48 << 20)
    source.write_bytes(data)
    dest = tmp_path / "down"
    dest.mkdir()
    async with holding(tmp_path, monkeypatch, short_dir) as held:
        path = await held.sock.start()
        request = {"command": "get", "remote": str(source), "local": str(dest)}
        client = await Client.connect(path)
        await client.send(request)
        first = await client.until("progress")
        assert first["total"] == len(data)
        while (await client.until("progress"))["done"] == 0:
            pass  # some bytes arrived
        await client.close()  # Ctrl-C
        # The holder's task for that connection ends (cancelled transfer, part kept).
        await asyncio.wait_for(asyncio.gather(*held.sock._clients), LIMIT)
        entries = os.listdir(dest)
        assert entries and all(fx.is_own_temp(name) for name in entries)  # hidden part only
        # Asking again resumes the part and checks the whole file.
        done = await command(path, request)
        assert done["event"] == "result", done
        assert Path(done["path"]) == dest / "big.bin"
        got = (dest / "big.bin").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert os.listdir(dest) == ["big.bin"]


async def test_an_interactive_shell_runs_through_the_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    """The terminal helper's attach, on the technician's PTY, against the socket-backed
    stream: keys go up, output and the exit status come back."""
    async with holding(tmp_path, monkeypatch, short_dir) as held:
        path = await held.sock.start()
        client = await Client.connect(path)
        await client.send({"command": "shell", "cols": 90, "rows": 30})
        await client.until("ready")
        stream = cast("Stream", SocketStream(Holder(client.reader, client.writer)))
        with local_terminal(cols=101, rows=31) as term:
            attached = asyncio.ensure_future(
                attach(stream, stdin_fd=term.slave, stdout_fd=term.slave)
            )
            await term.type("echo SIZE=$(stty size) $((6*7))\r")
            assert (await term.expect(rb"SIZE=(\d+ \d+) (\d+)")).groups() == (b"31 101", b"42")
            await term.type("exit 5\r")
            assert await asyncio.wait_for(attached, LIMIT) == 5
        await client.close()
        assert held.tech.granted == ["control", "screen", "terminal"]


def test_with_several_sessions_the_client_needs_an_id(short_dir: Path) -> None:
    folder = short_dir / "enkaku"
    folder.mkdir(mode=0o700)
    ids = ["1" * 32, "2" * 32]
    listeners = []
    try:
        for sid in ids:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(folder / f"{sid}.sock"))
            listener.listen()
            listeners.append(listener)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(folder / f"{'3' * 32}.sock"))  # a crashed holder's: not counted
        stale.close()
        with pytest.raises(SessionCommandError, match="--session ID") as several:
            find_socket(None, folder)
        assert several.value.exit_code == 10
        assert ids[0] in str(several.value) and "3" * 32 not in str(several.value)
        assert find_socket("2222", folder) == folder / f"{ids[1]}.sock"
        with pytest.raises(SessionCommandError, match="No session 4444"):
            find_socket("4444", folder)
    finally:
        for listener in listeners:
            listener.close()


async def test_detaching_from_a_shell_ends_the_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    async with holding(tmp_path, monkeypatch, short_dir) as held:
        path = await held.sock.start()
        client = await Client.connect(path)
        await client.send({"command": "shell"})
        await client.until("ready")
        stream = cast("Stream", SocketStream(Holder(client.reader, client.writer)))
        with local_terminal() as term:
            attached = asyncio.ensure_future(
                attach(stream, stdin_fd=term.slave, stdout_fd=term.slave)
            )
            # Only the remote shell prints READY=2: the local terminal's own echo, before
            # attach() has made it raw, must not count as the shell's answer.
            await term.type("echo READY=$((1+1))\r")
            await term.expect(rb"READY=2")
            await term.type("\r~.")
            assert await asyncio.wait_for(attached, LIMIT) == DETACHED
        # The holder hangs up the remote shell and its task for the connection ends.
        await asyncio.wait_for(asyncio.gather(*held.sock._clients), LIMIT)
        assert (await command(path, {"command": "status"}))["event"] == "result"


async def test_type_says_why_it_cannot_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    """A text the agent would refuse is refused before anything is asked; an agent with
    no display says so; paused control is said at once, in its own words."""
    async with holding(tmp_path, monkeypatch, short_dir) as held:
        path = await held.sock.start()
        bad = await command(path, {"command": "type", "text": "a\x07b"})
        assert (bad["event"], bad["code"]) == ("error", "bad_text")
        assert "control character" in bad["message"]

        no_display = await command(path, {"command": "type", "text": "secret"})
        assert (no_display["event"], no_display["code"]) == ("error", "no_display")
        assert "no screen or keyboard" in no_display["message"]

        await held.session.pause_control(True)

        async def told() -> None:  # the holder's session has no status hook to wait on
            while not (held.tech.status and held.tech.status.control_paused):  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        await asyncio.wait_for(told(), LIMIT)
        paused = await command(path, {"command": "type", "text": "secret", "lang": "ja"})
        assert (paused["event"], paused["code"]) == ("error", "control_paused")
        assert "一時停止" in paused["message"]
