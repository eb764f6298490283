"""The customer's clipboard on wlroots compositors (sway, Hyprland, river, labwc,
Wayfire) and KDE's KWin through the data-control protocol: the standard
``ext_data_control_manager_v1`` where the compositor offers it (KWin since Plasma 6.5
offers only that one; newer wlroots both), else wlroots' ``zwlr_data_control_manager_v1``
(the same messages). It is what clipboard managers and ``wl-clipboard`` use: it reads
and sets a seat's clipboard without a window or focus.

The compositor announces every new clipboard content to the data-control device as an
offer (its MIME types, then a ``selection`` event); reading asks the offer for text
through a pipe the owner writes into. Setting creates a data source offering text; the
compositor asks it for the bytes (``send``, with a pipe) whenever someone pastes, until
another program copies (``cancelled``). Only the clipboard is served, not the primary
selection (middle-click paste).

All Wayland traffic runs on one worker thread (pywayland proxies are not shared between
threads): ``read_text`` and ``set_text`` hand it a request and wait for its answer (a
request not begun within the time limit is dropped, not run late); the pipes are read
and written on the calling thread or a short-lived one, so a slow owner never stalls
the connection.

pywayland 0.4 gives an object the compositor creates (each offer) the display of the
first Wayland connection the process opened, which may be another one of the agent's,
or one already closed: the offers are moved onto this connection as they arrive, so
they are destroyed with it and never by another connection's ``close()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from pywayland.protocol.wayland import WlSeat

from enkaku.agent.clipboard.base import (
    MAX_TEXT_BYTES,
    OFFERED,
    READABLE,
    TRANSFER_TIMEOUT,
    ClipboardError,
    Watchers,
    read_pipe,
    write_pipe,
)
from enkaku.agent.wayland.connection import WaylandConnection, WaylandUnavailable
from enkaku.agent.wayland.protocols import EXT_DATA_CONTROL, WLR_DATA_CONTROL

__all__ = ["WlrootsClipboard"]

logger = logging.getLogger(__name__)

START_TIMEOUT = 10.0

T = TypeVar("T")


class WlrootsClipboard:
    """``Clipboard`` through wlr-data-control (see the module doc)."""

    def __init__(self, display: str | None = None, *, max_bytes: int = MAX_TEXT_BYTES) -> None:
        self._max = max_bytes
        try:
            self._conn = WaylandConnection(display)
        except WaylandUnavailable as exc:
            raise ClipboardError(str(exc)) from exc
        # The standard protocol where offered, else wlroots' own (the same messages).
        family = next(
            (f for f in (EXT_DATA_CONTROL, WLR_DATA_CONTROL) if self._conn.has(f.manager.name)),
            None,
        )
        if family is None or not self._conn.has(WlSeat.name):
            self._conn.close()
            raise ClipboardError(
                "the compositor offers neither ext_data_control_manager_v1 nor "
                "zwlr_data_control_manager_v1 (the clipboard protocols of wlroots "
                "compositors and KDE)"
            )
        self._family = family
        self._lock = threading.Lock()
        self._watchers = Watchers()
        self._closed = False
        self._error: str | None = None
        # Worker-thread state.
        self._types: dict[Any, list[str]] = {}  # offers announced, their MIME types
        self._offer: Any = None  # the clipboard's current content (another program's)
        self._offer_types: list[str] = []
        self._source: Any = None  # ours, while we own the clipboard
        self._owned: bytes | None = None  # its text (read under the lock elsewhere)
        self._started = False  # the first selection event is the state, not a change
        self._calls: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wlr-clipboard", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._error is not None:
            error = self._error or "the compositor did not answer"
            self.close()
            raise ClipboardError(f"cannot use the clipboard: {error}")

    # -- worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        display = self._conn.display
        try:
            self._manager = self._conn.bind(self._family.manager, 1)
            self._seat = self._conn.bind(WlSeat, 1)
            self._device = self._manager.get_data_device(self._seat)
            self._device.dispatcher["data_offer"] = self._on_data_offer
            self._device.dispatcher["selection"] = self._on_selection
            self._device.dispatcher["finished"] = self._on_finished
            if self._family.primary:
                self._device.dispatcher["primary_selection"] = self._on_primary_selection
            if display.roundtrip() < 0:  # the current clipboard's offer and selection
                raise RuntimeError("the compositor closed the connection")
            self._started = True
            self._ready.set()
            fd = display.get_fd()
            poller = select.poll()
            for watched in (fd, self._wake_r, self._stop_r):
                poller.register(watched, select.POLLIN)
            while True:
                display.dispatch(block=False)
                if self._error is not None:
                    return
                self._run_calls()
                display.flush()  # -1 with EAGAIN is a full socket, not an error
                ready = {f for f, _ in poller.poll()}
                if self._stop_r in ready:
                    return
                if self._wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                if fd in ready:
                    display.read()
        except Exception as exc:  # the compositor went away or sent a protocol error
            self._error = self._error or f"Wayland connection lost ({exc})"
            logger.info("wlroots clipboard stopped: %s", self._error)
        finally:
            self._ready.set()
            with self._lock:
                calls, self._calls = self._calls, []
                self._owned = None  # nothing serves it any more
            for _fn, future in calls:
                if not future.done():
                    future.set_exception(ClipboardError(self._error or "clipboard closed"))
            self._destroy_objects()

    def _destroy_objects(self) -> None:
        """Destroy every proxy, then disconnect (a proxy freed after its display is
        disconnected crashes the process)."""
        try:
            for proxy in [*self._types, self._offer, self._source]:
                if proxy is not None:
                    with contextlib.suppress(Exception):  # the connection may be broken
                        proxy.destroy()
            self._types.clear()
            self._offer = self._source = None
        finally:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _run_calls(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for fn, future in calls:
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up waiting: not run late
            try:
                future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker thread and return its result."""
        if threading.current_thread() is self._thread:  # a watcher that reads at once
            return fn()
        future: Future[T] = Future()
        with self._lock:  # close() closes the pipes under this lock
            if self._closed or self._error is not None:
                raise ClipboardError(self._error or "clipboard closed")
            self._calls.append((fn, future))
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"\0")
        try:
            return future.result(TRANSFER_TIMEOUT)
        except TimeoutError as exc:
            if not future.cancel():  # begun meanwhile: its answer is on its way
                return future.result(TRANSFER_TIMEOUT)
            raise ClipboardError("the clipboard's connection does not answer") from exc

    def _on_data_offer(self, _device: Any, offer: Any) -> None:
        self._adopt(offer)
        types: list[str] = []
        self._types[offer] = types
        offer.dispatcher["offer"] = lambda _o, mime: types.append(mime)

    def _adopt(self, proxy: Any) -> None:
        """Make ``proxy`` (created by an event) belong to this connection (module doc)."""
        display = self._conn.display
        home = getattr(proxy, "_display", None)
        if home is display:
            return
        children = getattr(home, "_children", None)
        if children is not None:
            children.discard(proxy)
        proxy._display = display
        display._children.add(proxy)

    def _on_selection(self, _device: Any, offer: Any) -> None:
        old = self._offer
        self._offer = offer
        self._offer_types = self._types.pop(offer, []) if offer is not None else []
        for stale in [o for o in self._types if o is not offer]:  # never selected
            self._types.pop(stale)
            stale.destroy()
        if old is not None and old is not offer:
            old.destroy()
        if self._started and self._source is None:  # not the start, not our own
            self._watchers.notify()

    def _on_primary_selection(self, _device: Any, offer: Any) -> None:
        # The primary selection (middle-click paste) is not served: let its offer go.
        if offer is not None:
            self._types.pop(offer, None)
            offer.destroy()

    def _on_finished(self, _device: Any) -> None:
        self._error = "the seat's clipboard went away"

    def _on_send(self, source: Any, _mime: str, fd: int) -> None:
        with self._lock:
            data = self._owned if source is self._source else None
        # Written from a thread: a paster that reads slowly must not stall the worker.
        try:
            threading.Thread(target=_write_all, args=(fd, data), name="wlr-clipboard-send",
                             daemon=True).start()  # fmt: skip
        except RuntimeError:  # no thread to be had: the paste gets nothing
            os.close(fd)

    def _on_cancelled(self, source: Any) -> None:
        # Another program copied (or emptied the clipboard): the compositor cancels our
        # source first, then announces the new content, which notifies the watchers.
        if source is self._source:
            self._source = None
            with self._lock:
                self._owned = None
        source.destroy()

    def _set_selection(self, data: bytes) -> None:
        source = self._manager.create_data_source()
        for mime in OFFERED:
            source.offer(mime)
        source.dispatcher["send"] = self._on_send
        source.dispatcher["cancelled"] = self._on_cancelled
        old, self._source = self._source, source
        with self._lock:
            self._owned = data
        self._device.set_selection(source)
        if old is not None:
            old.destroy()  # replaced: its cancelled event is dropped with it

    def _receive(self) -> int | None:
        """Ask the current content's owner for its text: the pipe's read end, or None
        when the clipboard holds no text."""
        if self._offer is None:
            return None
        mime = next((m for m in READABLE if m in self._offer_types), None)
        if mime is None:
            return None
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            self._offer.receive(mime, w)  # libwayland sends a copy of the descriptor
            self._conn.display.flush()
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        return r

    # -- Clipboard ---------------------------------------------------------------------

    def read_text(self) -> str | None:
        """The clipboard's text now; None when it holds no text, or too much (or the
        owner went away before it wrote any: an empty text offers nothing)."""
        with self._lock:
            if self._owned is not None and not self._closed:
                return self._owned.decode()
        fd = self._call(self._receive)
        if fd is None:
            return None
        try:
            data = read_pipe(fd, self._max)
        finally:
            os.close(fd)
        return data.decode("utf-8", errors="replace") if data else None

    def set_text(self, text: str) -> None:
        """Own the clipboard, serving ``text`` until another program copies."""
        data = text.encode()
        if len(data) > self._max:
            raise ClipboardError("text too long for the clipboard")
        self._call(lambda: self._set_selection(data))

    def watch(self, on_change: Callable[[], object]) -> Callable[[], None]:
        """Call ``on_change`` (on the worker thread) when another program copies."""
        return self._watchers.add(on_change)

    def close(self) -> None:
        """Stop serving text set here (the clipboard empties if it was ours) and
        disconnect."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._owned = None
            with contextlib.suppress(OSError):
                os.write(self._stop_w, b"\0")
        self._watchers.clear()
        if self._thread is threading.current_thread():
            return  # the worker ends after this call; its pipes stay open (a few bytes)
        self._thread.join(5)
        if not self._thread.is_alive():  # else a late write must not hit a reused fd
            with self._lock:
                for fd in (self._wake_r, self._wake_w, self._stop_r, self._stop_w):
                    os.close(fd)

    def __enter__(self) -> WlrootsClipboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes | None) -> None:
    """Write ``data`` (nothing when None) into a paster's pipe, then close it."""
    try:
        if data and not write_pipe(fd, data):
            logger.info("clipboard: a paste took too long; ended")
    except OSError as exc:
        logger.info("clipboard: paste ended early: %s", exc)
    finally:
        os.close(fd)
