"""Serve one RFB connection from a ScreenCapture and an InputInjector (the IO adapter).

The protocol lives in ``enkaku.protocol.rfb.RFBServer``; this module moves bytes, runs
capture, damage detection and encoding on worker threads (never on the event loop),
and hands input to the injector when the customer allows control.

Two tasks per connection (three with a clipboard), all owned by ``run()``:

- the **reader** feeds ``read()`` into the server, answers with ``write()`` and injects
  input events in order;
- the **updater** waits until the client wants an update, polls the screen at most
  ``max_fps`` times a second, and sends the changed rectangles (the whole requested
  area for non-incremental requests). Writes are awaited, so a slow peer slows capture
  down instead of filling memory. Areas sent as JPEG are sent again losslessly once
  they have stayed unchanged for ``LOSSLESS_REFRESH_DELAY`` (TigerVNC does the same), so
  the viewer's picture ends up exact; noVNC always asks for JPEG.

With a ``Clipboard``, a third task, the **clipboard** watcher, reads the customer's
clipboard when another program copies and offers the text to the viewer
(ExtendedClipboard notify, the text when asked; plain ServerCutText otherwise), and the
reader puts text from the viewer on the customer's clipboard. Both only while
``clipboard_allowed()``: otherwise the clipboard is neither read nor written, nothing is
requested from the viewer, and text that arrives anyway is dropped and counted
(``clipboard_dropped``). ``on_clipboard(direction, n_chars)`` hears of every text that
crossed, for the audit trail; clipboard text itself is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from enkaku.agent.capture.base import CursorImage, ScreenCapture
from enkaku.agent.clipboard.base import Clipboard, ClipboardError
from enkaku.agent.input.base import InputInjector
from enkaku.protocol.errors import ProtocolError
from enkaku.protocol.rfb import RFBServer, State, UpdateRequest
from enkaku.protocol.rfb import messages as m
from enkaku.protocol.rfb.encodings import Rect, RectLike
from enkaku.protocol.rfb.pixelformat import Frame
from enkaku.protocol.rfb.server import ClipboardAnnounced, ClipboardDropped, ClipboardRequested

logger = logging.getLogger(__name__)

TILE = 64
#: ``on_clipboard`` directions (also the audit event names the session reports).
TO_CUSTOMER = "clipboard_to_customer"
FROM_CUSTOMER = "clipboard_from_customer"
#: Seconds without screen changes after which areas sent as JPEG are resent losslessly.
LOSSLESS_REFRESH_DELAY = 0.5


def changed_tiles(old: Frame, new: Frame, tile: int = TILE) -> list[Rect]:
    """Rectangles (merged tile runs) where ``new`` differs from ``old``; X bytes ignored."""
    h, w = new.shape[:2]
    diff = (old[..., :3] != new[..., :3]).any(axis=2)
    rows = np.logical_or.reduceat(diff, np.arange(0, h, tile), axis=0)
    tiles = np.logical_or.reduceat(rows, np.arange(0, w, tile), axis=1)
    rects: list[Rect] = []
    open_runs: dict[tuple[int, int], Rect] = {}  # (x, w) of a run -> rect growing down
    for ty in range(tiles.shape[0]):
        runs: dict[tuple[int, int], Rect] = {}
        row = tiles[ty]
        tx = 0
        while tx < row.size:
            if not row[tx]:
                tx += 1
                continue
            start = tx
            while tx < row.size and row[tx]:
                tx += 1
            x0, x1 = start * tile, min(tx * tile, w)
            y0, y1 = ty * tile, min((ty + 1) * tile, h)
            above = open_runs.pop((x0, x1 - x0), None)
            if above is not None and above.y + above.h == y0:
                runs[(x0, x1 - x0)] = Rect(x0, above.y, x1 - x0, y1 - above.y)
            else:
                if above is not None:
                    rects.append(above)
                runs[(x0, x1 - x0)] = Rect(x0, y0, x1 - x0, y1 - y0)
        rects.extend(open_runs.values())
        open_runs = runs
    rects.extend(open_runs.values())
    return rects


def fit(frame: Frame, width: int, height: int) -> Frame:
    """``frame`` cropped or padded (black) to width×height."""
    out = np.zeros((height, width, 4), dtype=np.uint8)
    h, w = min(height, frame.shape[0]), min(width, frame.shape[1])
    out[:h, :w] = frame[:h, :w]
    return out


@dataclass(slots=True)
class _Poll:
    frame: Frame | None = None
    resized: tuple[int, int] | None = None
    cursor: CursorImage | None = None


class RFBService:
    """One RFB connection between a viewer and this machine's screen and input."""

    def __init__(
        self,
        capture: ScreenCapture,
        injector: InputInjector,
        read: Callable[[], Awaitable[bytes]],
        write: Callable[[bytes], Awaitable[None]],
        *,
        name: str,
        control_allowed: Callable[[], bool] = lambda: True,
        max_fps: float = 30,
        clipboard: Clipboard | None = None,
        clipboard_allowed: Callable[[], bool] = lambda: False,
        on_clipboard: Callable[[str, int], Awaitable[None] | None] | None = None,
    ) -> None:
        self._capture = capture
        self._injector = injector
        self._read = read
        self._write = write
        self._name = name
        self._control_allowed = control_allowed
        self._interval = 1.0 / max_fps
        self._server: RFBServer | None = None
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._previous: Frame | None = None
        self._damage: list[Rect] = []
        self._lossy: list[Rect] = []  # sent as JPEG and not resent since
        self._changed_at = 0.0  # loop time of the last update with screen changes
        self._cursor_serial: int | None = None
        self._controlling = False
        self._clipboard = clipboard
        self._clipboard_allowed = clipboard_allowed
        self._on_clipboard = on_clipboard
        self._clipboard_changed = asyncio.Event()
        self._offered: str | None = None  # the customer's text we last offered the viewer
        self._last_text: str | None = None  # the last text that crossed either way
        #: Texts and offers from the viewer dropped: clipboard not allowed, or too long.
        self.clipboard_dropped = 0

    @property
    def server(self) -> RFBServer | None:
        """The protocol state, once ``run()`` started (for diagnostics and tests)."""
        return self._server

    async def run(self) -> None:
        """Serve the connection until the peer closes it or it fails; always cleans up."""
        width, height = await asyncio.to_thread(lambda: self._capture.size)
        self._server = RFBServer(width, height, self._name)
        reader = asyncio.create_task(self._read_loop(), name="rfb-reader")
        updater = asyncio.create_task(self._update_loop(), name="rfb-updater")
        tasks = {reader, updater}
        background: set[asyncio.Task[None]] = set()  # a failing clipboard ends no screen
        unwatch: Callable[[], None] | None = None
        if self._clipboard is not None:
            loop = asyncio.get_running_loop()
            changed = self._clipboard_changed

            def on_change() -> None:
                loop.call_soon_threadsafe(changed.set)

            unwatch = self._clipboard.watch(on_change)
            background.add(asyncio.create_task(self._clipboard_loop(), name="rfb-clipboard"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    if isinstance(exc, (ProtocolError, ConnectionError, EOFError)):
                        logger.info("rfb connection ended: %s", exc)
                    else:
                        raise exc
        finally:
            if unwatch is not None:
                unwatch()
            for task in tasks | background:
                task.cancel()
            for task in tasks | background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await asyncio.to_thread(self._injector.release_all)
            logger.debug("rfb connection closed")

    async def _flush(self) -> None:
        assert self._server is not None
        async with self._write_lock:
            data = self._server.data_to_send()
            if data:
                await self._write(data)

    # -- reader --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        server = self._server
        assert server is not None
        await self._flush()  # ProtocolVersion
        while True:
            data = await self._read()
            if not data:
                return
            try:
                events = server.receive_data(data)
            finally:
                await self._flush()  # also a failure reason, if there is one
            for event in events:
                await self._handle_event(event)

    async def _handle_event(self, event: object) -> None:
        match event:
            case m.KeyEvent(down=down, keysym=keysym):
                if await self._may_control():
                    await asyncio.to_thread(self._injector.key, keysym, down)
            case m.QEMUExtendedKeyEvent(down=down, keysym=keysym, keycode=keycode):
                if await self._may_control():
                    await asyncio.to_thread(self._injector.key, keysym, down, keycode)
            case m.PointerEvent(buttons=buttons, x=x, y=y):
                if await self._may_control():
                    await asyncio.to_thread(self._injector.pointer, x, y, buttons)
            case m.ClientCutText(text=text):
                await self._handle_cut_text(text)
            case ClipboardAnnounced(text=True):
                if self._may_use_clipboard():
                    assert self._server is not None
                    self._server.request_clipboard()
                    await self._flush()
                else:
                    self._drop("offer")
            case ClipboardRequested():
                await self._handle_clipboard_request()
            case ClipboardDropped():
                self._drop("text over the limit")
            case ClipboardAnnounced():
                pass  # the viewer's clipboard is empty now: nothing to do
            case _:
                self._wake.set()  # requests, pixel format, encodings, continuous updates

    async def _may_control(self) -> bool:
        allowed = self._control_allowed()
        if not allowed and self._controlling:
            # Control was just paused: let go of anything the technician held down.
            await asyncio.to_thread(self._injector.release_all)
        self._controlling = allowed
        if not allowed:
            logger.debug("rfb input dropped: control not allowed")
        return allowed

    # -- clipboard -----------------------------------------------------------------

    def _may_use_clipboard(self) -> bool:
        return self._clipboard is not None and self._clipboard_allowed()

    def _drop(self, what: str) -> None:
        self.clipboard_dropped += 1
        logger.debug("rfb clipboard %s from the viewer dropped", what)

    async def _handle_cut_text(self, text: str) -> None:
        """Text from the viewer: onto the customer's clipboard, if allowed."""
        if not self._may_use_clipboard():
            self._drop("text")
            return
        assert self._clipboard is not None
        try:
            await asyncio.to_thread(self._clipboard.set_text, text)
        except ClipboardError as exc:
            logger.info("rfb clipboard text not set: %s", exc)
            return
        self._last_text = text
        await self._report(TO_CUSTOMER, len(text))

    async def _handle_clipboard_request(self) -> None:
        """The viewer asks for the text we offered: send it if still allowed."""
        text = self._offered
        if text is None or not self._may_use_clipboard():
            return
        await self._send_text(text)

    async def _clipboard_loop(self) -> None:
        """Offer the customer's clipboard to the viewer whenever another program copies."""
        try:
            await self._offer_changes()
        except Exception:  # nobody awaits this task until the end: say so now
            logger.exception("rfb clipboard watcher failed")

    async def _offer_changes(self) -> None:
        server = self._server
        clipboard = self._clipboard
        assert server is not None and clipboard is not None
        while True:
            await self._clipboard_changed.wait()
            self._clipboard_changed.clear()
            if server.state is not State.RUNNING or not self._clipboard_allowed():
                continue  # not read at all
            try:
                text = await asyncio.to_thread(clipboard.read_text)
            except ClipboardError as exc:
                logger.warning("rfb clipboard not read, no more offers: %s", exc)
                return
            if text is None or text == self._last_text or not self._clipboard_allowed():
                continue
            self._last_text = self._offered = text
            if server.announce_clipboard(True):
                await self._flush()  # the text goes when the viewer asks for it
            else:
                await self._send_text(text)

    async def _send_text(self, text: str) -> None:
        server = self._server
        assert server is not None
        message = await asyncio.to_thread(server.cut_text_message, text)  # zlib
        server.send_cut_text_message(message)
        await self._flush()
        await self._report(FROM_CUSTOMER, len(text))

    async def _report(self, direction: str, n_chars: int) -> None:
        if self._on_clipboard is None:
            return
        try:
            result = self._on_clipboard(direction, n_chars)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("rfb clipboard audit callback failed")

    # -- updater -------------------------------------------------------------------

    async def _update_loop(self) -> None:
        server = self._server
        assert server is not None
        loop = asyncio.get_running_loop()
        next_at = 0.0
        while True:
            request = server.update_requested
            if request is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            if request.incremental and (delay := next_at - loop.time()) > 0:
                await self._sleep_or_wake(delay)
                continue
            # The frame interval runs from the start of this poll, so capture and encoding
            # time is not added to it (measured: 41-56 ms gaps at max_fps=30 before).
            started = loop.time()
            poll = await asyncio.to_thread(self._poll, request)
            if poll.resized is not None:
                self._lossy = []
                if not server.send_desktop_size(*poll.resized):
                    logger.info("rfb viewer cannot resize; screen size change not shown")
                await self._flush()
                continue
            if poll.cursor is not None:
                server.send_cursor(poll.cursor)
            request = server.update_requested
            if request is None or poll.frame is None:
                continue
            rects = self._take_damage(request)
            lossless = False
            if not rects and request.incremental and not server.has_pending_pseudo:
                if self._lossy and started - self._changed_at >= LOSSLESS_REFRESH_DELAY:
                    rects, lossless = self._take_lossy(request.region), True
                if not rects:
                    next_at = started + self._interval
                    continue
            pending = server.begin_framebuffer_update(poll.frame, rects, lossless=lossless)
            try:
                await asyncio.to_thread(pending.encode)
            finally:
                server.end_framebuffer_update(pending)
            if rects and not lossless:
                self._changed_at = started
            self._note_lossy(rects, pending.lossy)
            await self._flush()
            next_at = started + self._interval

    async def _sleep_or_wake(self, delay: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def _take_damage(self, request: UpdateRequest) -> list[Rect]:
        """Damage inside the request (all of ``full``); the rest stays for later."""
        inside: list[Rect] = []
        keep: list[Rect] = []
        for rect in self._damage:
            part = request.region.intersect(rect)
            if part is not None:
                inside.append(part)
            if part != rect:
                keep.append(rect)
        self._damage = keep
        if request.full is not None:
            inside = [request.full, *(r for r in inside if request.full.intersect(r) != r)]
        return inside

    def _take_lossy(self, region: Rect) -> list[Rect]:
        """The lossily sent areas inside ``region``; the rest stays for later."""
        inside = [part for r in self._lossy if (part := region.intersect(r)) is not None]
        self._lossy = [r for r in self._lossy if region.intersect(r) != r]
        return inside

    def _note_lossy(self, sent: Sequence[RectLike], lossy: list[Rect]) -> None:
        """Forget lossy areas that ``sent`` covered again, remember the new ones."""
        covered = [Rect(s.x, s.y, s.w, s.h) for s in sent]
        self._lossy = [r for r in self._lossy if not any(c.intersect(r) == r for c in covered)]
        self._lossy.extend(lossy)
        if len(self._lossy) > 256:  # bounded, like the damage list
            box = self._lossy[0]
            for r in self._lossy[1:]:
                box = box.union(r)
            self._lossy = [box]

    def _poll(self, request: UpdateRequest) -> _Poll:
        """Worker thread: capture, detect damage and size changes, pick up the cursor."""
        server = self._server
        assert server is not None
        regions = self._capture.changed_regions()
        if regions == [] and self._previous is not None and request.incremental:
            return _Poll(self._previous, cursor=self._new_cursor())
        frame = self._capture.grab()
        h, w = frame.shape[:2]
        if (w, h) != (server.width, server.height):
            if server.supports(m.Encoding.EXTENDED_DESKTOP_SIZE) or server.supports(
                m.Encoding.DESKTOP_SIZE
            ):
                self._previous = None
                self._damage = [Rect(0, 0, w, h)]
                return _Poll(resized=(w, h))
            frame = fit(frame, server.width, server.height)  # the viewer cannot resize
        if self._previous is None:
            self._damage = [Rect(0, 0, w, h)]
        elif regions is not None:
            self._add_damage(regions)
        else:
            self._add_damage(changed_tiles(self._previous, frame))
        self._previous = frame
        return _Poll(frame, cursor=self._new_cursor())

    def _add_damage(self, rects: Sequence[RectLike]) -> None:
        bounds = Rect(0, 0, *self._previous.shape[1::-1]) if self._previous is not None else None
        for r in rects:
            clipped = bounds.intersect(r) if bounds is not None else Rect(r.x, r.y, r.w, r.h)
            if clipped is not None and not any(
                d.intersect(clipped) == clipped for d in self._damage
            ):
                self._damage.append(clipped)
        if len(self._damage) > 256:  # keep the bookkeeping bounded: one bounding box
            box = self._damage[0]
            for d in self._damage[1:]:
                box = box.union(d)
            self._damage = [box]

    def _new_cursor(self) -> CursorImage | None:
        """Worker thread: the pointer shape if it changed and the viewer draws cursors."""
        server = self._server
        assert server is not None
        if not server.supports(m.Encoding.CURSOR):
            return None
        cursor = self._capture.cursor()
        if cursor is None or cursor.serial == self._cursor_serial:
            return None
        self._cursor_serial = cursor.serial
        return cursor
