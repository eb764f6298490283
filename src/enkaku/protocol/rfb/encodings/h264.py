"""Open H.264 encoding (RFB encoding 50, as noVNC 1.5+ decodes it) and when to use it.

Optional: it needs PyAV (``pip install 'enkaku[h264]'``), whose wheels bundle FFmpeg with
libx264, which is GPL (docs/h264.md). Without PyAV, ``available()`` is False (logged once
at debug) and the agent never sends encoding 50. It is never in ``ENCODERS``: the server
picks its normal encoder as before, and the agent switches a whole update to H.264 only
while ``VideoDetector`` says the screen shows video.

Wire format of one rectangle (noVNC ``core/decoders/h264.js``)::

    U32 length    bytes of H.264 data that follow
    U32 flags     1: reset this rectangle's context, 2: reset every context
    length bytes  Annex-B NAL units (start codes 00 00 01 / 00 00 00 01)

The client keeps one decoder context per rectangle geometry (x, y, w, h); it configures a
WebCodecs ``VideoDecoder`` from the first key frame's SPS, decodes every frame in the
data and draws the last one, cropped to the rectangle. So each context starts with
``RESET_CONTEXT`` and an IDR frame carrying SPS and PPS, frames are never reordered or
delayed (``tune=zerolatency``, no B-frames: one rectangle, one picture), and a new
context (size or quality changed, or video mode started again) resets it.

Encoder settings: libx264, constrained baseline profile (the one every WebCodecs H.264
decoder takes, OpenH264 included: noVNC probes support with avc1.42401f), ``ultrafast``
preset (a 1080p frame in about 25 ms of one core here), one slice per picture and one
thread (noVNC's parser takes each slice for a picture), constant quality (CRF) from the
client's JPEG quality, BT.601 limited range signalled in the SPS (what swscale converts
to). Odd sizes are padded to even ones by
repeating the last row/column (4:2:0); the client crops the picture to the rectangle.
"""

from __future__ import annotations

import functools
import logging
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from enkaku.protocol.geometry import Rect, RectLike
from enkaku.protocol.rfb.encodings.raw import RawEncoder
from enkaku.protocol.rfb.messages import EncodedRect, EncodeOptions
from enkaku.protocol.rfb.pixelformat import Frame, PixelFormat

logger = logging.getLogger(__name__)

#: The encoding number (rfbproto "Open H.264 Encoding").
H264 = 50
RESET_CONTEXT = 1
RESET_ALL_CONTEXTS = 2
CODEC = "libx264"
PRESET = "ultrafast"
PROFILE = "baseline"
#: Frames between key frames. The stream is reliable, so key frames only bound how long a
#: client that lost its decoder (a WebCodecs error) stays without a picture.
KEYINT = 300


def crf_for(quality: int) -> int:
    """x264's CRF for a JPEG quality 0..100: 15 -> 38, 79 -> 21, 92 -> 17, 100 -> 15.

    Calibrated with benchmarks/h264.py on its ``pan`` workload (1080p): Tight JPEG at
    quality 15/41/62/79/86/92 gave 31.0/35.4/36.8/38.3/39.0/40.2 dB and libx264 reached
    the same at CRF about 38/28/25/22/20/17. 4:2:0 H.264 tops out near 42 dB, so
    quality 100 (51 dB in JPEG) is not matched.
    """
    return max(10, min(40, round(42 - 0.27 * quality)))


@functools.cache
def available() -> bool:
    """Whether PyAV with an H.264 encoder is installed (checked and logged once)."""
    try:
        import av

        av.codec.Codec(CODEC, "w")
    except Exception as exc:  # ImportError, or a PyAV build without libx264
        logger.debug("H.264 (RFB encoding 50) not offered: %s", exc)
        return False
    return True


