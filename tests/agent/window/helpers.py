"""Driving the agent window in tests: a Tk root on a private Xvfb, a loop thread behind a
bridge, widgets found by name, real clicks and keys through xdotool, a real
WM_DELETE_WINDOW as a window manager sends it."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import subprocess
import threading
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from enkaku.agent.window.bridge import Bridge
from enkaku.transport.channel import ChannelStats
from tests.xdisplay import x_env


def pump_until(root: tk.Misc, predicate: Callable[[], Any], timeout: float = 20.0,
               what: str = "condition") -> Any:  # fmt: skip
    """Run Tk's event loop until ``predicate()`` is true; its value."""
    deadline = time.monotonic() + timeout
    while True:
        root.update()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def find(root: tk.Misc, name: str) -> tk.Misc | None:
    """The widget called ``name`` anywhere under ``root`` (None if absent)."""
    for child in root.winfo_children():
        if child.winfo_name() == name:
            return child
        found = find(child, name)
        if found is not None:
            return found
    return None


def need(root: tk.Misc, name: str) -> Any:
    """The widget called ``name``, waiting until it exists and is viewable."""
    return pump_until(
        root, lambda: (w := find(root, name)) is not None and w.winfo_viewable() and w, what=name
    )


def xdotool(display: str, *args: str) -> None:
    subprocess.run(["xdotool", *args], env=x_env(display), check=True, timeout=30)


def click(display: str, widget: tk.Misc) -> None:
    """A real left click in the middle of ``widget`` (pointer moved there first)."""
    widget.update_idletasks()
    x = widget.winfo_rootx() + widget.winfo_width() // 2
    y = widget.winfo_rooty() + widget.winfo_height() // 2
    xdotool(display, "mousemove", "--sync", str(x), str(y))
    xdotool(display, "click", "1")


def type_text(display: str, widget: tk.Misc, text: str) -> None:
    """Click into ``widget`` and type ``text`` then Return, as real key events."""
    click(display, widget)
    pump_until(widget, lambda: widget.focus_get() is widget, what="focus")
    xdotool(display, "type", "--delay", "20", text)
    xdotool(display, "key", "Return")


class _ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p), ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong), ("format", ctypes.c_int),
        ("l", ctypes.c_long * 5),
    ]  # fmt: skip


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


def close_window(display: str, toplevel: tk.Wm) -> None:
    """Send WM_DELETE_WINDOW to ``toplevel``, as a window manager's close button does."""
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long,
                               ctypes.c_void_p]  # fmt: skip
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = x11.XOpenDisplay(display.encode())
    assert dpy, display
    try:
        wid = int(toplevel.wm_frame(), 16)
        ev = _XEvent()
        ev.xclient.type = 33  # ClientMessage
        ev.xclient.window = wid
        ev.xclient.message_type = x11.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
        ev.xclient.format = 32
        ev.xclient.l[0] = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
        assert x11.XSendEvent(dpy, wid, 0, 0, ctypes.byref(ev))
        x11.XFlush(dpy)
    finally:
        x11.XCloseDisplay(dpy)


@contextmanager
def loop_thread(root: tk.Tk) -> Iterator[Bridge]:
    """A bridge whose loop runs until the block ends (then stopped and joined)."""
    bridge = Bridge(root)
    holder: list[asyncio.Event] = []
    finished: list[BaseException | None] = []

    async def main() -> None:
        stop = asyncio.Event()
        holder.append(stop)
        await stop.wait()

    bridge.start(main, finished.append)
    try:
        yield bridge
    finally:
        assert bridge.loop is not None
        pump_until(root, lambda: holder, what="loop started")
        bridge.loop.call_soon_threadsafe(holder[0].set)
        pump_until(root, lambda: finished, what="loop finished")
        assert bridge.join(10)
        bridge.close()
        assert finished == [None]


class FakeGrants:
    def __init__(self, actions: list[str]) -> None:
        self.actions = actions

    def in_force(self) -> list[str]:
        return sorted(self.actions)


@dataclass
class FakeSession:
    """A session as the window sees it, recording what the customer did; its traffic
    grows when a test says so."""

    sent: int = 0
    received: int = 0
    control_paused: bool = False
    grants: FakeGrants = field(default_factory=lambda: FakeGrants(["control", "screen"]))
    pauses: list[bool] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    chats: list[str] = field(default_factory=list)

    def traffic(self) -> ChannelStats:
        return ChannelStats(self.sent, self.received, {}, {})

    def end(self, reason: str) -> None:
        self.ended.append(reason)

    async def pause_control(self, paused: bool) -> None:
        self.pauses.append(paused)
        self.control_paused = paused

    async def send_chat(self, text: str) -> None:
        self.chats.append(text)


class FakeRuntime:
    """The runtime as the window drives it: records stops and password replacements."""

    def __init__(self, ui: Any, policy: Any, session: Any = None) -> None:
        self.ui, self.policy, self.session = ui, policy, session
        self.stops: list[str] = []
        self.replaced_on: list[int] = []
        self.started = threading.Event()
        self._stop = asyncio.Event()
        self.password = "k7dq-m2xa"
        self.server_url = "https://support.example"

    async def run(self) -> None:
        self.ui.credentials("123456789", self.password)
        self.started.set()
        await self._stop.wait()

    async def stop(self, reason: str = "customer_ended") -> None:
        self.stops.append(reason)
        self._stop.set()

    def replace_password(self) -> None:
        self.replaced_on.append(threading.get_ident())
        self.password = "n3wp-4ssw"
        self.ui.credentials("123456789", self.password)
