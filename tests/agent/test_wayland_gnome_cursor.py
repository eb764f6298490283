"""The customer's pointer on GNOME as a shape, not pixels: mutter's screen cast in cursor
mode "metadata" read through our own PipeWire stream (``enkaku.agent.gnome.pwstream``),
against a real headless mutter with foot (tests/gnome.py).

foot sets a text I-beam over its window; the desktop around it has mutter's arrow. The
pointer is moved by the agent's own injector (mutter's remote-desktop session). A
desktop of two monitors is recorded in embedded mode, the pointer in the frames."""

from __future__ import annotations

import asyncio
import select
import struct
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from enkaku.agent.capture import gnome as gnome_capture
from enkaku.agent.capture.gnome import GnomeCapture
from enkaku.agent.gnome import mutter
from enkaku.agent.gnome.pwstream import (
    _buffer_params,
    _enum_format,
    _parse_format,
    cursor_image,
)
from enkaku.agent.input.gnome import GnomeInput
from tests.e2e.harness import wait_for
from tests.gnome import (
    Mutter,
    _pointer_at,
    bare,
    break_the_metadata_stream,
    headless_mutter,
    next_shape,
    places,
    said_once_that_the_metadata_stream_failed,
    viewer_gets_each_shape,
)


@pytest.fixture(scope="module")
def gnome() -> Iterator[Mutter]:
    with headless_mutter(800, 600) as m:
        yield m


