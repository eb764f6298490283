"""The screen over a slow link: the agent's adaptive quality against x11vnc / x0vncserver.

``python -m benchmarks.slowlink [--link 250] [--delay 0] [--duration 8] [--keys 12]
[--peers x11vnc,x0vncserver] [--only NAMES] [--server NAME=CMD] [--exact-limit 60]
[--out STEM]``

One Xvfb 1920x1080 (an xterm running ``cat`` at 40,40 for the keys, as in
``benchmarks.screen``); each server in turn behind a proxy that forwards the server's
bytes at ``--link`` KB/s (250 KB/s = 2 Mbit/s; the client's bytes unthrottled; the queue
is the loopback sockets' buffers, as a router's) and delays both directions by
``--delay`` ms (one way: a round trip gains twice that; a delay line with a due time per
chunk, so the rate stays the link's; 2 Mbit/s with 40 ms each way is a fair WAN, 1 Mbit/s
with 80 ms a mobile link). The client (``benchmarks.screen``'s,
decoding every pixel) lists Tight + JPEG quality level 8, Fence and ContinuousUpdates,
answers every fence request (as noVNC and TigerVNC's viewer do) and switches to
continuous updates when the server offers them (x0vncserver and the agent do; x11vnc
does not, so it is served request by request). Per server:

* **photos** (``--duration`` s): a 1280x1080 Tk window beside the xterm showing
  photo-like frames at 10 fps: updates/s, KB/s, the JPEG quality used (estimated from
  the quantisation tables of the JPEG rectangles: median and minimum);
* **key-to-screen while the photos change**: ``--keys`` keys typed into the xterm, the
  time until the client's framebuffer shows the echo: the lag a technician feels;
* **key-to-screen during the refresh**: the photos stop (the slideshow says so); 2 s
  later (the agent's lossless refresh of the JPEG areas has begun) 5 keys, as above;
* **exact after still**: seconds from the photos' stop until the client's framebuffer
  equals the screen (the lossless refresh through the slow link), or ``never`` within
  ``--exact-limit`` s;
* **key-to-screen idle**: the same keys with nothing else changing.

Writes STEM.txt and STEM.json (default ``benchmarks/results/DATE-slowlink``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import random
import shlex
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from tests.xdisplay import x_env, xvfb

from benchmarks.screen import (
    BASE_XTERM,
    HEIGHT,
    POINTER_IN_XTERM,
    ROOT,
    WIDTH,
    BenchDecoder,
    Client,
    Server,
    default_servers,
    free_port,
    make_images,
    spawn,
    stop,
    wait_port,
    x11_truth,
)
from enkaku.protocol.rfb.messages import Encoding

ENCODINGS = [
    Encoding.TIGHT, Encoding.ZRLE, Encoding.COPYRECT, Encoding.RAW,
    Encoding.JPEG_QUALITY_LOW + 8, Encoding.COMPRESS_LOW + 2, Encoding.CURSOR,
    Encoding.DESKTOP_SIZE, Encoding.LAST_RECT, Encoding.FENCE, Encoding.CONTINUOUS_UPDATES,
]  # fmt: skip
#: The IJG luminance table (JPEG Annex K), for the quality estimate.
IJG_LUMA_SUM = sum(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57,
     69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64,
     81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
)  # fmt: skip
SHOW = (1280, 1080, 640, 0)  # the slideshow's w, h, x, y: the xterm stays visible
XTERM_BOX = (BASE_XTERM[0], BASE_XTERM[1], 520, 360)


def jpeg_quality(data: bytes) -> float | None:
    """The IJG quality a JPEG's luminance table corresponds to (about; 1..100)."""
    from PIL import Image

    with contextlib.suppress(Exception):
        tables = Image.open(io.BytesIO(data)).quantization  # type: ignore[attr-defined]
        scale = 100 * sum(tables[0]) / IJG_LUMA_SUM
        return max(1.0, min(100.0, (200 - scale) / 2 if scale <= 100 else 5000 / scale))
    return None


class _Recorder:
    """The decoder's reader, remembering the largest piece taken (a JPEG's data)."""

    def __init__(self, r: Any) -> None:
        self.r = r
        self.biggest = b""

    def take(self, n: int) -> bytes:
        data: bytes = self.r.take(n)
        if len(data) > len(self.biggest):
            self.biggest = data
        return data

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


