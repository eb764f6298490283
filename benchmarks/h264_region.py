"""A small video beside text: bytes per second and picture quality with the video's region
as H.264, against Tight JPEG and against the agent before region H.264.

``python -m benchmarks.h264_region [--screens 640x480,1280x720] [--seconds 8]
[--before REV] [--level 6]``

On a private Xvfb, a Tk page of static text (lines on the left) with a 320x240 player
in the bottom-right corner at 20 fps (``benchmarks/h264.py``'s ``pan`` frames: a camera
panning over a photo-like scene, 30 frames in a loop). ``RFBService`` with ``X11Capture``
served by ``benchmarks.rfb_direct`` (a fresh process per connection, so its CPU is that
client's), and a greedy client (one request outstanding, ``benchmarks/screen.py``'s)
that decodes every pixel: H.264 rectangles by FFmpeg's decoder through PyAV, one
context per rectangle geometry as noVNC keeps them. Three runs per screen size:

* **tight**: noVNC's list without 50 (a browser without WebCodecs H.264): Tight JPEG.
* **before**: the agent at git revision ``--before`` (default: the commit before region
  H.264), noVNC's list with 50: it switched a whole update to one H.264 picture when a
  change covered a quarter of the screen (640x480: the 320x240 video is exactly that),
  else Tight JPEG.
* **region**: the agent now, noVNC's list with 50: the video's rectangle as H.264, the
  rest as before.

Per run, after 2 s of warm-up, for ``--seconds``: updates/s, the share of updates with
an H.264 rectangle, KB/s and KB per update, server CPU %, the mean PSNR of the video's
area against the nearest played frame (nearest on a 1/4 subsample), and the share of
updates after which the text around the video was exactly the screen's. Needs PyAV,
xvfb and python3-tk; ``--level`` is noVNC's JPEG quality level (6, its default).
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.h264 import _Prefixed, novnc_encodings, psnr, scene_frames
from benchmarks.screen import BenchDecoder, Client, free_port, spawn, stop, wait_port
from enkaku.protocol.rfb.encodings import h264
from enkaku.protocol.rfb.pixelformat import NATIVE

ROOT = Path(__file__).resolve().parent.parent
VW, VH, FPS = 320, 240, 20

PAGE = """
import sys, time, tkinter as tk
from pathlib import Path
folder, fps = Path(sys.argv[1]), float(sys.argv[2])
w, h, vx, vy = (int(a) for a in sys.argv[3:7])
root = tk.Tk()
root.overrideredirect(True)
root.geometry(f"{w}x{h}+0+0")
root.configure(background="white")
line = "the technician reads this text beside the video, which must stay exact"
lines = "\\n".join(f"{i:3}: {line}" for i in range(h // 16))
tk.Label(root, text=lines, justify="left", anchor="nw", background="white",
         foreground="black", borderwidth=0).place(x=8, y=8)
photos = [tk.PhotoImage(file=str(p)) for p in sorted(folder.glob("frame*.ppm"))]
label = tk.Label(root, borderwidth=0, highlightthickness=0, image=photos[0])
label.place(x=vx, y=vy)
state = {"i": 0}
def step():
    state["i"] += 1
    label.configure(image=photos[state["i"] % len(photos)])
    root.after(int(1000 / fps), step)
root.after(500, step)
root.mainloop()
"""


class Dec(BenchDecoder):
    """Every pixel: H.264 rectangles through PyAV (one context per geometry), the rest
    one rectangle at a time through the test decoder."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.contexts: dict[tuple[int, int, int, int], Any] = {}

    def _update(self, r: Any) -> None:
        import av
        from tests.protocol.rfb.decoders import Update, rgb_to_values

        (n,) = r.unpack("!xH")
        rects = []
        for _ in range(n if n != 0xFFFF else 1 << 30):
            x, y, rw, rh, enc = r.unpack("!HHHHi")
            rects.append((x, y, rw, rh, enc))
            if enc == -224:
                break
            if enc == h264.H264:
                length, flags = r.unpack("!II")
                key = (x, y, rw, rh)
                if flags & h264.RESET_CONTEXT or key not in self.contexts:
                    self.contexts[key] = av.CodecContext.create("h264", "r")
                (pic,) = self.contexts[key].decode(av.Packet(r.take(length)))
                rgb = pic.to_ndarray(format="rgb24")[:rh, :rw]
                self.fb[y : y + rh, x : x + rw] = rgb_to_values(rgb, self.pf)
            else:
                head = struct.pack("!xHHHHHi", 1, x, y, rw, rh, enc)
                super()._update(_Prefixed(head, r))  # type: ignore[arg-type]  # take/unpack
                self.updates.pop()
        self.updates.append(Update(rects))


def rgb(values: np.ndarray) -> np.ndarray:
    return np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], -1).astype(np.uint8)


