"""The screen engine against x11vnc and TigerVNC's x0vncserver, on one Xvfb, in one run.

``python -m benchmarks.screen [--duration 6] [--keys 20] [--profiles tight,zrle]
[--workloads idle,text,jlog,winmove,windiag,image,browser,dialogs,pan,dashboard,docs,wheel,tui]
[--paths direct,bridge,relay]
[--peers x11vnc,x0vncserver] [--wayland] [--before REV] [--server NAME=CMD] [--out STEM]``

The agent is measured on each path of ``--paths``: ``direct`` (``enkaku``: its RFB server
on a loopback port, ``benchmarks.rfb_direct``), ``bridge`` (``enkaku-bridge``: the
technician's ``VNCBridge`` over the end-to-end channel to the agent's screen service in
another process, no server: ``benchmarks.screen_paths``) and ``relay``
(``enkaku-relay``: a real ``enkaku server``, ``enkaku agent`` and ``enkaku connect
--vnc-listen``: ``benchmarks.e2e_chain``). For the two chains the server CPU is the
agent process's and ``chain%`` adds every process of the path; a table gives each path
against ``direct`` (ratios, and the latency p50/p95 difference in ms).

``--wayland`` runs the same workloads and client on a headless sway instead
(``benchmarks.screen_wayland``): the agent's wayland-wlroots backend (``--paths direct``
by default; ``bridge`` also works) against wayvnc (``--max-fps 60``, the agent's own
cap; wayvnc's default is 30); ``disp%`` is then sway's CPU, and grim is the truth of the
pixel check. Needs sway, foot, grim, wayvnc and pywayland.

One Xvfb 1920x1080x24 (gradient wallpaper, one xterm running ``cat``; ``--x-server xorg``:
a real Xorg with the dummy video driver instead, its CPU in the ``Xvfb`` column) serves
every server in turn: the agent's ``RFBService`` on loopback TCP (``benchmarks.rfb_direct``: no
authentication, no encryption, 127.0.0.1 only), ``x11vnc`` and ``X0tigervnc`` (Debian's
``tigervnc-scraping-server``; its ``x0vncserver`` wrapper daemonizes, so the binary itself
is run). ``--before REV`` adds the agent as of git revision REV (``git archive`` of ``src/``
into a temporary folder, its compiled encoder core built there when this checkout has
one built), so "before" and "after" are measured in the same run.
``--server NAME=CMD`` adds any other server (``{display}`` and ``{port}`` are filled in;
the command must stay in the foreground: its PID is the one whose CPU is measured).

The client is this program: an RFB 3.8 client on a blocking socket that keeps exactly one
FramebufferUpdateRequest outstanding (a new one as soon as an update has been read), the
greedy client of the VNC benchmarks. Decoding uses the test suite's independent decoder
(``tests/protocol/rfb/decoders.py``).

For every server, profile and workload (measured cell by cell: each workload of a profile,
then its latency, on every server in turn, each time from a fresh server process, so the
figures compared in a cell are taken minutes apart at most, not half an hour;
``--by-server`` keeps one process per server and runs all its cells in a row;
``--rounds N`` measures each workload cell N times, the servers' order reversed every
other round, and reports each server's median: this VM's speed drifts by 10 % within
minutes, which one round of a cell does not average out):

* **throughput** (``--duration`` s after 1 s of warm-up): the client parses every update
  (zlib streams inflated so they stay in sync, pixels not rebuilt, so a Python client does
  not slow the server down): updates/s, bytes per update, KB/s, rectangles per encoding,
  and the CPU seconds (utime+stime, psutil) of the server process and of Xvfb (the X
  server does the pixel copies for scraping servers) over the window. ``ms/upd`` is the
  server's CPU milliseconds per update.
* **verify** (``--verify-duration`` s, a fresh connection decoding every pixel): the
  framebuffer the incremental stream built, once the workload has stopped and no update
  came for 1.5 s, against the screen (``X11Capture.grab``): ``exact``, ``exact+cur``
  (only a 48x48 box around the pointer differs: x0vncserver paints the cursor into the
  framebuffer) or the share of differing pixels and the PSNR. On the X11 ``image``
  workload with a lossless profile it also counts the updates after which the client
  showed one of the slideshow's frames whole (up to a pointer's 32x32 pixels), and how
  many of those were a frame other than the last whole one (``distinct``): a table
  after the latency's, so bytes can be compared per new frame, not only per second.
* **latency** (per profile, ``--keys`` keys): the pointer is moved into the xterm through
  RFB (no window manager: focus follows the pointer), then each key ``a``..``z`` is sent as
  an RFB KeyEvent (down, up) 150-350 ms apart; the time runs from writing the KeyEvent to
  having read the update whose decoded pixels changed. So the server's input path is part
  of it, as it is for a technician.
* **idle**: the server's CPU % of one core while nothing changes (``idle`` workload).

Workloads (time-bounded, seeded, the same pixels for every server):
``idle``; ``text``: an xterm 150x50 printing a seeded build log at 60 lines/s (scrolls);
``jlog``: a Japanese application log (Noto Sans Mono CJK JP) at 30 lines/s in an xterm
120x40; ``winmove``: an xterm 90x30 with static text moved 20 px every 33 ms along a
rectangle (``xdotool windowmove --sync``, one chained process); ``windiag``: an xterm
80x26 (DejaVu Sans Mono, Noto Sans Mono CJK JP) showing a Japanese and English page,
dragged diagonally as by hand, 30 steps a second, dx and dy both non-zero and varied
(4-10 px and about the slope of the diagonal times that, now and then one axis backwards
for a step), back and forth along the diagonal of a 540x400 px box (a seeded path, one
chained ``xdotool`` as for winmove; on sway the same path by ``move position`` through
its IPC: ``benchmarks.screen_apps``);
``image``: full-screen photo-like frames at 10 fps (Tk); ``browser``: Debian's Chromium,
a 1280x900 app window showing a generated page (Japanese and English paragraphs,
headings, tables, small images) that scrolls itself 20 px every 33 ms, wrapping at the
end (``benchmarks.screen_apps``);
``dialogs``: a static Tk application window over which message dialogs (icon, Japanese and
English text, buttons) open and close at seeded places, 4 a second; ``pan``: a map-like
Tk canvas (1000x700, Japanese and English labels) panned diagonally inside its window,
30 steps a second along windiag's path; ``dashboard``: a monitoring page in Chromium
(1280x900) that animates in small places far apart, as web applications do: a spinner and
a progress bar 30 steps a second, a line chart 10, metric cards and a log table (a new row
at its top) 2, a clock 1; ``docs``: ``browser``'s page laid out as a documentation site,
a fixed header and a fixed sidebar of links beside the text that scrolls; ``wheel``: the
docs page scrolled as by a mouse wheel, 300 px twice a second with Chromium's smooth
scrolling, steps of varying size; ``tui``: a process monitor as ``htop`` draws one in an
xterm of 150x45 (DejaVu Sans Mono, Noto Sans Mono CJK JP for the Japanese commands),
4 refreshes a second, each rewriting only the changed part of each row: per-CPU and
memory bars, load and uptime, and the processes sorted by CPU, whose rows reorder (X11
only, the last seven). The default ``--workloads`` is idle, text, jlog, winmove and
image.

Profiles: ``tight`` = Tight, ZRLE, CopyRect, Raw, JPEG quality level 8, compression 2,
Cursor, DesktopSize, LastRect (TigerVNC's viewer on a LAN); ``zrle`` = ZRLE, CopyRect,
Raw (lossless); ``tight-lossless`` = ``tight`` without a quality level. Each also as
``NAME-cu``: the same encodings plus Fence and ContinuousUpdates, as noVNC and TigerVNC's
viewer connect: once the server offers continuous updates the client turns them on and
sends no more incremental requests (the server sends each update when it is ready,
paced by its own flow control), and it answers the server's fence requests; a server
without them is measured as with the greedy client (``(cu)`` in the rects column marks
the cells where they were on).

Prints a table per server and the ratios of every ``enkaku*`` server to each peer;
writes STEM.txt and STEM.json (``--out``, default ``benchmarks/results/DATE-screen``).
Needs xvfb, xterm, xdotool, imagemagick (``display`` sets the wallpaper), x11vnc,
tigervnc-scraping-server, fonts-noto-cjk, chromium for the browser workloads
(Debian packages) and the venv (numpy, pillow, psutil, tkinter).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from tests.protocol.rfb.decoders import Decoder, read_compact_length, tpixel_is_rgb
from tests.xdisplay import x_env, xorg, xvfb, xvfb_pid

from benchmarks.encode_replay import build_native
from benchmarks.screen_apps import (
    DRAG_BOX,
    DRAG_RATE,
    DRAG_SIZE,
    TUI_RATE,
    TUI_SIZE,
    browser_page,
    chromium_cmd,
    dashboard_page,
    drag_path,
    drag_text,
    remove_profile,
    stop_group,
)
from benchmarks.screen_wayland import WaylandDesktop, _find, _ipc
from enkaku.agent.capture.x11 import X11Capture
from enkaku.protocol.rfb.messages import Encoding
from enkaku.protocol.rfb.pixelformat import NATIVE

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1920, 1080
BASE_XTERM = (40, 40)  # the idle desktop's xterm (80x24, running cat): keys go there
POINTER_IN_XTERM = (120, 80)
WAYLAND_BASE = (0, 0)  # the base foot (tiled: the whole screen, running cat)

PROFILES: dict[str, list[int]] = {
    "tight": [
        Encoding.TIGHT, Encoding.ZRLE, Encoding.COPYRECT, Encoding.RAW,
        Encoding.JPEG_QUALITY_LOW + 8, Encoding.COMPRESS_LOW + 2,
        Encoding.CURSOR, Encoding.DESKTOP_SIZE, Encoding.LAST_RECT,
    ],
    "tight-lossless": [
        Encoding.TIGHT, Encoding.ZRLE, Encoding.COPYRECT, Encoding.RAW,
        Encoding.COMPRESS_LOW + 2, Encoding.CURSOR, Encoding.DESKTOP_SIZE, Encoding.LAST_RECT,
    ],
    "zrle": [Encoding.ZRLE, Encoding.COPYRECT, Encoding.RAW],
}  # fmt: skip
#: Each profile also as a viewer of today does it (noVNC, TigerVNC's): continuous
#: updates, fences answered; the server sends each update when it is ready, paced by its
#: own flow control, instead of at each request (``Client``).
PROFILES |= {
    f"{name}-cu": [*codes, Encoding.FENCE, Encoding.CONTINUOUS_UPDATES]
    for name, codes in list(PROFILES.items())
}
ENCODING_NAMES = {0: "raw", 1: "copy", 7: "tight", 16: "zrle", -239: "cursor", -224: "last"}
#: The workload's own rate of visible changes per second (the ceiling a server can reach).
#: browser: a 20 px scroll step every 33 ms; dialogs: 4 dialogs a second, each opened and
#: closed (two changes; Tk paints a mapped dialog's widgets and the window below a closed
#: one on expose, a step later, so a greedy client sees more updates than that); wheel:
#: Chromium animates each smooth scroll at up to 60 frames a second.
CHANGE_RATE = {
    "idle": 0.0, "text": 60.0, "jlog": 30.0, "winmove": 30.0, "windiag": 30.0, "image": 10.0,
    "browser": 30.0, "dialogs": 8.0, "pan": 30.0, "dashboard": 30.0, "docs": 30.0,
    "wheel": 60.0, "tui": 4.0,
}  # fmt: skip
X11_ONLY = {"browser", "dialogs", "pan", "dashboard", "docs", "wheel", "tui"}
BROWSER_PAGES = {"browser", "dashboard", "docs", "wheel"}
LOSSLESS = {"zrle", "tight-lossless"}
PEERS = ("x11vnc", "x0vncserver", "wayvnc")
#: Seconds between one client connection and the next: the agent frees a connection's
#: capture in a worker thread, and a capture opened meanwhile crashed it (heap corruption
#: in XOpenDisplay, seen on the bridge path; see docs/performance.md).
SETTLE = 1.0


# -- the RFB client --------------------------------------------------------------------


class SockReader:
    """``take``/``unpack`` over a blocking socket (the decoder's reader interface)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        self.consumed = 0

    def _fill(self, n: int) -> None:
        while len(self.buf) - self.pos < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            if self.pos > (4 << 20):
                del self.buf[: self.pos]
                self.pos = 0
            self.buf += chunk

    def take(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        self.consumed += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def readable(self, timeout: float) -> bool:
        if len(self.buf) > self.pos:
            return True
        return bool(select.select([self.sock], [], [], max(timeout, 0.0))[0])


class BenchDecoder(Decoder):
    """The test decoder, with a parse-only mode that keeps the zlib streams in sync."""

    full = True
    jpeg = 0

    def _zrle(self, data: bytes, x: int, y: int, w: int, h: int) -> None:
        if self.full:
            super()._zrle(data, x, y, w, h)

    def _tight(self, r: Any, x: int, y: int, w: int, h: int) -> None:
        if self.full:
            super()._tight(r, x, y, w, h)
            return
        ctl = r.take(1)[0]
        for s in range(4):
            if ctl >> s & 1:
                self.tight[s] = __import__("zlib").decompressobj()
        kind = ctl >> 4
        tsize = 3 if tpixel_is_rgb(self.pf) else self.pf.bits_per_pixel // 8
        n = w * h
        if kind == 0x8:
            r.take(tsize)
            return
        if kind == 0x9:
            r.take(read_compact_length(r))
            self.jpeg += 1
            return
        stream = kind & 0x3
        filt = r.take(1)[0] if kind & 0x4 else 0
        size = n * tsize
        if filt == 1:
            colours = r.take(1)[0] + 1
            r.take(colours * tsize)
            size = (w + 7) // 8 * h if colours == 2 else n
        self._tight_data(r, stream, size)


class Client:
    """One RFB connection: handshake, pixel format, encodings, updates. With
    ``ContinuousUpdates`` among its encodings it turns continuous updates on once the
    server says it has them (EndOfContinuousUpdates) and then sends no incremental
    requests; it answers every fence request (flags cleared, as TigerVNC's viewer does)."""

    def __init__(self, port: int, encodings: list[int], *, full: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        self.r = SockReader(self.sock)
        version = self.r.take(12)
        if not version.startswith(b"RFB 003."):
            raise RuntimeError(f"not an RFB server: {version!r}")
        self.sock.sendall(b"RFB 003.008\n")
        (count,) = self.r.unpack("!B")
        types = self.r.take(count)
        if 1 not in types:
            raise RuntimeError(f"server offers no security type None: {list(types)}")
        self.sock.sendall(b"\x01")
        (result,) = self.r.unpack("!I")
        if result != 0:
            raise RuntimeError("security handshake failed")
        self.sock.sendall(b"\x01")  # shared
        w, h = self.r.unpack("!HH")
        self.r.take(16)
        (n,) = self.r.unpack("!I")
        self.r.take(n)
        self.sock.sendall(b"\x00\x00\x00\x00" + bytes(NATIVE))
        self.sock.sendall(struct.pack(f"!BxH{len(encodings)}i", 2, len(encodings), *encodings))
        self.dec = BenchDecoder(w, h, NATIVE)
        self.dec.full = full
        self.rects: Counter[str] = Counter()
        self.wants_continuous = Encoding.CONTINUOUS_UPDATES in encodings
        self.continuous = False  # on: the server offered it and we enabled it
        self.fences = 0  # fence requests answered

    def request(self, incremental: bool = True) -> None:
        if self.continuous and incremental:
            return  # the server sends updates without them
        self.sock.sendall(
            struct.pack("!BBHHHH", 3, int(incremental), 0, 0, self.dec.width, self.dec.height)
        )

    def key(self, keysym: int) -> None:
        self.sock.sendall(struct.pack("!BBxxI", 4, 1, keysym) + struct.pack("!BBxxI", 4, 0, keysym))

    def pointer(self, x: int, y: int) -> None:
        self.sock.sendall(struct.pack("!BBHH", 5, 0, x, y))

    def read(self, timeout: float) -> bool | None:
        """One server message: True for a FramebufferUpdate, False for another, None if
        nothing came within ``timeout``."""
        if not self.r.readable(timeout):
            return None
        kind = self.r.take(1)[0]
        if kind == 0:
            self.dec.updates.clear()
            self.dec._update(self.r)  # type: ignore[arg-type]  # same take/unpack interface
            for rect in self.dec.updates[-1].rects:
                self.rects[ENCODING_NAMES.get(rect[4], str(rect[4]))] += 1
            return True
        if kind == 1:
            _first, n = self.r.unpack("!xHH")
            self.r.take(6 * n)
        elif kind == 3:
            (n,) = self.r.unpack("!3xI")
            self.r.take(n)
        elif kind == 150:  # EndOfContinuousUpdates: the server has them
            if self.wants_continuous and not self.continuous:
                self.continuous = True
                w, h = self.dec.width, self.dec.height
                self.sock.sendall(struct.pack("!BBHHHH", 150, 1, 0, 0, w, h))
        elif kind == 248:
            flags, n = self.r.unpack("!3xIB")
            payload = self.r.take(n)
            if flags & 1 << 31:  # a request: answered at once, no flag kept
                self.sock.sendall(struct.pack("!B3xIB", 248, 0, n) + payload)
                self.fences += 1
        elif kind != 2:
            raise RuntimeError(f"unknown server message type {kind}")
        return False

    def drain(self, quiet: float, limit: float = 20.0) -> int:
        """Keep one request outstanding until no update came for ``quiet`` s."""
        updates = 0
        end = time.monotonic() + limit
        while time.monotonic() < end:
            got = self.read(quiet)
            if got is None:
                return updates
            if got:
                updates += 1
                self.request()
        return updates

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# -- processes ---------------------------------------------------------------------------


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a child we started (and its session, when it has its own) by PID."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def spawn(
    cmd: list[str], display: str, log: Path | None = None, **kw: Any
) -> subprocess.Popen[Any]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        cmd, env=kw.pop("env", x_env(display)), stdout=out, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True, **kw,
    )  # fmt: skip


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (other benchmarks may run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


# -- workloads ---------------------------------------------------------------------------

WORDS_JA = [
    "サービス",
    "接続",
    "ユーザー",
    "設定ファイル",
    "データベース",
    "キャッシュ",
    "認証",
    "証明書",
    "バックアップ",
    "同期処理",
    "印刷キュー",
    "更新プログラム",
    "ネットワーク",
]
VERBS_JA = ["を開始しました", "を完了しました", "に失敗しました（再試行します）", "を確認中です"]


def textgen(rate: float, seconds: float, lang: str, seed: int) -> None:
    """Print a seeded log at ``rate`` lines per second (a subcommand run in the xterm)."""
    rnd = random.Random(seed)
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        i += 1
        if lang == "ja":
            line = (
                f"2026-11-29 10:{i // 60 % 60:02d}:{i % 60:02d} 情報 "
                f"{rnd.choice(WORDS_JA)}「{rnd.choice(WORDS_JA)}」{rnd.choice(VERBS_JA)} "
                f"処理時間={rnd.randint(1, 999)}ミリ秒 id={rnd.getrandbits(32):08x}"
            )
        else:
            mod = rnd.choice(["core", "net", "ui", "storage", "auth", "render"])
            line = (
                f"[{i:06d}] CC src/{mod}/file_{rnd.randint(0, 999):03d}.c -> "
                f"obj/{mod}/{rnd.getrandbits(40):010x}.o  ({rnd.randint(10, 9999)} ms) "
                + "".join(
                    rnd.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(rnd.randint(0, 60))
                )
            )
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def make_images(folder: Path, count: int = 8) -> list[Path]:
    """Seeded photo-like 1920x1080 frames (smooth colour fields with fine grain), as PPM."""
    from PIL import Image

    paths = []
    for i in range(count):
        path = folder / f"frame{i}.ppm"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(100 + i)
        low = Image.fromarray(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8))
        mid = Image.fromarray(rng.integers(0, 256, (68, 120, 3), dtype=np.uint8))
        a = np.asarray(low.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), dtype=np.float32)
        b = np.asarray(mid.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), dtype=np.float32)
        grain = rng.normal(0, 6, (HEIGHT, WIDTH, 1)).astype(np.float32)
        img = np.clip(0.7 * a + 0.3 * b + grain, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(path)
    return paths


def imageshow(
    fps: float,
    seconds: float,
    folder: str,
    *,
    title: str = "benchimage",
    geometry: tuple[int, int, int, int] = (WIDTH, HEIGHT, 0, 0),
    keep_last: bool = False,
) -> None:
    """A slideshow of the frames in ``folder`` (a subcommand): full screen by default, or
    ``geometry`` (w, h, x, y: each frame's top left part). After ``seconds`` it closes,
    or with ``keep_last`` keeps the last frame and prints ``still``."""
    import tkinter as tk

    w, h, x, y = geometry
    root = tk.Tk()
    root.withdraw()
    root.title(title)
    root.overrideredirect(True)
    root.geometry(f"{w}x{h}+{x}+{y}")
    photos = []
    for path in sorted(Path(folder).glob("frame*.ppm")):
        photo = tk.PhotoImage(file=str(path))
        if (photo.width(), photo.height()) != (w, h):
            part = tk.PhotoImage(width=w, height=h)
            part.tk.call(part, "copy", photo, "-from", 0, 0, w, h)
            photo = part
        photos.append(photo)
    root.deiconify()
    label = tk.Label(root, borderwidth=0, highlightthickness=0)
    label.pack()
    start = time.monotonic()
    state = {"i": 0}

    def step() -> None:
        if time.monotonic() - start > seconds:
            if keep_last:
                print("still", flush=True)  # the last photo stays
            else:
                root.destroy()
            return
        label.configure(image=photos[state["i"] % len(photos)])
        state["i"] += 1
        delay = start + state["i"] / fps - time.monotonic()
        root.after(max(1, int(delay * 1000)), step)

    step()
    root.mainloop()


@dataclass
class Desktop:
    display: str
    tmp: Path
    logs: Path
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def me(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "benchmarks.screen", *args]

    def truth(self) -> np.ndarray:
        return x11_truth(self.display)

    @contextlib.contextmanager
    def workload(self, name: str, seconds: float) -> Iterator[None]:
        procs: list[subprocess.Popen[Any]] = []
        groups: list[subprocess.Popen[Any]] = []  # stopped with every process of the group
        profile: Path | None = None
        env = x_env(self.display)
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + str(ROOT)
        run: dict[str, Any] = {"cwd": ROOT, "env": env}
        secs = f"{seconds + 5:.0f}"
        if name == "text":
            procs.append(spawn(["xterm", "-T", "benchtext", "-geometry", "150x50+560+40", "-e",
                                *self.me("_textgen", "--rate", "60", "--seconds", secs)],
                               self.display, **run))  # fmt: skip
        elif name == "jlog":
            procs.append(spawn(["xterm", "-T", "benchjlog", "-fa", "Noto Sans Mono CJK JP",
                                "-fs", "11", "-geometry", "110x36+500+60", "-e",
                                *self.me("_textgen", "--rate", "30", "--seconds", secs,
                                         "--lang", "ja")],
                               self.display, **run))  # fmt: skip
        elif name == "winmove":
            text = self.tmp / "winmove.txt"
            with open(text, "w") as f, contextlib.redirect_stdout(f):
                textgen(1e9, 0.05, "en", 7)
            procs.append(spawn(["xterm", "-T", "benchmove", "-geometry", "90x30+600+200", "-e",
                                "sh", "-c",
                                f"head -28 {shlex.quote(str(text))}; exec sleep {secs}"],
                               self.display))  # fmt: skip
            wid = subprocess.run(
                ["xdotool", "search", "--sync", "--name", "^benchmove$"], env=env,
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout.split()[0]  # fmt: skip
            args: list[str] = []
            x, y, dx, dy = 600, 200, 20, 0
            for _ in range(int((seconds + 5) * 30)):
                args += ["windowmove", "--sync", wid, str(x), str(y), "sleep", "0.033"]
                x, y = x + dx, y + dy
                if x >= 1200 and dx > 0:
                    dx, dy = 0, 20
                elif y >= 600 and dy > 0:
                    dx, dy = -20, 0
                elif x <= 600 and dx < 0:
                    dx, dy = 0, -20
                elif y <= 200 and dy < 0:
                    dx, dy = 20, 0
            procs.append(spawn(["xdotool", *args], self.display))
        elif name == "windiag":
            cols, rows = DRAG_SIZE
            text = self.tmp / "windiag.txt"
            text.write_text(drag_text(cols, rows - 1), encoding="utf-8")
            path = drag_path(int((seconds + 5) * DRAG_RATE))
            x, y = path[0]
            procs.append(spawn(["xterm", "-T", "benchdiag", "-u8", "-fa", "DejaVu Sans Mono",
                                "-fd", "Noto Sans Mono CJK JP", "-fs", "11", "-geometry",
                                f"{cols}x{rows}+{x}+{y}", "-e", "sh", "-c",
                                f"cat {shlex.quote(str(text))}; exec sleep {secs}"],
                               self.display))  # fmt: skip
            wid = subprocess.run(
                ["xdotool", "search", "--sync", "--name", "^benchdiag$"], env=env,
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout.split()[0]  # fmt: skip
            args = []
            for x, y in path[1:]:
                args += ["windowmove", "--sync", wid, str(x), str(y),
                         "sleep", f"{1 / DRAG_RATE:.3f}"]  # fmt: skip
            procs.append(spawn(["xdotool", *args], self.display))
        elif name == "image":
            folder = self.tmp / "images"
            procs.append(spawn(self.me("_imageshow", "--fps", "10", "--seconds", secs,
                                       str(folder)), self.display, **run))  # fmt: skip
        elif name in BROWSER_PAGES:
            # A throw-away profile per start; the browser's processes share its session.
            if name == "dashboard":
                page = dashboard_page(self.tmp, seconds + 5)
            else:
                page = browser_page(self.tmp, seconds + 5, docs=name == "docs",
                                    wheel=name == "wheel")  # fmt: skip
            profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=self.tmp))
            groups.append(spawn(chromium_cmd(page, profile, smooth=name == "wheel"), self.display,
                                self.logs / "chromium.log"))  # fmt: skip
        elif name == "dialogs":
            procs.append(spawn(self.me("_dialogs", "--rate", "4", "--seconds", secs,
                                       "--seed", "3"), self.display, **run))  # fmt: skip
        elif name == "pan":
            procs.append(spawn(self.me("_pan", "--seconds", secs, "--seed", "5"),
                               self.display, **run))  # fmt: skip
        elif name == "tui":
            cols, rows = TUI_SIZE
            procs.append(spawn(["xterm", "-T", "benchtui", "-u8", "-fa", "DejaVu Sans Mono",
                                "-fd", "Noto Sans Mono CJK JP", "-fs", "10", "-geometry",
                                f"{cols}x{rows}+520+40", "-e",
                                *self.me("_tui", "--rate", f"{TUI_RATE:g}", "--seconds", secs,
                                         "--seed", "9")],
                               self.display, **run))  # fmt: skip
        elif name != "idle":
            raise SystemExit(f"unknown workload {name}")
        title = {"text": "benchtext", "jlog": "benchjlog", "image": "benchimage",
                 "browser": "benchbrowser", "dialogs": "benchdialogs",
                 "pan": "benchpan", "dashboard": "benchdash",
                 "docs": "benchdocs", "wheel": "benchwheel",
                 "tui": "benchtui"}.get(name)  # fmt: skip
        try:
            if title and name in X11_ONLY:
                # The page sets its title only once it has loaded and starts to scroll.
                wait_window(title, env, 60 if name in BROWSER_PAGES else 30)
            elif title:
                subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name",
                                f"^{title}$"], env=env, capture_output=True, timeout=30,
                               check=False)  # fmt: skip
            time.sleep(0.3)
            yield
        finally:
            for p in reversed(procs):
                stop(p)
            for p in groups:
                stop_group(p)
            if profile is not None:
                remove_profile(profile)


