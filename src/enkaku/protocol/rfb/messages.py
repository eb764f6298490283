"""RFB 3.8 messages (RFC 6143 §7.5, §7.6 and the rfbproto community extensions).

Client-to-server messages are frozen dataclasses with ``parse(data)`` for one complete
message and ``wire_size(data)`` telling how long the message at the start of ``data`` is
(``None`` when more bytes are needed to know). Server-to-client messages have
``__bytes__``. Every length read from the wire is checked before anything is allocated.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar

from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.rfb.pixelformat import PixelFormat

#: Longest ClientCutText kept; longer ones are skipped (read and dropped), not buffered.
MAX_CUT_TEXT = 1 << 20
#: Longest ExtendedClipboard message body kept (compressed); longer ones are skipped.
MAX_EXTENDED_CLIPBOARD = MAX_CUT_TEXT
#: Most clipboard text accepted once decompressed (UTF-8 bytes, terminating null
#: included); a provide declaring more is dropped without inflating it (zlib bombs).
MAX_CLIPBOARD_TEXT = 1 << 20
#: Most encodings accepted in one SetEncodings (real viewers send about 30).
MAX_ENCODINGS = 1024
#: Fence payloads are at most 64 bytes (rfbproto "ClientFence").
MAX_FENCE_PAYLOAD = 64
#: Most screens accepted in one SetDesktopSize.
MAX_SCREENS = 16


class Encoding(IntEnum):
    """Encoding and pseudo-encoding numbers (rfbproto "Encodings")."""

    RAW = 0
    COPYRECT = 1
    TIGHT = 7
    ZRLE = 16
    JPEG_QUALITY_LOW = -32  # -32 .. -23: quality level 0 .. 9
    JPEG_QUALITY_HIGH = -23
    DESKTOP_SIZE = -223
    LAST_RECT = -224
    CURSOR = -239
    COMPRESS_LOW = -256  # -256 .. -247: compression level 0 .. 9
    COMPRESS_HIGH = -247
    QEMU_EXTENDED_KEY_EVENT = -258
    EXTENDED_DESKTOP_SIZE = -308
    FENCE = -312
    CONTINUOUS_UPDATES = -313
    FINE_QUALITY_LOW = -512  # -512 .. -412: JPEG quality 0 .. 100
    FINE_QUALITY_HIGH = -412
    SUBSAMPLING_LOW = -768  # -768 .. -763: JPEG subsampling 1x, 4x, 2x, gray, 8x, 16x
    SUBSAMPLING_HIGH = -763
    EXTENDED_CLIPBOARD = -1063131698  # 0xC0A1E5CE as S32


class FenceFlags(IntEnum):
    """ClientFence / ServerFence flag bits."""

    BLOCK_BEFORE = 1 << 0
    BLOCK_AFTER = 1 << 1
    SYNC_NEXT = 1 << 2
    REQUEST = 1 << 31


#: Fence flags this server understands (and therefore echoes in a response).
FENCE_SUPPORTED = FenceFlags.BLOCK_BEFORE | FenceFlags.BLOCK_AFTER | FenceFlags.SYNC_NEXT


# -- rectangles and encoder parameters -----------------------------------------------
@dataclass(frozen=True, slots=True)
class EncodeOptions:
    """The client's hints: compression level 0..9 and JPEG quality 0..100 (None: lossless)."""

    compress_level: int = 2
    jpeg_quality: int | None = None
    #: Pillow's subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0.
    jpeg_subsampling: int = 2
    jpeg_grayscale: bool = False
    #: Not the client's: the frame's X (padding) bytes are zero already, so the native
    #: format's pixel values are a read-only view of it, not a masked copy
    #: (``PixelFormat.values``; the agent keeps its frames so).
    x_clear: bool = False


@dataclass(frozen=True, slots=True)
class EncodedRect:
    """One wire rectangle, positioned relative to the frame the encoder was given."""

    x: int
    y: int
    w: int
    h: int
    encoding: int
    payload: bytes
    #: The pixels only approximate the frame (JPEG): worth a lossless refresh later.
    lossy: bool = False


@dataclass(frozen=True, slots=True)
class SetPixelFormat:
    """Type 0: the client wants pixels in ``pixel_format`` from now on."""

    pixel_format: PixelFormat

    TYPE: ClassVar[int] = 0

    @staticmethod
    def wire_size(data: bytes) -> int | None:
        return 20

    @classmethod
    def parse(cls, data: bytes) -> SetPixelFormat:
        return cls(PixelFormat.parse(data[4:20]))