def run(
    display: str, mode: str, before_src: Path, w: int, h: int, args: argparse.Namespace,
    truths: list[np.ndarray], text: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    import psutil

    vx, vy = w - VW - 16, h - VH - 16
    outside = np.ones((h, w), bool)
    outside[vy : vy + VH, vx : vx + VW] = False
    text_values = NATIVE.values(np.dstack([text[..., ::-1], np.zeros((h, w, 1), np.uint8)]))
    text_values = text_values[outside]
    env = dict(os.environ, DISPLAY=display)
    if mode == "before":
        env["PYTHONPATH"] = os.pathsep.join([str(before_src), str(ROOT)])
    port = free_port()
    server = spawn([sys.executable, "-m", "benchmarks.rfb_direct", "--display", display,
                    "--port", str(port)], display, cwd=ROOT, env=env)  # fmt: skip
    try:
        wait_port(port, server)
        client = Client(port, novnc_encodings(args.level, mode != "tight"), full=True)
        dec = Dec(client.dec.width, client.dec.height, client.dec.pf)
        client.dec = dec
        client.request(False)
        end = time.monotonic() + 2  # warm-up: the detector needs 5 pictures
        while time.monotonic() < end:
            if client.read(1.0):
                client.request()
        proc = psutil.Process(server.pid)
        t = proc.cpu_times()
        cpu0, bytes0, t0 = t.user + t.system, client.r.consumed, time.monotonic()
        updates, with_h264, scores, text_exact = 0, 0, [], 0
        while time.monotonic() - t0 < args.seconds:
            if not client.read(1.0):
                continue
            updates += 1
            with_h264 += any(r[4] == h264.H264 for r in dec.updates[-1].rects)
            video = rgb(dec.fb[vy : vy + VH, vx : vx + VW])
            small = video[::4, ::4].astype(np.int16)
            near = min(truths, key=lambda t: float(np.abs(small - t[::4, ::4]).mean()))
            scores.append(psnr(video, near))
            text_exact += bool(np.array_equal(dec.fb[outside], text_values))
            client.request()
        elapsed = time.monotonic() - t0
        t = proc.cpu_times()
        cpu = t.user + t.system - cpu0
        consumed = client.r.consumed - bytes0
        client.close()
    finally:
        stop(server)
    return {
        "screen": f"{w}x{h}", "mode": mode, "updates_per_s": updates / elapsed,
        "h264_share": with_h264 / max(1, updates), "kbps": consumed / elapsed / 1024,
        "kb_per_update": consumed / max(1, updates) / 1024,
        "cpu_percent": cpu / elapsed * 100, "video_psnr": float(np.mean(scores)),
        "text_exact_share": text_exact / max(1, updates),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--screens", default="640x480,1280x720")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--before", default="f929c49^", help="git revision of 'before'")
    p.add_argument("--level", type=int, default=6)
    args = p.parse_args(argv)
    if not h264.available():
        raise SystemExit("PyAV with libx264 is needed (pip install 'enkaku[h264]')")
    from tests.xdisplay import xvfb, xwd_root

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # The agent's package as it was at --before, imported first by its server.
        archive = subprocess.run(["git", "archive", args.before, "src"], cwd=ROOT,
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        folder = tmp / "frames"
        folder.mkdir()
        frames = scene_frames("pan", VW, VH, 30)
        for i, frame in enumerate(frames):
            picture = np.ascontiguousarray(frame[..., 2::-1])
            Image.fromarray(picture).save(folder / f"frame{i:02}.ppm")
        truths = [np.ascontiguousarray(f[..., 2::-1]) for f in frames]
        for screen in args.screens.split(","):
            w, h = (int(v) for v in screen.split("x"))
            with xvfb(w, h) as display:
                player = spawn([sys.executable, "-c", PAGE, str(folder), str(FPS), str(w),
                                str(h), str(w - VW - 16), str(h - VH - 16)], display)  # fmt: skip
                try:
                    time.sleep(2)  # the page is up
                    text = xwd_root(display)  # the video's area is masked out
                    for mode in ("tight", "before", "region"):
                        row = run(display, mode, tmp / "src", w, h, args, truths, text)
                        rows.append(row)
                        print(
                            f"{row['screen']:>9} {mode:7} {row['updates_per_s']:5.1f} upd/s "
                            f"h264 {row['h264_share']:4.0%} {row['kbps']:6.0f} KB/s "
                            f"{row['kb_per_update']:5.1f} KB/upd "
                            f"cpu {row['cpu_percent']:4.0f}% video {row['video_psnr']:5.1f} dB "
                            f"text exact {row['text_exact_share']:4.0%}",
                            flush=True,
                        )
                finally:
                    stop(player)
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