class QualityDecoder(BenchDecoder):
    qualities: list[float]

    def _tight(self, r: Any, x: int, y: int, w: int, h: int) -> None:
        before = self.jpeg_rects
        rec = _Recorder(r)
        super()._tight(rec, x, y, w, h)
        if self.jpeg_rects > before and (q := jpeg_quality(rec.biggest)) is not None:
            self.qualities.append(q)


class FenceClient(Client):
    """The benchmark client (fences answered, continuous updates if offered), recording
    each update's JPEG quality and when its bytes had arrived."""

    def __init__(self, port: int) -> None:
        super().__init__(port, ENCODINGS, full=True)
        dec = QualityDecoder(self.dec.width, self.dec.height, self.dec.pf)
        dec.qualities = []
        self.dec = dec
        self.bytes_at_update: list[tuple[float, int]] = []

    def read(self, timeout: float) -> bool | None:
        got = super().read(timeout)
        if got:
            self.bytes_at_update.append((time.monotonic(), self.r.consumed))
        return got

    def pump(self, until: float) -> int:
        """Read (and request) until ``until``; returns the updates read."""
        updates = 0
        while (now := time.monotonic()) < until:
            if self.read(until - now):
                updates += 1
                self.request()
        return updates


class Throttle:
    """127.0.0.1:<port> -> 127.0.0.1:``target``; the server's bytes at ``rate`` bytes/s,
    both directions ``delay`` seconds late (one way).

    The rate is a pacer on the reading side (as before: a chunk is read, then the pipe
    waits for its time on the wire); the delay is a line behind it: each chunk is stamped
    with the moment it reaches the far end (``delay`` after it left the pacer) and a
    second thread per direction writes the chunks in order once their stamp is due. So
    the delay adds to the round trip without lowering the rate, as a long wire does.
    The line holds at most what the wire would (rate x delay, plus a chunk; 4 MiB
    without a rate): a client that stops reading stops the server, as TCP's window does.
    """

    def __init__(self, target: int, rate: float, delay: float = 0.0) -> None:
        self.target, self.rate, self.delay = target, rate, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target))
                for s in (client, server):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.socks += [client, server]
                for src, dst, rate in ((server, client, self.rate), (client, server, 0.0)):
                    line = _DelayLine(dst, self.delay, rate) if self.delay > 0 else None
                    threading.Thread(target=self._pipe, args=(src, dst, rate, line),
                                     daemon=True).start()  # fmt: skip

    @staticmethod
    def _pipe(
        src: socket.socket, dst: socket.socket, rate: float, line: _DelayLine | None = None
    ) -> None:
        due = time.monotonic()
        with contextlib.suppress(OSError):
            while data := src.recv(1500 if rate else 65536):
                if line is None:
                    dst.sendall(data)
                else:
                    line.put(data)
                if rate:
                    due = max(due, time.monotonic() - 0.02) + len(data) / rate
                    time.sleep(max(0.0, due - time.monotonic()))
        if line is not None:
            line.close()  # the far end is shut once the line has delivered everything
            return
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()


