"""H.264 (RFB encoding 50) against Tight JPEG on moving photographic frames, in one run.

``python -m benchmarks.h264 [--width 1920 --height 1080] [--levels 6,8] [--frames 50]
[--workloads pan,slideshow] [--out STEM]``

Feeds the same BGRX frames straight to the agent's encoders (no capture, no network), as
the agent sends a screen playing video: each frame whole.

* **Tight JPEG**: ``TightEncoder`` with the options ``RFBServer`` derives from the JPEG
  quality level (level 6 is noVNC's default and the console's "balanced", 8 is
  TigerVNC's viewer on a LAN and the console's "high"). Each tile is decoded back (JPEG
  by Pillow, fills; basic tiles are lossless) into the picture the client would show.
* **H.264 (agent)**: ``H264Encoder`` at the CRF the agent uses for that level
  (``crf_for``); every rectangle decoded independently by FFmpeg's H.264 decoder
  (PyAV), as noVNC's WebCodecs decoder would.
* **H.264 (same PSNR)**: the smallest stream among CRFs 10-40 whose mean PSNR is at least
  Tight's for the level: "KB/s at a similar PSNR".

Per workload and level: bytes per frame, KB/s at the workload's frame rate, mean PSNR
(RGB, against the source frames) and the encoder's CPU milliseconds per frame (process
CPU time: x264's slice threads included); then the ratios H.264 / Tight. The load
average is printed with the figures (the machine may be shared).

Workloads (seeded): ``pan``: a camera panning over a photo-like scene (smooth colour
fields and detail) with fresh sensor grain in every frame, 25 fps; ``slideshow``: the
photo-like frames of ``benchmarks/screen.py``'s ``image`` workload, a new picture each
frame, 10 fps (the worst case for H.264: nothing to predict from).

``--xvfb SECONDS`` (default 10; 0 skips it) also measures the agent itself: Xvfb
1920x1080, the workload played full screen by ``benchmarks/screen.py``'s Tk player (for
``slideshow``: its ``image`` workload), ``RFBService`` with ``X11Capture`` served by
``benchmarks.rfb_direct`` (a fresh process per connection, so its CPU is that client's),
and a greedy client (``benchmarks/screen.py``'s, one request outstanding) listing
noVNC 1.7's encodings with and without 50: updates/s, share of H.264 updates, KB/s and
server CPU per update while only parsing; then the PSNR of a client decoding every pixel
against the nearest played frame (a second connection, at most 5 s).

Needs PyAV (``pip install 'enkaku[h264]'``, in the dev extra); for ``--xvfb`` also xvfb
and python3-tk.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from enkaku.protocol.rfb.encodings import h264
from enkaku.protocol.rfb.encodings.tight import TightEncoder
from enkaku.protocol.rfb.messages import EncodeOptions, Encoding
from enkaku.protocol.rfb.pixelformat import NATIVE
from enkaku.protocol.rfb.server import RFBServer

ROOT = Path(__file__).resolve().parent.parent
FPS = {"pan": 25.0, "pan-noisy": 25.0, "slideshow": 10.0}


def scene_frames(kind: str, w: int, h: int, count: int) -> list[np.ndarray]:
    """Seeded BGRX frames of a workload."""
    frames = []
    if kind in ("pan", "pan-noisy"):
        rng = np.random.default_rng(7)
        big_w, big_h = w + 3 * count, h + 2 * count
        low = Image.fromarray(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8))
        mid = Image.fromarray(rng.integers(0, 256, (68, 120, 3), dtype=np.uint8))
        scene = 0.7 * np.asarray(low.resize((big_w, big_h), Image.Resampling.BICUBIC), np.float32)
        scene += 0.3 * np.asarray(mid.resize((big_w, big_h), Image.Resampling.BICUBIC), np.float32)
        scene += rng.normal(0, 3, (big_h, big_w, 1)).astype(np.float32)  # texture: moves along
        for i in range(count):
            rgb = scene[2 * i : 2 * i + h, 3 * i : 3 * i + w]
            if kind == "pan-noisy":  # fresh sensor noise in every frame: nothing predicts it
                rgb = rgb + rng.normal(0, 2, (h, w, 1)).astype(np.float32)
            frames.append(_bgrx(np.clip(rgb, 0, 255).astype(np.uint8)))
    elif kind == "slideshow":  # benchmarks/screen.py make_images(), in memory
        for i in range(count):
            rng = np.random.default_rng(100 + i % 8)
            low = Image.fromarray(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8))
            mid = Image.fromarray(rng.integers(0, 256, (68, 120, 3), dtype=np.uint8))
            a = np.asarray(low.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
            b = np.asarray(mid.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
            grain = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
            frames.append(_bgrx(np.clip(0.7 * a + 0.3 * b + grain, 0, 255).astype(np.uint8)))
    else:
        raise SystemExit(f"unknown workload {kind}")
    return frames


def _bgrx(rgb: np.ndarray) -> np.ndarray:
    frame = np.zeros((*rgb.shape[:2], 4), np.uint8)
    frame[..., 2::-1] = rgb
    return frame


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(255**2 / mse))


def options_for(level: int, w: int, h: int) -> EncodeOptions:
    """The EncodeOptions the agent's RFBServer uses for a client asking Tight at
    ``level`` (as noVNC and TigerVNC's viewer list it)."""
    server = RFBServer(w, h, "bench")
    server.data_to_send()
    for data in (b"RFB 003.008\n", b"\x01", b"\x01"):
        server.receive_data(data)
    codes = (Encoding.TIGHT, Encoding.JPEG_QUALITY_LOW + level, Encoding.COMPRESS_LOW + 2)
    server.receive_data(struct.pack(f"!BxH{len(codes)}i", 2, len(codes), *codes))
    return server.options


@dataclass
class Result:
    workload: str
    level: int
    method: str
    crf: int | None
    bytes_per_frame: float
    kbps: float
    psnr: float
    cpu_ms: float


def run_tight(frames: list[np.ndarray], options: EncodeOptions) -> tuple[float, float, float]:
    """(bytes per frame, mean PSNR, CPU ms per frame) of Tight with ``options``."""
    encoder = TightEncoder()
    total, cpu, scores = 0, 0.0, []
    for frame in frames:
        t0 = time.process_time()
        rects = encoder.encode(frame, NATIVE, options)
        cpu += time.process_time() - t0
        shown = np.ascontiguousarray(frame[..., 2::-1])
        for r in rects:
            total += 12 + len(r.payload)  # with the rectangle header
            kind = r.payload[0] & 0xF0
            if kind == 0x90:  # JPEG: compact length, then the JPEG file
                n, pos = 0, 1
                for shift in (0, 7, 14):
                    b = r.payload[pos]
                    pos += 1
                    n |= (b & (0x7F if shift < 14 else 0xFF)) << shift
                    if shift < 14 and not b & 0x80:
                        break
                jpeg = Image.open(io.BytesIO(r.payload[pos : pos + n])).convert("RGB")
                shown[r.y : r.y + r.h, r.x : r.x + r.w] = np.asarray(jpeg)
            # fill and basic tiles are lossless: the source pixels are what the client shows
        scores.append(psnr(shown, frame[..., 2::-1]))
    n = len(frames)
    return total / n, float(np.mean(scores)), cpu / n * 1000


def run_h264(frames: list[np.ndarray], crf: int) -> tuple[float, float, float]:
    """(bytes per frame, mean PSNR, CPU ms per frame) of the agent's H.264 at ``crf``."""
    import av

    encoder = h264.H264Encoder(crf=crf)
    decoder: Any = av.CodecContext.create("h264", "r")
    options = EncodeOptions(jpeg_quality=80)
    total, cpu, scores = 0, 0.0, []
    h, w = frames[0].shape[:2]
    for frame in frames:
        t0 = time.process_time()
        (rect,) = encoder.encode(frame, NATIVE, options)
        cpu += time.process_time() - t0
        total += 12 + len(rect.payload)
        (picture,) = decoder.decode(av.Packet(rect.payload[8:]))
        scores.append(psnr(picture.to_ndarray(format="rgb24")[:h, :w], frame[..., 2::-1]))
    n = len(frames)
    return total / n, float(np.mean(scores)), cpu / n * 1000


def matched_crf(frames: list[np.ndarray], target: float) -> tuple[int, tuple[float, float, float]]:
    """The highest CRF (smallest stream) whose PSNR reaches ``target`` (bisection)."""
    lo, hi = 10, 40
    best = (lo, run_h264(frames, lo))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        got = run_h264(frames, mid)
        if got[1] >= target:
            best, lo = (mid, got), mid
        else:
            hi = mid - 1
    return best


# -- the agent on Xvfb: RFBService with X11Capture, noVNC's list with and without 50 -----


def novnc_encodings(level: int, with_h264: bool) -> list[int]:
    """noVNC 1.7's SetEncodings at depth 24 (core/rfb.js), H.264 only if WebCodecs can."""
    codes = [Encoding.COPYRECT, *([h264.H264] if with_h264 else []), Encoding.TIGHT,
             Encoding.ZRLE, Encoding.RAW, Encoding.JPEG_QUALITY_LOW + level,
             Encoding.COMPRESS_LOW + 2, Encoding.CURSOR, Encoding.DESKTOP_SIZE,
             Encoding.LAST_RECT, Encoding.EXTENDED_DESKTOP_SIZE]  # fmt: skip
    return [int(c) for c in codes]


def xvfb_run(kind: str, level: int, seconds: float, tmp: Path) -> list[dict[str, Any]]:
    """The agent serving ``kind`` played full screen on Xvfb to a greedy client (one
    request outstanding), once with noVNC's list without H.264 and once with it:
    updates/s, KB/s and the server's CPU per update with a client that only parses; then
    the PSNR of the picture of a client decoding every pixel against the nearest played
    frame (a second connection, at most 5 s)."""
    import av
    import psutil
    from tests.protocol.rfb.decoders import Update, rgb_to_values
    from tests.xdisplay import xvfb

    from benchmarks.screen import BenchDecoder, Client, spawn, stop, wait_port

    w, h = 1920, 1080
    folder = tmp / kind
    folder.mkdir(parents=True, exist_ok=True)
    count = 8 if kind == "slideshow" else 30
    frames = scene_frames(kind, w, h, count)
    for i, frame in enumerate(frames):
        Image.fromarray(np.ascontiguousarray(frame[..., 2::-1])).save(folder / f"frame{i:02}.ppm")
    sub = (slice(None, None, 4), slice(None, None, 4))
    truths = [np.ascontiguousarray(f[..., 2::-1])[sub] for f in frames]

    class Dec(BenchDecoder):
        def _update(self, r: Any) -> None:
            (n,) = r.unpack("!xH")
            rects = []
            for _ in range(n if n != 0xFFFF else 1 << 30):
                x, y, rw, rh, enc = r.unpack("!HHHHi")
                rects.append((x, y, rw, rh, enc))
                if enc == -224:
                    break
                if enc == h264.H264 and not self.full:
                    r.take(r.unpack("!II")[0])
                elif enc == h264.H264:
                    length, flags = r.unpack("!II")
                    if flags & h264.RESET_CONTEXT or self.context is None:
                        self.context = av.CodecContext.create("h264", "r")
                    (pic,) = self.context.decode(av.Packet(r.take(length)))
                    rgb = pic.to_ndarray(format="rgb24")[:rh, :rw]
                    self.fb[y : y + rh, x : x + rw] = rgb_to_values(rgb, self.pf)
                else:  # one rectangle at a time through the test decoder
                    head = struct.pack("!xHHHHHi", 1, x, y, rw, rh, enc)
                    super()._update(_Prefixed(head, r))
            self.updates.append(Update(rects))

    results = []
    fps = FPS[kind]
    with xvfb(w, h) as display:
        player = spawn([sys.executable, "-m", "benchmarks.screen", "_imageshow", "--fps",
                        str(fps), "--seconds", str(4 * seconds + 60), str(folder)],
                       display, cwd=ROOT)  # fmt: skip
        server = None
        try:
            time.sleep(2)  # the player's window is up
            for with_h264 in (False, True):
                row: dict[str, Any] = {
                    "workload": kind, "level": level,
                    "client": "noVNC list with H.264" if with_h264 else "noVNC list without",
                }  # fmt: skip
                # Throughput: parse only (the client must not be the bottleneck); then
                # quality: a new connection decoding every pixel, PSNR after each update.
                for full in (False, True):
                    # A fresh server process per connection: its CPU is this client's.
                    port = _free_port()
                    server = spawn([sys.executable, "-m", "benchmarks.rfb_direct", "--display",
                                    display, "--port", str(port)], display, cwd=ROOT)  # fmt: skip
                    wait_port(port, server)
                    client = Client(port, novnc_encodings(level, with_h264), full=full)
                    dec = Dec(client.dec.width, client.dec.height, client.dec.pf)
                    dec.full, dec.context = full, None
                    client.dec = dec
                    client.request(False)
                    end = time.monotonic() + 2  # warm-up: the detector needs 5 frames
                    while time.monotonic() < end:
                        if client.read(1.0):
                            client.request()
                    proc = psutil.Process(server.pid)
                    t = proc.cpu_times()
                    cpu0, bytes0, t0 = t.user + t.system, client.r.consumed, time.monotonic()
                    updates, h264_updates, scores = 0, 0, []
                    while time.monotonic() - t0 < (min(seconds, 5) if full else seconds):
                        if not client.read(1.0):
                            continue
                        updates += 1
                        h264_updates += any(r[4] == h264.H264 for r in dec.updates[-1].rects)
                        if full:
                            v = dec.fb[sub]
                            rgb = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1)
                            scores.append(max(psnr(rgb, t) for t in truths))
                        client.request()
                    elapsed = time.monotonic() - t0
                    t = proc.cpu_times()
                    cpu = t.user + t.system - cpu0
                    client.close()
                    stop(server)
                    if full:
                        row["psnr"] = float(np.mean(scores)) if scores else float("nan")
                        row["psnr_h264_share"] = h264_updates / max(1, updates)
                    else:
                        row.update({
                            "updates_per_s": updates / elapsed,
                            "h264_share": h264_updates / max(1, updates),
                            "kbps": (client.r.consumed - bytes0) / elapsed / 1024,
                            "cpu_ms_per_update": cpu / max(1, updates) * 1000,
                            "cpu_percent": cpu / elapsed * 100,
                        })  # fmt: skip
                results.append(row)
        finally:
            if server is not None:
                stop(server)
            stop(player)
    return results