class WaylandBench(WaylandDesktop):
    """``WaylandDesktop`` and ``windiag``, which shares its page and path with the X11
    workload (``benchmarks.screen_apps``): the dragged foot floats, placed by a rule,
    and ``_swaydrag`` moves it."""

    def start(self) -> WaylandBench:
        super().start()
        x, y, *_ = DRAG_BOX
        for rule in ('for_window [app_id="benchdiag"] floating enable',
                     f'for_window [app_id="benchdiag"] move position {x} {y}'):  # fmt: skip
            _ipc(self.ipc, rule)
        return self

    @contextlib.contextmanager
    def workload(self, name: str, seconds: float) -> Iterator[None]:
        if name != "windiag":
            with super().workload(name, seconds):
                yield
            return
        cols, rows = DRAG_SIZE
        secs = f"{seconds + 5:.0f}"
        text = self.tmp / "windiag.txt"
        text.write_text(drag_text(cols, rows - 1), encoding="utf-8")
        # Black on white as the xterm on X11: a default foot is the base foot's colour,
        # and only its text would be seen to move.
        procs = [self.spawn(["foot", "--app-id", "benchdiag", "--title", "benchdiag",
                             "--window-size-chars", f"{cols}x{rows}",
                             "--font", "Noto Sans Mono CJK JP:size=11",
                             "-o", "colors.background=ffffff", "-o", "colors.foreground=000000",
                             "--", "sh", "-c",
                             f"cat {shlex.quote(str(text))}; exec sleep {secs}"],
                            "foot.log")]  # fmt: skip
        try:
            self.wait_window("benchdiag")
            procs.append(self.spawn(self.me("_swaydrag", "--ipc", self.ipc, "--seconds", secs)))
            time.sleep(0.3)
            yield
        finally:
            for p in reversed(procs):
                stop(p)
                if p in self.procs:
                    self.procs.remove(p)
            end = time.monotonic() + 10  # until the window is gone: the next run starts clean
            while time.monotonic() < end and _find(_ipc(self.ipc, "", 4), "benchdiag"):
                time.sleep(0.05)


