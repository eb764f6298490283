"""One monitor of a two-monitor desktop: the agent against x11vnc and x0vncserver, each
serving only that monitor, in one run.

``python -m benchmarks.monitors [--duration 6] [--profiles zrle,tight] [--out STEM]``

One Xvfb 3840x1080 split by ``xrandr --setmonitor`` into two 1920x1080 monitors (the way
a two-display desktop is one X screen); a seeded build log scrolls at 60 lines/s in an
xterm on each monitor. Servers, each showing monitor 2 only (1920x1080 at x 1920):

* ``enkaku-monitor2``: the agent's ``RFBService`` with ``monitor=2`` (what ``enkaku
  connect --monitor 2`` asks for), on loopback TCP (the ``_serve`` subcommand: no
  authentication, no encryption, 127.0.0.1 only, benchmarks only);
* ``x11vnc -clip 1920x1080+1920+0`` and ``X0tigervnc -Geometry 1920x1080+1920+0``;

plus ``enkaku-desktop``, the agent serving the whole 3840x1080 desktop, for what the
choice saves. The greedy client, the measures (updates/s, KB/s, the server's CPU ms per
update, exactness of the lossless profile once the workload stopped) and the profiles are
those of ``benchmarks/screen.py``; ``verify`` compares with that server's area of the
screen. Prints the table, the ratios enkaku-monitor2/peer and the load average; writes
STEM.txt and STEM.json (default ``benchmarks/results/DATE-monitors``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tests.xdisplay import x_env, xvfb, xvfb_pid

from benchmarks.screen import ROOT, free_port, spawn, stop, throughput, verify, wait_port
from enkaku.agent.capture.base import Rect
from enkaku.agent.capture.x11 import X11Capture

WIDTH, HEIGHT = 3840, 1080
LEFT = Rect(0, 0, 1920, 1080)
RIGHT = Rect(1920, 0, 1920, 1080)


def geometry(r: Rect) -> str:
    return f"{r.w}/{r.w * 254 // 960}x{r.h}/{r.h * 254 // 960}+{r.x}+{r.y}"


@dataclass
class MonitorDesktop:
    """The two-monitor desktop; ``area`` is what the server measured now shows."""

    display: str
    tmp: Path
    area: Rect = RIGHT
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def truth(self) -> np.ndarray:
        with X11Capture(self.display) as cap:
            screen = cap.grab()
        values = screen.view("<u4").reshape(screen.shape[:2]) & 0xFFFFFF
        a = self.area
        return values[a.y : a.y + a.h, a.x : a.x + a.w]

    @contextlib.contextmanager
    def workload(self, name: str, seconds: float) -> Iterator[None]:
        assert name == "logs", name
        env = x_env(self.display)
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + str(ROOT)
        secs = f"{seconds + 5:.0f}"
        procs = []
        for title, where, seed in (("log1", "+100+60", "1"), ("log2", "+2020+60", "2")):
            gen = [sys.executable, "-m", "benchmarks.screen", "_textgen", "--rate", "60",
                   "--seconds", secs, "--seed", seed]  # fmt: skip
            procs.append(spawn(["xterm", "-T", title, "-geometry", f"150x50{where}", "-e", *gen],
                               self.display, env=env, cwd=ROOT))  # fmt: skip
        for title in ("log1", "log2"):
            subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", f"^{title}$"],
                           env=env, capture_output=True, timeout=30, check=False)  # fmt: skip
        try:
            time.sleep(0.3)
            yield
        finally:
            for p in reversed(procs):
                stop(p)


# -- the agent's server (benchmarks only) ------------------------------------------------


async def _serve(display: str, port: int, monitor: int | None) -> None:
    from enkaku.agent.input.x11 import X11Input
    from enkaku.agent.rfbservice import RFBService

    one = asyncio.Lock()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with one:
            capture = await asyncio.to_thread(X11Capture, display)
            injector = await asyncio.to_thread(X11Input, display)

            async def write(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            try:
                service = RFBService(
                    capture, injector, lambda: reader.read(65536), write, name="bench",
                    monitor=monitor,
                )  # fmt: skip
                with contextlib.suppress(ConnectionError, EOFError):
                    await service.run()
            finally:
                await asyncio.to_thread(injector.close)
                await asyncio.to_thread(capture.close)
                writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    server.close()


# -- the run -------------------------------------------------------------------------------


def servers(py: str) -> dict[str, tuple[str, Rect]]:
    clip = "1920x1080+1920+0"
    serve = f"{py} -m benchmarks.monitors _serve --display {{display}} --port {{port}}"
    return {
        "enkaku-monitor2": (f"{serve} --monitor 2", RIGHT),
        "enkaku-desktop": (serve, Rect(0, 0, WIDTH, HEIGHT)),
        "x11vnc": (
            "x11vnc -localhost -shared -forever -nopw -quiet -rfbport {port} "
            f"-display {{display}} -clip {clip}",
            RIGHT,
        ),
        "x0vncserver": (
            "X0tigervnc -display {display} -rfbport {port} -SecurityTypes None -localhost "
            f"-AlwaysShared -Geometry {clip}",
            RIGHT,
        ),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    env = {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    with tempfile.TemporaryDirectory(prefix="enkaku-monitors-") as tmp, xvfb(
        WIDTH, HEIGHT
    ) as display:  # fmt: skip
        xenv = x_env(display)
        for name, rect, output in (("left", LEFT, "screen"), ("right", RIGHT, "none")):
            subprocess.run(["xrandr", "--setmonitor", name, geometry(rect), output], env=xenv,
                           check=True, capture_output=True)  # fmt: skip
        desk = MonitorDesktop(display, Path(tmp))
        for name, (cmd, area) in servers(sys.executable).items():
            if args.servers and name not in args.servers.split(","):
                continue
            port = free_port()
            argv = shlex.split(cmd.format(display=display, port=port))
            print(f"== {name}: {shlex.join(argv)}", file=sys.stderr, flush=True)
            proc = spawn(argv, display, Path(tmp) / f"{name}.log", env=xenv | env, cwd=ROOT)
            desk.area = area
            try:
                wait_port(port, proc)
                time.sleep(0.5)
                for profile in args.profiles.split(","):
                    rec = throughput(port, profile, "logs", desk, args.duration, proc.pid, [],
                                     xvfb_pid(display))  # fmt: skip
                    rec |= verify(port, profile, "logs", desk, args.verify_duration)
                    rec |= {"server": name, "profile": profile, "area": f"{area.w}x{area.h}"}
                    results.append(rec)
                    print(f"   {profile:6} {rec['upd_s']:6.1f} upd/s {rec['kb_s']:8.0f} KB/s "
                          f"cpu {rec['cpu_pct']:5.1f}% {rec['verify']}",
                          file=sys.stderr, flush=True)  # fmt: skip
            finally:
                stop(proc)
                time.sleep(0.5)
    return results


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| server | area | profile | upd/s | KB/upd | KB/s | CPU % | ms/upd | Xvfb % | verify |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['server']} | {r['area']} | {r['profile']} | {fmt(r['upd_s'])} | "
            f"{fmt(r['kb_upd'])} | {fmt(r['kb_s'], '.0f')} | {fmt(r['cpu_pct'])} | "
            f"{fmt(r['ms_upd'], '.2f')} | {fmt(r['xvfb_pct'])} | {r['verify']} |"
        )
    ratios = ["", "enkaku-monitor2 / peer (same profile): upd/s, KB/s, CPU s, ms/upd"]
    mine = {r["profile"]: r for r in results if r["server"] == "enkaku-monitor2"}
    for r in results:
        m = mine.get(r["profile"])
        if m is None or r["server"].startswith("enkaku"):
            continue

        def ratio(key: str, a: dict[str, Any] = m, b: dict[str, Any] = r) -> str:
            return f"{a[key] / b[key]:.2f}" if a.get(key) and b.get(key) else "-"

        ratios.append(
            f"- vs {r['server']} ({r['profile']}): {ratio('upd_s')}, {ratio('kb_s')}, "
            f"{ratio('cpu_s')}, {ratio('ms_upd')}"
        )
    return "\n".join(lines + ratios)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.monitors", description=__doc__)
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("_serve")
    s.add_argument("--display", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--monitor", type=int)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--verify-duration", type=float, default=3.0)
    p.add_argument("--profiles", default="zrle,tight")
    p.add_argument("--servers", default="", help="a comma-separated subset (default: all)")
    today = datetime.date.today().isoformat()
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"{today}-monitors"))
    args = p.parse_args(argv)
    if args.cmd == "_serve":
        asyncio.run(_serve(args.display, args.port, args.monitor))
        return
    started = time.time()
    results = run(args)
    load = os.getloadavg()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True, check=False).stdout.strip()  # fmt: skip
    when = datetime.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M")
    head = (
        f"benchmarks/monitors.py at {rev}, {when}, {args.duration:g} s a run; "
        "load average after the run "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)"
    )
    text = head + "\n\n" + table(results) + "\n"
    print(text)
    Path(args.out + ".txt").write_text(text)
    Path(args.out + ".json").write_text(json.dumps({"head": head, "results": results}, indent=1))


if __name__ == "__main__":
    main()
