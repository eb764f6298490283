"""mutter's remote-desktop and screen-cast sessions over D-Bus (``dbus-fast``).

One :class:`RemoteSession` per session bus and monitor serves every injector of the
process: a ``org.gnome.Mutter.RemoteDesktop`` session with a linked
``org.gnome.Mutter.ScreenCast`` session recording the monitor (absolute pointer motion
is given in that stream's pixels). Keys and pointer go through it. Each capture has a
screen-cast session of its own (a PipeWire node serves one consumer), recording the
monitor with the pointer not drawn into the frames. With two or more monitors (and no
monitor named) a session records each monitor in a stream of its own, in the logical
layout ``org.gnome.Mutter.DisplayConfig`` reports; when that layout changes
(``MonitorsChanged``) the session counts as closed, so its users start a new one that
records the new layout. GNOME shows its "screen is being shared"
indicator while the session exists, so it ends a few seconds after the last capture
or injector is closed (a reconnect in between reuses it).

dbus-fast is asyncio-only: each session runs its own event loop in a thread, and the
blocking methods here submit to it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "MutterUnavailable", "RemoteSession", "Stream", "acquire", "bus_address", "probe", "release",
]  # fmt: skip

logger = logging.getLogger(__name__)

RD_NAME = "org.gnome.Mutter.RemoteDesktop"
RD_PATH = "/org/gnome/Mutter/RemoteDesktop"
RD_SESSION = "org.gnome.Mutter.RemoteDesktop.Session"
SC_NAME = "org.gnome.Mutter.ScreenCast"
SC_PATH = "/org/gnome/Mutter/ScreenCast"
SC_SESSION = "org.gnome.Mutter.ScreenCast.Session"
SC_STREAM = "org.gnome.Mutter.ScreenCast.Stream"
DC_NAME = "org.gnome.Mutter.DisplayConfig"
DC_PATH = "/org/gnome/Mutter/DisplayConfig"
#: mutter's cursor modes: 0 hidden, 1 embedded (drawn into the frames), 2 metadata (the
#: shape and position in PipeWire's ``SPA_META_Cursor``, which GStreamer's pipewiresrc
#: does not ask for: read by ``enkaku.agent.gnome.pwstream``). Captures ask for
#: metadata mode, embedded as the fallback; a session asked for metadata records in
#: embedded mode when the desktop has several monitors (``RemoteSession``). See
#: docs/wayland.md, "The pointer".
CURSOR_HIDDEN, CURSOR_EMBEDDED, CURSOR_METADATA = 0, 1, 2
START_TIMEOUT = 15.0
CALL_TIMEOUT = 10.0
#: How long a session with no user stays (a reconnect within it reuses the session).
GRACE = 5.0
#: After the first key of a session: see ``_warm_up``.
KEYBOARD_SETTLE = 0.3
SHIFT_L = 0xFFE1

T = TypeVar("T")


class MutterUnavailable(RuntimeError):
    """mutter's remote-desktop API cannot be reached or refused the session."""


@dataclass
class Stream:
    """One monitor's screen-cast stream: the monitor's connector (``""``: the primary
    monitor, unnamed), the stream's object path and PipeWire node, and the monitor's
    place in mutter's logical layout (the stream's ``position`` and ``size``)."""

    connector: str
    path: str
    node: int = -1
    position: tuple[int, int] = (0, 0)
    size: tuple[int, int] = (0, 0)
    primary: bool = False


@dataclass(frozen=True)
class LogicalMonitor:
    """A logical monitor of ``GetCurrentState``: its first connector (mirrored monitors
    share one logical monitor), where it is, and the modes it is shown in (what tells
    one layout from another)."""

    connector: str
    x: int
    y: int
    scale: float
    transform: int
    primary: bool
    modes: tuple[str, ...]


