"""`enkaku session ...` against a real server, agent and `enkaku connect`: the commands
reach the held session through its private control socket.

Each test runs `enkaku connect` with its own XDG_RUNTIME_DIR (a short folder: a Unix
socket's path is limited to 107 bytes), so the session commands find exactly its socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.xdisplay import xvfb, xwd_root

from .harness import (
    ENKAKU,
    Proc,
    World,
    free_port,
    make_db,
    saved_token,
    server_process,
    session_record,
    wait_for,
    xterm_on,
)
from .test_consent import Terminal, ask_agent

pytestmark = pytest.mark.e2e


@dataclass
class Held:
    world: World
    agent: Proc
    tech: Proc
    session_id: str
    socket: Path
    run: Path

    def session(
        self, *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ENKAKU, "session", *args],
            env=self.world.env(XDG_RUNTIME_DIR=str(self.run)),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def hold(world: World, run: Path, agent: Proc, creds: dict[str, str] | None = None) -> Held:
    creds = creds or agent.next_line(60, event="credentials")
    tech = world.connect(
        creds["agent_id"], creds["password"], vnc=False, env={"XDG_RUNTIME_DIR": str(run)}
    )
    session_id = tech.next_line(60, event="connected")["session_id"]
    sock = Path(tech.next_line(30, event="control_socket")["path"])
    return Held(world, agent, tech, session_id, sock, run)


def test_the_socket_is_private_and_info_has_every_section(world: World, rundir: Path) -> None:
    held = hold(world, rundir, world.agent(None))
    assert held.socket == rundir / "enkaku" / f"{held.session_id}.sock"
    assert (os.stat(held.socket.parent).st_mode & 0o777) == 0o700
    assert (os.stat(held.socket).st_mode & 0o777) == 0o600

    done = held.session("info", "--json", "--purpose", "slow disk")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report["findings"], list)
    sections = report["sections"]
    assert sections
    for name, section in sections.items():
        assert section["ok"] is True or set(section["why"]) == {"en", "ja"}, name

    # The held session goes on, and its socket is removed when it ends.
    assert held.session("status", "--json").returncode == 0
    held.tech.signal(signal.SIGINT)
    assert held.tech.wait(30) == 0
    assert not held.socket.exists()
    gone = held.session("status")
    assert gone.returncode == 10
    assert "enkaku connect" in gone.stderr


@pytest.mark.x11
def test_screenshot_equals_the_x_servers_own_image(
    world: World, rundir: Path, tmp_path: Path
) -> None:
    work = tmp_path / "desk"
    work.mkdir()
    with xvfb(800, 600) as display, xterm_on(display, work):
        held = hold(world, rundir, world.agent(display))
        shot = tmp_path / "shot.png"

        def same() -> bool:
            shot.unlink(missing_ok=True)
            done = held.session("screenshot", str(shot))
            assert done.returncode == 0, done.stderr
            assert (shot.stat().st_mode & 0o777) == 0o600  # it shows the customer's screen
            got = np.asarray(Image.open(shot).convert("RGB"))
            return bool(np.array_equal(got, xwd_root(display)))

        wait_for(same, 60, "a screenshot equal to xwd -root")


def test_a_denied_screenshot_leaves_no_file(tmp_path: Path, rundir: Path) -> None:
    """Implicit consent covers screen and control only: the screenshot is asked on the
    agent's terminal, where the customer says no."""
    world = World(tmp_path)
    terminal = Terminal()
    try:
        server_process(world, make_db(tmp_path), free_port(), env={"ENKAKU_IMPLICIT_CONSENT": "1"})
        world.login()
        agent, creds = ask_agent(world, terminal)
        held = hold(world, rundir, agent, creds)
        shot = tmp_path / "denied.png"
        proc = subprocess.Popen(
            [ENKAKU, "session", "screenshot", str(shot), "--purpose", "see the error"],
            env=world.env(XDG_RUNTIME_DIR=str(rundir)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen = terminal.read_until(b"[y/N]")
        assert b"see the error" in seen
        terminal.type("n\n")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 7, err
        assert "did not allow" in err and "screenshot" in err
        assert "Traceback" not in err
        assert not shot.exists()
        assert list(tmp_path.glob("*.png")) == []
        # The session itself goes on.
        assert held.session("status").returncode == 0
    finally:
        world.close()
        terminal.close()


def test_chat_reaches_the_customer(world: World, rundir: Path) -> None:
    held = hold(world, rundir, world.agent(None))
    done = held.session("chat", "Shall I restart the print spooler?")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: "print spooler" in held.agent.stderr(None), 30, "the line at the agent")
    # Lines from stdin, until EOF.
    done = held.session("chat", "--json", stdin="first line\nsecond line\n")
    assert done.returncode == 0, done.stderr
    sent = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in sent] == ["sent", "sent"]
    wait_for(lambda: "second line" in held.agent.stderr(None), 30, "stdin lines at the agent")
    assert "first line" in held.agent.stderr(None)


