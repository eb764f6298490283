"""Sans-IO RFB 3.8 server (RFC 6143; extensions from the rfbproto community spec).

Wire summary (server ``S``, client ``C``; full text in docs/protocol/rfb.md)::

    S: "RFB 003.008\\n"          C: "RFB 003.00x\\n"   (3.3, 3.7 and 3.8 accepted)
    3.7/3.8  S: [1, None(1)]    C: 1    3.8 only: S: SecurityResult OK (U32 0)
    3.3      S: U32 1 (None)
    C: ClientInit (shared flag)  S: ServerInit (size, pixel format, name)
    then C: SetPixelFormat, SetEncodings, FramebufferUpdateRequest, KeyEvent,
            PointerEvent, ClientCutText, EnableContinuousUpdates, ClientFence,
            SetDesktopSize, QEMU Extended Key Event
         S: FramebufferUpdate, SetColourMapEntries, ServerCutText,
            EndOfContinuousUpdates, ServerFence

Clipboard: plain Client/ServerCutText (Latin-1), or, once the client lists the
ExtendedClipboard pseudo-encoding (and we answered with caps), negative-length cut text
messages carrying UTF-8 text (caps / request / peek / notify / provide). The server
answers peeks itself and turns the rest into events (``ClipboardAnnounced``,
``ClipboardRequested``, ``m.ClientCutText`` for text that arrived, ``ClipboardDropped``);
whether any of it reaches the customer's clipboard is the owner's decision.

Security type None only: enkaku's end-to-end channel already authenticates and encrypts.
``receive_data()`` parses whatever bytes arrived and returns events; ``data_to_send()``
returns what must go out. The server answers what is pure protocol itself (fences,
continuous-update acknowledgements, SetDesktopSize refusals, colour maps, extension
announcements) and leaves capture, damage and input to its owner.

Screen layout: ``screens`` is the ExtendedDesktopSize screen list (one entry per monitor;
by default one screen covering the framebuffer), sent with every size change and every
non-incremental request when the client lists the pseudo-encoding; ``set_screens()`` and
``send_desktop_size()`` change it. SetDesktopSize is refused ("prohibited") unless the
owner sets ``layout_requests``: it then receives the message as an event and answers
with ``send_desktop_size(..., reason=DesktopSizeReason.CLIENT)`` or
``refuse_desktop_size()`` (the agent uses this to let a viewer choose one monitor).

Updates may be encoded on a worker thread: ``begin_framebuffer_update()`` (on the
owner's thread) snapshots the pixel format and options and consumes the request,
``PendingUpdate.encode()`` does the pixel work touching only the encoders, and
``end_framebuffer_update()`` queues the message. Replies produced in between are held
back and sent after it, so a fence answered meanwhile still follows the update. A large
ZRLE or Raw update may instead be streamed (``PendingUpdate.streams``):
``PendingUpdate.stream()`` encodes its rectangles in bands of rows and hands each band
to ``stream_part()`` as soon as it is encoded, so it can go out while the rest is
encoded; ``end_framebuffer_update()`` then only ends it.

Adaptive quality (congestion.py): once the client has answered our first Fence, every
FramebufferUpdate is followed by a Fence request (BlockBefore, payload ``PING_TAG`` +
sequence number), and preceded by one when nothing is in flight (the bare round trip).
The answers give the round trip, the bytes acknowledged and the link's delivery rate;
``update_requested`` is None while more is in flight than the link drains in the target
delay (fewer updates per second on a slow link), and the JPEG quality steps down while
the link is the bottleneck, back up to the client's own choice once it has room
(``link`` shows the state; ``refresh_pixels`` sizes lossless refresh parts). An answer
comes back as an ``m.Fence`` event: the owner's update loop should look at
``update_requested`` again.
Clients without fences are never held back and get the quality they asked for.
"""

from __future__ import annotations

import logging
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.rfb import messages as m
from enkaku.protocol.rfb.congestion import Congestion, LinkStatus, QualityGovernor
from enkaku.protocol.rfb.encodings import ENCODERS, EncodeOptions, Encoder, Rect, RectLike
from enkaku.protocol.rfb.encodings.copyrect import Copy, encode_copyrect
from enkaku.protocol.rfb.messages import Encoding
from enkaku.protocol.rfb.pixelformat import NATIVE, Frame, PixelFormat

logger = logging.getLogger(__name__)

_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
#: JPEG quality for Tight quality levels 0..9 (the TurboVNC/TigerVNC scale).
JPEG_QUALITY = (15, 29, 41, 42, 62, 77, 79, 86, 92, 100)
SECURITY_NONE = 1
#: Payload prefix of our congestion pings (then the U32 sequence number).
PING_TAG = b"enkaku-ping"
#: The flags of a ping: answered only once the client processed the update before it.
PING_FLAGS = m.FenceFlags.REQUEST | m.FenceFlags.BLOCK_BEFORE
#: A ping's size on the wire (its payload: the tag and a 4-byte sequence number).
PING_SIZE = len(bytes(m.Fence(PING_FLAGS, PING_TAG + bytes(4))))


