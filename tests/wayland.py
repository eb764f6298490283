"""Start and stop a private headless sway (with foot) for tests; stopped by PID.

sway refuses to run as root, so under root the compositor and its clients run as a
system user made for the purpose (``enkaku-wl``, created on first use). Everything
lives in a fresh runtime folder under /tmp that the user owns; the test process
(root or the user itself) reaches the compositor through its socket there.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from enkaku.agent.input.wlroots import WlrootsInput
from tests.xdisplay import stop

TEST_USER = "enkaku-wl"


@dataclass
class Sway:
    runtime: Path  # XDG_RUNTIME_DIR
    socket: Path  # the Wayland socket (absolute: WAYLAND_DISPLAY may name it so)
    work: Path  # foot's shell starts here; writable by the compositor's user
    ipc: Path  # SWAYSOCK
    pid: int
    width: int
    height: int
    x_display: str | None = None  # XWayland's $DISPLAY (``xwayland=True``)

    @property
    def env(self) -> dict[str, str]:
        """What a client needs to reach this compositor."""
        return {"XDG_RUNTIME_DIR": str(self.runtime), "WAYLAND_DISPLAY": str(self.socket)}

    def swaymsg(self, *args: str) -> str:
        """Run a sway command (or an IPC query) against this compositor."""
        env = {**os.environ, **self.env, "SWAYSOCK": str(self.ipc)}
        out = subprocess.run(
            ["swaymsg", *args], env=env, check=True, capture_output=True, timeout=30
        )
        return out.stdout.decode()

    def grim(self) -> npt.NDArray[np.uint8]:
        """The output as `grim` sees it: (h, w, 3) RGB."""
        out = subprocess.run(
            ["grim", "-t", "ppm", "-"], env={**os.environ, **self.env},
            check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        return _parse_ppm(out)


def _parse_ppm(data: bytes) -> npt.NDArray[np.uint8]:
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError("not an 8-bit binary PPM")
    w, h = int(fields[1]), int(fields[2])
    pixels = np.frombuffer(data, dtype=np.uint8, count=w * h * 3, offset=pos + 1)
    return pixels.reshape(h, w, 3)


def _user() -> tuple[int, int] | None:
    """The uid/gid to run sway as: None when we are not root (then as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        # Two test workers may both find it missing: the loser's useradd fails (exit 9,
        # "already exists", or a lock on /etc/passwd), and the entry is there all the same.
        made = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", TEST_USER],
            capture_output=True,
        )  # fmt: skip
        for _ in range(50):
            try:
                entry = pwd.getpwnam(TEST_USER)
                break
            except KeyError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"cannot create the user {TEST_USER}: {made.stderr.decode()}")
    return entry.pw_uid, entry.pw_gid


def _tree(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        ["swaymsg", "-t", "get_tree", "-r"], env=env, capture_output=True, timeout=30
    )
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _foot_pid(node: dict[str, Any]) -> int | None:
    if node.get("app_id") == "foot" and node.get("visible") and node.get("focused"):
        return int(node["pid"])
    for child in node.get("nodes", []) + node.get("floating_nodes", []):
        if (pid := _foot_pid(child)) is not None:
            return pid
    return None


