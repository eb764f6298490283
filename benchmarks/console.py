"""The web console against `enkaku connect --vnc-listen` + TigerVNC's viewer, in one run.

``python -m benchmarks.console [--repeat 10] [--keys 5] [--console-dir DIR] [--out STEM]
[--rev REV]``

One real ``enkaku server`` (temporary SQLite, a technician and a contract) and one real
``enkaku agent --headless --consent allow`` serving a private Xvfb (1024x768) with an
xterm running ``sh``. Every repetition holds one session on each side, in alternating
order (console first on even repetitions, the peer first on odd ones), so both sides
share the machine's load as it comes. One untimed session per side comes first (warm
caches; the viewer's window position is found then):

* **console**: Debian's Chromium (``/usr/bin/chromium`` through Playwright, headless;
  never a downloaded browser) signed in to the console; the home page's form is filled
  and Connect is clicked.
* **peer**: ``enkaku connect ID --vnc-listen 127.0.0.1:0`` (logged in with ``enkaku
  login`` once) and, when it prints that it listens, ``xtigervncviewer`` on a second
  Xvfb (1280x1024, no window manager, ``-geometry +0+0``; where its framebuffer really
  lands, (1, 20) with TigerVNC 1.12, is found in the warm-up session).

Both sides ask for lossless pixels (the console's "lossless" quality setting; the
viewer's ``-NoJPEG -PreferredEncoding Tight -FullColor``), so a frame can be compared
exactly with the X screen.

What is measured per repetition:

(a) **connect -> first full frame**. Console: from the click on Connect (a capture
    listener in the page, ``performance.timeOrigin + performance.now()``, handed to the
    session page through ``sessionStorage``) until the noVNC canvas equals the remote
    screen at every point of an 8-pixel grid (plus the last row and column; the screen
    grabbed from the agent's Xvfb just before) and the next animation frame, which shows
    it, has begun. The canvas is checked right after each draw into it (the page's
    ``drawImage`` wrapped: noVNC's flip draws its back buffer there); "drawn" is the
    draw that completed the frame. Peer: from starting the ``enkaku connect`` process
    until the viewer's window (XShm grab of its area on the viewer's Xvfb, checked at
    each XDamage report) holds the same grid. Both include what a technician waits
    for: console = session request, page load, channel and handshake, consent, RFB
    set-up, the first update; peer = Python start, the same protocol steps, the
    viewer's start and first update.
(b) **key -> screen** (``--keys`` per session). Console: the page's ``keydown``
    (capture listener on ``window``, ``performance.now()``) of a key Playwright presses
    into the focused canvas, until a draw changed a pixel of the xterm's area on the
    canvas (the shell echoes the letter: "to the draw") and until the next animation
    frame began ("key -> screen"). Peer: an XTEST key press into the viewer's display
    (the request ``xdotool key`` sends; made here through the agent's own ``X11Input``
    so the clock starts right before the request is flushed, not at a process start),
    until the viewer's xterm area changed (checked at each XDamage report). The
    browser shows a canvas at its next frame (~16.7 ms apart at 60 Hz); Xvfb has no
    frame clock, so the peer's figure has no such wait (a real monitor would add one).
    The page also notes when the relay WebSocket sent and received messages (times
    only, never contents), which splits the console's figure into keydown -> record
    sent, sent -> last record received before the draw, received -> drawn, drawn ->
    next frame.

Nothing polls the canvas on a timer or on every frame: reading a canvas back on every
animation frame delayed the page's own message handling and doubled the key latency it
measured (15 vs 8 ms median in a trial run); the viewer's display is not polled either.

Prints p50/p95 per side and measurement, the ratios console/peer, the load average at
the start, per repetition and at the end (the machine may be shared), and writes
STEM.txt and STEM.json (default ``benchmarks/results/DATE-console``). There is no
pass/fail threshold.

The console is built from ``console/`` into a temporary folder first (``npx vite build
--outDir``) unless ``--console-dir`` names a built one. Needs xvfb, xterm, xdotool,
chromium, tigervnc-viewer (Debian packages), Node (npx) and the venv (playwright, numpy).
Every process is started here and stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import queue
import random
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from enkaku.agent.capture.base import Rect
from enkaku.agent.capture.x11 import X11Capture
from enkaku.agent.input.x11 import X11Input

from ._files_harness import Desktop, HarnessError, need, stop_popen
from ._files_rfb import percentile
from .e2e_chain import free_port

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER = "bench"
CONTRACT = "BENCH"
REMOTE_SIZE = (1024, 768)
VIEWER_SIZE = (1280, 1024)
GRID = 8  # px between the points a frame is compared at
# No dialogs, no remote resize, lossless; an empty MenuKey also drops the "Press F8 to
# open the context menu" toast the viewer otherwise lays over the screen for seconds.
VIEWER_ARGS = [
    "-geometry", "+0+0", "-RemoteResize=0", "-ReconnectOnError=0", "-AlertOnFatalError=0",
    "-Shared", "-NoJPEG", "-PreferredEncoding", "Tight", "-FullColor", "-MenuKey=",
]  # fmt: skip
LETTERS = "abcdefghijklmnopqrstuvwxyz"
TIMEOUT = 120.0  # a limit for a hung run, not a measurement
POLL_MS = 20  # how often Playwright asks the page whether a result is there

# Installed in every page before its own scripts (Playwright add_init_script); nothing of
# the console is changed, only observed. The screen canvas is read only right after the
# page drew into it (drawImage wrapped: noVNC's flip), never on a timer or on every
# animation frame: reading it back on every frame delayed the page's own message handling
# and doubled the measured key latency (15 vs 8 ms in a trial run).
PAGE_HOOKS = r"""
(() => {
  const B = (window.__bench = { t0: null, marks: {}, frame: null, key: null, ended: false });
  const wall = () => performance.timeOrigin + performance.now();
  let onDraw = null;  // (canvas, time) after each draw into the screen canvas
  const nativeDrawImage = CanvasRenderingContext2D.prototype.drawImage;
  CanvasRenderingContext2D.prototype.drawImage = function (...args) {
    const r = nativeDrawImage.apply(this, args);
    if (onDraw !== null) {
      const p = this.canvas.parentElement;
      if (p && p.closest("#screen")) onDraw(this.canvas, performance.now());
    }
    return r;
  };
  // Times (never contents) of the relay WebSocket's messages while a key is timed: the
  // first one sent after the keydown, those received until the echo was drawn.
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", () => {
        const k = B.key;
        if (k && k.t0 !== null && k.drawn === null) k.rx.push(performance.now());
      });
    }
    send(data) {
      const k = B.key;
      if (k && k.t0 !== null && k.tx === null) k.tx = performance.now();
      return super.send(data);
    }
  };
  document.addEventListener("click", (e) => {
    const t = e.target;
    if (t instanceof Element && t.closest("#connect-submit")) {
      sessionStorage.setItem("bench.t0", String(wall()));
    }
  }, true);
  if (!location.pathname.endsWith("/session.html")) return;
  const t0 = Number(sessionStorage.getItem("bench.t0"));
  sessionStorage.removeItem("bench.t0");
  const exp = JSON.parse(sessionStorage.getItem("bench.expect") || "null");
  if (!t0 || !exp) return;
  B.t0 = t0;
  B.marks.page = performance.timeOrigin - t0;
  const mark = (name, at) => { if (!(name in B.marks)) B.marks[name] = at - t0; };
  new MutationObserver(() => {
    const st = document.getElementById("status");
    if (st && st.dataset.state === "connected") mark("connected", wall());
    if (st && st.dataset.state === "ended") B.ended = true;
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
  const xs = exp.xs, ys = exp.ys, rgb = exp.rgb;  // rgb: row-major over ys x xs, 3 bytes
  function full(c) {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let k = 0;
    for (let j = 0; j < ys.length; j++) {
      const row = ys[j] * c.width;
      for (let i = 0; i < xs.length; i++, k += 3) {
        const p = (row + xs[i]) * 4;
        if (d[p] !== rgb[k] || d[p + 1] !== rgb[k + 1] || d[p + 2] !== rgb[k + 2]) return false;
      }
    }
    return true;
  }
  const region = (c, k) =>
    new Uint32Array(c.getContext("2d").getImageData(k.x, k.y, k.w, k.h).data.buffer);
  function keyDraw(c, now) {
    const k = B.key;
    if (!k || k.drawn !== null || k.early) return;
    const cur = region(c, k);
    for (let i = 0; i < cur.length; i++) {
      if (cur[i] !== k.base[i]) {
        if (k.t0 === null) { k.early = true; return; }
        k.drawn = now;
        requestAnimationFrame(() => { k.t1 = performance.now(); });
        return;
      }
    }
  }
  onDraw = (c, now) => {
    if (c.width !== exp.w || c.height !== exp.h || !full(c)) return;
    mark("drawn", performance.timeOrigin + now);
    onDraw = keyDraw;
    // Shown at the next animation frame.
    requestAnimationFrame(() => { B.frame = wall() - t0; });
  };
  B.armKey = (x, y, w, h) => {
    const c = document.querySelector("#screen canvas");
    const k = { x, y, w, h, t0: null, t1: null, drawn: null, early: false, tx: null, rx: [] };
    k.base = region(c, k);
    B.key = k;
    const onKey = () => {
      if (k.t0 === null) k.t0 = performance.now();
      window.removeEventListener("keydown", onKey, true);
    };
    window.addEventListener("keydown", onKey, true);
  };
  B.rafPeriod = () => new Promise((resolve) => {
    const times = [];
    const step = (ts) => {
      times.push(ts);
      if (times.length < 11) requestAnimationFrame(step);
      else resolve((times[10] - times[0]) / 10);
    };
    requestAnimationFrame(step);
  });
})();
"""


class BenchError(RuntimeError):
    """A part of the run did not start or did not answer in time."""


# -- processes ------------------------------------------------------------------------


class Child:
    """A child process; its stdout JSON lines are queued by a reader thread, its stderr
    goes to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                line["_at"] = time.perf_counter()  # when it was read, for the step marks
                self.lines.put(line)

    def next_event(self, event: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next stdout JSON line with "event": ``event``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self.lines.empty()):
                raise BenchError(f"{self.name}: no {event!r} line; log:\n{self.log_tail()}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line.get("event") == event:
                return line

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_popen(self.proc)
        self._thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def start_xvfb(width: int, height: int) -> tuple[subprocess.Popen[bytes], str]:
    """A private Xvfb (the number chosen by Xvfb via -displayfd) with nothing on it."""
    xvfb = need("Xvfb", "xvfb")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp", "-noreset", "+extension", "MIT-SHM", "+extension", "DAMAGE",
         "+extension", "XTEST"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,),
    )  # fmt: skip
    os.close(write_fd)
    number = b""
    try:
        deadline = time.monotonic() + 30
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], max(0, deadline - time.monotonic()))
            chunk = os.read(read_fd, 16) if ready else b""
            if not chunk:
                stop_popen(proc)
                raise HarnessError("Xvfb did not report a display number within 30 s")
            number += chunk
    finally:
        os.close(read_fd)
    return proc, f":{int(number)}"