@dataclass(frozen=True, slots=True)
class SetEncodings:
    """Type 2: the encodings the client can decode, most preferred first."""

    encodings: tuple[int, ...]

    TYPE: ClassVar[int] = 2

    @staticmethod
    def wire_size(data: bytes) -> int | None:
        if len(data) < 4:
            return None
        (count,) = struct.unpack_from("!H", data, 2)
        if count > MAX_ENCODINGS:
            raise ProtocolError(f"SetEncodings lists {count} encodings, limit {MAX_ENCODINGS}")
        return 4 + 4 * count

    @classmethod
    def parse(cls, data: bytes) -> SetEncodings:
        (count,) = struct.unpack_from("!H", data, 2)
        return cls(struct.unpack_from(f"!{count}i", data, 4))


@dataclass(frozen=True, slots=True)
class FramebufferUpdateRequest:
    """Type 3: send the area, all of it unless ``incremental``."""

    incremental: bool
    x: int
    y: int
    w: int
    h: int

    TYPE: ClassVar[int] = 3

    @staticmethod
    def wire_size(data: bytes) -> int | None:
        return 10

    @classmethod
    def parse(cls, data: bytes) -> FramebufferUpdateRequest:
        incremental, x, y, w, h = struct.unpack_from("!BHHHH", data, 1)
        return cls(incremental != 0, x, y, w, h)


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """Type 4: a key with X11 ``keysym`` went down or up."""

    down: bool
    keysym: int

    TYPE: ClassVar[int] = 4

    @staticmethod
    def wire_size(data: bytes) -> int | None:
        return 8

    @classmethod
    def parse(cls, data: bytes) -> KeyEvent:
        down, keysym = struct.unpack_from("!B2xI", data, 1)
        return cls(down != 0, keysym)


@dataclass(frozen=True, slots=True)
class PointerEvent:
    """Type 5: the pointer is at (x, y) with ``buttons`` (bit 0 = left) held."""

    buttons: int
    x: int
    y: int

    TYPE: ClassVar[int] = 5

    @staticmethod
    def wire_size(data: bytes) -> int | None:
        return 6

    @classmethod
    def parse(cls, data: bytes) -> PointerEvent:
        return cls(*struct.unpack_from("!BHH", data, 1))


@dataclass(frozen=True, slots=True)
class ClientCutText:
    """Type 6: the client's clipboard text (Latin-1 on the wire)."""

    text: str

    TYPE: ClassVar[int] = 6

    @staticmethod
    def declared_length(data: bytes) -> int | None:
        """The text length in the header, or None before the header is complete."""
        if len(data) < 8:
            return None
        (length,) = struct.unpack_from("!I", data, 4)
        return int(length)

    @classmethod
    def wire_size(cls, data: bytes) -> int | None:
        length = cls.declared_length(data)
        if length is None:
            return None
        if length > MAX_CUT_TEXT:
            # Also catches ExtendedClipboard's negative lengths, which we never invited.
            raise ProtocolError(f"ClientCutText of {length} bytes exceeds {MAX_CUT_TEXT}")
        return 8 + length

    @classmethod
    def parse(cls, data: bytes) -> ClientCutText:
        return cls(bytes(data[8:]).decode("latin-1"))


class ClipboardFormat(IntFlag):
    """ExtendedClipboard format bits (rfbproto "Extended Clipboard Pseudo-Encoding")."""

    TEXT = 1 << 0
    RTF = 1 << 1
    HTML = 1 << 2
    DIB = 1 << 3
    FILES = 1 << 4


class ClipboardAction(IntFlag):
    """ExtendedClipboard action bits; only CAPS may be combined with others."""

    CAPS = 1 << 24
    REQUEST = 1 << 25
    PEEK = 1 << 26
    NOTIFY = 1 << 27
    PROVIDE = 1 << 28


NO_FORMATS = ClipboardFormat(0)
_FORMAT_MASK = 0xFFFF
_ACTION_MASK = 0xFF000000


