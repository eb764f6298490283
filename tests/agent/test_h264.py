"""H.264 (RFB encoding 50) in the agent: the encoder's pictures decoded independently by
FFmpeg's own H.264 decoder (through PyAV), the video detector, and the RFBService sending
moving photographic frames as H.264 only to a client that listed it, then a lossless
refresh once the motion stops. Skipped without PyAV (the optional ``h264`` extra)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from enkaku.agent.rfbservice import RFBService
from enkaku.protocol.geometry import Rect
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb.encodings import h264
from enkaku.protocol.rfb.messages import EncodeOptions
from enkaku.protocol.rfb.pixelformat import NATIVE
from tests.agent.test_rfbservice import FakeCapture, Pipe, RecordingInjector
from tests.protocol.rfb.decoders import Decoder, Update, _Reader, rgb_to_values, set_encodings
from tests.protocol.rfb.decoders import update_request as request

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'enkaku[h264]')")
if not h264.available():
    pytest.skip("this PyAV build has no libx264 encoder", allow_module_level=True)


def moving_picture(w: int, h: int, count: int, seed: int = 5) -> list[np.ndarray]:
    """BGRX frames of a camera panning over a photo-like scene, with fresh sensor grain."""
    rng = np.random.default_rng(seed)
    big_w, big_h = w + 4 * count, h + 2 * count
    low = Image.fromarray(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8))
    mid = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    scene = 0.7 * np.asarray(low.resize((big_w, big_h), Image.Resampling.BICUBIC), np.float32)
    scene += 0.3 * np.asarray(mid.resize((big_w, big_h), Image.Resampling.BICUBIC), np.float32)
    frames = []
    for i in range(count):
        rgb = scene[2 * i : 2 * i + h, 4 * i : 4 * i + w] + rng.normal(0, 2, (h, w, 1))
        frame = np.zeros((h, w, 4), np.uint8)
        frame[..., 2::-1] = np.clip(rgb, 0, 255).astype(np.uint8)  # RGB -> BGR
        frame[..., 3] = rng.integers(0, 256, (h, w), dtype=np.uint8)  # X byte: garbage
        frames.append(frame)
    return frames


def rgb_of(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame[..., 2::-1])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def nal_types(data: bytes) -> list[int]:
    """NAL unit types of Annex-B data (start codes 00 00 01, with or without a 00 before)."""
    out = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        out.append(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return out


class PictureDecoder:
    """One client context: FFmpeg's H.264 decoder fed each rectangle's data."""

    def __init__(self) -> None:
        self.context: Any = None

    def decode(self, payload: bytes, w: int, h: int) -> np.ndarray:
        length, flags = struct.unpack_from("!II", payload)
        data = payload[8:]
        assert len(data) == length
        if flags & h264.RESET_CONTEXT or self.context is None:
            assert flags & h264.RESET_CONTEXT, "a context must start with a reset"
            self.context = av.CodecContext.create("h264", "r")
        pictures = self.context.decode(av.Packet(data))
        assert len(pictures) == 1, "one rectangle, one picture, no delay"
        rgb = pictures[0].to_ndarray(format="rgb24")
        assert rgb.shape[0] >= h and rgb.shape[1] >= w
        return rgb[:h, :w]


def test_encoder_pictures_decode_independently_close_to_the_source() -> None:
    frames = moving_picture(322, 181, 12)  # odd sizes: padded, the client crops
    encoder = h264.H264Encoder()
    decoder = PictureDecoder()
    options = EncodeOptions(jpeg_quality=79)
    sizes = []
    for i, frame in enumerate(frames):
        (rect,) = encoder.encode(frame, NATIVE, options)
        assert (rect.x, rect.y, rect.w, rect.h, rect.encoding) == (0, 0, 322, 181, 50)
        assert rect.lossy
        length, flags = struct.unpack_from("!II", rect.payload)
        types = nal_types(rect.payload[8:])
        if i == 0:
            assert flags == h264.RESET_CONTEXT
            assert 7 in types and 8 in types and 5 in types  # SPS, PPS, IDR
        else:
            assert flags == 0 and types[-1] == 1  # a P slice, no new context
        # One slice per picture: noVNC's parser passes each slice to WebCodecs as a
        # picture of its own.
        assert sum(t in (1, 5) for t in types) == 1
        sizes.append(length)
        got = decoder.decode(rect.payload, rect.w, rect.h)
        assert psnr(got, rgb_of(frame)) > 32
        assert psnr(got, rgb_of(frames[i - 1])) < psnr(got, rgb_of(frame))  # this frame's
    # Later frames predicted from earlier ones: much smaller than the key frame.
    assert max(sizes[1:]) < sizes[0]
    # A quality change starts a new context (reset + key frame); so does reset().
    (rect,) = encoder.encode(frames[0], NATIVE, EncodeOptions(jpeg_quality=30))
    assert struct.unpack_from("!II", rect.payload)[1] == h264.RESET_CONTEXT
    assert psnr(decoder.decode(rect.payload, 322, 181), rgb_of(frames[0])) > 25
    encoder.reset()
    (rect,) = encoder.encode(frames[1], NATIVE, options)
    assert struct.unpack_from("!II", rect.payload)[1] == h264.RESET_CONTEXT
    assert encoder.contexts == 3


def test_crf_follows_the_quality() -> None:
    assert h264.crf_for(95) < h264.crf_for(79) < h264.crf_for(15)
    assert all(10 <= h264.crf_for(q) <= 40 for q in range(101))


def test_photographic_tells_pictures_from_text() -> None:
    photo = moving_picture(200, 120, 1)[0]
    text = np.full((120, 200, 4), 255, np.uint8)
    rng = np.random.default_rng(3)
    text[rng.random((120, 200)) < 0.15] = (0, 0, 0, 0)  # glyph pixels on white
    whole = Rect(0, 0, 200, 120)
    assert h264.photographic(photo, whole)
    assert not h264.photographic(text, whole)
    assert not h264.photographic(np.zeros((120, 200, 4), np.uint8), whole)


def test_video_detector_needs_a_run_of_large_photographic_changes() -> None:
    """The whole screen playing video: the region is the screen."""
    frame = moving_picture(200, 120, 1)[0]
    flat = np.zeros((120, 200, 4), np.uint8)
    screen = Rect(0, 0, 200, 120)
    small = [Rect(0, 0, 20, 20)]

    def video() -> h264.VideoDetector:
        d = h264.VideoDetector()
        seen = [d.observe(0.1 * i, [screen], [], frame) for i in range(h264.VIDEO_FRAMES)]
        assert seen == [None] * (h264.VIDEO_FRAMES - 1) + [screen]
        assert d.active and d.started == 1
        return d

    # A small change between pictures goes out normally; video mode stays.
    d = video()
    assert d.observe(0.55, small, [], frame) is None and d.active
    assert d.observe(0.6, [screen], [], frame) == screen
    # A copy (scroll), a large flat change or a pause ends it.
    d = video()
    assert d.observe(0.6, [screen], [screen], frame) is None and not d.active
    d = video()
    assert d.observe(0.6, [screen], [], flat) is None and not d.active
    d = video()
    t = 0.4 + h264.VIDEO_GAP + 0.1
    assert d.observe(t, small, [], frame) is None and not d.active
    d = video()
    assert d.observe(t, [screen], [], frame) is None and not d.active  # counts again
    # Small changes alone, or flat content changing fast, are never video.
    d = h264.VideoDetector()
    assert not any(d.observe(0.05 * i, small, [], frame) for i in range(20))
    assert not any(d.observe(0.05 * i, [screen], [], flat) for i in range(20))


def text_screen(w: int, h: int, seed: int = 3) -> np.ndarray:
    """BGRX: black glyph-like pixels on white (flat runs, as text and UI are)."""
    rng = np.random.default_rng(seed)
    screen = np.full((h, w, 4), 255, np.uint8)
    screen[rng.random((h, w)) < 0.12] = (0, 0, 0, 0)
    return screen


VIDEO = Rect(200, 100, 320, 240)  # on a 640x480 screen of text


def beside_text(pictures: list[np.ndarray], text: np.ndarray) -> list[np.ndarray]:
    """Each picture put at ``VIDEO`` in a copy of the text screen."""
    out = []
    for picture in pictures:
        frame = text.copy()
        frame[VIDEO.y : VIDEO.y + VIDEO.h, VIDEO.x : VIDEO.x + VIDEO.w] = picture
        out.append(frame)
    return out


def test_clusters_group_nearby_changes() -> None:
    rects = [Rect(0, 0, 64, 64), Rect(64, 0, 64, 64), Rect(300, 300, 10, 10), Rect(130, 60, 4, 4)]
    assert h264.clusters(rects) == [
        (Rect(0, 0, 134, 64), 64 * 64 * 2 + 16),
        (Rect(300, 300, 10, 10), 100),
    ]
    assert h264.clusters([]) == []
    # Far apart, as a chain: one group through the middle rectangle.
    chain = [Rect(0, 0, 10, 10), Rect(15, 0, 10, 10), Rect(30, 0, 10, 10)]
    assert h264.clusters(chain) == [(Rect(0, 0, 40, 10), 300)]


def test_photo_bounds_trims_the_text_that_coarse_damage_takes_in() -> None:
    text = text_screen(640, 480)
    (frame,) = beside_text(moving_picture(VIDEO.w, VIDEO.h, 1), text)
    # 64-pixel tiles around the video (a capture without damage events).
    assert h264.photo_bounds(frame, Rect(192, 64, 384, 320)) == VIDEO
    assert h264.photo_bounds(frame, VIDEO) == VIDEO
    assert h264.photo_bounds(text, Rect(0, 0, 640, 480)) is None
    whole = moving_picture(200, 120, 1)[0]
    assert h264.photo_bounds(whole, Rect(0, 0, 200, 120)) == Rect(0, 0, 200, 120)


def test_video_detector_finds_the_region_beside_text_and_keeps_it() -> None:
    from enkaku.agent.rfbservice import changed_tiles

    text = text_screen(640, 480)
    frames = beside_text(moving_picture(VIDEO.w, VIDEO.h, 16), text)
    d = h264.VideoDetector()
    previous = text
    got = []
    for i, frame in enumerate(frames[:8]):
        tiles = changed_tiles(previous, frame)  # coarse damage: 64-pixel tiles
        previous = frame
        got.append(d.observe(0.1 * i, tiles, [], frame))
    n = h264.VIDEO_FRAMES
    assert got == [None] * (n - 1) + [VIDEO] * (8 - n + 1)
    # Typing in the text beside it and a scroll there: the text's own business.
    typing = [Rect(20, 20, 8, 14)]
    assert d.observe(0.85, [VIDEO, *typing], [Rect(0, 400, 150, 60)], frames[8]) == VIDEO
    assert d.observe(0.9, typing, [], frames[8]) is None and d.active
    # A small change over the video (a progress bar): normal encoders, it stays.
    assert d.observe(0.95, [Rect(210, 330, 100, 4)], [], frames[8]) is None and d.active
    assert d.observe(1.0, [VIDEO], [], frames[9]) == VIDEO
    # The player grew: its new box is the region at once.
    bigger = Rect(VIDEO.x - 40, VIDEO.y, VIDEO.w + 40, VIDEO.h)
    frame = text.copy()
    frame[bigger.y : bigger.y + bigger.h, bigger.x : bigger.x + bigger.w] = moving_picture(
        bigger.w, bigger.h, 1
    )[0]
    assert d.observe(1.1, [bigger], [], frame) == bigger and d.started == 1
    # A copy into the region (the page scrolled with the video): over.
    assert d.observe(1.2, [bigger], [Rect(0, 150, 640, 100)], frame) is None
    assert not d.active and d.streak == 1  # and this picture counts from one
    # A second moving picture somewhere else while counting: not this region's business
    # (two videos at once: the first one counted goes H.264, the other as before).
    d = h264.VideoDetector()
    for i in range(3):
        d.observe(0.1 * i, [VIDEO], [], frames[i])
    assert d.streak == 3
    (other,) = beside_text(moving_picture(VIDEO.w, VIDEO.h, 1, seed=9), text)
    elsewhere = moving_picture(180, 100, 1)[0]
    other[0:100, 0:180] = elsewhere
    assert d.observe(0.35, [Rect(0, 0, 180, 100)], [], other) is None
    assert d.region == VIDEO and d.streak == 3
    assert d.observe(0.4, [VIDEO, Rect(0, 0, 180, 100)], [], other) is None
    assert d.observe(0.5, [VIDEO, Rect(0, 0, 180, 100)], [], other) == VIDEO


def test_policy_keeps_the_context_across_small_changes_and_resets_after() -> None:
    frames = moving_picture(200, 120, 12)
    screen = Rect(0, 0, 200, 120)
    policy = h264.H264Policy()
    options = EncodeOptions(jpeg_quality=79)

    def choose(t: float, rects: list[Rect], frame: np.ndarray, **kw: object) -> object:
        args: dict = {"offered": True, "options": options, "pixel_format": NATIVE} | kw
        return policy.choose(t, screen, rects, [], frame, **args)

    got = [choose(0.1 * i, [screen], frames[i]) for i in range(h264.VIDEO_FRAMES)]
    assert got[-1] == screen and not any(got[:-1])
    (rect,) = policy.encoder.encode(frames[4], NATIVE, options)
    assert choose(0.45, [Rect(0, 0, 10, 10)], frames[4]) is None  # small: normal encoders
    assert choose(0.5, [screen], frames[5]) == screen
    (rect,) = policy.encoder.encode(frames[5], NATIVE, options)
    assert struct.unpack_from("!II", rect.payload)[1] == 0 and policy.encoder.contexts == 1
    # Not offered, or lossless: never, and the context is dropped.
    assert choose(0.6, [screen], frames[6], offered=False) is None
    assert choose(0.7, [screen], frames[7], options=EncodeOptions()) is None
    (rect,) = policy.encoder.encode(frames[7], NATIVE, options)
    assert struct.unpack_from("!II", rect.payload)[1] == h264.RESET_CONTEXT
    assert not policy.detector.active  # offered again: a new run of frames first
    assert choose(0.8, [screen], frames[8]) is None


def test_policy_new_geometry_new_context_and_first_rect_only() -> None:
    """noVNC keeps a context per x, y, w, h: a region that moves (same size) needs one."""
    text = text_screen(640, 480)
    screen = Rect(0, 0, 640, 480)
    frames = beside_text(moving_picture(VIDEO.w, VIDEO.h, 12), text)
    policy = h264.H264Policy()
    options = EncodeOptions(jpeg_quality=79)
    kw: dict = {"offered": True, "options": options, "pixel_format": NATIVE}
    for i in range(h264.VIDEO_FRAMES):
        region = policy.choose(0.1 * i, screen, [VIDEO], [], frames[i], **kw)
    assert region == VIDEO
    # A request for part of the region only: normal encoders.
    assert policy.choose(0.5, Rect(0, 0, 320, 480), [VIDEO], [], frames[5], **kw) is None

    class Normal:
        code = 7
        calls = 0

        def encode(self, frame: np.ndarray, pf: object, options: object) -> list:
            self.calls += 1
            return []

    normal = Normal()
    encoder = policy.wrap(normal, VIDEO)
    sub = frames[6][VIDEO.y : VIDEO.y + VIDEO.h, VIDEO.x : VIDEO.x + VIDEO.w]
    (rect,) = encoder.encode(sub, NATIVE, options)
    assert rect.encoding == h264.H264 and rect.lossy
    assert struct.unpack_from("!II", rect.payload)[1] == h264.RESET_CONTEXT
    assert encoder.encode(sub, NATIVE, options) == [] and normal.calls == 1  # the rest
    (rect,) = policy.wrap(normal, VIDEO).encode(sub, NATIVE, options)
    assert struct.unpack_from("!II", rect.payload)[1] == 0  # same geometry: predicted
    # The same picture 8 pixels to the right (a region moved without a copy): a new
    # run, then a new context.
    moved = Rect(VIDEO.x + 40, VIDEO.y, VIDEO.w, VIDEO.h)
    pictures = moving_picture(VIDEO.w, VIDEO.h, 12)
    t = 0.7
    region = None
    for i in range(h264.VIDEO_FRAMES):
        frame = text.copy()
        frame[moved.y : moved.y + moved.h, moved.x : moved.x + moved.w] = pictures[i]
        region = policy.choose(t + 0.1 * i, screen, [moved.union(VIDEO)], [], frame, **kw)
    assert region == moved
    (rect,) = policy.wrap(normal, moved).encode(pictures[4], NATIVE, options)
    assert struct.unpack_from("!II", rect.payload)[1] == h264.RESET_CONTEXT


def test_still_lossy_areas_beside_the_video_are_resent_while_it_plays() -> None:
    """The whole-screen refresh waits for a still screen; beside a video it never comes.
    Lossy areas outside the region that stay in the list for the delay go with a
    picture; those touched by this update's damage, or inside the region, do not."""
    policy = h264.H264Policy()
    screen = Rect(0, 0, 640, 480)
    stale = Rect(150, 60, 100, 60)  # text JPEG'd before the region was found
    overlapping = Rect(180, 200, 40, 40)  # partly under the video
    typing = Rect(10, 10, 20, 20)  # lossy, but changing again in this update
    inside = Rect(210, 110, 50, 50)  # the picture's own
    lossy = [stale, overlapping, typing, inside]
    assert policy.still_lossy(1.0, lossy, VIDEO, screen, [typing], 0.5) == []
    assert policy.still_lossy(1.4, lossy, VIDEO, screen, [typing], 0.5) == []
    got = policy.still_lossy(1.5, lossy, VIDEO, screen, [typing], 0.5)
    assert got == [stale, overlapping]
    # Not in a request for part of the screen only; a new entry counts from now.
    assert policy.still_lossy(1.6, [stale], VIDEO, Rect(0, 0, 100, 100), [], 0.5) == []
    assert policy.still_lossy(1.7, [Rect(0, 300, 20, 20)], VIDEO, screen, [], 0.5) == []


