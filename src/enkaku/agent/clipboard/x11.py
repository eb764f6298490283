"""The X11 clipboard: the CLIPBOARD selection (PRIMARY when nobody owns CLIPBOARD).

X has no clipboard store: a program that copies becomes the selection's *owner* and
hands the data to whoever asks (ICCCM §2). So ``X11Clipboard`` runs one thread with its
own connection and an invisible window that

- **reads** by asking the owner to convert the selection to ``UTF8_STRING`` (``STRING``
  as Latin-1 when refused) into a property of our window, following ``INCR`` transfers
  for large texts, with a time-out per step and a size limit;
- **writes** by taking ownership of CLIPBOARD and PRIMARY and answering
  ``SelectionRequest``s for ``TARGETS``, ``UTF8_STRING``, ``text/plain;charset=utf-8``,
  ``STRING`` and ``TEXT`` until another program copies (``SelectionClear``) or
  ``close()``; replies go in one property (no INCR: a 1 MiB text fits a request with
  BIG-REQUESTS);
- **watches** with XFixes ``SelectionNotify`` events for new owners of either selection
  (its own ownership ignored), or, without XFixes, by asking for the owners once a
  second (a program re-copying while it already owns the selection is then missed).

The thread waits in ``select()`` on the X connection and a wake-up pipe; other threads
hand it work through a queue and wait on a Future. Nothing here logs clipboard text.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from ctypes import POINTER, Structure, c_char_p, c_int, c_long, c_ubyte, c_uint, c_ulong
from dataclasses import dataclass, field
from typing import Any, TypeVar

from enkaku.agent import x11lib
from enkaku.agent.clipboard.base import MAX_TEXT_BYTES, ClipboardError, Watchers

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

# X.h
PROPERTY_NOTIFY = 28
SELECTION_CLEAR = 29
SELECTION_REQUEST = 30
SELECTION_NOTIFY = 31
PROPERTY_CHANGE_MASK = 1 << 22
PROPERTY_NEW_VALUE = 0
PROP_MODE_REPLACE = 0
CURRENT_TIME = 0
NONE = 0
ANY_PROPERTY_TYPE = 0
XA_ATOM = 4
# Xfixes.h
XFIXES_SELECTION_NOTIFY = 0
XFIXES_SET_SELECTION_OWNER_NOTIFY_MASK = 1 << 0

#: Seconds one step of a read (conversion, INCR chunk) may take before we give up.
STEP_TIMEOUT = 2.0
#: Seconds between owner polls when the X server has no XFixes.
POLL_INTERVAL = 1.0

Window = c_ulong
Atom = c_ulong
Time = c_ulong


class XSelectionRequestEvent(Structure):
    """Xlib.h ``XSelectionRequestEvent``."""

    _fields_ = [
        ("type", c_int), ("serial", c_ulong), ("send_event", c_int),
        ("display", ctypes.c_void_p), ("owner", Window), ("requestor", Window),
        ("selection", Atom), ("target", Atom), ("property", Atom), ("time", Time),
    ]  # fmt: skip


class XSelectionEvent(Structure):
    """Xlib.h ``XSelectionEvent`` (the SelectionNotify event)."""

    _fields_ = [
        ("type", c_int), ("serial", c_ulong), ("send_event", c_int),
        ("display", ctypes.c_void_p), ("requestor", Window), ("selection", Atom),
        ("target", Atom), ("property", Atom), ("time", Time),
    ]  # fmt: skip


class XSelectionClearEvent(Structure):
    """Xlib.h ``XSelectionClearEvent``."""

    _fields_ = [
        ("type", c_int), ("serial", c_ulong), ("send_event", c_int),
        ("display", ctypes.c_void_p), ("window", Window), ("selection", Atom),
        ("time", Time),
    ]  # fmt: skip


class XPropertyEvent(Structure):
    """Xlib.h ``XPropertyEvent``."""

    _fields_ = [
        ("type", c_int), ("serial", c_ulong), ("send_event", c_int),
        ("display", ctypes.c_void_p), ("window", Window), ("atom", Atom), ("time", Time),
        ("state", c_int),
    ]  # fmt: skip


class XFixesSelectionNotifyEvent(Structure):
    """Xfixes.h ``XFixesSelectionNotifyEvent``."""

    _fields_ = [
        ("type", c_int), ("serial", c_ulong), ("send_event", c_int),
        ("display", ctypes.c_void_p), ("window", Window), ("subtype", c_int),
        ("owner", Window), ("selection", Atom), ("timestamp", Time),
        ("selection_timestamp", Time),
    ]  # fmt: skip


_D = x11lib.Display
_P = POINTER
#: The Xlib calls this module needs beyond x11lib's (name -> (restype, argtypes)).
_X11_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "XInternAtom": (Atom, [_D, c_char_p, c_int]),
    "XCreateSimpleWindow": (Window, [_D, Window, c_int, c_int, c_uint, c_uint, c_uint,
                                     c_ulong, c_ulong]),
    "XDestroyWindow": (c_int, [_D, Window]),
    "XSelectInput": (c_int, [_D, Window, c_long]),
    "XSetSelectionOwner": (c_int, [_D, Atom, Window, Time]),
    "XGetSelectionOwner": (Window, [_D, Atom]),
    "XConvertSelection": (c_int, [_D, Atom, Atom, Atom, Window, Time]),
    "XGetWindowProperty": (c_int, [_D, Window, Atom, c_long, c_long, c_int, Atom,
                                   _P(Atom), _P(c_int), _P(c_ulong), _P(c_ulong),
                                   _P(_P(c_ubyte))]),
    "XChangeProperty": (c_int, [_D, Window, Atom, Atom, c_int, c_int, c_char_p, c_int]),
    "XDeleteProperty": (c_int, [_D, Window, Atom]),
    "XSendEvent": (c_int, [_D, Window, c_int, c_long, _P(x11lib.XEvent)]),
    "XConnectionNumber": (c_int, [_D]),
    "XExtendedMaxRequestSize": (c_long, [_D]),
    "XMaxRequestSize": (c_long, [_D]),
}  # fmt: skip
_XFIXES_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "XFixesSelectSelectionInput": (None, [_D, Window, Atom, c_ulong]),
}


def _bind(lib: ctypes.CDLL, prototypes: dict[str, tuple[Any, list[Any]]]) -> None:
    for name, (restype, argtypes) in prototypes.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


@dataclass
class _Read:
    """One read in progress: which selections and targets are left to try."""

    future: Future[str | None]
    steps: list[tuple[int, int]]  # (selection, target) still to try, in order
    deadline: float = 0.0
    incr: bytearray | None = None  # set while an INCR transfer runs
    incr_type: int = 0
    current: tuple[int, int] = (0, 0)


@dataclass
class _Owned:
    """Text we own the selections for, encoded for each target once."""

    utf8: bytes
    latin1: bytes
    selections: set[int] = field(default_factory=set)


class X11Clipboard:
    """The clipboard of one X display, served from a thread of our own."""

    def __init__(
        self, display: str | None = None, *, max_bytes: int = MAX_TEXT_BYTES, primary: bool = True
    ) -> None:
        """``primary``: ``set_text`` owns PRIMARY too (middle-click paste), not CLIPBOARD only."""
        self._max = max_bytes
        self._own_primary = primary
        with x11lib.SETUP_LOCK:  # see there: opening and extension set-up
            self._conn = x11lib.XConnection(display, ClipboardError)
            try:
                self._setup()
            except BaseException:
                self._conn.close()
                raise
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._watchers = Watchers()
        self._closing = False
        self._reads: list[_Read] = []
        self._owned: _Owned | None = None
        self._thread = threading.Thread(target=self._main, name="x11-clipboard", daemon=True)
        self._thread.start()

    def _setup(self) -> None:
        conn = self._conn
        x11 = conn.x11
        _bind(x11, _X11_PROTOTYPES)
        dpy = conn.dpy

        def atom(name: str) -> int:
            return int(x11.XInternAtom(dpy, name.encode(), 0))

        self._clipboard = atom("CLIPBOARD")
        self._primary = 1  # XA_PRIMARY
        self._utf8 = atom("UTF8_STRING")
        self._string = 31  # XA_STRING
        self._text = atom("TEXT")
        self._plain_utf8 = atom("text/plain;charset=utf-8")
        self._targets = atom("TARGETS")
        self._incr = atom("INCR")
        self._prop = atom("ENKAKU_SELECTION")
        self._window = int(x11.XCreateSimpleWindow(dpy, conn.root, 0, 0, 1, 1, 0, 0, 0))
        x11.XSelectInput(dpy, self._window, PROPERTY_CHANGE_MASK)
        # The largest property one request can carry (BIG-REQUESTS when offered).
        units = x11.XExtendedMaxRequestSize(dpy) or x11.XMaxRequestSize(dpy)
        self._max_reply = int(units) * 4 - 1024
        self._fixes_event: int | None = None
        try:
            fixes = conn.extension("Xfixes")
            _bind(fixes, _XFIXES_PROTOTYPES)
            event_base, error_base = c_int(), c_int()
            if fixes.XFixesQueryExtension(dpy, ctypes.byref(event_base), ctypes.byref(error_base)):
                for selection in (self._clipboard, self._primary):
                    fixes.XFixesSelectSelectionInput(
                        dpy, self._window, selection, XFIXES_SET_SELECTION_OWNER_NOTIFY_MASK
                    )
                self._fixes_event = event_base.value + XFIXES_SELECTION_NOTIFY
        except ClipboardError as exc:
            logger.info("clipboard changes are polled: %s", exc)
        self._owners = self._current_owners()
        conn.sync_errors()

    # -- public API (any thread) -------------------------------------------------------

    def read_text(self) -> str | None:
        """The text of CLIPBOARD, else of PRIMARY; None when neither holds text."""
        future: Future[str | None] = Future()
        self._submit(lambda: self._start_read(future), future)
        return self._wait(future)

    def set_text(self, text: str) -> None:
        """Own CLIPBOARD (and PRIMARY) with ``text`` until another program copies."""
        future: Future[None] = Future()
        self._submit(lambda: self._own(text, future), future)
        self._wait(future)

    def watch(self, on_change: Callable[[], object]) -> Callable[[], None]:
        """Call ``on_change`` (on the clipboard thread) when another program copies."""
        return self._watchers.add(on_change)

    def close(self) -> None:
        """Give up the selections, stop the thread and close the connection."""
        if self._closing:
            return
        self._closing = True
        self._wake()
        self._thread.join(10)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _submit(self, command: Callable[[], None], future: Future[Any]) -> None:
        if self._closing or not self._thread.is_alive():
            raise ClipboardError("the clipboard is closed")
        self._commands.put((command, future))
        self._wake()

    @staticmethod
    def _wait(future: Future[_T]) -> _T:
        # The thread times out every step itself; this only guards against a wedged one.
        try:
            return future.result(timeout=STEP_TIMEOUT * 10)
        except TimeoutError:
            raise ClipboardError("the clipboard thread does not answer") from None

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake
            os.write(self._wake_w, b"\0")

    # -- the clipboard thread ----------------------------------------------------------

    def _main(self) -> None:
        conn = self._conn
        x11 = conn.x11
        fd = x11.XConnectionNumber(conn.dpy)
        event = x11lib.XEvent()
        next_poll = time.monotonic() + POLL_INTERVAL
        try:
            while not self._closing:
                while True:
                    try:
                        command, future = self._commands.get_nowait()
                    except queue.Empty:
                        break
                    try:
                        command()
                    except Exception as exc:
                        if not future.done():
                            future.set_exception(ClipboardError(f"clipboard failed: {exc}"))
                        raise  # the connection is in an unknown state: stop
                while x11.XPending(conn.dpy):  # also flushes our requests
                    x11.XNextEvent(conn.dpy, ctypes.byref(event))
                    self._dispatch(event)
                conn.check()
                conn.take_errors()  # e.g. BadWindow from a requestor that went away
                now = time.monotonic()
                self._expire(now)
                deadlines = [r.deadline for r in self._reads[:1]]
                if self._fixes_event is None:
                    if now >= next_poll:
                        self._poll_owners()
                        next_poll = now + POLL_INTERVAL
                    deadlines.append(next_poll)
                timeout = max(0.0, min(deadlines) - now) if deadlines else None
                # Flush what _expire() asked for; its round trips may also have queued
                # events inside Xlib, where select() cannot see them.
                if x11.XPending(conn.dpy):
                    continue
                ready, _, _ = select.select([fd, self._wake_r], [], [], timeout)
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
        except ClipboardError as exc:
            logger.warning("clipboard stopped: %s", exc)
        except Exception:
            logger.exception("clipboard thread failed")
        finally:
            self._finish()

    def _finish(self) -> None:
        self._closing = True
        for read in self._reads:
            if not read.future.done():
                read.future.set_exception(ClipboardError("the clipboard is closed"))
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                break
            future.set_exception(ClipboardError("the clipboard is closed"))
        if not self._conn.dead:
            self._conn.x11.XDestroyWindow(self._conn.dpy, self._window)
        self._conn.close()

    def _dispatch(self, event: x11lib.XEvent) -> None:
        ref = ctypes.byref(event)
        if event.type == SELECTION_REQUEST:
            self._answer(ctypes.cast(ref, _P(XSelectionRequestEvent)).contents)
        elif event.type == SELECTION_NOTIFY:
            self._converted(ctypes.cast(ref, _P(XSelectionEvent)).contents)
        elif event.type == PROPERTY_NOTIFY:
            prop = ctypes.cast(ref, _P(XPropertyEvent)).contents
            ours = prop.window == self._window and prop.atom == self._prop
            if ours and prop.state == PROPERTY_NEW_VALUE:
                self._incr_chunk()
        elif event.type == SELECTION_CLEAR:
            cleared = ctypes.cast(ref, _P(XSelectionClearEvent)).contents
            selection = int(cleared.selection)
            owner = self._conn.x11.XGetSelectionOwner(self._conn.dpy, selection)
            if self._owned is not None and owner != self._window:  # not a stale clear
                self._owned.selections.discard(selection)
                if not self._owned.selections:
                    self._owned = None
        elif event.type == self._fixes_event:
            notify = ctypes.cast(ref, _P(XFixesSelectionNotifyEvent)).contents
            if notify.owner not in (NONE, self._window):
                self._changed()

    def _changed(self) -> None:
        self._watchers.notify()

    def _current_owners(self) -> tuple[int, int]:
        x11, dpy = self._conn.x11, self._conn.dpy
        return (
            int(x11.XGetSelectionOwner(dpy, self._clipboard)),
            int(x11.XGetSelectionOwner(dpy, self._primary)),
        )

    def _poll_owners(self) -> None:
        owners = self._current_owners()
        if owners != self._owners:
            self._owners = owners
            if any(o not in (NONE, self._window) for o in owners):
                self._changed()

    # -- writing: owning the selections --------------------------------------------------

    def _own(self, text: str, future: Future[None]) -> None:
        x11, dpy = self._conn.x11, self._conn.dpy
        utf8 = text.encode("utf-8", errors="replace")
        self._owned = _Owned(utf8, text.encode("latin-1", errors="replace"))
        selections = (self._clipboard, self._primary) if self._own_primary else (self._clipboard,)
        for selection in selections:
            x11.XSetSelectionOwner(dpy, selection, self._window, CURRENT_TIME)
            if x11.XGetSelectionOwner(dpy, selection) == self._window:
                self._owned.selections.add(selection)
        if not self._owned.selections:
            self._owned = None
            future.set_exception(ClipboardError("another program holds the clipboard"))
        else:
            future.set_result(None)

    def _answer(self, req: XSelectionRequestEvent) -> None:
        """ICCCM §2.2: convert, store on the requestor's property, send SelectionNotify."""
        x11, dpy = self._conn.x11, self._conn.dpy
        prop = int(req.property) or int(req.target)  # obsolete clients send None
        owned = self._owned
        target = int(req.target)
        data: bytes | None = None
        if owned is not None and int(req.selection) in owned.selections:
            if target == self._targets:
                atoms = (c_ulong * 5)(
                    self._targets, self._utf8, self._plain_utf8, self._string, self._text
                )
                x11.XChangeProperty(
                    dpy, req.requestor, prop, XA_ATOM, 32, PROP_MODE_REPLACE,
                    ctypes.cast(atoms, c_char_p), 5,
                )  # fmt: skip
                data = b""
            elif target in (self._utf8, self._plain_utf8):
                data = owned.utf8
            elif target in (self._string, self._text):
                data = owned.latin1
                target = self._string
            if data and len(data) > self._max_reply:
                data = None  # would need INCR, which we do not serve
            elif data is not None and target != self._targets:
                x11.XChangeProperty(
                    dpy, req.requestor, prop, target, 8, PROP_MODE_REPLACE, data, len(data)
                )
        reply = XSelectionEvent(
            type=SELECTION_NOTIFY, send_event=1, display=dpy, requestor=req.requestor,
            selection=req.selection, target=req.target,
            property=prop if data is not None else NONE, time=req.time,
        )  # fmt: skip
        event = x11lib.XEvent()  # XSendEvent copies a whole XEvent union
        ctypes.memmove(ctypes.byref(event), ctypes.byref(reply), ctypes.sizeof(reply))
        x11.XSendEvent(dpy, req.requestor, 0, 0, ctypes.byref(event))

    # -- reading: asking the owner ---------------------------------------------------------

    def _start_read(self, future: Future[str | None]) -> None:
        steps = [
            (selection, target)
            for selection in (self._clipboard, self._primary)
            for target in (self._utf8, self._string)
        ]
        self._reads.append(_Read(future, steps))
        if len(self._reads) == 1:
            self._next_step()

    def _next_step(self) -> None:
        """Start the current read's next conversion, or finish it with None."""
        x11, dpy = self._conn.x11, self._conn.dpy
        read = self._reads[0]
        while read.steps:
            selection, target = read.steps.pop(0)
            owner = int(x11.XGetSelectionOwner(dpy, selection))
            if owner == NONE:
                read.steps = [s for s in read.steps if s[0] != selection]
                continue
            owned = self._owned
            if owner == self._window and owned is not None:
                self._done(owned.utf8.decode("utf-8", errors="replace"))
                return
            read.current = (selection, target)
            read.deadline = time.monotonic() + STEP_TIMEOUT
            x11.XDeleteProperty(dpy, self._window, self._prop)
            x11.XConvertSelection(dpy, selection, target, self._prop, self._window, CURRENT_TIME)
            return
        self._done(None)

    def _done(self, text: str | None) -> None:
        read = self._reads.pop(0)
        if not read.future.done():
            read.future.set_result(text)
        if self._reads:
            self._next_step()

    def _expire(self, now: float) -> None:
        if self._reads and now >= self._reads[0].deadline:
            logger.info("the clipboard owner did not answer in %.0f s", STEP_TIMEOUT)
            read = self._reads[0]
            read.incr = None
            # An owner that does not answer will not answer other targets either.
            read.steps = [s for s in read.steps if s[0] != read.current[0]]
            self._next_step()

    def _converted(self, event: XSelectionEvent) -> None:
        if not self._reads or self._reads[0].incr is not None:
            return
        read = self._reads[0]
        if (int(event.selection), int(event.target)) != read.current:
            return  # a late answer to a step we gave up on
        if event.property == NONE:
            self._next_step()  # refused: try the next target or selection
            return
        got = self._get_property()
        if got is None:
            self._next_step()
            return
        kind, data, complete = got
        if kind == self._incr:
            read.incr, read.incr_type = bytearray(), 0
            read.deadline = time.monotonic() + STEP_TIMEOUT
            return  # deleting the property (done) asks the owner for the first chunk
        if not complete or len(data) > self._max:
            self._too_long()
            return
        self._done(self._decode(kind, data))

    def _incr_chunk(self) -> None:
        if not self._reads or self._reads[0].incr is None:
            return
        read = self._reads[0]
        assert read.incr is not None
        got = self._get_property()
        if got is None:
            return
        kind, data, complete = got
        if not data:
            text = self._decode(read.incr_type, bytes(read.incr))
            read.incr = None
            self._done(text)
            return
        read.incr_type = kind
        read.incr += data
        read.deadline = time.monotonic() + STEP_TIMEOUT
        if not complete or len(read.incr) > self._max:
            read.incr = None
            self._too_long()

    def _too_long(self) -> None:
        logger.info("clipboard text over %d bytes not read", self._max)
        self._done(None)

    def _get_property(self) -> tuple[int, bytes, bool] | None:
        """Read and delete our property: (type, bytes, whether all of it fitted)."""
        x11, dpy = self._conn.x11, self._conn.dpy
        kind, fmt = Atom(), c_int()
        count, after = c_ulong(), c_ulong()
        data = _P(c_ubyte)()
        status = x11.XGetWindowProperty(
            dpy, self._window, self._prop, 0, (self._max + 4) // 4, 1, ANY_PROPERTY_TYPE,
            ctypes.byref(kind), ctypes.byref(fmt), ctypes.byref(count), ctypes.byref(after),
            ctypes.byref(data),
        )  # fmt: skip
        if status != 0 or kind.value == NONE:
            if data:
                x11.XFree(data)
            return None
        try:
            size = count.value * {8: 1, 16: 2, 32: ctypes.sizeof(c_long)}.get(fmt.value, 1)
            raw = ctypes.string_at(data, size) if data else b""
        finally:
            if data:
                x11.XFree(data)
        return int(kind.value), raw, after.value == 0

    def _decode(self, kind: int, data: bytes) -> str | None:
        if kind == self._string:
            return data.decode("latin-1")
        if kind in (self._utf8, self._plain_utf8, self._text):
            return data.decode("utf-8", errors="replace")
        return None
