"""Start and stop private X servers for tests (stopped by PID, never by name): Xvfb, and
the X servers customers' machines run that Xvfb is not: Xorg itself (with the dummy
video driver, as on headless machines and in virtual machines without a screen) and
TigerVNC's Xvnc (servers whose desktop lives in a VNC session)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a child by its PID: SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_PIDS: dict[str, int] = {}


@contextmanager
def xvfb(
    width: int = 1024, height: int = 768, depth: int = 24, visual_class: int | None = None
) -> Iterator[str]:
    """Run a private Xvfb; yields its DISPLAY string (":N") once it accepts clients.
    ``visual_class``: the default visual's class (Xvfb's ``-cc``; 5: DirectColor)."""
    cc = [] if visual_class is None else ["-cc", str(visual_class)]
    with _x_server(
        "Xvfb",
        ["-screen", "0", f"{width}x{height}x{depth}", "-nolisten", "tcp", "-noreset",
         "+extension", "MIT-SHM", "+extension", "DAMAGE", "+extension", "XTEST", *cc],
    ) as display:  # fmt: skip
        yield display


#: Xorg's configuration for the dummy video driver: one screen of the size asked, a
#: mode of that size, no input devices (the agent's input goes through XTEST).
_XORG_DUMMY = """\
Section "ServerFlags"
    Option "AutoAddDevices" "false"
    Option "AutoEnableDevices" "false"
    Option "DontVTSwitch" "true"
EndSection
Section "Device"
    Identifier "dummy"
    Driver "dummy"
    VideoRam 256000
EndSection
Section "Monitor"
    Identifier "monitor"
    HorizSync 5.0-1000.0
    VertRefresh 5.0-200.0
    Modeline "{w}x{h}" {clock:.2f} {w} {w1} {w2} {w3} {h} {h1} {h2} {h3}
EndSection
Section "Screen"
    Identifier "screen"
    Device "dummy"
    Monitor "monitor"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Modes "{w}x{h}"
        Virtual {w} {h}
    EndSubSection
EndSection
"""


@contextmanager
def xorg(width: int = 1024, height: int = 768) -> Iterator[str]:
    """Run a private Xorg with the dummy video driver (packages xserver-xorg-core and
    xserver-xorg-video-dummy); yields its DISPLAY once it accepts clients. Needs root,
    as Xorg does outside a console login."""
    with tempfile.TemporaryDirectory(prefix="enkaku-xorg-") as tmp:
        conf = Path(tmp) / "xorg.conf"
        w1, w2, w3 = width + 48, width + 80, width + 160
        h1, h2, h3 = height + 1, height + 4, height + 30  # not "reduced blanking"
        clock = w3 * h3 * 60 / 1e6
        conf.write_text(_XORG_DUMMY.format(
            w=width, h=height, w1=w1, w2=w2, w3=w3, h1=h1, h2=h2, h3=h3, clock=clock,
        ))  # fmt: skip
        args = ["-config", str(conf), "-logfile", str(Path(tmp) / "xorg.log"), "-noreset",
                "-nolisten", "tcp", "-novtswitch", "-sharevts"]  # fmt: skip
        with _x_server("Xorg", args) as display:
            yield display


@contextmanager
def xvnc(width: int = 1024, height: int = 768) -> Iterator[str]:
    """Run a private TigerVNC Xvnc (package tigervnc-standalone-server), its own VNC
    port off: yields its DISPLAY once it accepts clients."""
    args = ["-geometry", f"{width}x{height}", "-depth", "24", "-rfbport", "-1",
            "-SecurityTypes", "None", "-nolisten", "tcp", "-noreset"]  # fmt: skip
    with _x_server("Xtigervnc", args) as display:
        yield display


@contextmanager
def _x_server(program: str, args: list[str]) -> Iterator[str]:
    """Run an X server that reports its display number on a pipe (-displayfd) only when
    it is ready, so parallel runs never race for a number or connect too early."""
    if shutil.which(program) is None:
        raise RuntimeError(f"{program} is not installed: run scripts/bootstrap")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [program, "-displayfd", str(write_fd), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,),
    )  # fmt: skip
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + 30
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_fd, 16) if ready else b""
            if not chunk:
                raise RuntimeError(f"{program} did not start (no display number reported)")
            number += chunk
    except BaseException:
        stop(proc)
        raise
    finally:
        os.close(read_fd)
    display = f":{int(number)}"
    try:
        _wait_accepting(display, proc)
    except BaseException:
        stop(proc)
        raise
    _PIDS[display] = proc.pid
    try:
        yield display
    finally:
        _PIDS.pop(display, None)
        stop(proc)


def _wait_accepting(display: str, proc: subprocess.Popen[Any]) -> None:
    """Wait until a client can open ``display``.

    Xvfb reports its number through -displayfd when its sockets exist; a client proves it.
    Xvfb runs with -noreset: by default an X server resets when its last client leaves
    and refuses connections meanwhile, which made a test's XOpenDisplay fail whenever it
    came just after another client (xdotool, xprop, this probe) disconnected.
    """
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    deadline = time.monotonic() + 30
    while True:
        dpy = x11.XOpenDisplay(display.encode())
        if dpy:
            x11.XCloseDisplay(dpy)
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the X server reported {display} but no client can open it")
        time.sleep(0.05)


def xvfb_pid(display: str) -> int:
    """The PID of the X server that xvfb(), xorg() or xvnc() started for ``display``."""
    return _PIDS[display]


def x_env(display: str) -> dict[str, str]:
    """The environment for a process that should run on ``display``."""
    env = dict(os.environ)
    env["DISPLAY"] = display
    return env


def keysym_bound(display: str, keysym_name: str) -> bool:
    """Whether a keycode of the display's keymap carries the keysym (``xmodmap``)."""
    table = subprocess.run(
        ["xmodmap", "-pke"], env=x_env(display), capture_output=True, text=True, check=True
    ).stdout
    return f" {keysym_name} " in table + " "


