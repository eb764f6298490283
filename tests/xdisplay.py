"""Start and stop private Xvfb displays for tests (stopped by PID, never by name)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
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


def _free_display() -> int:
    for n in range(40, 400):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number between :40 and :399")


@contextmanager
def xvfb(width: int = 1024, height: int = 768, depth: int = 24) -> Iterator[str]:
    """Run a private Xvfb; yields its DISPLAY string (":N")."""
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed: run scripts/bootstrap")
    for _attempt in range(5):
        n = _free_display()
        proc = subprocess.Popen(
            [
                "Xvfb",
                f":{n}",
                "-screen",
                "0",
                f"{width}x{height}x{depth}",
                "-nolisten",
                "tcp",
                "+extension",
                "MIT-SHM",
                "+extension",
                "DAMAGE",
                "+extension",
                "XTEST",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        if proc.poll() is None and Path(f"/tmp/.X11-unix/X{n}").exists():
            break
        proc.kill()
        proc.wait()
    else:
        raise RuntimeError("Xvfb did not start")
    try:
        yield f":{n}"
    finally:
        stop(proc)


def x_env(display: str) -> dict[str, str]:
    """The environment for a process that should run on ``display``."""
    env = dict(os.environ)
    env["DISPLAY"] = display
    return env


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