def logical_monitors(state: list[Any]) -> list[LogicalMonitor]:
    """The logical monitors of a ``GetCurrentState`` reply, in its order."""
    _serial, monitors, logical, _props = state
    current: dict[str, str] = {}
    for spec, modes, _mprops in monitors:
        for mode in modes:
            flags = mode[6] if len(mode) > 6 else {}
            is_current = flags.get("is-current")
            if is_current is not None and getattr(is_current, "value", is_current):
                current[spec[0]] = mode[0]
    out = []
    for x, y, scale, transform, primary, specs, _lprops in logical:
        if not specs:
            continue
        modes = tuple(current.get(spec[0], "") for spec in specs)
        mon = LogicalMonitor(specs[0][0], int(x), int(y), float(scale), int(transform),
                             bool(primary), modes)  # fmt: skip
        out.append(mon)
    return out


def bus_address(env: Mapping[str, str]) -> str | None:
    """The session bus of ``env``: $DBUS_SESSION_BUS_ADDRESS, else systemd's
    $XDG_RUNTIME_DIR/bus."""
    if address := env.get("DBUS_SESSION_BUS_ADDRESS"):
        return address
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.exists(os.path.join(runtime, "bus")):
        return f"unix:path={os.path.join(runtime, 'bus')}"
    return None


def pipewire_socket(env: Mapping[str, str]) -> str:
    """The PipeWire daemon's socket of ``env`` ($PIPEWIRE_REMOTE in $XDG_RUNTIME_DIR)."""
    name = env.get("PIPEWIRE_REMOTE") or "pipewire-0"
    if os.path.isabs(name):
        return name
    return os.path.join(env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}", name)


def wayland_socket(env: Mapping[str, str]) -> str | None:
    """The compositor socket $WAYLAND_DISPLAY names in ``env``."""
    name = env.get("WAYLAND_DISPLAY")
    if not name or os.path.isabs(name):
        return name or None
    runtime = env.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, name) if runtime else None


def seat_connection(path: str | None) -> tuple[Any, Any] | None:
    """A Wayland connection to the compositor's socket ``path`` and pywayland's
    ``WlSeat`` class, for a short question to the seat (the caller closes the
    connection); None when it cannot be had (no socket, no pywayland, refused)."""
    if path is None or not os.path.exists(path):
        return None
    try:
        from pywayland.protocol.wayland import WlSeat

        from enkaku.agent.wayland.connection import WaylandConnection
    except ImportError:
        return None
    try:
        return WaylandConnection(path), WlSeat
    except Exception:
        return None


def _seat_has_keyboard(path: str | None) -> bool | None:
    """Whether the compositor's seat has a keyboard; None when that cannot be asked
    (no socket, no pywayland)."""
    if (opened := seat_connection(path)) is None:
        return None
    conn, WlSeat = opened
    try:
        caps: list[int] = []
        seat = conn.bind(WlSeat, 1)
        seat.dispatcher["capabilities"] = lambda _s, value: caps.append(value)
        conn.display.roundtrip()
        seat.destroy()
        return bool(caps and caps[-1] & 2)  # WL_SEAT_CAPABILITY_KEYBOARD
    except Exception:
        return None
    finally:
        conn.close()


