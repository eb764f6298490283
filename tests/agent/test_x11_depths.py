"""X screens at depths other than 24: 16 (R5 G6 B5), 15 (R5 G5 B5) and 30 (10 bits a
channel) on a private Xvfb, checked against xwd's raw pixels, against x11vnc (a peer
nobody here wrote) through vncdotool, and, for a viewer asking 16-bit pixels, against
the screen's own values; unit checks of the widening for formats Xvfb cannot make
(24-bit packed pixels, MSBFirst servers) and of the refusal of colour-mapped screens."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from enkaku.agent.capture.base import CaptureError, Rect
from enkaku.agent.capture.x11 import X11Capture
from enkaku.agent.capture.xformat import ScreenFormat
from enkaku.agent.rfbservice import RFBService
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb.pixelformat import PixelFormat
from tests.agent.test_rfbservice import VNCDO, Pipe, RecordingInjector, run, serve
from tests.agent.test_x11_capture import noise, set_root_image
from tests.e2e.harness import free_port
from tests.protocol.rfb.decoders import Decoder, set_encodings, set_pixel_format, update_request
from tests.xdisplay import wait_window, x_client, xvfb

#: Depth -> (bits a pixel, red, green, blue masks) as Xvfb makes them.
DEPTHS = {
    16: (16, 0xF800, 0x07E0, 0x001F),
    15: (16, 0x7C00, 0x03E0, 0x001F),
    30: (32, 0x3FF00000, 0x000FFC00, 0x000003FF),
}


def raw_root(display: str) -> tuple[npt.NDArray[np.uint32], tuple[int, int, int, int]]:
    """The root window's pixel values as xwd reads them, and (bpp, masks)."""
    data = subprocess.run(
        ["xwd", "-root", "-silent", "-display", display], check=True, capture_output=True,
        timeout=30,
    ).stdout  # fmt: skip
    f = struct.unpack(">25I", data[:100])
    header, width, height = f[0], f[4], f[5]
    byte_order, bpp, stride, masks, ncolors = f[7], f[11], f[12], f[14:17], f[19]
    dtype = (">" if byte_order == 1 else "<") + ("u2" if bpp == 16 else "u4")
    count = stride * height // (bpp // 8)
    raw = np.frombuffer(data, dtype=dtype, count=count, offset=header + 12 * ncolors)
    return raw.reshape(height, -1)[:, :width].astype(np.uint32), (bpp, *masks)


