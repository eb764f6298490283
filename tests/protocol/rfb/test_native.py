"""The compiled encoder core (enkaku.native) gives exactly the numpy encoders' results.

The numpy code is the reference and the fallback. The tests use this checkout's library
(scripts/bootstrap builds it) or, where none was built, one they build from the same
source; they never quietly test numpy against itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from enkaku import native
from enkaku.protocol.rfb.encodings import EncodeOptions, zrle
from enkaku.protocol.rfb.pixelformat import NATIVE
from tests.protocol.rfb.decoders import photo_image, sample_image
from tests.protocol.rfb.test_encodings import FORMATS


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The library: this checkout's (scripts/bootstrap builds it), else one built here
    from the same source (a checkout where bootstrap did not run)."""
    if os.environ.get("ENKAKU_NATIVE") == "0":
        pytest.skip("turned off by ENKAKU_NATIVE=0")
    if native.LIB is not None:
        return native.LIB
    lib = native.load(native.build(tmp_path_factory.mktemp("native") / native.LIBRARY.name))
    assert lib is not None
    return lib


@pytest.fixture
def with_lib(built, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The encoders use the library during the test."""
    monkeypatch.setattr(native, "LIB", built)
    return built


needs_lib = pytest.mark.usefixtures("with_lib")


def _reference(values: np.ndarray, pf) -> tuple[bytes, int]:  # type: ignore[no-untyped-def]
    parts, raw = zrle._encode_rect(values, pf)
    return b"".join(parts), raw


def _images(rng: np.random.Generator, h: int, w: int) -> list[np.ndarray]:
    """BGRX pictures of the kinds the subencodings are chosen for."""
    out = []
    for colours in (1, 2, 3, 5, 16, 17, 127, 128, 129, 300):
        palette = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
        idx = rng.integers(0, colours, (h, w))
        out.append(palette[idx])
        runs = np.repeat(idx[:, :1], w, axis=1)  # long runs across rows (over 255 too)
        out.append(palette[runs])
        half = idx.copy()
        half[:, : w // 2] = 0
        out.append(palette[half])
    out.append(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))  # noise: raw tiles
    return out


def test_the_library_builds_and_loads_at_its_version(built) -> None:  # type: ignore[no-untyped-def]
    """The source builds here and the build loads with every function, at the version
    the code expects (a broken build fails here instead of silently testing numpy)."""
    assert built.enkaku_rfbcore_version() == native.VERSION


@needs_lib
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_zrle_tiles_match_the_numpy_encoder_in_every_format(fmt: str) -> None:
    """Every subencoding (raw, solid, packed 1/2/4 bits, RLE, palette RLE; runs over
    255 pixels, across rows), edge tiles of every size, in every pixel format."""
    pf = FORMATS[fmt]
    rng = np.random.default_rng(len(fmt))
    kinds: set[int] = set()
    for h, w in ((1, 1), (3, 70), (64, 64), (65, 129), (130, 7), (200, 260)):
        for picture in _images(rng, h, w):
            values = pf.values(picture)
            got = zrle.native_tiles(values, pf)
            assert got == _reference(values, pf), (fmt, h, w)
            kinds.add(got[0][0])  # the first tile's subencoding
    # Raw needs more colours than 3-bit formats have; every other subencoding is met.
    assert {1, 128} <= kinds and any(2 <= k <= 16 for k in kinds) and any(k > 128 for k in kinds)
    assert 0 in kinds or pf.depth < 8


@needs_lib
def test_zrle_tiles_of_a_view_and_of_screens() -> None:
    """A strided view into a frame (what the damage step hands over), a UI-like screen
    and a photo, at full HD: the same bytes."""
    screen = sample_image(1080, 1920, seed=3)
    photo = photo_image(540, 960, seed=4)
    for picture in (screen, screen[100:400, 333:1500], photo, photo[1:, 1:]):
        values = NATIVE.values(picture)
        assert zrle.native_tiles(values, NATIVE) == _reference(values, NATIVE)


@needs_lib
def test_the_encoder_uses_the_library_and_falls_back_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ZRLEEncoder's rectangles are the same with the library and without it."""
    picture = sample_image(150, 300, seed=9)
    with_lib = [r.payload for r in zrle.ZRLEEncoder().encode(picture, NATIVE, EncodeOptions())]
    monkeypatch.setattr(native, "LIB", None)
    assert zrle.native_tiles(NATIVE.values(picture), NATIVE) is None
    without = [r.payload for r in zrle.ZRLEEncoder().encode(picture, NATIVE, EncodeOptions())]
    assert with_lib == without


def test_the_source_builds_without_a_warning(tmp_path: Path) -> None:
    """-Wall -Wextra -Werror: the library builds clean, and the build loads."""
    built = native.build(tmp_path / "_rfbcore.so", extra=("-Werror", "-pedantic"))
    assert built.stat().st_size > 0


def test_a_failed_build_leaves_no_library(tmp_path: Path) -> None:
    """A compiler that fails: an error that says so, and no file at the output."""
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'cc: error: no space left' >&2\nexit 1\n")
    fake.chmod(0o755)
    output = tmp_path / "_rfbcore.so"
    with pytest.raises(RuntimeError, match="no space left"):
        native.build(output, compiler=str(fake))
    assert list(tmp_path.iterdir()) == [fake]


def test_the_build_command_says_what_to_do_without_a_compiler(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "CC": ""}
    done = subprocess.run(
        [sys.executable, "-m", "enkaku.native", "build", "--force", str(tmp_path / "x.so")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no C compiler" in done.stderr and "apt-get install gcc" in done.stderr
    assert not (tmp_path / "x.so").exists()


def _same_cells(values: np.ndarray) -> None:
    """``analyse`` with and without the library: the same statistics and palettes."""
    from enkaku.protocol.rfb.encodings import content

    lib = native.LIB
    try:
        native.LIB = None
        ref = content.analyse(values, smoothness=True)
    finally:
        native.LIB = lib
    got = content.analyse(values, smoothness=True)
    assert (got.ny, got.nx) == (ref.ny, ref.nx)
    np.testing.assert_array_equal(got.solid, ref.solid)
    np.testing.assert_array_equal(got.first, ref.first)
    # Past PHOTO_COLOURS the count is a lower bound in both: only "more" is compared.
    np.testing.assert_array_equal(got.colours, np.minimum(ref.colours, content.PHOTO_COLOURS + 1))
    assert got.smooth is not None and ref.smooth is not None
    np.testing.assert_array_equal(got.smooth, ref.smooth)  # the same divisions, bit for bit
    np.testing.assert_array_equal(got.photo_like(), ref.photo_like())
    for cy in range(ref.ny):
        for cx in range(ref.nx):
            if ref.colours[cy, cx] <= content.PHOTO_COLOURS:
                np.testing.assert_array_equal(got.palette(cy, cx), ref.palette(cy, cx))


@needs_lib
def test_tight_cells_match_the_numpy_analysis() -> None:
    """Cells of every kind (solid, a few colours, up to 256, a sample of more than 128
    colours among fewer than 256, hundreds, photos), whole and at the edges, in
    rectangles of fewer and of at least SAMPLE_MIN_CELLS cells (sampled), and views."""
    rng = np.random.default_rng(21)
    for h, w in ((1, 1), (5, 300), (64, 64), (70, 130), (130, 70), (200, 333), (300, 1030)):
        for picture in _images(rng, h, w):
            _same_cells(NATIVE.values(picture))
        # 200 colours, every pixel its own run: the sample holds more than 128 of them
        dither = rng.integers(0, 200, (h, w)).astype(np.uint32) * 0x10101
        _same_cells(dither)
    screen = sample_image(1080, 1920, seed=5)
    _same_cells(NATIVE.values(screen))
    _same_cells(NATIVE.values(screen)[17:900, 3:1211])  # a strided view
    _same_cells(NATIVE.values(photo_image(300, 500, seed=6)))


@needs_lib
def test_tight_rectangles_are_the_same_with_and_without_the_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whole Tight updates (palette merges, fills, JPEG and gradient choices) of a UI
    screen and a photo, with JPEG on and off: the same bytes."""

    pictures = [sample_image(400, 700, seed=7), photo_image(300, 400, seed=8)]
    for options in (EncodeOptions(), EncodeOptions(jpeg_quality=80)):
        _same_tight_updates(pictures, NATIVE, options, monkeypatch)


@needs_lib
@pytest.mark.parametrize("fmt", ["native", "xrgb32_high", "rgb565_be", "bgr233"])
def test_one_tight_encoder_through_rectangles_growing_and_shrinking(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoder keeps its compiled plan's work space from one rectangle to the next,
    grown for a larger one and reused for a smaller one (``tight.PlanSpace``): a run of
    rectangles of every size through one encoder, with the library, gives the bytes the
    numpy plan gives through one encoder, and each plan through a kept work space is the
    plan of a fresh one."""
    from enkaku.protocol.rfb.encodings import tight

    pf = FORMATS[fmt]
    rng = np.random.default_rng(37)
    # A checkerboard of flat and noisy cells: a region for every cell.
    checks = rng.integers(0, 256, (577, 449, 4), dtype=np.uint8)
    for cy in range(10):
        for cx in range(8):
            if (cy + cx) % 2 == 0:
                checks[cy * 64 : cy * 64 + 64, cx * 64 : cx * 64 + 64] = (cy * 8 + cx) * 3
    pictures = [sample_image(200, 333, seed=3), *_images(rng, 7, 9)[:6]]
    pictures += [sample_image(128, 2048, seed=4), *_images(rng, 19, 30)[6:12]]
    # More cells (80) in fewer pixels than the 128x2048 before (64 cells): the cells'
    # buffers grow while the pixels' does not.
    pictures += [checks, photo_image(140, 300, seed=5), sample_image(64, 64, seed=6)]
    pictures += [sample_image(129, 2200, seed=7), *_images(rng, 65, 65)[-3:]]

    options = EncodeOptions(jpeg_quality=70)
    _same_tight_updates(pictures, pf, options, monkeypatch, one_encoder=True)
    lib, space = native.LIB, tight.PlanSpace()
    assert lib is not None
    for picture in pictures:
        values = NATIVE.values(picture)
        kept = tight.plan_native(lib, values, True, True, space)
        fresh = tight.plan_native(lib, values, True, True)
        assert [(r.kind, r.cy, r.cx, r.ch, r.cw, r.colour, r.at) for r in kept] == [
            (r.kind, r.cy, r.cx, r.ch, r.cw, r.colour, r.at) for r in fresh
        ]
        for k, f in zip(kept, fresh, strict=True):
            if f.palette is not None:
                assert k.palette is not None and k.indices is not None and f.indices is not None
                assert k.palette.tobytes() == f.palette.tobytes()
                assert k.indices.tobytes() == f.indices.tobytes()


def _same_tight_updates(pictures, pf, options, monkeypatch, *, one_encoder=False) -> None:  # type: ignore[no-untyped-def]
    """Each picture's whole Tight update, with the library and without: the same.
    ``one_encoder``: one encoder for all the pictures (its work space and zlib streams
    carried from one to the next), else a fresh one for each."""
    from enkaku.protocol.rfb.encodings.tight import TightEncoder

    def encoded() -> list[list[tuple[int, int, int, int, bytes]]]:
        shared = TightEncoder()
        return [
            [
                (r.x, r.y, r.w, r.h, r.payload)
                for r in (shared if one_encoder else TightEncoder()).encode(p, pf, options)
            ]
            for p in pictures
        ]

    with_lib = encoded()
    with monkeypatch.context() as m:
        m.setattr(native, "LIB", None)
        without = encoded()
    assert with_lib == without


def _plans_agree(values: np.ndarray, jpeg: bool, gradient: bool) -> None:
    """``tight.plan`` (numpy) and ``tight.plan_native``: the same regions, palettes and
    the indices the numpy encoder would send for each palette region."""
    from enkaku.protocol.rfb.encodings import tight

    lib = native.LIB
    assert lib is not None
    try:
        native.LIB = None
        ref = tight.plan(values, jpeg, gradient)
    finally:
        native.LIB = lib
    got = tight.plan_native(lib, values, jpeg, gradient)
    assert [(r.kind, r.cy, r.cx, r.ch, r.cw) for r in got] == [
        (r.kind, r.cy, r.cx, r.ch, r.cw) for r in ref
    ]
    h, w = values.shape
    for g, r in zip(got, ref, strict=True):
        if r.kind == tight.K_FILL:
            assert g.colour == r.colour
        if r.kind != tight.K_PALETTE:
            continue
        assert r.palette is not None and g.palette is not None and g.indices is not None
        np.testing.assert_array_equal(g.palette, r.palette)
        y, x = r.cy * tight.CELL, r.cx * tight.CELL
        block = values[y : y + r.ch * tight.CELL, x : x + r.cw * tight.CELL]
        indices = tight.palette_indices(block, r.palette)
        if r.palette.size == 2:
            indices = np.packbits(indices, axis=1)
        assert g.indices.tobytes() == indices.tobytes()


@needs_lib
def test_tight_plans_match_the_numpy_plan() -> None:
    """Pictures of every colour count (palettes that merge across and down, two-colour
    runs that must stay two, runs past 32 cells and past JPEG's rectangle size), UI
    screens, photos and views, with JPEG and the gradient filter each on and off."""
    rng = np.random.default_rng(23)
    pictures = []
    for h, w in ((1, 1), (7, 9), (64, 64), (70, 130), (130, 70), (200, 333), (129, 2200)):
        pictures += [NATIVE.values(p) for p in _images(rng, h, w)]
    # Two colours in one cell, two others in the next: merged they would need 8 bits.
    mono = np.zeros((128, 256), dtype=np.uint32)
    mono[::2, :128] = 0xFFFFFF
    mono[::3, 128:] = 0x00FF00
    mono[1::3, 128:] = 0x0000FF
    pictures.append(mono)
    # Cells of a few colours each whose union passes 256 across and down.
    blocks = rng.integers(0, 100, (4, 8, 60)).astype(np.uint32)
    blocks += (np.arange(4 * 8).reshape(4, 8, 1) * 100).astype(np.uint32)
    tiles = blocks[:, :, rng.integers(0, 60, (64, 64))]
    pictures.append(tiles.transpose(0, 2, 1, 3).reshape(256, 512))
    screen = NATIVE.values(sample_image(1080, 1920, seed=9))
    pictures += [screen, screen[17:900, 3:1211], NATIVE.values(photo_image(700, 1200, seed=4))]
    photo = NATIVE.values(photo_image(1080, 1920, seed=3))
    pictures.append(photo)  # JPEG runs longer than JPEG_MAX_PIXELS: cut down
    for values in pictures:
        for jpeg in (False, True):
            for gradient in (False, True):
                _plans_agree(values, jpeg, gradient)


@needs_lib
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_tight_updates_match_in_every_format(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole Tight updates in every pixel format, of one cell and of many, JPEG on and
    off: the same bytes with and without the library."""

    pf = FORMATS[fmt]
    rng = np.random.default_rng(31)
    pictures = [sample_image(300, 500, seed=2), photo_image(200, 300, seed=1)]
    pictures += _images(rng, 40, 50) + _images(rng, 90, 150)
    for options in (EncodeOptions(), EncodeOptions(jpeg_quality=60, compress_level=6)):
        _same_tight_updates(pictures, pf, options, monkeypatch)


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("int enkaku_rfbcore_version(void) { return 1; }", "is version 1"),
        ("int enkaku_zrle_tiles(void) { return 0; }", "undefined symbol"),
    ],
)
def test_a_library_of_another_version_is_not_used(
    source: str,
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A build older than the code (a checkout updated since) or another version: the
    numpy encoders run, and the log says how to rebuild; importing never fails."""
    c = tmp_path / "old.c"
    c.write_text(source + "\n")
    monkeypatch.setattr(native, "SOURCE", c)
    old = native.build(tmp_path / "_rfbcore.so")
    with caplog.at_level("WARNING", logger="enkaku.native"):
        assert native.load(old) is None
    assert says in caplog.text and "python -m enkaku.native build" in caplog.text
