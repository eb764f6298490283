"""The customer's clipboard on GNOME (Wayland) through mutter's remote-desktop session.

``EnableClipboard`` lets the session see who owns the clipboard
(``SelectionOwnerChanged``) and read it (``SelectionRead``: a pipe the owner writes the
text into); ``SetSelection`` makes the session the owner, and mutter asks for the text
when someone pastes (``SelectionTransfer``, answered with ``SelectionWrite`` and
``SelectionWriteDone``). The session is the one the injectors share
(:mod:`enkaku.agent.gnome.mutter`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from enkaku.agent.clipboard.base import (
    MAX_TEXT_BYTES,
    OFFERED,
    READABLE,
    UTF8,
    ClipboardError,
    Watchers,
    read_pipe,
    write_pipe,
)
from enkaku.agent.gnome import mutter

__all__ = ["GnomeClipboard"]

logger = logging.getLogger(__name__)

_enable_lock = threading.Lock()


class GnomeClipboard:
    """``Clipboard`` through ``org.gnome.Mutter.RemoteDesktop`` (see the module doc)."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        output: str | None = None,
        *,
        max_bytes: int = MAX_TEXT_BYTES,
    ) -> None:
        self._max = max_bytes
        self._lock = threading.Lock()
        self._owned: bytes | None = None  # our text while the session owns the clipboard
        self._offer: list[str] | None = None  # what another owner offers; None: unknown
        self._watchers = Watchers()
        self._closed = False
        self._env = dict(os.environ if env is None else env)
        self._output = output
        self._offs: list[Callable[[], None]] = []
        try:
            self._session = mutter.acquire(self._env, output)
        except mutter.MutterUnavailable as exc:
            raise ClipboardError(str(exc)) from exc
        try:
            self._attach()
        except mutter.MutterUnavailable as exc:
            self.close()
            raise ClipboardError(f"mutter refused the clipboard: {exc}") from exc

    def _attach(self) -> None:
        session = self._session
        self._offs = [
            session.on_signal("SelectionOwnerChanged", self._on_owner_changed),
            session.on_signal("SelectionTransfer", self._on_transfer),
        ]
        with _enable_lock:
            if not session.clipboard_enabled:
                session.call("EnableClipboard", "a{sv}", [{}])
                session.clipboard_enabled = True

    def _live(self) -> None:
        """A new session if mutter ended this one (a monitor change does); the text
        the old one served went with it."""
        if not self._session.closed.is_set():
            return
        for off in self._offs:
            off()
        old, self._session = self._session, mutter.acquire(self._env, self._output)
        mutter.release(old)
        with self._lock:
            self._owned = None
            self._offer = None
        self._attach()

    # -- D-Bus thread ------------------------------------------------------------------

    def _on_owner_changed(self, values: list[Any]) -> None:
        options = values[0] if values else {}
        mine = bool(options["session-is-owner"].value) if "session-is-owner" in options else False
        types = _mime_types(options["mime-types"].value) if "mime-types" in options else []
        if mine:
            return
        self._session.clipboard_owner = None
        with self._lock:
            self._owned = None
            self._offer = types
        self._watchers.notify()

    def _on_transfer(self, values: list[Any]) -> None:
        # Answered from a thread: the D-Bus thread must not wait on its own calls.
        owner = self._session.clipboard_owner
        if owner is not None and owner is not self:
            return  # another connection's clipboard set the text: it answers
        _mime, serial = values[0], int(values[1])
        threading.Thread(target=self._write, args=(serial,), name="gnome-clipboard-write",
                         daemon=True).start()  # fmt: skip

    def _write(self, serial: int) -> None:
        with self._lock:
            data = self._owned if self._session.clipboard_owner is self else None
        ok = False
        try:
            fd = self._session.call_fd("SelectionWrite", "u", [serial])
        except mutter.MutterUnavailable as exc:
            logger.info("clipboard: cannot answer a paste: %s", exc)
            return
        try:
            if data is not None:
                ok = write_pipe(fd, data)
        except OSError as exc:
            logger.info("clipboard: paste ended early: %s", exc)
        finally:
            os.close(fd)
            with contextlib.suppress(mutter.MutterUnavailable):
                self._session.call("SelectionWriteDone", "ub", [serial, ok])

    # -- Clipboard ---------------------------------------------------------------------

    def read_text(self) -> str | None:
        """The clipboard's text now; None when it holds no text, or too much."""
        with self._lock:
            if self._closed:
                raise ClipboardError("clipboard closed")
        try:
            self._live()
        except mutter.MutterUnavailable as exc:
            raise ClipboardError(str(exc)) from exc
        with self._lock:
            if self._owned is not None:
                return self._owned.decode()
            offer = None if self._offer is None else list(self._offer)
        # Unknown (the clipboard was enabled before this connection): try UTF-8.
        mime = UTF8 if offer is None else next((m for m in READABLE if m in offer), None)
        if mime is None:
            return None
        try:
            fd = self._session.call_fd("SelectionRead", "s", [mime])
        except mutter.MutterUnavailable as exc:
            logger.info("clipboard: cannot read: %s", exc)
            return None
        try:
            data = read_pipe(fd, self._max)
        finally:
            os.close(fd)
        return None if data is None else data.decode("utf-8", errors="replace")

    def set_text(self, text: str) -> None:
        """Make the session the clipboard's owner, serving ``text`` until someone else
        copies."""
        data = text.encode()
        if len(data) > self._max:
            raise ClipboardError("text too long for the clipboard")
        with self._lock:
            if self._closed:
                raise ClipboardError("clipboard closed")
        try:
            self._live()
        except mutter.MutterUnavailable as exc:
            raise ClipboardError(str(exc)) from exc
        with self._lock:
            self._owned = data
        self._session.clipboard_owner = self
        try:
            self._session.call("SetSelection", "a{sv}", [{"mime-types": _strings(list(OFFERED))}])
        except mutter.MutterUnavailable as exc:
            raise ClipboardError(str(exc)) from exc

    def watch(self, on_change: Callable[[], object]) -> Callable[[], None]:
        """Call ``on_change`` (on the D-Bus thread) when another program copies."""
        return self._watchers.add(on_change)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._watchers.clear()
        if self._session.clipboard_owner is self:
            self._session.clipboard_owner = None
        for off in self._offs:
            off()
        mutter.release(self._session)

    def __enter__(self) -> GnomeClipboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mime_types(value: Any) -> list[str]:
    """The signal's "mime-types": mutter 43 sends them as a struct "(as)"."""
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (list, tuple)):
        value = value[0]
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def _strings(values: list[str]) -> Any:
    from dbus_fast import Variant

    return Variant("as", values)
