"""Files through a real server: a GiB each way while the screen stays live, a transfer cut
by a lost connection and resumed in the next session, refusals that leave nothing, hostile
names, expired parts, and records that hold metadata only."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.xdisplay import xvfb

from .harness import (
    ENKAKU,
    VNCDO,
    InProcessServer,
    Proc,
    World,
    free_port,
    make_db,
    server_process,
    wait_for,
    xterm_on,
)
from .test_consent import Terminal, ask_agent
from .test_session_tools import Held, hold

pytestmark = pytest.mark.e2e

GIB = 1 << 30


def make_file(path: Path, size: int, marker: bytes = b"") -> str:
    """``size`` bytes (random blocks, ``marker`` at the start); returns the SHA-256."""
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        first = marker + block[len(marker) :]
        for n in range(0, size, len(block)):
            chunk = (first if n == 0 else block)[: size - n]
            f.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def session_cmd(held: Held, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ENKAKU, "session", *args, "--json"],
        env=held.world.env(XDG_RUNTIME_DIR=str(held.run)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def put_until(held: Held, source: Path, done: int) -> subprocess.Popen[str]:
    """`enkaku session put SOURCE`, returned once more than ``done`` bytes went through."""
    put = session_cmd(held, "put", str(source))
    assert put.stdout is not None
    for line in put.stdout:
        event = json.loads(line)
        if event.get("event") == "progress" and event["done"] > done:
            return put
    raise AssertionError(f"the put ended first: {put.communicate(timeout=60)[1]}")


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def vncdo(port: int, *commands: str) -> None:
    subprocess.run(
        [VNCDO, "-s", f"127.0.0.1::{port}", *commands], check=True, timeout=120, capture_output=True
    )


def agent_with_files(world: World, display: str | None, incoming: Path, *extra: str) -> Proc:
    incoming.mkdir(exist_ok=True)
    return world.agent(display, "agent", "allow", "--incoming", str(incoming), *extra)


def test_a_gib_each_way_while_the_screen_stays_live_and_a_typed_command_runs(
    world: World, rundir: Path, tmp_path: Path
) -> None:
    incoming, back, desk = tmp_path / "incoming", tmp_path / "back", tmp_path / "desk"
    back.mkdir()
    desk.mkdir()
    source = tmp_path / "big.bin"
    digest = make_file(source, GIB)
    with xvfb(800, 600) as display, xterm_on(display, desk):
        agent = agent_with_files(world, display, incoming)
        creds = agent.next_line(60, event="credentials")
        tech = world.connect(
            creds["agent_id"], creds["password"], env={"XDG_RUNTIME_DIR": str(rundir)}
        )
        session_id = tech.next_line(60, event="connected")["session_id"]
        port = int(tech.next_line(60, event="vnc_listening")["port"])
        sock = Path(tech.next_line(30, event="control_socket")["path"])
        held = Held(world, agent, tech, session_id, sock, rundir)

        def while_running(proc: subprocess.Popen[str], typed: str) -> int:
            """Screen captures completed while ``proc`` runs; types one command first."""
            vncdo(port, "type", f"echo {typed} > {typed}.txt", "key", "enter")
            captures = 0
            while proc.poll() is None:
                vncdo(port, "capture", str(tmp_path / "live.png"))
                if proc.poll() is None:
                    captures += 1
            assert (desk / f"{typed}.txt").read_text().strip() == typed
            return captures

        put = session_cmd(held, "put", str(source))
        put_captures = while_running(put, "during_put")
        out, err = put.communicate(timeout=60)
        assert put.returncode == 0, err
        assert sha256_of(incoming / "big.bin") == digest
        assert put_captures >= 1, "the put ended before the screen was seen during it"

        get = session_cmd(held, "get", str(incoming / "big.bin"), str(back))
        get_captures = while_running(get, "during_get")
        out, err = get.communicate(timeout=60)
        assert get.returncode == 0, err
        assert sha256_of(back / "big.bin") == digest
        assert get_captures >= 1, "the get ended before the screen was seen during it"
        assert sorted(os.listdir(incoming)) == ["big.bin"]  # no part left anywhere
        assert sorted(os.listdir(back)) == ["big.bin"]
        results = [e for e in events(out) if e.get("event") == "result"]
        assert results, out


class Cutter:
    """A TCP forwarder in front of the server whose connections can all be cut at once,
    as a lost network would; new connections go through afterwards."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._live: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._live += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            live, self._live = self._live, []
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_put_cut_by_a_lost_connection_resumes_in_the_next_session(
    world: World, rundir: Path, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    source = tmp_path / "report.bin"
    digest = make_file(source, 256 << 20)
    cutter = Cutter(world.port)  # type: ignore[attr-defined]
    try:
        incoming.mkdir()
        agent = world.spawn(
            [
                ENKAKU,
                "-vv",
                "agent",
                "--server",
                f"http://127.0.0.1:{cutter.port}",
                "--headless",
                "--consent",
                "allow",
                "--config-dir",
                str(tmp_path / "agent-config"),
                "--incoming",
                str(incoming),
            ],
            "agent",
        )
        held = hold(world, rundir, agent)
        put = put_until(held, source, 48 << 20)
        cutter.cut()  # the agent's control link and relay leg die mid-transfer
        _out, err = put.communicate(timeout=60)
        assert put.returncode != 0
        assert "Traceback" not in err
        assert held.tech.wait(60) != 0  # the session ended for the technician too
        assert "report.bin" not in os.listdir(incoming)  # nothing under the real name
        parts = [n for n in os.listdir(incoming) if n.startswith(".enkaku-")]
        assert parts, os.listdir(incoming)

        # The agent is back online with a new password; the next session resumes.
        creds = agent.next_line(60, event="credentials")
        wait_for(lambda: agent.stderr(None).count("Online at") >= 2, 60, "the agent back online")
        again_run = Path(tempfile.mkdtemp(prefix="ek"))
        try:
            held2 = hold(world, again_run, agent, creds)
            done = held2.session("put", str(source), "--json", timeout=300)
            assert done.returncode == 0, done.stderr
            progress = [e for e in events(done.stdout) if e.get("event") == "progress"]
            assert progress[0]["done"] >= 16 << 20, done.stdout  # from the last verified offset
            assert sha256_of(incoming / "report.bin") == digest
            assert os.listdir(incoming) == ["report.bin"]
        finally:
            shutil.rmtree(again_run, ignore_errors=True)
    finally:
        cutter.close()


def test_an_expired_part_is_removed_when_the_next_session_starts(
    world: World, rundir: Path, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    source = tmp_path / "old.bin"
    make_file(source, 128 << 20)
    # Parts are kept 36 ms: the next session starts later than that (pairing, handshake
    # and consent take longer), so the part has expired by then and not before.
    agent = agent_with_files(world, None, incoming, "--keep-partial", "0.00001")
    held = hold(world, rundir, agent)
    put = put_until(held, source, 32 << 20)
    put.send_signal(2)  # Ctrl-C: the part stays, hidden
    put.communicate(timeout=60)
    wait_for(lambda: any(n.startswith(".enkaku-") for n in os.listdir(incoming)), 30, "a part")
    held.tech.signal(2)
    assert held.tech.wait(30) == 0
    assert any(n.startswith(".enkaku-") for n in os.listdir(incoming))  # kept until then
    creds = agent.next_line(60, event="credentials")
    again_run = Path(tempfile.mkdtemp(prefix="ek"))
    try:
        hold(world, again_run, agent, creds)
        wait_for(lambda: os.listdir(incoming) == [], 30, "the expired part to be removed")
    finally:
        shutil.rmtree(again_run, ignore_errors=True)


def test_a_refused_put_leaves_no_file(tmp_path: Path, rundir: Path) -> None:
    world = World(tmp_path)
    terminal = Terminal()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    source = tmp_path / "tool.sh"
    source.write_text("echo fixed\n")
    try:
        server_process(world, make_db(tmp_path), free_port(), env={"ENKAKU_IMPLICIT_CONSENT": "1"})
        world.login()
        agent, creds = ask_agent(world, terminal, "--incoming", str(incoming))
        held = hold(world, rundir, agent, creds)
        proc = session_cmd(held, "put", str(source))
        seen = terminal.read_until(b"[y/N]")
        assert b"tool.sh" in seen and str(incoming).encode() in seen  # name and folder
        terminal.type("n\n")
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 7, err
        assert "did not allow" in err
        assert os.listdir(incoming) == []
    finally:
        world.close()
        terminal.close()


def test_hostile_names_and_folders_are_refused_with_a_clear_message(
    world: World, rundir: Path, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    agent = agent_with_files(world, None, incoming)
    held = hold(world, rundir, agent)
    odd = tmp_path / "odd"
    odd.mkdir()
    control_name = odd / "evil\x1b[2Jname.txt"
    control_name.write_text("x")
    plain = odd / "plain.txt"
    plain.write_text("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    cases = [
        (str(control_name), str(incoming), "control or invisible characters"),
        (str(plain), str(tmp_path / "link"), "link"),
        (str(plain), str(tmp_path / "missing"), "does not exist"),
        (str(plain), "relative/folder", "absolute"),
    ]
    for local, remote_dir, words in cases:
        done = held.session("put", local, remote_dir)
        assert done.returncode != 0, (local, remote_dir)
        assert words in done.stderr.lower(), (words, done.stderr)
        assert "Traceback" not in done.stderr
    assert os.listdir(incoming) == [] and os.listdir(elsewhere) == []
    assert held.session("status").returncode == 0  # the session goes on


def test_the_records_and_the_relay_hold_metadata_only(
    inproc: tuple[World, InProcessServer], rundir: Path, tmp_path: Path
) -> None:
    world, server = inproc
    incoming = tmp_path / "incoming"
    secret = b"CUSTOMER-PAYROLL-7731"
    source = tmp_path / "payroll.csv"
    make_file(source, 2 << 20, marker=secret)
    agent = agent_with_files(world, None, incoming)
    held = hold(world, rundir, agent)
    chat_text = "PASSWORD-IS-HUNTER2"
    typed = "echo KEYSTROKES-9Q3"
    for args in (
        ("put", str(source)),
        ("get", str(incoming / "payroll.csv"), str(tmp_path)),
        ("chat", chat_text),
        ("shell", "-c", typed),
        ("info", "--json"),
    ):
        done = held.session(*args)
        assert done.returncode == 0, (args, done.stderr)
    held.tech.signal(2)
    assert held.tech.wait(30) == 0

    def recorded() -> list[tuple[str, str | None]]:
        rows = server.call(server.services.store.audit_events(held.session_id))
        return [(r.event, r.detail) for r in rows if r.source == "agent"]

    wait_for(lambda: ("ended", "technician_ended") in recorded(), 30, "the agent's reports")
    events_seen = dict(recorded())
    assert events_seen["file_received"] == str(2 << 20)
    assert events_seen["file_sent"] == str(2 << 20)
    assert "terminal_opened" in events_seen and "system_info_sent" in events_seen
    assert {"file_to_customer", "file_from_customer", "terminal", "system_info"} <= {
        detail for event, detail in recorded() if event == "action_granted"
    }
    # Nothing of the content: not in the database file, not in any relayed frame.
    db_path = server.settings.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(db_path) as db:
        dump = "\n".join(db.iterdump()).encode()
    relayed = b"".join(data for _, _, data in server.relayed)
    assert len(relayed) > 2 << 20
    for needle in (secret, chat_text.encode(), b"KEYSTROKES-9Q3", b"payroll"):
        assert needle not in dump, needle
        assert needle not in relayed, needle