def xwd_root(display: str) -> npt.NDArray[np.uint8]:
    """The root window as (h, w, 3) R, G, B, read by xwd and parsed here (XWDFile.h)."""
    data = subprocess.run(
        ["xwd", "-root", "-silent", "-display", display], check=True, capture_output=True,
        timeout=30,
    ).stdout  # fmt: skip
    fields = struct.unpack(">25I", data[:100])
    header_size, version = fields[0], fields[1]
    assert version == 7
    depth, width, height = fields[3], fields[4], fields[5]
    byte_order, bpp, stride = fields[7], fields[11], fields[12]
    red_mask, green_mask, blue_mask = fields[14], fields[15], fields[16]
    ncolors = fields[19]
    assert (depth, bpp) == (24, 32) and (red_mask, green_mask, blue_mask) == (
        0xFF0000, 0xFF00, 0xFF,
    )  # fmt: skip
    offset = header_size + 12 * ncolors
    raw = np.frombuffer(data, dtype=np.uint8, count=stride * height, offset=offset)
    px = raw.reshape(height, stride)[:, : width * 4].reshape(height, width, 4)
    if byte_order == 1:  # MSBFirst: X R G B
        return px[:, :, 1:4].copy()
    return px[:, :, 2::-1].copy()  # LSBFirst: B G R X


@contextmanager
def x_client(
    args: list[str], display: str, stdout: int | None = subprocess.DEVNULL
) -> Iterator[subprocess.Popen[str]]:
    """Run an X client in a UTF-8 locale; stop it by PID afterwards."""
    env = x_env(display) | {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    proc = subprocess.Popen(args, env=env, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
    try:
        yield proc
    finally:
        stop(proc)


def wait_window(display: str, title: str) -> tuple[int, int, int, int]:
    """Wait for a mapped top-level window named ``title``; its (x, y, w, h)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["xwininfo", "-name", title, "-display", display], capture_output=True, text=True
        )
        if out.returncode == 0 and "IsViewable" in out.stdout:
            info = dict(
                line.strip().split(":", 1) for line in out.stdout.splitlines() if ":" in line
            )
            return (
                int(info["Absolute upper-left X"]), int(info["Absolute upper-left Y"]),
                int(info["Width"]), int(info["Height"]),
            )  # fmt: skip
        time.sleep(0.1)
    raise AssertionError(f"window {title!r} did not appear")
