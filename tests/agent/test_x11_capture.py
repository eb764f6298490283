"""X11Capture against a private Xvfb, checked against xwd, an independent X client."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from enkaku.agent import x11lib
from enkaku.agent.capture.base import CaptureError, Rect
from enkaku.agent.capture.x11 import X11Capture, _convert_cursor
from tests.xdisplay import wait_window, x_client, x_env, xvfb, xvfb_pid, xwd_root

pytestmark = pytest.mark.x11


def rgb(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """BGRX -> RGB."""
    return frame[:, :, 2::-1]


def set_root_image(display: str, path: Path) -> None:
    """Make an image the root window's background with ImageMagick's ``display``.

    Keep another client connected meanwhile: Xvfb resets when its last client leaves.
    """
    # display(1) exits with status 1 after setting the root background; check the
    # effect with xwd instead of trusting the status.
    subprocess.run(
        ["display", "-window", "root", str(path)], env=x_env(display), timeout=30,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def noise(path: Path, width: int, height: int, seed: int) -> npt.NDArray[np.uint8]:
    img = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(img).save(path)
    return img


@pytest.mark.parametrize("use_shm", [True, False], ids=["shm", "xgetimage"])
def test_grab_matches_xwd(tmp_path: Path, use_shm: bool) -> None:
    # The capture connects first: Xvfb resets (black root) when its last client leaves.
    with xvfb(640, 480) as display, X11Capture(display, use_shm=use_shm) as cap:
        expected = noise(tmp_path / "noise.png", 640, 480, seed=1)
        set_root_image(display, tmp_path / "noise.png")
        with x_client(["xterm", "-geometry", "40x10+30+40", "-title", "cap"], display):
            wait_window(display, "cap")
            assert cap.uses_shm is use_shm
            assert cap.size == (640, 480)
            # xterm draws its text when it gets to it (later on a busy machine): take
            # both pictures again until the screen holds still between them.
            for _ in range(50):
                time.sleep(0.2)
                frame = cap.grab()
                reference = xwd_root(display)
                if np.array_equal(rgb(frame), reference):
                    break
        assert frame.shape == (480, 640, 4) and frame.dtype == np.uint8
        assert frame.flags.c_contiguous and frame.flags.owndata
        assert np.array_equal(rgb(frame), reference)
        # The xterm really is in the picture, and the rest is the noise image.
        assert not np.array_equal(rgb(frame)[40:100, 30:200], expected[40:100, 30:200])
        assert np.array_equal(rgb(frame)[300:, 400:], expected[300:, 400:])


def test_grab_returns_an_independent_copy(tmp_path: Path) -> None:
    with xvfb(320, 240) as display, X11Capture(display) as cap:
        first = cap.grab()
        noise(tmp_path / "n.png", 320, 240, seed=2)
        set_root_image(display, tmp_path / "n.png")
        second = cap.grab()
        assert not first.any()  # Xvfb starts black; the new grab did not overwrite it
        assert np.array_equal(rgb(second), xwd_root(display))


@pytest.mark.parametrize("use_shm", [True, False], ids=["shm", "xgetimage"])
def test_rectangles_grabbed_as_copies_or_as_views_of_the_segment(
    tmp_path: Path, use_shm: bool
) -> None:
    """``grab_rects`` gives copies; ``grab_rects_shared`` views laid out side by side
    in the shared memory segment (copies without SHM, or when they do not fit), each
    the screen's pixels there, until the next grab."""
    with xvfb(320, 240) as display, X11Capture(display, use_shm=use_shm) as cap:
        noise(tmp_path / "n.png", 320, 240, seed=3)
        set_root_image(display, tmp_path / "n.png")
        screen = xwd_root(display)
        rects = [Rect(0, 0, 320, 100), Rect(17, 150, 33, 90), Rect(300, 5, 20, 7)]
        copies = cap.grab_rects(rects)
        views = cap.grab_rects_shared(rects)
        assert copies is not None and views is not None
        for r, copy, view in zip(rects, copies, views, strict=True):
            want = screen[r.y : r.y + r.h, r.x : r.x + r.w]
            assert np.array_equal(rgb(copy), want) and np.array_equal(rgb(view), want)
            assert copy.flags.owndata
            assert view.flags.owndata is not use_shm and view.flags.writeable
        if use_shm:
            # Side by side: writing into one view leaves the others as they were.
            views[0][:] = 0
            assert np.array_equal(rgb(views[1]), screen[150:240, 17:50])
            # The next grab reuses the segment; the copies stay as they were.
            cap.grab_rects_shared([Rect(0, 0, 320, 240)])
            assert np.array_equal(rgb(copies[0]), screen[:100])
            # More than the segment holds: copies, still right.
            bigger = cap.grab_rects_shared([Rect(0, 0, 320, 240), Rect(0, 0, 10, 10)])
            assert bigger is not None and all(p.flags.owndata for p in bigger)
            assert np.array_equal(rgb(bigger[0]), screen)