AnyDesktop = Desktop | WaylandDesktop


def wait_window(title: str, env: dict[str, str], timeout: float) -> None:
    """Wait for a visible window named ``title``. Not ``xdotool search --sync``: xdotool
    exits on the X error it gets when a window it looks at is destroyed meanwhile (the
    dialogs workload opens and closes windows all the time), so it is asked again."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"],
            env=env, capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        if found.returncode == 0 and found.stdout.split():
            return
        time.sleep(0.1)
    raise RuntimeError(f"no visible window {title!r} after {timeout:.0f} s")


# -- measurement ---------------------------------------------------------------------------


def x11_truth(display: str) -> np.ndarray:
    """The X screen as 0x00RRGGBB values (h, w)."""
    with X11Capture(display) as cap:
        screen = cap.grab()
    return screen.view("<u4").reshape(screen.shape[:2]) & 0xFFFFFF


def compare(fb: np.ndarray, truth: np.ndarray) -> str:
    """The client's framebuffer (0x00RRGGBB values) against the real screen."""
    if fb.shape != truth.shape:
        return f"size {fb.shape[1]}x{fb.shape[0]}"
    diff = (fb & 0xFFFFFF) != truth
    if not diff.any():
        return "exact"
    px, py = POINTER_IN_XTERM
    box = diff.copy()
    box[max(py - 24, 0) : py + 24, max(px - 24, 0) : px + 24] = False
    if not box.any():
        return "exact+cur"
    a = np.stack([(fb >> s) & 0xFF for s in (16, 8, 0)]).astype(np.float64)
    b = np.stack([(truth >> s) & 0xFF for s in (16, 8, 0)]).astype(np.float64)
    mse = float(((a - b) ** 2).mean())
    psnr = 10 * np.log10(255**2 / mse) if mse else float("inf")
    return f"{100 * diff.mean():.2f}%px {psnr:.1f}dB"


