"""The console's noVNC in Debian's Chromium showing video the agent sent as H.264
(RFB encoding 50, decoded by WebCodecs), then the exact screen once the video stops.

A Tk player on the agent's Xvfb shows moving photographic frames full screen; the page's
``VideoDecoder`` is wrapped (an init script) to keep the last picture it decoded, which
must be one of the played frames. Skipped without PyAV in the agent's environment, and
when this Chromium's WebCodecs cannot decode H.264 (then noVNC does not offer it).
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from enkaku.protocol.rfb.encodings import h264
from tests.agent.test_h264 import moving_picture, psnr
from tests.e2e.harness import World, wait_for
from tests.xdisplay import stop, x_env, xvfb, xwd_root

from .test_screen import canvas_rgb, open_session, wait_screen

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

if not h264.available():
    pytest.skip("PyAV with libx264 is not installed (the h264 extra)", allow_module_level=True)

W, H = 640, 480
#: The least PSNR of a played frame in the canvas. A loaded machine's browser answers the
#: agent's fences late, so the agent's quality governor may step down to its coarsest
#: quality (20: CRF 37), which gives 27.3-28.4 dB on these frames (35-36 dB at noVNC's own
#: quality); a neighbouring frame scores 21.5 dB against another, a grey area 15.
PLAYED_FRAME_DB = 25.0

#: The player's loop, shared by both pages: the next frame every 1/fps s until the
#: folder holds "stop" (then the current one stays).
_PLAY = """state = {"i": 0, "start": time.monotonic()}
def step():
    if (folder / "stop").exists() or time.monotonic() - state["start"] > 300:
        return  # hold the current frame
    state["i"] += 1
    label.configure(image=photos[state["i"] % len(photos)])
    root.after(int(1000 / fps), step)
root.after(500, step)
root.mainloop()
"""

PLAYER = (
    """
import sys, time, tkinter as tk
from pathlib import Path
folder, fps = Path(sys.argv[1]), float(sys.argv[2])
root = tk.Tk()
root.overrideredirect(True)
root.geometry(f"{sys.argv[3]}x{sys.argv[4]}+0+0")
photos = [tk.PhotoImage(file=str(p)) for p in sorted(folder.glob("frame*.ppm"))]
label = tk.Label(root, borderwidth=0, highlightthickness=0, image=photos[0])
label.pack()
"""
    + _PLAY
)
# Keeps the last picture each VideoDecoder of the screen's size put out (noVNC's own
# probe decodes a tiny frame: not counted), and any decoder error.
HOOK = """(() => {
  if (!('VideoDecoder' in window)) return;
  const Orig = window.VideoDecoder;
  const state = window.__h264 = {outputs: 0, codecs: [], errors: [], canvas: null};
  window.VideoDecoder = class extends Orig {
    constructor(init) {
      super({
        output: (frame) => {
          if (frame.displayWidth === WIDTH && frame.displayHeight === HEIGHT) {
            state.outputs++;
            state.canvas = state.canvas || document.createElement('canvas');
            state.canvas.width = frame.displayWidth;
            state.canvas.height = frame.displayHeight;
            state.canvas.getContext('2d').drawImage(frame, 0, 0);
          }
          init.output(frame);
        },
        error: (e) => { state.errors.push(String(e)); init.error(e); },
      });
    }
    configure(config) { state.codecs.push(config.codec); return super.configure(config); }
  };
})();""".replace("WIDTH", str(W)).replace("HEIGHT", str(H))

SUPPORTED = """async () => {
  if (!('VideoDecoder' in window)) return 'no VideoDecoder';
  const s = await VideoDecoder.isConfigSupported(
      {codec: 'avc1.42E01E', codedWidth: 640, codedHeight: 480});
  return s.supported ? 'yes' : 'not supported';
}"""


@pytest.fixture
def video(tmp_path: Path) -> Iterator[tuple[str, Path, list[np.ndarray]]]:
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = moving_picture(W, H, 12)
    for i, frame in enumerate(frames):
        Image.fromarray(np.ascontiguousarray(frame[..., 2::-1])).save(folder / f"frame{i:02}.ppm")
    with xvfb(W, H) as display:
        player = subprocess.Popen(
            [sys.executable, "-c", PLAYER, str(folder), "15", str(W), str(H)],
            env=x_env(display),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield display, folder, frames
        finally:
            stop(player)


def picture(page: Any) -> np.ndarray:
    url = page.evaluate("() => window.__h264.canvas.toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_novnc_draws_h264_video_then_the_exact_screen(
    cworld: World, video: tuple[str, Path, list[np.ndarray]], page: Any
) -> None:
    display, folder, frames = video
    page.add_init_script(HOOK)
    open_session(page, cworld, display)
    wait_screen(page)
    support = page.evaluate(SUPPORTED)
    if support != "yes":
        pytest.skip(f"this Chromium's WebCodecs cannot decode H.264 ({support})")
    wait_for(
        lambda: page.evaluate("() => window.__h264.outputs") >= 5,
        120,
        "five H.264 pictures of the screen decoded by WebCodecs",
    )
    state = page.evaluate("() => ({codecs: window.__h264.codecs, errors: window.__h264.errors})")
    assert state["errors"] == []
    assert any(c.startswith("avc1.42") for c in state["codecs"])  # constrained baseline
    got = picture(page)
    sources = [np.ascontiguousarray(f[..., 2::-1]) for f in frames]
    assert max(psnr(got, s) for s in sources) > PLAYED_FRAME_DB  # one of the frames played
    # The video stops: the lossless refresh makes the canvas exactly the screen.
    (folder / "stop").touch()
    wait_for(
        lambda: np.array_equal(canvas_rgb(page), xwd_root(display)),
        60,
        "the canvas to equal the X screen after the video stopped",
    )


# A page of text with a small video beside it: white background, lines of text on the
# left, and a 320x240 label at VIDEO_AT playing the frames. The text never changes.
TEXT_AND_VIDEO = (
    """