def rgb(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return frame[..., [2, 1, 0]]


def test_the_params_are_pods_pipewire_reads_and_a_format_parses() -> None:
    # An object POD: size, type Object (15), then its type and param id.
    pod = _enum_format()
    size, kind, obj, param = struct.unpack_from("<IIII", pod)
    assert (kind, obj, param) == (15, 0x40003, 3) and size + 8 == len(pod) and len(pod) % 8 == 0
    meta = _buffer_params()[1]
    assert struct.unpack_from("<IIII", meta)[1:] == (15, 0x40005, 6)
    assert struct.unpack_from("<IIII", meta, 16) == (1, 0, 4, 3)  # type: Id SPA_META_Cursor
    assert struct.unpack_from("<I", meta, 32)[0] == 5
    # A fixed format as mutter sends it: BGRx 800x600 (and a key we skip).
    body = struct.pack("<II", 0x40003, 4)
    for key, value in ((1, struct.pack("<III", 4, 3, 2) + b"\0" * 4),
                       (0x20001, struct.pack("<III", 4, 3, 8) + b"\0" * 4),
                       (0x20004, struct.pack("<IIII", 8, 11, 0, 1)),
                       (0x20003, struct.pack("<IIII", 8, 10, 800, 600))):  # fmt: skip
        body += struct.pack("<II", key, 0) + value
    assert _parse_format(struct.pack("<II", len(body), 15) + body) == (8, 800, 600)


def test_the_pointer_shape_is_metadata_with_a_new_serial_and_not_in_the_frames(
    gnome: Mutter,
) -> None:
    inside, outside, _ = places(gnome)
    with GnomeCapture(gnome.env) as cap, GnomeInput(gnome.env) as inp:
        assert cap._cursor_mode == mutter.CURSOR_METADATA
        inp.pointer(*inside, 0)
        beam = next_shape(cap, None, "foot's pointer shape")
        cap.changed_regions()
        inp.pointer(*outside, 0)
        arrow = next_shape(cap, beam, "the desktop's pointer shape")
        # The change alone makes the descriptor readable (no pixel changed).
        assert select.select([cap.fileno()], [], [], 10)[0]
        for shape in (beam, arrow):
            h, w = shape.pixels.shape[:2]
            assert shape.pixels.dtype == np.uint8 and shape.pixels.shape[2] == 4
            assert 0 <= shape.hotspot_x < w and 0 <= shape.hotspot_y < h
            assert (shape.pixels[..., 3] > 0).any() and (shape.pixels[..., 3] == 0).any()
        assert (beam.hotspot_x, beam.hotspot_y) != (arrow.hotspot_x, arrow.hotspot_y)
        assert beam.pixels.shape != arrow.pixels.shape or not np.array_equal(
            beam.pixels, arrow.pixels
        )
        # The frames have no pointer where the reference with one drawn has it.
        x, y = outside
        wait_for(lambda: bare(cap, gnome), 30, "capture == the screen without pointer")
        plain = gnome.screenshot(pointer=False)
        assert _pointer_at(gnome.screenshot(pointer=True), x, y, plain)
        assert not _pointer_at(rgb(cap.grab()), x, y, plain)
        # Back over foot: the I-beam again, with a serial of its own.
        inp.pointer(*inside, 0)
        again = next_shape(cap, arrow, "foot's pointer shape again")
        assert again.serial not in (beam.serial, arrow.serial)
        assert np.array_equal(again.pixels, beam.pixels)
        assert (again.hotspot_x, again.hotspot_y) == (beam.hotspot_x, beam.hotspot_y)
        # A move that keeps the shape gives no new serial and no changed pixels.
        cap.changed_regions()
        inp.pointer(inside[0] + 30, inside[1] + 20, 0)
        wait_for(lambda: bare(cap, gnome), 30, "capture == the screen without pointer")
        assert cap.cursor() is again
        assert cap.changed_regions() == []


async def test_the_viewer_gets_each_new_shape_as_a_cursor_rect(gnome: Mutter) -> None:
    capture = await asyncio.to_thread(GnomeCapture, gnome.env)
    injector = await asyncio.to_thread(GnomeInput, gnome.env)
    await viewer_gets_each_shape(capture, injector, gnome, "gnome")


def test_when_the_metadata_stream_fails_the_capture_goes_on_embedded_and_says_so_once(
    gnome: Mutter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    break_the_metadata_stream(monkeypatch, caplog)
    for _ in range(2):
        with GnomeCapture(gnome.env) as cap:
            assert cap._cursor_mode == mutter.CURSOR_EMBEDDED and cap.cursor() is None
            assert cap.grab().shape == (gnome.height, gnome.width, 4)
    said_once_that_the_metadata_stream_failed(caplog)


def test_a_premultiplied_bitmap_becomes_straight_alpha_bgra() -> None:
    # RGBA (mutter's format 11) premultiplied: half-transparent orange, opaque white,
    # fully transparent; a row stride with 4 bytes of padding.
    raw = bytes([64, 32, 0, 128, 255, 255, 255, 255, 0, 0, 0, 0, 9, 9, 9, 9])
    image = cursor_image(raw, 11, 3, 1, 16, 1, 0, 7)
    assert image.pixels.tolist() == [[[0, 64, 128, 128], [255, 255, 255, 255], [0, 0, 0, 0]]]
    assert (image.hotspot_x, image.hotspot_y, image.serial) == (1, 0, 7)


def test_with_two_monitors_the_pointer_is_drawn_into_the_frames() -> None:
    # Several monitors: cursor mode "embedded" (mutter 43 can lose a stream's first
    # frame in metadata mode there; see mutter.RemoteSession), without saying the
    # metadata stream failed: a capture of one monitor goes on in metadata mode.
    with headless_mutter(800, 600, more_monitors=[(640, 480)]) as m:
        _inside, (x, y), plain = places(m)  # a plain spot on Meta-0, the primary monitor
        with GnomeCapture(m.env) as cap, GnomeInput(m.env) as inp:
            assert cap._session.cursor_mode == mutter.CURSOR_EMBEDDED
            assert cap.size == (1440, 600) and len(cap.monitors()) == 2
            inp.pointer(x, y, 0)
            wait_for(lambda: _pointer_at(rgb(cap.grab())[:600, :800], x, y, plain), 30,
                     "the pointer drawn on Meta-0")  # fmt: skip
            assert cap.cursor() is None
        with GnomeCapture(m.env, output="Meta-1") as cap:
            assert cap._session.cursor_mode == mutter.CURSOR_EMBEDDED and cap.cursor() is None
        assert gnome_capture._metadata_problem is None