def test_changed_regions_cover_new_window(tmp_path: Path) -> None:
    with xvfb(800, 600) as display, X11Capture(display) as cap:
        assert cap.changed_regions() is None  # first call: unknown, send everything
        time.sleep(0.1)
        assert cap.changed_regions() == []  # nothing drew since
        with x_client(["xterm", "-geometry", "20x5+300+200", "-title", "dmg"], display):
            x, y, w, h = wait_window(display, "dmg")
            time.sleep(0.3)
            regions = cap.changed_regions()
            frame = cap.grab()
        assert regions
        covered = np.zeros((600, 800), dtype=bool)
        for r in regions:
            covered[r.y : r.y + r.h, r.x : r.x + r.w] = True
        assert covered[y : y + h, x : x + w].all()
        # Precise, not "the whole screen": nothing far from the window is reported.
        assert not covered[: y - 20, :].any() and not covered[:, : x - 20].any()
        # Where the frame is not black, damage was reported.
        assert covered[frame[:, :, :3].any(axis=2)].all()


def test_changed_regions_after_root_background(tmp_path: Path) -> None:
    with xvfb(320, 240) as display, X11Capture(display) as cap:
        cap.changed_regions()
        noise(tmp_path / "n.png", 320, 240, seed=3)
        set_root_image(display, tmp_path / "n.png")
        assert cap.changed_regions() == [Rect(0, 0, 320, 240)]


def test_cursor_shape_follows_window(tmp_path: Path) -> None:
    with xvfb(640, 480) as display, X11Capture(display) as cap:
        subprocess.run(["xdotool", "mousemove", "600", "400"], env=x_env(display), check=True)
        root_cursor = cap.cursor()
        assert root_cursor is not None
        h, w, four = root_cursor.pixels.shape
        assert four == 4 and 0 < w <= 64 and 0 < h <= 64
        assert 0 <= root_cursor.hotspot_x < w and 0 <= root_cursor.hotspot_y < h
        assert (root_cursor.pixels[:, :, 3] == 255).any()
        transparent = root_cursor.pixels[:, :, 3] == 0
        assert not root_cursor.pixels[transparent][:, :3].any()  # straight alpha, no junk
        assert cap.cursor() is root_cursor  # same serial: cached
        with x_client(["xterm", "-geometry", "40x10+0+0", "-title", "cur"], display):
            wait_window(display, "cur")
            subprocess.run(["xdotool", "mousemove", "50", "50"], env=x_env(display), check=True)
            time.sleep(0.2)
            text_cursor = cap.cursor()
        assert text_cursor is not None
        assert text_cursor.serial != root_cursor.serial  # xterm's I-beam
        assert text_cursor.pixels.shape != root_cursor.pixels.shape or not np.array_equal(
            text_cursor.pixels, root_cursor.pixels
        )


def test_cursor_conversion_unpremultiplies() -> None:
    # XFixes hands out premultiplied ARGB, one pixel per unsigned long.
    words = [0xFF102030, 0x80402010, 0x00000000, 0x01010101, 0x00FFFFFF, 0xC0C00000]
    longs = (ctypes.c_ulong * 6)(*words)
    image = x11lib.XFixesCursorImage(
        width=3, height=2, xhot=1, yhot=0, cursor_serial=7,
        pixels=ctypes.cast(longs, ctypes.POINTER(ctypes.c_ulong)),
    )  # fmt: skip
    cursor = _convert_cursor(image)
    assert (cursor.hotspot_x, cursor.hotspot_y, cursor.serial) == (1, 0, 7)
    assert cursor.pixels.tolist() == [
        [[0x30, 0x20, 0x10, 0xFF], [0x20, 0x40, 0x80, 0x80], [0, 0, 0, 0]],
        [[0xFF, 0xFF, 0xFF, 0x01], [0, 0, 0, 0], [0, 0, 0xFF, 0xC0]],
    ]


