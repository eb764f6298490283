"""The desktop portal (xdg-desktop-portal + xdg-desktop-portal-gnome) on a private
headless mutter (tests/gnome.py), and a hand that answers its permission dialog.

``xdg-permission-store``, ``xdg-desktop-portal-gnome`` and ``xdg-desktop-portal`` are
started on the session's own bus (no D-Bus activation: the private bus has no service
folders), stopped by PID. They run as the test process's user, like the agent: the
portal identifies its caller through ``/proc/PID/root``, which it cannot open for a
process of another user ("Portal operation not allowed: Unable to open
/proc/N/root"); on a desktop both are the session's user. mutter and foot run as the
fixture's compositor user, as in tests/gnome.py.

The dialog (GTK 4, a window on the headless mutter) is answered through mutter's
remote-desktop API in a session of the fixture's own: the pointer clicks the monitor
row (screen cast) or the "Allow remote interaction" switch (remote desktop), then
"Share". The button is found by its colour, the row to click as the white card below
it (the monitor's row; the switch's row, the switch at its right end), else by its
place relative to the button in GNOME 43's dialog.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.gnome import Mutter, _call, _has_names, _run, bus_listening, headless_mutter
from tests.xdisplay import stop

PORTAL_TOOLS = (  # each started once the previous one owns its name
    ("/usr/libexec/xdg-permission-store", "org.freedesktop.impl.portal.PermissionStore"),
    ("/usr/libexec/xdg-desktop-portal-gnome", "org.freedesktop.impl.portal.desktop.gnome"),
    ("/usr/libexec/xdg-desktop-portal", "org.freedesktop.portal.Desktop"),
)
#: GNOME 43's dialogs, relative to the centre of the "Share" button.
MONITOR_ROW = (-212, 153)  # screen cast: the (only) monitor's row
INTERACTION_SWITCH = (-22, 199)  # remote desktop: "Allow remote interaction"
SWITCH_FROM_RIGHT = 38  # the switch's centre from its row's right edge
BTN_LEFT = 0x110


def _white_card(shot: npt.NDArray[np.uint8], below: int) -> tuple[int, int, int, int] | None:
    """The first white card (a list row of the dialog) under row ``below``: x0, y0,
    x1, y1 (inclusive)."""
    white = (shot == 255).all(axis=2)
    rows = np.flatnonzero(white.sum(axis=1) > 200)
    rows = rows[rows > below]
    if rows.size == 0:
        return None
    end = int(np.flatnonzero(np.diff(rows) > 1)[0]) + 1 if (np.diff(rows) > 1).any() else rows.size
    run = rows[:end]
    cols = np.flatnonzero(white[run].sum(axis=0) > run.size // 2)
    if run.size < 20 or cols.size < 100:
        return None
    return int(cols[0]), int(run[0]), int(cols[-1]), int(run[-1])


def card_centre(card: tuple[int, int, int, int]) -> tuple[int, int]:
    return (card[0] + card[2]) // 2, (card[1] + card[3]) // 2


@dataclass
class Portal:
    mutter: Mutter
    log: Path
    pids: dict[str, int] = field(default_factory=dict)
    dialogs: int = 0  # dialogs answered

    @property
    def env(self) -> dict[str, str]:
        return self.mutter.env

    def share_button(
        self, shot: npt.NDArray[np.uint8] | None = None
    ) -> tuple[int, int, bool] | None:
        """Centre of the dialog's "Share" button and whether it is enabled; None when
        no dialog is shown."""
        shot = self.mutter.screenshot() if shot is None else shot
        a = shot.astype(np.int16)
        blue = (a[..., 2] > 200) & (a[..., 2] - a[..., 0] > 60)
        ys, xs = np.nonzero(blue)
        if ys.size < 500:
            return None
        top = ys.min()
        band = (ys < top + 40) & (xs > xs.max() - 120)
        if band.sum() < 500:
            return None
        x = int(xs[band].min() + xs[band].max()) // 2
        y = int(ys[band].min() + ys[band].max()) // 2
        return x, y, bool(a[y, x, 0] < 100)

    def wait_dialog(self, timeout: float = 30) -> tuple[int, int, bool]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (found := self.share_button()) is not None:
                return found
            time.sleep(0.3)
        raise AssertionError("the portal's dialog did not appear: " + self.tail())

    def answer(self, remote: bool) -> None:
        """Wait for the dialog and press "Share" (after choosing the monitor, or after
        allowing remote interaction)."""
        x, y, _ = self.wait_dialog()
        time.sleep(0.5)  # the dialog is laid out and takes input
        card = _white_card(self.mutter.screenshot(), y + 20)
        if card is None:
            dx, dy = INTERACTION_SWITCH if remote else MONITOR_ROW
            target = (x + dx, y + dy)
        else:
            x0, y0, x1, y1 = card
            target = (x1 - SWITCH_FROM_RIGHT, (y0 + y1) // 2) if remote else card_centre(card)
        self.click([target])
        deadline = time.monotonic() + 10
        while not (found := self.share_button()) or not found[2]:
            if time.monotonic() > deadline:
                raise AssertionError("Share stayed disabled: " + self.tail())
            time.sleep(0.2)
        self.click([(found[0], found[1])])
        self.dialogs += 1

    def click(self, points: list[tuple[int, int]]) -> None:
        _run(_click(self.mutter, points), 30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:]


async def _click(m: Mutter, points: list[tuple[int, int]]) -> None:
    import asyncio

    from dbus_fast import MessageType, Variant
    from dbus_fast.aio import MessageBus

    rd, sc = "org.gnome.Mutter.RemoteDesktop", "org.gnome.Mutter.ScreenCast"
    bus = await MessageBus(bus_address=m.bus).connect()
    try:
        (session,) = await _call(bus, rd, "/org/gnome/Mutter/RemoteDesktop", rd, "CreateSession")
        (sid,) = await _call(bus, rd, session, "org.freedesktop.DBus.Properties", "Get", "ss",
                             [rd + ".Session", "SessionId"])  # fmt: skip
        link = {"remote-desktop-session-id": Variant("s", sid.value)}
        (sc_session,) = await _call(bus, sc, "/org/gnome/Mutter/ScreenCast", sc, "CreateSession",
                                    "a{sv}", [link])  # fmt: skip
        (stream,) = await _call(bus, sc, sc_session, sc + ".Session", "RecordMonitor", "sa{sv}",
                                ["", {}])  # fmt: skip
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_message(msg: object) -> None:
            if (getattr(msg, "message_type", None) == MessageType.SIGNAL
                    and getattr(msg, "member", "") == "PipeWireStreamAdded"
                    and not started.done()):  # fmt: skip
                started.set_result(None)

        bus.add_message_handler(on_message)
        await _call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                    "AddMatch", "s", [f"type='signal',path='{stream}'"])  # fmt: skip
        await _call(bus, rd, session, rd + ".Session", "Start")
        await started
        s = rd + ".Session"
        try:
            for x, y in points:
                await _call(bus, rd, session, s, "NotifyPointerMotionAbsolute", "sdd",
                            [stream, float(x), float(y)])  # fmt: skip
                await asyncio.sleep(0.2)
                for down in (True, False):
                    await _call(bus, rd, session, s, "NotifyPointerButton", "ib", [BTN_LEFT, down])
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.4)
        finally:
            await _call(bus, rd, session, s, "Stop")
    finally:
        bus.disconnect()


@contextmanager
def headless_portal(width: int = 1280, height: int = 720) -> Iterator[Portal]:
    """Headless mutter with foot (tests/gnome.py) and the desktop portal on its bus."""
    for tool, _ in PORTAL_TOOLS:
        if not os.path.exists(tool):
            raise RuntimeError(
                f"{tool} is missing (apt-get install xdg-desktop-portal xdg-desktop-portal-gnome)"
            )
    with headless_mutter(width, height) as m:
        home = m.runtime / "portal-home"  # the permission store keeps the grants here
        home.mkdir()
        log_path = m.runtime / "portal.log"
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(m.runtime), "DBUS_SESSION_BUS_ADDRESS": m.bus,
            "WAYLAND_DISPLAY": m.socket.name, "XDG_CURRENT_DESKTOP": "GNOME",
            "GSETTINGS_BACKEND": "memory", "GTK_A11Y": "none",
        }  # fmt: skip
        portal = Portal(m, log_path)
        procs: list[subprocess.Popen[bytes]] = []
        with log_path.open("wb") as log:
            try:
                for tool, name in PORTAL_TOOLS:
                    args = [tool] if tool.endswith("permission-store") else [tool, "--verbose"]
                    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
                    procs.append(proc)
                    portal.pids[os.path.basename(tool)] = proc.pid
                    deadline = time.monotonic() + 60
                    while not _has_names(m.bus, name):
                        dead = [p.args for p in procs if p.poll() is not None]
                        if dead or time.monotonic() > deadline:
                            log.flush()
                            raise RuntimeError(
                                f"portal: {name} not up ({dead or 'timeout'}): {portal.tail()}"
                            )
                        time.sleep(0.2)
                yield portal
            finally:
                for proc in reversed(procs):
                    stop(proc)
                shutil.rmtree(home, ignore_errors=True)


# -- a fake portal on a private bus ----------------------------------------------------


@dataclass
class FakePortal:
    """A small stand-in for xdg-desktop-portal (``org.freedesktop.portal.Desktop``,
    ScreenCast + RemoteDesktop) on a private ``dbus-daemon``: it records each call with
    its options, answers through ``Request`` objects and hands out restore tokens. A
    start without a token it issued counts as a dialog shown."""

    bus: str
    rd_version: int = 2
    #: ScreenCast's ``AvailableCursorModes`` (hidden 1, embedded 2, metadata 4).
    cursor_modes: int = 7
    #: Response code of the next ``Start`` (0 success, 1 cancelled by the user).
    start_response: int = 0
    calls: list[tuple[str, list[Any], dict[str, Any]]] = field(default_factory=list)
    dialogs: int = 0
    issued: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"DBUS_SESSION_BUS_ADDRESS": self.bus}

    def named(self, member: str) -> list[tuple[list[Any], dict[str, Any]]]:
        return [(args, opts) for m, args, opts in self.calls if m == member]


def _unwrap(options: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in options.items()}


async def _serve_fake(fake: FakePortal, ready: Any, done: Any) -> None:
    import asyncio
    import socket

    from dbus_fast import Message, MessageType, Variant
    from dbus_fast.aio import MessageBus

    path = "/org/freedesktop/portal/desktop"
    rd, sc = "org.freedesktop.portal.RemoteDesktop", "org.freedesktop.portal.ScreenCast"
    bus = await MessageBus(bus_address=fake.bus, negotiate_unix_fd=True).connect()
    await bus.request_name("org.freedesktop.portal.Desktop")
    loop = asyncio.get_running_loop()
    props = {
        (rd, "version"): Variant("u", fake.rd_version), (sc, "version"): Variant("u", 4),
        (rd, "AvailableDeviceTypes"): Variant("u", 7),
        (sc, "AvailableSourceTypes"): Variant("u", 3),
    }  # fmt: skip

    def respond(msg: Any, token: str, code: int, results: dict[str, Any]) -> Message:
        sender = msg.sender.lstrip(":").replace(".", "_")
        request = f"{path}/request/{sender}/{token}"
        signal = Message.new_signal(request, "org.freedesktop.portal.Request", "Response",
                                    "ua{sv}", [code, results])  # fmt: skip
        loop.call_later(0.02, bus.send, signal)
        return Message.new_method_return(msg, "o", [request])

    def handler(msg: Any) -> Message | bool | None:
        if msg.message_type != MessageType.METHOD_CALL or msg.sender == bus.unique_name:
            return None
        member, body = msg.member, list(msg.body)
        if msg.interface == "org.freedesktop.DBus.Properties" and member == "Get":
            if (body[0], body[1]) == (sc, "AvailableCursorModes"):
                return Message.new_method_return(msg, "v", [Variant("u", fake.cursor_modes)])
            if (key := (body[0], body[1])) in props:
                return Message.new_method_return(msg, "v", [props[key]])
            return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty", "no")
        if msg.interface not in (rd, sc, "org.freedesktop.portal.Session"):
            return None
        opts: dict[str, Any] = {}
        args = body
        for index, prefix in ((0, "a{sv}"), (1, "oa{sv}"), (2, "osa{sv}")):
            if msg.signature.startswith(prefix):
                opts, args = _unwrap(body[index]), body[:index] + body[index + 1 :]
        fake.calls.append((member, args, opts))
        token = opts.get("handle_token", "")
        if member == "CreateSession":
            sender = msg.sender.lstrip(":").replace(".", "_")
            handle = f"{path}/session/{sender}/{opts['session_handle_token']}"
            return respond(msg, token, 0, {"session_handle": Variant("s", handle)})
        if member in ("SelectDevices", "SelectSources"):
            return respond(msg, token, 0, {})
        if member == "Start":
            code, fake.start_response = fake.start_response, 0
            if code != 0:
                return respond(msg, token, code, {})
            restore = [o for m, _, o in fake.calls if m in ("SelectDevices", "SelectSources")]
            given = next((o["restore_token"] for o in restore if "restore_token" in o), None)
            if given not in fake.issued:
                fake.dialogs += 1
            results = {
                "devices": Variant("u", 3),
                "streams": Variant("a(ua{sv})", [[42, {"size": Variant("(ii)", [640, 480]),
                                                      "position": Variant("(ii)", [0, 0])}]]),
            }  # fmt: skip
            if any("persist_mode" in o for o in restore[-2:]):
                fake.issued.append(f"tok-{len(fake.issued) + 1}")
                results["restore_token"] = Variant("s", fake.issued[-1])
            return respond(msg, token, 0, results)
        if member == "OpenPipeWireRemote":
            ours, theirs = socket.socketpair()
            ours.close()
            reply = Message.new_method_return(msg, "h", [0], [theirs.detach()])
            return reply
        return Message.new_method_return(msg)  # Notify*, Session.Close

    bus.add_message_handler(handler)
    loop.call_soon_threadsafe(ready.set)
    await asyncio.to_thread(done.wait)
    bus.disconnect()


@contextmanager
def fake_portal(rd_version: int = 2) -> Iterator[FakePortal]:
    """A private dbus-daemon with :class:`FakePortal` on it; both stopped at the end."""
    import asyncio
    import tempfile
    import threading

    from tests.gnome import _BUS_CONFIG

    folder = Path(tempfile.mkdtemp(prefix="enkaku-portal-"))
    (folder / "bus.conf").write_text(_BUS_CONFIG)
    address = f"unix:path={folder / 'bus'}"
    daemon = subprocess.Popen(
        ["dbus-daemon", f"--config-file={folder / 'bus.conf'}", f"--address={address}",
         "--nofork", "--nopidfile"],
    )  # fmt: skip
    fake = FakePortal(address, rd_version)
    ready, done = threading.Event(), threading.Event()
    thread = threading.Thread(target=asyncio.run, args=(_serve_fake(fake, ready, done),),
                              daemon=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not bus_listening(folder / "bus"):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dbus-daemon did not start")
            time.sleep(0.05)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake portal did not start")
        yield fake
    finally:
        done.set()
        thread.join(5)
        stop(daemon)
        shutil.rmtree(folder, ignore_errors=True)