class H264Encoder:
    """One H.264 stream for one rectangle geometry; holds the x264 context.

    Satisfies the ``Encoder`` protocol (``encode(frame, pf, options)``), so a
    ``PendingUpdate`` can encode a rectangle with it. ``pf`` is ignored: the client
    draws decoded pictures whatever its pixel format (noVNC offers H.264 only at depth 24).
    """

    code = H264

    def __init__(self, crf: int | None = None) -> None:
        #: A fixed CRF instead of ``crf_for()`` of the client's quality (benchmarks).
        self._crf = crf
        self._context: Any = None
        self._key: tuple[int, int, int] | None = None  # width, height, crf
        self._pts = 0
        #: Contexts opened (each one started with RESET_CONTEXT and a key frame).
        self.contexts = 0
        #: Encoding failed once: the rectangle went as Raw and H.264 is not used again.
        self.failed = False
        #: This context's key frame size and the sizes of the pictures after it.
        self.key_size = 0
        self.sizes: list[int] = []

    def reset(self) -> None:
        """Start a new context (with a key frame) at the next ``encode()``."""
        self._context = None
        self._key = None

    def encode(self, frame: Frame, pf: PixelFormat, options: EncodeOptions) -> list[EncodedRect]:
        """Encode a BGRX ``frame`` as one H.264 rectangle (one picture)."""
        h, w = frame.shape[:2]
        quality = options.jpeg_quality if options.jpeg_quality is not None else 95
        key = (w, h, crf_for(quality) if self._crf is None else self._crf)
        flags = 0
        try:
            if self._context is None or self._key != key:
                self._open(*key)
                flags = RESET_CONTEXT
            data = self._encode_picture(frame)
            if flags & RESET_CONTEXT:
                self.key_size, self.sizes = len(data), []
            else:
                self.sizes = [*self.sizes[-29:], len(data)]  # the last 30
        except Exception:  # a broken FFmpeg build: the picture still reaches the client
            logger.warning("h264 encoding failed; sending Raw, H.264 off", exc_info=True)
            self.failed = True
            self.reset()
            return RawEncoder().encode(frame, pf, options)
        payload = struct.pack("!II", len(data), flags) + data
        return [EncodedRect(0, 0, w, h, H264, payload, lossy=True)]

    def _open(self, width: int, height: int, crf: int) -> None:
        import av

        context: Any = av.CodecContext.create(CODEC, "w")  # a VideoCodecContext
        context.width = width + width % 2
        context.height = height + height % 2
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, 1000)
        context.framerate = Fraction(60, 1)
        context.gop_size = KEYINT
        context.max_b_frames = 0
        # One thread: zerolatency's sliced threads cut each picture into one slice per
        # thread, and noVNC hands every slice to WebCodecs as a picture of its own (the
        # picture comes out green). Frame threads would delay pictures instead.
        context.thread_count = 1
        context.options = {
            "preset": PRESET,
            "tune": "zerolatency",
            "profile": PROFILE,
            "crf": str(crf),
            "x264-params": (
                "slices=1:colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m"
            ),
        }
        context.open()
        self._context = context
        self._key = (width, height, crf)
        self._pts = 0
        self.contexts += 1
        logger.debug("h264 context %dx%d crf %d", width, height, crf)

    def _encode_picture(self, frame: Frame) -> bytes:
        import av

        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        # BGRX as "bgra": the conversion to YUV ignores alpha, so the X byte does not matter.
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgra")
        picture = picture.reformat(format="yuv420p")
        picture.pts = self._pts
        self._pts += 1
        packets = self._context.encode(picture)
        data = b"".join(bytes(p) for p in packets)
        if not data:  # zerolatency never delays a picture; if it did, the client waits
            logger.debug("h264 encoder returned no data for a picture")
        return data


#: A change covering at least this share of the screen counts as a video frame...
VIDEO_AREA = 0.25
#: ...when it follows the previous one within this many seconds (updates also wait for
#: the client's requests: a slow viewer gets video at 1-2 updates a second)...
VIDEO_GAP = 1.0
#: ...and this many in a row switch video mode on (about half a second at 10 fps).
VIDEO_FRAMES = 5
#: A change is photographic when at least this share of the sampled pixels differ from
#: both neighbours in their row (text and UI are runs of flat colour; photos and video
#: have noise and gradients everywhere).
PHOTO_SHARE = 0.5
#: Sampling grid for the photographic test (rows, columns of samples at most).
SAMPLE_ROWS = 96
SAMPLE_COLS = 256


