"""The one-file agent: built by scripts/build-agent, served preconfigured by the server,
downloaded from its start page and run by a Python that has no enkaku installed.

The build (a shiv zip application per Python version, wheels from the package index)
runs once per test session and takes about a minute; it needs the package index.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from enkaku import __version__
from enkaku.agent.identity import DeviceKey
from enkaku.agent.preconfig import (
    BUILD_MEMBER,
    CONFIG_MEMBER,
    PreConfig,
    add_member,
    agent_argv,
)
from enkaku.protocol.agentlink import CLOSE_INCOMPATIBLE, PROTOCOL
from enkaku.protocol.rfb import Encoding
from tests.agent.test_rfb_slowlink import SocketReader
from tests.gnome import headless_mutter, places
from tests.portal import headless_portal
from tests.wayland import headless_sway
from tests.xdisplay import stop, wait_window, xvfb, xwd_root

from .harness import (
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
    xterm_on,
)

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
#: Debian 12's own interpreter: no venv, no enkaku, only what apt installed.
SYSTEM_PYTHON = "/usr/bin/python3"
#: More interpreters to run the downloaded file with ("PATH X.Y" pairs, comma-separated),
#: e.g. a Python 3.12 for the -py312 file.
EXTRA_PYTHONS = os.environ.get("ENKAKU_TEST_EXTRA_PYTHONS", "")


def get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.read(), dict(resp.headers)


def status(url: str) -> int:
    """The HTTP status of a GET that is expected to fail."""
    try:
        get(url)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code
    raise AssertionError(f"{url} did not fail")


def python_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def clean_env(world: World, tmp: Path) -> dict[str, str]:
    """No venv, no PYTHONPATH: the customer's plain desktop. shiv unpacks under tmp."""
    env = world.env(SHIV_ROOT=str(tmp / "shiv"), XDG_CONFIG_HOME=str(tmp / "xdg"))
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return env