def widened(values: npt.NDArray[np.uint32], masks: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
    """R, G, B of each value, each channel ``v * 255 // max`` (x11vnc's colours)."""
    out = []
    for mask in masks:
        shift = (mask & -mask).bit_length() - 1
        top = mask >> shift
        out.append(((values >> shift) & top) * 255 // top)
    return np.dstack(out).astype(np.uint8)


def show_noise(display: str, tmp_path: Path, w: int, h: int, seed: int) -> None:
    """Noise as the root background, the X server's own reduction of it to its depth."""
    noise(tmp_path / "noise.png", w, h, seed=seed)
    set_root_image(display, tmp_path / "noise.png")


@pytest.mark.x11
@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("use_shm", [True, False], ids=["shm", "xgetimage"])
def test_a_deep_or_shallow_screen_is_captured_as_xwd_reads_it(
    depth: int, use_shm: bool, tmp_path: Path
) -> None:
    with xvfb(320, 200, depth=depth) as display, X11Capture(display, use_shm=use_shm) as cap:
        show_noise(display, tmp_path, 320, 200, seed=depth)
        values, (bpp, *masks) = raw_root(display)
        assert (bpp, *masks) == DEPTHS[depth]
        assert len(np.unique(values)) > 1000  # the noise is there, not a blank root
        expected = widened(values, tuple(masks))  # type: ignore[arg-type]
        frame = cap.grab()
        assert cap.uses_shm is use_shm
        assert frame.shape == (200, 320, 4) and frame.flags.c_contiguous
        np.testing.assert_array_equal(frame[..., 2::-1], expected)
        assert not frame[..., 3].any()  # the X bytes are clear, as the RFB layer wants
        # Rectangles of odd widths: 16-bit rows are padded to 32 bits by the server.
        rects = [Rect(3, 5, 33, 7), Rect(100, 60, 1, 9), Rect(0, 0, 320, 1), Rect(301, 190, 19, 10)]
        for grab in (cap.grab_rects, cap.grab_rects_shared):
            parts = grab(rects)
            assert parts is not None
            for r, part in zip(rects, parts, strict=True):
                np.testing.assert_array_equal(part, frame[r.y : r.y + r.h, r.x : r.x + r.w])


@pytest.mark.x11
def test_damage_on_a_16_bit_screen_brings_the_new_window(tmp_path: Path) -> None:
    with xvfb(320, 200, depth=16) as display, X11Capture(display) as cap:
        assert cap.changed_regions() is None  # first call: unknown
        cap.grab()
        with x_client(["xterm", "-geometry", "20x4+40+30", "-title", "d16"], display):
            x, y, w, h = wait_window(display, "d16")
            deadline = time.monotonic() + 15
            seen: list[Rect] = []
            while time.monotonic() < deadline:
                seen += cap.changed_regions() or []
                if any(r.intersect(Rect(x, y, w, h)) for r in seen):
                    break
                time.sleep(0.05)
            assert any(r.intersect(Rect(x, y, w, h)) for r in seen), seen
            values, (_bpp, *masks) = raw_root(display)
            for _ in range(50):  # xterm draws its text when it gets to it
                parts = cap.grab_rects([Rect(x, y, w, h)])
                values, _ = raw_root(display)
                want = widened(values[y : y + h, x : x + w], tuple(masks))  # type: ignore[arg-type]
                assert parts is not None
                if np.array_equal(parts[0][..., 2::-1], want):
                    break
                time.sleep(0.1)
            np.testing.assert_array_equal(parts[0][..., 2::-1], want)


@pytest.mark.x11
@pytest.mark.skipif(shutil.which("x11vnc") is None, reason="x11vnc missing: run scripts/bootstrap")
async def test_vncdotool_sees_a_16_bit_screen_as_x11vnc_shows_it(tmp_path: Path) -> None:
    with xvfb(400, 300, depth=16) as display, X11Capture(display) as cap:
        show_noise(display, tmp_path, 400, 300, seed=5)
        port = free_port()
        peer = ["x11vnc", "-display", display, "-rfbport", str(port), "-localhost", "-nopw",
                "-forever", "-shared", "-quiet", "-noxdamage", "-nocursor"]  # fmt: skip
        with x_client(peer, display):
            theirs = tmp_path / "x11vnc.png"
            deadline = time.monotonic() + 30
            while True:  # x11vnc listens once it has read the screen
                try:
                    await run(VNCDO, "-s", f"127.0.0.1::{port}", "--nocursor", "capture",
                              str(theirs), timeout=30)  # fmt: skip
                    break
                except (AssertionError, TimeoutError):
                    assert time.monotonic() < deadline, "x11vnc did not serve the screen"
                    await asyncio.sleep(0.5)
        ours = tmp_path / "enkaku.png"
        async with serve(cap, RecordingInjector()) as served:
            await run(VNCDO, "-s", f"127.0.0.1::{served.port}", "--nocursor", "capture",
                      str(ours))  # fmt: skip
            await served.wait_closed()
        values, (_bpp, *masks) = raw_root(display)
    theirs_rgb = np.asarray(Image.open(theirs).convert("RGB"))
    ours_rgb = np.asarray(Image.open(ours).convert("RGB"))
    assert len(np.unique(ours_rgb.reshape(-1, 3), axis=0)) > 1000
    np.testing.assert_array_equal(ours_rgb, theirs_rgb)
    np.testing.assert_array_equal(ours_rgb, widened(values, tuple(masks)))  # type: ignore[arg-type]


@pytest.mark.x11
@pytest.mark.parametrize("encoding", [Encoding.ZRLE, Encoding.RAW])
async def test_a_16_bit_viewer_gets_the_screens_own_values(encoding: int, tmp_path: Path) -> None:
    rgb565 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
    with xvfb(320, 200, depth=16) as display, X11Capture(display) as cap:
        show_noise(display, tmp_path, 320, 200, seed=9)
        values, _ = raw_root(display)
        pipe = Pipe()
        service = RFBService(cap, RecordingInjector(), pipe.read, pipe.write, name="d16")
        task = asyncio.create_task(service.run())
        try:
            init = await pipe.handshake()
            w, h = struct.unpack_from("!HH", init)
            dec = Decoder(w, h, rgb565)
            await pipe.to_server.put(set_pixel_format(rgb565))
            await pipe.to_server.put(set_encodings(encoding))
            await pipe.to_server.put(update_request(False, 0, 0, w, h))
            await pipe.receive(dec, lambda: len(dec.updates) >= 1, 30)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert len(np.unique(values)) > 1000
    np.testing.assert_array_equal(dec.fb, values)


# -- unit level: formats Xvfb does not make ------------------------------------------


def image(depth: int, bpp: int, order: int, masks: tuple[int, int, int]) -> SimpleNamespace:
    return SimpleNamespace(
        depth=depth, bits_per_pixel=bpp, byte_order=order,
        red_mask=masks[0], green_mask=masks[1], blue_mask=masks[2],
    )  # fmt: skip


def test_packed_24_bit_pixels_of_either_byte_order_are_widened() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 1 << 24, (5, 7), dtype=np.uint32)
    lsb = values[..., None] >> np.array([0, 8, 16], dtype=np.uint32) & 0xFF
    for order, data in ((0, lsb), (1, lsb[..., ::-1])):
        fmt = ScreenFormat.of(image(24, 24, order, (0xFF0000, 0xFF00, 0xFF)))
        assert fmt.bytes_per_line(7) == 24  # 21 bytes padded to 32 bits
        rows = np.zeros((5, 24), np.uint8)
        rows[:, :21] = data.astype(np.uint8).reshape(5, 21)
        frame = fmt.to_bgrx(rows, 7)
        np.testing.assert_array_equal(frame[..., 2::-1], widened(values, (0xFF0000, 0xFF00, 0xFF)))
        assert not frame[..., 3].any()


def test_msb_first_16_and_32_bit_pixels_are_widened() -> None:
    rng = np.random.default_rng(4)
    v16 = rng.integers(0, 1 << 16, (3, 4), dtype=np.uint32)
    fmt = ScreenFormat.of(image(16, 16, 1, (0xF800, 0x07E0, 0x1F)))
    frame = fmt.to_bgrx(v16.astype(">u2").view(np.uint8).reshape(3, 8), 4)
    np.testing.assert_array_equal(frame[..., 2::-1], widened(v16, (0xF800, 0x07E0, 0x1F)))
    v32 = rng.integers(0, 1 << 24, (3, 4), dtype=np.uint32)
    native = ScreenFormat.of(image(24, 32, 1, (0xFF0000, 0xFF00, 0xFF)))
    frame = native.to_bgrx(v32.astype(">u4").view(np.uint8).reshape(3, 16), 4)
    np.testing.assert_array_equal(frame[..., 2::-1], widened(v32, (0xFF0000, 0xFF00, 0xFF)))
    assert native.native and not native.viewable


def test_32_bit_pixels_with_red_and_blue_swapped_are_reordered() -> None:
    """Some X servers lay 32-bit pixels out as B, G, R from the top (red mask 0xff):
    not the agent's own order, so each channel is moved to its place."""
    rng = np.random.default_rng(5)
    values = rng.integers(0, 1 << 24, (4, 6), dtype=np.uint32)
    fmt = ScreenFormat.of(image(24, 32, 0, (0x0000FF, 0x00FF00, 0xFF0000)))
    assert not fmt.native
    frame = fmt.to_bgrx(values.astype("<u4").view(np.uint8).reshape(4, 24), 6)
    np.testing.assert_array_equal(frame[..., 2::-1], widened(values, (0xFF, 0xFF00, 0xFF0000)))


def test_widening_is_undone_exactly_by_the_rfb_layers_narrowing() -> None:
    """Every 16-bit value a screen can hold reaches a 16-bit viewer unchanged."""
    for masks, pf in (
        ((0xF800, 0x07E0, 0x1F), PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)),
        ((0x7C00, 0x03E0, 0x1F), PixelFormat(16, 15, False, True, 31, 31, 31, 10, 5, 0)),
    ):
        top = 1 << 16 if masks[0] == 0xF800 else 1 << 15
        values = np.arange(top, dtype=np.uint32).reshape(-1, 256)
        fmt = ScreenFormat.of(image(16, 16, 0, masks))
        frame = fmt.to_bgrx(values.astype("<u2").view(np.uint8), 256)
        np.testing.assert_array_equal(pf.values(frame), values)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ((8, 8, 0, (0, 0, 0)), ["colour-mapped 8-bit", "depth 24", "-screen 0"]),
        ((8, 8, 0, (0xE0, 0x1C, 0x03)), ["8 bits a pixel", "depth 24"]),
        ((16, 16, 0, (0xF0F0, 0x0F00, 0x000F)), ["not one run of bits"]),
        ((24, 32, 0, (0xFF0000, 0xFF00, 0xFF00)), ["do not fit"]),
    ],
)
def test_screens_the_agent_cannot_show_are_refused_with_what_to_do(
    fields: tuple[int, int, int, tuple[int, int, int]], words: list[str]
) -> None:
    depth, bpp, order, masks = fields
    with pytest.raises(CaptureError) as err:
        ScreenFormat.of(image(depth, bpp, order, masks))
    for word in words:
        assert word in str(err.value)


@pytest.mark.x11
def test_an_8_bit_colour_mapped_screen_is_refused_with_what_to_do() -> None:
    with xvfb(320, 200, depth=8) as display, pytest.raises(CaptureError) as err:
        X11Capture(display)
    assert "colour-mapped 8-bit" in str(err.value) and "depth 24" in str(err.value)
