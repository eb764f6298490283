"""X screens at depths other than 24: 16 (R5 G6 B5), 15 (R5 G5 B5) and 30 (10 bits a
channel), and colour-mapped 8-bit screens, on a private Xvfb, checked against xwd's raw
pixels (and colour map), against x11vnc (a peer nobody here wrote) through vncdotool,
and, for a viewer asking 16-bit pixels, against the screen's own values; a colour map
changed without drawing reaches the viewer; unit checks of the widening for formats
Xvfb cannot make (24-bit packed pixels, MSBFirst servers) and of the refusal of the
formats the agent cannot show."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from enkaku.agent import x11lib
from enkaku.agent.capture.base import CaptureError, Rect
from enkaku.agent.capture.x11 import X11Capture
from enkaku.agent.capture.xformat import ScreenFormat, channel_maps, palette
from enkaku.agent.rfbservice import RFBService
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb.pixelformat import NATIVE, PixelFormat
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


def xwd_root(
    display: str,
) -> tuple[npt.NDArray[np.uint32], tuple[int, int, int, int], npt.NDArray[np.uint8]]:
    """The root window's pixel values as xwd reads them, (bpp, masks), and the colour
    map xwd wrote (R, G, B of each pixel value, 16-bit channels taken to 8 bits; on a
    DirectColor screen, row i holds entry i of each channel's map)."""
    data = subprocess.run(
        ["xwd", "-root", "-silent", "-display", display], check=True, capture_output=True,
        timeout=30,
    ).stdout  # fmt: skip
    f = struct.unpack(">25I", data[:100])
    header, width, height = f[0], f[4], f[5]
    byte_order, bpp, stride, masks, ncolors = f[7], f[11], f[12], f[14:17], f[19]
    dtype = (">" if byte_order == 1 else "<") + {8: "u1", 16: "u2", 32: "u4"}[bpp]
    count = stride * height // (bpp // 8)
    raw = np.frombuffer(data, dtype=dtype, count=count, offset=header + 12 * ncolors)
    entries = np.frombuffer(
        data, dtype=">u4,>u2,>u2,>u2,u1,u1", count=ncolors, offset=header
    )  # fmt: skip
    colours = np.zeros((256, 3), np.uint8)
    direct = f[13] == x11lib.DIRECT_COLOR  # the header's visual class
    for pixel, red, green, blue, _flags, _pad in entries.tolist():
        if direct:  # each channel's index in its own subfield
            for c, (mask, value) in enumerate(zip(masks, (red, green, blue), strict=True)):
                colours[(pixel & mask) >> ((mask & -mask).bit_length() - 1), c] = value >> 8
        elif pixel < 256:
            colours[pixel] = (red >> 8, green >> 8, blue >> 8)
    values = raw.reshape(height, -1)[:, :width].astype(np.uint32)
    return values, (bpp, *masks), colours


def raw_root(display: str) -> tuple[npt.NDArray[np.uint32], tuple[int, int, int, int]]:
    """The root window's pixel values as xwd reads them, and (bpp, masks)."""
    values, fmt, _colours = xwd_root(display)
    return values, fmt


def root_rgb(display: str) -> npt.NDArray[np.uint8]:
    """The root window's colours as xwd reads them: widened, or through the colour map."""
    values, (_bpp, *masks), colours = xwd_root(display)
    if not any(masks):
        return colours[values]
    return widened(values, tuple(masks))  # type: ignore[arg-type]


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


def assert_captures(cap: X11Capture, use_shm: bool, expected: npt.NDArray[np.uint8]) -> None:
    """The 320×200 screen's grab is ``expected`` (R, G, B) with the X bytes clear, as the
    RFB layer wants, and rectangles of odd widths (rows the server pads to 32 bits) grab
    the same pixels, as copies and as views."""
    frame = cap.grab()
    assert cap.uses_shm is use_shm
    assert frame.shape == (200, 320, 4) and frame.flags.c_contiguous
    np.testing.assert_array_equal(frame[..., 2::-1], expected)
    assert not frame[..., 3].any()
    rects = [Rect(3, 5, 33, 7), Rect(100, 60, 1, 9), Rect(0, 0, 320, 1), Rect(301, 190, 19, 10)]
    for grab in (cap.grab_rects, cap.grab_rects_shared):
        parts = grab(rects)
        assert parts is not None
        for r, part in zip(rects, parts, strict=True):
            np.testing.assert_array_equal(part, frame[r.y : r.y + r.h, r.x : r.x + r.w])


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
        assert_captures(cap, use_shm, expected)


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
@pytest.mark.parametrize("depth", [16, 8])
async def test_vncdotool_sees_the_screen_as_x11vnc_shows_it(depth: int, tmp_path: Path) -> None:
    with xvfb(400, 300, depth=depth) as display, X11Capture(display) as cap:
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
        expected = root_rgb(display)
    theirs_rgb = np.asarray(Image.open(theirs).convert("RGB"))
    ours_rgb = np.asarray(Image.open(ours).convert("RGB"))
    # The noise as the screen could hold it: thousands of colours, or most of 256.
    assert len(np.unique(ours_rgb.reshape(-1, 3), axis=0)) > (1000 if depth > 8 else 100)
    np.testing.assert_array_equal(ours_rgb, theirs_rgb)
    np.testing.assert_array_equal(ours_rgb, expected)


@contextlib.asynccontextmanager
async def served(
    cap: X11Capture, pf: PixelFormat, encoding: int
) -> AsyncIterator[tuple[Pipe, Decoder]]:
    """An RFBService on ``cap`` and the test suite's decoder as its viewer, asking for
    ``pf`` pixels in ``encoding``, once it has the first whole picture."""
    pipe = Pipe()
    service = RFBService(cap, RecordingInjector(), pipe.read, pipe.write, name="depths")
    task = asyncio.create_task(service.run())
    try:
        init = await pipe.handshake()
        w, h = struct.unpack_from("!HH", init)
        dec = Decoder(w, h, pf)
        await pipe.to_server.put(set_pixel_format(pf))
        await pipe.to_server.put(set_encodings(encoding))
        await pipe.to_server.put(update_request(False, 0, 0, w, h))
        await pipe.receive(dec, lambda: len(dec.updates) >= 1, 30)
        yield pipe, dec
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.x11
@pytest.mark.parametrize("encoding", [Encoding.ZRLE, Encoding.RAW])
async def test_a_16_bit_viewer_gets_the_screens_own_values(encoding: int, tmp_path: Path) -> None:
    rgb565 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
    with xvfb(320, 200, depth=16) as display, X11Capture(display) as cap:
        show_noise(display, tmp_path, 320, 200, seed=9)
        values, _ = raw_root(display)
        async with served(cap, rgb565, encoding) as (_pipe, dec):
            pass
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
        ((4, 4, 0, (0, 0, 0)), ["colour-mapped 4-bit", "4-bit pixels", "depth 24", "-screen 0"]),
        ((8, 8, 0, (0, 0, 0x03)), ["masks", "depth 24"]),
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


def test_colour_mapped_pixels_are_looked_up_in_the_colour_map() -> None:
    fmt = ScreenFormat.of(image(8, 8, 0, (0, 0, 0)))
    assert fmt.indexed and not fmt.native and fmt.bytes_per_line(5) == 8
    red = np.arange(256, dtype=np.uint16) * 257
    colours = palette(red, red[::-1].copy(), np.full(256, 0x80FF, np.uint16))
    rows = np.array([[0, 1, 254, 255, 7, 9, 9, 9]], np.uint8)  # 5 pixels, row padding
    frame = fmt.to_bgrx(rows, 5, colours)
    assert frame.shape == (1, 5, 4) and frame.flags.c_contiguous
    assert frame[0].tolist() == [
        [0x80, 255, 0, 0], [0x80, 254, 1, 0], [0x80, 1, 254, 0], [0x80, 0, 255, 0],
        [0x80, 248, 7, 0],
    ]  # fmt: skip
    with pytest.raises(ValueError, match="colour map"):
        fmt.to_bgrx(rows, 5)


@pytest.mark.x11
@pytest.mark.parametrize("use_shm", [True, False], ids=["shm", "xgetimage"])
def test_an_8_bit_colour_mapped_screen_is_captured_as_xwd_reads_it(
    use_shm: bool, tmp_path: Path
) -> None:
    with xvfb(320, 200, depth=8) as display, X11Capture(display, use_shm=use_shm) as cap:
        show_noise(display, tmp_path, 320, 200, seed=8)
        values, (bpp, *masks), _colours = xwd_root(display)
        assert bpp == 8 and not any(masks)
        assert len(np.unique(values)) > 100  # the noise, dithered into the colour map
        expected = root_rgb(display)
        assert_captures(cap, use_shm, expected)


def test_direct_colour_pixels_are_looked_up_channel_by_channel() -> None:
    """Each channel value is an index into its own channel's map (DirectColor), for
    32-bit and 16-bit pixels; no widening, no raw values passed through."""
    ramp = np.arange(256, dtype=np.uint32)
    red, green, blue = (255 - ramp) * 257, (ramp // 2) * 257, np.full(256, 0x4000, np.uint32)
    maps = channel_maps(red, green, blue, 256)
    fmt = ScreenFormat.of(image(24, 32, 0, (0xFF0000, 0xFF00, 0xFF)))
    assert fmt.native  # TrueColor would pass these pixels through as they are
    rows = np.array([[0x000000, 0x10FF80, 0xFFFFFF]], "<u4").view(np.uint8)
    frame = fmt.to_bgrx(rows, 3, maps)
    assert frame.flags.c_contiguous and frame.shape == (1, 3, 4)
    # B, G, R, X: blue's map is flat, green's halves, red's is reversed.
    assert frame[0].tolist() == [[0x40, 0, 255, 0], [0x40, 127, 239, 0], [0x40, 127, 0, 0]]
    # The same pixels from an MSBFirst server, and through the generic path (24-bit).
    msb = ScreenFormat.of(image(24, 32, 1, (0xFF0000, 0xFF00, 0xFF)))
    rows_msb = np.array([[0x000000, 0x10FF80, 0xFFFFFF]], ">u4").view(np.uint8)
    assert msb.to_bgrx(rows_msb, 3, maps).tolist() == frame.tolist()
    packed = ScreenFormat.of(image(24, 24, 0, (0xFF0000, 0xFF00, 0xFF)))
    rows24 = np.array([[0, 0, 0, 0x80, 0xFF, 0x10, 0xFF, 0xFF, 0xFF]], np.uint8)
    assert packed.to_bgrx(rows24, 3, maps).tolist() == frame.tolist()
    fmt16 = ScreenFormat.of(image(16, 16, 0, (0xF800, 0x07E0, 0x001F)))
    # 16-bit 5/6/5: channel values 31/63/31 at most, looked up at those indices.
    rows16 = np.array([[0xFFFF, 0x0821]], "<u2").view(np.uint8)
    frame16 = fmt16.to_bgrx(rows16, 2, maps)
    assert frame16[0].tolist() == [[0x40, 31, 224, 0], [0x40, 0, 254, 0]]
    # Entries past the map's read as black.
    short = channel_maps(red, green, blue, 16)
    assert fmt.to_bgrx(rows, 3, short)[0, :2].tolist() == [[0x40, 0, 255, 0], [0, 0, 0, 0]]


@pytest.mark.x11
@pytest.mark.parametrize("use_shm", [True, False], ids=["shm", "xgetimage"])
def test_a_direct_colour_screen_is_captured_through_its_channel_maps(
    use_shm: bool, tmp_path: Path
) -> None:
    """An Xvfb whose default visual is DirectColor (``-cc 5``), noise on its root and a
    window in a colour cell of its own: the capture is xwd's pixel values looked up in
    xwd's channel maps, the window red though its pixel value is not."""
    where = Rect(60, 40, 30, 20)
    with (
        xvfb(320, 200, depth=24, visual_class=x11lib.DIRECT_COLOR) as display,
        X11Capture(display, use_shm=use_shm) as cap,
    ):
        cell = ColourCell(display, where)  # first: the picture's colours may fill the maps
        try:
            show_noise(display, tmp_path, 320, 200, seed=5)
            values, (bpp, *masks), colours = xwd_root(display)
            assert bpp == 32 and tuple(masks) == (0xFF0000, 0xFF00, 0xFF)
            expected = np.dstack(
                [colours[(values >> s) & 0xFF, c] for c, s in enumerate((16, 8, 0))]
            )
            window = values[where.y, where.x]
            assert window != 0xFF0000 and expected[where.y, where.x].tolist() == [255, 0, 0]
            assert len(np.unique(values)) > 1000  # the noise is there
            assert_captures(cap, use_shm, expected)
        finally:
            cell.close()


@pytest.mark.x11
async def test_vncdotool_sees_a_direct_colour_screen_in_its_colours(tmp_path: Path) -> None:
    """A viewer nobody here wrote (vncdotool) through the agent: the DirectColor
    screen's colours, pixel for pixel xwd's values through xwd's channel maps (x11vnc
    sends such a screen's raw values: its window would be near-black, not red)."""
    where = Rect(60, 40, 30, 20)
    with (
        xvfb(320, 200, depth=24, visual_class=x11lib.DIRECT_COLOR) as display,
        X11Capture(display) as cap,
    ):
        cell = ColourCell(display, where)
        try:
            show_noise(display, tmp_path, 320, 200, seed=6)
            ours = tmp_path / "enkaku.png"
            async with serve(cap, RecordingInjector()) as served_:
                await run(VNCDO, "-s", f"127.0.0.1::{served_.port}", "--nocursor", "capture",
                          str(ours))  # fmt: skip
                await served_.wait_closed()
            values, _fmt, colours = xwd_root(display)
        finally:
            cell.close()
    expected = np.dstack([colours[(values >> s) & 0xFF, c] for c, s in enumerate((16, 8, 0))])
    ours_rgb = np.asarray(Image.open(ours).convert("RGB"))
    assert ours_rgb[where.y + 5, where.x + 5].tolist() == [255, 0, 0]
    assert len(np.unique(ours_rgb.reshape(-1, 3), axis=0)) > 1000
    np.testing.assert_array_equal(ours_rgb, expected)


class ColourCell:
    """A window painted with a read-write colour map cell of its own, through libX11
    directly: changing the cell's colour recolours the window without any drawing (so
    without damage), as colour-cycling programs on 8-bit screens do."""

    def __init__(self, display: str, rect: Rect) -> None:
        x11 = self.x11 = ctypes.CDLL("libX11.so.6")
        ulong, ptr = ctypes.c_ulong, ctypes.c_void_p
        x11.XOpenDisplay.restype, x11.XOpenDisplay.argtypes = ptr, [ctypes.c_char_p]
        x11.XDefaultColormap.restype, x11.XDefaultColormap.argtypes = ulong, [ptr, ctypes.c_int]
        x11.XDefaultRootWindow.restype, x11.XDefaultRootWindow.argtypes = ulong, [ptr]
        x11.XAllocColorCells.argtypes = [
            ptr, ulong, ctypes.c_int, ptr, ctypes.c_uint, ctypes.POINTER(ulong), ctypes.c_uint
        ]  # fmt: skip
        x11.XCreateSimpleWindow.restype = ulong
        x11.XCreateSimpleWindow.argtypes = [
            ptr, ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_uint, ulong, ulong,
        ]  # fmt: skip
        x11.XChangeWindowAttributes.argtypes = [ptr, ulong, ulong, ptr]
        x11.XMapWindow.argtypes = [ptr, ulong]
        x11.XStoreColor.argtypes = [ptr, ulong, ctypes.POINTER(x11lib.XColor)]
        x11.XSync.argtypes = [ptr, ctypes.c_int]
        x11.XCloseDisplay.argtypes = [ptr]
        self.dpy = x11.XOpenDisplay(display.encode())
        assert self.dpy, f"cannot open {display}"
        self.cmap = x11.XDefaultColormap(self.dpy, 0)
        pixel = ulong()
        assert x11.XAllocColorCells(self.dpy, self.cmap, 0, None, 0, ctypes.byref(pixel), 1)
        self.pixel = pixel.value
        self.set(0xFFFF, 0, 0)
        window = x11.XCreateSimpleWindow(
            self.dpy, x11.XDefaultRootWindow(self.dpy), rect.x, rect.y, rect.w, rect.h, 0,
            0, self.pixel,
        )  # fmt: skip
        # Override-redirect (XSetWindowAttributes.override_redirect, CWOverrideRedirect):
        # the window stays where it is put, whatever window manager runs.
        attrs = (ctypes.c_ubyte * 112)()
        ctypes.c_int.from_buffer(attrs, 88).value = 1
        x11.XChangeWindowAttributes(self.dpy, window, 1 << 9, attrs)
        x11.XMapWindow(self.dpy, window)
        x11.XSync(self.dpy, 0)

    def set(self, red: int, green: int, blue: int) -> None:
        """Store a colour (16-bit channels) in the cell: DoRed | DoGreen | DoBlue."""
        colour = x11lib.XColor(pixel=self.pixel, red=red, green=green, blue=blue, flags=b"\x07")
        self.x11.XStoreColor(self.dpy, self.cmap, ctypes.byref(colour))
        self.x11.XSync(self.dpy, 0)

    def close(self) -> None:
        self.x11.XCloseDisplay(self.dpy)


@pytest.mark.x11
@pytest.mark.parametrize(
    "depth, visual_class", [(8, None), (24, x11lib.DIRECT_COLOR)], ids=["8-bit", "directcolor"]
)
async def test_a_colour_map_change_reaches_an_idle_viewer(
    depth: int, visual_class: int | None
) -> None:
    """Nothing is drawn and no damage is reported: the service's check of the colour
    map (X11Capture.colour_check_interval) finds the change and sends it (on a
    DirectColor screen: a change of the channel maps, as a gamma ramp makes)."""
    where = Rect(40, 30, 50, 20)
    with (
        xvfb(160, 120, depth=depth, visual_class=visual_class) as display,
        X11Capture(display) as cap,
    ):
        cell = ColourCell(display, where)
        try:
            async with served(cap, NATIVE, Encoding.RAW) as (pipe, dec):
                assert window_colour(dec, where) == 0xFF0000
                outside = dec.fb.copy()
                await pipe.to_server.put(update_request(True, 0, 0, dec.width, dec.height))
                await asyncio.sleep(0.3)  # the service is waiting for damage now
                await asyncio.to_thread(cell.set, 0, 0xFFFF, 0)
                await pipe.receive(dec, lambda: len(dec.updates) >= 2, 30)
                assert window_colour(dec, where) == 0x00FF00
                # Only the window changed colour; the rest of the picture is as it was.
                inside = np.zeros(dec.fb.shape, bool)
                inside[where.y : where.y + where.h, where.x : where.x + where.w] = True
                np.testing.assert_array_equal(dec.fb[~inside], outside[~inside])
        finally:
            cell.close()


def window_colour(dec: Decoder, where: Rect) -> int:
    """The one pixel value (0xRRGGBB) the viewer shows inside ``where``."""
    values = np.unique(dec.fb[where.y : where.y + where.h, where.x : where.x + where.w])
    assert len(values) == 1, [hex(v) for v in values]
    return int(values[0])
