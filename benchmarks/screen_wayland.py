"""The Wayland desktop of ``benchmarks/screen.py --wayland``: headless sway and the same
workloads as on Xvfb, drawn by Wayland clients.

sway is started by ``tests.wayland.headless_sway`` (pixman renderer, no input devices,
no XWayland; under root as the system user ``enkaku-wl``), at 1920x1080, without the
fixture's foot. This module then gives the seat a virtual keyboard (a client binds
``wl_keyboard`` only once the seat has one), opens the base window (``foot`` running
``cat``, tiled, so it fills the screen: keys go there) and runs the workloads as
floating windows on top of it:

* ``text``: foot 150x50 printing the seeded build log at 60 lines/s;
* ``jlog``: foot 110x36 in Noto Sans Mono CJK JP printing the Japanese log at 30 lines/s;
* ``winmove``: foot 90x30 with static text moved 20 px every 33 ms along a rectangle,
  through sway's IPC (``[app_id=benchmove] move position X Y``, one connection);
* ``image``: the full-screen photo-like frames at 10 fps, from a small ``xdg_shell``
  client (``wl_shm`` buffers, one per frame, made once);
* ``idle``.

The truth for the pixel check is ``grim`` (the screencopy screenshot).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1920, 1080


def _ipc(path: str, command: str, kind: int = 0) -> Any:
    """One sway IPC request (i3-ipc framing) on a fresh connection; the parsed reply."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        return _ipc_on(s, command, kind)


def _ipc_on(s: socket.socket, command: str, kind: int = 0) -> Any:
    payload = command.encode()
    s.sendall(b"i3-ipc" + struct.pack("<II", len(payload), kind) + payload)
    head = b""
    while len(head) < 14:
        chunk = s.recv(14 - len(head))
        if not chunk:
            raise ConnectionError("sway closed the IPC socket")
        head += chunk
    (n, _kind) = struct.unpack("<II", head[6:])
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise ConnectionError("sway closed the IPC socket")
        body += chunk
    return json.loads(body)


def _find(node: dict[str, Any], app_id: str) -> dict[str, Any] | None:
    if node.get("app_id") == app_id:
        return node
    for child in node.get("nodes", []) + node.get("floating_nodes", []):
        if (hit := _find(child, app_id)) is not None:
            return hit
    return None


def swaymove(ipc: str, app_id: str, seconds: float) -> None:
    """Move the window ``app_id`` 20 px every 33 ms along a rectangle (a subcommand)."""
    x, y, dx, dy = 600, 200, 20, 0
    end = time.monotonic() + seconds
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(ipc)
        while time.monotonic() < end:
            _ipc_on(s, f'[app_id="{app_id}"] move position {x} {y}')
            x, y = x + dx, y + dy
            if x >= 1200 and dx > 0:
                dx, dy = 0, 20
            elif y >= 600 and dy > 0:
                dx, dy = -20, 0
            elif x <= 600 and dx < 0:
                dx, dy = 0, -20
            elif y <= 200 and dy < 0:
                dx, dy = 20, 0
            time.sleep(0.033)


