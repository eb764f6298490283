"""Thin ctypes bindings to Xlib and the X extensions the agent's X11 backends use.

Only the calls ``capture/x11.py`` and ``input/x11.py`` need are bound, each with full
``argtypes``/``restype`` (the defaults truncate 64-bit pointers). Libraries load lazily,
so importing this module never fails; a missing library raises the caller's error class
(``CaptureError`` or ``InputError``) naming the Debian package that provides it.

Xlib's default handlers end the process: a protocol error (BadMatch after a screen
resize, say) calls ``exit(1)``, and so does a lost connection. ``XConnection`` installs a
process-wide error handler that records errors for the displays it opened (and chains to
the previous handler for everyone else's, e.g. Tk's), and a per-display I/O-error exit
handler (libX11 >= 1.8) that marks the connection dead instead of exiting.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int,
    c_long,
    c_short,
    c_size_t,
    c_ubyte,
    c_uint,
    c_ulong,
    c_ushort,
    c_void_p,
)
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# Xlib constants (X.h, Xlib.h, XShm.h, Xdamage.h).
ZPIXMAP = 2
ALL_PLANES = 0xFFFFFFFFFFFFFFFF if ctypes.sizeof(c_ulong) == 8 else 0xFFFFFFFF
LSB_FIRST = 0
SHIFT_MASK = 1 << 0
LOCK_MASK = 1 << 1
MAPPING_NOTIFY = 34
NO_SYMBOL = 0
DAMAGE_REPORT_NON_EMPTY = 3
QUEUED_ALREADY = 0  # XEventsQueued mode: count what Xlib already read, no I/O
XFIXES_DISPLAY_CURSOR_NOTIFY_MASK = 1
XFIXES_CURSOR_NOTIFY = 1  # event number, relative to the XFIXES event base
CREATE_NOTIFY = 16
DESTROY_NOTIFY = 17
UNMAP_NOTIFY = 18
MAP_NOTIFY = 19
CONFIGURE_NOTIFY = 22
STRUCTURE_NOTIFY_MASK = 1 << 17
SUBSTRUCTURE_NOTIFY_MASK = 1 << 19
# Xrandr.h: XRRSelectInput masks and event numbers (relative to the RANDR event base).
RR_SCREEN_CHANGE_NOTIFY_MASK = 1 << 0
RR_CRTC_CHANGE_NOTIFY_MASK = 1 << 1
RR_OUTPUT_CHANGE_NOTIFY_MASK = 1 << 2
RR_SCREEN_CHANGE_NOTIFY = 0
RR_NOTIFY = 1
IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0
# X.h visual classes.
STATIC_GRAY, GRAY_SCALE, STATIC_COLOR, PSEUDO_COLOR, TRUE_COLOR, DIRECT_COLOR = range(6)

# X protocol error codes worth naming in messages (X.h).
ERROR_NAMES = {
    1: "BadRequest", 2: "BadValue", 3: "BadWindow", 4: "BadPixmap", 5: "BadAtom",
    6: "BadCursor", 7: "BadFont", 8: "BadMatch", 9: "BadDrawable", 10: "BadAccess",
    11: "BadAlloc", 12: "BadColor", 13: "BadGC", 14: "BadIDChoice", 15: "BadName",
    16: "BadLength", 17: "BadImplementation",
}  # fmt: skip

Display = c_void_p  # opaque Display*
XID = c_ulong


class XImage(Structure):
    """Xlib.h ``XImage``; ``f`` is the six-pointer function table we never call."""

    _fields_ = [
        ("width", c_int),
        ("height", c_int),
        ("xoffset", c_int),
        ("format", c_int),
        ("data", c_void_p),
        ("byte_order", c_int),
        ("bitmap_unit", c_int),
        ("bitmap_bit_order", c_int),
        ("bitmap_pad", c_int),
        ("depth", c_int),
        ("bytes_per_line", c_int),
        ("bits_per_pixel", c_int),
        ("red_mask", c_ulong),
        ("green_mask", c_ulong),
        ("blue_mask", c_ulong),
        ("obdata", c_void_p),
        ("f", c_void_p * 6),
    ]


class Visual(Structure):
    """Xlib.h ``Visual``: its ``class`` (``c_class`` here) says how pixel values map to
    colours."""

    _fields_ = [
        ("ext_data", c_void_p),
        ("visualid", c_ulong),
        ("c_class", c_int),
        ("red_mask", c_ulong),
        ("green_mask", c_ulong),
        ("blue_mask", c_ulong),
        ("bits_per_rgb", c_int),
        ("map_entries", c_int),
    ]


class XColor(Structure):
    """Xlib.h ``XColor``: a colour map entry, 16 bits a channel."""

    _fields_ = [
        ("pixel", c_ulong),
        ("red", c_ushort),
        ("green", c_ushort),
        ("blue", c_ushort),
        ("flags", c_char),
        ("pad", c_char),
    ]


class XShmSegmentInfo(Structure):
    """XShm.h ``XShmSegmentInfo``."""

    _fields_ = [
        ("shmseg", c_ulong),
        ("shmid", c_int),
        ("shmaddr", c_void_p),
        ("readOnly", c_int),
    ]


class XErrorEvent(Structure):
    """Xlib.h ``XErrorEvent``."""

    _fields_ = [
        ("type", c_int),
        ("display", c_void_p),
        ("resourceid", c_ulong),
        ("serial", c_ulong),
        ("error_code", c_ubyte),
        ("request_code", c_ubyte),
        ("minor_code", c_ubyte),
    ]


class XConfigureEvent(Structure):
    """Xlib.h ``XConfigureEvent``; ``XCreateWindowEvent`` has the same fields up to
    ``border_width`` (``parent`` where this has ``event``)."""

    _fields_ = [
        ("type", c_int),
        ("serial", c_ulong),
        ("send_event", c_int),
        ("display", c_void_p),
        ("event", c_ulong),
        ("window", c_ulong),
        ("x", c_int),
        ("y", c_int),
        ("width", c_int),
        ("height", c_int),
        ("border_width", c_int),
    ]


class XEvent(Structure):
    """Xlib.h ``XEvent`` union: the type, then padding to 24 longs."""

    _fields_ = [("type", c_int), ("pad", c_long * 24)]


class XRectangle(Structure):
    """Xlib.h ``XRectangle``."""

    _fields_ = [("x", c_short), ("y", c_short), ("width", c_ushort), ("height", c_ushort)]


class XModifierKeymap(Structure):
    """Xlib.h ``XModifierKeymap``: 8 modifiers × max_keypermod keycodes."""

    _fields_ = [("max_keypermod", c_int), ("modifiermap", POINTER(c_ubyte))]


class XFixesCursorImage(Structure):
    """Xfixes.h ``XFixesCursorImage``; pixels are premultiplied ARGB in unsigned longs."""

    _fields_ = [
        ("x", c_short),
        ("y", c_short),
        ("width", c_ushort),
        ("height", c_ushort),
        ("xhot", c_ushort),
        ("yhot", c_ushort),
        ("cursor_serial", c_ulong),
        ("pixels", POINTER(c_ulong)),
        ("atom", c_ulong),
        ("name", c_char_p),
    ]


class XRRMonitorInfo(Structure):
    """Xrandr.h ``XRRMonitorInfo`` (RandR 1.5 monitors: named screen areas)."""

    _fields_ = [
        ("name", c_ulong),  # an Atom
        ("primary", c_int),
        ("automatic", c_int),
        ("noutput", c_int),
        ("x", c_int),
        ("y", c_int),
        ("width", c_int),
        ("height", c_int),
        ("mwidth", c_int),
        ("mheight", c_int),
        ("outputs", POINTER(c_ulong)),
    ]


ERROR_HANDLER = CFUNCTYPE(c_int, c_void_p, POINTER(XErrorEvent))
IO_ERROR_HANDLER = CFUNCTYPE(c_int, c_void_p)
IO_ERROR_EXIT_HANDLER = CFUNCTYPE(None, c_void_p, c_void_p)

# (soname, Debian package, prototypes): name -> (restype, argtypes).
_P = POINTER
_LIBRARIES: dict[str, tuple[str, str, dict[str, tuple[Any, list[Any]]]]] = {
    "X11": ("libX11.so.6", "libx11-6", {
        "XInitThreads": (c_int, []),
        "XOpenDisplay": (c_void_p, [c_char_p]),
        "XCloseDisplay": (c_int, [Display]),
        "XDisplayString": (c_char_p, [Display]),
        "XDefaultRootWindow": (XID, [Display]),
        "XDefaultScreen": (c_int, [Display]),
        "XDefaultVisual": (c_void_p, [Display, c_int]),
        "XDefaultDepth": (c_int, [Display, c_int]),
        "XDefaultColormap": (XID, [Display, c_int]),
        "XQueryColors": (c_int, [Display, XID, c_void_p, c_int]),
        "XGetGeometry": (c_int, [Display, XID, _P(XID), _P(c_int), _P(c_int), _P(c_uint),
                                 _P(c_uint), _P(c_uint), _P(c_uint)]),
        "XGetImage": (_P(XImage), [Display, XID, c_int, c_int, c_uint, c_uint, c_ulong,
                                   c_int]),
        "XDestroyImage": (c_int, [_P(XImage)]),
        "XSync": (c_int, [Display, c_int]),
        "XFlush": (c_int, [Display]),
        "XPending": (c_int, [Display]),
        "XEventsQueued": (c_int, [Display, c_int]),
        "XConnectionNumber": (c_int, [Display]),
        "XNextEvent": (c_int, [Display, _P(XEvent)]),
        "XSelectInput": (c_int, [Display, XID, c_long]),
        "XFree": (c_int, [c_void_p]),
        "XSetErrorHandler": (c_void_p, [c_void_p]),
        "XSetIOErrorHandler": (c_void_p, [c_void_p]),
        "XGetErrorText": (c_int, [Display, c_int, c_char_p, c_int]),
        "XDisplayKeycodes": (c_int, [Display, _P(c_int), _P(c_int)]),
        "XGetKeyboardMapping": (_P(c_ulong), [Display, c_ubyte, c_int, _P(c_int)]),
        "XChangeKeyboardMapping": (c_int, [Display, c_int, c_int, _P(c_ulong), c_int]),
        "XKeysymToKeycode": (c_ubyte, [Display, c_ulong]),
        "XGetModifierMapping": (_P(XModifierKeymap), [Display]),
        "XFreeModifiermap": (c_int, [_P(XModifierKeymap)]),
        "XQueryKeymap": (c_int, [Display, c_char * 32]),
        "XQueryPointer": (c_int, [Display, XID, _P(XID), _P(XID), _P(c_int), _P(c_int),
                                  _P(c_int), _P(c_int), _P(c_uint)]),
        "XGetAtomName": (c_void_p, [Display, c_ulong]),
    }),
    "Xext": ("libXext.so.6", "libxext6", {
        "XShmQueryExtension": (c_int, [Display]),
        "XShmCreateImage": (_P(XImage), [Display, c_void_p, c_uint, c_int, c_void_p,
                                         _P(XShmSegmentInfo), c_uint, c_uint]),
        "XShmAttach": (c_int, [Display, _P(XShmSegmentInfo)]),
        "XShmDetach": (c_int, [Display, _P(XShmSegmentInfo)]),
        "XShmGetImage": (c_int, [Display, XID, _P(XImage), c_int, c_int, c_ulong]),
    }),
    "Xdamage": ("libXdamage.so.1", "libxdamage1", {
        "XDamageQueryExtension": (c_int, [Display, _P(c_int), _P(c_int)]),
        "XDamageCreate": (XID, [Display, XID, c_int]),
        "XDamageDestroy": (None, [Display, XID]),
        "XDamageSubtract": (None, [Display, XID, XID, XID]),
    }),
    "Xfixes": ("libXfixes.so.3", "libxfixes3", {
        "XFixesQueryExtension": (c_int, [Display, _P(c_int), _P(c_int)]),
        "XFixesGetCursorImage": (_P(XFixesCursorImage), [Display]),
        "XFixesCreateRegion": (XID, [Display, _P(XRectangle), c_int]),
        "XFixesDestroyRegion": (None, [Display, XID]),
        "XFixesFetchRegion": (_P(XRectangle), [Display, XID, _P(c_int)]),
        "XFixesSelectCursorInput": (None, [Display, XID, c_ulong]),
    }),
    "Xrandr": ("libXrandr.so.2", "libxrandr2", {
        "XRRQueryExtension": (c_int, [Display, _P(c_int), _P(c_int)]),
        "XRRQueryVersion": (c_int, [Display, _P(c_int), _P(c_int)]),
        "XRRSelectInput": (None, [Display, XID, c_int]),
        "XRRGetMonitors": (_P(XRRMonitorInfo), [Display, XID, c_int, _P(c_int)]),
        "XRRFreeMonitors": (None, [_P(XRRMonitorInfo)]),
    }),
    "Xtst": ("libXtst.so.6", "libxtst6", {
        "XTestQueryExtension": (c_int, [Display, _P(c_int), _P(c_int), _P(c_int),
                                        _P(c_int)]),
        "XTestFakeKeyEvent": (c_int, [Display, c_uint, c_int, c_ulong]),
        "XTestFakeButtonEvent": (c_int, [Display, c_uint, c_int, c_ulong]),
        "XTestFakeMotionEvent": (c_int, [Display, c_int, c_int, c_int, c_ulong]),
    }),
    "c": ("libc.so.6", "libc6", {
        "shmget": (c_int, [c_int, c_size_t, c_int]),
        "shmat": (c_void_p, [c_int, c_void_p, c_int]),
        "shmdt": (c_int, [c_void_p]),
        "shmctl": (c_int, [c_int, c_int, c_void_p]),
    }),
}  # fmt: skip

_loaded: dict[str, ctypes.CDLL] = {}
_load_lock = threading.Lock()

#: Held while a Display is opened and its extensions set up, and while one is torn down
#: and closed. libXext keeps each extension's displays in a process-wide list with an
#: unlocked "last used" cache, and XInitThreads does not make opening one Display safe
#: against closing another: two screen connections starting and ending at once
#: corrupted the heap (malloc aborts in XOpenDisplay / XShmQueryExtension; reproduced by
#: tests/agent/test_x11_threads.py). Per-Display work (grabs, input) does not take it.
SETUP_LOCK = threading.RLock()


def load(name: str, error: type[Exception]) -> ctypes.CDLL:
    """Load one of the libraries above ("X11", "Xext", ...) or raise ``error``."""
    with _load_lock:
        lib = _loaded.get(name)
        if lib is not None:
            return lib
        soname, package, prototypes = _LIBRARIES[name]
        try:
            lib = ctypes.CDLL(soname, use_errno=True)
        except OSError as exc:
            raise error(
                f"{soname} not found ({exc}); install the Debian package {package}"
            ) from exc
        for fn_name, (restype, argtypes) in prototypes.items():
            fn = getattr(lib, fn_name, None)
            if fn is None:
                continue  # optional symbol; callers check with hasattr-like lookups
            fn.restype = restype
            fn.argtypes = argtypes
        if name == "X11":
            # Before any XOpenDisplay: the capture and input workers may each use their
            # own Display from their own thread while Tk uses another.
            lib.XInitThreads()
            _install_handlers(lib)
        _loaded[name] = lib
        return lib


@dataclass(frozen=True, slots=True)
class XErrorInfo:
    """One X protocol error reported asynchronously by the server."""

    error_code: int
    request_code: int
    minor_code: int
    resource_id: int

    def __str__(self) -> str:
        name = ERROR_NAMES.get(self.error_code, f"error {self.error_code}")
        return (
            f"{name} (request {self.request_code}.{self.minor_code}, "
            f"resource 0x{self.resource_id:x})"
        )


# Displays opened by XConnection: address -> collected errors / dead flag. The handlers
# run on whichever thread made the failing Xlib call; list.append is atomic under the GIL.
_errors: dict[int, list[XErrorInfo]] = {}
_dead: set[int] = set()
_previous_error_handler: Any = None
_previous_io_handler: Any = None


def _on_error(dpy: int | None, event: Any) -> int:
    ev = event.contents
    errors = _errors.get(dpy or 0)
    if errors is None:
        if _previous_error_handler:
            return int(_previous_error_handler(dpy, event))
        return 0
    info = XErrorInfo(ev.error_code, ev.request_code, ev.minor_code, ev.resourceid)
    logger.debug("X error on display %#x: %s", dpy or 0, info)
    if len(errors) < 64:
        errors.append(info)
    return 0


def _on_io_error(dpy: int | None) -> int:
    if (dpy or 0) in _errors:
        logger.debug("X connection %#x lost", dpy or 0)
        _dead.add(dpy or 0)
        return 0
    if _previous_io_handler:
        return int(_previous_io_handler(dpy))
    return 0


def _on_io_error_exit(dpy: int | None, _data: int | None) -> None:
    # Returning (instead of exit(1)) leaves the Display marked broken; every later
    # call fails fast and XConnection.check() raises.
    _dead.add(dpy or 0)


_error_handler_ref = ERROR_HANDLER(_on_error)
_io_handler_ref = IO_ERROR_HANDLER(_on_io_error)
_io_exit_handler_ref = IO_ERROR_EXIT_HANDLER(_on_io_error_exit)


def _install_handlers(x11: ctypes.CDLL) -> None:
    global _previous_error_handler, _previous_io_handler
    prev = x11.XSetErrorHandler(ctypes.cast(_error_handler_ref, c_void_p))
    _previous_error_handler = ERROR_HANDLER(prev) if prev else None
    prev = x11.XSetIOErrorHandler(ctypes.cast(_io_handler_ref, c_void_p))
    _previous_io_handler = IO_ERROR_HANDLER(prev) if prev else None


class XConnection:
    """One Xlib ``Display`` with errors trapped rather than fatal."""

    def __init__(self, display: str | None, error: type[Exception]) -> None:
        self.error = error
        self.x11 = load("X11", error)
        name = display.encode() if display is not None else None
        with SETUP_LOCK:
            dpy = self.x11.XOpenDisplay(name)
        if not dpy:
            shown = display if display is not None else "$DISPLAY"
            raise error(f"cannot open X display {shown!r} (no X server, or access denied)")
        self.dpy: int = dpy
        self.name = (self.x11.XDisplayString(dpy) or b"").decode(errors="replace")
        _errors[dpy] = []
        set_exit = getattr(self.x11, "XSetIOErrorExitHandler", None)
        if set_exit is not None:
            set_exit.restype = None
            set_exit.argtypes = [Display, c_void_p, c_void_p]
            set_exit(dpy, ctypes.cast(_io_exit_handler_ref, c_void_p), None)
        else:
            logger.debug("libX11 < 1.8: losing display %s will end the process", self.name)
        self.screen = self.x11.XDefaultScreen(dpy)
        self.root: int = self.x11.XDefaultRootWindow(dpy)

    @property
    def dead(self) -> bool:
        """True once the connection to the X server is lost."""
        return self.dpy in _dead

    def check(self) -> None:
        """Raise ``error`` if the connection is lost."""
        if self.dpy in _dead:
            raise self.error(f"connection to X display {self.name!r} lost")

    def sync_errors(self) -> list[XErrorInfo]:
        """Round-trip to the server and return (and clear) the errors since last call."""
        self.check()
        self.x11.XSync(self.dpy, 0)
        self.check()
        return self.take_errors()

    def take_errors(self) -> list[XErrorInfo]:
        """Return and clear the errors collected so far, without a round trip."""
        errors = _errors.get(self.dpy, [])
        taken = list(errors)
        errors.clear()
        return taken

    def extension(self, name: str) -> ctypes.CDLL:
        """Load an extension library with this connection's error class."""
        return load(name, self.error)

    def close(self) -> None:
        """Close the display; the object must not be used afterwards."""
        if not self.dpy:
            return
        dpy, self.dpy = self.dpy, 0
        if dpy not in _dead:
            with SETUP_LOCK:
                self.x11.XCloseDisplay(dpy)
        # A dead Display is leaked on purpose: XCloseDisplay on it would write to the
        # broken socket and re-enter the I/O error path.
        _errors.pop(dpy, None)
        _dead.discard(dpy)


def geometry(conn: XConnection, drawable: int) -> tuple[int, int, int]:
    """(width, height, depth) of a drawable (one round trip)."""
    root, border = XID(), c_uint()
    x, y = c_int(), c_int()
    w, h, depth = c_uint(), c_uint(), c_uint()
    ok = conn.x11.XGetGeometry(
        conn.dpy, drawable, ctypes.byref(root), ctypes.byref(x), ctypes.byref(y),
        ctypes.byref(w), ctypes.byref(h), ctypes.byref(border), ctypes.byref(depth),
    )  # fmt: skip
    conn.check()
    if not ok:
        raise conn.error(f"cannot read the geometry of window 0x{drawable:x}")
    return w.value, h.value, depth.value