@dataclass(frozen=True, slots=True)
class ExtendedClipboard:
    """An ExtendedClipboard message: a Client/ServerCutText whose S32 length is negative.

    Wire: ``type | 3 pad | S32 -len | U32 flags | body`` where ``flags`` holds format
    bits 0-15 and action bits 24-31. ``caps``: one U32 maximum unsolicited size per
    format bit set; ``provide``: one zlib stream holding ``U32 size | data`` per format
    bit set; the others have no body. Only text is carried here: UTF-8 with CRLF line
    ends and a terminating null on the wire, ``text`` with LF line ends here. Other
    formats a peer provides are ignored, never inflated. ``text`` is None in a provide without text,
    and ``dropped`` is the declared size of text dropped for exceeding the limit.
    """

    action: ClipboardAction
    formats: ClipboardFormat = NO_FORMATS
    #: caps only: the maximum unsolicited size for each format in ``formats``, in order.
    sizes: tuple[int, ...] = ()
    #: provide only.
    text: str | None = None
    dropped: int = 0

    @property
    def actions(self) -> ClipboardAction:
        """The actions a caps message lists (CAPS itself excluded)."""
        return self.action & ~ClipboardAction.CAPS

    @classmethod
    def caps(
        cls, formats: ClipboardFormat, actions: ClipboardAction, sizes: tuple[int, ...]
    ) -> ExtendedClipboard:
        """A caps message: which formats and actions the sender accepts."""
        return cls(ClipboardAction.CAPS | actions, formats, sizes)

    @classmethod
    def provide(cls, text: str | None) -> ExtendedClipboard:
        """A provide message carrying ``text`` (None: an empty clipboard)."""
        formats = NO_FORMATS if text is None else ClipboardFormat.TEXT
        return cls(ClipboardAction.PROVIDE, formats, text=text)

    def body(self) -> bytes:
        """Flags and body (what follows the S32 length)."""
        flags = int(self.action) | int(self.formats)
        out = struct.pack("!I", flags)
        if self.action & ClipboardAction.CAPS:
            if len(self.sizes) != _format_count(int(self.formats)):
                raise ValueError("caps needs one size per format")
            out += struct.pack(f"!{len(self.sizes)}I", *self.sizes)
        elif self.action == ClipboardAction.PROVIDE:
            if self.formats & ~ClipboardFormat.TEXT:
                raise ValueError("only text can be provided")
            payload = b""
            if self.formats & ClipboardFormat.TEXT:
                data = (self.text or "").replace("\r\n", "\n").replace("\n", "\r\n")
                raw = data.encode("utf-8", errors="replace") + b"\0"
                payload = struct.pack("!I", len(raw)) + raw
            out += zlib.compress(payload, 1)  # fast: clipboard text compresses well anyway
        return out

    def to_wire(self, message_type: int) -> bytes:
        """The whole message as message ``message_type`` (3 from servers, 6 from clients)."""
        body = self.body()
        return struct.pack("!B3xi", message_type, -len(body)) + body

    def __bytes__(self) -> bytes:
        return self.to_wire(ServerMessageType.SERVER_CUT_TEXT)

    @classmethod
    def parse_body(cls, body: bytes) -> ExtendedClipboard:
        """Parse what follows the negative length; ProtocolError when malformed."""
        if len(body) < 4:
            raise ProtocolError(f"ExtendedClipboard message of {len(body)} bytes has no flags")
        (flags,) = struct.unpack_from("!I", body)
        formats = ClipboardFormat(flags & _FORMAT_MASK)
        action = ClipboardAction(flags & _ACTION_MASK)
        if action & ClipboardAction.CAPS:
            count = _format_count(flags)
            if len(body) != 4 + 4 * count:
                raise ProtocolError(
                    f"ExtendedClipboard caps with {count} formats is {len(body)} bytes"
                )
            return cls(action, formats, struct.unpack_from(f"!{count}I", body, 4))
        if action not in (
            ClipboardAction.REQUEST,
            ClipboardAction.PEEK,
            ClipboardAction.NOTIFY,
            ClipboardAction.PROVIDE,
        ):
            raise ProtocolError(f"ExtendedClipboard flags 0x{flags:08x} name no single action")
        if action != ClipboardAction.PROVIDE:
            if len(body) != 4:
                raise ProtocolError(f"ExtendedClipboard {action.name} carries data")
            return cls(action, formats)
        return _parse_provide(formats, body[4:])


def _format_count(flags: int) -> int:
    return (flags & _FORMAT_MASK).bit_count()


