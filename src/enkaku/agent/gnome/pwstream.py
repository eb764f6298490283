"""A PipeWire video stream read through libpipewire's C API (``ctypes``): frames and the
pointer's shape from ``SPA_META_Cursor``.

mutter's screen cast in cursor mode "metadata" leaves the pointer out of the frames and
puts its shape, hotspot and position in each buffer's cursor metadata, but only when the
consumer asks for that metadata (an ``SPA_PARAM_Meta`` param of type ``SPA_META_Cursor``):
the buffers carry the metadata both ends declared. GStreamer's ``pipewiresrc`` (0.3.65,
Debian 12) declares none, so this reader is a ``pw_stream`` of its own, as
gnome-remote-desktop's is: it offers raw video in the 32-bit RGB layouts, shared memory
only (``MemFd``/``MemPtr``, mapped by PipeWire), and after the format is fixed the
buffer and metadata params.

The params are SPA PODs built here as bytes (``spa/pod/pod.h``: an 8-byte header, size
and type, then the body padded to 8 bytes; an object's body is its type and id, then
properties of key, flags and a POD). The callbacks run on PipeWire's thread loop; each
buffer is read there and given back at once: the newest frame is copied (BGRX) for
``pull()``, a new cursor bitmap becomes a new ``CursorImage`` and calls ``on_cursor``.

Needs ``libpipewire-0.3-0`` only (no headers, no compiler); ``problem()`` says what is
missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from enkaku.agent.capture.base import CursorImage

__all__ = ["PipeWireUnavailable", "PwStream", "problem"]

logger = logging.getLogger(__name__)


class PipeWireUnavailable(RuntimeError):
    """libpipewire is not installed, or the stream could not be set up."""


# spa/utils/type.h
_T_ID, _T_INT, _T_RECTANGLE, _T_OBJECT, _T_CHOICE = 3, 4, 10, 15, 19
_T_OBJECT_FORMAT, _T_OBJECT_PARAM_BUFFERS, _T_OBJECT_PARAM_META = 0x40003, 0x40004, 0x40005
# spa/pod/pod.h: choice types
_CHOICE_RANGE, _CHOICE_ENUM, _CHOICE_FLAGS = 1, 3, 4
# spa/param/param.h
_PARAM_ENUM_FORMAT, _PARAM_FORMAT, _PARAM_BUFFERS, _PARAM_META = 3, 4, 5, 6
_PARAM_BUFFERS_DATATYPE = 6
_PARAM_META_TYPE, _PARAM_META_SIZE = 1, 2
# spa/param/format.h
_FORMAT_MEDIA_TYPE, _FORMAT_MEDIA_SUBTYPE = 1, 2
_FORMAT_VIDEO_FORMAT, _FORMAT_VIDEO_SIZE = 0x20001, 0x20003
_MEDIA_TYPE_VIDEO, _MEDIA_SUBTYPE_RAW = 2, 1
# spa/param/video/raw.h: the 32-bit layouts, and where B, G, R sit in each
_VIDEO_FORMATS = {
    7: (2, 1, 0), 8: (0, 1, 2), 9: (3, 2, 1), 10: (1, 2, 3),  # RGBx BGRx xRGB xBGR
    11: (2, 1, 0), 12: (0, 1, 2), 13: (3, 2, 1), 14: (1, 2, 3),  # RGBA BGRA ARGB ABGR
}  # fmt: skip
_ALPHA = {11: 3, 12: 3, 13: 0, 14: 0}
# spa/buffer/buffer.h, spa/buffer/meta.h
_DATA_MEMPTR, _DATA_MEMFD = 1, 2
_CHUNK_FLAG_CORRUPTED = 1
_META_HEADER, _META_CURSOR = 1, 5
_META_HEADER_FLAG_CORRUPTED = 1 << 1
_CURSOR_META = struct.Struct("<IIiiiiI")  # id, flags, position x y, hotspot x y, bitmap_offset
_BITMAP_META = struct.Struct("<IIIiI")  # format, width, height, stride, offset
# pipewire/stream.h
_DIRECTION_INPUT = 0
_FLAG_AUTOCONNECT, _FLAG_MAP_BUFFERS = 1 << 0, 1 << 2
_STATE_ERROR, _STATE_UNCONNECTED = -1, 0
_ANY_ID = 0xFFFFFFFF
#: The cursor bitmaps asked for: 64x64 preferred, up to 384x384 (a large pointer scaled).
_CURSOR_SIZES = (64, 1, 384)


# -- PODs ------------------------------------------------------------------------------


def _pod(type_: int, body: bytes) -> bytes:
    return struct.pack("<II", len(body), type_) + body + b"\0" * (-len(body) % 8)


def _id(value: int) -> bytes:
    return _pod(_T_ID, struct.pack("<I", value))


def _choice(kind: int, type_: int, size: int, values: list[bytes]) -> bytes:
    """A choice of ``values`` (each ``size`` bytes of a ``type_``), the first the default."""
    return _pod(_T_CHOICE, struct.pack("<IIII", kind, 0, size, type_) + b"".join(values))


def _object(type_: int, param: int, props: list[tuple[int, bytes]]) -> bytes:
    body = struct.pack("<II", type_, param)
    for key, value in props:
        body += struct.pack("<II", key, 0) + value
    return _pod(_T_OBJECT, body)


def _enum_format() -> bytes:
    formats = [struct.pack("<I", f) for f in (8, 12, 7, 11, 9, 13, 10, 14)]  # BGRx first
    sizes = [struct.pack("<II", w, h) for w, h in ((1280, 720), (1, 1), (16384, 16384))]
    return _object(
        _T_OBJECT_FORMAT, _PARAM_ENUM_FORMAT,
        [
            (_FORMAT_MEDIA_TYPE, _id(_MEDIA_TYPE_VIDEO)),
            (_FORMAT_MEDIA_SUBTYPE, _id(_MEDIA_SUBTYPE_RAW)),
            (_FORMAT_VIDEO_FORMAT, _choice(_CHOICE_ENUM, _T_ID, 4, [formats[0], *formats])),
            (_FORMAT_VIDEO_SIZE, _choice(_CHOICE_RANGE, _T_RECTANGLE, 8, sizes)),
        ],
    )  # fmt: skip


def _cursor_meta_size(side: int) -> int:
    return _CURSOR_META.size + _BITMAP_META.size + side * side * 4


def _buffer_params() -> list[bytes]:
    """After the format: shared memory only, and the cursor metadata."""
    types = struct.pack("<i", (1 << _DATA_MEMFD) | (1 << _DATA_MEMPTR))
    sizes = [struct.pack("<i", _cursor_meta_size(s)) for s in _CURSOR_SIZES]
    return [
        _object(
            _T_OBJECT_PARAM_BUFFERS, _PARAM_BUFFERS,
            [(_PARAM_BUFFERS_DATATYPE, _choice(_CHOICE_FLAGS, _T_INT, 4, [types]))],
        ),
        _object(
            _T_OBJECT_PARAM_META, _PARAM_META,
            [(_PARAM_META_TYPE, _id(_META_CURSOR)),
             (_PARAM_META_SIZE, _choice(_CHOICE_RANGE, _T_INT, 4, sizes))],
        ),
        _object(
            _T_OBJECT_PARAM_META, _PARAM_META,
            [(_PARAM_META_TYPE, _id(_META_HEADER)),
             (_PARAM_META_SIZE, _pod(_T_INT, struct.pack("<i", 32)))],
        ),
    ]  # fmt: skip


def _parse_format(raw: bytes) -> tuple[int, int, int] | None:
    """The video format, width and height of a fixed ``SPA_PARAM_Format`` object."""
    size, type_ = struct.unpack_from("<II", raw)
    if type_ != _T_OBJECT or size < 8:
        return None
    end = min(8 + size, len(raw))
    pos = 16  # header, object type and id
    fmt = width = height = None
    while pos + 16 <= end:
        key, _flags, vsize, vtype = struct.unpack_from("<IIII", raw, pos)
        value = pos + 16
        if vtype == _T_CHOICE and vsize >= 16:  # a fixed choice: its default
            vtype = struct.unpack_from("<I", raw, value + 12)[0]
            value += 16
        if key == _FORMAT_VIDEO_FORMAT and vtype == _T_ID:
            fmt = struct.unpack_from("<I", raw, value)[0]
        elif key == _FORMAT_VIDEO_SIZE and vtype == _T_RECTANGLE:
            width, height = struct.unpack_from("<II", raw, value)
        pos += 16 + vsize + (-vsize % 8)
    if fmt is None or width is None or height is None:
        return None
    return fmt, width, height


# -- the C structures and the library --------------------------------------------------


class _Chunk(ctypes.Structure):
    _fields_ = [("offset", ctypes.c_uint32), ("size", ctypes.c_uint32),
                ("stride", ctypes.c_int32), ("flags", ctypes.c_int32)]  # fmt: skip


class _Data(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("fd", ctypes.c_int64),
        ("mapoffset", ctypes.c_uint32), ("maxsize", ctypes.c_uint32),
        ("data", ctypes.c_void_p), ("chunk", ctypes.POINTER(_Chunk)),
    ]  # fmt: skip


class _Meta(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("data", ctypes.c_void_p)]


class _SpaBuffer(ctypes.Structure):
    _fields_ = [("n_metas", ctypes.c_uint32), ("n_datas", ctypes.c_uint32),
                ("metas", ctypes.POINTER(_Meta)), ("datas", ctypes.POINTER(_Data))]  # fmt: skip


class _PwBuffer(ctypes.Structure):
    _fields_ = [("buffer", ctypes.POINTER(_SpaBuffer)), ("user_data", ctypes.c_void_p),
                ("size", ctypes.c_uint64)]  # fmt: skip


_DESTROY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_STATE_CHANGED = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p
)
_PARAM_CHANGED = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
_PROCESS = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Events(ctypes.Structure):
    """``struct pw_stream_events``, version 2."""

    _fields_ = [
        ("version", ctypes.c_uint32), ("destroy", _DESTROY), ("state_changed", _STATE_CHANGED),
        ("control_info", ctypes.c_void_p), ("io_changed", ctypes.c_void_p),
        ("param_changed", _PARAM_CHANGED), ("add_buffer", ctypes.c_void_p),
        ("remove_buffer", ctypes.c_void_p), ("process", _PROCESS), ("drained", ctypes.c_void_p),
        ("command", ctypes.c_void_p), ("trigger_done", ctypes.c_void_p),
    ]  # fmt: skip


_lib: ctypes.CDLL | None = None
_lib_error: str | None = None
_lib_lock = threading.Lock()


def _load() -> ctypes.CDLL:
    global _lib, _lib_error
    with _lib_lock:
        if _lib is not None:
            return _lib
        if _lib_error is not None:
            raise PipeWireUnavailable(_lib_error)
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("pipewire-0.3") or "libpipewire-0.3.so.0")
        except OSError as exc:
            _lib_error = f"libpipewire-0.3 is not installed ({exc})"
            raise PipeWireUnavailable(_lib_error) from exc
        vp, cp, i, u = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32
        try:
            for name, res, args in (
                ("pw_init", None, [vp, vp]),
                ("pw_thread_loop_new", vp, [cp, vp]),
                ("pw_thread_loop_get_loop", vp, [vp]),
                ("pw_thread_loop_start", i, [vp]),
                ("pw_thread_loop_stop", None, [vp]),
                ("pw_thread_loop_destroy", None, [vp]),
                ("pw_thread_loop_lock", None, [vp]),
                ("pw_thread_loop_unlock", None, [vp]),
                ("pw_properties_new_string", vp, [cp]),
                ("pw_context_new", vp, [vp, vp, ctypes.c_size_t]),
                ("pw_context_destroy", None, [vp]),
                ("pw_context_connect_fd", vp, [vp, i, vp, ctypes.c_size_t]),
                ("pw_core_disconnect", i, [vp]),
                ("pw_stream_new", vp, [vp, cp, vp]),
                ("pw_stream_add_listener", None, [vp, vp, ctypes.POINTER(_Events), vp]),
                ("pw_stream_connect", i, [vp, i, u, i, ctypes.POINTER(vp), u]),
                ("pw_stream_update_params", i, [vp, ctypes.POINTER(vp), u]),
                ("pw_stream_disconnect", i, [vp]),
                ("pw_stream_destroy", None, [vp]),
                ("pw_stream_dequeue_buffer", ctypes.POINTER(_PwBuffer), [vp]),
                ("pw_stream_queue_buffer", i, [vp, ctypes.POINTER(_PwBuffer)]),
            ):
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = res, args
        except AttributeError as exc:
            _lib_error = f"libpipewire-0.3 lacks {exc}"
            raise PipeWireUnavailable(_lib_error) from exc
        lib.pw_init(None, None)
        _lib = lib
        return lib


def problem() -> str | None:
    """None when libpipewire can be used, else why not."""
    try:
        _load()
    except PipeWireUnavailable as exc:
        return str(exc)
    return None


def _params_array(
    params: list[bytes],
) -> tuple[ctypes.Array[ctypes.c_void_p], list[ctypes.Array[ctypes.c_char]]]:
    """A ``const struct spa_pod **`` of ``params``, and the buffers to keep alive."""
    keep = [ctypes.create_string_buffer(p, len(p)) for p in params]
    array = (ctypes.c_void_p * len(keep))(*(ctypes.addressof(b) for b in keep))
    return array, keep


@dataclass
class _Format:
    video: int
    width: int
    height: int


def cursor_image(raw: bytes, fmt: int, w: int, h: int, stride: int, hx: int, hy: int,
                 serial: int) -> CursorImage:  # fmt: skip
    """A cursor bitmap of an ``spa_video_format`` with premultiplied alpha (mutter reads
    the sprite back as ``COGL_PIXEL_FORMAT_RGBA_8888_PRE``) as straight-alpha BGRA."""
    rows = np.frombuffer(raw, dtype=np.uint8, count=stride * (h - 1) + w * 4).copy()
    rows = np.resize(rows, stride * h).reshape(h, stride)[:, : w * 4].reshape(h, w, 4)
    b, g, r = _VIDEO_FORMATS[fmt]
    a = _ALPHA.get(fmt)
    out = np.empty((h, w, 4), dtype=np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = rows[..., b], rows[..., g], rows[..., r]
    if a is None:
        out[..., 3] = 255
    else:
        alpha = rows[..., a].astype(np.uint32)
        colour = out[..., :3].astype(np.uint32) * 255 + alpha[..., None] // 2
        out[..., :3] = np.minimum(colour // np.maximum(alpha, 1)[..., None], 255)
        out[..., :3][alpha == 0] = 0
        out[..., 3] = alpha
    return CursorImage(pixels=out, hotspot_x=hx, hotspot_y=hy, serial=serial)


class PwStream:
    """Frames of one PipeWire video node, as BGRX arrays, and the pointer's shape from
    the cursor metadata (see the module doc).

    ``fd`` is a socket connected to the PipeWire daemon (the stream takes its own copy);
    ``node`` the node id to read; ``on_cursor`` is called (on PipeWire's thread) for
    each buffer with cursor information (the pointer is on this stream's monitor):
    ``cursor()`` then has a new serial if the shape changed. The same reading interface as
    :class:`enkaku.agent.gnome.gst.PipeWireStream`, plus ``cursor()``.
    """

    def __init__(self, fd: int, node: int, on_cursor: Callable[[], None] | None = None) -> None:
        lib = self._lib = _load()
        self._on_cursor = on_cursor
        self._cond = threading.Condition()
        self._frame: npt.NDArray[np.uint8] | None = None
        self._format: _Format | None = None
        self._cursor: CursorImage | None = None
        self._cursor_bits: bytes | None = None
        self._serial = 0
        self._position: tuple[int, int] | None = None
        self._stopped = False
        self._ended = False
        self._error: str | None = None
        self._state = threading.Lock()
        self._loop = self._context = self._core = self._stream = None
        #: Buffers whose cursor metadata was read: tests.
        self.cursor_metas = 0
        self._events = _Events(
            version=2,
            destroy=_DESTROY(lambda _data: None),
            state_changed=_STATE_CHANGED(self._state_changed),
            param_changed=_PARAM_CHANGED(self._param_changed),
            process=_PROCESS(self._process),
        )
        self._hook = ctypes.create_string_buffer(64)  # struct spa_hook, zeroed
        self._keep: list[object] = []
        loop = self._loop = lib.pw_thread_loop_new(b"enkaku-pw", None)
        if not loop:
            raise PipeWireUnavailable("cannot create a PipeWire thread loop")
        try:
            self._context = lib.pw_context_new(lib.pw_thread_loop_get_loop(loop), None, 0)
            if not self._context:
                raise PipeWireUnavailable("cannot create a PipeWire context")
            if lib.pw_thread_loop_start(loop) < 0:
                raise PipeWireUnavailable("cannot start the PipeWire thread loop")
            lib.pw_thread_loop_lock(loop)
            try:
                own = os.dup(fd)
                self._core = lib.pw_context_connect_fd(self._context, own, None, 0)
                if not self._core:
                    os.close(own)
                    raise PipeWireUnavailable("cannot connect to PipeWire")
                props = lib.pw_properties_new_string(
                    b"media.type=Video media.category=Capture media.role=Screen"
                )
                self._stream = lib.pw_stream_new(self._core, b"enkaku-screen", props)
                if not self._stream:
                    raise PipeWireUnavailable("cannot create a PipeWire stream")
                lib.pw_stream_add_listener(
                    self._stream, self._hook, ctypes.byref(self._events), None
                )
                array, keep = _params_array([_enum_format()])
                res = lib.pw_stream_connect(
                    self._stream, _DIRECTION_INPUT, node, _FLAG_AUTOCONNECT | _FLAG_MAP_BUFFERS,
                    array, len(keep),
                )  # fmt: skip
                if res < 0:
                    raise PipeWireUnavailable(f"cannot connect the stream ({os.strerror(-res)})")
            finally:
                lib.pw_thread_loop_unlock(loop)
        except BaseException:
            self.close()
            raise

    # -- PipeWire's thread -------------------------------------------------------------

    def _state_changed(self, _data: int, _old: int, state: int, error: bytes | None) -> None:
        if state == _STATE_ERROR:
            with self._cond:
                self._error = (error or b"stream error").decode(errors="replace")
                self._ended = True
                self._cond.notify_all()
        elif state == _STATE_UNCONNECTED and self._format is not None:
            with self._cond:  # the node went away
                self._ended = True
                self._cond.notify_all()

    def _param_changed(self, _data: int, id_: int, param: int | None) -> None:
        if id_ != _PARAM_FORMAT or not param:
            return
        size = ctypes.c_uint32.from_address(param).value
        parsed = _parse_format(ctypes.string_at(param, 8 + size))
        if parsed is None or parsed[0] not in _VIDEO_FORMATS:
            logger.info("PipeWire stream: unusable format %r", parsed)
            return
        self._format = _Format(*parsed)
        array, keep = _params_array(_buffer_params())
        self._lib.pw_stream_update_params(self._stream, array, len(keep))

    def _process(self, _data: int) -> None:
        try:
            lib = self._lib
            newest = None
            while b := lib.pw_stream_dequeue_buffer(self._stream):
                buf = b.contents.buffer.contents
                self._read_cursor(buf)
                frame = self._read_frame(buf)
                if frame is not None:
                    newest = frame
                lib.pw_stream_queue_buffer(self._stream, b)
            if newest is not None:
                with self._cond:
                    self._frame = newest
                    self._cond.notify_all()
        except Exception:  # never into C with an exception
            logger.exception("PipeWire stream: reading a buffer failed")

    def _read_frame(self, buf: _SpaBuffer) -> npt.NDArray[np.uint8] | None:
        fmt = self._format
        if fmt is None or buf.n_datas < 1:
            return None
        for i in range(buf.n_metas):
            meta = buf.metas[i]
            if (
                meta.type == _META_HEADER
                and meta.size >= 4
                and meta.data
                and ctypes.c_uint32.from_address(meta.data).value & _META_HEADER_FLAG_CORRUPTED
            ):
                return None
        data = buf.datas[0]
        if not data.data or not data.chunk:
            return None
        chunk = data.chunk.contents
        w, h = fmt.width, fmt.height
        stride = chunk.stride or w * 4
        if chunk.size == 0 or chunk.flags & _CHUNK_FLAG_CORRUPTED or stride < w * 4:
            return None  # a cursor-only update, or no picture
        offset = chunk.offset % max(data.maxsize, 1)
        if offset + stride * (h - 1) + w * 4 > data.maxsize:
            return None
        raw = np.ctypeslib.as_array(
            ctypes.cast(data.data + offset, ctypes.POINTER(ctypes.c_uint8)),
            shape=(stride * (h - 1) + w * 4,),
        )
        rows = np.lib.stride_tricks.as_strided(raw, shape=(h, w * 4), strides=(stride, 1))
        image = rows.reshape(h, w, 4)
        order = _VIDEO_FORMATS[fmt.video]
        if order == (0, 1, 2):
            return image.copy()
        out = np.empty((h, w, 4), dtype=np.uint8)
        out[..., 0], out[..., 1], out[..., 2] = (
            image[..., order[0]],
            image[..., order[1]],
            image[..., order[2]],
        )
        out[..., 3] = 0
        return out

    def _read_cursor(self, buf: _SpaBuffer) -> None:
        for i in range(buf.n_metas):
            meta = buf.metas[i]
            if meta.type == _META_CURSOR and meta.data and meta.size >= _CURSOR_META.size:
                break
        else:
            return
        self.cursor_metas += 1
        size = meta.size
        head = ctypes.string_at(meta.data, _CURSOR_META.size)
        cid, _flags, px, py, hx, hy, bitmap_offset = _CURSOR_META.unpack(head)
        if cid == 0:
            return  # no cursor information in this buffer
        self._position = (px, py)
        if bitmap_offset >= _CURSOR_META.size and bitmap_offset + _BITMAP_META.size <= size:
            self._read_bitmap(meta.data, size, bitmap_offset, hx, hy)
        if self._on_cursor is not None:
            self._on_cursor()

    def _read_bitmap(self, data: int, size: int, bitmap_offset: int, hx: int, hy: int) -> None:
        """A new bitmap in the cursor metadata at ``data``: the new shape, if it differs."""
        fmt, w, h, stride, offset = _BITMAP_META.unpack(
            ctypes.string_at(data + bitmap_offset, _BITMAP_META.size)
        )
        start = bitmap_offset + offset
        if fmt == 0 or offset == 0 or w == 0 or h == 0:
            # mutter's empty sprite (a zeroed bitmap): no pointer shown here.
            bits = b""
            image = CursorImage(np.zeros((1, 1, 4), dtype=np.uint8), 0, 0, 0)
        elif fmt not in _VIDEO_FORMATS or stride < w * 4 or start + stride * (h - 1) + w * 4 > size:
            return
        else:
            bits = ctypes.string_at(data + start, stride * (h - 1) + w * 4)
            image = cursor_image(bits, fmt, w, h, stride, hx, hy, 0)
        key = bits + struct.pack("<iiIII", hx, hy, w, h, stride)
        if key == self._cursor_bits:
            return
        with self._cond:
            self._serial += 1
            self._cursor_bits = key
            self._cursor = CursorImage(image.pixels, image.hotspot_x, image.hotspot_y, self._serial)

    # -- the reading side --------------------------------------------------------------

    def pull(self) -> npt.NDArray[np.uint8] | None:
        """The next frame (a (h, w, 4) BGRX copy), waiting for it; None once the stream
        ended or ``stop()`` was called (``error()`` then says why, if it failed)."""
        with self._cond:
            while self._frame is None and not self._stopped and not self._ended:
                self._cond.wait()
            if self._stopped or (self._frame is None and self._ended):
                return None
            frame, self._frame = self._frame, None
            return frame

    def cursor(self) -> CursorImage | None:
        """The pointer's shape (its serial changes with the bitmap), None before the
        first."""
        with self._cond:
            return self._cursor

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """The frames' (width, height), once the format is fixed."""
        fmt = self._format
        return None if fmt is None else (fmt.width, fmt.height)

    @property
    def position(self) -> tuple[int, int] | None:
        """Where the pointer is on the stream's picture, as the last metadata said."""
        return self._position

    def error(self) -> str | None:
        """Why the stream failed, if it did."""
        return self._error

    def stop(self) -> None:
        """Stop reading (a ``pull()`` waiting in another thread returns None)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def close(self) -> None:
        """Disconnect and free everything; no ``pull()`` may be running."""
        self.stop()
        lib = self._lib
        with self._state:
            loop, self._loop = self._loop, None
            if loop is None:
                return
            lib.pw_thread_loop_lock(loop)
            try:
                if self._stream:
                    lib.pw_stream_disconnect(self._stream)
                    lib.pw_stream_destroy(self._stream)
                if self._core:
                    lib.pw_core_disconnect(self._core)
            finally:
                lib.pw_thread_loop_unlock(loop)
            self._stream = self._core = None
            lib.pw_thread_loop_stop(loop)
            if self._context:
                lib.pw_context_destroy(self._context)
            self._context = None
            lib.pw_thread_loop_destroy(loop)
