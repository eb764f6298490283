"""Content-aware encoding: which region gets fill, palette, copy or JPEG, and the
vectorised ZRLE tiles, decoded by the independent decoder in decoders.py."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from enkaku.protocol.rfb import Encoding, PixelFormat, Rect
from enkaku.protocol.rfb.encodings import EncodeOptions, content, tight
from enkaku.protocol.rfb.encodings.content import CELL, _cell_blocks, analyse
from enkaku.protocol.rfb.encodings.deflate import WINDOW, DeflateStream
from enkaku.protocol.rfb.encodings.tight import JPEG_MAX_PIXELS, MAX_WIDTH, TightEncoder
from enkaku.protocol.rfb.encodings.zrle import ZRLEEncoder, encode_tile, run_length_bytes
from enkaku.protocol.rfb.pixelformat import NATIVE, SMALL_TPIXELS
from tests.protocol.rfb.decoders import photo_image, sample_image, update_request
from tests.protocol.rfb.test_encodings import FORMATS, served

CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")  # fonts-noto-cjk

LINES = [
    "2026-11-29 17:12:38 情報 サーバーに接続しました。セッション番号 4821、ユーザー 田中太郎",
    "警告 ディスクの空き容量が少なくなっています（残り 12%）。ログを確認してください",
    "エラー 設定ファイルを読み込めませんでした: 権限がありません 〒100-0001 東京都千代田区",
]


def bgrx_of(rgb: np.ndarray) -> np.ndarray:
    out = np.zeros((*rgb.shape[:2], 4), dtype=np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = rgb[..., 2], rgb[..., 1], rgb[..., 0]
    out[..., 3] = 0x5A  # garbage X byte
    return out


def japanese_text(w: int, h: int, fg: tuple[int, int, int], bg: tuple[int, int, int], size: int):
    """Antialiased Japanese text, as a terminal or a browser draws it (BGRX)."""
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(CJK_FONT), size, index=0)
    for i, y in enumerate(range(2, h - size, size + 4)):
        draw.text((3, y), LINES[i % len(LINES)], font=font, fill=fg)
    return bgrx_of(np.asarray(img))


def tight_served(pf: PixelFormat, w: int, h: int, level: int | None):
    codes: tuple[int, ...] = (Encoding.TIGHT,)
    if level is not None:
        codes += (Encoding.JPEG_QUALITY_LOW + level,)
    return served(pf, codes, w, h)


@pytest.mark.parametrize(
    ("fg", "bg", "size"),
    [((20, 20, 20), (255, 255, 255), 15), ((250, 230, 120), (30, 40, 90), 13),
     ((200, 30, 30), (235, 240, 228), 22)],
)  # fmt: skip
def test_japanese_antialiased_text_is_lossless_at_the_lowest_quality(fg, bg, size) -> None:
    w, h = 700, 200
    img = japanese_text(w, h, fg, bg, size)
    # Enough blended shades that a colour count alone (the old rule: > 64 colours in a
    # tile meant JPEG) would have sent it as JPEG.
    assert int(analyse(NATIVE.values(img), smoothness=False).colours.max()) > 64
    server, dec = tight_served(NATIVE, w, h, 0)
    server.receive_data(update_request(False, 0, 0, w, h))
    server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
    dec.feed(server.data_to_send())
    assert dec.jpeg_rects == 0
    np.testing.assert_array_equal(dec.fb, NATIVE.values(img))


def test_a_photo_goes_jpeg_and_the_ui_around_it_stays_exact() -> None:
    w, h = 640, 384
    img = japanese_text(w, h, (0, 0, 0), (246, 246, 246), 14)
    px, py, pw, ph = 128, 64, 256, 192  # on the cell grid
    img[py : py + ph, px : px + pw] = photo_image(ph, pw, seed=4)
    server, dec = tight_served(NATIVE, w, h, 5)
    server.receive_data(update_request(False, 0, 0, w, h))
    server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
    dec.feed(server.data_to_send())
    lossy = np.zeros((h, w), dtype=bool)
    for x, y, rw, rh in dec.jpeg_areas:
        lossy[y : y + rh, x : x + rw] = True
    expected = np.zeros((h, w), dtype=bool)
    expected[py : py + ph, px : px + pw] = True
    np.testing.assert_array_equal(lossy, expected)  # the photo, all of it, nothing else
    want = NATIVE.values(img)
    np.testing.assert_array_equal(dec.fb[~lossy], want[~lossy])
    for shift in (0, 8, 16):
        got, ref = (dec.fb >> shift) & 0xFF, (want >> shift) & 0xFF
        assert np.abs(got[lossy].astype(int) - ref[lossy].astype(int)).mean() < 8
    # Lossless (no quality level): the same screen, exact, no JPEG.
    server, dec = tight_served(NATIVE, w, h, None)
    server.receive_data(update_request(False, 0, 0, w, h))
    server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
    dec.feed(server.data_to_send())
    assert dec.jpeg_rects == 0
    np.testing.assert_array_equal(dec.fb, want)


def test_a_photo_off_the_grid_is_jpeg_and_the_rest_exact() -> None:
    w, h = 300, 200
    dots = np.random.default_rng(3).random((h, w, 1)) < 0.3  # two-colour pixel art
    img = np.where(dots, np.uint8(0), np.uint8(255)).repeat(4, axis=2)
    img[37:150, 51:230] = photo_image(113, 179, seed=8)
    server, dec = tight_served(FORMATS["rgbx32"], w, h, 9)
    server.receive_data(update_request(False, 0, 0, w, h))
    server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
    dec.feed(server.data_to_send())
    lossy = np.zeros((h, w), dtype=bool)
    for x, y, rw, rh in dec.jpeg_areas:
        lossy[y : y + rh, x : x + rw] = True
    assert lossy[64:128, 64:192].all()  # the cells wholly inside the photo
    want = FORMATS["rgbx32"].values(img)
    np.testing.assert_array_equal(dec.fb[~lossy], want[~lossy])


@pytest.mark.parametrize("fmt", ["native", "rgb565", "bgr233"])
def test_regions_tile_the_rectangle_once(fmt: str) -> None:
    """Every pixel in exactly one rectangle, none wider than 2048, JPEG ones bounded."""
    pf = FORMATS[fmt]
    h, w = 700, 2200
    img = np.zeros((h, w, 4), dtype=np.uint8)
    img[:] = (30, 60, 90, 0)
    img[100:400, 100:1500] = photo_image(300, 1400, seed=2)
    img[450:650, 0:2200] = sample_image(200, 2200, seed=5)
    img[600:700, 1000:2200] = japanese_text(1200, 100, (0, 0, 0), (255, 255, 255), 16)
    rects = TightEncoder().encode(img, pf, EncodeOptions(jpeg_quality=80))
    cover = np.zeros((h, w), dtype=int)
    for r in rects:
        assert r.w <= MAX_WIDTH
        assert r.payload[0] != 0x90 or r.w * r.h <= JPEG_MAX_PIXELS
        assert r.lossy == (r.payload[0] == 0x90)
        cover[r.y : r.y + r.h, r.x : r.x + r.w] += 1
    assert (cover == 1).all()
    assert any(r.lossy for r in rects) == (pf.bits_per_pixel != 8)
    assert sum(1 for r in rects if r.payload[0] == 0x80) >= 1  # the flat background: fill


@pytest.mark.parametrize(("w", "h", "parallel"), [(1920, 1080, False), (2048, 2100, True)])
def test_full_screen_photo_is_jpeg_and_decodes(
    w: int, h: int, parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full HD goes to libjpeg-turbo piece after piece; past PARALLEL_MIN_PIXELS (4K
    class) the pieces go to the thread pool. Both decode to the same picture."""
    pools: list[object] = []
    real_pool = tight._pool

    def counted() -> object:
        pools.append(real_pool())
        return pools[-1]

    monkeypatch.setattr(tight, "_pool", counted)
    img = photo_image(h, w, seed=11)
    server, dec = tight_served(NATIVE, w, h, 8)
    for _ in range(2):
        server.receive_data(update_request(False, 0, 0, w, h))
        server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
        dec.feed(server.data_to_send())
    assert dec.jpeg_rects >= 2 * (w * h // JPEG_MAX_PIXELS)
    assert bool(pools) == parallel == (w * h > tight.PARALLEL_MIN_PIXELS)
    areas = dec.jpeg_areas[len(dec.jpeg_areas) // 2 :]
    assert sum(rw * rh for _, _, rw, rh in areas) == w * h
    want = NATIVE.values(img)
    for shift in (0, 8, 16):
        diff = ((dec.fb >> shift) & 0xFF).astype(int) - ((want >> shift) & 0xFF).astype(int)
        assert np.abs(diff).mean() < 6


@pytest.mark.parametrize(
    ("subsampling", "grayscale"), [(0, False), (1, False), (2, False), (2, True)]
)
def test_jpeg_of_a_strided_bgrx_view_is_the_picture_with_either_library(
    subsampling: int, grayscale: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """simplejpeg reads a window of the frame (rows strided, X byte garbage) as it is;
    Pillow, the fallback, gives the same picture within JPEG's rounding."""
    assert tight.simplejpeg is not None  # a dependency (pyproject.toml)
    frame = photo_image(300, 500, seed=3)
    frame[..., 3] = 0x5A  # garbage X byte
    view = frame[17:257, 33:433]  # not contiguous
    options = EncodeOptions(jpeg_quality=90, jpeg_subsampling=subsampling, jpeg_grayscale=grayscale)
    decoded = []
    for library in (tight.simplejpeg, None):
        monkeypatch.setattr(tight, "simplejpeg", library)
        image = Image.open(io.BytesIO(tight.jpeg_bytes(view, options)))
        assert image.size == (400, 240)
        assert image.mode == ("L" if grayscale else "RGB")
        decoded.append(np.asarray(image.convert("RGB"), dtype=int))
    rgb = view[..., 2::-1].astype(int)
    if grayscale:
        rgb = (rgb @ np.array([299, 587, 114]) // 1000)[..., None].repeat(3, axis=2)
    for picture in decoded:
        assert np.abs(picture - rgb).mean() < 6
    assert np.abs(decoded[0] - decoded[1]).mean() < 1.5


@pytest.mark.parametrize(("h", "w"), [(1080, 1920), (130, 200), (64, 65), (200, 64), (3, 300)])
def test_cells_are_gathered_as_from_the_edge_padded_rectangle(h: int, w: int) -> None:
    """``_cell_blocks`` gives every cell, edge cells included, as padding the whole
    rectangle would (which ``analyse`` no longer does for large rectangles)."""
    values = np.random.default_rng(h * w).integers(0, 1 << 24, (h, w)).astype(np.uint32)
    ny, nx = -(-h // CELL), -(-w // CELL)
    padded = np.pad(values, ((0, ny * CELL - h), (0, nx * CELL - w)), "edge")
    every = padded.reshape(ny, CELL, nx, CELL).transpose(0, 2, 1, 3).reshape(ny * nx, -1)
    index = np.random.default_rng(1).permutation(ny * nx)[: max(1, ny * nx // 2)]
    assert np.array_equal(_cell_blocks(values, index, nx), every[index])
    assert np.array_equal(_cell_blocks(values, np.arange(ny * nx), nx), every)
    assert _cell_blocks(values, np.arange(0), nx).shape == (0, CELL * CELL)


@pytest.mark.parametrize(("h", "w"), [(30, 1280), (20, 300), (84, 1100), (150, 700), (64, 1024)])
def test_cells_of_a_short_last_band_count_and_list_their_colours_exactly(h: int, w: int) -> None:
    """Cells cut short by the rectangle's bottom edge (a scroll's exposed strip) are
    sorted on their real rows only; their counts and palettes are still each cell's."""
    rng = np.random.default_rng(h + w)
    values = rng.integers(0, 40, (h, w)).astype(np.uint32) * 0x010101
    values[:, : w // 3] = rng.integers(0, 1 << 24, (h, w // 3))  # many colours
    values[:, w // 2 : w // 2 + 64] = 7  # one colour
    cells = analyse(values, smoothness=False)
    for cy in range(cells.ny):
        for cx in range(cells.nx):
            cell = values[cy * CELL : (cy + 1) * CELL, cx * CELL : (cx + 1) * CELL]
            want = np.unique(cell)
            if want.size <= 256:
                assert cells.colours[cy, cx] == want.size
                assert np.array_equal(cells.palette(cy, cx), want)
            else:
                assert cells.colours[cy, cx] > 256


@pytest.mark.parametrize("jpeg", [True, False])
def test_a_rectangle_of_one_cell_is_encoded_as_the_cell_planner_would(jpeg: bool) -> None:
    """Rectangles of at most one cell skip ``plan`` when they are one colour or a
    palette JPEG could not take: the kind ``plan`` gives the same rectangle, decoded
    exactly; grainy cells of more colours still go JPEG when the client takes it."""
    rng = np.random.default_rng(7)
    options = EncodeOptions(jpeg_quality=80 if jpeg else None)
    pf = NATIVE
    for k in (1, 2, 17, 64, 65, 200, 256, 300):
        h, w = int(rng.integers(1, CELL + 1)), int(rng.integers(1, CELL + 1))
        colours = rng.integers(0, 1 << 24, k).astype(np.uint32)
        values = colours[rng.integers(0, k, (h, w))]
        frame = np.zeros((h, w, 4), dtype=np.uint8)
        for i, shift in enumerate((0, 8, 16)):
            frame[..., i] = (values >> shift) & 0xFF
        alone = TightEncoder().encode(frame, pf, options)
        planned = tight.plan(pf.values(frame), jpeg, pf.tpixel_is_rgb)  # the long way
        assert len(alone) == 1 and (alone[0].w, alone[0].h) == (w, h)
        kind = planned[0].kind
        first = alone[0].payload[0]
        if kind == tight.K_FILL:
            assert first == tight.FILL
        elif kind == tight.K_PHOTO:
            assert jpeg and first == tight.JPEG and alone[0].lossy
        elif kind == tight.K_PALETTE:
            assert first & tight.READ_FILTER and alone[0].payload[1] == tight.FILTER_PALETTE
        server, dec = tight_served(pf, w, h, 8 if jpeg else None)
        server.receive_data(update_request(False, 0, 0, w, h))
        server.send_framebuffer_update(frame, [Rect(0, 0, w, h)])
        dec.feed(server.data_to_send())
        if not alone[0].lossy:
            assert np.array_equal(dec.fb, pf.values(frame))


def test_smoothness_and_colours_per_cell() -> None:
    values = np.zeros((130, 70), dtype=np.uint32)
    values[:64, :64] = np.arange(64 * 64).reshape(64, 64) * 7919 % 100003  # all distinct
    values[64:128, :64] = np.arange(64)[None, :] // 8  # 8 vertical stripes
    values[129, 64:] = 5  # a sliver cell of two colours
    cells = analyse(values, smoothness=True)
    assert (cells.ny, cells.nx) == (3, 2)
    # Exact up to PHOTO_COLOURS in a small rectangle; past it a lower bound (the compiled
    # core stops counting at 257, numpy counts all 4096).
    assert cells.colours[0, 0] > 256
    assert cells.colours.tolist()[1:] == [[8, 1], [1, 2]] and cells.colours[0, 1] == 1
    big = analyse(np.tile(values[:64, :64], (5, 5)), smoothness=False)  # sampled first
    assert (big.colours > 256).all() and not big.solid.any()
    assert cells.solid.tolist() == [[False, True], [False, True], [True, False]]
    assert cells.smooth is not None
    assert cells.smooth[0, 0] < 0.01 and cells.smooth[1, 0] > 0.85
    assert cells.smooth[0, 1] == pytest.approx(1 - 1 / (16 * 6))  # one pixel differs
    assert cells.palette(1, 0).tolist() == list(range(8))
    assert cells.photo_like().tolist() == [[True, False], [False, False], [False, False]]


@pytest.mark.parametrize(
    ("h", "w", "down", "across"),
    [(1, 1, 63, 63), (170, 480, 22, 32), (64, 7, 0, 57), (5, 64, 59, 0), (3, 3, 0, 0)],
)
def test_edge_pad_is_numpys_edge_pad(h: int, w: int, down: int, across: int) -> None:
    from enkaku.protocol.rfb.encodings.content import _edge_pad

    values = np.random.default_rng(h * w).integers(0, 1 << 24, (h, w)).astype(np.uint32)
    expected = np.pad(values, ((0, down), (0, across)), "edge")
    np.testing.assert_array_equal(_edge_pad(values, down, across), expected)


# -- ZRLE --------------------------------------------------------------------------


def reference_subencodings(values: np.ndarray, cpixels: np.ndarray) -> dict[str, bytes]:
    """Every applicable ZRLE subencoding of one tile, written the plain way."""
    th, tw = values.shape
    flat = values.ravel()
    cp = cpixels.reshape(flat.size, -1)
    palette = sorted(set(flat.tolist()))
    out = {"raw": b"\x00" + cp.tobytes()}
    runs: list[tuple[int, int]] = []
    for i, v in enumerate(flat.tolist()):
        if runs and flat[runs[-1][0]] == v:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    out["rle"] = b"\x80" + b"".join(cp[s].tobytes() + run_length_bytes(n) for s, n in runs)
    where = {v: palette.index(v) for v in palette}
    pal = b"".join(cp[flat.tolist().index(v)].tobytes() for v in palette)
    if len(palette) == 1:
        out["solid"] = b"\x01" + cp[0].tobytes()
    if len(palette) <= 127:
        body = b"".join(
            bytes([where[int(flat[s])]]) if n == 1
            else bytes([where[int(flat[s])] | 128]) + run_length_bytes(n)
            for s, n in runs
        )  # fmt: skip
        out["prle"] = bytes([128 + len(palette)]) + pal + body
    if 2 <= len(palette) <= 16:
        bits = 1 if len(palette) == 2 else 2 if len(palette) <= 4 else 4
        rows = b""
        for row in values.tolist():
            acc = "".join(format(where[v], f"0{bits}b") for v in row)
            acc += "0" * (-len(acc) % 8)
            rows += int(acc, 2).to_bytes(len(acc) // 8, "big") if acc else b""
        out["packed"] = bytes([len(palette)]) + pal + rows
    return out


def tile_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    cases = [
        np.full((64, 64), 0x123456),
        rng.integers(0, 2, (64, 64)) * 0xFFFFFF,  # packed 1 bit
        rng.integers(0, 4, (33, 17)) * 0x010101,  # packed 2 bits, odd size
        rng.integers(0, 13, (64, 64)) * 0x0A0B0C,  # packed 4 bits
        np.repeat(rng.integers(0, 50, (64, 8)), 8, axis=1) * 0x030201,  # palette RLE
        np.repeat(rng.integers(0, 1 << 24, (64, 4)), 16, axis=1),  # plain RLE
        rng.integers(0, 1 << 24, (64, 64)),  # raw
        np.where(np.arange(64 * 64).reshape(64, 64) < 3000, 0x111111, 0x222222),  # long runs
        rng.integers(0, 1 << 24, (1, 5)),
        np.arange(64 * 64).reshape(64, 64) // 64 % 200 * 0x010000,  # 200 colours, rows
        # Many runs: counted on a sample first (zrle.SAMPLE_STEP). 120 colours: the
        # sample has fewer than 128, the tile is sorted and goes palette RLE; 150: the
        # sample has more, no sort, raw; 400 colours in runs of one or two: plain RLE.
        rng.integers(0, 120, (64, 64)) * 0x010203,
        rng.integers(0, 150, (64, 64)) * 0x010203,
        np.repeat(rng.integers(0, 400, 3000), rng.integers(1, 3, 3000))[: 64 * 64].reshape(64, 64)
        * 0x010101,
    ]
    return [c.astype(np.uint32) for c in cases]


@pytest.mark.parametrize("case", range(13))
@pytest.mark.parametrize("fmt", ["native", "bgr32_be", "rgb565", "bgr233"])
def test_zrle_tile_is_the_shortest_subencoding(case: int, fmt: str) -> None:
    pf = FORMATS[fmt]
    raw = tile_cases()[case]
    frame = np.zeros((*raw.shape, 4), dtype=np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = raw & 0xFF, raw >> 8 & 0xFF, raw >> 16 & 0xFF
    values = pf.values(frame)
    cpixels = pf.pack_cpixels(values)
    ours = encode_tile(values, cpixels, pf)
    candidates = reference_subencodings(values, cpixels)
    assert len(ours) == min(len(v) for v in candidates.values())
    assert ours in candidates.values()


@pytest.mark.parametrize("fmt", ["native", "rgb565"])
@pytest.mark.parametrize(
    "h,w",
    [
        (64 * 2 + 30, 64 * 5 + 17),  # whole bands, then the short one: two passes
        (170, 480),  # a dialog: one pass, edge tiles padded
        (64 * 10 + 1, 64 * 10 + 1),  # one-pixel edges: a pass per size of tile
        (20, 100),  # one short band
        (300, 17),  # one narrow column
    ],
)
def test_zrle_rectangle_is_its_tiles_in_row_order(fmt: str, h: int, w: int) -> None:
    """A rectangle of several bands with narrower and shorter edge tiles, mixing every
    subencoding (palette RLE tiles of different palettes side by side): its stream is
    each tile on its own, as the per-tile test above checks them, in row order, however
    the encoder groups its tiles (``zrle._encode_rect``)."""
    pf = FORMATS[fmt]
    cases = [c for c in tile_cases() if c.shape == (64, 64)]
    raw = np.zeros((h, w), dtype=np.uint32)
    n = 0
    for y in range(0, h, 64):
        for x in range(0, w, 64):
            tile = cases[n % len(cases)]
            raw[y : y + 64, x : x + 64] = tile[: min(64, h - y), : min(64, w - x)]
            n += 1
    frame = np.zeros((h, w, 4), dtype=np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = raw & 0xFF, raw >> 8 & 0xFF, raw >> 16 & 0xFF
    values = pf.values(frame)
    (rect,) = ZRLEEncoder().encode(frame, pf, EncodeOptions())
    stream = zlib.decompressobj().decompress(rect.payload[4:])
    expected = b""
    for y in range(0, h, 64):
        for x in range(0, w, 64):
            tile = values[y : y + 64, x : x + 64]
            expected += encode_tile(tile, pf.pack_cpixels(tile), pf)
    assert stream == expected


def test_zrle_stream_switches_strategy_and_stays_one_stream() -> None:
    w, h = 200, 130
    server, dec = served(NATIVE, (Encoding.ZRLE,), w, h)
    for img in (photo_image(h, w, 1), japanese_text(w, h, (0, 0, 0), (255, 255, 255), 14),
                photo_image(h, w, 2), sample_image(h, w, 4)):  # fmt: skip
        server.receive_data(update_request(False, 0, 0, w, h))
        server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
        dec.feed(server.data_to_send())  # one inflater for the whole connection
        np.testing.assert_array_equal(dec.fb, NATIVE.values(img))


def test_zrle_stream_compresses_photo_grain_and_text() -> None:
    enc = ZRLEEncoder()
    inflater = zlib.decompressobj()
    sizes = []
    for img in (photo_image(128, 128, 1), japanese_text(128, 128, (0, 0, 0), (255,) * 3, 14)):
        (r,) = enc.encode(img, NATIVE, EncodeOptions(compress_level=6))
        (n,) = struct.unpack_from("!I", r.payload)
        data = inflater.decompress(r.payload[4 : 4 + n])
        sizes.append((n, len(data)))
    (photo_z, photo_raw), (text_z, text_raw) = sizes
    assert photo_z < photo_raw  # entropy coding still saves on grain
    assert text_z * 3 < text_raw  # LZ77 on (its repeated glyph runs)


@pytest.mark.parametrize("fast", [True, False])
def test_deflate_stream_changes_level_and_strategy_without_a_new_header(fast: bool) -> None:
    stream = DeflateStream(fast=fast)
    inflater = zlib.decompressobj()
    chunk = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    outputs = []
    for level, strategy in ((2, 0), (9, 0), (1, zlib.Z_HUFFMAN_ONLY), (6, zlib.Z_RLE), (6, 0)):
        out = stream.compress(chunk, level, strategy)
        outputs.append(out)
        assert inflater.decompress(out) == chunk
    assert outputs[0][0] == 0x78 and int.from_bytes(outputs[0][:2]) % 31 == 0  # zlib header
    assert all(o[0] != 0x78 for o in outputs[1:])  # ... at the start only
    # Random bytes: only back-references to the stream's history make them small.
    assert len(outputs[1]) < 500 and len(outputs[4]) < 500
    if not fast:
        assert len(outputs[2]) > 4000  # Huffman only: no back-references


def test_deflate_stream_history_is_its_last_window_of_input() -> None:
    """The window a new compressor is primed with is the stream's last 32 KiB of input,
    whatever the sizes of the pieces it came in (kept as pieces, joined when needed),
    and a stream that changes parameters after many small pieces still inflates."""
    rng = np.random.default_rng(7)
    stream, inflater = DeflateStream(), zlib.decompressobj()
    fed = b""
    for i in range(400):
        size = int(rng.choice([0, 1, 5, 300, 4000, 20000, 40000]))
        data = rng.integers(0, 4, size, dtype=np.uint8).tobytes()  # compressible
        # Alternate the strategy now and then: each change primes a new compressor.
        strategy = zlib.Z_DEFAULT_STRATEGY if i % 7 else zlib.Z_HUFFMAN_ONLY
        assert inflater.decompress(stream.compress(data, 2, strategy)) == data
        fed += data
        assert stream.history() == fed[-WINDOW:]
    assert DeflateStream().history() == b""


def test_small_pieces_change_compressor_mid_stream_and_come_out_smaller() -> None:
    """ZRLE's small pieces go through zlib's lazy matching and large ones through ISA-L,
    on one stream the client inflates without a new header; the small ones come out
    smaller than ISA-L's best level makes them."""
    img = japanese_text(400, 200, (0, 0, 0), (255, 255, 255), 14)
    rows = [img[y : y + 16].tobytes() for y in range(0, 192, 16)]  # 25.6 KB each
    mixed, inflater = DeflateStream(), zlib.decompressobj()
    for i, row in enumerate(rows):
        data = img.tobytes() if i % 4 == 3 else row  # 320 KB: ISA-L
        assert inflater.decompress(mixed.compress(data, 2)) == data
    small, isal_only = DeflateStream(), DeflateStream(small=0)
    small_bytes = sum(len(small.compress(row, 2)) for row in rows)
    isal_bytes = sum(len(isal_only.compress(row, 9)) for row in rows)  # ISA-L's level 3
    assert small_bytes < 0.9 * isal_bytes  # 0.82 when measured


def test_the_fast_backend_is_there() -> None:
    """ISA-L is a dependency: without it every stream falls back to slow zlib."""
    assert DeflateStream().backend == "isal"


def test_cells_on_a_grid_of_the_rect_not_the_screen() -> None:
    """ZRLE tiles and Tight cells start at the rectangle's corner: an update of a sub
    rectangle is encoded on its own grid and lands at the right place."""
    w, h = 300, 200
    server, dec = tight_served(NATIVE, w, h, 3)
    img = japanese_text(w, h, (0, 0, 0), (255, 255, 255), 12)
    server.receive_data(update_request(False, 0, 0, w, h))
    server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
    img2 = img.copy()
    img2[13 : 13 + 150, 29 : 29 + 140] = photo_image(150, 140, 6)
    server.receive_data(update_request(True, 0, 0, w, h))
    server.send_framebuffer_update(img2, [Rect(29, 13, 140, 150)])
    dec.feed(server.data_to_send())
    assert dec.jpeg_areas
    for x, y, rw, rh in dec.jpeg_areas:
        assert 29 <= x <= x + rw <= 169 and 13 <= y <= y + rh <= 163
    outside = np.ones((h, w), dtype=bool)
    outside[13:163, 29:169] = False
    np.testing.assert_array_equal(dec.fb[outside], NATIVE.values(img2)[outside])
    assert CELL == 64


@pytest.mark.parametrize("fmt", ["native", "bgr32_be", "rgb565"])
def test_lossless_photo_takes_the_gradient_filter_on_888(fmt: str) -> None:
    pf = FORMATS[fmt]
    w, h = 150, 70
    img = photo_image(h, w, seed=9)
    img[:, 100:] = (10, 200, 30, 0)  # and a flat part: fill
    server, dec = tight_served(pf, w, h, None)
    server.receive_data(update_request(False, 0, 0, w, h))
    server.send_framebuffer_update(img, [Rect(0, 0, w, h)])
    data = server.data_to_send()
    dec.feed(data)
    np.testing.assert_array_equal(dec.fb, pf.values(img))
    assert dec.jpeg_rects == 0
    if pf.tpixel_is_rgb:
        assert dec.gradient_rects >= 1
        copy = zlib.compress(pf.pack_tpixels(pf.values(img[:, :100])).tobytes(), 2)
        assert len(data) < 0.9 * len(copy)  # it pays: smaller than the copy filter
    else:
        assert dec.gradient_rects == 0


@pytest.mark.parametrize("encoder", ["tight", "tight-jpeg", "zrle", "raw"])
@pytest.mark.parametrize(("h", "w"), [(1080, 1920), (300, 500), (40, 50), (64, 700)])
def test_a_frame_with_its_x_bytes_clear_encodes_the_same_from_a_view(
    encoder: str, h: int, w: int
) -> None:
    """``EncodeOptions.x_clear`` (the agent's kept frames): the encoders read the
    native pixel values as a read-only view of the frame instead of a masked copy.
    The bytes are the same as from the copy, and nothing writes into the frame (a
    write into the view would raise)."""
    from enkaku.protocol.rfb.encodings.raw import RawEncoder

    frame = np.concatenate([sample_image(h, w // 2, seed=3), photo_image(h, w - w // 2)], axis=1)
    frame[..., 3] = 0
    kept = frame.copy()
    quality = 60 if encoder == "tight-jpeg" else None
    results = []
    for x_clear in (False, True):
        options = EncodeOptions(compress_level=6, jpeg_quality=quality, x_clear=x_clear)
        enc = {"zrle": ZRLEEncoder, "raw": RawEncoder}.get(encoder, TightEncoder)()
        results.append(
            [(r.x, r.y, r.w, r.h, r.payload) for r in enc.encode(frame, NATIVE, options)]
        )
    assert results[0] == results[1]
    np.testing.assert_array_equal(frame, kept)
    view = NATIVE.values(frame, x_clear=True)
    assert not view.flags.writeable and np.shares_memory(view, frame)


def test_palette_runs_grow_down_while_the_indices_keep_their_width() -> None:
    """Rows of cells with few colours become one palette rectangle down the rows (one
    palette, header and encoder call instead of one a row of cells), unless that would
    widen the indices: a two-colour run stays apart from one of other colours."""
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 12, (192, 256)).astype(np.uint32) * 0x0A0A0A  # 12 shades
    regions = tight.plan(grey, jpeg=False)
    assert [(r.kind, r.cy, r.cx, r.ch, r.cw) for r in regions] == [(tight.K_PALETTE, 0, 0, 3, 4)]
    assert regions[0].palette is not None and regions[0].palette.size == 12

    mono = np.where(rng.random((192, 256)) < 0.3, 0x000000, 0xFFFFFF).astype(np.uint32)
    mono[128:] = np.where(mono[128:] == 0, 0x0000FF, 0x00FF00)  # other two colours below
    regions = tight.plan(mono, jpeg=False)
    assert [(r.cy, r.ch, r.palette.size) for r in regions if r.palette is not None] == [
        (0, 2, 2),
        (2, 1, 2),
    ]
    options = EncodeOptions(compress_level=6)
    for values in (grey, mono):
        frame = np.zeros((192, 256, 4), dtype=np.uint8)
        frame.view("<u4")[..., 0] = values
        rects = TightEncoder().encode(frame, NATIVE, options)
        assert sum(r.w * r.h for r in rects) == 192 * 256


@pytest.mark.parametrize(
    "pf",
    [*(pf for pf in FORMATS.values() if pf.tpixel_is_rgb),
     PixelFormat(32, 24, False, True, 255, 255, 255, 20, 12, 4)],
)  # fmt: skip
@pytest.mark.parametrize("n", [1, 60, SMALL_TPIXELS, SMALL_TPIXELS + 1, 5000])
def test_tpixels_are_each_channels_byte_for_small_and_large_arrays(pf: PixelFormat, n: int) -> None:
    """Small arrays (palettes, fills) take the bytes of the word, larger ones shift each
    channel; both give R, G, B as the format's shifts say, from 2-D strided views too."""
    values = np.random.default_rng(n).integers(0, 1 << 32, (3, n), dtype=np.uint64)
    values = values.astype(np.uint32)
    shifts = (pf.red_shift, pf.green_shift, pf.blue_shift)
    want = np.stack([(values >> np.uint32(s)) & np.uint32(0xFF) for s in shifts], axis=-1)
    assert np.array_equal(pf.pack_tpixels(values[0]), want[0])
    strided = values[:, ::2][:, : max(1, n // 4)]
    assert np.array_equal(pf.pack_tpixels(strided), want[:, ::2][:, : max(1, n // 4)])


@pytest.mark.parametrize(("ny", "nx"), [(1, 1), (3, 8), (17, 30)])
@pytest.mark.parametrize("popcount", [True, False])
def test_smoothness_counts_per_cell_are_the_flags_summed(
    ny: int, nx: int, popcount: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cell's flags counted by packing 64 of them into a word (numpy 2) or summed
    as bytes (numpy 1.26) are each cell's count."""
    if not popcount:
        monkeypatch.setattr(content, "_POPCOUNT", None)
    elif content._POPCOUNT is None:
        pytest.skip("numpy 1.x has no bitwise_count")
    rows = CELL // content.SMOOTH_STEP
    same = np.random.default_rng(ny * nx).random((ny * rows, nx * CELL)) < 0.6
    want = [[int(same[y * rows : (y + 1) * rows, x * CELL : (x + 1) * CELL].sum())
             for x in range(nx)] for y in range(ny)]  # fmt: skip
    assert content._cell_counts(same, ny, nx).tolist() == want