def unrelated_pictures(w: int, h: int, count: int) -> list[np.ndarray]:
    """BGRX photo-like frames, each a new picture (a slideshow: nothing predicts)."""
    return [moving_picture(w, h, 1, seed=100 + i)[0] for i in range(count)]


@pytest.mark.parametrize("kind", ["video", "slideshow"])
def test_policy_gives_up_on_pictures_that_do_not_predict(kind: str) -> None:
    """A slideshow looks like video to the detector, but each H.264 picture costs about
    what a key frame does: after a few, the policy falls back to the normal encoders."""
    w, h, n = 320, 240, 16
    frames = moving_picture(w, h, n) if kind == "video" else unrelated_pictures(w, h, n)
    screen = Rect(0, 0, w, h)
    policy = h264.H264Policy()
    options = EncodeOptions(jpeg_quality=79)
    chosen = []
    for i, frame in enumerate(frames):
        region = policy.choose(0.1 * i, screen, [screen], [], frame, offered=True,
                               options=options, pixel_format=NATIVE)  # fmt: skip
        chosen.append(region is not None)
        if region is not None:
            policy.encoder.encode(frame, NATIVE, options)
    start = h264.VIDEO_FRAMES - 1
    assert chosen[:start] == [False] * start and chosen[start]
    if kind == "video":
        assert all(chosen[start:])
    else:
        # a key frame and PREDICTED_PICTURES pictures, then no more H.264
        stop = start + 1 + h264.PREDICTED_PICTURES
        assert all(chosen[start:stop]) and not any(chosen[stop:])