def imageshow(fps: float, seconds: float, folder: str) -> None:
    """Full-screen slideshow of the PPM frames in ``folder`` (a subcommand): an
    xdg_shell toplevel asking for fullscreen, one wl_shm buffer per frame."""
    from PIL import Image
    from pywayland.client import Display
    from pywayland.protocol.wayland import WlCompositor, WlShm
    from pywayland.protocol.xdg_shell import XdgWmBase

    frames = sorted(Path(folder).glob("frame*.ppm"))
    display = Display(os.environ["WAYLAND_DISPLAY"])
    display.connect()
    found: dict[str, tuple[int, int]] = {}
    registry = display.get_registry()

    def on_global(_registry: Any, name: int, iface: str, version: int) -> None:
        found.setdefault(iface, (name, version))

    registry.dispatcher["global"] = on_global
    display.roundtrip()
    compositor = registry.bind(found["wl_compositor"][0], WlCompositor, 4)
    shm = registry.bind(found["wl_shm"][0], WlShm, 1)
    wm = registry.bind(found["xdg_wm_base"][0], XdgWmBase, 1)
    wm.dispatcher["ping"] = lambda base, serial: base.pong(serial)
    surface = compositor.create_surface()
    xdg = wm.get_xdg_surface(surface)
    top = xdg.get_toplevel()
    top.set_app_id("benchimage")
    top.set_title("benchimage")
    top.set_fullscreen(None)
    state = {"configured": False}

    def on_configure(x: Any, serial: int) -> None:
        x.ack_configure(serial)
        state["configured"] = True

    xdg.dispatcher["configure"] = on_configure
    top.dispatcher["configure"] = lambda *_a: None
    top.dispatcher["close"] = lambda *_a: None
    surface.commit()
    while not state["configured"]:
        display.dispatch(block=True)
    stride = WIDTH * 4
    size = stride * HEIGHT * len(frames)
    fd = os.memfd_create("benchimage", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    with open(fd, "r+b", closefd=False) as f:
        for path in frames:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            bgrx = np.empty((HEIGHT, WIDTH, 4), np.uint8)
            bgrx[..., 0], bgrx[..., 1], bgrx[..., 2], bgrx[..., 3] = (
                rgb[..., 2], rgb[..., 1], rgb[..., 0], 255,
            )  # fmt: skip
            f.write(bgrx.tobytes())
    pool = shm.create_pool(fd, size)
    buffers = [
        pool.create_buffer(i * stride * HEIGHT, WIDTH, HEIGHT, stride, WlShm.format.xrgb8888.value)
        for i in range(len(frames))
    ]
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        surface.attach(buffers[i % len(buffers)], 0, 0)
        surface.damage_buffer(0, 0, WIDTH, HEIGHT)
        surface.commit()
        display.flush()
        i += 1
        delay = start + i / fps - time.monotonic()
        display.roundtrip()
        if delay > 0:
            time.sleep(delay)
    for b in buffers:
        b.destroy()
    pool.destroy()
    top.destroy()
    xdg.destroy()
    surface.destroy()
    display.disconnect()


@dataclass
class WaylandDesktop:
    """Headless sway 1920x1080 with the base foot; ``workload()`` and ``truth()``."""

    tmp: Path
    logs: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def start(self) -> WaylandDesktop:
        from tests.wayland import headless_sway

        from enkaku.agent.input.wlroots import WlrootsInput

        self.sway = self.stack.enter_context(headless_sway(WIDTH, HEIGHT, foot=False))
        self.display = str(self.sway.socket)
        self.ipc = str(self.sway.ipc)
        keyboard = WlrootsInput(self.display)
        self.stack.callback(keyboard.close)
        for rule in (
            "default_floating_border none",
            'for_window [app_id="^bench(text|jlog|move)$"] floating enable',
            'for_window [app_id="benchtext"] move position 560 40',
            'for_window [app_id="benchjlog"] move position 500 60',
            'for_window [app_id="benchmove"] move position 600 200',
        ):
            _ipc(self.ipc, rule)
        self.base = self.foot("benchtype", None, "cat")
        self.wait_window("benchtype")
        time.sleep(1.0)
        return self

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY",)}
        env |= self.sway.env | {"LANG": "C.UTF-8", "SWAYSOCK": self.ipc}
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + str(ROOT)
        return env

    def close(self) -> None:
        from benchmarks.screen import stop

        for p in self.procs:
            stop(p)
        self.stack.close()

    def spawn(self, cmd: list[str], log: str | None = None) -> subprocess.Popen[Any]:
        out = open(self.logs / log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            cmd, env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def foot(self, app_id: str, size: str | None, *cmd: str, font: str | None = None) -> Any:
        args = ["foot", "--app-id", app_id, "--title", app_id]
        if size:
            args += ["--window-size-chars", size]
        if font:
            args += ["--font", font]
        return self.spawn([*args, "--", *cmd], "foot.log")

    def wait_window(self, app_id: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            node = _find(_ipc(self.ipc, "", 4), app_id)
            if node is not None and node.get("visible"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the window {app_id} did not appear")

    def me(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "benchmarks.screen", *args]

    @contextlib.contextmanager
    def workload(self, name: str, seconds: float) -> Iterator[None]:
        from benchmarks.screen import stop, textgen

        procs: list[subprocess.Popen[Any]] = []
        secs = f"{seconds + 5:.0f}"
        app_id = {"text": "benchtext", "jlog": "benchjlog", "winmove": "benchmove",
                  "image": "benchimage"}.get(name)  # fmt: skip
        if name == "text":
            gen = self.me("_textgen", "--rate", "60", "--seconds", secs)
            procs.append(self.foot("benchtext", "150x50", *gen))
        elif name == "jlog":
            procs.append(self.foot("benchjlog", "110x36",
                                   *self.me("_textgen", "--rate", "30", "--seconds", secs,
                                            "--lang", "ja"),
                                   font="Noto Sans Mono CJK JP:size=11"))  # fmt: skip
        elif name == "winmove":
            text = self.tmp / "winmove.txt"
            with open(text, "w") as f, contextlib.redirect_stdout(f):
                textgen(1e9, 0.05, "en", 7)
            procs.append(self.foot("benchmove", "90x30", "sh", "-c",
                                   f"head -28 '{text}'; exec sleep {secs}"))  # fmt: skip
            self.wait_window("benchmove")
            procs.append(self.spawn(self.me("_swaymove", "--ipc", self.ipc, "--seconds", secs)))
        elif name == "image":
            procs.append(self.spawn(self.me("_wlimageshow", "--fps", "10", "--seconds", secs,
                                            str(self.tmp / "images")), "image.log"))  # fmt: skip
        elif name != "idle":
            raise SystemExit(f"unknown workload {name}")
        if app_id:
            self.wait_window(app_id)
        try:
            time.sleep(0.3)
            yield
        finally:
            for p in reversed(procs):
                stop(p)
                if p in self.procs:
                    self.procs.remove(p)
            if app_id:  # wait until the window is gone, so the next run starts clean
                end = time.monotonic() + 10
                while time.monotonic() < end and _find(_ipc(self.ipc, "", 4), app_id):
                    time.sleep(0.05)

    def truth(self) -> np.ndarray:
        """The screen as grim sees it, as 0x00RRGGBB values (h, w)."""
        rgb = self.sway.grim().astype(np.uint32)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]

    def pids(self) -> list[int]:
        return [self.sway.pid]