def test_shell_command_output_and_exit_status(world: World, rundir: Path) -> None:
    held = hold(world, rundir, world.agent(None))
    done = held.session("shell", "-c", "echo hi; id -un")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"hi\n{pwd.getpwuid(os.getuid()).pw_name}\n"
    failed = held.session("shell", "-c", "echo bye >&2; exit 3")
    assert failed.returncode == 3
    assert failed.stdout == "bye\n"  # the PTY merges stderr into the output


def test_put_and_get_keep_every_byte(world: World, rundir: Path, tmp_path: Path) -> None:
    held = hold(world, rundir, world.agent(None))
    data = os.urandom(5 * 1024 * 1024 + 123)
    digest = hashlib.sha256(data).hexdigest()
    local = tmp_path / "payload.bin"
    local.write_bytes(data)
    remote = tmp_path / "customer"
    remote.mkdir()

    put = held.session("put", str(local), str(remote), "--json")
    assert put.returncode == 0, put.stderr
    events = [json.loads(line) for line in put.stdout.splitlines()]
    assert events[-1]["name"] == "payload.bin" and events[-1]["sha256"] == digest
    assert any(e.get("event") == "progress" for e in events)
    assert hashlib.sha256((remote / "payload.bin").read_bytes()).hexdigest() == digest

    back = tmp_path / "back"
    back.mkdir()
    got = held.session("get", str(remote / "payload.bin"), str(back / "copy.bin"))
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256((back / "copy.bin").read_bytes()).hexdigest() == digest
    assert [p.name for p in back.iterdir()] == ["copy.bin"]  # no part left behind
    # An existing file is never replaced.
    again = held.session("get", str(remote / "payload.bin"), str(back / "copy.bin"))
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_end_with_a_reason(world: World, rundir: Path) -> None:
    held = hold(world, rundir, world.agent(None))
    done = held.session("end", "--reason", "technician_ended")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "event": "ended",
        "session_id": held.session_id,
        "reason": "technician_ended",
    }
    assert held.tech.wait(30) == 8  # told by the server, as with `enkaku end`
    rec = session_record(world.server_url, saved_token(world), held.session_id)
    assert rec["end_reason"] == "technician_ended"
    assert not held.socket.exists()


def test_ctrl_c_cancels_a_download_and_the_next_one_resumes(
    world: World, rundir: Path, tmp_path: Path
) -> None:
    held = hold(world, rundir, world.agent(None))
    remote = tmp_path / "customer.bin"
    data = os.urandom(128 << 20)
    remote.write_bytes(data)
    back = tmp_path / "back"
    back.mkdir()
    proc = subprocess.Popen(
        [ENKAKU, "session", "get", str(remote), str(back), "--json"],
        env=world.env(XDG_RUNTIME_DIR=str(rundir)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "progress" and event["done"] > 0:
            break
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Cancelled" in err and "Traceback" not in err
    assert "customer.bin" not in os.listdir(back)
    wait_for(lambda: os.listdir(back), 30, "the kept part")
    assert all(name.startswith(".enkaku-") for name in os.listdir(back))  # hidden
    # The same command again resumes and checks the whole file.
    again = held.session("get", str(remote), str(back), "--json")
    assert again.returncode == 0, again.stderr
    progress = [e for e in map(json.loads, again.stdout.splitlines()) if e["event"] == "progress"]
    assert progress[0]["done"] > 0  # started where the cancelled one stopped
    got = (back / "customer.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert os.listdir(back) == ["customer.bin"]
