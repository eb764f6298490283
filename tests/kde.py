"""Start and stop a private headless KDE compositor (KWin 5.27) for tests; stopped by PID.

``kwin_wayland --virtual`` renders with OpenGL on Mesa's llvmpipe (no GPU needed) into
an output of its own, in a fresh runtime folder under /tmp with a D-Bus session bus,
``pipewire`` and ``wireplumber`` of its own (as tests/gnome.py does for mutter). With
``portal=True`` the desktop portal runs on that bus as on Plasma: the permission store,
``xdg-desktop-portal-kde`` (its dialogs are Qt Quick windows on the KWin; their QML
comes with plasma-workspace) and ``xdg-desktop-portal``.

Unlike sway and mutter, everything runs as the test process's user (root included):
KWin lets a client use its restricted protocols (``org_kde_kwin_fake_input``,
``zkde_screencast_unstable_v1``) only once it has read the client's executable from
``/proc/PID/exe``, which it cannot for a process of another user. The portal's backend
needs the screen-cast protocol (KWin grants it through the
``X-KDE-Wayland-Interfaces`` of the backend's desktop file), and the test's hand,
:class:`FakeInput`, the fake-input one (``KWIN_WAYLAND_NO_PERMISSION_CHECKS=1``: our
Python has no desktop file). The agent runs as the portal's user, as on a desktop.

Debian 12's kwin_wayland carries the file capability ``cap_sys_resource``; where the
process may not gain it (a container whose bounding set lacks it) the kernel refuses
to run the file at all ("Operation not permitted"). It is then started through the
dynamic loader, which ignores file capabilities, with ``KWIN_FORCE_OWN_QPA=1`` (KWin
loads its own Qt platform plugin only when the program's path ends in
``kwin_wayland``).

``KWin.screenshot()`` is the reference picture: KWin's own screenshot API
(``org.kde.KWin.ScreenShot2``, ``KWIN_SCREENSHOT_NO_PERMISSION_CHECKS=1``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pywayland.client import Display
from pywayland.protocol.wayland import WlRegistry
from pywayland.protocol_core import Argument, ArgumentType, Global, Interface, Proxy, Resource

from tests.gnome import _BUS_CONFIG, Processes, _has_names, _run, bus_listening

KWIN = "/usr/bin/kwin_wayland"
PORTAL_KDE = "/usr/lib/x86_64-linux-gnu/libexec/xdg-desktop-portal-kde"
PORTAL_TOOLS = (  # each started once the previous one owns its name
    ("/usr/libexec/xdg-permission-store", "org.freedesktop.impl.portal.PermissionStore"),
    (PORTAL_KDE, "org.freedesktop.impl.portal.desktop.kde"),
    ("/usr/libexec/xdg-desktop-portal", "org.freedesktop.portal.Desktop"),
)
LOADER = "/lib64/ld-linux-x86-64.so.2"
#: The QML the portal's dialogs import (Debian's xdg-desktop-portal-kde does not depend
#: on them; a Plasma desktop has them).
DIALOG_QML = Path("/usr/lib/x86_64-linux-gnu/qt5/qml/org/kde/plasma/workspace/dialogs")

#: Linux input codes (linux/input-event-codes.h), what fake input's keys and buttons are.
KEY_ENTER, BTN_LEFT = 28, 0x110
DIALOG_BG = np.array((0xEF, 0xF0, 0xF1), dtype=np.uint8)


def missing() -> str | None:
    """Why the KWin tests cannot run here (None when they can)."""
    if not os.path.exists(KWIN):
        return "kwin_wayland is not installed (scripts/bootstrap installs kwin-wayland)"
    for tool in ("pipewire", "wireplumber", "dbus-daemon"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/bootstrap)"
    return None


def portal_missing() -> str | None:
    """Why the KDE portal cannot run here (None when it can)."""
    for tool, _ in PORTAL_TOOLS:
        if not os.path.exists(tool):
            return f"{tool} is missing (scripts/bootstrap installs xdg-desktop-portal-kde)"
    if not DIALOG_QML.exists():
        return "the portal's dialogs need plasma-workspace's QML (scripts/bootstrap)"
    return None


# -- org_kde_kwin_fake_input (version 4): the test's hand ----------------------------


class OrgKdeKwinFakeInput(Interface):
    """KWin's fake input device (plasma-wayland-protocols, LGPL-2.1-or-later; only its
    wire shape is written here)."""

    name = "org_kde_kwin_fake_input"
    version = 4


class OrgKdeKwinFakeInputProxy(Proxy[OrgKdeKwinFakeInput]):
    interface = OrgKdeKwinFakeInput

    @OrgKdeKwinFakeInput.request(Argument(ArgumentType.String), Argument(ArgumentType.String))
    def authenticate(self, application: str, reason: str) -> None:
        self._marshal(0, application, reason)

    @OrgKdeKwinFakeInput.request(Argument(ArgumentType.Fixed), Argument(ArgumentType.Fixed))
    def pointer_motion(self, dx: float, dy: float) -> None:
        self._marshal(1, dx, dy)

    @OrgKdeKwinFakeInput.request(Argument(ArgumentType.Uint), Argument(ArgumentType.Uint))
    def button(self, button: int, state: int) -> None:
        self._marshal(2, button, state)

    # pywayland numbers requests in the order they are declared: the ones this hand
    # does not use are declared too, in the protocol's order.
    @OrgKdeKwinFakeInput.request(Argument(ArgumentType.Uint), Argument(ArgumentType.Fixed))
    def axis(self, axis: int, value: float) -> None:
        self._marshal(3, axis, value)

    @OrgKdeKwinFakeInput.request(
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Fixed),
        Argument(ArgumentType.Fixed),
        version=2,
    )
    def touch_down(self, touch: int, x: float, y: float) -> None:
        self._marshal(4, touch, x, y)

    @OrgKdeKwinFakeInput.request(
        Argument(ArgumentType.Uint),
        Argument(ArgumentType.Fixed),
        Argument(ArgumentType.Fixed),
        version=2,
    )
    def touch_motion(self, touch: int, x: float, y: float) -> None:
        self._marshal(5, touch, x, y)

    @OrgKdeKwinFakeInput.request(Argument(ArgumentType.Uint), version=2)
    def touch_up(self, touch: int) -> None:
        self._marshal(6, touch)

    @OrgKdeKwinFakeInput.request(version=2)
    def touch_cancel(self) -> None:
        self._marshal(7)

    @OrgKdeKwinFakeInput.request(version=2)
    def touch_frame(self) -> None:
        self._marshal(8)

    @OrgKdeKwinFakeInput.request(
        Argument(ArgumentType.Fixed), Argument(ArgumentType.Fixed), version=3
    )
    def pointer_motion_absolute(self, x: float, y: float) -> None:
        self._marshal(9, x, y)

    @OrgKdeKwinFakeInput.request(
        Argument(ArgumentType.Uint), Argument(ArgumentType.Uint), version=4
    )
    def keyboard_key(self, key: int, state: int) -> None:
        self._marshal(10, key, state)


class OrgKdeKwinFakeInputResource(Resource[OrgKdeKwinFakeInput]):
    interface = OrgKdeKwinFakeInput


OrgKdeKwinFakeInput._gen_c()
OrgKdeKwinFakeInput.proxy_class = OrgKdeKwinFakeInputProxy
OrgKdeKwinFakeInput.resource_class = OrgKdeKwinFakeInputResource
OrgKdeKwinFakeInput.global_class = type(
    "OrgKdeKwinFakeInputGlobal", (Global,), {"interface": OrgKdeKwinFakeInput}
)


class FakeInput:
    """Keys and clicks through KWin's fake input device (the test's hand: it answers the
    portal's dialogs and types into clients). KWin 5.27 grants its authentication at
    once."""

    def __init__(self, socket: str) -> None:
        self.display = Display(socket)
        self.display.connect()
        registry = self.display.get_registry()
        found: list[tuple[int, int]] = []

        def on_global(_reg: WlRegistry, name: int, interface: str, version: int) -> None:
            if interface == OrgKdeKwinFakeInput.name:
                found.append((name, version))

        registry.dispatcher["global"] = on_global
        self.display.roundtrip()
        if not found:
            self.display.disconnect()
            raise RuntimeError("KWin offers no org_kde_kwin_fake_input to this client")
        name, version = found[0]
        self.fake: OrgKdeKwinFakeInputProxy = registry.bind(
            name, OrgKdeKwinFakeInput, min(version, 4)
        )
        self.fake.authenticate("enkaku tests", "answers the portal's dialogs")
        self.display.roundtrip()

    def key(self, code: int) -> None:
        """Press and release a key (a Linux input code)."""
        for state in (1, 0):
            self.fake.keyboard_key(code, state)
            self.display.roundtrip()
            time.sleep(0.05)

    def move(self, x: int, y: int) -> None:
        self.fake.pointer_motion_absolute(float(x), float(y))
        self.display.roundtrip()

    def click(self, x: int, y: int) -> None:
        self.move(x, y)
        time.sleep(0.2)
        for state in (1, 0):
            self.fake.button(BTN_LEFT, state)
            self.display.roundtrip()
            time.sleep(0.05)

    def close(self) -> None:
        self.display.disconnect()

    def __enter__(self) -> FakeInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the session ------------------------------------------------------------------------


@dataclass
class KWin:
    runtime: Path  # XDG_RUNTIME_DIR (the PipeWire socket is here)
    socket: Path  # the Wayland socket
    bus: str  # DBUS_SESSION_BUS_ADDRESS
    work: Path  # the clients' working folder
    width: int
    height: int
    log: Path
    pids: dict[str, int] = field(default_factory=dict)
    dialogs: int = 0  # portal dialogs answered

    @property
    def env(self) -> dict[str, str]:
        """What the agent on this Plasma session sees."""
        return {
            "XDG_RUNTIME_DIR": str(self.runtime), "WAYLAND_DISPLAY": str(self.socket),
            "DBUS_SESSION_BUS_ADDRESS": self.bus, "XDG_CURRENT_DESKTOP": "KDE",
        }  # fmt: skip

    def screenshot(self) -> npt.NDArray[np.uint8]:
        """The screen now, (h, w, 3) RGB, through KWin's screenshot API."""
        return _run(_screenshot(self), 60)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def display(self) -> str:
        """Xwayland's X display (``xwayland=True``): KWin gives it to the programs it
        starts, and the one started here writes it down."""
        said = self.work / "display"
        deadline = time.monotonic() + 30
        while not (said.exists() and said.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("KWin started no Xwayland: " + self.tail())
            time.sleep(0.1)
        return said.read_text().strip()

    def dialog_shown(self, shot: npt.NDArray[np.uint8] | None = None) -> bool:
        """Whether a portal dialog is on the screen: Breeze's window colour (#eff0f1)
        over a large area (the desktop is black)."""
        shot = self.screenshot() if shot is None else shot
        return int((shot == DIALOG_BG).all(axis=2).sum()) > 20000

    def answer(self, hand: FakeInput, timeout: float = 30) -> None:
        """Wait for the portal's dialog and accept it: in the screen chooser the last
        card (the output; the cards before it are "New Virtual Output" and the like)
        is clicked first, then Enter presses the dialog's default button (Share)."""
        deadline = time.monotonic() + timeout
        while not self.dialog_shown():
            if time.monotonic() > deadline:
                raise AssertionError("the portal's dialog did not appear: " + self.tail())
            time.sleep(0.3)
        time.sleep(1)  # laid out and taking input
        cards = _cards(self.screenshot())
        if cards is not None:
            y, (x0, x1) = cards[0], cards[1][-1]
            hand.click((x0 + x1) // 2, y)
            time.sleep(0.5)
        hand.key(KEY_ENTER)
        while self.dialog_shown():
            if time.monotonic() > deadline:
                raise AssertionError("the portal's dialog stayed: " + self.tail())
            time.sleep(0.3)
        self.dialogs += 1


def _cards(shot: npt.NDArray[np.uint8]) -> tuple[int, list[tuple[int, int]]] | None:
    """The screen chooser's cards: the row crossing most of them and each card's white
    inside on it (x0, x1), left to right; None when fewer than two (no chooser)."""
    white = (shot == 255).all(axis=2)
    best: tuple[int, list[tuple[int, int]]] | None = None
    for y in range(0, shot.shape[0], 4):
        edges = np.diff(np.concatenate([[0], white[y].astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        runs = [(int(a), int(b) - 1) for a, b in zip(starts, ends, strict=True) if b - a > 100]
        if len(runs) >= 2 and (best is None or len(runs) > len(best[1])):
            best = (y, runs)
    return best


async def _screenshot(k: KWin) -> npt.NDArray[np.uint8]:
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    read, write = os.pipe()
    try:
        bus = await MessageBus(bus_address=k.bus, negotiate_unix_fd=True).connect()
        try:
            reply = await bus.call(Message(
                destination="org.kde.KWin", path="/org/kde/KWin/ScreenShot2",
                interface="org.kde.KWin.ScreenShot2", member="CaptureActiveScreen",
                signature="a{sv}h", body=[{}, 0], unix_fds=[write],
            ))  # fmt: skip
        finally:
            bus.disconnect()
        os.close(write)
        write = -1
        if reply is None or reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"KWin's screenshot failed: {reply and reply.body}")
        info = {key: value.value for key, value in reply.body[0].items()}
        chunks = []
        while chunk := await asyncio.to_thread(os.read, read, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
    w, h, stride = info["width"], info["height"], info["stride"]
    raw = np.frombuffer(b"".join(chunks), dtype=np.uint8)[: h * stride].reshape(h, stride)
    # QImage::Format_ARGB32 / RGB32 / ARGB32_Premultiplied (4, 5, 6): B, G, R, A in memory.
    if info.get("format") not in (4, 5, 6):
        raise RuntimeError(f"KWin's screenshot: unexpected format {info}")
    return raw[:, : w * 4].reshape(h, w, 4)[..., [2, 1, 0]].copy()


def _loader_needed() -> bool:
    """Whether kwin_wayland must go through the dynamic loader (see the module's doc)."""
    if not os.path.exists(LOADER):
        return False
    try:
        out = subprocess.run([KWIN, "--version"], capture_output=True, timeout=30)
    except PermissionError:
        return True
    return out.returncode != 0 and not out.stdout


@contextmanager
def headless_kwin(
    width: int = 1280, height: int = 720, portal: bool = False, xwayland: bool = False
) -> Iterator[KWin]:
    """Headless KWin (one virtual output ``width``x``height``) in a private D-Bus and
    PipeWire session, the desktop portal on it with ``portal``; yields once all are up.

    With ``xwayland`` KWin runs a rootless Xwayland (``KWin.display()``), for an xterm:
    foot 1.13, the Wayland terminal, died of SIGFPE on this KWin's virtual output
    (``dpi-aware=no`` did not help)."""
    for why in (missing(), portal_missing() if portal else None):
        if why is not None:
            raise RuntimeError(why)
    runtime = Path(tempfile.mkdtemp(prefix="enkaku-kwin-"))
    runtime.chmod(0o700)
    work = runtime / "work"
    work.mkdir()
    (runtime / "bus.conf").write_text(_BUS_CONFIG)
    say_display = runtime / "display.sh"
    say_display.write_text('#!/bin/sh\necho "$DISPLAY" > display\n')
    say_display.chmod(0o700)
    bus = f"unix:path={runtime / 'bus'}"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": str(runtime), "DBUS_SESSION_BUS_ADDRESS": bus,
        "XDG_CURRENT_DESKTOP": "KDE", "XDG_CONFIG_HOME": str(work / ".config"),
        "XDG_CACHE_HOME": str(work / ".cache"), "XDG_DATA_HOME": str(work / ".local"),
    }  # fmt: skip
    log_path = runtime / "session.log"
    k = KWin(runtime, runtime / "wayland-enkaku", bus, work, width, height, log_path)
    session = Processes("headless KWin", env, log_path, work, k.pids)
    start, wait = session.start, session.wait
    try:
        start("dbus-daemon", "dbus-daemon", f"--config-file={runtime / 'bus.conf'}",
              f"--address={bus}", "--nofork", "--nopidfile")  # fmt: skip
        wait("dbus-daemon", lambda: bus_listening(runtime / "bus"))
        start("pipewire", "pipewire")
        wait("pipewire", (runtime / "pipewire-0").exists)
        start("wireplumber", "wireplumber")
        kwin = [LOADER, KWIN] if _loader_needed() else [KWIN]
        start(
            "kwin_wayland", *kwin, "--virtual", f"--width={width}", f"--height={height}",
            "--no-lockscreen", f"--socket={k.socket.name}",
            *(["--xwayland", str(say_display)] if xwayland else []),
            KWIN_FORCE_OWN_QPA="1", KWIN_WAYLAND_NO_PERMISSION_CHECKS="1",
            KWIN_SCREENSHOT_NO_PERMISSION_CHECKS="1",
        )  # fmt: skip
        wait("kwin_wayland", lambda: k.socket.exists() and _has_names(bus, "org.kde.KWin"))
        if portal:
            for tool, name in PORTAL_TOOLS:
                extra = {"WAYLAND_DISPLAY": k.socket.name, "QT_QPA_PLATFORM": "wayland"}
                args = [tool, "--verbose"] if tool.endswith("/xdg-desktop-portal") else [tool]
                start(os.path.basename(tool), *args, **extra)
                wait(name, functools.partial(_has_names, bus, name))
        yield k
    finally:
        session.stop()
        with suppress(OSError):
            shutil.rmtree(runtime, ignore_errors=True)
