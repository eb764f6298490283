"""Transfers in progress in the banner and what was done in the end summary: the banner
shows what the services report, and a real session's put, get and screenshot are reported
(start, throttled progress, done) and listed in the summary."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import tkinter as tk
from pathlib import Path
from typing import Any

import pytest

from enkaku.agent.window.fonts import Fonts
from tests.e2e.harness import ENKAKU, World

from .helpers import FakeSession, click, loop_thread, need, pump_until
from .test_banner import WHO, on_loop, window_ui
from .test_e2e import credentials, line, window_agent
from .test_e2e import world as world

pytestmark = pytest.mark.x11


def transfer(state: str, done: int, direction: str = "receive") -> dict[str, Any]:
    size = 2_000_000
    return {"id": 3, "direction": direction, "name": "printer.deb", "size": size,
            "done": done, "state": state}  # fmt: skip


def test_the_banner_shows_a_transfer_and_the_summary_what_was_done(
    root: tk.Tk, fonts: Fonts
) -> None:
    with loop_thread(root) as bridge:
        ui = window_ui(root, fonts, bridge, FakeSession())
        on_loop(root, bridge, lambda: ui.session_started(WHO))
        shown = need(need(root, "banner"), "transfers")
        on_loop(root, bridge, lambda: ui.activity("transfer", transfer("start", 0)))
        pump_until(root, lambda: shown.cget("text") == "Receiving printer.deb: 0 %")
        on_loop(root, bridge, lambda: ui.activity("transfer", transfer("progress", 900_000)))
        pump_until(root, lambda: shown.cget("text") == "Receiving printer.deb: 45 %")
        on_loop(root, bridge, lambda: ui.activity("transfer", transfer("done", 2_000_000)))
        pump_until(root, lambda: shown.cget("text") == "")
        on_loop(root, bridge, lambda: ui.activity("screenshot", {"width": 1024, "height": 768}))
        failed = transfer("failed", 10, "send") | {"id": 4, "name": "secret.txt"}
        on_loop(root, bridge, lambda: ui.activity("transfer", failed))
        on_loop(root, bridge, lambda: ui.session_ended("customer_ended"))
        did = need(need(root, "summary"), "done").cget("text")
        assert did.splitlines() == [
            "What was done:",
            "• File received: printer.deb (2.0 MB)",
            "• Screenshot taken (1024 × 768)",
        ]  # a failed transfer is not something done


def test_a_real_sessions_transfers_and_screenshot_are_shown_and_summed_up(
    world: World,
    root: tk.Tk,
    display: str,
    tmp_path: Path,
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    source = tmp_path / "printer-driver.deb"
    source.write_bytes(bytes(range(256)) * 4096)  # 1,048,576 bytes: "1.0 MB"
    theirs = tmp_path / "report.log"
    theirs.write_bytes(b"x" * 300_000)
    run = Path(tempfile.mkdtemp(prefix="ek"))  # short: a Unix socket path is limited
    with window_agent(world, root, display, incoming=incoming) as win:
        calls: list[tuple[str, dict[str, Any]]] = []
        shown = win.ui.activity
        win.ui.activity = lambda k, i: (calls.append((k, dict(i))), shown(k, i))  # type: ignore[method-assign]
        agent_id, password = credentials(root)
        tech = world.connect(agent_id, password, vnc=False, env={"XDG_RUNTIME_DIR": str(run)})
        pump_until(root, lambda: win.prompt.dialog is not None, 60, "the session's dialog")
        assert win.prompt.dialog is not None
        click(display, need(win.prompt.dialog.top, "allow"))
        pump_until(root, lambda: line(tech, event="control_socket"), 60, "the session")

        def allowed(*argv: str) -> None:
            before = win.prompt.dialog
            proc = subprocess.Popen(
                [ENKAKU, "session", *argv], env=world.env(XDG_RUNTIME_DIR=str(run)),
                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            pump_until(
                root,
                lambda: (d := win.prompt.dialog) is not None and d is not before
                and d.top.winfo_exists(),
                60, "the dialog",
            )  # fmt: skip
            assert win.prompt.dialog is not None
            click(display, need(win.prompt.dialog.top, "allow"))
            pump_until(root, lambda: proc.poll() is not None, 60, " ".join(argv))
            _out, err = proc.communicate()
            assert proc.returncode == 0, err

        allowed("put", str(source))
        allowed("get", str(theirs), str(tmp_path / "got.log"))
        allowed("screenshot", str(tmp_path / "shot.png"))
        click(display, need(need(root, "banner"), "end"))
        did = need(need(root, "summary"), "done")
        pump_until(root, lambda: "Screenshot" in did.cget("text"), 30, "the summary")
        assert did.cget("text").splitlines() == [
            "What was done:",
            "• File received: printer-driver.deb (1.0 MB)",
            "• File sent: report.log (300.0 kB)",
            "• Screenshot taken (1024 × 768)",
        ]
        tech.signal(signal.SIGINT)
        pump_until(root, lambda: tech.proc.poll() is not None, 60, "the technician's end")
    put = [i for k, i in calls if k == "transfer" and i["direction"] == "receive"]
    assert [i["state"] for i in (put[0], put[-1])] == ["start", "done"]
    assert put[0]["done"] == 0 and put[-1]["done"] == 1_048_576
    percents = [i["done"] * 100 // i["size"] for i in put if i["state"] == "progress"]
    # Throttled: at most one report per whole percent, in order, up to 100.
    assert percents == sorted(set(percents)) and percents[-1] == 100
    assert all(i["name"] == "printer-driver.deb" for i in put)
