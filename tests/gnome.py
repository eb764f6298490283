"""Start and stop a private headless GNOME compositor (mutter) with foot; stopped by PID.

Like the sway fixture (tests/wayland.py): under root everything runs as the system user
``enkaku-wl`` in a fresh runtime folder under /tmp. The session has its own D-Bus
daemon (``dbus-daemon`` with a config that also lets the test process, root, connect:
on a desktop the agent is the session's own user), ``pipewire`` and ``wireplumber``,
then ``mutter --headless --wayland --no-x11 --virtual-monitor WxH`` and ``foot``.

``Mutter.screenshot()`` is the reference picture: an independent screen-cast session of
its own on the same monitor, one frame read by ``gst-launch-1.0``, with the pointer drawn
into it as in the agent's stream (cursor mode "embedded"; ``pointer=False``: hidden).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.e2e.harness import wait_for
from tests.wayland import _user
from tests.xdisplay import stop

#: foot's background in the fixture: how the window is found on the screen.
FOOT_BG = (0x10, 0x20, 0x30)

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

#: systemd-localed's keyboard settings (``org.freedesktop.locale1`` on the system bus),
#: served on the session's own system bus: mutter (its default plugin) reads the layout
#: there once at start-up, as ``localectl set-x11-keymap`` leaves it on a real machine.
_LOCALED = """
import asyncio, sys
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property

class Locale(ServiceInterface):
    def __init__(self, layout, variant):
        super().__init__("org.freedesktop.locale1")
        self.layout, self.variant = layout, variant
    @dbus_property(access=PropertyAccess.READ)
    def X11Layout(self) -> "s": return self.layout
    @dbus_property(access=PropertyAccess.READ)
    def X11Variant(self) -> "s": return self.variant
    @dbus_property(access=PropertyAccess.READ)
    def X11Options(self) -> "s": return ""
    @dbus_property(access=PropertyAccess.READ)
    def X11Model(self) -> "s": return "pc105"

async def main():
    bus = await MessageBus(bus_address=sys.argv[1]).connect()
    bus.export("/org/freedesktop/locale1", Locale(sys.argv[2], sys.argv[3]))
    await bus.request_name("org.freedesktop.locale1")
    await asyncio.Event().wait()

asyncio.run(main())
"""


@dataclass
class Mutter:
    runtime: Path  # XDG_RUNTIME_DIR (the PipeWire socket is here)
    socket: Path  # the Wayland socket
    bus: str  # DBUS_SESSION_BUS_ADDRESS
    work: Path  # foot's shell starts here; writable by the compositor's user
    width: int
    height: int
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What the agent on this GNOME session sees."""
        return {
            "XDG_RUNTIME_DIR": str(self.runtime), "WAYLAND_DISPLAY": str(self.socket),
            "DBUS_SESSION_BUS_ADDRESS": self.bus, "XDG_CURRENT_DESKTOP": "GNOME",
        }  # fmt: skip

    def screenshot(self, connector: str = "", pointer: bool = True) -> npt.NDArray[np.uint8]:
        """The monitor now (the primary one, or the one of ``connector``, e.g.
        ``Meta-1``), (h, w, 3) RGB, through a screen-cast session of its own; the
        pointer drawn in it (as in the agent's capture) unless ``pointer`` is False."""
        return _run(_screenshot(self, connector, pointer), 60)


def _run(coro: Any, timeout: float) -> Any:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, timeout)).result()


async def _call(bus: Any, dest: str, path: str, iface: str, member: str, sig: str = "",
                body: list[Any] | None = None) -> list[Any]:  # fmt: skip
    from dbus_fast import Message, MessageType

    reply = await bus.call(Message(destination=dest, path=path, interface=iface,
                                   member=member, signature=sig, body=body or []))  # fmt: skip
    if reply.message_type == MessageType.ERROR:
        raise RuntimeError(f"{member}: {reply.error_name} {reply.body}")
    return list(reply.body)