def throughput(
    port: int, profile: str, workload: str, desk: AnyDesktop, duration: float,
    server_pid: int, chain: list[int], xvfb: int,
) -> dict[str, Any]:  # fmt: skip
    client = Client(port, PROFILES[profile], full=False)
    try:
        client.request(False)
        client.drain(0.5)
        with desk.workload(workload, duration + 1):
            warm_end = time.monotonic() + 1.0
            while time.monotonic() < warm_end:
                got = client.read(warm_end - time.monotonic())
                if got:
                    client.request()
            client.rects.clear()
            jpeg0 = client.dec.jpeg
            b0, t0 = client.r.consumed, time.monotonic()
            c0, x0, me0 = cpu(server_pid), cpu(xvfb), cpu(os.getpid())
            ch0 = sum(cpu(pid) for pid in chain)
            updates = 0
            end = t0 + duration
            while (now := time.monotonic()) < end:
                got = client.read(end - now)
                if got:
                    updates += 1
                    client.request()
            t1 = time.monotonic()
            c1, x1, me1 = cpu(server_pid), cpu(xvfb), cpu(os.getpid())
            ch1 = sum(cpu(pid) for pid in chain)
            b1 = client.r.consumed
            # Tight rectangles sent as JPEG among them (lossy: the verify column says
            # how much the end differs).
            jpeg = {"jpeg": n} if (n := client.dec.jpeg - jpeg0) else {}
        # Hang up only once the screen is quiet: the agent's RFBService frees its capture
        # while a capture or encode it started in a worker thread may still run (a viewer
        # closing mid-update crashed the agent: docs/performance.md).
        client.drain(0.5, limit=10)
        secs = t1 - t0
        return {
            "secs": round(secs, 2),
            "updates": updates,
            "upd_s": updates / secs,
            "kb_upd": (b1 - b0) / 1024 / updates if updates else 0.0,
            "kb_s": (b1 - b0) / 1024 / secs,
            "cpu_s": c1 - c0,
            "cpu_pct": 100 * (c1 - c0) / secs,
            "ms_upd": 1000 * (c1 - c0) / updates if updates else None,
            "xvfb_pct": 100 * (x1 - x0) / secs,
            "chain_pct": 100 * (ch1 - ch0) / secs,
            "client_pct": 100 * (me1 - me0) / secs,
            "rects": dict(client.rects) | jpeg,
            "continuous": client.continuous,
        }
    finally:
        client.close()