class DesktopSizeReason:
    """ExtendedDesktopSize x-position: why the size or layout changed (rfbproto)."""

    SERVER = 0  # the server changed it on its own
    CLIENT = 1  # this client asked (SetDesktopSize); y-position holds the status


class DesktopSizeStatus:
    """ExtendedDesktopSize y-position after a SetDesktopSize (rfbproto)."""

    OK = 0
    PROHIBITED = 1
    OUT_OF_RESOURCES = 2
    INVALID_LAYOUT = 3


class State(Enum):
    """Where the connection is in RFC 6143 §7.1-7.3."""

    WAITING_FOR_VERSION = "waiting_for_version"
    WAITING_FOR_SECURITY_TYPE = "waiting_for_security_type"
    WAITING_FOR_CLIENT_INIT = "waiting_for_client_init"
    RUNNING = "running"
    CLOSED = "closed"


class Trigger(Enum):
    VERSION_3_3 = "version_3_3"
    VERSION_3_7_OR_3_8 = "version_3_7_or_3_8"
    SECURITY_NONE_CHOSEN = "security_none_chosen"
    CLIENT_INIT = "client_init"
    FAILURE = "failure"


TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.WAITING_FOR_VERSION, Trigger.VERSION_3_3): State.WAITING_FOR_CLIENT_INIT,
    (State.WAITING_FOR_VERSION, Trigger.VERSION_3_7_OR_3_8): State.WAITING_FOR_SECURITY_TYPE,
    (State.WAITING_FOR_SECURITY_TYPE, Trigger.SECURITY_NONE_CHOSEN): State.WAITING_FOR_CLIENT_INIT,
    (State.WAITING_FOR_CLIENT_INIT, Trigger.CLIENT_INIT): State.RUNNING,
    **{(state, Trigger.FAILURE): State.CLOSED for state in State},
}


@dataclass(frozen=True, slots=True)
class ClientInitialised:
    """The handshake is done: updates and input may flow."""

    version: tuple[int, int]
    shared: bool


@dataclass(frozen=True, slots=True)
class ClipboardAnnounced:
    """The client's clipboard changed (ExtendedClipboard notify); ``text``: it holds text.

    The text itself comes only if the owner calls ``request_clipboard()``.
    """

    text: bool


@dataclass(frozen=True, slots=True)
class ClipboardRequested:
    """The client wants our clipboard text: answer with ``send_cut_text()`` (or not)."""


@dataclass(frozen=True, slots=True)
class ClipboardDropped:
    """Clipboard text from the client was too long and was thrown away unread.

    ``size``: the text's declared size, or the whole message's when it was skipped.
    """

    size: int


Event = (
    ClientInitialised | m.ClientMessage | ClipboardAnnounced | ClipboardRequested
    | ClipboardDropped
)  # fmt: skip