def _run(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run ``coro`` to completion on a fresh event loop in a thread of its own (the
    caller may be inside a running loop)."""
    with concurrent.futures.ThreadPoolExecutor(1, "enkaku-dbus-probe") as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, timeout)).result()


def probe(env: Mapping[str, str]) -> str | None:
    """None when this session's mutter offers the remote-desktop API and the PipeWire
    frames can be read, else why not (English, for the "tried" list)."""
    try:
        import dbus_fast  # noqa: F401
    except ImportError:
        return "dbus-fast is not installed"
    from .gst import gst_problem

    address = bus_address(env)
    if address is None:
        return "no D-Bus session bus ($DBUS_SESSION_BUS_ADDRESS is not set)"

    async def names() -> list[bool]:
        from dbus_fast import Message
        from dbus_fast.aio import MessageBus

        bus = await MessageBus(bus_address=address).connect()
        try:
            found = []
            for name in (RD_NAME, SC_NAME):
                reply = await bus.call(
                    Message(
                        destination="org.freedesktop.DBus",
                        path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus",
                        member="NameHasOwner",
                        signature="s",
                        body=[name],
                    )
                )
                found.append(bool(reply.body and reply.body[0]))
            return found
        finally:
            bus.disconnect()

    try:
        found = _run(names(), CALL_TIMEOUT)
    except Exception as exc:  # any failure is a reason to report
        return f"cannot reach the D-Bus session bus ({exc.__class__.__name__}: {exc})"
    if not all(found):
        return "mutter's remote-desktop API (org.gnome.Mutter.RemoteDesktop) is not on the bus"
    if (problem := gst_problem()) is not None:
        return problem
    return None


def reply_fd(reply: Any, member: str, error: type[Exception]) -> int:
    """The file descriptor a D-Bus reply hands over (its first value is the index into
    the message's descriptors); every other descriptor of the message is closed."""
    fds = list(reply.unix_fds or [])
    index = reply.body[0] if reply.body else -1
    if not isinstance(index, int) or not 0 <= index < len(fds):
        for fd in fds:
            os.close(fd)
        raise error(f"{member}: no file descriptor in the reply")
    for i, fd in enumerate(fds):
        if i != index:
            os.close(fd)
    return int(fds[index])


class SharedBusSession:
    """The life cycle mutter's and the portal's sessions share: an asyncio loop in a
    thread of its own holds the D-Bus connection; the process keeps one session per bus
    in a registry while it has users, and stops it ``delay`` seconds after the last one
    left. Subclasses set ``_loop``, ``_thread``, ``closed``, ``users`` and
    ``_stop_timer``, name their registry and lock, and implement ``_stop()``."""

    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    closed: threading.Event
    users: int
    _stop_timer: asyncio.TimerHandle | None
    #: The thread that stops an unused session.
    _stop_thread_name = "dbus-session-stop"

    def _registry(self) -> tuple[dict[Any, Any], threading.Lock]:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def schedule_stop(self, delay: float) -> None:
        def stop_later() -> None:
            self._stop_timer = self._loop.call_later(delay, self._stop_unused)

        self._loop.call_soon_threadsafe(stop_later)

    def cancel_stop(self) -> None:
        def cancel() -> None:
            if self._stop_timer is not None:
                self._stop_timer.cancel()
                self._stop_timer = None

        self._loop.call_soon_threadsafe(cancel)

    def _stop_unused(self) -> None:
        sessions, lock = self._registry()
        with lock:
            if self.users > 0:
                return
            for key, session in list(sessions.items()):
                if session is self:
                    del sessions[key]
        threading.Thread(target=self.stop, name=self._stop_thread_name, daemon=True).start()

    def stop(self) -> None:
        """End the session and the D-Bus connection."""
        if self._loop.is_closed():
            return
        self.closed.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            future = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
            with contextlib.suppress(Exception):
                future.result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()


class RemoteSession(SharedBusSession):
    """A started remote-desktop session with its monitor stream (see the module doc);
    with ``remote_desktop=False`` a screen-cast session alone (a capture's own: one
    PipeWire node serves one consumer, a second one gets no frames).

    ``cursor_mode`` is the mode asked for; ``self.cursor_mode`` the mode the streams
    record in. Metadata mode is used only when the desktop has one monitor, else
    embedded: with several monitors mutter 43 in metadata mode also records cursor-only
    buffers on a monitor's stream when another monitor's view prepares a frame, and a
    new stream now and then gets only such buffers and never its first frame (nothing
    more until that monitor is redrawn; measured in 21 of 100 captures, none with one
    monitor or in embedded mode). See docs/wayland.md, "The pointer".

    Blocking; safe to use from several threads.
    """

    #: The first failure of a posted call (``post``): the next one raises it.
    _post_failure: str | None = None

    def post(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Send a call and do not wait for its reply (input events). Calls go out in the
        order they were posted, and a compositor that is busy or stopped takes them
        when it runs again, however long that is, as X11's and wlroots' injectors wait
        (waiting for each reply made a key wait for mutter to handle the one before, and
        a desktop frozen for ``CALL_TIMEOUT`` ended the technician's screen). A call
        that fails is logged and makes the next ``post`` raise."""
        if self._post_failure is not None:
            coro.close()
            raise MutterUnavailable(self._post_failure)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError as exc:  # the session's loop is closed: it has ended
            coro.close()
            raise MutterUnavailable("the session has ended") from exc
        future.add_done_callback(self._posted)

    def _posted(self, future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None and self._post_failure is None:
            self._post_failure = str(exc) or type(exc).__name__
            logger.warning("an input event was not taken: %s", self._post_failure)

    def __init__(
        self,
        env: Mapping[str, str],
        output: str | None = None,
        remote_desktop: bool = True,
        cursor_mode: int = CURSOR_EMBEDDED,
    ) -> None:
        try:
            from dbus_fast import Message, MessageType, Variant
            from dbus_fast.aio import MessageBus
        except ImportError as exc:
            raise MutterUnavailable("dbus-fast is not installed") from exc
        self._Message, self._MessageType, self._Variant = Message, MessageType, Variant
        self._MessageBus = MessageBus
        address = bus_address(env)
        if address is None:
            raise MutterUnavailable("no D-Bus session bus ($DBUS_SESSION_BUS_ADDRESS)")
        self.address = address
        self.output = output
        self.remote_desktop = remote_desktop
        self.cursor_mode = cursor_mode
        self.pipewire = pipewire_socket(env)
        self._wayland = wayland_socket(env)
        self.closed = threading.Event()
        self._watchers: list[Callable[[], None]] = []
        self._signals: dict[str, list[Callable[[list[Any]], None]]] = {}
        #: The clipboard (``enkaku.agent.clipboard.gnome``): enabled once per session,
        #: and which of its users set the text the session now offers.
        self.clipboard_enabled = False
        self.clipboard_owner: object | None = None
        self.users = 0
        self._bus: Any = None
        self.rd_path = ""
        self.sc_path = ""
        #: One stream per monitor recorded (one unless several monitors, none named).
        self.streams: list[Stream] = []
        #: The logical layout when the session started (``MonitorsChanged`` compares).
        self.layout: list[LogicalMonitor] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mutter-dbus",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        try:
            self._submit(self._start(), START_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    # -- event-loop side ---------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        if self.closed.is_set() and self._bus is None:
            coro.close()
            raise MutterUnavailable("the remote-desktop session has ended")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise MutterUnavailable("mutter did not answer") from exc

    async def _call(
        self,
        dest: str,
        path: str,
        iface: str,
        member: str,
        sig: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        return list((await self._call_msg(dest, path, iface, member, sig, body)).body)

    async def _call_msg(
        self,
        dest: str,
        path: str,
        iface: str,
        member: str,
        sig: str = "",
        body: list[Any] | None = None,
    ) -> Any:
        bus = self._bus
        if bus is None or not bus.connected:
            raise MutterUnavailable("the D-Bus connection is gone")
        reply = await bus.call(
            self._Message(
                destination=dest,
                path=path,
                interface=iface,
                member=member,
                signature=sig,
                body=body or [],
            )
        )
        if reply.message_type == self._MessageType.ERROR:
            for fd in reply.unix_fds or []:
                os.close(fd)
            detail = reply.body[0] if reply.body else ""
            raise MutterUnavailable(f"{member}: {reply.error_name} {detail}".strip())
        return reply

    async def _start(self) -> None:
        try:
            self._bus = await self._MessageBus(
                bus_address=self.address, negotiate_unix_fd=True
            ).connect()
        except Exception as exc:
            raise MutterUnavailable(f"cannot connect to the D-Bus session bus: {exc}") from exc
        bus = self._bus
        asyncio.get_running_loop().create_task(self._watch_disconnect(bus))
        link: dict[str, Any] = {}
        if self.remote_desktop:
            (self.rd_path,) = await self._call(RD_NAME, RD_PATH, RD_NAME, "CreateSession")
            (session_id,) = await self._call(
                RD_NAME, self.rd_path, "org.freedesktop.DBus.Properties", "Get", "ss",
                [RD_SESSION, "SessionId"],
            )  # fmt: skip
            link = {"remote-desktop-session-id": self._Variant("s", session_id.value)}
        (self.sc_path,) = await self._call(SC_NAME, SC_PATH, SC_NAME, "CreateSession", "a{sv}",
                                           [link])  # fmt: skip
        self.layout = await self._layout()
        if self.cursor_mode == CURSOR_METADATA and len(self.layout) > 1:
            self.cursor_mode = CURSOR_EMBEDDED  # see the class doc
        if self.output is not None:
            connectors = [self.output]
        elif len(self.layout) >= 2:
            connectors = [mon.connector for mon in self.layout]
        else:
            connectors = [""]  # the primary monitor, as mutter picks it
        primary = {mon.connector for mon in self.layout if mon.primary}
        for connector in connectors:
            (path,) = await self._call(
                SC_NAME, self.sc_path, SC_SESSION, "RecordMonitor", "sa{sv}",
                [connector, {"cursor-mode": self._Variant("u", self.cursor_mode)}],
            )  # fmt: skip
            self.streams.append(Stream(connector, path, primary=connector in primary))
        loop = asyncio.get_running_loop()
        nodes: dict[str, asyncio.Future[int]] = {s.path: loop.create_future() for s in self.streams}

        def on_message(msg: Any) -> None:
            if msg.message_type != self._MessageType.SIGNAL:
                return
            if msg.path in nodes and msg.member == "PipeWireStreamAdded":
                if not nodes[msg.path].done():
                    nodes[msg.path].set_result(int(msg.body[0]))
            elif msg.path == DC_PATH and msg.member == "MonitorsChanged":
                task = loop.create_task(self._check_layout())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif msg.path in (self.rd_path, self.sc_path) and msg.member == "Closed":
                logger.info("mutter closed the session")
                self._set_closed()
            elif msg.path == self.rd_path and msg.member in self._signals:
                for callback in list(self._signals[msg.member]):
                    try:
                        callback(list(msg.body))
                    except Exception:
                        logger.exception("%s handler", msg.member)

        bus.add_message_handler(on_message)
        matches = [f"type='signal',path='{path}'" for path in nodes]
        matches.append(f"type='signal',path='{self.rd_path or self.sc_path}'")
        matches.append(f"type='signal',path='{DC_PATH}',member='MonitorsChanged'")
        for rule in matches:
            await self._call(
                "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                "AddMatch", "s", [rule],
            )  # fmt: skip
        if self.remote_desktop:
            await self._call(RD_NAME, self.rd_path, RD_SESSION, "Start")
        else:
            await self._call(SC_NAME, self.sc_path, SC_SESSION, "Start")
        for stream in self.streams:
            stream.node = await nodes[stream.path]
            (params,) = await self._call(
                SC_NAME, stream.path, "org.freedesktop.DBus.Properties", "Get", "ss",
                [SC_STREAM, "Parameters"],
            )  # fmt: skip
            values = params.value
            if "position" in values:
                stream.position = tuple(values["position"].value)
            if "size" in values:
                stream.size = tuple(values["size"].value)
        if self.remote_desktop:
            await self._warm_up()
        kind = "remote-desktop" if self.remote_desktop else "screen-cast"
        logger.info(
            "mutter %s session started (%s)", kind,
            ", ".join(f"{s.connector or 'primary'} {s.size[0]}x{s.size[1]}" for s in self.streams),
        )  # fmt: skip

    async def _layout(self) -> list[LogicalMonitor]:
        """mutter's logical monitors now; empty when DisplayConfig does not answer (then
        the primary monitor alone is recorded, as before multi-monitor support)."""
        try:
            state = await self._call(DC_NAME, DC_PATH, DC_NAME, "GetCurrentState")
            return logical_monitors(state)
        except Exception as exc:  # no DisplayConfig, or a reply of another shape
            logger.info("mutter's monitor layout unknown (%s): the primary monitor alone", exc)
            return []

    async def _check_layout(self) -> None:
        """After ``MonitorsChanged``: a layout other than the session's ends it for its
        users (they start a new session recording the new layout). mutter 43 itself
        closes a session whose monitor changed its size or place, not one to which a
        monitor was added."""
        if self.closed.is_set():
            return
        layout = await self._layout()
        if layout and layout != self.layout and not self.closed.is_set():
            logger.info("mutter's monitors changed: the session ends")
            self._set_closed()

    # -- the monitors' streams ------------------------------------------------------------

    @property
    def stream_path(self) -> str:
        """The first (with one monitor: the only) stream's object path."""
        return self.streams[0].path if self.streams else ""

    @property
    def node(self) -> int:
        """The first stream's PipeWire node."""
        return self.streams[0].node if self.streams else -1

    @property
    def size(self) -> tuple[int, int]:
        """The first stream's monitor's size."""
        return self.streams[0].size if self.streams else (0, 0)

    def origin(self) -> tuple[int, int]:
        """The top-left corner of the monitors' bounding box in mutter's layout: the
        desktop's 0, 0 (the captures' too)."""
        if not self.streams:
            return 0, 0
        return min(s.position[0] for s in self.streams), min(s.position[1] for s in self.streams)

    def locate(self, x: int, y: int) -> tuple[str, int, int]:
        """The stream a desktop point (0, 0: ``origin()``) is on and the point in that
        stream's pixels; a point outside every monitor goes to the nearest monitor's
        nearest pixel. With one stream: its pixels, clamped."""
        if len(self.streams) == 1:
            w, h = self.size
            return self.stream_path, min(max(x, 0), max(w - 1, 0)), min(max(y, 0), max(h - 1, 0))
        ox, oy = self.origin()
        best: tuple[int, str, int, int] | None = None
        for s in self.streams:
            w, h = s.size
            sx = min(max(x + ox - s.position[0], 0), max(w - 1, 0))
            sy = min(max(y + oy - s.position[1], 0), max(h - 1, 0))
            dist = abs(x + ox - s.position[0] - sx) + abs(y + oy - s.position[1] - sy)
            if best is None or dist < best[0]:
                best = (dist, s.path, sx, sy)
        if best is None:
            raise MutterUnavailable("the session records no monitor")
        return best[1], best[2], best[3]

    async def _warm_up(self) -> None:
        """On a seat with no keyboard yet (a headless session; never with a keyboard
        plugged in), mutter adds the keyboard to the seat on the session's first key
        and the keys that follow are lost until the clients have bound it: then a
        Shift tap, and a short wait, come first. Only then: a lone Shift toggles the
        input mode of some Japanese input methods."""
        if await asyncio.to_thread(_seat_has_keyboard, self._wayland) is not False:
            return
        for down in (True, False):
            await self._call(RD_NAME, self.rd_path, RD_SESSION, "NotifyKeyboardKeysym", "ub",
                             [SHIFT_L, down])  # fmt: skip
        await asyncio.sleep(KEYBOARD_SETTLE)

    async def _watch_disconnect(self, bus: Any) -> None:
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()
        self._set_closed()

    def _set_closed(self) -> None:
        self.closed.set()
        for callback in list(self._watchers):
            try:
                callback()
            except Exception:
                logger.exception("session-closed callback")

    def watch_closed(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (in the D-Bus thread) when mutter ends the session — it does
        on a monitor change (mutter 43). Returns the function that stops watching."""
        self._watchers.append(callback)
        if self.closed.is_set():
            callback()

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._watchers.remove(callback)

        return unwatch

    async def _stop(self) -> None:
        bus = self._bus
        if bus is None:
            return
        if bus.connected and (self.rd_path or self.sc_path):
            if self.rd_path:
                stop = self._call(RD_NAME, self.rd_path, RD_SESSION, "Stop")
            else:
                stop = self._call(SC_NAME, self.sc_path, SC_SESSION, "Stop")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stop, 5)
        self._bus = None
        bus.disconnect()

    # -- blocking API ------------------------------------------------------------------

    def notify(self, member: str, signature: str, body: list[Any]) -> None:
        """Call a ``Notify*`` method of the remote-desktop session, without waiting for
        mutter (``post``)."""
        if self.closed.is_set():
            raise MutterUnavailable("the remote-desktop session has ended")
        self.post(self._call(RD_NAME, self.rd_path, RD_SESSION, member, signature, body))

    def call(self, member: str, signature: str = "", body: list[Any] | None = None) -> list[Any]:
        """Call a method of the remote-desktop session; its reply's values."""
        if self.closed.is_set():
            raise MutterUnavailable("the remote-desktop session has ended")
        return self._submit(self._call(RD_NAME, self.rd_path, RD_SESSION, member, signature, body))

    def call_fd(self, member: str, signature: str = "", body: list[Any] | None = None) -> int:
        """Call a method of the remote-desktop session that returns a file descriptor
        (``SelectionRead``, ``SelectionWrite``); the caller closes it."""
        if self.closed.is_set():
            raise MutterUnavailable("the remote-desktop session has ended")
        reply = self._submit(
            self._call_msg(RD_NAME, self.rd_path, RD_SESSION, member, signature, body)
        )
        return reply_fd(reply, member, MutterUnavailable)

    def on_signal(self, member: str, callback: Callable[[list[Any]], None]) -> Callable[[], None]:
        """Call ``callback(values)`` (in the D-Bus thread; it must not block on this
        session) for each ``member`` signal of the remote-desktop session; returns the
        function that stops it."""
        self._signals.setdefault(member, []).append(callback)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._signals[member].remove(callback)

        return off

    def connect_pipewire(self) -> socket.socket:
        """A socket connected to the PipeWire daemon the stream lives on."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(self.pipewire)
        except OSError as exc:
            sock.close()
            raise MutterUnavailable(f"cannot connect to PipeWire ({self.pipewire}): {exc}") from exc
        return sock

    _stop_thread_name = "mutter-stop"

    def _registry(self) -> tuple[dict[Any, Any], threading.Lock]:
        return _sessions, _lock


_sessions: dict[tuple[str, str | None], RemoteSession] = {}
_lock = threading.Lock()


def acquire(env: Mapping[str, str], output: str | None = None) -> RemoteSession:
    """The process's session for this bus and monitor, started if needed; give it back
    with :func:`release`."""
    address = bus_address(env)
    if address is None:
        raise MutterUnavailable("no D-Bus session bus ($DBUS_SESSION_BUS_ADDRESS)")
    key = (address, output)
    with _lock:
        session = _sessions.get(key)
        if session is not None and session.closed.is_set():
            del _sessions[key]
            threading.Thread(target=session.stop, daemon=True).start()
            session = None
        if session is None:
            session = _sessions[key] = RemoteSession(env, output)
        session.users += 1
        session.cancel_stop()
        return session


def release(session: RemoteSession) -> None:
    """One user fewer; the session ends ``GRACE`` seconds after its last user."""
    with _lock:
        session.users -= 1
        if session.users > 0:
            return
        if session.closed.is_set():
            for key, s in list(_sessions.items()):
                if s is session:
                    del _sessions[key]
    if session.closed.is_set():
        session.stop()
    else:
        session.schedule_stop(GRACE)


@atexit.register
def _stop_all() -> None:
    with _lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.stop()