def image_frames(desk: AnyDesktop) -> list[np.ndarray] | None:
    """The image workload's frames as 0x00RRGGBB values, as the X11 slideshow shows them
    (full screen); None on Wayland, whose slideshow scales them."""
    if not isinstance(desk, Desktop):
        return None
    from PIL import Image

    frames = []
    for path in sorted((desk.tmp / "images").glob("frame*.ppm")):
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.uint32)
        frames.append(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])
    return frames


#: Pixels a "whole" frame may differ by: a pointer a peer paints into the picture
#: (32×32 at most); a frame mixed with another differs almost everywhere.
POINTER_PIXELS = 32 * 32


def whole_frame(fb: np.ndarray, frames: list[np.ndarray]) -> int | None:
    """Which of ``frames`` the client's framebuffer shows whole (up to a pointer's worth
    of pixels), or None: a mix of frames, or part of one."""
    got = fb & 0xFFFFFF
    for i, frame in enumerate(frames):
        if frame.shape == fb.shape and np.count_nonzero(got != frame) <= POINTER_PIXELS:
            return i
    return None


def verify(
    port: int, profile: str, workload: str, desk: AnyDesktop, duration: float
) -> dict[str, Any]:
    """The pixel check, and for the X11 image workload with a lossless profile how many
    of the updates left the client showing one whole frame (a server that grabs while a
    frame is being drawn sends a mix, which the next update completes): ``whole`` and
    ``distinct`` (whole frames that differ from the previous whole one) out of
    ``updates``. The client decodes every update here, so the rates are the decoder's;
    the shares are the server's."""
    client = Client(port, PROFILES[profile], full=True)
    lossless = Encoding.JPEG_QUALITY_LOW + 8 not in PROFILES[profile]
    frames = image_frames(desk) if workload == "image" and lossless else None
    updates = whole = distinct = 0
    last: int | None = None
    try:
        client.request(False)
        client.drain(0.5)
        with desk.workload(workload, duration):
            end = time.monotonic() + duration
            while (now := time.monotonic()) < end:
                if client.read(end - now):
                    client.request()
                    if frames:
                        updates += 1
                        shown = whole_frame(client.dec.fb, frames)
                        if shown is not None:
                            whole += 1
                            distinct += shown != last
                            last = shown
        client.drain(1.5)
        out: dict[str, Any] = {"verify": compare(client.dec.fb, desk.truth())}
        if frames:
            out["frames"] = {"updates": updates, "whole": whole, "distinct": distinct}
        return out
    finally:
        client.close()


#: Keys typed before the timed ones in each latency cell.
WARM_KEYS = 3


def latency(
    port: int, profile: str, keys: int, seed: int = 5, corner: tuple[int, int] = BASE_XTERM
) -> dict[str, Any]:
    client = Client(port, PROFILES[profile], full=True)
    rnd = random.Random(seed)
    times: list[float] = []
    misses = 0
    try:
        client.request(False)
        client.drain(0.5)
        client.pointer(*POINTER_IN_XTERM)
        client.drain(0.3)
        x0, y0 = corner
        # Warm-up keys, not timed: each cell starts a fresh server process (measure_all),
        # whose first keys go through paths not yet used (a technician's session is warm).
        for i in range(-WARM_KEYS, keys):
            pause = time.monotonic() + rnd.uniform(0.15, 0.35)
            while (now := time.monotonic()) < pause:
                if client.read(pause - now):
                    client.request()
            before = client.dec.fb[y0 : y0 + 360, x0 : x0 + 520].copy()
            start = time.perf_counter()
            client.key(ord("a") + i % 26)
            deadline = time.monotonic() + 2.0
            while (now := time.monotonic()) < deadline:
                got = client.read(deadline - now)
                if got:
                    client.request()
                    if not np.array_equal(before, client.dec.fb[y0 : y0 + 360, x0 : x0 + 520]):
                        if i >= 0:
                            times.append(1000 * (time.perf_counter() - start))
                        break
            else:
                misses += i >= 0
        client.key(0xFF0D)  # Return: start a new line for the next profile
        client.drain(0.3)
    finally:
        client.close()
    arr = np.array(times) if times else np.array([np.nan])
    return {
        "keys": keys, "misses": misses,
        "p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
        "min": float(arr.min()), "max": float(arr.max()),
    }  # fmt: skip


# -- servers and the run -----------------------------------------------------------------

#: Where each server's measured PIDs come from: the process started (None), or the
#: ``PIDs agent=N connect=M ...`` line it prints on stderr (the agent's is the server's).
PIDS_LINE = re.compile(r"(?:e2e_chain|screen_paths): PIDs ((?:\w+=\d+ ?)+)")


@dataclass
class Server:
    cmd: str  # {display} and {port} are filled in
    env: dict[str, str] = field(default_factory=dict)
    pids_from_log: bool = False