@pytest.fixture(scope="session")
def agent_builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/agent as scripts/build-agent writes it, for 3.11 and 3.12 (once per session)."""
    base = tmp_path_factory.mktemp("agent-build")
    out = base / "agent"
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "scripts" / "build-agent"), "--out", str(out)),
            *("--work", str(base / "work"), "--python", "3.11", "--python", "3.12"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def serve(world: World, tmp: Path, *extra: str) -> None:
    """A real server (started with ``extra``) and a logged-in technician."""
    db = make_db(tmp)
    server_process(world, db, free_port(), *extra)
    world.login()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.close()


def download_link(world: World, python: str) -> str:
    """The link a customer follows: start page → download page → the file for ``python``."""
    home, _ = get(world.server_url + "/")
    assert b'href="/download/agent"' in home
    page, _ = get(world.server_url + "/download/agent")
    name = f"enkaku-agent-py{python.replace('.', '')}.pyz"
    match = re.search(rf'href="(/download/agent/{re.escape(name)}[^"]*)"', page.decode())
    assert match, page.decode()
    return world.server_url + match[1]


def test_without_builds_the_page_says_how_to_make_them(world: World, tmp_path: Path) -> None:
    serve(world, tmp_path)
    page, _ = get(world.server_url + "/download/agent")
    assert "scripts/build-agent" in page.decode()
    assert "ダウンロード用のファイルがありません" in page.decode()
    assert status(world.server_url + "/download/agent/enkaku-agent-py311.pyz") == 404


def test_each_download_carries_the_server_url_ca_and_code(world: World, tmp_path: Path) -> None:
    # A stand-in for a build (any zip with the right name): what is tested is the copy.
    agents = tmp_path / "agents"
    agents.mkdir()
    built = agents / "enkaku-agent-py311.pyz"
    with open(built, "wb") as fh:
        fh.write(b"#!/usr/bin/env python3\n")  # as shiv writes it: a shebang, then the zip
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("__main__.py", "print('agent')\n")
            zf.writestr("site-packages/big.bin", os.urandom(3 * 1024 * 1024))
    add_member(built, BUILD_MEMBER, b'{"python": "3.11"}')
    (agents / "notes.txt").write_text("not an agent file")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    serve(world, tmp_path, "--agent-dir", str(agents), "--agent-ca-file", str(ca))
    page, _ = get(world.server_url + "/download/agent?code=K-42")
    assert "python3 enkaku-agent-py311.pyz" in page.decode()
    assert "notes.txt" not in page.decode()
    for code in ("K-42", ""):
        url = download_link(world, "3.11").split("?")[0] + (f"?code={code}" if code else "")
        data, headers = get(url)
        assert headers["Content-Disposition"] == 'attachment; filename="enkaku-agent-py311.pyz"'
        copy = tmp_path / f"copy{code}.pyz"
        copy.write_bytes(data)
        assert data.startswith(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(copy) as zf:
            assert zf.testzip() is None
            assert zf.read("__main__.py") == b"print('agent')\n"
            config = PreConfig.from_json(json.loads(zf.read(CONFIG_MEMBER)))
        assert config == PreConfig(server=world.server_url, ca_pem=ca.read_text(), code=code)
    with zipfile.ZipFile(built) as zf:  # the build itself is left as it was
        assert CONFIG_MEMBER not in zf.namelist()
    assert status(world.server_url + "/download/agent/enkaku-agent-py311.pyz?code=a%20b") == 400
    assert status(world.server_url + "/download/agent/..%2Fserver.db") == 404


def test_options_the_customer_gives_win_over_the_baked_in_ones() -> None:
    config = PreConfig(server="https://support.example")
    ca = Path("ca.pem")
    assert agent_argv(["--headless"], config, ca) == [
        "agent",
        *("--server", "https://support.example", "--ca-file", "ca.pem", "--headless"),
    ]
    assert agent_argv(["--server=https://other.example", "--insecure"], config, ca) == [
        "agent",
        "--server=https://other.example",
        "--insecure",
    ]
    assert agent_argv([], PreConfig(), None) == ["agent"]


def interpreters() -> list[tuple[str, str]]:
    found = [(SYSTEM_PYTHON, "3.11")]
    for item in filter(None, EXTRA_PYTHONS.split(",")):
        path, version = item.split()
        found.append((path, version))
    return found


@pytest.mark.x11
@pytest.mark.parametrize(("python", "version"), interpreters())
def test_downloaded_agent_runs_on_plain_python_and_serves_a_session(
    world: World, tmp_path: Path, agent_builds: Path, python: str, version: str
) -> None:
    if python == SYSTEM_PYTHON and not Path(python).exists():
        pytest.fail(f"{python} is missing: this test runs the agent on the system's Python")
    assert python_version(python) == version
    no_enkaku = subprocess.run(
        [python, "-c", "import enkaku"], env=clean_env(world, tmp_path), capture_output=True
    )
    assert no_enkaku.returncode != 0, f"{python} has enkaku installed: not a plain Python"
    serve(world, tmp_path, "--agent-dir", str(agent_builds))
    data, _ = get(download_link(world, version))
    pyz = tmp_path / "Downloads" / f"enkaku-agent-py{version.replace('.', '')}.pyz"
    pyz.parent.mkdir()
    pyz.write_bytes(data)
    print(f"{pyz.name}: {len(data)} bytes")
    work = tmp_path / "desk"
    work.mkdir()
    with xvfb(640, 480) as display, xterm_on(display, work):
        # What the customer types, plus the options of a scripted run: no --server.
        args = [python, str(pyz), "--headless", "--consent", "allow", "--display", display]
        args += ["--config-dir", str(tmp_path / "agent-config")]
        agent = Proc(args, env=clean_env(world, tmp_path), name="agent", log_dir=tmp_path)
        world.procs.append(agent)
        creds = agent.next_line(120, event="credentials")
        tech = world.connect(creds["agent_id"], creds["password"])
        port = int(tech.next_line(60, event="vnc_listening")["port"])
        shot = tmp_path / "capture.png"

        def same() -> bool:
            subprocess.run(
                [VNCDO, "-s", f"127.0.0.1::{port}", "capture", str(shot)],
                check=True,
                timeout=120,
                capture_output=True,
            )
            got = np.asarray(Image.open(shot).convert("RGB"))
            return bool(np.array_equal(got, xwd_root(display)))

        wait_for(same, 60, "the customer's screen at the technician's VNC viewer")


def test_a_file_for_another_python_says_which_one_to_download(
    world: World, tmp_path: Path, agent_builds: Path
) -> None:
    serve(world, tmp_path, "--agent-dir", str(agent_builds))
    data, _ = get(download_link(world, "3.12"))
    pyz = tmp_path / "enkaku-agent-py312.pyz"
    pyz.write_bytes(data)
    done = subprocess.run(
        [SYSTEM_PYTHON, str(pyz), "--headless"],
        env=clean_env(world, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "This file is for Python 3.12, but this computer runs Python 3.11" in done.stderr
    assert f"{world.server_url}/download/agent" in done.stderr
    assert "python3 enkaku-agent-py311.pyz" in done.stderr


def test_the_page_names_the_packages_wayland_desktops_need(
    world: World, tmp_path: Path, agent_builds: Path
) -> None:
    serve(world, tmp_path, "--agent-dir", str(agent_builds))
    page = get(world.server_url + "/download/agent")[0].decode()
    assert "sudo apt install gstreamer1.0-pipewire gstreamer1.0-plugins-base" in page
    assert "sudo dnf install pipewire-gstreamer gstreamer1-plugins-base" in page
    assert "GStreamer の PipeWire プラグイン" in page
    # The portal backend's packages, for KDE where they might be missing.
    assert "sudo apt install xdg-desktop-portal xdg-desktop-portal-kde" in page
    assert "sudo dnf install xdg-desktop-portal-kde" in page
    assert "画面共有ポータル" in page and "screen-sharing portal" in page
    # The Wayland backends' compiled modules, built for each file's own Python.
    for version in ("311", "312"):
        with zipfile.ZipFile(agent_builds / f"enkaku-agent-py{version}.pyz") as zf:
            names = set(zf.namelist())
        tag = f"cpython-{version}-x86_64-linux-gnu.so"
        assert f"site-packages/pywayland/_ffi.{tag}" in names
        assert f"site-packages/dbus_fast/message_bus.{tag}" in names
        # The compiled encoder core: one C library for every version (ctypes).
        assert "site-packages/enkaku/native/_rfbcore.so" in names


def test_the_downloaded_agent_has_the_wayland_backends_on_plain_python(
    world: World, tmp_path: Path, agent_builds: Path
) -> None:
    """On the system's Python (no venv), the file's pywayland and dbus-fast load: a forced
    backend with nothing to serve stops with the bilingual message, not an ImportError
    nor "pywayland/dbus-fast is not installed"."""
    env = clean_env(world, tmp_path)
    for name in ("WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XDG_CURRENT_DESKTOP"):
        env.pop(name, None)
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    pyz = str(agent_builds / "enkaku-agent-py311.pyz")
    args = ["--server", "http://127.0.0.1:9", "--headless", "--config-dir", str(tmp_path / "a")]
    runs = {
        "wayland-wlroots": [SYSTEM_PYTHON, pyz, *args, "--backend", "wayland-wlroots"],
        # A real session bus without mutter: dbus-fast connects and asks it.
        "wayland-gnome": ["dbus-run-session", "--", SYSTEM_PYTHON, pyz, *args,
                          "--backend", "wayland-gnome"],
    }  # fmt: skip
    for backend, cmd in runs.items():
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        err = done.stderr
        assert done.returncode == 2, err
        assert "Traceback" not in err and "is not installed" not in err, err
        assert "this desktop's screen cannot be shared" in err, err
        assert "の画面は共有できません" in err, err
        if backend == "wayland-wlroots":
            assert "no Wayland compositor socket" in err, err
        else:
            assert "org.gnome.Mutter.RemoteDesktop) is not on the bus" in err, err


def test_the_downloaded_agent_serves_a_sway_desktop(
    world: World, tmp_path: Path, agent_builds: Path
) -> None:
    """The file downloaded from the page, started on the system's Python inside a
    headless sway session, picks wayland-wlroots itself (auto): with no X display, no
    GNOME and no session bus for the portal, no other backend could serve, and the
    technician's viewer shows what grim sees. (The file's log stays at warnings, so the
    "screen backend:" line is not printed.)"""
    serve(world, tmp_path, "--agent-dir", str(agent_builds))
    data, _ = get(download_link(world, "3.11"))
    pyz = tmp_path / "enkaku-agent-py311.pyz"
    pyz.write_bytes(data)
    with headless_sway(640, 480) as sway:
        env = {**clean_env(world, tmp_path), **sway.env}
        for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_CURRENT_DESKTOP", "DISPLAY"):
            env.pop(name, None)
        args = [SYSTEM_PYTHON, str(pyz), "--headless", "--consent", "allow"]
        args += ["--config-dir", str(tmp_path / "agent-config")]
        agent = Proc(args, env=env, name="agent", log_dir=tmp_path)
        world.procs.append(agent)
        creds = agent.next_line(120, event="credentials")
        tech = world.connect(creds["agent_id"], creds["password"])
        port = int(tech.next_line(60, event="vnc_listening")["port"])
        shot = tmp_path / "capture.png"

        def same() -> bool:
            subprocess.run(
                [VNCDO, "-s", f"127.0.0.1::{port}", "capture", str(shot)],
                check=True, timeout=120, capture_output=True,
            )  # fmt: skip
            got = np.asarray(Image.open(shot).convert("RGB"))
            return bool(np.array_equal(got, sway.grim()))

        wait_for(same, 60, "the sway screen at the technician's VNC viewer")
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0


def test_the_downloaded_agent_serves_a_gnome_desktop_and_types_into_foot(
    world: World, tmp_path: Path, agent_builds: Path
) -> None:
    """The file downloaded from the page, started on the system's Python inside a
    headless GNOME session (mutter, PipeWire, foot), picks wayland-gnome itself (auto):
    its bundled dbus-fast talks to mutter, the system's GStreamer (through ctypes; no
    python3-gi) reads the frames. The technician's vncdotool types a command that runs
    in foot, and its capture equals mutter's own screen-cast frame. Without GStreamer's
    PipeWire plugin the same file stops with the bilingual message naming the packages."""
    serve(world, tmp_path, "--agent-dir", str(agent_builds))
    data, _ = get(download_link(world, "3.11"))
    pyz = tmp_path / "enkaku-agent-py311.pyz"
    pyz.write_bytes(data)
    with headless_mutter(800, 600) as gnome:
        env = {**clean_env(world, tmp_path), **gnome.env}
        env.pop("DISPLAY", None)
        args = [SYSTEM_PYTHON, str(pyz), "--headless", "--consent", "allow"]
        # GStreamer without its PipeWire plugin (an empty plugin path and registry).
        no_plugins = tmp_path / "no-gst-plugins"
        no_plugins.mkdir()
        bare = {**env, "GST_PLUGIN_SYSTEM_PATH_1_0": str(no_plugins),
                "GST_PLUGIN_PATH_1_0": str(no_plugins),
                "GST_REGISTRY_1_0": str(tmp_path / "gst-registry.bin")}  # fmt: skip
        done = subprocess.run(
            [*args, "--config-dir", str(tmp_path / "cfg-bare")],
            env=bare, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        err = done.stderr
        assert done.returncode == 2, err
        assert "Traceback" not in err, err
        assert "wayland-gnome" in err and "pipewiresrc" in err, err
        assert "gstreamer1.0-pipewire" in err and "pipewire-gstreamer" in err, err
        assert "GStreamer とその PipeWire プラグイン" in err, err
        # With the plugin: the screen is served and keys land in foot.
        agent = Proc([*args, "--config-dir", str(tmp_path / "agent-config")], env=env,
                     name="agent", log_dir=tmp_path)  # fmt: skip
        world.procs.append(agent)
        creds = agent.next_line(120, event="credentials")
        tech = world.connect(creds["agent_id"], creds["password"])
        port = int(tech.next_line(60, event="vnc_listening")["port"])

        def vncdo(*commands: str) -> None:
            subprocess.run([VNCDO, "-s", f"127.0.0.1::{port}", *commands], check=True,
                           timeout=120, capture_output=True)  # fmt: skip

        vncdo("type", "echo onefile-gnome-5K > result.txt", "key", "enter")
        out = gnome.work / "result.txt"
        wait_for(lambda: out.exists() and out.read_text() == "onefile-gnome-5K\n", 30,
                 "the command typed through the one-file agent")  # fmt: skip
        shot = tmp_path / "capture.png"

        def same() -> bool:
            vncdo("capture", str(shot))
            got = np.asarray(Image.open(shot).convert("RGB"))
            return bool(np.array_equal(got, gnome.screenshot()))

        wait_for(same, 60, "the GNOME screen at the technician's VNC viewer")
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0


def test_the_downloaded_agent_serves_the_desktop_through_the_portal(
    world: World, tmp_path: Path, agent_builds: Path
) -> None:
    """The file downloaded from the page, on the system's Python, with ``--backend
    wayland-portal`` in a headless GNOME session that has the desktop portal
    (xdg-desktop-portal 1.16 + xdg-desktop-portal-gnome 43, tests/portal.py): the
    technician's first connection brings the portal's two dialogs (share the monitor,
    allow remote interaction), which the customer answers; the command vncdotool types
    runs in foot, and vncdotool's capture, over later connections that start from the
    kept restore token with no dialog, equals mutter's own screen cast without the
    pointer; and a viewer that asks for the Cursor pseudo-encoding gets foot's I-beam
    over foot and the arrow over the desktop (the file reads the pointer's shape as
    cursor metadata through its own PipeWire stream)."""
    serve(world, tmp_path, "--agent-dir", str(agent_builds))
    data, _ = get(download_link(world, "3.11"))
    pyz = tmp_path / "enkaku-agent-py311.pyz"
    pyz.write_bytes(data)
    with headless_portal(800, 600) as portal:
        inside, outside, _ = places(portal.mutter)
        env = {**clean_env(world, tmp_path), **portal.env}
        env.pop("DISPLAY", None)
        config = tmp_path / "agent-config"
        args = [SYSTEM_PYTHON, str(pyz), "--headless", "--consent", "allow", "--backend",
                "wayland-portal", "--config-dir", str(config)]  # fmt: skip
        agent = Proc(args, env=env, name="agent", log_dir=tmp_path)
        world.procs.append(agent)
        creds = agent.next_line(120, event="credentials")
        tech = world.connect(creds["agent_id"], creds["password"])
        port = int(tech.next_line(60, event="vnc_listening")["port"])
        server = ["-s", f"127.0.0.1::{port}"]
        # The first connection stays open ("pause"): its injector keeps the portal's
        # remote-desktop session, which Debian 12's portal cannot restore, so the
        # captures below ask nothing. Stopped by PID.
        first = subprocess.Popen(
            [VNCDO, *server, "type", "echo onefile-portal-3M > result.txt", "key", "enter",
             "pause", "600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            portal.answer(remote=False)  # the capture: the customer shares the monitor
            portal.answer(remote=True)  # the input: allows remote interaction
            out = portal.mutter.work / "result.txt"
            wait_for(lambda: out.exists() and out.read_text() == "onefile-portal-3M\n", 60,
                     "the command typed through the portal")  # fmt: skip
            assert (config / "portal_screencast_token").exists()
            dialogs = portal.dialogs
            shot = tmp_path / "capture.png"

            def same() -> bool:
                subprocess.run([VNCDO, *server, "capture", str(shot)], check=True,
                               timeout=120, capture_output=True)  # fmt: skip
                got = np.asarray(Image.open(shot).convert("RGB"))
                return bool(np.array_equal(got, portal.mutter.screenshot(pointer=False)))

            wait_for(same, 60, "the screen through the portal at the technician's VNC viewer")
            with CursorViewer(port) as viewer:

                def shown(point: tuple[int, int], beam: bool) -> bool:
                    """The pointer moved off and onto ``point`` brings foot's I-beam (or
                    the arrow); a first entry into foot may bring an empty shape
                    (docs/wayland.md), so this is asked again."""
                    viewer.pointer(*(outside if beam else inside))
                    viewer.pointer(*point)
                    while (shape := viewer.next_shape(2)) is not None:
                        hx, hy, w, h = shape
                        if w > 1 and (hx >= w // 4 and hy >= h // 4) == beam:
                            return True
                    return False

                wait_for(lambda: shown(inside, True), 60, "foot's I-beam at the viewer")
                wait_for(lambda: shown(outside, False), 60, "the arrow at the viewer")
            assert portal.dialogs == dialogs and portal.share_button() is None
        finally:
            stop(first)
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0


class CursorViewer:
    """A small RFB 3.8 viewer (security None, Raw and the Cursor pseudo-encoding) that
    reads the pointer shapes the agent sends; it asks for the next update after each."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        r = self.r = SocketReader(self.sock)
        assert r.take(12) == b"RFB 003.008\n"
        self.sock.sendall(b"RFB 003.008\n")
        assert 1 in r.take(r.take(1)[0])  # security None offered
        self.sock.sendall(b"\x01")
        assert r.take(4) == b"\0\0\0\0"
        self.sock.sendall(b"\x01")  # shared
        self.w, self.h, bits = r.unpack("!HHB15x")
        self.bpp = bits // 8
        r.take(r.unpack("!I")[0])  # the desktop's name
        self.sock.sendall(struct.pack("!BxHii", 2, 2, Encoding.RAW, Encoding.CURSOR))
        self.sock.sendall(struct.pack("!BBHHHH", 3, 0, 0, 0, self.w, self.h))

    def pointer(self, x: int, y: int) -> None:
        self.sock.sendall(struct.pack("!BBHH", 5, 0, x, y))

    def next_shape(self, wait: float) -> tuple[int, int, int, int] | None:
        """The next pointer shape sent (hotspot x, y, width, height); None when no update
        begins within ``wait`` seconds (updates without a shape are read and passed)."""
        while True:
            if not self.r.buf and not select.select([self.sock], [], [], wait)[0]:
                return None
            kind, count = self.r.unpack("!BxH")
            assert kind == 0, kind  # FramebufferUpdate: nothing else was asked for
            shape = None
            for _ in range(count):
                x, y, w, h, encoding = self.r.unpack("!HHHHi")
                size = w * h * self.bpp
                if encoding == Encoding.CURSOR:
                    size += (w + 7) // 8 * h
                    shape = (x, y, w, h)
                else:
                    assert encoding == Encoding.RAW, encoding
                self.r.take(size)
            self.sock.sendall(struct.pack("!BBHHHH", 3, 1, 0, 0, self.w, self.h))
            if shape is not None:
                return shape

    def __enter__(self) -> CursorViewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