class _DelayLine:
    """Chunks written to ``dst`` in order, each ``delay`` s after it was put."""

    def __init__(self, dst: socket.socket, delay: float, rate: float) -> None:
        self.dst, self.delay = dst, delay
        self.limit = int(rate * delay) + 65536 if rate else 4 << 20
        self.queue: deque[tuple[float, bytes]] = deque()
        self.held = 0  # bytes on the line
        self.closed = False
        self.cond = threading.Condition()
        threading.Thread(target=self._deliver, daemon=True).start()

    def put(self, data: bytes) -> None:
        with self.cond:
            while self.held >= self.limit and not self.closed:
                self.cond.wait()
            if self.closed:
                raise OSError("the line's far end is gone")
            self.queue.append((time.monotonic() + self.delay, data))
            self.held += len(data)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.queue.append((time.monotonic() + self.delay, b""))  # end of stream
            self.cond.notify_all()

    def _deliver(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue:
                        self.cond.wait()
                    at, data = self.queue[0]
                wait = at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # a due time, not a pause per chunk: later ones
                    # were stamped while this one waited
                if not data:
                    self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
                with self.cond:
                    self.queue.popleft()
                    self.held -= len(data)
                    self.cond.notify_all()
        except OSError:
            with self.cond:
                self.closed = True
                self.cond.notify_all()


def keys_latency(
    client: FenceClient, keys: int, seed: int, first: float | None = None
) -> list[float]:
    """Key -> echo on the client's framebuffer, ms (nan for a key not seen within 10 s);
    the first key 0.2-0.4 s after ``first`` (default: now), each next one after the
    previous echo."""
    rnd = random.Random(seed)
    x0, y0, w, h = XTERM_BOX
    out: list[float] = []
    for i in range(keys):
        due = (first if i == 0 and first is not None else time.monotonic()) + rnd.uniform(0.2, 0.4)
        client.pump(due)
        before = client.dec.fb[y0 : y0 + h, x0 : x0 + w].copy()
        # The key is due at ``due``: a viewer sends it then, but this one-thread client
        # was reading an update till now (a big one: a lossless refresh), so the time it
        # waited counts too.
        start = time.perf_counter() - max(0.0, time.monotonic() - due)
        client.key(ord("a") + i % 26)
        deadline = time.monotonic() + 10
        seen = float("nan")
        while (now := time.monotonic()) < deadline:
            if client.read(deadline - now):
                client.request()
                if not np.array_equal(before, client.dec.fb[y0 : y0 + h, x0 : x0 + w]):
                    seen = 1000 * (time.perf_counter() - start)
                    break
        out.append(seen)
    client.key(0xFF0D)
    return out


def summary(ms: list[float]) -> dict[str, Any]:
    seen = [v for v in ms if v == v]
    return {
        "keys": len(ms), "misses": len(ms) - len(seen),
        "p50": float(np.percentile(seen, 50)) if seen else None,
        "p95": float(np.percentile(seen, 95)) if seen else None,
        "max": max(seen) if seen else None,
    }  # fmt: skip


def measure(
    name: str, server: Server, args: argparse.Namespace, display: str, tmp: Path
) -> dict[str, Any]:
    port = free_port()
    cmd = shlex.split(server.cmd.format(display=display, port=port))
    print(f"== {name}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    proc = spawn(cmd, display, tmp / f"{name}.log", env=x_env(display) | server.env, cwd=ROOT)
    rec: dict[str, Any] = {"server": name, "link_kbs": args.link, "delay_ms": args.delay}
    throttle: Throttle | None = None
    client: FenceClient | None = None
    show = None
    try:
        wait_port(port, proc)
        time.sleep(0.5)
        throttle = Throttle(port, args.link * 1000, args.delay / 1000)
        client = FenceClient(throttle.port)
        client.request(False)
        client.pump(time.monotonic() + 3)  # the first full screen through the link
        client.pointer(*POINTER_IN_XTERM)
        client.pump(time.monotonic() + 1)
        env = x_env(display) | {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
        show_secs = args.duration + args.keys * 2.5 + 2
        show_log = tmp / f"{name}-slideshow.log"
        show = spawn([sys.executable, "-m", "benchmarks.screen", "_imageshow", "--fps", "10",
                      "--seconds", f"{show_secs:.1f}", "--title", "benchslow",
                      "--geometry", ",".join(map(str, SHOW)), "--keep-last",
                      str(tmp / "images")], display, show_log, env=env, cwd=ROOT)  # fmt: skip
        started = time.monotonic()
        client.pump(started + 1.0)  # warm-up
        client.dec.qualities.clear()
        b0, t0 = client.r.consumed, time.monotonic()
        updates = client.pump(t0 + args.duration)
        t1 = time.monotonic()
        q = client.dec.qualities
        rec |= {
            "upd_s": updates / (t1 - t0),
            "kb_s": (client.r.consumed - b0) / 1000 / (t1 - t0),
            "q_median": statistics.median(q) if q else None,
            "q_min": min(q) if q else None,
            "jpeg_rects": len(q),
            "continuous": client.continuous,
            "fences_answered": client.fences,
        }
        rec["busy"] = summary(keys_latency(client, args.keys, 5))
        # the photos stop: keys while the lossless refresh crosses the link, then how
        # long until the client shows the screen exactly?
        end = time.monotonic() + 60
        while "still" not in show_log.read_text() and time.monotonic() < end:
            client.pump(time.monotonic() + 0.1)
        still_at = time.monotonic()
        # the agent's refresh starts 0.5 s after the last update
        rec["refresh"] = summary(keys_latency(client, 5, 7, first=still_at + 2.0))
        end = time.monotonic() + args.exact_limit
        exact: float | None = None
        while time.monotonic() < end:
            client.pump(time.monotonic() + 0.5)
            # the screen afresh each time: the last key's echo may land meanwhile
            if np.array_equal(client.dec.fb & 0xFFFFFF, x11_truth(display)):
                exact = time.monotonic() - still_at
                break
        rec["exact_after_s"] = exact
        stop(show)
        show = None
        client.pump(time.monotonic() + 2)
        rec["idle"] = summary(keys_latency(client, args.keys, 6))
        client.drain(0.5, limit=10)
    except (OSError, RuntimeError) as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if show is not None:
            stop(show)
        if client is not None:
            client.close()
        if throttle is not None:
            throttle.close()
        stop(proc)
        time.sleep(0.5)
    print("   " + line(rec), file=sys.stderr, flush=True)
    return rec


def fmt(v: Any, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['server']:14} FAILED {r['error']}"
    busy, idle, refresh = r.get("busy", {}), r.get("idle", {}), r.get("refresh", {})
    exact = "never" if r.get("exact_after_s") is None else f"{r['exact_after_s']:.1f} s"
    return (
        f"{r['server']:14} {r['upd_s']:6.1f} {r['kb_s']:7.0f} {fmt(r['q_median']):>5} "
        f"{fmt(r['q_min']):>5} {fmt(busy.get('p50')):>8} {fmt(busy.get('p95')):>8} "
        f"{busy.get('misses', '-'):>5} {fmt(refresh.get('p50')):>8} {fmt(refresh.get('max')):>8} "
        f"{exact:>9} {fmt(idle.get('p50')):>8} "
        f"{'CU' if r['continuous'] else 'req'}"
    )


HEAD = (
    f"{'server':14} {'upd/s':>6} {'KB/s':>7} {'q50':>5} {'qmin':>5} {'busy p50':>8} "
    f"{'busy p95':>8} {'miss':>5} {'refr p50':>8} {'refr max':>8} {'exact':>9} "
    f"{'idle p50':>8} mode"
)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--link", type=float, default=250, help="KB/s server -> client")
    p.add_argument("--delay", type=float, default=0, help="ms one way, both directions")
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--keys", type=int, default=12)
    p.add_argument("--peers", default="x11vnc,x0vncserver")
    p.add_argument("--only", default="")
    p.add_argument("--server", action="append", default=[], help="NAME=CMD, as in screen.py")
    p.add_argument("--exact-limit", type=float, default=60)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    servers = default_servers(
        sys.executable, {}, ["direct"], [x for x in args.peers.split(",") if x]
    )
    for spec in args.server:
        name, _, cmd = spec.partition("=")
        servers[name] = Server(cmd)
    if args.only:
        servers = {k: v for k, v in servers.items() if k in args.only.split(",")}
    tmp = Path(tempfile.mkdtemp(prefix="enkaku-slowlink-"))
    (tmp / "images").mkdir()
    make_images(tmp / "images")
    results = []
    with xvfb(WIDTH, HEIGHT) as display:
        base = spawn(["xterm", "-T", "benchtype", "-geometry", "80x24+40+40", "-e", "cat"],
                     display)  # fmt: skip
        try:
            time.sleep(1.5)
            for name, server in servers.items():
                results.append(measure(name, server, args, display, tmp))
        finally:
            stop(base)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    stem = Path(args.out or ROOT / "benchmarks" / "results" / f"{stamp}-slowlink")
    text = "\n".join(
        [f"slow link {args.link:.0f} KB/s ({args.link * 8 / 1000:.1f} Mbit/s), "
         f"{args.delay:.0f} ms each way, "
         f"photos {SHOW[0]}x{SHOW[1]} at 10 fps beside the xterm, {WIDTH}x{HEIGHT}",
         HEAD, "-" * len(HEAD), *(line(r) for r in results)]
    )  # fmt: skip
    print(text)
    stem.with_suffix(".txt").write_text(text + "\n")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