def _prompt_shown(runtime: Path, socket: Path) -> bool:
    """Whether foot drew its shell's prompt (the top text row is not all background):
    keys sent before foot is up and focused are lost."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "WAYLAND_DISPLAY": str(socket)}
    out = subprocess.run(["grim", "-t", "ppm", "-"], env=env, capture_output=True, timeout=60)
    if out.returncode != 0:
        return False
    top = _parse_ppm(out.stdout)[:20]
    return bool((top != top[0, 0]).any())


def _x_display(runtime: Path, work: Path, ipc: Path, deadline: float) -> str:
    """XWayland's $DISPLAY, as sway gives it to the programs it starts."""
    out = work / ".x-display"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SWAYSOCK": str(ipc)}
    subprocess.run(
        ["swaymsg", f"exec 'echo \"$DISPLAY\" > {out}'"],
        env=env, check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    display = ""
    while time.monotonic() < deadline and not display:
        if out.exists() and out.read_text().endswith("\n"):
            display = out.read_text().strip()
            if not display:
                raise RuntimeError("sway started no XWayland (is xwayland installed?)")
        time.sleep(0.1)
    if not display:
        raise RuntimeError("sway did not say its XWayland display")
    if os.geteuid() == 0:
        # XWayland admits its own user only; the test process (the agent, xdotool)
        # runs as root. On a desktop the agent is the session's user.
        done = work / ".xhost"
        subprocess.run(
            ["swaymsg", f"exec 'xhost +si:localuser:root && touch {done}'"],
            env=env, check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        while not done.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("xhost did not let root into XWayland")
            time.sleep(0.1)
    return display


def _xwayland_pids(display: str) -> list[int]:
    """The XWayland server of ``display`` (wlroots starts it detached from sway)."""
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with suppress(OSError):
            if comm.read_text().strip() == "Xwayland":
                args = (comm.parent / "cmdline").read_bytes().split(b"\0")
                if display.encode() in args:
                    pids.append(int(comm.parent.name))
    return pids


@contextmanager
def headless_sway(
    width: int = 800,
    height: int = 600,
    foot: bool = True,
    xwayland: bool = False,
    layout: str | None = None,
) -> Iterator[Sway]:
    """Headless sway (pixman renderer, no input devices) with a foot terminal running
    /bin/sh in ``Sway.work``; yields once foot's window is shown. ``xwayland``: with
    XWayland (``xwayland enable``: started on the first X client), its $DISPLAY in
    ``Sway.x_display``. ``layout``: the keyboard layout of every input
    (``input * xkb_layout``), e.g. ``jp``."""
    for tool in ("sway", "swaymsg", "foot", "grim"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (apt-get install sway foot grim)")
    ids = _user()
    runtime = Path(tempfile.mkdtemp(prefix="enkaku-sway-"))
    work = runtime / "work"
    work.mkdir()
    if ids is not None:
        for path in (runtime, work):
            os.chown(path, *ids)
    runtime.chmod(0o700)
    config = runtime / "config"
    lines = ["xwayland enable" if xwayland else "xwayland disable",
             f"output HEADLESS-1 resolution {width}x{height}", "default_border none"]  # fmt: skip
    if layout is not None:
        lines.append(f"input * xkb_layout {layout}")
    config.write_text("\n".join(lines) + "\n")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "SHELL": "/bin/sh",
        "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": str(runtime), "PS1": "$ ",
        "WLR_BACKENDS": "headless", "WLR_LIBINPUT_NO_DEVICES": "1", "WLR_RENDERER": "pixman",
    }  # fmt: skip
    prefix: list[str] = []
    if ids is not None:
        # --pdeathsig: sway goes too if the test process dies without its cleanup.
        prefix = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups",
                  "--pdeathsig", "TERM"]  # fmt: skip
    log = (runtime / "sway.log").open("wb")
    proc = subprocess.Popen(
        [*prefix, "sway", "-c", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    foot_pid: int | None = None
    x_display: str | None = None
    try:
        deadline = time.monotonic() + 60
        socket = ipc = None
        keyboard = None
        while time.monotonic() < deadline and proc.poll() is None:
            socket = next((p for p in runtime.glob("wayland-*") if p.suffix != ".lock"), None)
            ipc = next(runtime.glob("sway-ipc.*.sock"), None)
            if socket is not None and ipc is not None:
                ipc_env = {**env, "SWAYSOCK": str(ipc)}
                if not foot:
                    break
                if keyboard is None:
                    # A headless seat has no keyboard, and a client binds wl_keyboard
                    # only once the seat has one: keys sent before that are lost. A
                    # desktop has a real keyboard; here a virtual one is made first.
                    keyboard = WlrootsInput(str(socket))
                    subprocess.run(
                        ["swaymsg", f"exec foot --working-directory={work} -- /bin/sh"],
                        env=ipc_env, check=True, capture_output=True, timeout=30,
                    )  # fmt: skip
                foot_pid = _foot_pid(_tree(ipc_env))
                if foot_pid is not None and _prompt_shown(runtime, socket):
                    break
            time.sleep(0.1)
        else:
            log.flush()
            raise RuntimeError(
                "headless sway did not start: "
                + (runtime / "sway.log").read_text(errors="replace")[-2000:]
            )
        assert socket is not None and ipc is not None
        if xwayland:
            x_display = _x_display(runtime, work, ipc, deadline)
        yield Sway(runtime, socket, work, ipc, proc.pid, width, height, x_display)
    finally:
        xservers = _xwayland_pids(x_display) if x_display else []
        stop(proc)
        for pid in xservers:  # it ends with its compositor; make sure, by PID
            with suppress(OSError):
                os.kill(pid, 15)
        log.close()
        if foot_pid is not None:  # foot ends with its compositor; make sure, by PID
            with suppress(OSError):
                if Path(f"/proc/{foot_pid}/comm").read_text().strip() == "foot":
                    os.kill(foot_pid, 15)
        shutil.rmtree(runtime, ignore_errors=True)