class H264Client(Decoder):
    """The test decoder plus encoding 50: pictures decoded by PyAV into the framebuffer,
    one decoder context per rectangle geometry (as noVNC keeps them); every other
    rectangle of the same update through the test decoder."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height, NATIVE)
        self.contexts: dict[tuple[int, int, int, int], PictureDecoder] = {}
        self.h264: list[tuple[np.ndarray, int, list[int]]] = []  # picture, flags, NAL types
        self.h264_rects: list[tuple[int, int, int, int]] = []

    def _update(self, r: _Reader) -> None:
        (count,) = r.unpack("!xH")
        update = Update()
        for _ in range(count):
            x, y, w, h, enc = r.unpack("!HHHHi")
            if enc != h264.H264:  # one rectangle through the test decoder
                head = struct.pack("!xHHHHHi", 1, x, y, w, h, enc)
                one = _Reader(head + r.data[r.pos :])
                super()._update(one)
                r.pos += one.pos - len(head)
                update.rects.extend(self.updates.pop().rects)
                continue
            (length,) = struct.unpack("!I", r.data[r.pos : r.pos + 4])
            payload = r.take(8 + length)
            flags = struct.unpack_from("!I", payload, 4)[0]
            if flags & h264.RESET_CONTEXT:
                self.contexts.pop((x, y, w, h), None)
            context = self.contexts.setdefault((x, y, w, h), PictureDecoder())
            picture = context.decode(payload, w, h)
            self.h264.append((picture, flags, nal_types(payload[8:])))
            self.h264_rects.append((x, y, w, h))
            self.fb[y : y + h, x : x + w] = rgb_to_values(picture, self.pf)
            update.rects.append((x, y, w, h, enc))
        self.updates.append(update)


async def play(
    encodings: tuple[int, ...],
    frames: list[np.ndarray],
    check: Callable[[H264Client, np.ndarray], None] | None = None,
    damage: list[Rect] | None = None,
) -> H264Client:
    """Serve ``frames`` as a video (a new one after each update, as a player would) to an
    in-memory client listing ``encodings``; then stay still until the lossless refresh.
    ``check`` sees the client after each update with the frame it showed. With
    ``damage``, the capture reports those rectangles as changed (as X damage events
    would) instead of the agent comparing 64-pixel tiles."""
    h, w = frames[0].shape[:2]
    capture = FakeCapture(frames[0], regions=damage is not None)
    pipe = Pipe()
    service = RFBService(capture, RecordingInjector(), pipe.read, pipe.write, name="h264")
    task = asyncio.create_task(service.run())
    await pipe.handshake()
    client = H264Client(w, h)
    await pipe.to_server.put(set_encodings(*encodings))
    await pipe.to_server.put(request(False, 0, 0, w, h))
    await pipe.receive(client, lambda: len(client.updates) == 1)
    for frame in frames[1:]:
        capture.set_image(frame)
        if damage is not None:
            with capture.lock:
                capture.pending = [*(capture.pending or []), *damage]
        n = len(client.updates)
        await pipe.to_server.put(request(True, 0, 0, w, h))
        await pipe.receive(client, lambda n=n: len(client.updates) > n)
        if check is not None:
            check(client, frame)
        await asyncio.sleep(0.05)  # 20 frames a second at most
    # Still now: what the client has must become exactly the last frame.
    last = client.pf.values(frames[-1])
    for _ in range(5):
        if np.array_equal(client.fb, last):
            break
        n = len(client.updates)
        await pipe.to_server.put(request(True, 0, 0, w, h))
        await pipe.receive(client, lambda n=n: len(client.updates) > n)
    await pipe.to_server.put(b"")  # EOF
    await asyncio.wait_for(task, 10)
    return client


NOVNC = (Encoding.COPYRECT, h264.H264, Encoding.TIGHT, Encoding.ZRLE, Encoding.RAW,
         Encoding.JPEG_QUALITY_LOW + 6, Encoding.COMPRESS_LOW + 2)  # fmt: skip


async def test_video_goes_as_h264_to_a_client_that_lists_it_then_exact() -> None:
    frames = moving_picture(320, 240, 24)
    client = await play(NOVNC, frames)
    assert client.h264, "no H.264 rectangle while the screen played video"
    assert client.h264[0][1] == h264.RESET_CONTEXT and 5 in client.h264[0][2]
    sources = [rgb_of(f) for f in frames]
    for picture, _, _ in client.h264:
        assert max(psnr(picture, s) for s in sources) > 32
    # The first updates went with the normal encoders (no video yet): Tight, and JPEG.
    assert client.jpeg_rects > 0
    np.testing.assert_array_equal(client.fb, client.pf.values(frames[-1]))


@pytest.mark.parametrize("listed", ["tigervnc", "lossless"])
async def test_no_h264_unless_listed_and_lossy(listed: str) -> None:
    """TigerVNC's viewer does not list 50; the console's lossless setting lists no JPEG."""
    if listed == "tigervnc":
        encodings = tuple(e for e in NOVNC if e != h264.H264)
    else:
        encodings = tuple(e for e in NOVNC if e != Encoding.JPEG_QUALITY_LOW + 6)
    frames = moving_picture(320, 240, 16)
    client = await play(encodings, frames)
    assert client.h264 == []
    assert all(r[4] != h264.H264 for u in client.updates for r in u.rects)
    np.testing.assert_array_equal(client.fb, client.pf.values(frames[-1]))


@pytest.mark.parametrize("damage", ["tiles", "exact"])
async def test_video_beside_text_only_the_video_region_goes_h264(damage: str) -> None:
    """A 320x240 video in a 640x480 screen of text, with typing beside it: the video's
    rectangle goes as H.264 (its own geometry, found through 64-pixel tile damage or the
    capture's exact damage), the text is exact while it plays, and after the video the
    whole screen is exact."""
    text = text_screen(640, 480)
    frames = beside_text(moving_picture(VIDEO.w, VIDEO.h, 24), text)
    for i, frame in enumerate(frames):  # a caret blinking in the text, every 3rd frame
        if i % 3 == 0:
            frame[20:34, 30:32] = (0, 0, 0, 0)
    outside = np.ones((480, 640), bool)
    outside[VIDEO.y : VIDEO.y + VIDEO.h, VIDEO.x : VIDEO.x + VIDEO.w] = False
    text_exact = []

    def check(client: H264Client, frame: np.ndarray) -> None:
        text_exact.append(np.array_equal(client.fb[outside], client.pf.values(frame)[outside]))

    caret = Rect(30, 20, 2, 14)
    client = await play(NOVNC, frames, check, None if damage == "tiles" else [VIDEO, caret])
    assert client.h264, "no H.264 rectangle while the video played"
    assert set(client.h264_rects) == {(VIDEO.x, VIDEO.y, VIDEO.w, VIDEO.h)}
    assert client.h264[0][1] == h264.RESET_CONTEXT and 5 in client.h264[0][2]
    sources = [rgb_of(f[VIDEO.y : VIDEO.y + VIDEO.h, VIDEO.x : VIDEO.x + VIDEO.w]) for f in frames]
    for picture, _, _ in client.h264:
        assert max(psnr(picture, s) for s in sources) > 32
    # Before video mode, Tight sent text as JPEG along with the video (the first
    # update's whole screen; the 64-pixel tiles around the video). With tiles, the
    # first picture's update sends those tiles' text losslessly (damage beside the
    # region); with exact damage, the stale JPEG beside the video is resent losslessly
    # after LOSSLESS_REFRESH_DELAY while the video still plays. Then the text stays
    # exact in every update.
    pictures = [i for i, u in enumerate(client.updates) if h264.H264 in {r[4] for r in u.rects}]
    first = pictures[0]
    assert first >= h264.VIDEO_FRAMES - 1
    assert not all(text_exact[: first - 1])
    exact = text_exact.index(True) + 1  # text_exact[k] is after update k + 1
    assert all(text_exact[exact - 1 :])
    if damage == "tiles":
        assert exact == first
    else:
        assert first < exact < pictures[-1]  # while the video played
    # The caret's updates went with the normal encoders in the same updates as pictures.
    mixed = [u for u in client.updates if {r[4] for r in u.rects} - {h264.H264}
             and h264.H264 in {r[4] for r in u.rects}]  # fmt: skip
    assert mixed
    np.testing.assert_array_equal(client.fb, client.pf.values(frames[-1]))