def xdotool(display: str, *args: str) -> str:
    out = subprocess.run(
        ["xdotool", *args],
        env=dict(os.environ, DISPLAY=display),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        raise BenchError(f"xdotool {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(step)
    raise BenchError(f"timed out waiting for {what}")


# -- the screen -----------------------------------------------------------------------


def grid(width: int, height: int) -> tuple[list[int], list[int]]:
    """The x and y coordinates of the comparison grid (last column and row included)."""
    xs = sorted({*range(0, width, GRID), width - 1})
    ys = sorted({*range(0, height, GRID), height - 1})
    return xs, ys


def locate(shown: npt.NDArray[np.uint8], screen: npt.NDArray[np.uint8]) -> tuple[int, int] | None:
    """The (x, y) at which ``shown`` (a display's pixels) holds ``screen`` exactly, searched
    up to 64 px right and down (the viewer's window position and frame), or None."""
    h, w = screen.shape[:2]
    xs, ys = grid(w, h)
    want = screen[np.ix_(ys, xs)]
    for oy in range(min(65, shown.shape[0] - h + 1)):
        for ox in range(min(65, shown.shape[1] - w + 1)):
            got = shown[np.ix_([y + oy for y in ys], [x + ox for x in xs])]
            if np.array_equal(got, want) and np.array_equal(
                shown[oy : oy + h, ox : ox + w], screen
            ):
                return ox, oy
    return None


def rgb(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """An (h, w, 4) BGRX grab as (h, w, 3) RGB."""
    return np.ascontiguousarray(frame[:, :, 2::-1])


@dataclass
class Remote:
    """The agent's display: the expected screen and the xterm's area on it."""

    desktop: Desktop
    xterm: Rect = field(default_factory=lambda: Rect(0, 0, 0, 0))

    def focus_xterm(self) -> None:
        """Keyboard focus on the xterm (no window manager; focus stays where set)."""
        wid = xdotool(self.desktop.display, "search", "--class", "xterm").split()[0]
        xdotool(self.desktop.display, "windowfocus", "--sync", wid)
        geo = dict(
            line.split("=", 1)
            for line in xdotool(self.desktop.display, "getwindowgeometry", "--shell", wid).split()
            if "=" in line
        )
        self.xterm = Rect(int(geo["X"]), int(geo["Y"]), int(geo["WIDTH"]), int(geo["HEIGHT"]))

    def clear_line(self) -> None:
        """Ctrl+U in the xterm: the letters typed in a session are gone again."""
        xdotool(self.desktop.display, "key", "ctrl+u")

    def stable_screen(self) -> npt.NDArray[np.uint8]:
        """The remote screen as RGB, once two grabs 200 ms apart are equal."""
        with X11Capture(self.desktop.display) as cap:
            last = rgb(cap.grab())

            def settled() -> npt.NDArray[np.uint8] | None:
                nonlocal last
                time.sleep(0.2)
                now = rgb(cap.grab())
                same = bool(np.array_equal(now, last))
                last = now
                return now if same else None

            screen: npt.NDArray[np.uint8] = wait_until(settled, 30, "a still screen", 0)
            return screen


def wait_damage(cap: X11Capture, check: Callable[[], bool], what: str) -> None:
    """Until ``check()`` holds, checked again whenever the X server reports damage on the
    display (XDamage, no busy polling that would take CPU from the viewer), and at least
    every 50 ms."""
    fd = cap.fileno()
    if fd is None:
        raise HarnessError("the viewer's Xvfb lacks the DAMAGE extension")
    cap.changed_regions()
    deadline = time.monotonic() + TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        if not cap.events_queued():
            select.select([fd], [], [], 0.05)
        cap.changed_regions()  # takes the events; the next damage wakes select again


# -- the console side -----------------------------------------------------------------


@dataclass
class ConsoleSide:
    page: Any
    server_url: str
    remote: Remote

    def sign_in(self, password: str) -> None:
        self.page.goto(f"{self.server_url}/console/login.html")
        self.page.fill("#username", USER)
        self.page.fill("#password", password)
        self.page.click("#login-submit")
        self.page.wait_for_selector("#connect-form")
        # The page's own setting, as a technician picks it (kept in localStorage).
        self.page.evaluate("() => localStorage.setItem('enkaku.quality', 'lossless')")

    def session(
        self, creds: dict[str, Any], screen: npt.NDArray[np.uint8], keys: str
    ) -> dict[str, Any]:
        page = self.page
        page.goto(f"{self.server_url}/console/")
        page.wait_for_selector("#connect-form")
        page.wait_for_function("() => document.querySelectorAll('#contract option').length > 0")
        xs, ys = grid(screen.shape[1], screen.shape[0])
        expect = {
            "w": screen.shape[1],
            "h": screen.shape[0],
            "xs": xs,
            "ys": ys,
            "rgb": screen[np.ix_(ys, xs)].reshape(-1).tolist(),
        }
        page.evaluate("e => sessionStorage.setItem('bench.expect', JSON.stringify(e))", expect)
        page.fill("#agent-id", str(creds["agent_id"]))
        page.fill("#otp", str(creds["password"]))
        page.click("#connect-submit")
        page.wait_for_url("**/session.html")
        page.wait_for_function(
            "() => window.__bench && (window.__bench.frame !== null || window.__bench.ended)",
            polling=POLL_MS,
            timeout=TIMEOUT * 1000,
        )
        result: dict[str, Any] = page.evaluate(
            "() => ({frame: __bench.frame, marks: __bench.marks})"
        )
        if result["frame"] is None:
            raise BenchError(f"the console session ended: {page.inner_text('#overlay-text')}")
        # noVNC focuses its canvas on connect; keys pressed now go to the remote xterm.
        lat: list[float] = []
        split: list[list[float]] = []
        drawn: list[float] = []
        x = self.remote.xterm
        for ch in keys:
            time.sleep(random.uniform(0.15, 0.3))
            page.evaluate(f"() => __bench.armKey({x.x}, {x.y}, {x.w}, {x.h})")
            page.keyboard.press(ch)
            page.wait_for_function(
                "() => __bench.key.t1 !== null || __bench.key.early",
                polling=POLL_MS,
                timeout=TIMEOUT * 1000,
            )
            key = page.evaluate(
                "() => { const k = __bench.key; return {t0: k.t0, t1: k.t1, drawn: k.drawn,"
                " early: k.early, tx: k.tx, rx: k.rx}; }"
            )
            if key["early"]:
                raise BenchError("the xterm area changed before the key was pressed")
            lat.append(key["t1"] - key["t0"])
            if key["drawn"] is not None and key["drawn"] >= key["t0"]:
                drawn.append(key["drawn"] - key["t0"])
            rx = [r for r in key["rx"] if key["drawn"] is not None and r <= key["drawn"]]
            if key["tx"] is not None and rx:
                split.append(
                    [key["tx"] - key["t0"], rx[-1] - key["tx"], key["drawn"] - rx[-1],
                     key["t1"] - key["drawn"]]
                )  # fmt: skip
        result["keys"] = lat
        result["raf_period"] = page.evaluate("() => __bench.rafPeriod()")
        result["key_split"] = split
        result["keys_drawn"] = drawn
        return result

    def end(self) -> None:
        """Leave the session page: the page closes the channel (pagehide)."""
        self.page.goto(f"{self.server_url}/console/")
        self.page.wait_for_selector("#connect-form")


# -- the peer side --------------------------------------------------------------------


class TimingProxy:
    """``--peer-split`` only: a loopback TCP relay between the viewer and ``enkaku
    connect`` that notes when bytes pass each way (times only, never contents), so the
    peer's key latency splits as the console's does. One connection; it adds a thread hop
    each way, so its run's peer figures are not the plain ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.up: list[float] = []  # viewer -> connect, while recording
        self.down: list[float] = []  # connect -> viewer, while recording
        self.recording = False
        self.socks: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        server = socket.create_connection(("127.0.0.1", self.target_port))
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socks += [client, server]
        threading.Thread(target=self._pump, args=(client, server, self.up), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, self.down), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, times: list[float]) -> None:
        try:
            while data := src.recv(1 << 16):
                if self.recording:
                    times.append(time.perf_counter())
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def start(self) -> None:
        self.up.clear()
        self.down.clear()
        self.recording = True

    def close(self) -> None:
        self.recording = False
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.close()


@dataclass
class PeerSide:
    env: dict[str, str]
    server_url: str
    workdir: Path
    viewer_display: str
    remote: Remote
    viewer_bin: str
    runs: int = 0
    #: Where the viewer shows the remote (0, 0): found in the warm-up session.
    offset: tuple[int, int] | None = None
    #: --peer-split: the viewer talks to ``connect`` through a TimingProxy.
    split: bool = False

    def session(
        self, creds: dict[str, Any], screen: npt.NDArray[np.uint8], keys: str
    ) -> dict[str, Any]:
        h, w = screen.shape[:2]
        xs, ys = grid(w, h)
        want = screen[np.ix_(ys, xs)]
        self.runs += 1
        connect: Child | None = None
        viewer: subprocess.Popen[bytes] | None = None
        proxy: TimingProxy | None = None
        cap = X11Capture(self.viewer_display)
        inp = X11Input(self.viewer_display)
        try:
            t0 = time.perf_counter()
            connect = Child(
                f"connect-{self.runs}",
                [sys.executable, "-m", "enkaku.cli", "connect", str(creds["agent_id"]),
                 "--server", self.server_url, "--contract", CONTRACT,
                 "--vnc-listen", "127.0.0.1:0"],
                {**self.env, "ENKAKU_PASSWORD": str(creds["password"])},
                self.workdir,
            )  # fmt: skip
            connected = connect.next_event("connected")
            listening = connect.next_event("vnc_listening")
            port = int(listening["port"])
            if self.split:
                proxy = TimingProxy(port)
                port = proxy.port
            log = (self.workdir / f"viewer-{self.runs}.log").open("wb")
            try:
                viewer = subprocess.Popen(
                    [self.viewer_bin, "-display", self.viewer_display, *VIEWER_ARGS,
                     f"127.0.0.1::{port}"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )  # fmt: skip
            finally:
                log.close()

            def shown() -> bool:
                if self.offset is None:  # the warm-up: search the whole display
                    self.offset = locate(rgb(cap.grab()), screen)
                    return self.offset is not None
                ox, oy = self.offset
                parts = cap.grab_rects([Rect(ox, oy, w, h)])
                return parts is not None and bool(
                    np.array_equal(rgb(parts[0])[np.ix_(ys, xs)], want)
                )

            try:
                wait_damage(cap, shown, "the viewer's first full frame")
            except BenchError:
                raise BenchError(
                    f"{self.describe(cap, screen)}; viewer log:\n{self.viewer_log()}"
                ) from None
            t_frame = time.perf_counter()
            result: dict[str, Any] = {
                "frame": 1000 * (t_frame - t0),
                "marks": {
                    "connected": 1000 * (connected["_at"] - t0),
                    "listening": 1000 * (listening["_at"] - t0),
                },
            }
            # No window manager: the keyboard focus is given to the viewer's window (the
            # pointer stays where it is, so no pointer event reaches the remote side).
            wid = xdotool(self.viewer_display, "search", "--name", "TigerVNC").split()[0]
            xdotool(self.viewer_display, "windowfocus", "--sync", wid)
            assert self.offset is not None
            ox, oy = self.offset
            x = Rect(ox + self.remote.xterm.x, oy + self.remote.xterm.y,
                     self.remote.xterm.w, self.remote.xterm.h)  # fmt: skip
            time.sleep(0.3)
            lat: list[float] = []
            split: list[list[float]] = []
            for ch in keys:
                time.sleep(random.uniform(0.15, 0.3))
                if proxy is not None:
                    proxy.start()
                parts = cap.grab_rects([x])
                assert parts is not None
                base = parts[0].copy()
                cap.changed_regions()  # damage so far is not the echo
                start = time.perf_counter()
                inp.key(ord(ch), True)
                inp.key(ord(ch), False)

                def changed(base: npt.NDArray[np.uint8] = base) -> bool:
                    now = cap.grab_rects([x])
                    return now is not None and not np.array_equal(now[0], base)

                wait_damage(cap, changed, "the echo in the viewer")
                end = time.perf_counter()
                lat.append(1000 * (end - start))
                if proxy is not None:
                    proxy.recording = False
                    up = [t for t in proxy.up if t >= start]
                    down = [t for t in proxy.down if up and up[0] <= t <= end]
                    if up and down:
                        split.append(
                            [1000 * (up[0] - start), 1000 * (down[-1] - up[0]),
                             1000 * (end - down[-1])]
                        )  # fmt: skip
            result["keys"] = lat
            if proxy is not None:
                result["key_split"] = split
            return result
        finally:
            if proxy is not None:
                proxy.close()
            if viewer is not None:
                stop_popen(viewer)
            if connect is not None:
                connect.stop()
            inp.close()
            cap.close()

    def describe(self, cap: X11Capture, screen: npt.NDArray[np.uint8]) -> str:
        """Why no full frame was found: the viewer windows and what differs."""
        try:
            wins = xdotool(self.viewer_display, "search", "--onlyvisible", "--name", "")
        except BenchError as exc:
            wins = str(exc)
        geos = []
        for wid in wins.split()[:5]:
            with contextlib.suppress(BenchError):
                geos.append(xdotool(self.viewer_display, "getwindowgeometry", wid).strip())
        h, w = screen.shape[:2]
        got = rgb(cap.grab())[:h, :w]
        differ = np.argwhere(np.any(got != screen, axis=2))
        where = f"{len(differ)} px differ" + (
            f", first at (x={differ[0][1]}, y={differ[0][0]}), last at (x={differ[-1][1]},"
            f" y={differ[-1][0]})"
            if len(differ)
            else ""
        )
        return f"no full frame in the viewer: {where}; windows: {geos}"

    def viewer_log(self) -> str:
        path = self.workdir / f"viewer-{self.runs}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


# -- the run --------------------------------------------------------------------------


def build_console(out: Path) -> None:
    if shutil.which("npx") is None:
        raise HarnessError("npx is missing: run scripts/bootstrap")
    subprocess.run(
        ["npx", "vite", "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "warn"],
        cwd=REPO / "console",
        check=True,
        capture_output=True,
        timeout=600,
    )
    if not (out / "session.html").exists():
        raise HarnessError("the console build made no session.html")


def product_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENKAKU_")}
    env.pop("DISPLAY", None)
    env["ENKAKU_TECHNICIAN_CONFIG"] = str(workdir / "technician.json")
    env["ENKAKU_LANG"] = "en"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(env: dict[str, str], *args: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "enkaku.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise BenchError(f"enkaku {args[0]} failed ({out.returncode}): {out.stdout}{out.stderr}")


def version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except OSError:
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return next((line.strip() for line in text if line.strip()), "?")


def git_rev() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise HarnessError("Chromium is missing: apt-get install -y chromium")
    viewer_bin = need("xtigervncviewer", "tigervnc-viewer")
    need("xdotool", "xdotool")
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": args.rev or git_rev(),
        "cpus": os.cpu_count(),
        "load_start": load(),
        "chromium": version([CHROMIUM, "--version"]),
        "viewer": version([viewer_bin, "-help"]),
        "repeat": args.repeat,
        "keys_per_session": args.keys,
        "remote_size": list(REMOTE_SIZE),
    }
    print(f"console bench: git {info['git']}, load {info['load_start']}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="enkaku-console-bench-"))
    cleanup: list[Callable[[], None]] = []
    try:
        console_dir = args.console_dir
        if console_dir is None:
            console_dir = workdir / "console"
            print("building the console (npx vite build) ...", flush=True)
            build_console(console_dir)

        desktop = Desktop(workdir, *REMOTE_SIZE)
        cleanup.append(desktop.stop)
        desktop.start()
        remote = Remote(desktop)
        viewer_proc, viewer_display = start_xvfb(*VIEWER_SIZE)
        cleanup.append(lambda: stop_popen(viewer_proc))

        env = product_env(workdir)
        db = f"sqlite:///{workdir}/bench.db"
        login_password = secrets.token_urlsafe(16)
        run_cli({**env, "ENKAKU_NEW_PASSWORD": login_password},
                "user", "--db", db, "--create", "add", USER, "--display-name", "Bench")  # fmt: skip
        run_cli(env, "contract", "--db", db, "add", CONTRACT, "--customer", "Benchmark")
        port = free_port()
        server_url = f"http://127.0.0.1:{port}"
        server = Child(
            "server",
            [sys.executable, "-m", "enkaku.cli", "server", "--host", "127.0.0.1",
             "--port", str(port), "--db", db],
            {**env, "ENKAKU_CONSOLE_DIR": str(console_dir)},
            workdir,
        )  # fmt: skip
        cleanup.append(server.stop)

        def listening() -> bool:
            if server.proc.poll() is not None:
                raise BenchError(f"the server exited:\n{server.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_until(listening, 60, "the server", 0.1)
        agent = Child(
            "agent",
            [sys.executable, "-m", "enkaku.cli", "agent", "--server", server_url, "--headless",
             "--consent", "allow", "--display", desktop.display,
             "--config-dir", str(workdir / "agent")],
            env,
            workdir,
        )  # fmt: skip
        cleanup.append(agent.stop)
        creds = agent.next_event("credentials")
        run_cli({**env, "ENKAKU_LOGIN_PASSWORD": login_password},
                "login", "--server", server_url, "--user", USER)  # fmt: skip
        remote.focus_xterm()

        pw = sync_playwright().start()
        cleanup.append(pw.stop)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        cleanup.append(browser.close)
        context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
        context.add_init_script(PAGE_HOOKS)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT * 1000)
        console = ConsoleSide(page, server_url, remote)
        console.sign_in(login_password)
        peer = PeerSide(env, server_url, workdir, viewer_display, remote, viewer_bin)
        peer.split = args.peer_split
        info["peer_split"] = args.peer_split

        letters = iter(LETTERS * (2 + (args.repeat + 1) * 2 * args.keys // len(LETTERS)))

        def repetition(order: tuple[str, str]) -> dict[str, Any]:
            nonlocal creds
            rep: dict[str, Any] = {"load": load()}
            for side in order:
                screen = remote.stable_screen()
                keys = "".join(next(letters) for _ in range(args.keys))
                if side == "console":
                    rep[side] = console.session(creds, screen, keys)
                    console.end()
                else:
                    rep[side] = peer.session(creds, screen, keys)
                # Every session ends with a new one-time password.
                creds = agent.next_event("credentials")
                remote.clear_line()
            return rep

        # One untimed session per side first: the browser's and Python's caches warm
        # up, and the viewer's window position is found.
        print("warm-up session per side (not counted) ...", flush=True)
        info["warmup"] = repetition(("console", "peer"))
        info["viewer_offset"] = peer.offset
        reps: list[dict[str, Any]] = []
        for i in range(args.repeat):
            rep = repetition(("console", "peer") if i % 2 == 0 else ("peer", "console"))
            reps.append(rep)
            c, p = rep["console"], rep["peer"]
            print(
                f"  rep {i + 1}/{args.repeat} load {rep['load'][0]:.2f}: frame console"
                f" {c['frame']:.0f} ms, peer {p['frame']:.0f} ms; keys console"
                f" {fmt_list(c['keys'])}, peer {fmt_list(p['keys'])}",
                flush=True,
            )
        info["load_end"] = load()
        return {"info": info, "reps": reps, "summary": summarise(reps)}
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                print(f"console bench: cleanup: {exc}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)


def rounded(value: Any) -> Any:
    """``value`` with every float rounded to 0.001 (ms: a microsecond)."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def fmt_list(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values)


def summarise(reps: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for what in ("frame", "keys"):
        row: dict[str, Any] = {}
        for side in ("console", "peer"):
            values: list[float] = []
            for rep in reps:
                v = rep[side][what]
                values.extend(v if isinstance(v, list) else [v])
            row[side] = {
                "n": len(values),
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "min": min(values) if values else None,
                "max": max(values) if values else None,
            }
        for q in ("p50", "p95"):
            c, p = row["console"][q], row["peer"][q]
            row[f"ratio_{q}"] = c / p if c is not None and p else None
        out[what] = row
    marks: dict[str, dict[str, float | None]] = {}
    for side in ("console", "peer"):
        names = sorted({m for rep in reps for m in rep[side]["marks"]})
        marks[side] = {
            m: percentile([rep[side]["marks"][m] for rep in reps if m in rep[side]["marks"]], 50)
            for m in names
        }
    out["marks_p50"] = marks
    split = [k for r in reps for k in r["console"].get("key_split", [])]
    out["key_split_p50"] = [percentile([k[i] for k in split], 50) for i in range(4)]
    drawn = [v for r in reps for v in r["console"].get("keys_drawn", [])]
    out["keys_drawn"] = {
        "n": len(drawn),
        "p50": percentile(drawn, 50),
        "p95": percentile(drawn, 95),
    }
    peer = out["keys"]["peer"]
    for q in ("p50", "p95"):
        c = out["keys_drawn"][q]
        out["keys_drawn"][f"ratio_{q}"] = c / peer[q] if c is not None and peer[q] else None
    out["key_split_n"] = len(split)
    peer_split = [k for r in reps for k in r["peer"].get("key_split", [])]
    out["peer_key_split_p50"] = [percentile([k[i] for k in peer_split], 50) for i in range(3)]
    out["peer_key_split_n"] = len(peer_split)
    out["raf_period"] = percentile(
        [r["console"]["raf_period"] for r in reps if r["console"].get("raf_period") is not None],
        50,
    )
    return out


def report(result: dict[str, Any]) -> str:
    info, s = result["info"], result["summary"]
    lines = [
        "enkaku web console vs enkaku connect --vnc-listen + TigerVNC viewer (one run)",
        f"date {info['date']}  git {info['git']}  cpus {info['cpus']}  "
        f"load avg (1/5/15 min) start {info['load_start']} end {info.get('load_end')}",
        f"{info['chromium']}; {info['viewer']}",
        f"remote screen {info['remote_size'][0]}x{info['remote_size'][1]} (Xvfb, xterm), "
        f"lossless on both sides; {info['repeat']} sessions per side, "
        f"{info['keys_per_session']} keys per session, sides alternating",
        "",
        f"{'ms':34s} {'console p50':>11s} {'p95':>7s} {'peer p50':>9s} {'p95':>7s}"
        f" {'c/p p50':>8s} {'c/p p95':>8s}",
    ]
    names = {"frame": "(a) connect -> first full frame", "keys": "(b) key -> screen"}
    for what in ("frame", "keys"):
        row = s[what]
        c, p = row["console"], row["peer"]
        lines.append(
            f"{names[what] + ' (n=' + str(c['n']) + '/' + str(p['n']) + ')':34s}"
            f" {c['p50']:11.1f} {c['p95']:7.1f} {p['p50']:9.1f} {p['p95']:7.1f}"
            f" {row['ratio_p50']:8.2f} {row['ratio_p95']:8.2f}"
        )
    lines.append("")
    lines.append("(a) steps, median ms after the start:")
    for side, marks in s["marks_p50"].items():
        steps = sorted(marks.items(), key=lambda kv: kv[1] or 0)
        lines.append(f"  {side}: " + ", ".join(f"{k} {v:.0f}" for k, v in steps))
    d = s["keys_drawn"]
    if d["p50"] is not None:
        lines.append(
            f"{'(b) console to the draw (n=' + str(d['n']) + ')':34s}"
            f" {d['p50']:11.1f} {d['p95']:7.1f} {'':9s} {'':7s}"
            f" {d['ratio_p50']:8.2f} {d['ratio_p95']:8.2f}"
            "   (keydown -> noVNC drew the echo, before a frame shows it)"
        )
    tx, net, draw, shown = s["key_split_p50"]
    if tx is not None:
        lines.append(
            f"(b) console steps, median ms (n={s['key_split_n']}): keydown -> record sent {tx:.1f};"
            f" sent -> last record received before the draw {net:.1f}; received -> drawn"
            f" {draw:.1f}; drawn -> next animation frame {shown:.1f}"
        )
    ptx, pnet, pshown = s.get("peer_key_split_p50") or (None, None, None)
    if ptx is not None:
        lines.append(
            f"(b) peer steps through --peer-split's relay, median ms (n={s['peer_key_split_n']}):"
            f" key -> the viewer's bytes to connect {ptx:.1f}; sent -> last bytes back before"
            f" the change {pnet:.1f}; received -> viewer's window changed {pshown:.1f}"
            " (the relay adds a thread hop each way to this run's peer figures)"
        )
    if s.get("raf_period") is not None:
        lines.append(
            f"the page's animation frame period (median): {s['raf_period']:.1f} ms (the console's"
            " figures run to the frame that shows the change; Xvfb has no frames)"
        )
    lines.append("load average (1 min) per repetition: "
                 + " ".join(f"{rep['load'][0]:.2f}" for rep in result["reps"]))  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.console",
        description="The web console against enkaku connect + TigerVNC's viewer, one run.",
    )
    p.add_argument("--repeat", type=int, default=10, help="sessions per side (default 10)")
    p.add_argument("--keys", type=int, default=5, help="keys timed per session (default 5)")
    p.add_argument("--console-dir", type=Path, help="a built console (default: build one)")
    p.add_argument("--out", type=Path, help="STEM for STEM.txt and STEM.json")
    p.add_argument(
        "--peer-split",
        action="store_true",
        help="relay the viewer's connection through a timing proxy to split the peer's key"
        " latency (adds a hop: a diagnostic run, not the plain comparison)",
    )
    p.add_argument("--rev", help="the revision measured, when run from an archive without .git")
    args = p.parse_args(argv)
    stem = args.out or REPO / "benchmarks" / "results" / f"{datetime.date.today()}-console"
    # SIGTERM ends the run through its clean-up (every child stopped by PID).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run(args)
    except (BenchError, HarnessError) as exc:
        print(f"console bench: {exc}", file=sys.stderr)
        return 1
    text = report(result)
    print(text)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".txt").write_text(text + "\n")
    stem.with_suffix(".json").write_text(json.dumps(rounded(result), indent=1) + "\n")
    print(f"wrote {stem}.txt and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