def _parse_provide(formats: ClipboardFormat, compressed: bytes) -> ExtendedClipboard:
    """Inflate the text of a provide, never more than the limit.

    Text is format bit 0, so it comes first in the stream; what follows it (RTF, HTML,
    ...) is never inflated. Text declared over the limit is dropped uninflated, and a
    text-only stream must end right after the text (a zlib bomb ends the connection).
    """
    if not formats & ClipboardFormat.TEXT:
        return ExtendedClipboard(ClipboardAction.PROVIDE, formats)
    stream = _Inflated(compressed)
    (size,) = struct.unpack("!I", stream.take(4))
    if size > MAX_CLIPBOARD_TEXT:
        return ExtendedClipboard(ClipboardAction.PROVIDE, formats, dropped=size)
    raw = stream.take(size)
    if formats == ClipboardFormat.TEXT:
        stream.finish()
    # The text is null-terminated; like TigerVNC, anything after a null is ignored.
    text = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").replace("\r\n", "\n")
    return ExtendedClipboard(ClipboardAction.PROVIDE, formats, text=text)


class _Inflated:
    """Bounded reads from a zlib stream: every ``take`` inflates at most what it needs."""

    def __init__(self, compressed: bytes) -> None:
        self._z = zlib.decompressobj()
        self._pending = compressed

    def take(self, n: int) -> bytes:
        out = b""
        try:
            while len(out) < n:
                chunk = self._z.decompress(self._pending, min(n - len(out), 1 << 16))
                self._pending = self._z.unconsumed_tail
                if not chunk:
                    break
                out += chunk
        except zlib.error as exc:
            raise ProtocolError(f"ExtendedClipboard data is not a zlib stream ({exc})") from None
        if len(out) < n:
            raise ProtocolError("ExtendedClipboard data ends early")
        return out

    def finish(self) -> None:
        """Nothing may inflate past the last format (a zlib bomb would be found here).

        The stream need not be finished: TigerVNC ends it with a sync flush only.
        """
        try:
            extra = self._z.decompress(self._pending, 1)
        except zlib.error as exc:
            raise ProtocolError(f"ExtendedClipboard data is not a zlib stream ({exc})") from None
        if extra:
            raise ProtocolError("ExtendedClipboard data has bytes after its last format")


@dataclass(frozen=True, slots=True)
class EnableContinuousUpdates:
    """Type 150: start (or stop) sending updates for the area without requests."""

    enable: bool
    x: int
    y: int
    w: int
    h: int

    TYPE: ClassVar[int] = 150

    @staticmethod
    def wire_size(data: bytes) -> int | None:
        return 10

    @classmethod
    def parse(cls, data: bytes) -> EnableContinuousUpdates:
        enable, x, y, w, h = struct.unpack_from("!BHHHH", data, 1)
        return cls(enable != 0, x, y, w, h)


@dataclass(frozen=True, slots=True)
class Fence:
    """Type 248 (ClientFence), also the layout of ServerFence (type 248 the other way)."""

    flags: int
    payload: bytes = b""

    TYPE: ClassVar[int] = 248

    @staticmethod
    def wire_size(data: bytes) -> int | None:
        if len(data) < 9:
            return None
        length = data[8]
        if length > MAX_FENCE_PAYLOAD:
            raise ProtocolError(f"Fence payload of {length} bytes exceeds {MAX_FENCE_PAYLOAD}")
        return 9 + length

    @classmethod
    def parse(cls, data: bytes) -> Fence:
        (flags,) = struct.unpack_from("!I", data, 4)
        return cls(flags, bytes(data[9:]))

    def __bytes__(self) -> bytes:
        if len(self.payload) > MAX_FENCE_PAYLOAD:
            raise ValueError("fence payload too long")
        return struct.pack("!B3xIB", 248, self.flags, len(self.payload)) + self.payload


@dataclass(frozen=True, slots=True)
class Screen:
    """One screen of the ExtendedDesktopSize screen layout."""

    id: int
    x: int
    y: int
    w: int
    h: int
    flags: int = 0

    def __bytes__(self) -> bytes:
        return struct.pack("!IHHHHI", self.id, self.x, self.y, self.w, self.h, self.flags)


@dataclass(frozen=True, slots=True)
class SetDesktopSize:
    """Type 251: the client asks for a new framebuffer size / screen layout."""

    w: int
    h: int
    screens: tuple[Screen, ...]

    TYPE: ClassVar[int] = 251

    @staticmethod
    def wire_size(data: bytes) -> int | None:
        if len(data) < 8:
            return None
        count = data[6]
        if count > MAX_SCREENS:
            raise ProtocolError(f"SetDesktopSize lists {count} screens, limit {MAX_SCREENS}")
        return 8 + 16 * count

    @classmethod
    def parse(cls, data: bytes) -> SetDesktopSize:
        w, h, count = struct.unpack_from("!HHB", data, 2)
        screens = tuple(
            Screen(*struct.unpack_from("!IHHHHI", data, 8 + 16 * i)) for i in range(count)
        )
        return cls(w, h, screens)


