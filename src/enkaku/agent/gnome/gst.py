"""A PipeWire video stream read through GStreamer's C API (``ctypes``), frame by frame.

``pipewiresrc ! videoconvert ! video/x-raw,format=BGRx ! appsink``: each sample comes
with its caps, so a size change is seen on the frame that has it. GStreamer is called
through ``ctypes`` rather than PyGObject (which needs a compiler and the GObject
introspection headers to install into a virtual environment) or a ``gst-launch-1.0``
pipe (raw frames through a pipe carry no size, so a resize desynchronises the reader).
Needs ``libgstreamer1.0-0``, ``gstreamer1.0-plugins-base`` (appsink, videoconvert) and
``gstreamer1.0-pipewire`` (pipewiresrc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["GstUnavailable", "PipeWireStream", "gst_problem"]


class GstUnavailable(RuntimeError):
    """GStreamer, or one of the elements the stream needs, is not installed."""


_STATE_NULL = 1
_STATE_PLAYING = 4
_MAP_READ = 1
_MESSAGE_EOS = 1 << 0
_MESSAGE_ERROR = 1 << 1
_CLOCK_TIME_NONE = ctypes.c_uint64(0xFFFFFFFFFFFFFFFF)
ELEMENTS = ("pipewiresrc", "videoconvert", "appsink")


class _GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", ctypes.c_char_p)]


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("memory", ctypes.c_void_p),
        ("flags", ctypes.c_int),
        ("data", ctypes.POINTER(ctypes.c_uint8)),
        ("size", ctypes.c_size_t),
        ("maxsize", ctypes.c_size_t),
        ("user_data", ctypes.c_void_p * 4),
        ("_reserved", ctypes.c_void_p * 4),
    ]


@dataclass
class _Lib:
    gst: ctypes.CDLL
    app: ctypes.CDLL
    glib: ctypes.CDLL


_lib: _Lib | None = None
_lib_error: str | None = None
_lib_lock = threading.Lock()


def _load() -> _Lib:
    global _lib, _lib_error
    with _lib_lock:
        if _lib is not None:
            return _lib
        if _lib_error is not None:
            raise GstUnavailable(_lib_error)
        try:
            gst = ctypes.CDLL(ctypes.util.find_library("gstreamer-1.0") or "libgstreamer-1.0.so.0")
            app = ctypes.CDLL(ctypes.util.find_library("gstapp-1.0") or "libgstapp-1.0.so.0")
            glib = ctypes.CDLL(ctypes.util.find_library("glib-2.0") or "libglib-2.0.so.0")
        except OSError as exc:
            _lib_error = f"GStreamer is not installed ({exc})"
            raise GstUnavailable(_lib_error) from exc
        vp, cp, i, u = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint
        for name, res, args in (
            ("gst_init_check", i, [vp, vp, vp]),
            ("gst_parse_launch", vp, [cp, ctypes.POINTER(ctypes.POINTER(_GError))]),
            ("gst_bin_get_by_name", vp, [vp, cp]),
            ("gst_element_set_state", i, [vp, i]),
            ("gst_element_get_bus", vp, [vp]),
            ("gst_element_factory_find", vp, [cp]),
            ("gst_bus_pop_filtered", vp, [vp, u]),
            ("gst_message_parse_error", None, [vp, ctypes.POINTER(ctypes.POINTER(_GError)), vp]),
            ("gst_object_unref", None, [vp]),
            ("gst_mini_object_unref", None, [vp]),
            ("gst_sample_get_buffer", vp, [vp]),
            ("gst_sample_get_caps", vp, [vp]),
            ("gst_caps_get_structure", vp, [vp, u]),
            ("gst_structure_get_int", i, [vp, cp, ctypes.POINTER(i)]),
            ("gst_buffer_map", i, [vp, ctypes.POINTER(_MapInfo), i]),
            ("gst_buffer_unmap", None, [vp, ctypes.POINTER(_MapInfo)]),
        ):
            fn = getattr(gst, name)
            fn.restype, fn.argtypes = res, args
        app.gst_app_sink_try_pull_sample.restype = vp
        app.gst_app_sink_try_pull_sample.argtypes = [vp, ctypes.c_uint64]
        glib.g_error_free.argtypes = [ctypes.POINTER(_GError)]
        if not gst.gst_init_check(None, None, None):
            _lib_error = "GStreamer failed to initialise"
            raise GstUnavailable(_lib_error)
        _lib = _Lib(gst, app, glib)
        return _lib


def gst_problem() -> str | None:
    """None when GStreamer and the elements the stream needs are installed, else what
    is missing."""
    try:
        lib = _load()
    except GstUnavailable as exc:
        return str(exc)
    missing = []
    for name in ELEMENTS:
        factory = lib.gst.gst_element_factory_find(name.encode())
        if not factory:
            missing.append(name)
        else:
            lib.gst.gst_object_unref(factory)
    if missing:
        return "GStreamer lacks " + ", ".join(missing)
    return None


class PipeWireStream:
    """Frames of one PipeWire video node, as BGRX arrays, pulled one at a time.

    ``fd`` is a socket connected to the PipeWire daemon (the stream takes its own copy);
    ``node`` the node id to read.
    """

    def __init__(self, fd: int, node: int) -> None:
        lib = self._lib = _load()
        if (problem := gst_problem()) is not None:
            raise GstUnavailable(problem)
        desc = (
            f"pipewiresrc name=src fd={int(fd)} path={int(node)} always-copy=false "
            "! videoconvert ! video/x-raw,format=BGRx "
            "! appsink name=sink max-buffers=1 drop=true sync=false enable-last-sample=false"
        )
        err = ctypes.POINTER(_GError)()
        self._pipeline = lib.gst.gst_parse_launch(desc.encode(), ctypes.byref(err))
        if err:
            message = (err.contents.message or b"").decode(errors="replace")
            lib.glib.g_error_free(err)
            if self._pipeline:
                lib.gst.gst_object_unref(self._pipeline)
            raise GstUnavailable(f"cannot build the GStreamer pipeline: {message}")
        self._sink = lib.gst.gst_bin_get_by_name(self._pipeline, b"sink")
        self._bus = lib.gst.gst_element_get_bus(self._pipeline)
        self._stopped = False
        self._state = threading.Lock()  # stop() and close() from different threads
        lib.gst.gst_element_set_state(self._pipeline, _STATE_PLAYING)

    def pull(self) -> npt.NDArray[np.uint8] | None:
        """The next frame (a (h, w, 4) BGRX copy), waiting for it; None once the stream
        ended or ``stop()`` was called (``error()`` then says why, if it failed)."""
        lib = self._lib
        sample = lib.app.gst_app_sink_try_pull_sample(self._sink, _CLOCK_TIME_NONE)
        if not sample:
            return None
        try:
            caps = lib.gst.gst_sample_get_caps(sample)
            buffer = lib.gst.gst_sample_get_buffer(sample)
            if not caps or not buffer:
                return None
            structure = lib.gst.gst_caps_get_structure(caps, 0)
            width, height = ctypes.c_int(0), ctypes.c_int(0)
            lib.gst.gst_structure_get_int(structure, b"width", ctypes.byref(width))
            lib.gst.gst_structure_get_int(structure, b"height", ctypes.byref(height))
            w, h = width.value, height.value
            info = _MapInfo()
            if (
                w <= 0
                or h <= 0
                or not lib.gst.gst_buffer_map(buffer, ctypes.byref(info), _MAP_READ)
            ):
                return None
            try:
                if info.size < w * 4 * h:
                    return None
                stride = info.size // h
                raw = np.ctypeslib.as_array(info.data, shape=(h * stride,))
                frame = raw.reshape(h, stride)[:, : w * 4].reshape(h, w, 4).copy()
            finally:
                lib.gst.gst_buffer_unmap(buffer, ctypes.byref(info))
            return frame
        finally:
            lib.gst.gst_mini_object_unref(sample)

    def error(self) -> str | None:
        """The pipeline's error message, if it failed."""
        lib = self._lib
        msg = lib.gst.gst_bus_pop_filtered(self._bus, _MESSAGE_ERROR)
        if not msg:
            return None
        err = ctypes.POINTER(_GError)()
        lib.gst.gst_message_parse_error(msg, ctypes.byref(err), None)
        text = (err.contents.message or b"").decode(errors="replace") if err else "error"
        if err:
            lib.glib.g_error_free(err)
        lib.gst.gst_mini_object_unref(msg)
        return text

    def stop(self) -> None:
        """Stop the stream (a ``pull()`` waiting in another thread returns None)."""
        with self._state:
            if self._stopped or not self._pipeline:
                return
            self._stopped = True
            self._lib.gst.gst_element_set_state(self._pipeline, _STATE_NULL)

    def close(self) -> None:
        """Stop and free the pipeline; no ``pull()`` may be running."""
        self.stop()
        lib = self._lib
        with self._state:  # not while another thread is still stopping it
            for obj in (self._sink, self._bus, self._pipeline):
                if obj:
                    lib.gst.gst_object_unref(obj)
            self._sink = self._bus = self._pipeline = None