class _Prefixed:
    """A reader that first yields ``head``, then reads from ``r`` (take/unpack)."""

    def __init__(self, head: bytes, r: Any) -> None:
        self.head, self.r = head, r

    def take(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out + (self.r.take(n - len(out)) if n > len(out) else b"")
        return bytes(self.r.take(n))

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--levels", default="6,8", help="Tight JPEG quality levels 0-9")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--workloads", default="pan,slideshow")
    p.add_argument(
        "--xvfb",
        type=float,
        default=10,
        metavar="SECONDS",
        help="measure the agent on Xvfb this long per client (0: skip)",
    )
    p.add_argument("--xvfb-workloads", default="slideshow,pan")
    p.add_argument("--out", help="STEM for STEM.txt and STEM.json (default: results/DATE-h264)")
    a = p.parse_args(argv)
    if not h264.available():
        print("PyAV with libx264 is not installed: pip install 'enkaku[h264]'", file=sys.stderr)
        return 2
    import av

    load = os.getloadavg()
    lines = [
        f"H.264 (encoding 50) vs Tight JPEG, {a.width}x{a.height}, {a.frames} frames per "
        f"workload, PyAV {av.__version__}, {h264.CODEC} preset {h264.PRESET} profile "
        f"{h264.PROFILE}; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "",
        "| workload | level | method | CRF | KB/frame | KB/s | PSNR dB | CPU ms/frame |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    results: list[Result] = []
    ratios: list[str] = []
    for kind in a.workloads.split(","):
        frames = scene_frames(kind, a.width, a.height, a.frames)
        fps = FPS[kind]
        for level in (int(x) for x in a.levels.split(",")):
            options = options_for(level, a.width, a.height)
            assert options.jpeg_quality is not None
            tight = run_tight(frames, options)
            crf = h264.crf_for(options.jpeg_quality)
            agent = run_h264(frames, crf)
            same_crf, same = matched_crf(frames, tight[1])
            rows = [
                Result(kind, level, f"Tight JPEG q{options.jpeg_quality}", None, *tight[:1],
                       tight[0] * fps / 1024, *tight[1:]),
                Result(kind, level, "H.264 agent", crf, agent[0], agent[0] * fps / 1024,
                       *agent[1:]),
                Result(kind, level, "H.264 same PSNR", same_crf, same[0],
                       same[0] * fps / 1024, *same[1:]),
            ]  # fmt: skip
            for r in rows:
                line = (
                    f"| {r.workload} | {r.level} | {r.method} | {r.crf if r.crf else '-'} | "
                    f"{r.bytes_per_frame / 1024:.1f} | {r.kbps:.0f} | {r.psnr:.2f} | "
                    f"{r.cpu_ms:.1f} |"
                )
                lines.append(line)
                print(line, flush=True)
            results += rows
            ratios.append(
                f"| {kind} | {level} | {agent[0] / tight[0]:.3f} | {agent[1] - tight[1]:+.2f} | "
                f"{same[0] / tight[0]:.3f} | {same[1] - tight[1]:+.2f} | "
                f"{agent[2] / tight[2]:.2f} |"
            )
    xrows: list[dict[str, Any]] = []
    if a.xvfb > 0:
        import tempfile

        head = [
            "",
            f"The agent on Xvfb 1920x1080 (RFBService + X11Capture, benchmarks.rfb_direct), "
            f"{a.xvfb:.0f} s per client after 2 s of warm-up, a greedy client that parses "
            "(upd/s, KB/s, CPU), then one decoding every pixel for at most 5 s (PSNR of its "
            "picture against the nearest played frame, every 4th pixel):",
            "",
            "| workload | level | client | upd/s | H.264 share | KB/s | PSNR dB | "
            "server CPU ms/update | server CPU % |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += head
        print("\n".join(head), flush=True)
        with tempfile.TemporaryDirectory(prefix="enkaku-h264-") as tmp:
            for kind in a.xvfb_workloads.split(","):
                for level in (int(x) for x in a.levels.split(",")):
                    pair = xvfb_run(kind, level, a.xvfb, Path(tmp))
                    for r in pair:
                        line = (
                            f"| {kind} | {level} | {r['client']} | {r['updates_per_s']:.1f} | "
                            f"{r['h264_share']:.2f} | {r['kbps']:.0f} | {r['psnr']:.2f} | "
                            f"{r['cpu_ms_per_update']:.1f} | {r['cpu_percent']:.0f} |"
                        )
                        lines.append(line)
                        print(line, flush=True)
                    xrows += pair
                    without, with_ = pair
                    cpu_ratio = with_["cpu_ms_per_update"] / max(without["cpu_ms_per_update"], 1e-9)
                    ratios.append(
                        f"| {kind} on Xvfb (upd/s {with_['updates_per_s']:.1f} vs "
                        f"{without['updates_per_s']:.1f}) | {level} | "
                        f"{with_['kbps'] / max(without['kbps'], 1e-9):.3f} | "
                        f"{with_['psnr'] - without['psnr']:+.2f} | - | - | "
                        f"{cpu_ratio:.2f} |"
                    )
    load = os.getloadavg()
    tail = [
        "",
        "Ratios H.264 / Tight JPEG (KB/s; PSNR difference in dB; CPU per frame):",
        "",
        "| workload | level | KB/s agent CRF | dPSNR | KB/s same PSNR | dPSNR | CPU agent CRF |",
        "|---|---|---|---|---|---|---|",
        *ratios,
        "",
        f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    ]
    lines += tail
    print("\n".join(tail))
    stem = Path(a.out) if a.out else (
        Path(__file__).parent / "results" / f"{datetime.date.today().isoformat()}-h264"
    )  # fmt: skip
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    data = {"direct": [asdict(r) for r in results], "xvfb": xrows}
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
    print(f"wrote {stem}.txt and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