#: The client's capabilities when it lists ExtendedClipboard but sends no caps
#: (rfbproto "Extended Clipboard Pseudo-Encoding"): 20 MiB of text unsolicited.
DEFAULT_CLIENT_CLIPBOARD_CAPS = m.ExtendedClipboard.caps(
    m.ClipboardFormat.TEXT | m.ClipboardFormat.RTF | m.ClipboardFormat.HTML,
    m.ClipboardAction.REQUEST | m.ClipboardAction.NOTIFY | m.ClipboardAction.PROVIDE,
    (20 << 20, 0, 0),
)
#: What we accept: text only, every action but unsolicited data (size 0, as rfbproto
#: recommends: the client notifies and we request only while the customer allows it).
SERVER_CLIPBOARD_CAPS = m.ExtendedClipboard.caps(
    m.ClipboardFormat.TEXT,
    m.ClipboardAction.REQUEST | m.ClipboardAction.PEEK | m.ClipboardAction.NOTIFY
    | m.ClipboardAction.PROVIDE,
    (0,),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """What the client is waiting for: changes within ``region``, all of ``full``."""

    region: Rect
    full: Rect | None = None
    continuous: bool = False

    @property
    def incremental(self) -> bool:
        return self.full is None


class CursorLike(Protocol):
    """The capture layer's CursorImage: BGRA pixels (straight alpha) and hotspot."""

    @property
    def pixels(self) -> npt.NDArray[np.uint8]: ...
    @property
    def hotspot_x(self) -> int: ...
    @property
    def hotspot_y(self) -> int: ...


#: A ZRLE or Raw update of at least this many pixels is streamed (``PendingUpdate.stream``): its
#: rectangles go out in bands of about ``BAND_PIXELS``, each as soon as it is encoded, so
#: the link carries and the viewer decodes the top of a large change while the rest is
#: still being encoded (a full-screen picture: encode and transfer overlap instead of
#: following each other).
STREAM_PIXELS = 512 * 1024
BAND_PIXELS = 256 * 1024
#: Band heights are whole ZRLE tiles.
BAND_ROWS_STEP = 64


def bands(rect: Rect) -> list[Rect]:
    """``rect`` cut into bands of about ``BAND_PIXELS`` (whole if it is smaller)."""
    rows = max(BAND_ROWS_STEP, BAND_PIXELS // max(1, rect.w) // BAND_ROWS_STEP * BAND_ROWS_STEP)
    if rect.h <= rows + rows // 2:
        return [rect]
    return [
        Rect(rect.x, y, rect.w, min(rows, rect.y + rect.h - y))
        for y in range(rect.y, rect.y + rect.h, rows)
    ]


@dataclass(slots=True)
class PendingUpdate:
    """A FramebufferUpdate between begin and end; ``encode()`` or ``stream()`` may run
    on any thread."""

    frame: Frame
    rects: list[Rect]
    copies: list[tuple[Rect, int, int]]
    encoder: Encoder
    pixel_format: PixelFormat
    options: EncodeOptions
    last_rect: bool
    prefix: bytes
    pseudo: list[bytes]
    message: bytes | None = None
    rect_count: int = field(default=0)
    #: Rectangles sent lossily (JPEG), in framebuffer coordinates; known after encode().
    lossy: list[Rect] = field(default_factory=list)
    #: The message went out through ``stream()`` (``message`` is then empty).
    streamed: bool = False

    def _copy_parts(self) -> list[bytes]:
        return [
            m.rect_header(dest.x, dest.y, dest.w, dest.h, Encoding.COPYRECT)
            + encode_copyrect(sx, sy)
            for dest, sx, sy in self.copies
        ]

    def _encode_rect(self, r: Rect) -> list[bytes]:
        parts = []
        sub = self.frame[r.y : r.y + r.h, r.x : r.x + r.w]
        for er in self.encoder.encode(sub, self.pixel_format, self.options):
            head = m.rect_header(r.x + er.x, r.y + er.y, er.w, er.h, er.encoding)
            parts.append(head + er.payload)
            if er.lossy:
                self.lossy.append(Rect(r.x + er.x, r.y + er.y, er.w, er.h))
        return parts

    def encode(self) -> bytes:
        """Encode all rectangles into the FramebufferUpdate message(s)."""
        parts = list(self.pseudo) + self._copy_parts()
        for r in self.rects:
            parts += self._encode_rect(r)
        self.rect_count = len(parts)
        if len(parts) < 0xFFFF:
            body = m.framebuffer_update_header(len(parts)) + b"".join(parts)
        elif self.last_rect:
            last = m.rect_header(0, 0, 0, 0, Encoding.LAST_RECT)
            body = m.framebuffer_update_header(0xFFFF) + b"".join(parts) + last
        else:
            chunks = [parts[i : i + 0xFFFE] for i in range(0, len(parts), 0xFFFE)]
            body = b"".join(m.framebuffer_update_header(len(c)) + b"".join(c) for c in chunks)
        self.message = self.prefix + body
        return self.message

    @property
    def streams(self) -> bool:
        """Whether ``stream()`` may be used: the update is large, and its encoder makes
        one wire rectangle of each rectangle it is given (ZRLE, Raw), so the message's
        rectangle count is known before its first band is encoded. (Tight, which may cut
        a band further, is not streamed: its JPEG frames are small, and nine encoder
        passes a frame cost it 8-10 % more CPU, docs/performance.md.)"""
        if not getattr(self.encoder, "one_rect", False):
            return False
        if sum(r.w * r.h for r in self.rects) < STREAM_PIXELS:
            return False
        return len(self.pseudo) + len(self.copies) + sum(len(bands(r)) for r in self.rects) < 0xFFFF

    def stream(self, emit: Callable[[bytes], None]) -> None:
        """Encode as ``encode()`` does, handing the message to ``emit`` in order: the
        header with the first band, then each band as soon as it is encoded (large
        rectangles in bands of ``BAND_PIXELS``). Only where ``streams`` is true."""
        cut = [b for r in self.rects for b in bands(r)]
        count = len(self.pseudo) + len(self.copies) + len(cut)
        waiting = [self.prefix + m.framebuffer_update_header(count), *self.pseudo]
        waiting += self._copy_parts()
        for r in cut:
            emit(b"".join(waiting + self._encode_rect(r)))
            waiting = []
        self.rect_count = count
        self.message = b""
        self.streamed = True


class RFBServer:
    """One RFB connection's protocol state; no IO, no threads of its own."""

    def __init__(
        self,
        width: int,
        height: int,
        name: str,
        screens: Sequence[m.Screen] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.width = width
        self.height = height
        self.name = name
        #: The ExtendedDesktopSize screen layout (see the module docstring).
        self.screens: tuple[m.Screen, ...] = tuple(screens) or (m.Screen(0, 0, 0, width, height),)
        #: SetDesktopSize goes to the owner as an event instead of being refused here.
        self.layout_requests = False
        self.state = State.WAITING_FOR_VERSION
        self.version: tuple[int, int] | None = None
        self.pixel_format = NATIVE
        self.encodings: frozenset[int] = frozenset()
        self.encoding: int = Encoding.RAW
        self.options = EncodeOptions()
        self._encoders: dict[int, Encoder] = {}
        self._in = bytearray()
        self._out = bytearray(b"RFB 003.008\n")
        self._held: bytearray | None = None
        self._streaming = False  # a streamed update has begun going out
        self._skip = 0
        self._pending: Rect | None = None
        self._pending_full: Rect | None = None
        self._continuous: Rect | None = None
        self._pseudo: list[bytes] = []
        self._announced: set[int] = set()
        #: The client's ExtendedClipboard caps once we sent ours (None: plain cut text).
        self._clipboard_caps: m.ExtendedClipboard | None = None
        self._clipboard_has_text = False  # what our last notify said (answers peeks)
        #: Fence round trips (see the module docstring): active once the client answered.
        self._link = Congestion(clock)
        self._quality = QualityGovernor(self._link, clock)
        self._pinging = False
        self._announced_at = 0  # our position after the Fence announcement
        self._sent_total = 0  # bytes handed out by data_to_send()

    # -- state machine ---------------------------------------------------------------

    def _fire(self, trigger: Trigger) -> None:
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise ProtocolError(f"{trigger.value} is illegal in state {self.state.value}")
        logger.debug("rfb %s -> %s (%s)", self.state.value, new.value, trigger.value)
        self.state = new

    def _fail(self, reason: str) -> ProtocolError:
        if self.state is not State.CLOSED:
            self._fire(Trigger.FAILURE)
        return ProtocolError(reason)

    # -- input ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the client; returns the complete events they finished."""
        if self.state is State.CLOSED:
            raise ProtocolError("RFB connection is closed")
        self._in += data
        events: list[Event] = []
        pos = 0
        try:
            while pos < len(self._in):
                if self._skip:
                    n = min(self._skip, len(self._in) - pos)
                    self._skip -= n
                    pos += n
                    continue
                used, event = self._next(pos)
                if not used:
                    break
                pos += used
                if event is not None:
                    events.append(event)
        except ProtocolError:
            if self.state is not State.CLOSED:
                self._fire(Trigger.FAILURE)
            raise
        finally:
            del self._in[:pos]
        return events

    def _next(self, pos: int) -> tuple[int, Event | None]:
        buf = self._in
        avail = len(buf) - pos
        if self.state is State.WAITING_FOR_VERSION:
            if avail < 12:
                return 0, None
            self._handle_version(bytes(buf[pos : pos + 12]))
            return 12, None
        if self.state is State.WAITING_FOR_SECURITY_TYPE:
            self._handle_security_type(buf[pos])
            return 1, None
        if self.state is State.WAITING_FOR_CLIENT_INIT:
            return 1, self._handle_client_init(buf[pos])
        head = bytes(buf[pos : pos + 9])
        if head[0] == m.ClientCutText.TYPE:
            length = m.ClientCutText.declared_length(head)
            if length is not None and length >= 1 << 31:  # S32 < 0: ExtendedClipboard
                return self._next_extended_clipboard(pos, (1 << 32) - length)
            if length is not None and length > m.MAX_CUT_TEXT:
                # Skip it as TigerVNC does rather than end the session over a big paste.
                logger.debug("rfb skipping a %d-byte ClientCutText", length)
                self._skip = length
                return 8, None
        size = m.client_message_size(head)
        if size is None or avail < size:
            return 0, None
        message = m.CLIENT_MESSAGES[head[0]].parse(bytes(buf[pos : pos + size]))
        self._handle_message(message)
        return size, message

    def _next_extended_clipboard(self, pos: int, size: int) -> tuple[int, Event | None]:
        if self._clipboard_caps is None:
            raise ProtocolError("ExtendedClipboard message, but the client never listed it")
        if size > m.MAX_EXTENDED_CLIPBOARD:
            logger.info(
                "rfb skipping a %d-byte ExtendedClipboard message (limit %d)",
                size, m.MAX_EXTENDED_CLIPBOARD,
            )  # fmt: skip
            self._skip = size
            return 8, ClipboardDropped(size)
        if len(self._in) - pos < 8 + size:
            return 0, None
        message = m.ExtendedClipboard.parse_body(bytes(self._in[pos + 8 : pos + 8 + size]))
        return 8 + size, self._handle_extended_clipboard(message)

    def _handle_extended_clipboard(self, message: m.ExtendedClipboard) -> Event | None:
        action = message.action
        logger.debug("rfb clipboard %s (formats 0x%x)", action.name, message.formats)
        if action & m.ClipboardAction.CAPS:
            self._clipboard_caps = message
        elif action == m.ClipboardAction.PEEK:
            self._emit_clipboard_notify()
        elif action == m.ClipboardAction.NOTIFY:
            return ClipboardAnnounced(bool(message.formats & m.ClipboardFormat.TEXT))
        elif action == m.ClipboardAction.REQUEST:
            if message.formats & m.ClipboardFormat.TEXT:
                return ClipboardRequested()
        elif message.dropped:
            return ClipboardDropped(message.dropped)
        elif message.text is not None:
            return m.ClientCutText(message.text)
        return None

    def _handle_version(self, data: bytes) -> None:
        match = _VERSION.fullmatch(data)
        if match is None or int(match[1]) != 3:
            raise self._fail(f"bad ProtocolVersion {data[:11]!r}")
        # RFC 6143 §7.1.1: anything other than 3.7 and 3.8 is to be treated as 3.3.
        minor = int(match[2])
        self.version = (3, minor if minor in (7, 8) else 3)
        if self.version == (3, 3):
            self._emit(struct.pack("!I", SECURITY_NONE))
            self._fire(Trigger.VERSION_3_3)
        else:
            self._emit(bytes([1, SECURITY_NONE]))
            self._fire(Trigger.VERSION_3_7_OR_3_8)

    def _handle_security_type(self, chosen: int) -> None:
        if chosen != SECURITY_NONE:
            if self.version == (3, 8):
                reason = b"security type None is the only one offered"
                self._emit(struct.pack("!II", 1, len(reason)) + reason)
            raise self._fail(f"client chose security type {chosen}, not None")
        if self.version == (3, 8):
            self._emit(struct.pack("!I", 0))  # SecurityResult OK
        self._fire(Trigger.SECURITY_NONE_CHOSEN)

    def _handle_client_init(self, shared: int) -> ClientInitialised:
        self._emit(bytes(m.ServerInit(self.width, self.height, self.pixel_format, self.name)))
        self._fire(Trigger.CLIENT_INIT)
        assert self.version is not None
        return ClientInitialised(self.version, shared != 0)

    def _handle_message(self, message: m.ClientMessage) -> None:
        match message:
            case m.SetPixelFormat(pixel_format=pf):
                self.pixel_format = pf
                if not pf.true_colour:
                    self._emit(bytes(m.SetColourMapEntries(0, tuple(pf.colour_map()))))
            case m.SetEncodings(encodings=codes):
                self._handle_set_encodings(codes)
            case m.FramebufferUpdateRequest():
                self._handle_update_request(message)
            case m.EnableContinuousUpdates(enable=enable, x=x, y=y, w=w, h=h):
                if enable:
                    self._continuous = self._clip(Rect(x, y, w, h)) or Rect(0, 0, 0, 0)
                else:
                    self._continuous = None
                    self._emit(bytes(m.EndOfContinuousUpdates()))
            case m.Fence(flags=flags, payload=payload):
                if flags & m.FenceFlags.REQUEST:
                    # Messages are handled in order, so every flag is already honoured.
                    self._emit(bytes(m.Fence(flags & m.FENCE_SUPPORTED, payload)))
                elif payload.startswith(PING_TAG) and len(payload) == len(PING_TAG) + 4:
                    if self._link.pong(int.from_bytes(payload[len(PING_TAG) :], "big")):
                        self._quality.answered()
                elif Encoding.FENCE in self._announced and not self._pinging:
                    # The answer to our announcement: this client answers fences, and
                    # has read everything up to it.
                    self._pinging = True
                    self._link.sent(self._position() - self._link.position)
                    self._link.acked = min(self._announced_at, self._link.position)
                    logger.debug("rfb client answers fences: adaptive quality on")
            case m.SetDesktopSize():
                if not self.layout_requests:
                    # The agent never resizes the customer's screen: prohibited.
                    self.refuse_desktop_size()
            case _:
                pass

    def _handle_set_encodings(self, codes: tuple[int, ...]) -> None:
        self.encodings = frozenset(codes)
        # The client's order is its preference (RFC 6143 §7.5.2); Raw when nothing fits.
        self.encoding = next((c for c in codes if c in ENCODERS), Encoding.RAW)
        compress, level, fine, subsampling = 2, None, None, None
        for code in reversed(codes):  # the first one listed wins
            if Encoding.COMPRESS_LOW <= code <= Encoding.COMPRESS_HIGH:
                compress = code - Encoding.COMPRESS_LOW
            elif Encoding.JPEG_QUALITY_LOW <= code <= Encoding.JPEG_QUALITY_HIGH:
                level = code - Encoding.JPEG_QUALITY_LOW
            elif Encoding.FINE_QUALITY_LOW <= code <= Encoding.FINE_QUALITY_HIGH:
                fine = max(1, code - Encoding.FINE_QUALITY_LOW)
            elif Encoding.SUBSAMPLING_LOW <= code <= Encoding.SUBSAMPLING_HIGH:
                subsampling = code - Encoding.SUBSAMPLING_LOW
        quality = fine if fine is not None else None if level is None else JPEG_QUALITY[level]
        if subsampling is None:
            # Pillow: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0; higher levels keep more colour.
            chroma = 0 if level == 9 else 1 if level is not None and level >= 6 else 2
        else:
            chroma = {0: 0, 2: 1}.get(subsampling, 2)  # 1x, 2x; 4x, 8x, 16x -> 4:2:0
        self.options = EncodeOptions(
            compress_level=compress,
            jpeg_quality=quality,
            jpeg_subsampling=chroma,
            jpeg_grayscale=subsampling == 3,
        )
        # Announce the extensions the client asked for, once each (rfbproto §Fence,
        # §ContinuousUpdates, §QEMU Extended Key Event).
        if Encoding.FENCE in codes and Encoding.FENCE not in self._announced:
            self._announced.add(Encoding.FENCE)
            self._emit(bytes(m.Fence(m.FenceFlags.REQUEST)))
            self._announced_at = self._position()
        if (
            Encoding.CONTINUOUS_UPDATES in codes
            and Encoding.CONTINUOUS_UPDATES not in self._announced
        ):
            self._announced.add(Encoding.CONTINUOUS_UPDATES)
            self._emit(bytes(m.EndOfContinuousUpdates()))
        if Encoding.EXTENDED_CLIPBOARD in codes:
            # rfbproto: caps answer every SetEncodings that lists the pseudo-encoding.
            if self._clipboard_caps is None:
                self._clipboard_caps = DEFAULT_CLIENT_CLIPBOARD_CAPS
            self._emit(bytes(SERVER_CLIPBOARD_CAPS))
        qemu = Encoding.QEMU_EXTENDED_KEY_EVENT
        if qemu in codes and qemu not in self._announced:
            self._announced.add(qemu)
            self._pseudo.append(m.rect_header(0, 0, 0, 0, qemu))

    def _handle_update_request(self, req: m.FramebufferUpdateRequest) -> None:
        if req.incremental and self._continuous is not None:
            return  # rfbproto §EnableContinuousUpdates: ignored while continuous
        area = self._clip(Rect(req.x, req.y, req.w, req.h)) or Rect(0, 0, 0, 0)
        self._pending = area if self._pending is None else self._pending.union(area)
        if not req.incremental:
            full = self._pending_full
            self._pending_full = area if full is None else full.union(area)

    def _clip(self, rect: RectLike) -> Rect | None:
        return Rect(0, 0, self.width, self.height).intersect(rect)

    # -- output --------------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        (self._out if self._held is None else self._held).extend(data)

    def data_to_send(self) -> bytes:
        """Bytes to write to the client, in order; empties the buffer."""
        data = bytes(self._out)
        self._out.clear()
        self._sent_total += len(data)
        return data

    def _position(self) -> int:
        """Bytes queued to the client so far (sent or waiting in the buffer)."""
        return self._sent_total + len(self._out)

    def _ping(self) -> None:
        """Follow what was queued with a ping (congestion.py); the pinging client only."""
        link = self._link
        link.sent(self._position() - link.position)
        # Counted with the ping: once it is answered, nothing is in flight.
        seq = link.ping(PING_SIZE)
        # Never held back: a ping goes right after (or before) the update it follows.
        self._out += bytes(m.Fence(PING_FLAGS, PING_TAG + seq.to_bytes(4, "big")))

    @property
    def link(self) -> LinkStatus:
        """The adaptive-quality state: JPEG quality, rate and round trip (no content)."""
        link = self._link
        if self._pinging:
            link.sent(self._position() - link.position)
        client = self.options.jpeg_quality
        return LinkStatus(
            quality=self._quality.quality(client) if self._pinging else client,
            client_quality=client,
            rate=link.rate,
            rtt=link.rtt,
            base_rtt=link.base_rtt,
            in_flight=link.in_flight,
            window=link.window,
            congested=self._pinging and link.congested,
        )

    @property
    def held_for(self) -> float | None:
        """While updates are held back (``update_requested`` is None for the link): the
        seconds until the link's estimate leaves room again, or None when only the
        client's answer (a message, which wakes the owner anyway) can."""
        if not self._pinging or not self._link.congested:
            return None
        return self._link.room_in

    @property
    def refresh_pixels(self) -> int | None:
        """At most this many pixels per lossless refresh update (about a quarter second
        of the link; a LAN's is millions), or None: no limit (no fences, no estimate)."""
        return self._link.refresh_pixels if self._pinging else None

    @property
    def encode_options(self) -> EncodeOptions:
        """The options an update uses now: the client's, with the JPEG quality lowered
        (and chroma subsampled 4:2:0) while the link is the bottleneck."""
        options = self.options
        if not self._pinging or options.jpeg_quality is None:
            return options
        quality = self._quality.quality(options.jpeg_quality)
        if quality == options.jpeg_quality:
            return options
        return replace(options, jpeg_quality=quality, jpeg_subsampling=2)

    def supports(self, encoding: int) -> bool:
        """Whether the client listed ``encoding`` in its last SetEncodings."""
        return encoding in self.encodings

    @property
    def update_requested(self) -> UpdateRequest | None:
        """What may be sent now, or None when the client is not waiting for an update."""
        if self.state is not State.RUNNING or self._held is not None:
            return None
        if self._pinging and (self._pending is not None or self._continuous is not None):
            link = self._link
            link.sent(self._position() - link.position)
            if link.congested:
                if not link.waiting:
                    # Bytes in flight that no ping follows (queued outside an update):
                    # one now, so that their acknowledgement comes (the owner flushes).
                    self._ping()
                self._quality.held_back()
                return None
        if self._pending is not None:
            return UpdateRequest(self._pending, self._pending_full)
        if self._continuous is not None:
            return UpdateRequest(self._continuous, continuous=True)
        return None

    @property
    def has_pending_pseudo(self) -> bool:
        """A cursor shape or announcement waits to ride on the next update."""
        return bool(self._pseudo)

    def begin_framebuffer_update(
        self,
        frame: Frame,
        rects: Sequence[RectLike],
        copies: tuple[Copy, ...] | list[Copy] = (),
        *,
        lossless: bool = False,
        encoder: Encoder | None = None,
        x_clear: bool = False,
    ) -> PendingUpdate:
        """Consume the pending request and snapshot what encoding ``rects`` needs.

        ``lossless`` encodes without JPEG whatever quality the client asked for: the
        refresh of areas sent lossily that have not changed since (as TigerVNC does).
        ``encoder`` overrides the negotiated one for this update (the agent's H.264
        stream, encodings/h264.py; the owner checks that the client listed it).
        ``x_clear``: the frame's X (padding) bytes are all zero (``EncodeOptions``).
        """
        if self.state is not State.RUNNING:
            raise RuntimeError("no FramebufferUpdate before the handshake completes")
        if self._held is not None:
            raise RuntimeError("a FramebufferUpdate is already being encoded")
        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {frame.shape[:2]}, framebuffer {self.height}x{self.width}")
        full = self._pending_full
        self._pending = self._pending_full = None
        prefix = b""
        if full is not None and self.supports(Encoding.EXTENDED_DESKTOP_SIZE):
            # rfbproto §ExtendedDesktopSize: every non-incremental request gets one, in
            # an update of its own (no framebuffer changes in the same update).
            prefix = self._desktop_size_update(reason=0, status=0)
        clipped = [c for r in rects if (c := self._clip(r)) is not None]
        copy_list: list[tuple[Rect, int, int]] = []
        for copy in copies:
            dest = self._clip(copy.dest)
            if dest is None:
                continue
            if self.supports(Encoding.COPYRECT) and dest == Rect(*_xywh(copy.dest)):
                copy_list.append((dest, copy.src_x, copy.src_y))
            else:
                clipped.append(dest)
        if encoder is None:
            encoder = self._encoders.get(self.encoding)
        if encoder is None:
            encoder = self._encoders[self.encoding] = ENCODERS[self.encoding]()
        pseudo, self._pseudo = self._pseudo, []
        self._held = bytearray()
        options = replace(self.options, jpeg_quality=None) if lossless else self.encode_options
        if x_clear:
            options = replace(options, x_clear=True)
        return PendingUpdate(
            frame, clipped, copy_list, encoder, self.pixel_format, options,
            self.supports(Encoding.LAST_RECT), prefix, pseudo,
        )  # fmt: skip

    def _update_starts(self) -> None:
        if self._pinging:
            self._link.sent(self._position() - self._link.position)
            if self._link.in_flight == 0:
                self._ping()  # nothing ahead of it: the link's bare round trip

    def stream_part(self, data: bytes) -> None:
        """Queue the next piece of the update ``PendingUpdate.stream()`` is encoding
        (its ``emit``; on the owner's lock): it may go out before the rest is encoded.
        Replies answered meanwhile still wait for ``end_framebuffer_update()``."""
        if self._held is None:
            raise RuntimeError("no FramebufferUpdate is being encoded")
        if not self._streaming:
            self._streaming = True
            self._update_starts()
        self._out += data

    def end_framebuffer_update(self, update: PendingUpdate) -> None:
        """Queue the encoded update (or its end, when streamed), then whatever was
        answered while it was encoded."""
        if self._held is None:
            raise RuntimeError("no FramebufferUpdate is being encoded")
        held, self._held = self._held, None
        if update.streamed:
            self._streaming = False
        else:
            message = update.message if update.message is not None else update.encode()
            self._update_starts()
            self._out += message
        self._out += held
        if self._pinging:
            self._ping()

    def send_framebuffer_update(
        self, frame: Frame, rects: Sequence[RectLike], copies: tuple[Copy, ...] | list[Copy] = ()
    ) -> None:
        """Encode ``rects`` of the BGRX ``frame`` (and ``copies``) as one update, now."""
        update = self.begin_framebuffer_update(frame, rects, copies)
        update.encode()
        self.end_framebuffer_update(update)

    def send_desktop_size(
        self,
        width: int,
        height: int,
        screens: Sequence[m.Screen] = (),
        *,
        reason: int = DesktopSizeReason.SERVER,
    ) -> bool:
        """Tell the client the framebuffer is now ``width``×``height`` with the screen
        layout ``screens`` (default: one screen covering it).

        Uses ExtendedDesktopSize when offered, else DesktopSize; returns False when the
        client can handle neither (it then keeps the old size). ``reason`` CLIENT answers
        the client's SetDesktopSize (status OK). A new size answers any pending request
        and the owner should consider the whole framebuffer changed; a new layout at the
        same size changes no pixel (a DesktopSize-only client is not told).
        """
        if self.state is not State.RUNNING:
            raise RuntimeError("no desktop size before the handshake completes")
        extended = self.supports(Encoding.EXTENDED_DESKTOP_SIZE)
        if not extended and not self.supports(Encoding.DESKTOP_SIZE):
            return False
        old = Rect(0, 0, self.width, self.height)
        resized = (width, height) != (self.width, self.height)
        self.width, self.height = width, height
        self.screens = tuple(screens) or (m.Screen(0, 0, 0, width, height),)
        if resized:
            if self._continuous is not None:
                cont = self._continuous
                self._continuous = Rect(0, 0, width, height) if cont == old else self._clip(cont)
            self._pending = self._pending_full = None
        if extended:
            self._emit(self._desktop_size_update(reason=reason, status=DesktopSizeStatus.OK))
        elif resized:
            header = m.rect_header(0, 0, width, height, Encoding.DESKTOP_SIZE)
            self._emit(m.framebuffer_update_header(1) + header)
        return True

    def set_screens(self, screens: Sequence[m.Screen]) -> None:
        """A new screen layout at the same framebuffer size (monitors added, removed or
        moved); the client hears of it when it lists ExtendedDesktopSize."""
        if tuple(screens) == self.screens:
            return
        if self.state is State.RUNNING:
            self.send_desktop_size(self.width, self.height, screens)
        else:
            self.screens = tuple(screens) or (m.Screen(0, 0, 0, self.width, self.height),)

    def refuse_desktop_size(self, status: int = DesktopSizeStatus.PROHIBITED) -> None:
        """Answer the client's SetDesktopSize with ``status``: nothing changes."""
        self._emit(self._desktop_size_update(reason=DesktopSizeReason.CLIENT, status=status))

    def _desktop_size_update(self, reason: int, status: int) -> bytes:
        rect = m.rect_header(
            reason, status, self.width, self.height, Encoding.EXTENDED_DESKTOP_SIZE
        )
        count = bytes([len(self.screens), 0, 0, 0])
        screens = b"".join(bytes(s) for s in self.screens)
        return m.framebuffer_update_header(1) + rect + count + screens

    def send_cursor(self, cursor: CursorLike) -> bool:
        """Queue the pointer shape for the next update; False if the client can't draw it."""
        if not self.supports(Encoding.CURSOR):
            return False
        pixels = cursor.pixels
        h, w = pixels.shape[:2]
        pf = self.pixel_format
        body = pf.pack(pf.values(pixels)).tobytes()
        mask = np.packbits(pixels[..., 3] >= 128, axis=1).tobytes() if w and h else b""
        header = m.rect_header(cursor.hotspot_x, cursor.hotspot_y, w, h, Encoding.CURSOR)
        self._pseudo = [p for p in self._pseudo if not _is_cursor(p)]
        self._pseudo.append(header + body + mask)
        return True

    @property
    def extended_clipboard(self) -> bool:
        """The client speaks ExtendedClipboard (UTF-8 text, notify/request)."""
        return self._clipboard_caps is not None

    def _client_accepts(self, action: m.ClipboardAction) -> bool:
        caps = self._clipboard_caps
        return caps is not None and bool(caps.actions & action)

    def announce_clipboard(self, has_text: bool) -> bool:
        """Tell the client our clipboard changed (notify); it may then ask for the text.

        Returns False when the client cannot be notified; the owner then sends the text
        itself with ``send_cut_text()`` if it wants the client to have it.
        """
        if self.state is not State.RUNNING or not self._client_accepts(m.ClipboardAction.NOTIFY):
            return False
        self._clipboard_has_text = has_text
        self._emit_clipboard_notify()
        return True

    def _emit_clipboard_notify(self) -> None:
        formats = m.ClipboardFormat.TEXT if self._clipboard_has_text else m.NO_FORMATS
        self._emit(bytes(m.ExtendedClipboard(m.ClipboardAction.NOTIFY, formats)))

    def request_clipboard(self) -> bool:
        """Ask the client for its clipboard text (after ``ClipboardAnnounced``)."""
        if self.state is not State.RUNNING or not self._client_accepts(m.ClipboardAction.REQUEST):
            return False
        self._emit(bytes(m.ExtendedClipboard(m.ClipboardAction.REQUEST, m.ClipboardFormat.TEXT)))
        return True

    def cut_text_message(self, text: str) -> bytes:
        """The message that puts ``text`` on the client's clipboard: an ExtendedClipboard
        provide (UTF-8) when the client takes it, else ServerCutText (Latin-1; others
        become '?'). Changes nothing, so it may run on a worker thread (zlib: about
        20 ms a MiB); queue the result with ``send_cut_text_message()``."""
        if self._client_accepts(m.ClipboardAction.PROVIDE):
            return bytes(m.ExtendedClipboard.provide(text))
        return bytes(m.ServerCutText(text))

    def send_cut_text_message(self, message: bytes) -> None:
        """Queue a message from ``cut_text_message()``."""
        self._emit(message)

    def send_cut_text(self, text: str) -> None:
        """Put ``text`` on the client's clipboard now (see ``cut_text_message()``)."""
        self._emit(self.cut_text_message(text))

    def send_bell(self) -> None:
        """Ring the client's bell."""
        self._emit(bytes(m.Bell()))


def _xywh(r: RectLike) -> tuple[int, int, int, int]:
    return r.x, r.y, r.w, r.h


def _is_cursor(pseudo: bytes) -> bool:
    return struct.unpack_from("!i", pseudo, 8)[0] == Encoding.CURSOR