# RandR through libXrandr directly: the xrandr tool (Debian x11-xserver-utils) is not
# installed. Xvfb's largest framebuffer is its start size, so shrink, then grow back.
class _XRRScreenResources(ctypes.Structure):
    _fields_ = [
        ("timestamp", ctypes.c_ulong),
        ("configTimestamp", ctypes.c_ulong),
        ("ncrtc", ctypes.c_int),
        ("crtcs", ctypes.POINTER(ctypes.c_ulong)),
        ("noutput", ctypes.c_int),
        ("outputs", ctypes.POINTER(ctypes.c_ulong)),
        ("nmode", ctypes.c_int),
        ("modes", ctypes.c_void_p),
    ]


def resize_screen(conn: x11lib.XConnection, width: int, height: int) -> None:
    """Disable the CRTCs and set the framebuffer size, as ``xrandr --fb`` would."""
    xrr = ctypes.CDLL("libXrandr.so.2")
    xrr.XRRGetScreenResources.restype = ctypes.POINTER(_XRRScreenResources)
    xrr.XRRGetScreenResources.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    xrr.XRRSetCrtcConfig.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(_XRRScreenResources), ctypes.c_ulong, ctypes.c_ulong,
        ctypes.c_int, ctypes.c_int, ctypes.c_ulong, ctypes.c_ushort, ctypes.c_void_p,
        ctypes.c_int,
    ]  # fmt: skip
    xrr.XRRSetScreenSize.argtypes = [ctypes.c_void_p, ctypes.c_ulong, *[ctypes.c_int] * 4]
    xrr.XRRFreeScreenResources.argtypes = [ctypes.POINTER(_XRRScreenResources)]
    res = xrr.XRRGetScreenResources(conn.dpy, conn.root)
    for i in range(res.contents.ncrtc):
        xrr.XRRSetCrtcConfig(conn.dpy, res, res.contents.crtcs[i], 0, 0, 0, 0, 1, None, 0)
    xrr.XRRFreeScreenResources(res)
    xrr.XRRSetScreenSize(conn.dpy, conn.root, width, height, width // 4, height // 4)
    assert conn.sync_errors() == []


def test_grab_follows_screen_resize(tmp_path: Path) -> None:
    with xvfb(640, 480) as display, X11Capture(display) as cap:
        conn = x11lib.XConnection(display, CaptureError)
        try:
            assert cap.grab().shape == (480, 640, 4)
            cap.changed_regions()
            resize_screen(conn, 400, 300)
            noise(tmp_path / "n.png", 400, 300, seed=4)
            set_root_image(display, tmp_path / "n.png")
            frame = cap.grab()
            assert frame.shape == (300, 400, 4) and cap.size == (400, 300)
            assert np.array_equal(rgb(frame), xwd_root(display))
            assert cap.changed_regions() is None  # resized: everything is new
            resize_screen(conn, 640, 480)
            assert cap.grab().shape == (480, 640, 4)
        finally:
            conn.close()


def test_x_errors_do_not_end_the_process() -> None:
    with xvfb(320, 240) as display:
        conn = x11lib.XConnection(display, CaptureError)
        try:
            # A rectangle outside the root window: BadMatch, which by default exit(1)s.
            image = conn.x11.XGetImage(
                conn.dpy, conn.root, 0, 0, 400, 240, x11lib.ALL_PLANES, x11lib.ZPIXMAP
            )
            assert not image
            errors = conn.sync_errors()
            assert [e.error_code for e in errors] == [8]
            assert str(errors[0]).startswith("BadMatch")
        finally:
            conn.close()


def test_lost_display_raises() -> None:
    with xvfb(320, 240) as display:
        cap = X11Capture(display)
        cap.grab()
        os.kill(xvfb_pid(display), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/tmp/.X11-unix/X{display[1:]}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(CaptureError, match="lost"):
            cap.grab()
        cap.close()


def test_bad_display_name() -> None:
    with pytest.raises(CaptureError, match="cannot open X display"):
        X11Capture(":9999")