async def cast_stream(
    bus: Any, method: str, signature: str, args: list[Any]
) -> tuple[str, str, int]:
    """A screen-cast session on mutter's ``bus`` recording with ``method``
    (``RecordMonitor``, ``RecordVirtual``) and ``args``, started: its session and stream
    paths and the stream's PipeWire node."""
    from dbus_fast import MessageType

    sc = "org.gnome.Mutter.ScreenCast"
    (session,) = await _call(bus, sc, "/org/gnome/Mutter/ScreenCast", sc, "CreateSession",
                             "a{sv}", [{}])  # fmt: skip
    (stream,) = await _call(bus, sc, session, sc + ".Session", method, signature, args)
    node: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_message(msg: Any) -> None:
        if (msg.message_type == MessageType.SIGNAL and msg.path == stream
                and msg.member == "PipeWireStreamAdded" and not node.done()):  # fmt: skip
            node.set_result(int(msg.body[0]))

    bus.add_message_handler(on_message)
    await _call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                "AddMatch", "s", [f"type='signal',path='{stream}'"])  # fmt: skip
    await _call(bus, sc, session, sc + ".Session", "Start")
    return session, stream, await node


async def _screenshot(m: Mutter, connector: str = "", pointer: bool = True
                      ) -> npt.NDArray[np.uint8]:  # fmt: skip
    from dbus_fast import Variant
    from dbus_fast.aio import MessageBus

    sc = "org.gnome.Mutter.ScreenCast"
    bus = await MessageBus(bus_address=m.bus).connect()
    try:
        mode = Variant("u", 1 if pointer else 0)  # cursor mode: embedded or hidden
        session, stream, node = await cast_stream(
            bus, "RecordMonitor", "sa{sv}", [connector, {"cursor-mode": mode}]
        )
        (params,) = await _call(bus, sc, stream, "org.freedesktop.DBus.Properties", "Get", "ss",
                                [sc + ".Stream", "Parameters"])  # fmt: skip
        width, height = params.value["size"].value  # the monitor may have turned
        try:
            proc = await asyncio.create_subprocess_exec(
                "gst-launch-1.0", "-q", "pipewiresrc", f"path={node}", "num-buffers=1",
                "!", "videoconvert", "!", "video/x-raw,format=RGB", "!", "fdsink",
                env={**os.environ, "XDG_RUNTIME_DIR": str(m.runtime)},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
        finally:
            await _call(bus, sc, session, sc + ".Session", "Stop")
        if proc.returncode != 0 or len(out) != width * height * 3:
            raise RuntimeError(f"gst-launch-1.0 failed ({proc.returncode}): {err[-500:]!r}")
        return np.frombuffer(out, dtype=np.uint8).reshape(height, width, 3)
    finally:
        bus.disconnect()


def _has_names(bus: str, *names: str) -> bool:
    """Every one of ``names`` has an owner on the bus (False when the bus does not answer)."""

    async def check() -> bool:
        from dbus_fast.aio import MessageBus

        conn = await MessageBus(bus_address=bus).connect()
        try:
            for name in names:
                (has,) = await _call(
                    conn, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                    "org.freedesktop.DBus", "NameHasOwner", "s", [name],
                )  # fmt: skip
                if not has:
                    return False
            return True
        finally:
            conn.disconnect()

    try:
        return bool(_run(check(), 10))
    except Exception:
        return False


def _names_up(bus: str) -> bool:
    return _has_names(bus, "org.gnome.Mutter.RemoteDesktop", "org.gnome.Mutter.ScreenCast")


def _foot_ready(m: Mutter) -> bool:
    """foot's window is shown and its shell drew the prompt: keys sent before that
    are lost."""
    shot = m.screenshot()
    bg = (shot == np.array(FOOT_BG, dtype=np.uint8)).all(axis=2)
    rows, cols = np.flatnonzero(bg.any(axis=1)), np.flatnonzero(bg.any(axis=0))
    if rows.size < 50 or cols.size < 50:
        return False
    top = shot[rows[0] : rows[0] + 14, cols[0] : cols[-1] + 1]
    return bool((top != np.array(FOOT_BG, dtype=np.uint8)).any())


def bus_listening(path: Path) -> bool:
    """Whether a dbus-daemon accepts connections on ``path``. Not the file's existence:
    the daemon binds (the file appears) before it listens, and a client that connects in
    between is refused (seen under load: the portal fake's bus)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


class Processes:
    """The processes of a test session (a compositor and its D-Bus, PipeWire, portal):
    started into one log with one environment, waited for, stopped by PID in the
    reverse order. ``prefix`` runs each under another user (``setpriv``); ``pids``
    (the session object's) gets each one's PID by name."""

    def __init__(
        self, title: str, env: dict[str, str], log: Path, cwd: Path,
        pids: dict[str, int], prefix: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.title, self.env, self.log_path, self.cwd = title, env, log, cwd
        self.pids, self.prefix = pids, list(prefix)
        self.log = log.open("wb")
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str, **extra: str) -> None:
        proc = subprocess.Popen(
            [*self.prefix, *args], env={**self.env, **extra}, stdout=self.log,
            stderr=subprocess.STDOUT, cwd=self.cwd,
        )  # fmt: skip
        self.adopt(name, proc)

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """A process started otherwise, stopped with the rest."""
        self.procs.append(proc)
        self.pids[name] = proc.pid

    def wait(self, what: str, ready: Callable[[], bool], timeout: float = 60) -> None:
        """Until ``ready()``; an error with the log's end if a process ended first."""
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.log.flush()
                raise RuntimeError(
                    f"{self.title}: {what} not ready ({dead or 'timeout'}): "
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            time.sleep(0.1)

    def died(self) -> list[tuple[Any, int | None]]:
        """The processes that ended before they were stopped (and how)."""
        return [(p.args, p.returncode) for p in self.procs if p.poll() is not None]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        self.log.close()


@contextmanager
def headless_mutter(
    width: int = 1280, height: int = 720, foot: bool = True,
    more_monitors: Sequence[tuple[int, int]] = (), layout: str | None = None,
) -> Iterator[Mutter]:  # fmt: skip
    """Headless mutter (virtual monitor ``width``x``height``, then one more for each of
    ``more_monitors``; no XWayland) in a private D-Bus and PipeWire session, with a foot
    terminal running /bin/sh in ``Mutter.work``; yields once foot's prompt is shown.

    ``layout`` (XKB ``layout`` or ``layout(variant)``, e.g. ``jp``) is the keyboard
    layout mutter starts with, read from ``org.freedesktop.locale1`` on a system bus of
    the session's own (``_LOCALED``); without it mutter keeps its default, US.

    If a process of the session (mutter, PipeWire, ...) ended before the fixture stopped
    it, the session's log (every process's output) and any core dump are copied to
    ``LOG_DIR`` and the place is printed: a crash leaves its evidence."""
    for tool in ("mutter", "pipewire", "wireplumber", "dbus-daemon", "gst-launch-1.0", "foot"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"{tool} is not installed (apt-get install mutter pipewire wireplumber "
                "gstreamer1.0-pipewire gstreamer1.0-tools dbus foot)"
            )
    ids = _user()
    runtime = Path(tempfile.mkdtemp(prefix="enkaku-mutter-"))
    work = runtime / "work"
    work.mkdir()
    (runtime / "bus.conf").write_text(_BUS_CONFIG)
    (runtime / "foot.ini").write_text("[colors]\nbackground={:02x}{:02x}{:02x}\n".format(*FOOT_BG))
    if ids is not None:
        for path in (runtime, work):
            os.chown(path, *ids)
    runtime.chmod(0o700)
    bus = f"unix:path={runtime / 'bus'}"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "SHELL": "/bin/sh",
        "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": str(runtime), "PS1": "$ ",
        "DBUS_SESSION_BUS_ADDRESS": bus, "GSETTINGS_BACKEND": "memory",
    }  # fmt: skip
    prefix: list[str] = []
    if ids is not None:
        prefix = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups",
                  "--pdeathsig", "TERM"]  # fmt: skip
    # Core dumps of any size (the default limit is often 0), before the user changes.
    core = ["prlimit", "--core=unlimited", "--"] if shutil.which("prlimit") else []
    m = Mutter(runtime, runtime / "wayland-enkaku", bus, work, width, height)
    # In the runtime folder with core dumps allowed: a compositor that crashes leaves its
    # core there (kept by ``_keep_log``, with the session's log).
    session = Processes("headless GNOME", env, runtime / "session.log", runtime, m.pids,
                        [*core, *prefix])  # fmt: skip
    start, wait = session.start, session.wait
    try:
        start("dbus-daemon", "dbus-daemon", f"--config-file={runtime / 'bus.conf'}",
              f"--address={bus}", "--nofork", "--nopidfile")  # fmt: skip
        wait("dbus-daemon", lambda: bus_listening(runtime / "bus"))
        if layout is not None:
            system_bus = f"unix:path={runtime / 'system_bus'}"
            start("system-bus", "dbus-daemon", f"--config-file={runtime / 'bus.conf'}",
                  f"--address={system_bus}", "--nofork", "--nopidfile")  # fmt: skip
            wait("the system bus", lambda: bus_listening(runtime / "system_bus"))
            name, _, variant = layout.rstrip(")").partition("(")
            localed = subprocess.Popen([sys.executable, "-c", _LOCALED, system_bus, name, variant],
                                       stdout=session.log, stderr=subprocess.STDOUT)  # fmt: skip
            session.adopt("localed", localed)
            wait("locale1", lambda: _has_names(system_bus, "org.freedesktop.locale1"))
            env["DBUS_SYSTEM_BUS_ADDRESS"] = system_bus
        start("pipewire", "pipewire")
        wait("pipewire", (runtime / "pipewire-0").exists)
        start("wireplumber", "wireplumber")
        start(
            "mutter", "mutter", "--headless", "--wayland", "--no-x11",
            f"--virtual-monitor={width}x{height}",
            *(f"--virtual-monitor={w}x{h}" for w, h in more_monitors),
            "--wayland-display=wayland-enkaku",
        )  # fmt: skip
        wait("mutter", lambda: m.socket.exists() and _names_up(bus))
        if foot:
            start("foot", "foot", f"--config={runtime / 'foot.ini'}",
                  f"--working-directory={work}", "--", "/bin/sh",
                  WAYLAND_DISPLAY=m.socket.name)  # fmt: skip
            wait("foot", lambda: _foot_ready(m))
        yield m
    finally:
        died = session.died()
        session.stop()
        if died or os.environ.get("ENKAKU_KEEP_GNOME_LOGS"):
            _keep_log(runtime, died)
        with suppress(OSError):
            shutil.rmtree(runtime, ignore_errors=True)


#: Where the session's log (and any core dump) is kept when one of its processes ended
#: before the fixture stopped it (always with ``ENKAKU_KEEP_GNOME_LOGS=1``).
LOG_DIR = Path(os.environ.get("ENKAKU_TEST_LOGS", tempfile.gettempdir())) / "enkaku-gnome-logs"


def _keep_log(runtime: Path, died: list[tuple[Any, int | None]]) -> None:
    """Copy the session's log and core files out of ``runtime`` before it is removed;
    say where (and which process ended how: a negative code is the signal) on stderr."""
    with suppress(OSError):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        keep = Path(tempfile.mkdtemp(prefix=runtime.name + "-", dir=LOG_DIR))
        (keep / "died.txt").write_text("".join(f"{code} {args}\n" for args, code in died))
        for path in runtime.iterdir():
            if path.name == "session.log" or path.name.startswith("core"):
                shutil.copy(path, keep / path.name)
        if died:
            print(f"headless GNOME: {died} ended early; log kept in {keep}", file=sys.stderr)


def _plain_spot(
    shot: npt.NDArray[np.uint8], away: tuple[int, int] | None = None
) -> tuple[int, int]:
    """A place on the plain background (no window, no pointer): the box around it,
    where the pointer is drawn when it is there, is of about one colour (a desktop's
    background may be a dithered gradient)."""
    h, w = shot.shape[:2]
    for y in range(h - 80, 40, -40):
        for x in range(w - 80, 40, -40):
            if away is not None and abs(x - away[0]) < 100 and abs(y - away[1]) < 100:
                continue
            box = shot[y - 16 : y + 48, x - 16 : x + 48]
            if (np.abs(box.astype(np.int16) - box[0, 0]) <= 12).all():
                return x, y
    raise AssertionError("no plain background on the screen")


def _pointer_at(frame: npt.NDArray[np.uint8], x: int, y: int,
                plain: npt.NDArray[np.uint8]) -> bool:  # fmt: skip
    """Pixels at and down-right of (x, y) (an arrow's hot spot is its tip) differ
    clearly from the background there (``plain``: the screen without the pointer)."""
    box = np.s_[y - 2 : y + 24, x - 2 : x + 24]
    return bool((np.abs(frame[box].astype(np.int16) - plain[box]) > 32).any())


def pointer_follows(cap: Any, move: Callable[[int, int], None],
                    screenshot: Callable[..., npt.NDArray[np.uint8]]) -> None:  # fmt: skip
    """The customer's pointer, moved by ``move(x, y)`` to two places on the plain
    background, is drawn in ``cap``'s frames at each (and nothing is left at the
    first), the capture equals the reference with the pointer; a still pointer then
    brings no frame at all."""

    def now() -> npt.NDArray[np.uint8]:
        return cap.grab()[..., [2, 1, 0]]  # BGRx -> RGB

    plain = screenshot(pointer=False)
    a = _plain_spot(plain)
    b = _plain_spot(plain, away=a)
    move(*a)
    wait_for(lambda: _pointer_at(now(), *a, plain), 30, "the pointer drawn at its first place")
    wait_for(lambda: np.array_equal(now(), screenshot()), 30, "capture == the reference")
    cap.changed_regions()
    before = cap.frames
    move(*b)  # a move alone: a frame with the pointer at its new place
    wait_for(lambda: _pointer_at(now(), *b, plain), 30, "the pointer drawn at its second place")
    wait_for(lambda: not _pointer_at(now(), *a, plain), 30, "nothing left at the first place")
    assert cap.frames > before
    regions = cap.changed_regions()
    h, w = plain.shape[:2]
    assert regions and all(r.w * r.h < w * h // 4 for r in regions)  # the two places only
    wait_for(lambda: np.array_equal(now(), screenshot()), 30, "capture == the reference")
    cap.changed_regions()
    idle = cap.frames
    time.sleep(2)  # the pointer still: the compositor sends nothing at all
    assert cap.frames == idle
    assert cap.changed_regions() == []


# -- the pointer's shape (cursor mode "metadata"): GNOME's and the portal's captures ---


def places(m: Mutter) -> tuple[tuple[int, int], tuple[int, int], npt.NDArray[np.uint8]]:
    """The middle of foot's window, a plain spot on the desktop, and the screen without
    the pointer."""
    plain = m.screenshot(pointer=False)
    bg = (plain == np.array(FOOT_BG, dtype=np.uint8)).all(axis=2)
    rows, cols = np.flatnonzero(bg.any(axis=1)), np.flatnonzero(bg.any(axis=0))
    inside = (int(cols[0] + cols[-1]) // 2, int(rows[0] + rows[-1]) // 2)
    # The desktop: a plain spot away from foot's window (and its border and shadow).
    near = np.zeros(bg.shape, dtype=bool)
    near[max(rows[0] - 40, 0) : rows[-1] + 40, max(cols[0] - 40, 0) : cols[-1] + 40] = True
    h, w = bg.shape
    for y in range(h - 16, 8, -4):
        for x in range(w - 24, 8, -4):
            box = np.s_[y - 8 : y + 24, x - 8 : x + 24]
            if not near[box].any() and (np.abs(plain[box].astype(int) - plain[y, x]) <= 12).all():
                return inside, (x, y), plain
    raise AssertionError("no plain desktop outside foot's window")


def bare(cap: Any, m: Mutter) -> bool:
    """The capture is the screen without the pointer (a reference of its own)."""
    return bool(np.array_equal(cap.grab()[..., [2, 1, 0]], m.screenshot(pointer=False)))


def is_beam(shape: Any) -> bool:
    """foot's text I-beam rather than the desktop's arrow: its hotspot is in the middle
    (mutter's arrow has it at the tip, top left: (4, 4) of 24x24; the beam (11, 12))."""
    h, w = shape.pixels.shape[:2]
    return bool(shape.hotspot_x >= w // 4 and shape.hotspot_y >= h // 4)


def next_shape(cap: Any, after: Any, what: str, beam: bool | None = None) -> Any:
    """The capture's cursor (a ``CursorImage``) once its serial is not ``after``'s and
    it shows something (mutter gives an empty sprite before the pointer first entered
    a window), foot's I-beam or not as ``beam`` says."""
    wait_for(
        lambda: (c := cap.cursor()) is not None
        and (after is None or c.serial != after.serial)
        and bool((c.pixels[..., 3] > 0).any())
        and (beam is None or is_beam(c) == beam),
        30, what,
    )  # fmt: skip
    shape = cap.cursor()
    assert shape is not None
    return shape


def enter_foot_once(
    cap: Any, move: Callable[[int, int], None], inside: tuple[int, int], outside: tuple[int, int]
) -> None:
    """The pointer enters foot once and goes back to the desktop's arrow, as the metadata
    says (where it is and which shape). After the portal's dialogs foot's first pointer
    entry gave mutter an empty sprite (measured twice, 1.5 s long, until the next
    entry: embedded mode draws that same sprite, i.e. nothing); later entries give the
    I-beam, as foot's first one does on GNOME's own session."""
    stream = cap._feeds[0].stream

    def at(point: tuple[int, int], arrow: bool) -> bool:
        c = cap.cursor()
        shown = c is not None and bool((c.pixels[..., 3] > 0).any()) and not is_beam(c)
        return stream.position == point and shown == arrow

    move(*inside)
    wait_for(lambda: at(inside, arrow=False), 30, "the pointer in foot (no arrow)")
    move(*outside)
    wait_for(lambda: at(outside, arrow=True), 30, "the pointer on the desktop (the arrow)")


async def viewer_gets_each_shape(capture: Any, injector: Any, m: Mutter, name: str) -> None:
    """Through ``RFBService`` (our test decoder, ZRLE and Cursor), the viewer's pointer
    moved over foot, the desktop and foot again brings a Cursor rectangle for each new
    shape with the capture's hotspot, size and mask. Closes both."""
    import struct

    from enkaku.agent.rfbservice import RFBService
    from enkaku.protocol.rfb import Encoding
    from tests.agent.test_rfbservice import Pipe
    from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request

    inside, outside, _plain = await asyncio.to_thread(places, m)
    w, h = m.width, m.height
    try:
        # Start on the desktop (whatever an earlier test left), so that each move
        # below changes the shape.
        move = lambda x, y: injector.pointer(x, y, 0)  # noqa: E731
        await asyncio.to_thread(enter_foot_once, capture, move, inside, outside)
        pipe = Pipe()
        service = RFBService(capture, injector, pipe.read, pipe.write, name=name)
        task = asyncio.create_task(service.run())
        try:
            await pipe.handshake()
            dec = Decoder(w, h, service.server.pixel_format)  # type: ignore[union-attr]
            await pipe.to_server.put(set_encodings(Encoding.ZRLE, Encoding.CURSOR))
            await pipe.to_server.put(update_request(False, 0, 0, w, h))
            await pipe.receive(dec, lambda: len(dec.updates) >= 1)
            for (x, y), beam in ((inside, True), (outside, False), (inside, True)):
                what = "foot's I-beam" if beam else "the desktop's arrow"
                before = capture.cursor()
                dec.cursor = None
                await pipe.to_server.put(update_request(True, 0, 0, w, h))
                # The viewer's pointer event moves the customer's pointer (the injector).
                await pipe.to_server.put(struct.pack("!BBHH", 5, 0, x, y))
                await pipe.receive(dec, lambda: dec.cursor is not None, 30)
                shape = capture.cursor()
                assert shape is not None and shape is not before, what
                assert is_beam(shape) == beam, what
                assert dec.cursor is not None
                hx, hy, pixels, mask = dec.cursor
                assert (hx, hy) == (shape.hotspot_x, shape.hotspot_y), what
                assert pixels.shape == shape.pixels.shape[:2], what
                assert np.array_equal(mask.astype(bool), shape.pixels[..., 3] >= 128), what
        finally:
            await pipe.to_server.put(b"")  # EOF
            await asyncio.wait_for(task, 10)
    finally:
        await asyncio.to_thread(capture.close)
        await asyncio.to_thread(injector.close)


def break_the_metadata_stream(monkeypatch: Any, caplog: Any) -> None:
    """Our cursor-metadata stream (``PwStream``) fails to start in the captures of this
    test, as if this process had not used it yet; the capture's log is recorded."""
    import logging

    from enkaku.agent.capture import gnome as gnome_capture
    from enkaku.agent.gnome.pwstream import PipeWireUnavailable

    def broken(*_args: object, **_kw: object) -> None:
        raise PipeWireUnavailable("cannot connect the stream (test)")

    monkeypatch.setattr(gnome_capture, "_metadata_problem", None)
    monkeypatch.setattr(gnome_capture, "PwStream", broken)
    caplog.set_level(logging.INFO, logger=gnome_capture.__name__)


def said_once_that_the_metadata_stream_failed(caplog: Any) -> None:
    """Logged once, with the reason and no traceback."""
    said = [r for r in caplog.records if "cursor-metadata stream failed" in r.getMessage()]
    assert len(said) == 1 and "(test)" in said[0].getMessage() and said[0].exc_info is None
