"""The window against a real server: a technician's `enkaku connect` is allowed with a
click in the consent dialog, the banner shows the session, End ends it; `enkaku agent`
without --headless opens the window, stops on SIGTERM, and falls back to the terminal
when there is no display."""

from __future__ import annotations

import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tkinter as tk
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from enkaku.agent.identity import DeviceKey
from enkaku.agent.main import screen_backends
from enkaku.agent.runtime import AgentRuntime
from enkaku.agent.services import FileSettings
from enkaku.agent.window.app import AgentWindow
from tests.e2e.harness import (
    ENKAKU,
    VNCDO,
    Proc,
    World,
    free_port,
    make_db,
    saved_token,
    server_process,
    session_record,
    wait_for,
)
from tests.xdisplay import wait_window

from .helpers import click, find, need, pump_until

pytestmark = [pytest.mark.e2e, pytest.mark.x11]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A real server process with a technician (logged in) and a contract."""
    w = World(tmp_path)
    try:
        server_process(w, make_db(tmp_path), free_port())
        w.login()
        yield w
    finally:
        w.close()


def line(proc: Proc, **match: Any) -> dict[str, Any] | None:
    """A stdout line of ``proc`` matching ``match`` if one came, without blocking Tk."""
    while True:
        try:
            got = proc.lines.get_nowait()
        except queue.Empty:
            return None
        if all(got.get(k) == v for k, v in match.items()):
            return got


@contextmanager
def window_agent(
    world: World, root: tk.Tk, display: str, timeout: float = 60, incoming: Path | None = None
) -> Iterator[AgentWindow]:
    """A real AgentRuntime behind the window, in this process (Tk on this thread)."""
    key = DeviceKey.load_or_create(world.tmp / "agent-config")
    capture, injector, clipboard = screen_backends(display)

    def build(ui: Any, policy: Any) -> AgentRuntime:
        return AgentRuntime(
            world.server_url, key, ui, consent=policy, capture_factory=capture,
            input_factory=injector, clipboard_factory=clipboard,
            files=FileSettings(incoming=incoming or world.tmp / "incoming"),
        )  # fmt: skip

    win = AgentWindow(root, build, lang="en", timeout=timeout)
    win.start()
    try:
        yield win
    finally:
        win.close()
        pump_until(root, lambda: win.bridge.join(0), 30, "the agent stopped")


def credentials(root: tk.Tk) -> tuple[str, str]:
    """The ID and password as the window shows them, once the agent is online."""
    shown = need(root, "agent_id")
    pump_until(root, lambda: len(shown.get().replace(" ", "")) == 9, 60, "the ID")
    agent_id = shown.get().replace(" ", "")
    assert shown.get() == f"{agent_id[:3]} {agent_id[3:6]} {agent_id[6:]}"
    return agent_id, need(root, "password").get()


def test_a_session_allowed_and_ended_in_the_window(world: World, root: tk.Tk, display: str) -> None:
    with window_agent(world, root, display) as win:
        agent_id, password = credentials(root)
        tech = world.connect(agent_id, password, vnc=False)
        session_id = pump_until(root, lambda: line(tech, event="session"), 60)["session_id"]
        pump_until(root, lambda: win.prompt.dialog is not None, 60, "the consent dialog")
        assert win.prompt.dialog is not None
        top = win.prompt.dialog.top
        assert "Taro Tanaka (ACME Support)" in need(top, "who").cget("text")
        assert "see your screen and control your mouse" in need(top, "what").cget("text")
        click(display, need(top, "allow"))
        pump_until(root, lambda: line(tech, event="connected"), 60, "the technician connected")
        banner = need(root, "banner")
        assert "Taro Tanaka (ACME Support)" in need(banner, "who").cget("text")
        click(display, need(banner, "end"))
        summary = need(root, "summary")
        assert "see your screen" in need(summary, "allowed").cget("text")
        pump_until(root, lambda: tech.proc.poll() is not None, 60, "the technician's end")
        record = session_record(world.server_url, saved_token(world), session_id)
        assert record["end_reason"] == "customer_ended"
        # A new password for the next session, shown at once.
        pump_until(root, lambda: need(root, "password").get() != password, 30, "new password")


def test_pause_control_stops_the_technicians_keys_and_the_data_count_grows(
    world: World, root: tk.Tk, display: str, tmp_path: Path
) -> None:
    with window_agent(world, root, display) as win:
        agent_id, password = credentials(root)
        tech = world.connect(agent_id, password)  # with a VNC bridge for vncdotool
        pump_until(root, lambda: win.prompt.dialog is not None, 60, "the consent dialog")
        assert win.prompt.dialog is not None
        click(display, need(win.prompt.dialog.top, "allow"))
        port = pump_until(root, lambda: line(tech, event="vnc_listening"), 60)["port"]
        banner = need(root, "banner")
        entry, data = need(banner, "chat_entry"), need(banner, "data")
        first_count = data.cget("text")

        def focus_chat() -> None:
            # The customer's keyboard focus: the chat line (a click on a button takes it).
            click(display, entry)
            pump_until(root, lambda: entry.focus_get() is entry, what="focus")

        def technician_types(text: str) -> None:
            # The capture after the keys is answered on the same stream, after the keys
            # were handled (injected, or dropped while paused): no waiting on time.
            vncdo(port, "type", text, "capture", str(tmp_path / "shot.png"))

        focus_chat()
        technician_types("ok")
        pump_until(root, lambda: entry.get() == "ok", 60, "the technician's keys")
        entry.delete(0, "end")
        session = win.runtime.session
        click(display, need(banner, "pause"))
        pump_until(root, lambda: session.control_paused, 30, "control paused")
        focus_chat()
        technician_types("abc")  # dropped: control is paused
        click(display, need(banner, "pause"))
        pump_until(root, lambda: not session.control_paused, 30, "control resumed")
        focus_chat()
        technician_types("xyz")
        pump_until(root, lambda: "xyz" in entry.get(), 60, "the keys after resuming")
        assert entry.get() == "xyz"
        # The screen went to the technician meanwhile: the banner's count grew.
        pump_until(root, lambda: data.cget("text") != first_count, 30, "the data count")
        tech.signal(signal.SIGINT)
        pump_until(root, lambda: tech.proc.poll() is not None, 60, "the technician's end")


def test_the_technician_cannot_answer_a_consent_dialog_remotely(
    world: World, root: tk.Tk, display: str, tmp_path: Path
) -> None:
    run = Path(tempfile.mkdtemp(prefix="ek"))  # short: the control socket's path
    try:
        with window_agent(world, root, display) as win:
            agent_id, password = credentials(root)
            tech = world.connect(agent_id, password, env={"XDG_RUNTIME_DIR": str(run)})
            pump_until(root, lambda: win.prompt.dialog is not None, 60, "the consent dialog")
            first = win.prompt.dialog
            assert first is not None
            click(display, need(first.top, "allow"))
            port = pump_until(root, lambda: line(tech, event="vnc_listening"), 60)["port"]
            shot = tmp_path / "asked.png"
            asking = subprocess.Popen(
                [ENKAKU, "session", "screenshot", str(shot), "--purpose", "see the error"],
                env=world.env(XDG_RUNTIME_DIR=str(run)), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                pump_until(root, lambda: win.prompt.dialog not in (None, first), 60, "the question")
                dialog = win.prompt.dialog
                assert dialog is not None
                assert win.runtime.session.control_paused  # paused while it is shown
                allow = need(dialog.top, "allow")
                x = allow.winfo_rootx() + allow.winfo_width() // 2
                y = allow.winfo_rooty() + allow.winfo_height() // 2
                # The technician clicks Allow through VNC; the capture after it is answered
                # once the agent has handled (here: dropped) the click.
                vncdo(port, "move", str(x), str(y), "click", "1", "capture", str(shot))
                root.winfo_pointerxy()  # a round trip: X events sent before it are queued
                root.update()
                assert not dialog.answered and dialog.top.winfo_exists()
                click(display, need(dialog.top, "deny"))  # the customer's own answer
                pump_until(root, lambda: asking.poll() is not None, 60, "the refusal")
                _out, err = asking.communicate(timeout=60)
                assert asking.returncode == 7 and "did not allow" in err
                pump_until(root, lambda: not win.runtime.session.control_paused, 30, "resumed")
            finally:
                if asking.poll() is None:
                    asking.kill()
                    asking.communicate()
            tech.signal(signal.SIGINT)
            pump_until(root, lambda: tech.proc.poll() is not None, 60, "the technician's end")
    finally:
        shutil.rmtree(run, ignore_errors=True)


def vncdo(port: int, *commands: str) -> None:
    subprocess.run(
        [VNCDO, "-s", f"127.0.0.1::{port}", *commands], check=True, timeout=120,
        capture_output=True,
    )  # fmt: skip


def test_deny_in_the_window_refuses_the_session(world: World, root: tk.Tk, display: str) -> None:
    with window_agent(world, root, display) as win:
        agent_id, password = credentials(root)
        tech = world.connect(agent_id, password, vnc=False)
        session_id = pump_until(root, lambda: line(tech, event="session"), 60)["session_id"]
        pump_until(root, lambda: win.prompt.dialog is not None, 60, "the consent dialog")
        assert win.prompt.dialog is not None
        click(display, need(win.prompt.dialog.top, "deny"))
        pump_until(root, lambda: tech.proc.poll() is not None, 60, "the technician's end")
        assert tech.proc.returncode == 7
        assert "did not allow" in tech.stderr()
        record = session_record(world.server_url, saved_token(world), session_id)
        assert record["end_reason"] == "consent_denied"
        assert find(root, "banner") is None  # never opened: nothing was allowed


def test_no_answer_in_the_window_refuses_the_session(
    world: World, root: tk.Tk, display: str
) -> None:
    with window_agent(world, root, display, timeout=3) as win:
        agent_id, password = credentials(root)
        tech = world.connect(agent_id, password, vnc=False)
        session_id = pump_until(root, lambda: line(tech, event="session"), 60)["session_id"]
        pump_until(root, lambda: win.prompt.dialog is not None, 60, "the consent dialog")
        assert win.prompt.dialog is not None
        top = win.prompt.dialog.top
        assert re.search(
            r"No answer within [0-3] s means Deny", need(top, "countdown").cget("text")
        )
        pump_until(root, lambda: tech.proc.poll() is not None, 60, "the technician's end")
        assert tech.proc.returncode == 7
        assert not top.winfo_exists()
        record = session_record(world.server_url, saved_token(world), session_id)
        assert record["end_reason"] == "consent_denied"


def test_wrong_passwords_show_notices_then_a_new_password(
    world: World, root: tk.Tk, display: str
) -> None:
    with window_agent(world, root, display):
        agent_id, password = credentials(root)
        notices = need(root, "notices")
        expected = ["attempt 1 of 3", "attempt 2 of 3", "a new one-time password was drawn"]
        for n, text in enumerate(expected):
            tech = world.connect(agent_id, "wron-gpwd", vnc=False, name=f"wrong{n}")
            pump_until(root, lambda t=text: t in notices.cget("text"), 60, text)  # type: ignore[misc]
            pump_until(root, lambda p=tech: p.proc.poll() is not None, 60, "the technician's end")  # type: ignore[misc]
        pump_until(root, lambda: need(root, "password").get() != password, 30, "new password")


def test_enkaku_agent_opens_the_window_and_stops_on_sigterm(world: World, display: str) -> None:
    agent = world.spawn(
        [ENKAKU, "agent", "--server", world.server_url, "--lang", "ja",
         "--config-dir", str(world.tmp / "cfg")],
        "agent-window", DISPLAY=display,
    )  # fmt: skip
    wait_window(display, "enkaku リモートサポート")
    # The window also prints the --headless credentials line, for IT staff and scripts.
    creds = agent.next_line(60, event="credentials")
    assert creds["server"] == world.server_url and len(creds["agent_id"]) == 9
    assert agent.proc.poll() is None
    agent.signal(signal.SIGTERM)
    assert agent.wait(30) == 0


def test_without_a_display_the_agent_says_so_and_uses_the_terminal(world: World) -> None:
    agent = world.spawn(
        [ENKAKU, "agent", "--server", world.server_url, "--config-dir", str(world.tmp / "cfg")],
        "agent-nodisplay",
    )
    creds = agent.next_line(60, event="credentials")
    assert len(creds["agent_id"]) == 9
    err = wait_for(lambda: "ウィンドウを開けません" in agent.stderr() and agent.stderr(), 30)
    assert "cannot open the window (no screen to show it on:" in err
    assert "ウィンドウを開けません (表示できる画面がありません:" in err


def test_without_tkinter_the_agent_says_so_and_uses_the_terminal(
    world: World, display: str
) -> None:
    no_tk = (
        "import sys; sys.modules['tkinter'] = None; from enkaku.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    agent = world.spawn(
        [sys.executable, "-c", no_tk, "agent", "--server", world.server_url,
         "--config-dir", str(world.tmp / "cfg")],
        "agent-notk", DISPLAY=display,
    )  # fmt: skip
    assert len(agent.next_line(60, event="credentials")["agent_id"]) == 9
    err = wait_for(lambda: "ウィンドウを開けません" in agent.stderr() and agent.stderr(), 30)
    assert "cannot open the window (Tk is not installed; on Debian or Ubuntu: sudo apt" in err
    assert "ウィンドウを開けません (Tk がインストールされていません。Debian / Ubuntu" in err


def test_the_screenshot_script_draws_every_screen(tmp_path: Path) -> None:
    root_dir = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [str(root_dir / "scripts" / "screenshots"), str(tmp_path), "--lang", "en"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    names = sorted(Path(p).name for p in out.stdout.split())
    assert names == [f"agent-{s}-en.png" for s in ("banner", "consent", "enrol", "main", "terms")]
    for name in names:
        with Image.open(tmp_path / name) as img:
            assert img.width > 300 and img.height > 200
            assert len(img.convert("L").getcolors(1 << 16) or []) > 20  # text was drawn


@pytest.mark.parametrize("accept", [True, False])
def test_the_terms_are_accepted_in_the_window_before_any_id(
    root: tk.Tk, display: str, tmp_path: Path, accept: bool
) -> None:
    from enkaku.server.terms import terms_today
    from tests.e2e.test_terms import TERMS_V1, acceptances, publish

    world = World(tmp_path)
    try:
        db = make_db(tmp_path)
        assert publish(world, db, TERMS_V1, "1", terms_today().isoformat()).returncode == 0
        server_process(world, db, free_port())
        with window_agent(world, root, display) as win:
            dialog = need(root, "terms")
            assert "version 1, in force from" in need(dialog, "head").cget("text")
            assert "Rule one: <stay> at the machine" in need(dialog, "text").get("1.0", "end")
            assert need(root, "agent_id").get() == "…"  # no ID before the answer
            assert acceptances(db) == []
            click(display, need(dialog, "accept" if accept else "decline"))
            if accept:
                agent_id, _password = credentials(root)
                assert acceptances(db) == [(agent_id, "1")]
            else:
                status = need(root, "status")
                pump_until(root, lambda: status.cget("text").startswith("Stopped"), 60)
                assert "not accepted" in need(root, "notices").cget("text")
                assert need(root, "agent_id").get() == "…"
                assert acceptances(db) == []
                # The agent stopped by itself; the window stays until the customer closes it.
                pump_until(root, lambda: win.bridge.join(0), 30, "the agent stopped")
                assert root.winfo_exists() and need(root, "status").winfo_viewable()
    finally:
        world.close()


def test_a_file_offered_shows_its_name_size_and_folder_and_only_allow_saves_it(
    world: World, root: tk.Tk, display: str, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    source = tmp_path / "printer-driver.deb"
    data = bytes(range(256)) * 4096  # 1,048,576 bytes: "1.0 MB"
    source.write_bytes(data)
    run = Path(tempfile.mkdtemp(prefix="ek"))  # short: a Unix socket path is limited
    try:
        with window_agent(world, root, display, incoming=incoming) as win:
            agent_id, password = credentials(root)
            tech = world.connect(agent_id, password, vnc=False, env={"XDG_RUNTIME_DIR": str(run)})
            pump_until(root, lambda: win.prompt.dialog is not None, 60, "the session's dialog")
            assert win.prompt.dialog is not None
            click(display, need(win.prompt.dialog.top, "allow"))
            pump_until(root, lambda: line(tech, event="control_socket"), 60, "the session")

            def offer() -> subprocess.Popen[str]:
                before = win.prompt.dialog
                proc = subprocess.Popen(
                    [ENKAKU, "session", "put", str(source), "--purpose", "fix the printer"],
                    env=world.env(XDG_RUNTIME_DIR=str(run)),
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
                pump_until(
                    root,
                    lambda: (
                        (d := win.prompt.dialog) is not None
                        and d is not before
                        and d.top.winfo_exists()
                    ),
                    60,
                    "the file dialog",
                )
                return proc

            denied = offer()
            assert win.prompt.dialog is not None
            top = win.prompt.dialog.top
            what = need(top, "what").cget("text")
            for shown in ("printer-driver.deb", "1.0 MB", str(incoming)):
                assert shown in what, (shown, what)
            click(display, need(top, "deny"))
            pump_until(root, lambda: denied.poll() is not None, 60, "the refused put")
            _out, err = denied.communicate()
            assert denied.returncode == 7, err
            assert "did not allow" in err
            assert sorted(incoming.iterdir()) == []  # nothing, not even a hidden part

            allowed = offer()
            assert win.prompt.dialog is not None
            click(display, need(win.prompt.dialog.top, "allow"))
            pump_until(root, lambda: allowed.poll() is not None, 60, "the allowed put")
            _out, err = allowed.communicate()
            assert allowed.returncode == 0, err
            assert (incoming / "printer-driver.deb").read_bytes() == data
            tech.signal(signal.SIGINT)
            pump_until(root, lambda: tech.proc.poll() is not None, 60, "the technician's end")
    finally:
        shutil.rmtree(run, ignore_errors=True)
