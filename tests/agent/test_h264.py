"""H.264 (RFB encoding 50) in the agent: the encoder's pictures decoded independently by
FFmpeg's own H.264 decoder (through PyAV), the video detector, and the RFBService sending
moving photographic frames as H.264 only to a client that listed it, then a lossless
refresh once the motion stops. Skipped without PyAV (the optional ``h264`` extra)."""

from __future__ import annotations

import asyncio
import struct
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
    frame = moving_picture(200, 120, 1)[0]
    flat = np.zeros((120, 200, 4), np.uint8)
    screen = Rect(0, 0, 200, 120)
    small = [Rect(0, 0, 20, 20)]

    def video() -> h264.VideoDetector:
        d = h264.VideoDetector()
        seen = [d.observe(0.1 * i, screen, [screen], 0, frame) for i in range(h264.VIDEO_FRAMES)]
        assert seen == [False] * (h264.VIDEO_FRAMES - 1) + [True]
        assert d.active and d.started == 1
        return d

    # A small change between pictures goes out normally; video mode stays.
    d = video()
    assert not d.observe(0.55, screen, small, 0, frame) and d.active
    assert d.observe(0.6, screen, [screen], 0, frame)
    # A copy (scroll), a large flat change or a pause ends it.
    d = video()
    assert not d.observe(0.6, screen, [screen], 1, frame) and not d.active
    d = video()
    assert not d.observe(0.6, screen, [screen], 0, flat) and not d.active
    d = video()
    t = 0.4 + h264.VIDEO_GAP + 0.1
    assert not d.observe(t, screen, small, 0, frame) and not d.active
    d = video()
    assert not d.observe(t, screen, [screen], 0, frame) and not d.active  # counts again
    # Small changes alone, or flat content changing fast, are never video.
    d = h264.VideoDetector()
    assert not any(d.observe(0.05 * i, screen, small, 0, frame) for i in range(20))
    assert not any(d.observe(0.05 * i, screen, [screen], 0, flat) for i in range(20))


def test_policy_keeps_the_context_across_small_changes_and_resets_after() -> None:
    frames = moving_picture(200, 120, 12)
    screen = Rect(0, 0, 200, 120)
    policy = h264.H264Policy()
    options = EncodeOptions(jpeg_quality=79)

    def choose(t: float, rects: list[Rect], frame: np.ndarray, **kw: object) -> object:
        args: dict = {"offered": True, "options": options, "pixel_format": NATIVE} | kw
        return policy.choose(t, screen, screen, rects, 0, frame, **args)

    got = [choose(0.1 * i, [screen], frames[i]) for i in range(h264.VIDEO_FRAMES)]
    assert got[-1] is policy.encoder and not any(got[:-1])
    (rect,) = policy.encoder.encode(frames[4], NATIVE, options)
    assert choose(0.45, [Rect(0, 0, 10, 10)], frames[4]) is None  # small: normal encoders
    assert choose(0.5, [screen], frames[5]) is policy.encoder
    (rect,) = policy.encoder.encode(frames[5], NATIVE, options)
    assert struct.unpack_from("!II", rect.payload)[1] == 0 and policy.encoder.contexts == 1
    # Not offered, or lossless: never, and the context is dropped.
    assert choose(0.6, [screen], frames[6], offered=False) is None
    assert choose(0.7, [screen], frames[7], options=EncodeOptions()) is None
    (rect,) = policy.encoder.encode(frames[7], NATIVE, options)
    assert struct.unpack_from("!II", rect.payload)[1] == h264.RESET_CONTEXT
    assert not policy.detector.active  # offered again: a new run of frames first
    assert choose(0.8, [screen], frames[8]) is None


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
        encoder = policy.choose(0.1 * i, screen, screen, [screen], 0, frame, offered=True,
                                options=options, pixel_format=NATIVE)  # fmt: skip
        chosen.append(encoder is not None)
        if encoder is not None:
            encoder.encode(frame, NATIVE, options)
    start = h264.VIDEO_FRAMES - 1
    assert chosen[:start] == [False] * start and chosen[start]
    if kind == "video":
        assert all(chosen[start:])
    else:
        # a key frame and PREDICTED_PICTURES pictures, then no more H.264
        stop = start + 1 + h264.PREDICTED_PICTURES
        assert all(chosen[start:stop]) and not any(chosen[stop:])


class H264Client(Decoder):
    """The test decoder plus encoding 50: pictures decoded by PyAV into the framebuffer."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height, NATIVE)
        self.pictures = PictureDecoder()
        self.h264: list[tuple[np.ndarray, int, list[int]]] = []  # picture, flags, NAL types

    def _update(self, r: _Reader) -> None:
        start = r.pos
        (count,) = r.unpack("!xH")
        x, y, w, h, enc = r.unpack("!HHHHi")
        if count != 1 or enc != h264.H264:
            r.pos = start
            super()._update(r)
            return
        (length,) = struct.unpack("!I", r.data[r.pos : r.pos + 4])
        payload = r.take(8 + length)
        picture = self.pictures.decode(payload, w, h)
        flags = struct.unpack_from("!I", payload, 4)[0]
        self.h264.append((picture, flags, nal_types(payload[8:])))
        self.fb[y : y + h, x : x + w] = rgb_to_values(picture, self.pf)
        self.updates.append(Update([(x, y, w, h, enc)]))


async def play(encodings: tuple[int, ...], frames: list[np.ndarray]) -> H264Client:
    """Serve ``frames`` as a video (a new one after each update, as a player would) to an
    in-memory client listing ``encodings``; then stay still until the lossless refresh."""
    h, w = frames[0].shape[:2]
    capture = FakeCapture(frames[0])
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
        n = len(client.updates)
        await pipe.to_server.put(request(True, 0, 0, w, h))
        await pipe.receive(client, lambda n=n: len(client.updates) > n)
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