def photographic(frame: Frame, region: RectLike) -> bool:
    """Whether ``region`` of the BGRX ``frame`` looks like a photo or video picture."""
    if region.w < 3 or region.h < 1:
        return False
    block = frame[region.y : region.y + region.h, region.x : region.x + region.w]
    step_y = max(1, region.h // SAMPLE_ROWS)
    step_x = max(1, region.w // SAMPLE_COLS)
    # Sample column triples (x, x+1, x+2) on a sparse grid: neighbours must be adjacent.
    cols = np.arange(0, region.w - 2, step_x)
    rows = block[::step_y].view("<u4")[..., 0] & np.uint32(0xFFFFFF)
    a, b, c = rows[:, cols], rows[:, cols + 1], rows[:, cols + 2]
    varied = (a != b) & (b != c)
    return bool(varied.mean() >= PHOTO_SHARE)


def _area(rects: list[Rect]) -> int:
    return sum(r.w * r.h for r in rects)


def _bounds(rects: list[Rect]) -> Rect:
    box = rects[0]
    for r in rects[1:]:
        box = box.union(r)
    return box


@dataclass(slots=True)
class VideoDetector:
    """Says, update by update, whether the screen is showing video: large changes
    (``VIDEO_AREA`` of the screen) of photographic content, ``VIDEO_FRAMES`` in a row,
    each within ``VIDEO_GAP`` of the last. A small change in between (a progress bar, the
    pointer's trail) goes out with the normal encoders and video mode stays; copies
    (scrolls, moved windows), a large change that is not photographic, or a pause longer
    than ``VIDEO_GAP`` end it."""

    streak: int = 0
    #: Loop time of the last video-like change.
    last: float | None = None
    active: bool = False
    #: Times video mode was entered (for tests and diagnostics).
    started: int = field(default=0)

    def observe(
        self, now: float, screen: Rect, rects: list[Rect], copies: int, frame: Frame
    ) -> bool:
        """One update with changes at loop time ``now``; True: send it as H.264."""
        recent = self.last is not None and now - self.last <= VIDEO_GAP
        large = copies == 0 and bool(rects) and _area(rects) >= VIDEO_AREA * screen.w * screen.h
        if large and photographic(frame, _bounds(rects)):
            if recent:
                self.streak += 1
            else:  # the first, or after a pause: count again from this frame
                self.streak = 1
                self.active = False
            self.last = now
            if not self.active and self.streak >= VIDEO_FRAMES:
                self.active = True
                self.started += 1
            return self.active
        if copies or large or not recent:
            self.stop()
        return False

    def stop(self) -> None:
        """Out of video mode; the next run counts from zero."""
        self.streak = 0
        self.active = False
        self.last = None


#: Video whose predicted pictures cost on average at least this share of its key frame
#: is not worth H.264: cuts, a slideshow, nothing to predict from; there Tight JPEG is
#: as small at the same PSNR and cheaper to encode (benchmarks/h264.py: 1080p pans cost
#: 0.01-0.07 of the key frame a picture, a new photo every picture 0.24-0.41)...
UNPREDICTABLE_SHARE = 0.15
#: ...judged after this many predicted pictures...
PREDICTED_PICTURES = 3
#: ...and then H.264 is not tried again for this many seconds.
UNPREDICTABLE_HOLD = 10.0


class H264Policy:
    """The agent's per-connection H.264 state: the detector and the encoder."""

    def __init__(self) -> None:
        self.detector = VideoDetector()
        self.encoder = H264Encoder()
        self._was_active = False
        #: Updates sent as H.264.
        self.frames = 0
        self._hold_until = 0.0

    def choose(
        self,
        now: float,
        screen: Rect,
        region: Rect,
        rects: list[Rect],
        copies: int,
        frame: Frame,
        *,
        offered: bool,
        options: EncodeOptions,
        pixel_format: PixelFormat,
    ) -> H264Encoder | None:
        """The encoder to send this whole update with, or None for the normal ones.

        H.264 only when the client listed it, asked for JPEG (a lossless setting never
        gets it), takes true colour at 32 bits, wants the whole screen, and the
        detector says this update is a picture of the video. Leaving video mode drops the
        context: the next time starts with a key frame on a fresh one.
        """
        usable = (
            offered
            and not self.encoder.failed
            and options.jpeg_quality is not None
            and pixel_format.true_colour
            and pixel_format.bits_per_pixel == 32
            and region == screen
        )
        sizes = self.encoder.sizes
        if (
            self._was_active
            and len(sizes) >= PREDICTED_PICTURES
            and sum(sizes) / len(sizes) >= UNPREDICTABLE_SHARE * self.encoder.key_size
        ):
            logger.debug("h264 off for %.0f s: pictures do not predict", UNPREDICTABLE_HOLD)
            self._hold_until = now + UNPREDICTABLE_HOLD
        usable = usable and now >= self._hold_until
        if usable:
            video = self.detector.observe(now, screen, rects, copies, frame)
        else:
            video = False
            self.detector.stop()
        if not usable or not self.detector.active:
            if self._was_active:
                self.encoder.reset()
                logger.debug("h264 video mode off after %d frames", self.frames)
            self._was_active = False
        if not video:  # no video, or a small change between pictures: the normal encoders
            return None
        if not self._was_active:
            logger.debug("h264 video mode on")
        self._was_active = True
        self.frames += 1
        return self.encoder

    def reset(self) -> None:
        """The screen changed size: forget the detector's streak and the context."""
        self.detector = VideoDetector(started=self.detector.started)
        self.encoder.reset()
        self._was_active = False


__all__ = [
    "H264",
    "RESET_ALL_CONTEXTS",
    "RESET_CONTEXT",
    "H264Encoder",
    "H264Policy",
    "VideoDetector",
    "available",
    "crf_for",
    "photographic",
]