def default_servers(
    py: str, before: dict[str, Path], paths: list[str], peers: list[str]
) -> dict[str, Server]:
    """The X11 run's servers: the agent at each ``--before`` revision (direct), the agent
    on each path, the peers."""
    here = {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    servers: dict[str, Server] = {}
    for name, src in before.items():
        servers[name] = Server(
            f"{py} -m benchmarks.rfb_direct --display {{display}} --port {{port}}",
            {"PYTHONPATH": f"{src}{os.pathsep}{ROOT}"},
        )
    for path in paths:
        if path == "direct":
            servers["enkaku"] = Server(
                f"{py} -m benchmarks.rfb_direct --display {{display}} --port {{port}}", here
            )
        elif path == "bridge":
            servers["enkaku-bridge"] = Server(
                f"{py} -m benchmarks.screen_paths bridge --display {{display}} --port {{port}}",
                here, pids_from_log=True,
            )  # fmt: skip
        elif path == "relay":
            servers["enkaku-relay"] = Server(
                f"{py} -m benchmarks.e2e_chain --display {{display}} --port {{port}}",
                here, pids_from_log=True,
            )  # fmt: skip
        else:
            raise SystemExit(f"unknown path {path!r} (direct, bridge, relay)")
    known = {
        "x11vnc": Server(
            "x11vnc -localhost -shared -forever -nopw -quiet -rfbport {port} -display {display}"
        ),
        "x0vncserver": Server(
            "X0tigervnc -display {display} -rfbport {port} -SecurityTypes None -localhost "
            "-AlwaysShared"
        ),
    }
    for peer in peers:
        if peer not in known:
            raise SystemExit(f"unknown X11 peer {peer!r} (x11vnc, x0vncserver)")
        servers[peer] = known[peer]
    return servers


def wayland_servers(py: str, paths: list[str], peers: list[str]) -> dict[str, Server]:
    """The Wayland run's servers: the agent's wayland-wlroots backend, wayvnc."""
    here = {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    servers: dict[str, Server] = {}
    for path in paths:
        if path == "relay":
            raise SystemExit("--wayland: the relay path is not measured there (direct, bridge)")
        name = "enkaku" if path == "direct" else f"enkaku-{path}"
        servers[name] = Server(
            f"{py} -m benchmarks.screen_paths {path} --backend wayland-wlroots "
            "--display {display} --port {port}",
            here, pids_from_log=True,
        )  # fmt: skip
    for peer in peers:
        if peer != "wayvnc":
            raise SystemExit(f"unknown Wayland peer {peer!r} (wayvnc)")
        # wayvnc's own default is 30 frames a second; the agent's max_fps is 60.
        servers["wayvnc"] = Server("wayvnc --max-fps 60 127.0.0.1 {port}")
    return servers


def read_pids(log: Path, proc: subprocess.Popen[Any], timeout: float = 90) -> dict[str, int]:
    """The ``PIDs`` line a chain prints once it serves."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            for line in log.read_text(errors="replace").splitlines():
                if m := PIDS_LINE.search(line):
                    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {log}")
        time.sleep(0.2)
    raise RuntimeError(f"no PIDs line in {log}")


def measure_server(
    name: str, server: Server, args: argparse.Namespace, desk: AnyDesktop, display: str,
    env: dict[str, str], display_pid: int, logs: Path, corner: tuple[int, int],
) -> list[dict[str, Any]]:  # fmt: skip
    results: list[dict[str, Any]] = []
    port = args.port or free_port()
    cmd = shlex.split(server.cmd.format(display=display, port=port))
    print(f"== {name}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    log, n = logs / f"{name}.log", 1
    while log.exists():  # a server started again (cell by cell): its own log, its own PIDs
        n += 1
        log = logs / f"{name}-{n}.log"
    proc = spawn(cmd, display, log, env=env | server.env, cwd=ROOT)
    try:
        pids = read_pids(log, proc) if server.pids_from_log else {"server": proc.pid}
        main_pid = pids.get("agent", proc.pid)
        wait_port(port, proc)
        time.sleep(0.5)
        for profile in split(args.profiles):
            for wl in split(args.workloads):
                secs = max(args.duration, 10.0) if wl == "idle" else args.duration
                rec = throughput(port, profile, wl, desk, secs, main_pid, list(pids.values()),
                                 display_pid)  # fmt: skip
                time.sleep(SETTLE)
                rec["verify"] = "-"
                if args.verify_duration > 0:
                    rec |= verify(port, profile, wl, desk, args.verify_duration)
                    time.sleep(SETTLE)
                rec |= {"server": name, "profile": profile, "workload": wl}
                results.append(rec)
                print(f"   {profile:6} {wl:8} {rec['upd_s']:7.1f} upd/s "
                      f"{rec['kb_s']:8.0f} KB/s cpu {rec['cpu_pct']:5.1f}% "
                      f"chain {rec['chain_pct']:5.1f}% {rec['verify']}",
                      file=sys.stderr, flush=True)  # fmt: skip
            if args.keys:
                lat = latency(port, profile, args.keys, corner=corner)
                time.sleep(SETTLE)
                lat |= {"server": name, "profile": profile, "workload": "latency"}
                results.append(lat)
                print(f"   {profile:6} latency  p50 {lat['p50']:.1f} ms p95 "
                      f"{lat['p95']:.1f} ms misses {lat['misses']}",
                      file=sys.stderr, flush=True)  # fmt: skip
    except (OSError, RuntimeError) as exc:  # a server that died: the others still run
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        why = f"{type(exc).__name__}: {exc}" + (f" (log: {' | '.join(tail)})" if tail else "")
        print(f"!! {name} failed: {why}", file=sys.stderr, flush=True)
        results.append({"server": name, "workload": "error", "profile": "-", "error": why})
    finally:
        stop(proc)
        time.sleep(0.5)
    return results


def split(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def measure_all(
    servers: dict[str, Server], args: argparse.Namespace,
    measure: Callable[[str, Server, argparse.Namespace], list[dict[str, Any]]],
) -> list[dict[str, Any]]:  # fmt: skip
    """Every server on every cell. By default cell by cell: each profile and workload
    (and each profile's latency) is measured on every server in turn, a fresh server
    process for each cell, so the servers compared in a cell are measured within a
    minute or two of each other (this VM's speed drifts by 10 % and more over the half
    hour a full run takes). ``--by-server``: each server once, all its cells in a row
    (fewer starts, but a server measured early and one measured late see different
    machines)."""
    if args.by_server:
        return [r for name, server in servers.items() for r in measure(name, server, args)]
    results: list[dict[str, Any]] = []
    failed: set[str] = set()
    for profile in split(args.profiles):
        cells = [{"workloads": wl, "keys": 0} for wl in split(args.workloads)]
        if args.keys:
            cells.append({"workloads": "", "keys": args.keys})
        for cell in cells:
            # --rounds: the workload cells' servers in turn that many times, the order
            # reversed every other round (the one measured first in a round does not
            # always meet the same machine); each server's rounds become one row.
            rounds = args.rounds if cell["keys"] == 0 else 1
            got_cell: list[dict[str, Any]] = []
            for round_ in range(rounds):
                names = list(servers) if round_ % 2 == 0 else list(servers)[::-1]
                for name in names:
                    if name in failed:
                        continue
                    one = argparse.Namespace(**(vars(args) | cell | {"profiles": profile}))
                    got = measure(name, servers[name], one)
                    failed |= {r["server"] for r in got if r["workload"] == "error"}
                    got_cell += got
            results += merge_rounds(got_cell) if rounds > 1 else got_cell
    return results


#: Rates a merged row takes as the median of its rounds (``merge_rounds``).
ROUND_MEDIANS = ("upd_s", "kb_upd", "kb_s", "cpu_pct", "ms_upd", "xvfb_pct", "chain_pct",
                 "client_pct")  # fmt: skip


def merge_rounds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per server, profile and workload from the rows of its rounds: each rate
    the median of the rounds' (``ROUND_MEDIANS``), the totals (seconds, updates, CPU
    seconds) summed, the verification the worst one seen (any round not ``exact``
    shows), the rectangles of the first round; ``ms_upd_rounds`` and
    ``upd_s_rounds``: every round's ms/upd and updates a second, for the spread.
    Errors and rows of one round pass unchanged."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    out: list[dict[str, Any]] = []
    for row in rows:
        if row["workload"] == "error" or "upd_s" not in row:
            out.append(row)
            continue
        groups.setdefault((row["server"], row["profile"], row["workload"]), []).append(row)
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        merged = dict(group[0])
        for key in ROUND_MEDIANS:
            values = [r[key] for r in group if isinstance(r.get(key), (int, float))]
            if values:
                merged[key] = float(np.median(values))
        for key in ("secs", "updates", "cpu_s"):
            if all(isinstance(r.get(key), (int, float)) for r in group):
                merged[key] = sum(r[key] for r in group)
        verdicts = [r.get("verify") for r in group]
        worst = (v for v in verdicts if v not in ("exact", "exact+cur"))
        merged["verify"] = next(worst, verdicts[0])
        merged["rounds"] = len(group)
        merged["ms_upd_rounds"] = [round(r["ms_upd"], 3) for r in group if "ms_upd" in r]
        merged["upd_s_rounds"] = [round(r["upd_s"], 2) for r in group if "upd_s" in r]
        out.append(merged)
    return out


def tree_at(rev: str, tmp: Path) -> Path:
    """The agent's ``src/`` as of git revision ``rev``, in a folder of ``tmp``, with its
    compiled encoder core built where this checkout has one (as the agent under test)."""
    src = tmp / f"src-{rev}"
    src.mkdir()
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    build_native(src / "src")
    return src / "src"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    tools = ["sway", "foot", "grim"] if args.wayland else ["Xvfb", "xterm", "xdotool", "display"]
    peer_tools = {"x11vnc": "x11vnc", "x0vncserver": "X0tigervnc", "wayvnc": "wayvnc"}
    default_peers = "wayvnc" if args.wayland else "x11vnc,x0vncserver"
    tools += [peer_tools[p] for p in split(default_peers if args.peers is None else args.peers)
              if p in peer_tools]  # fmt: skip
    if BROWSER_PAGES & set(split(args.workloads)):
        tools.append("chromium")
    if args.wayland and X11_ONLY & set(split(args.workloads)):
        raise SystemExit(f"--wayland: {', '.join(sorted(X11_ONLY))} run on X11 only")
    for tool in tools:
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (see the module docstring for the packages)")
    tmp = Path(tempfile.mkdtemp(prefix="enkaku-screen-bench-"))
    tmp.chmod(0o755)  # the Wayland workloads' files are read by the compositor's user too
    logs = tmp / "logs"
    logs.mkdir()
    print(f"logs in {logs}", file=sys.stderr, flush=True)
    before = {f"enkaku@{rev}": tree_at(rev, tmp) for rev in args.before}
    paths = split(args.paths)
    if args.wayland:
        peers = split("wayvnc" if args.peers is None else args.peers)
        servers = wayland_servers(sys.executable, paths, peers)
    else:
        peers = split("x11vnc,x0vncserver" if args.peers is None else args.peers)
        servers = default_servers(sys.executable, before, paths, peers)
    for spec in args.server:
        name, _, cmd = spec.partition("=")
        servers[name] = Server(cmd)
    if args.only:
        servers = {k: v for k, v in servers.items() if k in args.only.split(",")}
    (tmp / "images").mkdir()
    if "image" in split(args.workloads):
        make_images(tmp / "images")
    results: list[dict[str, Any]] = []
    try:
        if args.wayland:
            wdesk = WaylandBench(tmp, logs).start()
            try:
                results += measure_all(servers, args, lambda name, server, a: measure_server(
                    name, server, a, wdesk, wdesk.display, wdesk.env, wdesk.sway.pid, logs,
                    WAYLAND_BASE,
                ))  # fmt: skip
            finally:
                wdesk.close()
        else:
            results += x11_run(args, servers, tmp, logs)
    finally:
        if args.keep_logs:
            print(f"logs kept in {logs}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def x11_run(
    args: argparse.Namespace, servers: dict[str, Server], tmp: Path, logs: Path
) -> list[dict[str, Any]]:
    with x11_desktop(tmp, logs, args.x_server) as (desk, xpid):
        return measure_all(servers, args, lambda name, server, a: measure_server(
            name, server, a, desk, desk.display, x_env(desk.display), xpid, logs, BASE_XTERM,
        ))  # fmt: skip


@contextlib.contextmanager
def x11_desktop(tmp: Path, logs: Path, x_server: str = "xvfb") -> Iterator[tuple[Desktop, int]]:
    """The X11 run's screen: an X server of WIDTH x HEIGHT (Xvfb, or Xorg's dummy
    driver), the gradient wallpaper and the xterm running ``cat`` that keys are typed
    into; yields the desktop and the X server's PID."""
    wall = tmp / "wall.ppm"
    from PIL import Image

    ramp = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None, None]
    top, bottom = np.array([0x1D, 0x35, 0x57]), np.array([0xA8, 0xDA, 0xDC])
    grad = np.broadcast_to((top + (bottom - top) * ramp).astype(np.uint8), (HEIGHT, WIDTH, 3))
    Image.fromarray(np.ascontiguousarray(grad)).save(wall)
    start = xorg if x_server == "xorg" else xvfb
    with start(WIDTH, HEIGHT) as display:
        desk = Desktop(display, tmp, logs)
        subprocess.run(["display", "-window", "root", str(wall)], env=x_env(display),
                       capture_output=True, timeout=30, check=False)  # fmt: skip
        base = spawn(["xterm", "-T", "benchtype", "-geometry", "80x24+40+40", "-e", "cat"],
                     display)  # fmt: skip
        try:
            find = ["xdotool", "search", "--sync", "--name", "^benchtype$"]
            subprocess.run(find, env=x_env(display), capture_output=True, timeout=20, check=True)
            yield desk, xvfb_pid(display)
        finally:
            stop(base)


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    head = (f"{'server':18} {'profile':14} {'workload':8} {'upd/s':>7} {'KB/upd':>8} {'KB/s':>8} "
            f"{'CPU%':>6} {'ms/upd':>7} {'chain%':>6} {'disp%':>6} {'cli%':>5}  {'verify':16} "
            "rects")  # fmt: skip
    lines += [head, "-" * len(head)]
    for r in results:
        if r["workload"] in ("latency", "error"):
            continue
        rects = " ".join(f"{k}:{v}" for k, v in sorted(r["rects"].items()))
        if r.get("continuous"):
            rects = f"(cu) {rects}"
        lines.append(
            f"{r['server']:18} {r['profile']:14} {r['workload']:8} {r['upd_s']:7.1f} "
            f"{r['kb_upd']:8.1f} {r['kb_s']:8.0f} {r['cpu_pct']:6.1f} {fmt(r['ms_upd'], '.2f'):>7} "
            f"{r.get('chain_pct', r['cpu_pct']):6.1f} {r['xvfb_pct']:6.1f} {r['client_pct']:5.0f}  "
            f"{r['verify']:16} {rects}"
        )
    spread = [r for r in results if r.get("rounds")]
    if spread:
        lines += ["", "--rounds: each row above is its rounds' median (totals summed); upd/s "
                  "and ms/upd of each round, in the order measured:"]  # fmt: skip
        lines += [f"{r['server']:18} {r['profile']:14} {r['workload']:8} "
                  + "  ".join(f"{u:.1f} {m:.2f}" for u, m in zip(
                      r.get("upd_s_rounds", []), r["ms_upd_rounds"], strict=False))
                  for r in spread]  # fmt: skip
    lines += ["", f"{'server':18} {'profile':14} {'keys':>4} {'miss':>4} {'p50 ms':>7} "
              f"{'p95 ms':>7} {'min':>6} {'max':>6}"]  # fmt: skip
    for r in results:
        if r["workload"] == "latency":
            lines.append(
                f"{r['server']:18} {r['profile']:14} {r['keys']:4} {r['misses']:4} "
                f"{fmt(r['p50']):>7} {fmt(r['p95']):>7} {fmt(r['min']):>6} {fmt(r['max']):>6}"
            )
    framed = [r for r in results if r.get("frames")]
    if framed:
        lines += ["", "image, verify pass: updates after which the client showed one whole "
                  "frame (distinct: a frame other than the last whole one); share: distinct "
                  "/ updates; new/s and KB/new: the measured pass's updates a second and KB "
                  "an update, counted per new frame at that share"]  # fmt: skip
        lines.append(f"{'server':18} {'profile':14} {'updates':>7} {'whole':>6} {'distinct':>8} "
                     f"{'share':>6} {'new/s':>6} {'KB/new':>8}")  # fmt: skip
        for r in framed:
            f = r["frames"]
            share = f["distinct"] / f["updates"] if f["updates"] else float("nan")
            new_s = r["upd_s"] * share
            kb_new = r["kb_upd"] / share if share > 0 else float("nan")
            lines.append(f"{r['server']:18} {r['profile']:14} {f['updates']:7} {f['whole']:6} "
                         f"{f['distinct']:8} {fmt(share, '.2f'):>6} {fmt(new_s):>6} "
                         f"{fmt(kb_new, '.0f'):>8}")  # fmt: skip
    lines += [f"FAILED {r['server']}: {r['error']}" for r in results if r["workload"] == "error"]
    results = [r for r in results if r["workload"] != "error"]
    ours = sorted({r["server"] for r in results if r["server"].startswith("enkaku")})
    peers = [p for p in PEERS if any(r["server"] == p for r in results)]
    by = {(r["server"], r["profile"], r["workload"]): r for r in results}
    lines += path_ratios(results)
    if ours and peers:
        lines += [
            "",
            "ratios ours / peer (upd/s, KB/s, CPU-s per update; +disp: CPU-s per "
            "update of the server and the display server together; latency p50)",
        ]
        lines.append(f"{'ours':18} {'peer':12} {'profile':14} {'workload':8} {'upd/s':>6} "
                     f"{'KB/s':>6} {'ms/upd':>6} {'+disp':>6} {'p50':>6}")  # fmt: skip
        for o in ours:
            for p in peers:
                for (s, prof, wl), r in by.items():
                    if s != o or (p, prof, wl) not in by:
                        continue
                    q = by[(p, prof, wl)]

                    def ratio(a: float | None, b: float | None) -> str:
                        if a is None or b is None or not b or np.isnan(a) or np.isnan(b):
                            return "-"
                        return f"{a / b:.2f}"

                    if wl == "latency":
                        lines.append(f"{o:18} {p:12} {prof:14} {wl:8} {'':>6} {'':>6} {'':>6} "
                                     f"{'':>6} {ratio(r['p50'], q['p50']):>6}")  # fmt: skip
                    else:
                        lines.append(
                            f"{o:18} {p:12} {prof:14} {wl:8} {ratio(r['upd_s'], q['upd_s']):>6} "
                            f"{ratio(r['kb_s'], q['kb_s']):>6} "
                            f"{ratio(r['ms_upd'], q['ms_upd']):>6} "
                            f"{ratio(with_display(r), with_display(q)):>6}"
                        )
    return "\n".join(lines)


def with_display(r: dict[str, Any]) -> float | None:
    """CPU ms per update of the server and the display server together (Xvfb, Xorg or
    sway): a server that has the display server copy the screen for it (x11vnc's scan
    lines through MIT-SHM) moves part of its work there, and the customer's machine pays
    both. The display server's own share for the workload's drawing is in both servers'
    figures alike, so the ratio understates the difference a little."""
    if not r.get("upd_s"):
        return None
    return 10 * (r["cpu_pct"] + r["xvfb_pct"]) / r["upd_s"]


def path_ratios(results: list[dict[str, Any]]) -> list[str]:
    """The bridge and relay paths against the direct one (``enkaku``)."""
    by = {(r["server"], r["profile"], r["workload"]): r for r in results}
    paths = [p for p in ("enkaku-bridge", "enkaku-relay") if any(r["server"] == p for r in results)]
    if not paths or not any(r["server"] == "enkaku" for r in results):
        return []
    lines = ["", "paths / direct (upd/s, KB/s, agent CPU ms per update; chain CPU % = every "
             "process of the path; latency p50 and p95: path - direct, ms)",
             f"{'path':14} {'profile':14} {'workload':8} {'upd/s':>6} {'KB/s':>6} {'ms/upd':>6} "
             f"{'chain%':>7} {'dp50':>6} {'dp95':>6}"]  # fmt: skip

    def ratio(a: float | None, b: float | None) -> str:
        if a is None or b is None or not b:
            return "-"
        return f"{a / b:.2f}"

    for path in paths:
        for (s, prof, wl), r in by.items():
            q = by.get(("enkaku", prof, wl))
            if s != path or q is None:
                continue
            if wl == "latency":
                d50, d95 = r["p50"] - q["p50"], r["p95"] - q["p95"]
                lines.append(f"{path:14} {prof:14} {wl:8} {'':>6} {'':>6} {'':>6} {'':>7} "
                             f"{d50:+6.1f} {d95:+6.1f}")  # fmt: skip
            else:
                lines.append(
                    f"{path:14} {prof:14} {wl:8} {ratio(r['upd_s'], q['upd_s']):>6} "
                    f"{ratio(r['kb_s'], q['kb_s']):>6} {ratio(r['ms_upd'], q['ms_upd']):>6} "
                    f"{r['chain_pct']:7.1f}"
                )
    return lines


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_textgen":
        p = argparse.ArgumentParser()
        p.add_argument("--rate", type=float, default=60)
        p.add_argument("--seconds", type=float, default=10)
        p.add_argument("--lang", default="en")
        p.add_argument("--seed", type=int, default=1)
        a = p.parse_args(argv[1:])
        with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
            textgen(a.rate, a.seconds, a.lang, a.seed)
        return
    if argv and argv[0] == "_imageshow":
        p = argparse.ArgumentParser()
        p.add_argument("--fps", type=float, default=10)
        p.add_argument("--seconds", type=float, default=10)
        p.add_argument("--title", default="benchimage")
        p.add_argument("--geometry", default=f"{WIDTH},{HEIGHT},0,0", help="w,h,x,y")
        p.add_argument("--keep-last", action="store_true")
        p.add_argument("folder")
        a = p.parse_args(argv[1:])
        w, h, x, y = (int(v) for v in a.geometry.split(","))
        imageshow(a.fps, a.seconds, a.folder, title=a.title, geometry=(w, h, x, y),
                  keep_last=a.keep_last)  # fmt: skip
        return
    if argv and argv[0] == "_dialogs":
        p = argparse.ArgumentParser()
        p.add_argument("--rate", type=float, default=4)
        p.add_argument("--seconds", type=float, default=10)
        p.add_argument("--seed", type=int, default=3)
        a = p.parse_args(argv[1:])
        from benchmarks.screen_apps import dialogs

        with contextlib.suppress(KeyboardInterrupt):
            dialogs(a.rate, a.seconds, a.seed)
        return
    if argv and argv[0] == "_tui":
        p = argparse.ArgumentParser()
        p.add_argument("--rate", type=float, default=TUI_RATE)
        p.add_argument("--seconds", type=float, default=10)
        p.add_argument("--seed", type=int, default=9)
        a = p.parse_args(argv[1:])
        from benchmarks.screen_apps import tui

        with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
            tui(a.rate, a.seconds, a.seed)
        return
    if argv and argv[0] == "_pan":
        p = argparse.ArgumentParser()
        p.add_argument("--seconds", type=float, default=10)
        p.add_argument("--seed", type=int, default=5)
        a = p.parse_args(argv[1:])
        from benchmarks.screen_apps import pan

        with contextlib.suppress(KeyboardInterrupt):
            pan(a.seconds, a.seed)
        return
    if argv and argv[0] == "_wlimageshow":
        p = argparse.ArgumentParser()
        p.add_argument("--fps", type=float, default=10)
        p.add_argument("--seconds", type=float, default=10)
        p.add_argument("folder")
        a = p.parse_args(argv[1:])
        from benchmarks.screen_wayland import imageshow as wl_imageshow

        wl_imageshow(a.fps, a.seconds, a.folder)
        return
    if argv and argv[0] in ("_swaymove", "_swaydrag"):
        # A window moved around a rectangle (winmove) or dragged diagonally (windiag).
        p = argparse.ArgumentParser()
        p.add_argument("--ipc", required=True)
        p.add_argument("--seconds", type=float, default=10)
        a = p.parse_args(argv[1:])
        from benchmarks.screen_apps import swaydrag
        from benchmarks.screen_wayland import swaymove

        mover, app_id = (
            (swaymove, "benchmove") if argv[0] == "_swaymove" else (swaydrag, "benchdiag")
        )
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            mover(a.ipc, app_id, a.seconds)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--verify-duration", type=float, default=3.0)
    p.add_argument("--keys", type=int, default=20)
    p.add_argument("--profiles", default="tight,zrle")
    p.add_argument("--workloads", default="idle,text,jlog,winmove,image",
                   help="comma-separated: idle, text, jlog, winmove, windiag (a window "
                   "dragged diagonally), image, browser, dialogs, pan (a picture panned "
                   "diagonally in its window; the last three X11 only; default: "
                   "idle,text,jlog,winmove,image)")  # fmt: skip
    p.add_argument("--before", action="append", default=[], metavar="REV")
    p.add_argument("--server", action="append", default=[], metavar="NAME=CMD")
    p.add_argument("--only", default="", help="comma-separated server names to run")
    p.add_argument(
        "--paths", default="direct,bridge,relay",
        help="the agent's paths: direct (rfb_direct), bridge (E2E channel + VNCBridge, no "
        "server: benchmarks.screen_paths), relay (server + agent + connect --vnc-listen: "
        "benchmarks.e2e_chain); with --wayland: direct, bridge (default direct)",
    )  # fmt: skip
    p.add_argument("--peers", default=None,
                   help="comma-separated peers (default x11vnc,x0vncserver; with --wayland "
                   "wayvnc; '' for none)")  # fmt: skip
    p.add_argument(
        "--wayland",
        action="store_true",
        help="the Wayland run: headless sway, the wayland-wlroots backend, wayvnc",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="measure each workload cell N times, the servers' order reversed "
        "every other round, and report each server's median (default 1; "
        "not with --by-server; keys are measured once)",
    )
    p.add_argument("--by-server", action="store_true",
                   help="each server once with all its cells in a row (default: cell by "
                        "cell, every server in turn, a fresh server process each)")  # fmt: skip
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    p.add_argument("--port", type=int, default=0, help="the servers' port (default: a free one)")
    p.add_argument("--out", default=None, help="STEM: writes STEM.txt and STEM.json")
    p.add_argument("--note", default="", help="a line for the header (e.g. the git revision)")
    p.add_argument(
        "--x-server", choices=("xvfb", "xorg"), default="xvfb",
        help="the X server of the X11 run: Xvfb, or Xorg with the dummy video driver (as "
        "on a headless machine; needs root, xserver-xorg-video-dummy)",
    )  # fmt: skip
    a = p.parse_args(argv)
    if a.rounds < 1 or (a.rounds > 1 and a.by_server):
        raise SystemExit("--rounds: a number from 1, and not with --by-server")
    if a.wayland and "--paths" not in " ".join(argv):
        a.paths = "direct"
    # SIGTERM/SIGHUP unwind like Ctrl-C, so every server and window started is stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    started = datetime.datetime.now(datetime.UTC)
    load0 = os.getloadavg()
    results = run(a)
    load1 = os.getloadavg()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True, check=False).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src"], cwd=ROOT,
                           check=False).returncode  # fmt: skip
    header = (
        f"benchmarks/screen.py, {started:%Y-%m-%d %H:%M} UTC, git {rev}"
        f"{' (src/ modified)' if dirty else ''}"
        f", {os.cpu_count()} CPUs\ncommand: python -m benchmarks.screen {shlex.join(argv)}\n"
        + "load average (1, 5, 15 min) at start {:.2f} {:.2f} {:.2f}, at end {:.2f} {:.2f} "
        "{:.2f}\n".format(*load0, *load1)
        + (f"note: {a.note}\n" if a.note else "")
    )
    text = header + "\n" + table(results) + "\n"
    print(text)
    stem = a.out or str(ROOT / "benchmarks" / "results" / f"{started:%Y-%m-%d}-screen")
    Path(stem + ".txt").write_text(text)
    Path(stem + ".json").write_text(json.dumps({"header": header, "results": results}, indent=1))


if __name__ == "__main__":
    main()
