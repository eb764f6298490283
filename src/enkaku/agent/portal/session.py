"""A remote-desktop session through the desktop portal (``xdg-desktop-portal``).

The portal (``org.freedesktop.portal.Desktop`` on the session bus) serves KDE Plasma,
sandboxed applications and any desktop whose compositor has a portal backend. One
``org.freedesktop.portal.RemoteDesktop`` session with a screen-cast source (one
monitor) serves the whole agent process: keys and pointer go through it, and every
capture reads its PipeWire node through a PipeWire connection of its own
(``OpenPipeWireRemote``).

Starting a session asks the customer once (the portal's permission dialog). The
session is started with ``persist_mode`` 2 ("until revoked"): the portal then returns a
*restore token*, which the agent keeps in its config folder (``portal_restore_token``,
mode 0600). The next session passes it back and the portal starts with no dialog. A
token serves one session: each start returns the one for the next time, which replaces
the stored one.

Each portal call that may ask the user returns a ``Request`` object path; the answer is
its ``Response`` signal (code 0 success, 1 cancelled by the user, 2 other). The signal
is subscribed to before the call, on the path the portal will use
(``/org/freedesktop/portal/desktop/request/SENDER/TOKEN``).

dbus-fast is asyncio-only: the session runs its own event loop in a thread and the
blocking methods submit to it, as in :mod:`enkaku.agent.gnome.mutter`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from enkaku.agent.gnome.mutter import (
    KEYBOARD_SETTLE,
    SHIFT_L,
    SharedBusSession,
    _seat_has_keyboard,
    bus_address,
    reply_fd,
    wayland_socket,
)

__all__ = [
    "PortalSession",
    "PortalUnavailable",
    "acquire",
    "probe",
    "release",
    "token_file",
]

logger = logging.getLogger(__name__)

PORTAL_NAME = "org.freedesktop.portal.Desktop"
PORTAL_PATH = "/org/freedesktop/portal/desktop"
RD = "org.freedesktop.portal.RemoteDesktop"
SC = "org.freedesktop.portal.ScreenCast"
REQUEST = "org.freedesktop.portal.Request"
SESSION = "org.freedesktop.portal.Session"
PROPERTIES = "org.freedesktop.DBus.Properties"

KEYBOARD, POINTER = 1, 2  # device types
MONITOR = 1  # source types
CURSOR_HIDDEN, CURSOR_EMBEDDED, CURSOR_METADATA = 1, 2, 4  # cursor modes (a bit mask)
PERSIST_UNTIL_REVOKED = 2
TOKEN_NAME = "portal_restore_token"
SC_TOKEN_NAME = "portal_screencast_token"

CALL_TIMEOUT = 10.0
#: How long the customer has to answer the permission dialog.
DIALOG_TIMEOUT = 120.0
#: How long a session with no user stays (a reconnect within it reuses the session).
GRACE = 5.0

T = TypeVar("T")
_tokens = itertools.count(1)


class PortalUnavailable(RuntimeError):
    """The portal cannot be reached, lacks the interfaces, or the session was refused."""


def token_file(config_dir: Path | None = None, remote_desktop: bool = True) -> Path:
    """Where the restore token is kept: the agent's config folder (one file for the
    remote-desktop session, one for a screen-cast session of its own)."""
    if config_dir is None:
        from enkaku.agent.identity import default_config_dir

        config_dir = default_config_dir()
    return Path(config_dir) / (TOKEN_NAME if remote_desktop else SC_TOKEN_NAME)


def _read_token(path: Path) -> str | None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def _write_token(path: Path, token: str | None) -> None:
    """Keep ``token`` (mode 0600), or forget the stored one when None."""
    try:
        if token is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("cannot keep the portal's restore token in %s: %s", path, exc)


def _run(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    with concurrent.futures.ThreadPoolExecutor(1, "enkaku-portal-probe") as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, timeout)).result()


async def _get_property(bus: Any, iface: str, name: str) -> Any:
    from dbus_fast import Message, MessageType

    reply = await bus.call(
        Message(
            destination=PORTAL_NAME,
            path=PORTAL_PATH,
            interface=PROPERTIES,
            member="Get",
            signature="ss",
            body=[iface, name],
        )
    )
    if reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply.body else ""
        raise PortalUnavailable(f"{iface}.{name}: {reply.error_name} {detail}".strip())
    return reply.body[0].value


def probe(env: Mapping[str, str]) -> str | None:
    """None when the session bus has the portal with ScreenCast and RemoteDesktop
    (reading their properties starts the portal if the bus can activate it) and the
    PipeWire frames can be read; else why not (English, for the "tried" list)."""
    try:
        import dbus_fast  # noqa: F401
    except ImportError:
        return "dbus-fast is not installed"
    from enkaku.agent.gnome.gst import gst_problem

    address = bus_address(env)
    if address is None:
        return "no D-Bus session bus ($DBUS_SESSION_BUS_ADDRESS is not set)"

    async def check() -> str | None:
        from dbus_fast.aio import MessageBus

        bus = await MessageBus(bus_address=address).connect()
        try:
            try:
                devices = await _get_property(bus, RD, "AvailableDeviceTypes")
                sources = await _get_property(bus, SC, "AvailableSourceTypes")
            except PortalUnavailable as exc:
                return f"the desktop portal has no remote-desktop support ({exc})"
            if not int(devices) & KEYBOARD or not int(devices) & POINTER:
                return "the desktop portal offers no keyboard and pointer"
            if not int(sources) & MONITOR:
                return "the desktop portal cannot share a monitor"
            return None
        finally:
            bus.disconnect()

    try:
        why = _run(check(), CALL_TIMEOUT + 20)  # activation may take a while
    except Exception as exc:
        return f"cannot reach the desktop portal ({exc.__class__.__name__}: {exc})"
    if why is not None:
        return why
    return gst_problem()


_versions: dict[str, int] = {}


def remote_desktop_version(env: Mapping[str, str]) -> int:
    """The portal's RemoteDesktop version (2 and later restore remote-desktop sessions);
    0 when it cannot be read."""
    address = bus_address(env)
    if address is None:
        return 0
    if address not in _versions:

        async def read() -> int:
            from dbus_fast.aio import MessageBus

            bus = await MessageBus(bus_address=address).connect()
            try:
                return int(await _get_property(bus, RD, "version"))
            finally:
                bus.disconnect()

        try:
            _versions[address] = _run(read(), CALL_TIMEOUT)
        except Exception:
            return 0
    return _versions[address]


class PortalSession(SharedBusSession):
    """A started portal remote-desktop session with one monitor stream (see the module
    doc). ``metadata``: ask for cursor mode "metadata" (the pointer's shape beside the
    frames, for a reader that asks for it) when the portal offers it, else "embedded"
    (the pointer drawn into the frames); ``cursor_mode`` says which was asked (0: none,
    the portal's default). Blocking; safe to use from several threads."""

    def __init__(
        self,
        env: Mapping[str, str],
        config_dir: Path | None = None,
        remote_desktop: bool = True,
        metadata: bool = False,
    ) -> None:
        try:
            from dbus_fast import Message, MessageType, Variant
            from dbus_fast.aio import MessageBus
        except ImportError as exc:
            raise PortalUnavailable("dbus-fast is not installed") from exc
        self._Message, self._MessageType, self._Variant = Message, MessageType, Variant
        self._MessageBus = MessageBus
        address = bus_address(env)
        if address is None:
            raise PortalUnavailable("no D-Bus session bus ($DBUS_SESSION_BUS_ADDRESS)")
        self.address = address
        self.remote_desktop = remote_desktop
        self.cursor_mode = CURSOR_METADATA if metadata else CURSOR_EMBEDDED
        self._wayland = wayland_socket(env)
        #: The GNOME injector's name for what moves the pointer; unused here.
        self.stream_path = ""
        self.token_path = token_file(config_dir, remote_desktop)
        self.closed = threading.Event()
        self._watchers: list[Callable[[], None]] = []
        self.users = 0
        self._bus: Any = None
        self.handle = ""
        self.node = -1
        self.size = (0, 0)
        self.position = (0, 0)
        self.version = 0
        #: Whether this session started from a stored restore token (tests, logs).
        self.restored_from: str | None = None
        self._stop_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="portal-dbus", daemon=True
        )
        self._thread.start()
        try:
            self._submit(self._start(), DIALOG_TIMEOUT + 4 * CALL_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    # -- event-loop side ---------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        if self.closed.is_set() and self._bus is None:
            coro.close()
            raise PortalUnavailable("the portal session has ended")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise PortalUnavailable("the desktop portal did not answer") from exc

    async def _call_msg(
        self, iface: str, member: str, sig: str, body: list[Any], path: str = PORTAL_PATH
    ) -> Any:
        bus = self._bus
        if bus is None or not bus.connected:
            raise PortalUnavailable("the D-Bus connection is gone")
        reply = await asyncio.wait_for(
            bus.call(
                self._Message(
                    destination=PORTAL_NAME,
                    path=path,
                    interface=iface,
                    member=member,
                    signature=sig,
                    body=body,
                )
            ),
            CALL_TIMEOUT,
        )
        if reply.message_type == self._MessageType.ERROR:
            for fd in reply.unix_fds or []:
                os.close(fd)
            detail = reply.body[0] if reply.body else ""
            raise PortalUnavailable(f"{member}: {reply.error_name} {detail}".strip())
        return reply

    async def _add_match(self, rule: str) -> None:
        bus = self._bus
        reply = await bus.call(
            self._Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )
        if reply.message_type == self._MessageType.ERROR:
            raise PortalUnavailable(f"AddMatch: {reply.error_name}")

    async def _request(
        self,
        iface: str,
        member: str,
        sig: str,
        args: list[Any],
        options: dict[str, Any],
        timeout: float = CALL_TIMEOUT,
    ) -> dict[str, Any]:
        """Call a portal method that answers through a ``Request``; its results."""
        token = f"enkaku{os.getpid()}_{next(_tokens)}"
        sender = self._bus.unique_name.lstrip(":").replace(".", "_")
        expected = f"{PORTAL_PATH}/request/{sender}/{token}"
        answer: asyncio.Future[tuple[int, dict[str, Any]]] = self._loop.create_future()
        paths = {expected}

        def on_message(msg: Any) -> None:
            if (
                msg.message_type == self._MessageType.SIGNAL
                and msg.path in paths
                and msg.interface == REQUEST
                and msg.member == "Response"
                and not answer.done()
            ):
                answer.set_result((int(msg.body[0]), dict(msg.body[1])))

        self._bus.add_message_handler(on_message)
        try:
            await self._add_match(
                f"type='signal',interface='{REQUEST}',member='Response',path='{expected}'"
            )
            options = {**options, "handle_token": self._Variant("s", token)}
            reply = await self._call_msg(iface, member, sig, [*args, options])
            handle = reply.body[0]
            if handle != expected:  # portals before 0.9 chose the path themselves
                paths.add(handle)
                await self._add_match(
                    f"type='signal',interface='{REQUEST}',member='Response',path='{handle}'"
                )
            try:
                code, results = await asyncio.wait_for(answer, timeout)
            except TimeoutError:
                with contextlib.suppress(Exception):
                    await self._call_msg(REQUEST, "Close", "", [], path=handle)
                raise PortalUnavailable(f"{member}: no answer from the desktop portal") from None
        finally:
            self._bus.remove_message_handler(on_message)
        if code == 1:
            raise PortalUnavailable(f"{member}: the request was cancelled (permission refused)")
        if code != 0:
            raise PortalUnavailable(f"{member}: the desktop portal refused (response {code})")
        return {k: (v.value if isinstance(v, self._Variant) else v) for k, v in results.items()}

    async def _start(self) -> None:
        Variant = self._Variant
        try:
            self._bus = await self._MessageBus(
                bus_address=self.address, negotiate_unix_fd=True
            ).connect()
        except Exception as exc:
            raise PortalUnavailable(f"cannot connect to the D-Bus session bus: {exc}") from exc
        asyncio.get_running_loop().create_task(self._watch_disconnect(self._bus))
        try:
            self.version = int(
                await _get_property(self._bus, RD if self.remote_desktop else SC, "version")
            )
        except PortalUnavailable as exc:
            raise PortalUnavailable(f"the desktop portal has no screen sharing ({exc})") from exc
        kind = RD if self.remote_desktop else SC
        created = await self._request(
            kind,
            "CreateSession",
            "a{sv}",
            [],
            {"session_handle_token": Variant("s", f"enkaku{os.getpid()}_{next(_tokens)}")},
        )
        self.handle = str(created["session_handle"])

        def on_closed(msg: Any) -> None:
            if (
                msg.message_type == self._MessageType.SIGNAL
                and msg.path == self.handle
                and msg.member == "Closed"
            ):
                logger.info("the desktop portal closed the session")
                self._set_closed()

        self._bus.add_message_handler(on_closed)
        await self._add_match(f"type='signal',interface='{SESSION}',path='{self.handle}'")
        token = _read_token(self.token_path)
        # Restore tokens: a screen-cast session's since ScreenCast version 4; a
        # remote-desktop session's since RemoteDesktop version 2 (xdg-desktop-portal
        # 1.16 refuses "Remote desktop sessions cannot persist").
        persist = self.version >= 2 if self.remote_desktop else True
        restore: dict[str, Any] = {}
        if persist:
            restore["persist_mode"] = Variant("u", PERSIST_UNTIL_REVOKED)
            if token:
                restore["restore_token"] = Variant("s", token)
                self.restored_from = token
        if self.remote_desktop:
            devices = {"types": Variant("u", KEYBOARD | POINTER), **restore}
            await self._request(RD, "SelectDevices", "oa{sv}", [self.handle], devices)
        sources: dict[str, Any] = {"types": Variant("u", MONITOR), "multiple": Variant("b", False)}
        if not self.remote_desktop:
            sources.update(restore)
        sources.update(await self._cursor_option())
        await self._request(SC, "SelectSources", "oa{sv}", [self.handle], sources)
        started = await self._request(
            kind, "Start", "osa{sv}", [self.handle, ""], {}, timeout=DIALOG_TIMEOUT
        )
        if persist:
            new_token = started.get("restore_token")
            _write_token(self.token_path, str(new_token) if new_token else None)
        if self.remote_desktop and not int(started.get("devices", 0)) & KEYBOARD:
            logger.info("the desktop portal gave no keyboard")
        streams = started.get("streams") or []
        if not streams:
            raise PortalUnavailable("Start: the desktop portal gave no screen stream")
        node, props = streams[0]
        self.node = int(node)
        props = {k: (v.value if isinstance(v, Variant) else v) for k, v in dict(props).items()}
        if "size" in props:
            self.size = (int(props["size"][0]), int(props["size"][1]))
        if "position" in props:
            self.position = (int(props["position"][0]), int(props["position"][1]))
        if self.remote_desktop and int(started.get("devices", 0)) & KEYBOARD:
            await self._warm_up()
        logger.info(
            "portal %s session started (%dx%d, %s)",
            "remote-desktop" if self.remote_desktop else "screen-cast",
            *self.size,
            "restore token given" if self.restored_from else "asked",
        )

    async def _cursor_option(self) -> dict[str, Any]:
        """SelectSources' ``cursor_mode``: the mode asked for if the portal offers it,
        else embedded (the pointer drawn into the frames, as on wlroots), else none
        named (the portal's default, usually hidden); ``self.cursor_mode`` says which."""
        wanted = self.cursor_mode
        self.cursor_mode = 0
        with contextlib.suppress(PortalUnavailable):
            modes = int(await _get_property(self._bus, SC, "AvailableCursorModes"))
            for mode in dict.fromkeys((wanted, CURSOR_EMBEDDED)):
                if modes & mode:
                    self.cursor_mode = mode
                    break
            if wanted == CURSOR_METADATA and self.cursor_mode != wanted:
                logger.info("the desktop portal offers no cursor metadata (modes %d)", modes)
        if not self.cursor_mode:
            return {}
        return {"cursor_mode": self._Variant("u", self.cursor_mode)}

    async def _warm_up(self) -> None:
        """As on GNOME (:mod:`enkaku.agent.gnome.mutter`): on a seat with no keyboard
        yet, the first keys of a session are lost; a Shift tap and a short wait first.
        Only then: a lone Shift toggles some Japanese input methods."""
        if await asyncio.to_thread(_seat_has_keyboard, self._wayland) is not False:
            return
        for state in (1, 0):
            await self._call_msg(
                RD, "NotifyKeyboardKeysym", "oa{sv}iu", [self.handle, {}, SHIFT_L, state]
            )
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

    async def _stop(self) -> None:
        bus = self._bus
        if bus is None:
            return
        if bus.connected and self.handle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._call_msg(SESSION, "Close", "", [], path=self.handle), 5
                )
        self._bus = None
        bus.disconnect()

    # -- blocking API ------------------------------------------------------------------

    def watch_closed(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (in the D-Bus thread) when the portal ends the session."""
        self._watchers.append(callback)
        if self.closed.is_set():
            callback()

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._watchers.remove(callback)

        return unwatch

    def notify(self, member: str, signature: str, body: list[Any]) -> None:
        """Call a ``Notify*`` method of RemoteDesktop on this session: ``signature`` and
        ``body`` are the arguments after the session handle and options. Each waits for
        the portal's answer before the next goes (unlike mutter's session, which takes
        posted calls in order): xdg-desktop-portal handles calls on threads of its own,
        and a burst of keys posted without waiting arrived out of order or not at all
        (seen with 1.16 and xdg-desktop-portal-gnome 43). The portal answers without
        waiting for the compositor, so a frozen desktop does not hold the keys here."""
        if self.closed.is_set():
            raise PortalUnavailable("the portal session has ended")
        self._submit(self._call_msg(RD, member, "oa{sv}" + signature, [self.handle, {}, *body]))

    def locate(self, x: int, y: int) -> tuple[str, int, int]:
        """As ``mutter.RemoteSession.locate``: the portal shares one stream, so the
        point in its pixels, clamped (the stream itself goes by its node, see
        ``PortalInput``)."""
        w, h = self.size
        return self.stream_path, min(max(x, 0), max(w - 1, 0)), min(max(y, 0), max(h - 1, 0))

    def open_pipewire(self) -> int:
        """A new connection to the PipeWire daemon that serves the stream (the portal's
        ``OpenPipeWireRemote``); the caller closes the descriptor."""
        if self.closed.is_set():
            raise PortalUnavailable("the portal session has ended")
        reply = self._submit(self._call_msg(SC, "OpenPipeWireRemote", "oa{sv}", [self.handle, {}]))
        return reply_fd(reply, "OpenPipeWireRemote", PortalUnavailable)

    _stop_thread_name = "portal-stop"

    def _registry(self) -> tuple[dict[Any, Any], threading.Lock]:
        return _sessions, _lock


_sessions: dict[str, PortalSession] = {}
_lock = threading.Lock()


def acquire(
    env: Mapping[str, str], config_dir: Path | None = None, metadata: bool = False
) -> PortalSession:
    """The process's portal session on this bus, started if needed (asking the
    customer unless a restore token is kept; ``metadata`` as for
    :class:`PortalSession`, for a session started here); give it back with
    :func:`release`."""
    address = bus_address(env)
    if address is None:
        raise PortalUnavailable("no D-Bus session bus ($DBUS_SESSION_BUS_ADDRESS)")
    with _lock:
        session = _sessions.get(address)
        if session is not None and session.closed.is_set():
            del _sessions[address]
            threading.Thread(target=session.stop, daemon=True).start()
            session = None
        if session is None:
            session = _sessions[address] = PortalSession(env, config_dir, metadata=metadata)
        session.users += 1
        session.cancel_stop()
        return session


def release(session: PortalSession, grace: float = GRACE) -> None:
    """One user fewer; the session ends ``grace`` seconds after its last user."""
    with _lock:
        session.users -= 1
        if session.users > 0:
            return
        if session.closed.is_set() or grace <= 0:
            for key, s in list(_sessions.items()):
                if s is session:
                    del _sessions[key]
    if session.closed.is_set() or grace <= 0:
        session.stop()
    else:
        session.schedule_stop(grace)


@atexit.register
def _stop_all() -> None:
    with _lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.stop()