@dataclass(frozen=True, slots=True)
class QEMUExtendedKeyEvent:
    """Type 255 subtype 0: a key event carrying the XT scancode (``keycode``)."""

    down: bool
    keysym: int
    keycode: int

    TYPE: ClassVar[int] = 255

    @staticmethod
    def wire_size(data: bytes) -> int | None:
        if len(data) < 2:
            return None
        if data[1] != 0:
            raise ProtocolError(f"unsupported QEMU client message subtype {data[1]}")
        return 12

    @classmethod
    def parse(cls, data: bytes) -> QEMUExtendedKeyEvent:
        down, keysym, keycode = struct.unpack_from("!HII", data, 2)
        return cls(down != 0, keysym, keycode)


ClientMessage = (
    SetPixelFormat
    | SetEncodings
    | FramebufferUpdateRequest
    | KeyEvent
    | PointerEvent
    | ClientCutText
    | EnableContinuousUpdates
    | Fence
    | SetDesktopSize
    | QEMUExtendedKeyEvent
)

CLIENT_MESSAGES: dict[int, type[ClientMessage]] = {
    cls.TYPE: cls
    for cls in (
        SetPixelFormat,
        SetEncodings,
        FramebufferUpdateRequest,
        KeyEvent,
        PointerEvent,
        ClientCutText,
        EnableContinuousUpdates,
        Fence,
        SetDesktopSize,
        QEMUExtendedKeyEvent,
    )
}


def client_message_size(data: bytes) -> int | None:
    """Length of the client message starting ``data``; None when more bytes are needed."""
    if not data:
        return None
    cls = CLIENT_MESSAGES.get(data[0])
    if cls is None:
        raise ProtocolError(f"unknown client message type {data[0]}")
    return cls.wire_size(data)


def parse_client_message(data: bytes) -> tuple[ClientMessage, int] | None:
    """Parse the message at the start of ``data``: (message, bytes used) or None."""
    size = client_message_size(data)
    if size is None or len(data) < size:
        return None
    return CLIENT_MESSAGES[data[0]].parse(data[:size]), size


# -- server to client -----------------------------------------------------------------


class ServerMessageType(IntEnum):
    FRAMEBUFFER_UPDATE = 0
    SET_COLOUR_MAP_ENTRIES = 1
    BELL = 2
    SERVER_CUT_TEXT = 3
    END_OF_CONTINUOUS_UPDATES = 150
    SERVER_FENCE = 248


@dataclass(frozen=True, slots=True)
class ServerInit:
    """ServerInit (RFC 6143 §7.3.2)."""

    width: int
    height: int
    pixel_format: PixelFormat
    name: str

    def __bytes__(self) -> bytes:
        name = self.name.encode("utf-8")
        return (
            struct.pack("!HH", self.width, self.height)
            + bytes(self.pixel_format)
            + struct.pack("!I", len(name))
            + name
        )


def framebuffer_update_header(count: int) -> bytes:
    """FramebufferUpdate header for ``count`` rectangles (0xFFFF = ended by LastRect)."""
    return struct.pack("!BxH", ServerMessageType.FRAMEBUFFER_UPDATE, count)


def rect_header(x: int, y: int, w: int, h: int, encoding: int) -> bytes:
    """The 12-byte header in front of each rectangle of a FramebufferUpdate."""
    return struct.pack("!HHHHi", x, y, w, h, encoding)


@dataclass(frozen=True, slots=True)
class SetColourMapEntries:
    first: int
    colours: tuple[tuple[int, int, int], ...]

    def __bytes__(self) -> bytes:
        head = struct.pack(
            "!BxHH", ServerMessageType.SET_COLOUR_MAP_ENTRIES, self.first, len(self.colours)
        )
        return head + b"".join(struct.pack("!HHH", *c) for c in self.colours)


@dataclass(frozen=True, slots=True)
class ServerCutText:
    text: str

    def __bytes__(self) -> bytes:
        data = self.text.encode("latin-1", errors="replace")
        return struct.pack("!B3xI", ServerMessageType.SERVER_CUT_TEXT, len(data)) + data


@dataclass(frozen=True, slots=True)
class Bell:
    def __bytes__(self) -> bytes:
        return bytes([ServerMessageType.BELL])


@dataclass(frozen=True, slots=True)
class EndOfContinuousUpdates:
    def __bytes__(self) -> bytes:
        return bytes([ServerMessageType.END_OF_CONTINUOUS_UPDATES])