import sys, time, tkinter as tk
from pathlib import Path
folder, fps = Path(sys.argv[1]), float(sys.argv[2])
w, h, vx, vy = (int(a) for a in sys.argv[3:7])
root = tk.Tk()
root.overrideredirect(True)
root.geometry(f"{w}x{h}+0+0")
root.configure(background="white")
lines = "\\n".join(f"{i:2}: the technician reads this beside the video" for i in range(20))
tk.Label(root, text=lines, justify="left", anchor="nw", background="white", foreground="black",
         borderwidth=0).place(x=8, y=8)
photos = [tk.PhotoImage(file=str(p)) for p in sorted(folder.glob("frame*.ppm"))]
label = tk.Label(root, borderwidth=0, highlightthickness=0, image=photos[0])
label.place(x=vx, y=vy)
"""
    + _PLAY
)
VW, VH = 320, 240
VIDEO_AT = (W - VW - 16, H - VH - 16)

# Counts the pictures each VideoDecoder puts out by size (noVNC opens one per rectangle
# geometry), and any decoder error.
SIZES_HOOK = """(() => {
  if (!('VideoDecoder' in window)) return;
  const Orig = window.VideoDecoder;
  const state = window.__h264 = {sizes: {}, errors: []};
  window.VideoDecoder = class extends Orig {
    constructor(init) {
      super({
        output: (frame) => {
          const key = frame.displayWidth + 'x' + frame.displayHeight;
          state.sizes[key] = (state.sizes[key] || 0) + 1;
          init.output(frame);
        },
        error: (e) => { state.errors.push(String(e)); init.error(e); },
      });
    }
  };
})();"""


def rows_psnr(area: np.ndarray, sources: list[np.ndarray]) -> float:
    """The PSNR of ``area`` against, row by row, the nearest row of the same place in
    any of ``sources`` (a frame torn between two pictures is still the pictures)."""
    errors = np.stack(
        [((area.astype(np.float64) - s.astype(np.float64)) ** 2).mean(axis=(1, 2)) for s in sources]
    )
    mse = float(errors.min(axis=0).mean())
    return 99.0 if mse == 0 else float(10 * np.log10(255**2 / mse))


@pytest.fixture
def video_beside_text(tmp_path: Path) -> Iterator[tuple[str, Path, list[np.ndarray]]]:
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = moving_picture(VW, VH, 12)
    for i, frame in enumerate(frames):
        Image.fromarray(np.ascontiguousarray(frame[..., 2::-1])).save(folder / f"frame{i:02}.ppm")
    with xvfb(W, H) as display:
        args = [str(folder), "20", str(W), str(H), *map(str, VIDEO_AT)]
        player = subprocess.Popen(
            [sys.executable, "-c", TEXT_AND_VIDEO, *args],
            env=x_env(display),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield display, folder, frames
        finally:
            stop(player)


def test_novnc_gets_the_video_beside_text_as_h264_and_the_text_exact(
    cworld: World, video_beside_text: tuple[str, Path, list[np.ndarray]], page: Any
) -> None:
    """Only the video's 320x240 rectangle goes as H.264 (the agent's log names its
    geometry; the browser decodes 320x240 pictures and never a whole screen); the text
    beside it is exact in the canvas while the video plays; after it, the whole screen."""
    display, folder, frames = video_beside_text
    page.add_init_script(SIZES_HOOK)
    agent, _ = open_session(page, cworld, display)
    wait_screen(page)
    support = page.evaluate(SUPPORTED)
    if support != "yes":
        pytest.skip(f"this Chromium's WebCodecs cannot decode H.264 ({support})")
    region = f"{VW}x{VH}"
    wait_for(
        lambda: page.evaluate(f"() => window.__h264.sizes['{region}'] || 0") >= 5,
        120,
        "five 320x240 H.264 pictures decoded by WebCodecs",
    )
    x, y = VIDEO_AT
    assert f"h264 video mode on for {VW}x{VH} at {x},{y}" in agent.stderr(None)
    outside = np.ones((H, W), bool)
    outside[y : y + VH, x : x + VW] = False
    screen = xwd_root(display)  # the text is still; only the video's pixels change
    wait_for(
        lambda: np.array_equal(canvas_rgb(page)[outside], screen[outside]),
        60,
        "the text beside the playing video to be exact in the canvas",
    )
    # Still exact while more pictures arrive (the text is never in an H.264 rectangle),
    # and the video's area shows the played frames: each row one of theirs (the capture
    # may read the area while the player draws it, a frame torn between two rows).
    sources = [np.ascontiguousarray(f[..., 2::-1]) for f in frames]
    for _ in range(3):
        seen = page.evaluate(f"() => window.__h264.sizes['{region}']")
        wait_for(
            lambda seen=seen: page.evaluate(f"() => window.__h264.sizes['{region}']") > seen,
            60,
            "another H.264 picture",
        )
        canvas = canvas_rgb(page)
        assert np.array_equal(canvas[outside], screen[outside])
        assert rows_psnr(canvas[y : y + VH, x : x + VW], sources) > PLAYED_FRAME_DB
    state = page.evaluate("() => window.__h264")
    assert state["errors"] == []
    assert f"{W}x{H}" not in state["sizes"]  # never the whole screen as one picture
    # The video stops: its area is refreshed losslessly, the canvas equals the screen.
    (folder / "stop").touch()
    wait_for(
        lambda: np.array_equal(canvas_rgb(page), xwd_root(display)),
        60,
        "the canvas to equal the X screen after the video stopped",
    )
