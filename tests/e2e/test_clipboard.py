"""Clipboard text through the whole system: a real server, the agent on a real Xvfb, and
`enkaku connect --vnc-listen` with viewers nobody here wrote. Nothing crosses until the
technician asked (`enkaku session allow clipboard`) and the customer allowed it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.test_clipboard_rfb import (
    LATIN1_FROM_CUSTOMER,
    LATIN1_TO_CUSTOMER,
    VNCDO_CLIPBOARD,
    clipboard,
    wait_text,
)
from tests.agent.test_rfbservice import needs_tigervnc, run, start_viewer
from tests.xdisplay import x_env, xvfb

from .harness import ENKAKU, World, free_port, make_db, server_process

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

TO_CUSTOMER = "技術者から：設定ファイルのパス /etc/cups/cupsd.conf"
FROM_CUSTOMER = "お客様から：エラー番号 0x80070005 が出ました"


def connected(world: World, display: str, rundir: Path) -> tuple[int, str]:
    """Agent on ``display`` (allowing what is asked), `enkaku connect --vnc-listen`;
    returns the VNC port and the session id."""
    agent = world.agent(display)
    creds = agent.next_line(60, event="credentials")
    tech = world.connect(creds["agent_id"], creds["password"], env={"XDG_RUNTIME_DIR": str(rundir)})
    session_id = tech.next_line(60, event="connected")["session_id"]
    port = int(tech.next_line(60, event="vnc_listening")["port"])
    tech.next_line(30, event="control_socket")
    return port, session_id


def session(world: World, rundir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENKAKU, "session", *args],
        env=world.env(XDG_RUNTIME_DIR=str(rundir)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_tigervnc
async def test_japanese_both_ways_with_tigervnc_once_allowed(world: World, rundir: Path) -> None:
    with (
        xvfb(640, 480) as agent_display,
        xvfb(1024, 768) as viewer_display,
        clipboard(agent_display) as customer,
    ):
        port, _sid = await asyncio.to_thread(connected, world, agent_display, rundir)
        viewer = await start_viewer(viewer_display, port, "-PreferredEncoding=ZRLE")
        try:
            # No window manager: give the viewer focus (it exchanges clipboards while
            # focused, as on any desktop).
            await run(
                "xdotool", "search", "--sync", "--name", "enkaku", "windowfocus",
                "mousemove", "50", "50", "click", "1",
                env=x_env(viewer_display),
            )  # fmt: skip
            with clipboard(viewer_display, primary=False) as technician:
                # Not allowed yet: the customer's copy stays on the customer's side.
                await asyncio.to_thread(customer.set_text, "before consent: private")
                allowed = await asyncio.to_thread(session, world, rundir, "allow", "clipboard")
                assert allowed.returncode == 0, allowed.stderr
                assert await asyncio.to_thread(technician.read_text) != "before consent: private"
                # Allowed: both ways, in Japanese (ExtendedClipboard, UTF-8).
                await asyncio.to_thread(technician.set_text, TO_CUSTOMER)
                await wait_text(customer, TO_CUSTOMER)
                await asyncio.to_thread(customer.set_text, FROM_CUSTOMER)
                await wait_text(technician, FROM_CUSTOMER)
        finally:
            viewer.terminate()
            await viewer.wait()


async def test_latin1_both_ways_with_vncdotool_plain_cut_text(world: World, rundir: Path) -> None:
    with xvfb(640, 480) as display, clipboard(display) as customer:
        port, _sid = await asyncio.to_thread(connected, world, display, rundir)
        allowed = await asyncio.to_thread(session, world, rundir, "allow", "clipboard", "--json")
        assert allowed.returncode == 0, allowed.stderr
        assert "clipboard" in json.loads(allowed.stdout.splitlines()[-1])["granted"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", VNCDO_CLIPBOARD, f"127.0.0.1::{port}", LATIN1_TO_CUSTOMER,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(60):
                assert await proc.stdout.readline() == b"pasted\n"
            await wait_text(customer, LATIN1_TO_CUSTOMER)
            await asyncio.to_thread(customer.set_text, LATIN1_FROM_CUSTOMER)
            async with asyncio.timeout(60):
                assert json.loads(await proc.stdout.readline()) == LATIN1_FROM_CUSTOMER
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def test_a_refused_allow_says_why_and_the_session_goes_on(tmp_path: Path, rundir: Path) -> None:
    """The server's implicit consent opens the session (screen and control) but never
    covers the clipboard, a shell or the report: the agent asks, finds no terminal to ask
    on, and refuses each."""
    world = World(tmp_path)
    try:
        server_process(world, make_db(tmp_path), free_port(), env={"ENKAKU_IMPLICIT_CONSENT": "1"})
        world.login()
        agent = world.agent(None, "agent", "ask")
        creds = agent.next_line(60, event="credentials")
        tech = world.connect(
            creds["agent_id"], creds["password"], vnc=False, env={"XDG_RUNTIME_DIR": str(rundir)}
        )
        tech.next_line(60, event="control_socket")
        refused = session(world, rundir, "allow", "clipboard")
        assert refused.returncode == 7, refused.stderr
        assert "clipboard" in refused.stderr and "Traceback" not in refused.stderr
        # The shell and the report are the customer's data too: asked, and refused here.
        for args in (("shell", "-c", "id"), ("info", "--json")):
            done = session(world, rundir, *args)
            assert done.returncode == 7, (args, done.stderr)
            assert "Traceback" not in done.stderr
        status = session(world, rundir, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert "clipboard" not in json.loads(status.stdout.splitlines()[-1])["granted"]
    finally:
        world.close()
