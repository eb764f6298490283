"""Open H.264 encoding (RFB encoding 50, as noVNC 1.5+ decodes it) and when to use it.

Optional: it needs PyAV (``pip install 'enkaku[h264]'``), whose wheels bundle FFmpeg with
libx264, which is GPL (docs/h264.md). Without PyAV, ``available()`` is False (logged once
at debug) and the agent never sends encoding 50. It is never in ``ENCODERS``: the server
picks its normal encoder as before, and the agent sends the region of the screen that
``VideoDetector`` says plays video (the whole screen for a full-screen video) as one
H.264 picture per update, with everything else in the update encoded as before.

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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from enkaku.protocol.geometry import Rect, RectLike
from enkaku.protocol.rfb.encodings.raw import RawEncoder
from enkaku.protocol.rfb.messages import EncodedRect, EncodeOptions
from enkaku.protocol.rfb.pixelformat import Frame, PixelFormat

if TYPE_CHECKING:
    from enkaku.protocol.rfb.encodings import Encoder

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


#: A change is a video picture when its changed area is at least this big (a video
#: tutorial in a corner: 160x90 at the least)...
VIDEO_MIN_AREA = 160 * 90
#: ...its changes cover at least this share of their bounding box (a moving picture
#: changes nearly every pixel; a few small changes near each other are not one)...
VIDEO_DENSITY = 0.5
#: ...and it follows the previous one within this many seconds (updates also wait for
#: the client's requests: a slow viewer gets video at 1-2 updates a second)...
VIDEO_GAP = 1.0
#: ...and this many in a row at the same place switch video mode on for that region
#: (about half a second at 10 fps).
VIDEO_FRAMES = 5
#: Changes less than this many pixels apart belong to one picture (damage comes in
#: tiles and bands, and rows a picture leaves unchanged split it); a picture is at the
#: same place when it stays inside the region grown by this much on every side.
VIDEO_SLACK = 8
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


#: An edge row or column of a changed area whose sampled pixels differ from both
#: neighbours less often than this is trimmed off the video region (``photo_bounds``).
EDGE_SHARE = 0.5


def photo_bounds(frame: Frame, box: Rect) -> Rect | None:
    """``box`` of the BGRX ``frame`` without its edge columns, then edge rows, that are
    not photographic, or None when nothing photographic is left.

    Damage can be coarser than the picture (a capture without damage events reports
    64-pixel tiles; a player's frame around the video changes with it): the text beside
    a video must not join its region, where it would be sent lossily while the video
    plays. Sampled (each column over at most ``SAMPLE_ROWS`` rows, each row over at most
    ``SAMPLE_ROWS`` columns): about 3 ms for a whole 1080p screen."""
    if box.w < 3 or box.h < 1:
        return None
    block = frame[box.y : box.y + box.h, box.x : box.x + box.w].view("<u4")[..., 0]
    values = block & np.uint32(0xFFFFFF)
    sampled = values[:: max(1, box.h // SAMPLE_ROWS)]
    mid = sampled[:, 1:-1]
    columns = ((sampled[:, :-2] != mid) & (mid != sampled[:, 2:])).mean(axis=0)
    kept = np.flatnonzero(columns >= EDGE_SHARE)
    if kept.size == 0:
        return None
    # Entry i of ``columns`` is the block's column i + 1 (between i and i + 2); the
    # box's own first and last columns go with their neighbours.
    x0, x1 = int(kept[0]) + 1, int(kept[-1]) + 2
    x0, x1 = 0 if x0 == 1 else x0, box.w if x1 == box.w - 1 else x1
    if x1 - x0 < 3:
        return None
    step = max(1, (x1 - x0) // SAMPLE_ROWS)
    cols = np.arange(x0, x1 - 2, step)
    a, b, c = values[:, cols], values[:, cols + 1], values[:, cols + 2]
    rows = np.flatnonzero(((a != b) & (b != c)).mean(axis=1) >= EDGE_SHARE)
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    return Rect(box.x + x0, box.y + y0, x1 - x0, y1 - y0)


def clusters(rects: Sequence[RectLike], gap: int = VIDEO_SLACK) -> list[tuple[Rect, int]]:
    """The changed rectangles grouped by nearness (less than ``gap`` pixels apart, through
    any chain of them): each group's bounding box and changed area, largest area first.

    Vectorised: the pairwise nearness matrix, then each rectangle takes the smallest
    label among its neighbours until nothing changes (connected components; the damage
    list holds at most a few hundred rectangles)."""
    if not rects:
        return []
    edges = np.array([(r.x, r.y, r.x + r.w, r.y + r.h) for r in rects], np.int64)
    x0, y0, x1, y1 = edges.T
    near = (
        (x0[:, None] < x1[None, :] + gap)
        & (x0[None, :] < x1[:, None] + gap)
        & (y0[:, None] < y1[None, :] + gap)
        & (y0[None, :] < y1[:, None] + gap)
    )
    n = len(edges)
    labels = np.arange(n)
    while True:
        spread = np.where(near, labels[None, :], n).min(axis=1)
        if np.array_equal(spread, labels):
            break
        labels = spread
    areas = (x1 - x0) * (y1 - y0)
    out = []
    for label in np.unique(labels):
        members = labels == label
        left, top = int(x0[members].min()), int(y0[members].min())
        box = Rect(left, top, int(x1[members].max()) - left, int(y1[members].max()) - top)
        out.append((box, min(int(areas[members].sum()), box.area)))
    out.sort(key=lambda group: -group[1])
    return out


def _inside(inner: Rect, outer: Rect, slack: int = 0) -> bool:
    grown = Rect(outer.x - slack, outer.y - slack, outer.w + 2 * slack, outer.h + 2 * slack)
    return grown.intersect(inner) == inner


@dataclass(slots=True)
class VideoDetector:
    """Finds, update by update, the region of the screen that is playing video.

    A video picture is a group of nearby changes (``clusters``) of at least
    ``VIDEO_MIN_AREA`` pixels, covering at least ``VIDEO_DENSITY`` of its bounding box,
    with photographic content; its box without the edges that are not photographic
    (``photo_bounds``) is the picture. ``VIDEO_FRAMES`` of them in a row, each within
    ``VIDEO_GAP`` of the last and inside the first one's box (grown by ``VIDEO_SLACK``:
    a picture that leaves a few rows unchanged is still the same video), make that box
    the video region. A full-screen video is the region of the whole screen.

    While a region plays, changes elsewhere (the text the technician reads beside it, a
    scroll there) go out as before; a small change inside it (a progress bar over the
    video, the pointer) goes out with the normal encoders and the region stays. A copy
    into the region (the page with the video scrolled, its window moved), a large change
    there that is not photographic (a window over it), or a pause longer than
    ``VIDEO_GAP`` end it. A picture larger than the region that covers it (the player
    grew, or the first pictures left a band unchanged) makes it the region at once; one
    that only overlaps it starts counting again from it. Moving pictures elsewhere are
    not looked at while a region has pictures (two videos at once: the first one
    counted goes as H.264, the other as before).
    """

    streak: int = 0
    #: Loop time of the last video picture.
    last: float | None = None
    active: bool = False
    #: The region the pictures are counted in; the video region while ``active``.
    region: Rect | None = None
    #: Times video mode was entered (for tests and diagnostics).
    started: int = field(default=0)

    def observe(
        self, now: float, rects: Sequence[RectLike], copies: Sequence[RectLike], frame: Frame
    ) -> Rect | None:
        """One update with changes at loop time ``now``: the region to send as one H.264
        picture, or None (everything with the normal encoders)."""
        if self.last is not None and now - self.last > VIDEO_GAP:
            self.stop()
        region = self.region
        if region is not None and any(region.intersect(c) for c in copies):
            self.stop()
            region = None
        picture = None
        for box, changed in clusters(rects):
            if region is not None and region.intersect(box) is None:
                continue  # elsewhere: the text beside the video
            if changed < VIDEO_MIN_AREA or changed < VIDEO_DENSITY * box.area:
                if region is None:
                    continue
                break  # a small change in the region: normal encoders, the video stays
            picture = photo_bounds(frame, box)
            if picture is None or picture.area < VIDEO_MIN_AREA or not photographic(frame, picture):
                picture = None
                if region is not None:
                    self.stop()  # a window over the video
            break
        if picture is None:
            return None
        self.last = now
        if region is not None and _inside(picture, region, VIDEO_SLACK):
            self.streak += 1
        elif self.active and region is not None and _inside(region, picture):
            self.region = picture  # grew over the region: a new geometry, still video
        else:  # the first picture, or one somewhere else: count again from it
            self.region, self.streak, self.active = picture, 1, False
        if not self.active and self.streak >= VIDEO_FRAMES:
            self.active = True
            self.started += 1
        return self.region if self.active else None

    def stop(self) -> None:
        """Out of video mode; the next run counts from zero."""
        self.streak = 0
        self.active = False
        self.last = None
        self.region = None


#: Video whose predicted pictures cost on average at least this share of its key frame
#: is not worth H.264: cuts, a slideshow, nothing to predict from; there Tight JPEG is
#: as small at the same PSNR and cheaper to encode (benchmarks/h264.py: 1080p pans cost
#: 0.01-0.07 of the key frame a picture, a new photo every picture 0.24-0.41). A small
#: region costs more per picture relative to its key frame: ``benchmarks/h264.py``'s
#: ``pan`` frames at 320x240 average 0.135 over 30 pictures (0.21 at most, 0.07 at
#: 640x360), its slideshow 0.27 there...
UNPREDICTABLE_SHARE = 0.2
#: ...judged after this many predicted pictures...
PREDICTED_PICTURES = 3
#: ...and then H.264 is not tried again for this many seconds.
UNPREDICTABLE_HOLD = 10.0


class H264Policy:
    """The agent's per-connection H.264 state: the detector and the video region's
    encoder (one context, for the region's geometry)."""

    def __init__(self) -> None:
        self.detector = VideoDetector()
        self.encoder = H264Encoder()
        self._was_active = False
        #: The geometry the encoder's context was opened for (noVNC keys contexts by it).
        self._region: Rect | None = None
        #: Updates sent with an H.264 picture.
        self.frames = 0
        self._hold_until = 0.0
        #: When each lossy area was first seen while the video played (``still_lossy``).
        self._lossy_seen: dict[Rect, float] = {}

    def choose(
        self,
        now: float,
        requested: Rect,
        rects: Sequence[RectLike],
        copies: Sequence[RectLike],
        frame: Frame,
        *,
        offered: bool,
        options: EncodeOptions,
        pixel_format: PixelFormat,
    ) -> Rect | None:
        """The region of this update to send as one H.264 picture, or None.

        The caller sends that region first (``wrap()`` encodes it) and the rest of the
        update (``rects`` outside it, ``copies``) as usual. H.264 only when the client
        listed it, asked for JPEG (a lossless setting never gets it), takes true colour
        at 32 bits, the request covers the region, and the detector says this update
        holds a picture of the video there. Leaving video mode or a new region geometry
        drops the context: the next picture starts a fresh one with a key frame.
        """
        usable = (
            offered
            and not self.encoder.failed
            and options.jpeg_quality is not None
            and pixel_format.true_colour
            and pixel_format.bits_per_pixel == 32
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
        region = None
        if usable:
            region = self.detector.observe(now, rects, copies, frame)
            if region is not None and requested.intersect(region) != region:
                region = None  # the client wants part of it only: normal encoders
        else:
            self.detector.stop()
        active = usable and self.detector.active
        if not active:
            self._lossy_seen = {}
        if not active or self.detector.region != self._region:
            if self._was_active:
                self.encoder.reset()
                self._region = None
                logger.debug("h264 video mode off after %d frames", self.frames)
            self._was_active = False
        if region is None:  # no video, or a small change between pictures
            return None
        if not self._was_active:
            logger.debug(
                "h264 video mode on for %dx%d at %d,%d", region.w, region.h, region.x, region.y
            )
        self._was_active = True
        self._region = region
        self.frames += 1
        return region

    def still_lossy(
        self,
        now: float,
        lossy: Sequence[Rect],
        region: Rect,
        requested: Rect,
        damage: Sequence[RectLike],
        delay: float,
    ) -> list[Rect]:
        """The lossy areas to resend losslessly with this update's video picture.

        The agent's lossless refresh waits for the whole screen to be still, which it
        never is while a video plays; but text beside the video that went as JPEG before
        the region was found (the first update, the pictures before video mode) must not
        stay blurred all along. So areas of ``lossy`` (the agent's list) that have stayed
        in it for ``delay`` while the video played, outside the region and this update's
        ``damage``, go now: the caller drops them from its list and sends their parts
        outside the region losslessly (the region's own pixels are the picture's)."""
        seen = {r: self._lossy_seen.get(r, now) for r in lossy}
        self._lossy_seen = seen
        return [
            r
            for r, since in seen.items()
            if now - since >= delay
            and requested.intersect(r) == r
            and not _inside(r, region)
            and not any(r.intersect(d) for d in damage)
        ]

    def wrap(self, normal: Encoder, region: RectLike, rest: int = 0, lossless: int = 0) -> Encoder:
        """The encoder for an update whose first rectangle is ``region`` (``choose()``'s):
        that one as H.264, every other one with ``normal`` (the connection's encoder,
        whose compression state the client shares); the ``lossless`` rectangles after
        the ``rest`` that follow the region without JPEG (``still_lossy``'s)."""
        return _FirstAsVideo(self.encoder, normal, (region.h, region.w), rest, lossless)

    def reset(self) -> None:
        """The screen changed size: forget the detector's streak and the context."""
        self.detector = VideoDetector(started=self.detector.started)
        self.encoder.reset()
        self._was_active = False
        self._region = None
        self._lossy_seen = {}


class _FirstAsVideo:
    """An update's encoder: the first rectangle (the video region, which the agent puts
    first) as H.264, the rest with the normal encoder. ``PendingUpdate`` encodes its
    rectangles in order and hands each encoder only the pixels, so the position is the
    order; the size is checked, and a mismatch sends everything the normal way."""

    def __init__(
        self,
        video: H264Encoder,
        normal: Encoder,
        shape: tuple[int, int],
        rest: int = 0,
        lossless: int = 0,
    ) -> None:
        self.code = normal.code
        self._video: H264Encoder | None = video
        self._normal = normal
        self._shape = shape
        self._lossless = range(1 + rest, 1 + rest + lossless)  # by position in the update
        self._calls = 0

    def encode(self, frame: Frame, pf: PixelFormat, options: EncodeOptions) -> list[EncodedRect]:
        video, self._video = self._video, None
        index, self._calls = self._calls, self._calls + 1
        if video is not None and frame.shape[:2] == self._shape:
            return video.encode(frame, pf, options)
        if video is not None:
            logger.warning("h264: the first rectangle is not the video region; sent as usual")
            video.reset()  # the client has not seen this picture: start again
        if index in self._lossless:
            options = replace(options, jpeg_quality=None)
        return self._normal.encode(frame, pf, options)


__all__ = [
    "H264",
    "RESET_ALL_CONTEXTS",
    "RESET_CONTEXT",
    "H264Encoder",
    "H264Policy",
    "VideoDetector",
    "available",
    "clusters",
    "crf_for",
    "photographic",
]