AgentLinkHandler = Callable[[web.WebSocketResponse], Awaitable[None]]


async def run_agent_against(
    handler: AgentLinkHandler, tmp_path: Path, lang: str
) -> tuple[str, str]:
    """A headless agent run to its end against a fake server whose /ws/agent is
    ``handler``: the server's URL and what the agent told the customer."""

    async def agent_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await handler(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws/agent", agent_ws)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        server = f"http://127.0.0.1:{port}"
        agent = await asyncio.create_subprocess_exec(
            ENKAKU, "agent", "--server", server, "--headless", "--display", "none",
            "--accept-terms", "1", "--config-dir", str(tmp_path / "agent"),
            env=dict(os.environ, ENKAKU_LANG=lang),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(agent.communicate(), 60)
    finally:
        await runner.cleanup()
    assert agent.returncode == 0
    return server, err.decode()


async def test_an_agent_for_another_link_protocol_stops_and_says_where_to_get_one(
    tmp_path: Path,
) -> None:
    """A server that announces protocol 2 (a later enkaku): the agent does not retry
    forever with an error the customer cannot act on; it names the download page."""
    hellos: list[str] = []

    async def later_server(ws: web.WebSocketResponse) -> None:
        await ws.send_str(json.dumps({"type": "challenge", "nonce": "ab" * 32, "protocol": 2}))
        async for msg in ws:  # the agent must not answer; it closes
            hellos.append(str(msg.data))

    server, err = await run_agent_against(later_server, tmp_path, "en")
    assert f"Download the current program from {server}/download/agent" in err
    assert "retrying" not in err
    assert hellos == []


async def test_a_server_that_refuses_the_agents_link_protocol_stops_it_with_the_download_page(
    tmp_path: Path,
) -> None:
    """The agent names its link protocol in hello; a server that does not speak it closes
    4426, and the agent stops with the download message instead of retrying."""
    hellos: list[dict[str, Any]] = []

    async def refusing_server(ws: web.WebSocketResponse) -> None:
        await ws.send_str(json.dumps({"type": "challenge", "nonce": "ab" * 32, "protocol": 1}))
        hellos.append(json.loads((await ws.receive(timeout=30)).data))
        await ws.close(code=CLOSE_INCOMPATIBLE, message=b"agent link protocol 1 required")

    server, err = await run_agent_against(refusing_server, tmp_path, "ja")
    assert [h["protocol"] for h in hellos] == [PROTOCOL]  # one try, naming its version
    assert f"{server}/download/agent から最新のプログラムをダウンロード" in err, err


async def test_the_server_closes_an_agent_of_another_link_protocol(
    world: World, tmp_path: Path
) -> None:
    await asyncio.to_thread(serve, world, tmp_path)
    key = DeviceKey.load_or_create(tmp_path / "future")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(world.server_url + "/ws/agent") as ws,
    ):
        challenge = await ws.receive_json(timeout=30)
        nonce = bytes.fromhex(challenge["nonce"])
        await ws.send_json(
            {
                "type": "hello",
                "public_key": key.public_hex,
                "signature": key.sign_challenge(nonce),
                "agent_version": "99.0.0",
                "platform": "linux",
                "protocol": PROTOCOL + 1,
            }
        )
        msg = await ws.receive(timeout=30)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_INCOMPATIBLE
    assert msg.extra == f"agent link protocol {PROTOCOL} required"
    # The same key speaking this server's protocol is served as usual.
    welcome = await hello_as(world.server_url, tmp_path / "future", __version__)
    assert welcome["type"] == "welcome"


def test_a_server_with_a_private_ca_bakes_it_into_the_download(
    world: World, tmp_path: Path, agent_builds: Path
) -> None:
    from .test_tls import make_pki

    ca, cert, key = make_pki(tmp_path)
    port = free_port()
    server_process(
        world, make_db(tmp_path), port,
        "--tls-cert", str(cert), "--tls-key", str(key),
        "--agent-dir", str(agent_builds), "--agent-ca-file", str(ca),
        scheme="https",
    )  # fmt: skip
    trust = ssl.create_default_context(cafile=str(ca))
    url = f"{world.server_url}/download/agent/enkaku-agent-py311.pyz"
    with urllib.request.urlopen(url, timeout=60, context=trust) as resp:
        pyz = tmp_path / "enkaku-agent-py311.pyz"
        pyz.write_bytes(resp.read())
    env = clean_env(world, tmp_path)
    env.pop("ENKAKU_CA_FILE", None)
    # No --server, no --ca-file: both come from the file, and the TLS link is verified.
    args = [SYSTEM_PYTHON, str(pyz), "--headless", "--display", "none", "--consent", "deny"]
    agent = Proc(
        [*args, "--config-dir", str(tmp_path / "agent")], env=env, name="agent", log_dir=tmp_path
    )
    world.procs.append(agent)
    creds = agent.next_line(120, event="credentials")
    assert len(creds["agent_id"]) == 9
    written = tmp_path / "xdg" / "enkaku" / "agent" / "server-ca.pem"
    assert written.read_text() == ca.read_text()


def _allow_button(display: str, title: str) -> tuple[tuple[int, int, int, int] | None, str]:
    """The Allow button's (w, h, x, y) in the dialog named ``title`` (None while its
    widgets are not laid out), and the window tree it was read from: of the dialog's X
    windows (every Tk widget is one) the two lowest leaves are its buttons, Allow left of
    Deny (consentdialog.py packs them so)."""
    x, y, w, h = wait_window(display, title)
    tree = subprocess.run(
        ["xwininfo", "-tree", "-name", title, "-display", display],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # "0x2a00012 (has no name): ()  86x30+0+0  +412+318": size, then absolute position.
    boxes = [
        tuple(int(v) for v in m.groups())
        for m in re.finditer(r"\b(\d+)x(\d+)\+-?\d+\+-?\d+\s+\+(-?\d+)\+(-?\d+)", tree)
    ]
    inside = [b for b in boxes if x <= b[2] and b[2] + b[0] <= x + w and b[3] + b[1] <= y + h]
    lowest = max((b[3] for b in inside if b[0] < w // 2), default=None)
    buttons = sorted((b for b in inside if b[3] == lowest and b[0] < w // 2), key=lambda b: b[2])
    if len(buttons) != 2:
        return None, tree  # its widgets are not laid out yet
    bw, bh, bx, by = buttons[0]
    return (bw, bh, bx, by), tree


def click_allow(display: str, title: str) -> None:
    """Click "Allow" once in the consent dialog named ``title`` of another process, once
    its layout has settled (the same button position read twice, half a second apart),
    and wait until the dialog is gone; if it stays, say where the click went."""
    env = {**os.environ, "DISPLAY": display}
    button, tree = _allow_button(display, title)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again, tree = _allow_button(display, title)
        if again is not None and again == button:
            break
        button = again  # not there yet, or still laying out: read it again
    assert button is not None, f"no Allow button in the dialog {title!r}:\n{tree}"
    bw, bh, bx, by = button
    subprocess.run(["xdotool", "mousemove", "--sync", str(bx + bw // 2), str(by + bh // 2)],
                   env=env, check=True, timeout=30)  # fmt: skip
    subprocess.run(["xdotool", "click", "1"], env=env, check=True, timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["xwininfo", "-name", title, "-display", display], capture_output=True, text=True
        )
        if shown.returncode != 0 or "IsViewable" not in shown.stdout:
            return
        time.sleep(0.2)
    where = subprocess.run(["xdotool", "getmouselocation"], env=env, capture_output=True,
                           text=True).stdout  # fmt: skip
    _, now = _allow_button(display, title)
    raise AssertionError(
        f"the dialog {title!r} stayed after a click on Allow at {button} ({where.strip()});"
        f" read before the click:\n{tree}\nnow:\n{now}"
    )


@pytest.mark.x11
def test_the_downloaded_agent_opens_its_window_and_its_id_serves_a_session(
    world: World, tmp_path: Path, agent_builds: Path
) -> None:
    """Acceptance 6 with the window: started exactly as the page says, the window opens
    with an ID (also on stdout, the line IT staff and scripts read), the technician uses
    that ID and password, the customer clicks Allow in the window's dialog, and the
    technician sees the customer's screen."""
    serve(world, tmp_path, "--agent-dir", str(agent_builds))
    data, _ = get(download_link(world, "3.11"))
    pyz = tmp_path / "enkaku-agent-py311.pyz"
    pyz.write_bytes(data)

    with xvfb(800, 600) as display:
        # Exactly `python3 enkaku-agent-py311.pyz` on a Japanese desktop (only the device
        # key goes to a test folder through XDG_CONFIG_HOME, as clean_env sets it).
        env = clean_env(world, tmp_path)
        env.update(DISPLAY=display, ENKAKU_LANG="ja")
        agent = Proc([SYSTEM_PYTHON, str(pyz)], env=env, name="agent", log_dir=tmp_path)
        world.procs.append(agent)
        creds = agent.next_line(120, event="credentials")
        assert creds["server"] == world.server_url and len(creds["agent_id"]) == 9
        wait_window(display, "enkaku リモートサポート")
        tech = world.connect(creds["agent_id"], creds["password"])
        session_id = tech.next_line(60, event="session")["session_id"]
        click_allow(display, "許可の確認")
        tech.next_line(60, event="connected")
        port = int(tech.next_line(60, event="vnc_listening")["port"])
        bx, by, bw, bh = wait_window(display, "リモートサポート中")  # the banner
        shot = tmp_path / "capture.png"

        def same() -> bool:
            """The technician's view equals the screen, but for the banner (its clock
            ticks every second)."""
            subprocess.run(
                [VNCDO, "-s", f"127.0.0.1::{port}", "capture", str(shot)],
                check=True, timeout=120, capture_output=True,
            )  # fmt: skip
            got = np.asarray(Image.open(shot).convert("RGB")).copy()
            want = xwd_root(display).copy()
            for frame in (got, want):
                frame[max(by, 0) : by + bh, max(bx, 0) : bx + bw] = 0
            return bool(np.array_equal(got, want))

        wait_for(same, 60, "the customer's screen at the technician's VNC viewer")
        agent.signal(signal.SIGTERM)  # as closing the window: the customer ends it
        assert agent.wait(30) == 0
        wait_for(lambda: tech.proc.poll() is not None, 60, "the technician's end")
    record = session_record(world.server_url, saved_token(world), session_id)
    assert record["end_reason"] == "customer_ended"


async def hello_as(server_url: str, key_dir: Path, version: str) -> dict[str, Any]:
    """The welcome a real server sends an agent that says it is ``version``."""
    key = DeviceKey.load_or_create(key_dir)
    async with aiohttp.ClientSession() as http, http.ws_connect(server_url + "/ws/agent") as ws:
        challenge = await ws.receive_json(timeout=30)
        assert challenge["protocol"] == PROTOCOL
        nonce = bytes.fromhex(challenge["nonce"])
        await ws.send_json(
            {
                "type": "hello",
                "public_key": key.public_hex,
                "signature": key.sign_challenge(nonce),
                "agent_version": version,
                "platform": "linux",
            }
        )
        return dict(await ws.receive_json(timeout=30))


async def test_the_server_tells_an_older_agent_where_the_current_one_is(
    world: World, tmp_path: Path
) -> None:
    await asyncio.to_thread(serve, world, tmp_path)
    old = await hello_as(world.server_url, tmp_path / "old", "0.0.9")
    assert old["type"] == "welcome"
    assert old["update_url"] == f"{world.server_url}/download/agent"
    for version in (__version__, "99.0.0", "not-a-version"):
        welcome = await hello_as(world.server_url, tmp_path / version, version)
        assert welcome["type"] == "welcome" and "update_url" not in welcome


async def test_the_agent_shows_the_update_url_once(tmp_path: Path) -> None:
    """A server's welcome with update_url: the customer is told once where to look."""

    async def agent_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "challenge", "nonce": "ab" * 32, "protocol": PROTOCOL})
        await ws.receive()  # the hello
        await ws.send_json(
            {
                "type": "welcome",
                "agent_id": "123456789",
                "heartbeat": 5,
                "update_url": "https://support.example/download/agent",
            }
        )
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws/agent", agent_ws)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    agent = await asyncio.create_subprocess_exec(
        ENKAKU, "agent", "--server", f"http://127.0.0.1:{port}", "--headless",
        "--display", "none", "--config-dir", str(tmp_path / "agent"),
        env=dict(os.environ, ENKAKU_LANG="en"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert agent.stdout is not None and agent.stderr is not None
        line = json.loads(await asyncio.wait_for(agent.stdout.readline(), 60))
        assert line["event"] == "credentials"
    finally:
        agent.terminate()
        _, err = await asyncio.wait_for(agent.communicate(), 60)
        await runner.cleanup()
    text = err.decode()
    assert text.count("A newer version of this support program is available") == 1
    assert "https://support.example/download/agent" in text
