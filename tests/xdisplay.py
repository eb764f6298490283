"""Start and stop private Xvfb displays for tests (stopped by PID, never by name)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def x_env(display: str) -> dict[str, str]:
    """The environment for a process that should run on ``display``."""
    env = dict(os.environ)
    env["DISPLAY"] = display
    return env
