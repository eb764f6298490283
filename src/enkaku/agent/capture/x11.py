"""Screen capture on X11: MIT-SHM grabs of the root window, XDamage change regions,
XFixes cursor shapes.

Event-driven use (``RFBService``): ``fileno()`` is the X connection's descriptor, which
becomes readable when the X server reports damage (NonEmpty level: one event per burst,
whatever the number of drawing requests), a new cursor shape or a change of monitors;
``events_queued()`` tells
whether such an event was already read into Xlib's queue by another call;
``changed_regions()`` takes the damaged rectangles and ``grab_rects()`` captures just those
(one ``XShmGetImage`` per rectangle into the same shared segment), so nothing is read
while the screen is still and a one-line change costs one line.

Frames come from ``XShmGetImage`` into a System V shared memory segment the X server
writes directly (no pixel copy through the socket); when the server cannot attach the
segment (a remote display, a container without shared IPC) we fall back to
``XGetImage``, which is several times slower at 1080p. The root geometry is re-read
on every grab, so a screen resize (RandR, ``xrandr --fb``) recreates the image.

Monitors: ``monitors()`` lists the screen's RandR 1.5 monitors (``XRRGetMonitors``: one per
active output, or as ``xrandr --setmonitor`` defined them); ``monitors_changed()`` says
whether the X server reported a change since the last call (RandR screen change
notifications, and the root window's ConfigureNotify that RandR sends when monitors are
added or removed).

Colour-mapped screens (8 bits a pixel): each grab is looked up in the screen's colour map,
read again (one round trip) with each poll of the damage and each whole-screen grab; a
change of the colour map makes ``changed_regions()`` return None (grab it all), and the
RFB service asks ``colours_changed()`` every ``colour_check_interval`` while the screen
is idle, since changing a colour map entry recolours the screen without any damage.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time

import numpy as np
import numpy.typing as npt

from enkaku.agent import x11lib
from enkaku.agent.capture.base import CaptureError, CursorImage, Rect, UnsupportedScreen
from enkaku.agent.capture.monitors import Monitor, order
from enkaku.agent.capture.xformat import (
    DEPTH_24,
    DIRECT_ENTRIES,
    ScreenFormat,
    channel_maps,
    palette,
)

logger = logging.getLogger(__name__)

# Beyond this many damage rectangles, report their bounding box: encoding hundreds of
# tiny rectangles costs the RFB layer more than re-sending the pixels between them.
MAX_REGIONS = 256

#: How often an idle colour-mapped screen's colour map is read again (a program that
#: changes a colour map entry changes every pixel of that value without drawing).
COLOUR_CHECK_INTERVAL = 1.0

#: How long after a window was mapped or unmapped ``recently_shown`` names it: a toolkit
#: draws a new window in the frames after it mapped it, and what a closed one covered is
#: redrawn as soon; a scroll inside it that soon after is sent as pixels.
SHOWN_FOR = 0.25


class _ShmImage:
    """An XImage backed by a shared memory segment attached to the X server."""

    def __init__(self, conn: x11lib.XConnection, width: int, height: int) -> None:
        self.conn = conn
        self.xext = conn.extension("Xext")
        self.libc = conn.extension("c")
        self.info = x11lib.XShmSegmentInfo(shmid=-1, shmaddr=None)
        visual = conn.x11.XDefaultVisual(conn.dpy, conn.screen)
        depth = conn.x11.XDefaultDepth(conn.dpy, conn.screen)
        self.image = self.xext.XShmCreateImage(
            conn.dpy, visual, depth, x11lib.ZPIXMAP, None, ctypes.byref(self.info),
            width, height,
        )  # fmt: skip
        if not self.image:
            raise CaptureError("XShmCreateImage failed")
        self.attached = False
        try:
            img = self.image.contents
            self.size = img.bytes_per_line * img.height
            shmid = self.libc.shmget(x11lib.IPC_PRIVATE, self.size, x11lib.IPC_CREAT | 0o600)
            if shmid < 0:
                raise CaptureError(f"shmget({self.size}) failed: errno {ctypes.get_errno()}")
            self.info.shmid = shmid
            addr = self.libc.shmat(shmid, None, 0)
            if addr is None or addr == ctypes.c_void_p(-1).value:
                raise CaptureError(f"shmat failed: errno {ctypes.get_errno()}")
            self.info.shmaddr = addr
            self.info.readOnly = 0
            img.data = addr
            conn.take_errors()
            ok = self.xext.XShmAttach(conn.dpy, ctypes.byref(self.info))
            errors = conn.sync_errors()
            # Mark for removal now: the segment lives while the server and we are
            # attached, and disappears by itself if either side dies.
            self.libc.shmctl(shmid, x11lib.IPC_RMID, None)
            if not ok or errors:
                raise CaptureError(
                    "the X server cannot attach our shared memory (remote display?): "
                    + (str(errors[0]) if errors else "XShmAttach failed")
                )
            self.attached = True
        except BaseException:
            self.close()
            raise

    def grab(self, root: int) -> bool:
        """Fill the segment from the root window; False when the server refused."""
        ok = self.xext.XShmGetImage(self.conn.dpy, root, self.image, 0, 0, x11lib.ALL_PLANES)
        errors = self.conn.take_errors()
        self.conn.check()
        return bool(ok) and not errors

    def grab_rect(
        self,
        root: int,
        rect: Rect,
        offset: int = 0,
        *,
        copy: bool = True,
        colours: npt.NDArray[np.uint32] | None = None,
    ) -> npt.NDArray[np.uint8] | None:
        """The pixels of ``rect``, written ``offset`` bytes into the segment: a copy, or
        with ``copy=False`` a view of the segment (valid until it is written again).

        The XImage is narrowed to the rectangle for the request: the server then writes
        ``rect.h`` rows of ``rect.w`` pixels, each padded to 32 bits (32 bpp rows need
        no padding: the rectangles lie one after another in the segment). ``colours``:
        the colour map of an indexed screen.
        """
        img = self.image.contents
        saved = img.width, img.height, img.bytes_per_line, img.data
        try:
            img.width, img.height = rect.w, rect.h
            img.bytes_per_line = ScreenFormat.of(img).bytes_per_line(rect.w, img.bitmap_pad)
            img.data = self.info.shmaddr + offset
            ok = self.xext.XShmGetImage(
                self.conn.dpy, root, self.image, rect.x, rect.y, x11lib.ALL_PLANES
            )
            errors = self.conn.take_errors()
            self.conn.check()
            if not ok or errors:
                return None
            return _image_to_array(img, colours) if copy else _image_view(img)
        finally:
            img.width, img.height, img.bytes_per_line, img.data = saved

    def close(self) -> None:
        """Detach from the server and free the segment and the XImage."""
        if self.attached and not self.conn.dead:
            self.xext.XShmDetach(self.conn.dpy, ctypes.byref(self.info))
            self.conn.x11.XSync(self.conn.dpy, 0)
            self.conn.take_errors()
        self.attached = False
        if self.info.shmaddr:
            self.libc.shmdt(self.info.shmaddr)
            self.info.shmaddr = None
        if self.info.shmid >= 0:
            self.libc.shmctl(self.info.shmid, x11lib.IPC_RMID, None)
            self.info.shmid = -1
        if self.image:
            self.image.contents.data = None  # not malloc'ed: XDestroyImage must not free it
            self.conn.x11.XDestroyImage(self.image)
            self.image = None


def _image_to_array(
    img: x11lib.XImage, colours: npt.NDArray[np.uint32] | None = None
) -> npt.NDArray[np.uint8]:
    """Copy a ZPixmap XImage out as an (h, w, 4) B, G, R, X array (widened when the
    screen's pixels are not 32-bit, looked up in ``colours`` when they are colour map
    indices, see :mod:`.xformat`)."""
    stride, h = img.bytes_per_line, img.height
    buf = (ctypes.c_uint8 * (stride * h)).from_address(img.data)
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(h, stride)
    return ScreenFormat.of(img).to_bgrx(rows, img.width, colours)


def _image_view(img: x11lib.XImage) -> npt.NDArray[np.uint8]:
    """A 32-bpp LSBFirst ZPixmap XImage's packed rows as an (h, w, 4) B, G, R, X view of
    its memory (writable, no copy)."""
    assert img.byte_order == x11lib.LSB_FIRST and img.bytes_per_line == img.width * 4
    buf = (ctypes.c_uint8 * (img.bytes_per_line * img.height)).from_address(img.data)
    return np.frombuffer(buf, dtype=np.uint8).reshape(img.height, img.width, 4)


class X11Capture:
    """``ScreenCapture`` for an X11 display (see the module docstring)."""

    def __init__(self, display: str | None = None, *, use_shm: bool = True) -> None:
        self._lock = threading.Lock()
        self._event_bases: dict[str, int] = {}
        self._cursor_events = False  # XFixes tells us of new cursor shapes
        self._cursor_changed = True
        self._damage_seen = False  # a DamageNotify taken by cursor(), not yet polled
        self._windows: dict[int, Rect] = {}  # top-level window -> its outer rectangle
        self._moved_from: dict[int, Rect] = {}  # moved since take_moves(): where it was
        self._shown: list[tuple[float, Rect]] = []  # (when, where) mapped or unmapped
        self._monitors_changed = False  # RandR or the root's geometry changed
        self._randr = False  # RandR 1.5 (monitors) is there
        self._root_events = False  # the root's ConfigureNotify tells us of resizes
        with x11lib.SETUP_LOCK:  # see there: opening and extension set-up
            self._conn = x11lib.XConnection(display, CaptureError)
            try:
                self._width, self._height, _depth = x11lib.geometry(self._conn, self._conn.root)
                self._colormap = self._setup_colours()
                self._shm: _ShmImage | None = None
                self._use_shm = use_shm and self._shm_available()
                self._damage = 0
                self._region = 0
                self._damage_primed = False
                self._resized = False
                self._setup_damage()
                self._has_fixes = self._query("Xfixes", "XFixesQueryExtension")
                self._setup_randr()
                self._cursor: CursorImage | None = None
                #: What was read from the X server, for tests and benchmarks: grabs of the
                #: whole screen, rectangle grabs, and their pixels.
                self.full_grabs = 0
                self.rect_grabs = 0
                self.pixels_grabbed = 0
            except BaseException:
                if getattr(self, "_shm", None) is not None:
                    self._shm.close()  # type: ignore[union-attr]
                self._conn.close()
                raise
        logger.debug(
            "X11 capture on %s: %dx%d, shm=%s, damage=%s, xfixes=%s",
            self._conn.name, self._width, self._height, self._use_shm,
            bool(self._damage), self._has_fixes,
        )  # fmt: skip

    # -- setup ------------------------------------------------------------------------

    def _setup_colours(self) -> int:
        """The colour map to read pixel values through (0: the screen's pixels are
        colours); UnsupportedScreen for a screen whose colours the agent cannot read."""
        x11 = self._conn.x11
        visual = ctypes.cast(
            x11.XDefaultVisual(self._conn.dpy, self._conn.screen),
            ctypes.POINTER(x11lib.Visual),
        ).contents
        self._colours: npt.NDArray[np.uint32] | None = None
        self._colours_changed = False
        if visual.c_class == x11lib.TRUE_COLOR:
            return 0
        # Colour-mapped (one map, pixel values its indices) or DirectColor (each channel
        # of a pixel an index into that channel's map: gamma ramps, colour correction).
        self._direct = visual.c_class == x11lib.DIRECT_COLOR
        masks = (visual.red_mask, visual.green_mask, visual.blue_mask)
        if self._direct and any(m >> ((m & -m).bit_length() - 1) >= DIRECT_ENTRIES for m in masks):
            raise UnsupportedScreen(
                "the X screen uses DirectColor with more than 10 bits a channel, which "
                f"enkaku cannot show: {DEPTH_24}"
            )
        size = DIRECT_ENTRIES if self._direct else 256
        self._entries = max(1, min(size, visual.map_entries))
        # The query's entries, pixel values set once: each read fills in their colours.
        # DirectColor: entry i asks for index i of each channel's map at once.
        self._defs = (x11lib.XColor * size)()
        shifts = [(m & -m).bit_length() - 1 for m in masks]
        for i in range(size):
            self._defs[i].pixel = (
                sum((i << s) & m for s, m in zip(shifts, masks, strict=True)) if self._direct else i
            )
        colormap = int(x11.XDefaultColormap(self._conn.dpy, self._conn.screen))
        self._colours = self._read_colours(colormap)
        return colormap

    def _read_colours(self, colormap: int) -> npt.NDArray[np.uint32]:
        """The colour map's entries (one round trip): as :func:`.xformat.palette` words
        on a colour-mapped screen, as :func:`.xformat.channel_maps` on a DirectColor
        one; pixel values (channel values) past its entries read as black."""
        defs = self._defs
        self._conn.x11.XQueryColors(self._conn.dpy, colormap, defs, self._entries)
        self._conn.check()
        raw = np.frombuffer(ctypes.string_at(defs, ctypes.sizeof(defs)), dtype=np.dtype(
            [("pixel", "u8"), ("red", "u2"), ("green", "u2"), ("blue", "u2"), ("pad", "V2")]
        ))  # fmt: skip
        if self._direct:
            return channel_maps(raw["red"], raw["green"], raw["blue"], self._entries)
        words = palette(raw["red"], raw["green"], raw["blue"])
        words[self._entries :] = 0
        return words

    def _refresh_colours(self) -> None:
        """Read an indexed screen's colour map again; remember whether it changed (the
        frame kept from earlier pixels is then wrong everywhere, not only where the
        X server reports damage: changing a colour map draws nothing)."""
        if not self._colormap:
            return
        colours = self._read_colours(self._colormap)
        assert self._colours is not None  # read at set-up on a colour-mapped screen
        if not np.array_equal(colours, self._colours):
            self._colours_changed = True
            self._colours = colours

    @property
    def colour_check_interval(self) -> float | None:
        """Seconds between checks of the colour map while the screen is idle (None: the
        screen's pixels are colours, nothing to check): see ``colours_changed``."""
        return COLOUR_CHECK_INTERVAL if self._colormap else None

    def colours_changed(self) -> bool:
        """Whether the colour map of an indexed screen changed since it was last read
        (one round trip). The next ``changed_regions`` then returns None: grab it all."""
        with self._lock:
            self._check_open()
            self._refresh_colours()
            return self._colours_changed

    def _query(self, lib_name: str, fn_name: str) -> bool:
        try:
            lib = self._conn.extension(lib_name)
        except CaptureError as exc:
            logger.debug("%s", exc)
            return False
        event_base, error_base = ctypes.c_int(), ctypes.c_int()
        ok = bool(
            getattr(lib, fn_name)(
                self._conn.dpy, ctypes.byref(event_base), ctypes.byref(error_base)
            )
        )
        self._event_bases[lib_name] = event_base.value
        return ok

    def _shm_available(self) -> bool:
        try:
            xext = self._conn.extension("Xext")
        except CaptureError as exc:
            logger.debug("MIT-SHM unavailable, using XGetImage: %s", exc)
            return False
        if not xext.XShmQueryExtension(self._conn.dpy):
            logger.debug("MIT-SHM extension missing on %s, using XGetImage", self._conn.name)
            return False
        try:
            self._shm = _ShmImage(self._conn, self._width, self._height)
        except CaptureError as exc:
            logger.debug("MIT-SHM unusable on %s, using XGetImage: %s", self._conn.name, exc)
            return False
        ScreenFormat.of(self._shm.image.contents)  # CaptureError: a screen we cannot show
        return True

    def _setup_damage(self) -> None:
        if not self._query("Xdamage", "XDamageQueryExtension"):
            logger.debug("DAMAGE extension missing: changed_regions() will return None")
            return
        if not self._query("Xfixes", "XFixesQueryExtension"):
            logger.debug("XFIXES extension missing: changed_regions() will return None")
            return
        damage = self._conn.extension("Xdamage")
        fixes = self._conn.extension("Xfixes")
        # NonEmpty: one event when damage appears; the rectangles are fetched on demand
        # with XDamageSubtract into a region, whatever the number of drawing requests.
        self._damage = damage.XDamageCreate(
            self._conn.dpy, self._conn.root, x11lib.DAMAGE_REPORT_NON_EMPTY
        )
        self._region = fixes.XFixesCreateRegion(self._conn.dpy, None, 0)
        # New cursor shapes arrive as events too, so an event-driven owner learns of them.
        fixes.XFixesSelectCursorInput(
            self._conn.dpy, self._conn.root, x11lib.XFIXES_DISPLAY_CURSOR_NOTIFY_MASK
        )
        # Top-level windows created, moved, resized, destroyed: a moved window becomes a
        # copy of its old position (see take_moves()).
        self._conn.x11.XSelectInput(
            self._conn.dpy, self._conn.root, x11lib.SUBSTRUCTURE_NOTIFY_MASK
        )
        if self._conn.sync_errors():
            self._damage = self._region = 0
        else:
            self._cursor_events = True

    def _setup_randr(self) -> None:
        if not self._query("Xrandr", "XRRQueryExtension"):
            logger.debug("RANDR extension missing: one monitor, the whole screen")
            return
        xrandr = self._conn.extension("Xrandr")
        major, minor = ctypes.c_int(), ctypes.c_int()
        if not xrandr.XRRQueryVersion(self._conn.dpy, ctypes.byref(major), ctypes.byref(minor)):
            return
        if (major.value, minor.value) < (1, 5) or not hasattr(xrandr, "XRRGetMonitors"):
            logger.debug("RANDR %d.%d has no monitors: one, the whole screen", major.value,
                         minor.value)  # fmt: skip
            return
        self._randr = True
        if self._damage:
            # Event-driven: be told of new monitors and resolutions. RandR announces a
            # monitor added or removed only as a ConfigureNotify of the root window.
            xrandr.XRRSelectInput(
                self._conn.dpy, self._conn.root,
                x11lib.RR_SCREEN_CHANGE_NOTIFY_MASK | x11lib.RR_CRTC_CHANGE_NOTIFY_MASK
                | x11lib.RR_OUTPUT_CHANGE_NOTIFY_MASK,
            )  # fmt: skip
            self._conn.x11.XSelectInput(
                self._conn.dpy, self._conn.root,
                x11lib.SUBSTRUCTURE_NOTIFY_MASK | x11lib.STRUCTURE_NOTIFY_MASK,
            )  # fmt: skip
            if self._conn.sync_errors():
                logger.debug("RANDR events unavailable: monitor changes seen on resize only")
            else:
                self._root_events = True

    # -- ScreenCapture ------------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        """Current (width, height) of the screen, as of the last grab."""
        return self._width, self._height

    @property
    def uses_shm(self) -> bool:
        """Whether grabs go through MIT-SHM (False: the XGetImage fallback)."""
        return self._use_shm

    def grab(self) -> npt.NDArray[np.uint8]:
        """Capture the whole root window now as an (h, w, 4) BGRX array."""
        with self._lock:
            self._check_open()
            self._refresh_colours()
            self._colours_changed = False  # this grab reads every pixel anew
            for _attempt in range(3):
                width, height, _depth = x11lib.geometry(self._conn, self._conn.root)
                if (width, height) != (self._width, self._height):
                    logger.debug("screen resized to %dx%d", width, height)
                    self._width, self._height = width, height
                    self._resized = True
                    if self._shm is not None:
                        self._shm.close()
                        self._shm = None
                frame = self._grab_shm() if self._use_shm else self._grab_plain()
                if frame is not None:
                    self.full_grabs += 1
                    self.pixels_grabbed += width * height
                    return frame
                # A resize between XGetGeometry and the grab makes it fail (BadMatch).
            raise CaptureError(f"cannot capture the screen of {self._conn.name!r}")

    def _grab_shm(self) -> npt.NDArray[np.uint8] | None:
        if self._shm is None:
            self._shm = _ShmImage(self._conn, self._width, self._height)
        if not self._shm.grab(self._conn.root):
            return None
        return _image_to_array(self._shm.image.contents, self._colours)

    def fileno(self) -> int | None:
        """The X connection's descriptor (readable when damage or a cursor change was
        reported), or None without the DAMAGE extension (then poll ``changed_regions``)."""
        if not self._damage or not self._conn.dpy:
            return None
        return int(self._conn.x11.XConnectionNumber(self._conn.dpy))

    def events_queued(self) -> bool:
        """Whether damage or cursor events wait in Xlib's queue (read during another
        call, so ``fileno()`` will not turn readable for them). No I/O."""
        with self._lock:
            if not self._conn.dpy or self._conn.dead:
                return False
            return (
                self._damage_seen
                or self._monitors_changed
                or bool(self._conn.x11.XEventsQueued(self._conn.dpy, x11lib.QUEUED_ALREADY))
            )

    def grab_rects(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        """The current pixels of each rectangle, as (h, w, 4) BGRX copies; None when the
        screen size changed (``grab()`` the whole screen then)."""
        return self._grab_rects(rects, shared=False)

    def grab_rects_shared(self, rects: list[Rect]) -> list[npt.NDArray[np.uint8]] | None:
        """As ``grab_rects``, but the arrays are writable views of the shared memory
        segment, laid out one after another in it, where they fit and the server is
        LSBFirst (else copies): they hold until the next grab of any kind on this
        capture. For a caller that compares them and copies what changed at once (the
        RFB service's damage step): it saves copying every damaged pixel twice."""
        return self._grab_rects(rects, shared=True)

    def _grab_rects(self, rects: list[Rect], *, shared: bool) -> list[npt.NDArray[np.uint8]] | None:
        with self._lock:
            self._check_open()
            width, height = self._width, self._height
            if not self._root_events or self._monitors_changed:
                # No event tells of a resize, or one just did: ask (one round trip).
                # Otherwise a resize after the events were read makes a rectangle past
                # the new edge fail below (BadMatch), and the owner grabs the screen.
                width, height, _depth = x11lib.geometry(self._conn, self._conn.root)
                if (width, height) != (self._width, self._height):
                    return None
            shm = self._shm if self._use_shm else None
            if shared and (
                shm is None
                or not ScreenFormat.of(shm.image.contents).viewable
                or self._colours is not None  # DirectColor: looked up, not viewed
                or sum(r.w * r.h for r in rects) * 4 > shm.size
            ):
                shared = False
            parts: list[npt.NDArray[np.uint8]] = []
            offset = 0
            for rect in rects:
                clipped = self._clip(rect.x, rect.y, rect.w, rect.h)
                if clipped != rect:
                    raise ValueError(f"{rect} is not inside the {width}x{height} screen")
                if shm is not None:
                    part = shm.grab_rect(
                        self._conn.root, rect, offset, copy=not shared, colours=self._colours
                    )
                    offset += rect.w * rect.h * 4 if shared else 0
                else:
                    part = self._grab_plain(rect)
                if part is None:
                    return None  # a resize raced with the grab
                parts.append(part)
                self.rect_grabs += 1
                self.pixels_grabbed += rect.w * rect.h
            return parts

    def _grab_plain(self, rect: Rect | None = None) -> npt.NDArray[np.uint8] | None:
        x11 = self._conn.x11
        r = rect if rect is not None else Rect(0, 0, self._width, self._height)
        image = x11.XGetImage(
            self._conn.dpy, self._conn.root, r.x, r.y, r.w, r.h,
            x11lib.ALL_PLANES, x11lib.ZPIXMAP,
        )  # fmt: skip
        errors = self._conn.take_errors()
        self._conn.check()
        if not image or errors:
            if image:
                x11.XDestroyImage(image)
            return None
        try:
            return _image_to_array(image.contents, self._colours)
        finally:
            x11.XDestroyImage(image)

    def changed_regions(self) -> list[Rect] | None:
        """Rectangles damaged since the previous call; None at first, after a resize,
        or without the DAMAGE extension."""
        with self._lock:
            self._check_open()
            if not self._damage:
                return None
            x11 = self._conn.x11
            dpy = self._conn.dpy
            self._read_events()
            self._damage_seen = False
            self._conn.check()
            self._conn.extension("Xdamage").XDamageSubtract(dpy, self._damage, 0, self._region)
            count = ctypes.c_int()
            rects_p = self._conn.extension("Xfixes").XFixesFetchRegion(
                dpy, self._region, ctypes.byref(count)
            )
            self._conn.check()
            rects: list[Rect] = []
            if rects_p:
                try:
                    for i in range(count.value):
                        r = rects_p[i]
                        rect = self._clip(r.x, r.y, r.width, r.height)
                        if rect is not None:
                            rects.append(rect)
                finally:
                    x11.XFree(rects_p)
            self._refresh_colours()
            if not self._damage_primed or self._resized or self._colours_changed:
                self._damage_primed = True
                self._resized = False
                self._colours_changed = False
                return None
            if len(rects) > MAX_REGIONS:
                rects = [_bounding_box(rects)]
            return rects

    def _read_events(self) -> None:
        """Take the queued events: DamageNotify carries nothing we need (the damage is
        read with XDamageSubtract), CursorNotify says the shape changed."""
        x11, dpy = self._conn.x11, self._conn.dpy
        event = x11lib.XEvent()
        cursor_notify = self._event_bases.get("Xfixes", -1) + x11lib.XFIXES_CURSOR_NOTIFY
        while x11.XPending(dpy):  # flushes and reads what is there; never blocks
            x11.XNextEvent(dpy, ctypes.byref(event))
            if event.type == cursor_notify:
                self._cursor_changed = True
            elif event.type in (x11lib.CONFIGURE_NOTIFY, x11lib.CREATE_NOTIFY):
                if not self._window_geometry(event):
                    self._monitors_changed = self._damage_seen = True  # the root: RandR
            elif event.type - self._event_bases.get("Xrandr", -1000) in (
                x11lib.RR_SCREEN_CHANGE_NOTIFY, x11lib.RR_NOTIFY,
            ):  # fmt: skip
                self._monitors_changed = self._damage_seen = True
            elif event.type == x11lib.DESTROY_NOTIFY:
                window = ctypes.cast(ctypes.byref(event), ctypes.POINTER(x11lib.XConfigureEvent))
                self._windows.pop(window.contents.window, None)  # same offset in both
                self._moved_from.pop(window.contents.window, None)
            elif event.type in (x11lib.MAP_NOTIFY, x11lib.UNMAP_NOTIFY):
                # XMapEvent and XUnmapEvent have ``window`` where XConfigureEvent has it.
                window = ctypes.cast(ctypes.byref(event), ctypes.POINTER(x11lib.XConfigureEvent))
                shown = self._windows.get(window.contents.window)
                if shown is not None:
                    self._shown.append((time.monotonic(), shown))
                    del self._shown[:-MAX_REGIONS]
                self._damage_seen = True
            else:
                self._damage_seen = True
        self._conn.check()

    def _window_geometry(self, event: x11lib.XEvent) -> bool:
        """Note a top-level window's geometry; False for the root window's own event."""
        ev = ctypes.cast(ctypes.byref(event), ctypes.POINTER(x11lib.XConfigureEvent)).contents
        if ev.window == self._conn.root:
            return False
        bw = ev.border_width
        rect = Rect(ev.x, ev.y, ev.width + 2 * bw, ev.height + 2 * bw)
        old = self._windows.get(ev.window)
        self._windows[ev.window] = rect
        if (
            event.type == x11lib.CONFIGURE_NOTIFY
            and old is not None
            and (old.w, old.h) == (rect.w, rect.h)
            and (old.x, old.y) != (rect.x, rect.y)
        ):
            self._moved_from.setdefault(ev.window, old)
        elif old is not None and (old.w, old.h) != (rect.w, rect.h):
            self._moved_from.pop(ev.window, None)  # resized: not a plain move
        return True

    def take_moves(self) -> list[tuple[Rect, Rect]]:
        """Top-level windows moved (same size) since the last call, as (where it was,
        where it is) outer rectangles, as the window manager or the program set them.
        Call after ``changed_regions()``, which reads the events."""
        with self._lock:
            moves = [
                (old, self._windows[w])
                for w, old in self._moved_from.items()
                if w in self._windows and self._windows[w] != old
            ]
            self._moved_from.clear()
            return moves

    def recently_shown(self) -> list[Rect]:
        """Outer rectangles of top-level windows mapped or unmapped (a menu, a tooltip,
        a dialog opening or closing) in the last ``SHOWN_FOR`` seconds, where known:
        what is drawn there meanwhile is that window or what it covered, new pixels
        rather than moved ones, so the damage step need not search them for copies (the
        application draws a window after it is mapped, often in a later poll). Call
        after ``changed_regions()``, which reads the events."""
        with self._lock:
            since = time.monotonic() - SHOWN_FOR
            self._shown = [(t, r) for t, r in self._shown if t >= since]
            return [r for _t, r in self._shown]

    def monitors(self) -> list[Monitor]:
        """The screen's monitors, numbered as ``monitors.order()`` does; one covering the
        whole screen without RandR 1.5. Reads the screen size too (one round trip more)."""
        with self._lock:
            self._check_open()
            width, height, _depth = x11lib.geometry(self._conn, self._conn.root)
            whole = [Monitor("screen", Rect(0, 0, width, height), True)]
            if not self._randr:
                return whole
            x11, xrandr = self._conn.x11, self._conn.extension("Xrandr")
            count = ctypes.c_int()
            infos = xrandr.XRRGetMonitors(self._conn.dpy, self._conn.root, 1, ctypes.byref(count))
            self._conn.take_errors()
            self._conn.check()
            if not infos:
                return whole
            found: list[Monitor] = []
            try:
                for i in range(count.value):
                    info = infos[i]
                    name_p = x11.XGetAtomName(self._conn.dpy, info.name)
                    name = ""
                    if name_p:
                        name = (ctypes.string_at(name_p) or b"").decode(errors="replace")
                        x11.XFree(name_p)
                    rect = Rect(info.x, info.y, info.width, info.height)
                    found.append(Monitor(name, rect, bool(info.primary)))
            finally:
                xrandr.XRRFreeMonitors(infos)
            return order(found, width, height) or whole

    def screen_size(self) -> tuple[int, int]:
        """The screen's (width, height) now (one round trip; ``size`` is the last grab's)."""
        with self._lock:
            self._check_open()
            width, height, _depth = x11lib.geometry(self._conn, self._conn.root)
            return width, height

    def monitors_changed(self) -> bool:
        """Whether the X server reported a monitor or resolution change since the last
        call. No I/O: the events are read by ``changed_regions()`` and ``cursor()``, and
        one read there also makes ``events_queued()`` true, so an event-driven owner
        polls again and asks this first."""
        with self._lock:
            changed, self._monitors_changed = self._monitors_changed, False
            return changed

    def _clip(self, x: int, y: int, w: int, h: int) -> Rect | None:
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self._width), min(y + h, self._height)
        if x1 <= x0 or y1 <= y0:
            return None
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def cursor(self) -> CursorImage | None:
        """The pointer shape as straight-alpha BGRA, or None without XFIXES."""
        with self._lock:
            self._check_open()
            if not self._has_fixes:
                return None
            if self._cursor_events:
                self._read_events()  # damage seen here is remembered for events_queued()
            if self._cursor is not None and self._cursor_events and not self._cursor_changed:
                return self._cursor  # no CursorNotify since: the same shape
            self._cursor_changed = False
            fixes = self._conn.extension("Xfixes")
            image_p = fixes.XFixesGetCursorImage(self._conn.dpy)
            self._conn.take_errors()
            self._conn.check()
            if not image_p:
                return None
            try:
                ci = image_p.contents
                if self._cursor is not None and self._cursor.serial == ci.cursor_serial:
                    return self._cursor
                self._cursor = _convert_cursor(ci)
                return self._cursor
            finally:
                self._conn.x11.XFree(image_p)

    def close(self) -> None:
        """Release the shared memory, the damage object and the display connection."""
        with self._lock, x11lib.SETUP_LOCK:
            if not self._conn.dpy:
                return
            if self._shm is not None:
                self._shm.close()
                self._shm = None
            if not self._conn.dead:
                if self._damage:
                    self._conn.extension("Xdamage").XDamageDestroy(self._conn.dpy, self._damage)
                if self._region:
                    self._conn.extension("Xfixes").XFixesDestroyRegion(self._conn.dpy, self._region)
            self._damage = self._region = 0
            self._conn.close()

    def __enter__(self) -> X11Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if not self._conn.dpy:
            raise CaptureError("X11Capture is closed")
        self._conn.check()


def _bounding_box(rects: list[Rect]) -> Rect:
    x0 = min(r.x for r in rects)
    y0 = min(r.y for r in rects)
    x1 = max(r.x + r.w for r in rects)
    y1 = max(r.y + r.h for r in rects)
    return Rect(x0, y0, x1 - x0, y1 - y0)


def _convert_cursor(ci: x11lib.XFixesCursorImage) -> CursorImage:
    """XFixes premultiplied ARGB in unsigned longs -> straight-alpha BGRA bytes."""
    w, h = ci.width, ci.height
    if w == 0 or h == 0:
        pixels = np.zeros((0, 0, 4), dtype=np.uint8)
    else:
        longs = np.ctypeslib.as_array(ci.pixels, shape=(h * w,))
        # Little-endian 0xAARRGGBB words are the bytes B, G, R, A on any host.
        bgra = longs.astype("<u4").view(np.uint8).reshape(h, w, 4).astype(np.uint16)
        alpha = bgra[:, :, 3:4]
        safe = np.where(alpha == 0, 1, alpha)
        color = np.minimum((bgra[:, :, :3] * 255 + safe // 2) // safe, 255)
        color = np.where(alpha == 0, 0, color)
        pixels = np.concatenate([color, alpha], axis=2).astype(np.uint8)
    return CursorImage(pixels=pixels, hotspot_x=ci.xhot, hotspot_y=ci.yhot, serial=ci.cursor_serial)
