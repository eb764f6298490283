"""The wlroots backend against a real headless sway: screencopy with damage, the
virtual keyboard (any keysym, JIS keys among them) and the virtual pointer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enkaku.agent.backends import NoBackend, select_backend
from enkaku.agent.capture.base import CaptureError, EventCapture, Rect
from enkaku.agent.capture.wlroots import WlrootsCapture
from enkaku.agent.input.wlroots import WlrootsInput
from enkaku.agent.rfbservice import RFBService
from enkaku.agent.wayland.keymap import KeysymKeymap
from enkaku.protocol.rfb import Encoding
from tests.agent.test_rfbservice import Pipe, RecordingInjector
from tests.e2e.harness import ENKAKU, wait_for
from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request
from tests.wayland import Sway, headless_sway

RETURN = 0xFF0D


@pytest.fixture(scope="module")
def sway() -> Iterator[Sway]:
    with headless_sway(640, 480) as s:
        yield s


def keysym(ch: str) -> int:
    return ord(ch) if ord(ch) < 0x100 else 0x1000000 + ord(ch)


def type_text(inp: WlrootsInput, text: str) -> None:
    for ch in text:
        ks = RETURN if ch == "\n" else keysym(ch)
        inp.key(ks, True)
        inp.key(ks, False)


def combo(inp: Any, *keysyms: int) -> None:
    """Press ``keysyms`` in order and release them in reverse (a shortcut), on any
    injector."""
    for ks in keysyms:
        inp.key(ks, True)
    for ks in reversed(keysyms):
        inp.key(ks, False)


def wait_still(cap: WlrootsCapture, quiet: float = 1.0, timeout: float = 30) -> None:
    """Wait until ``cap`` got no frame for ``quiet`` seconds (the screen stopped changing)."""
    deadline = time.monotonic() + timeout
    seen = cap.frames
    while True:
        time.sleep(quiet)
        if cap.frames == seen:
            return
        assert time.monotonic() < deadline, "the screen never stopped changing"
        seen = cap.frames


def rgb(frame: np.ndarray) -> np.ndarray:
    return frame[..., [2, 1, 0]]


def test_capture_equals_grim_and_typed_text_arrives_with_jis_and_unicode_keys(
    sway: Sway,
) -> None:
    with (
        WlrootsCapture(sway.env["WAYLAND_DISPLAY"]) as cap,
        WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp,
    ):
        assert cap.size == (640, 480)
        text = "_¥|\\~@[]^ あé€"
        typed = f"printf '%s\\n' '{text}' > jis.txt\n"
        # The keyboard got the ordinary keys with its first keymap: only the kana, é
        # and € are new (unless an earlier test typed them on this display).
        keymap = inp._dev.keymap
        assert inp._dev.sent_keymap == keymap.version
        assert all(keymap.keycode(keysym(ch)) for ch in typed if ch not in "あé€\n")
        new = {ch for ch in "あé€" if keymap.keycode(keysym(ch)) is None}
        before = keymap.version
        type_text(inp, typed)
        assert keymap.version == before + len(new)
        out = sway.work / "jis.txt"
        wait_for(lambda: out.exists() and out.read_text() == text + "\n", 30, "typed text")
        wait_for(lambda: np.array_equal(rgb(cap.grab()), sway.grim()), 30, "capture == grim")


def test_letters_read_as_sent_with_or_without_shift_and_caps_lock(sway: Sway) -> None:
    """A capital sent without Shift, a small letter sent with Shift held (as some viewers
    do for shortcuts) and letters under Caps Lock all read as the keysym sent."""
    shift, caps = 0xFFE1, 0xFFE5
    with WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp:
        type_text(inp, "printf '%s\\n' '")
        type_text(inp, "Ab ")
        inp.key(shift, True)
        type_text(inp, "Cd")  # Shift held: C as sent, d as sent
        inp.key(shift, False)
        inp.key(caps, True)
        inp.key(caps, False)
        type_text(inp, " eF")  # Caps Lock on: still as sent
        inp.key(caps, True)
        inp.key(caps, False)
        type_text(inp, "' > letters.txt\n")
        out = sway.work / "letters.txt"
        wait_for(lambda: out.exists() and out.read_text() == "Ab Cd eF\n", 30, "the letters")


def test_frames_come_only_on_change_and_the_descriptor_says_so(sway: Sway) -> None:
    with (
        WlrootsCapture(sway.env["WAYLAND_DISPLAY"]) as cap,
        WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp,
    ):
        assert cap.changed_regions() is None  # first call: unknown, send everything
        wait_for(lambda: np.array_equal(rgb(cap.grab()), sway.grim()), 30, "settled screen")
        # Equal to grim's once is not idle yet: foot may still draw (seen once on a loaded
        # machine, a frame a moment after). A second with no frame is; a capture that
        # asked for frames without damage would never get one.
        wait_still(cap)
        cap.changed_regions()
        idle = cap.frames
        time.sleep(2)  # an idle screen: the compositor sends nothing at all
        assert cap.frames == idle
        assert cap.changed_regions() == []
        assert select.select([cap.fileno()], [], [], 0)[0] == []
        type_text(inp, "x")
        assert select.select([cap.fileno()], [], [], 30)[0] == [cap.fileno()]
        regions = cap.changed_regions()
        assert regions and cap.frames > idle
        assert all(r.w * r.h < 640 * 480 for r in regions)  # the damage, not the screen
        parts = cap.grab_rects(regions)
        assert parts is not None
        frame = cap.grab()
        for r, part in zip(regions, parts, strict=True):
            assert np.array_equal(part, frame[r.y : r.y + r.h, r.x : r.x + r.w])
        inp.key(0xFF08, True)  # BackSpace
        inp.key(0xFF08, False)


def test_a_click_focuses_the_window_under_the_pointer() -> None:
    with headless_sway(640, 480) as sway:
        sway.swaymsg("focus_follows_mouse", "no")  # only the click may move the focus
        right = sway.work / "right"
        right.mkdir(mode=0o777)
        right.chmod(0o777)
        sway.swaymsg(f"exec foot --working-directory={right} -- /bin/sh")
        # Two windows side by side; the new one, on the right, has the focus.
        wait_for(
            lambda: [w["focused"] for w in _foot_windows(sway)] == [False, True], 30,
            "two windows, the focus on the right one",
        )  # fmt: skip
        with WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp:
            inp.pointer(600, 400, 0)
            inp.pointer(100, 240, 0)  # over the left window: no focus change yet
            inp.pointer(100, 240, 1)  # left button down ...
            inp.pointer(100, 240, 0)  # ... and up
            inp.pointer(100, 240, 1 << 4)  # a wheel step, then its release
            inp.pointer(100, 240, 0)
            type_text(inp, "pwd > where.txt\n")
        where = sway.work / "where.txt"
        wait_for(where.exists, 30, "the command typed into the left window")
        assert where.read_text() == f"{sway.work}\n"
        assert not (right / "where.txt").exists()


def _foot_windows(sway: Sway) -> list[dict[str, Any]]:
    """foot's windows in tree order (left to right in the default horizontal split)."""
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("app_id") == "foot":
            found.append(node)
        for child in node.get("nodes", []) + node.get("floating_nodes", []):
            walk(child)

    walk(json.loads(sway.swaymsg("-t", "get_tree", "-r")))
    return found


def test_keymap_keeps_keycodes_and_starts_again_when_full() -> None:
    km = KeysymKeymap()
    a = km.add(0x61)
    assert km.add(0x61) == a and km.keycode(0x61) == a
    shift = km.add(0xFFE1)
    assert "modifier_map Shift" in km.text() and f"<K{shift}>" in km.text()
    for ks in range(0x1000100, 0x1000100 + 300):
        km.add(ks, keep={0x61})
    assert km.keycode(0x61) == a  # held keys keep their key across the restart
    assert len(km) <= 240


def test_keymap_starts_with_the_ordinary_keys_and_keeps_them() -> None:
    km = KeysymKeymap()
    # printable ASCII, Return, Escape, F12, Shift_L, yen, Henkan, Hiragana_Katakana
    ordinary = [*range(0x20, 0x7F), 0xFF0D, 0xFF1B, 0xFFC9, 0xFFE1, 0xA5, 0xFF23, 0xFF27]
    codes = [km.keycode(ks) for ks in ordinary]
    capitals = range(0x41, 0x5B)
    # A key each, but a capital is the second level of its small letter's key (shortcuts
    # such as Ctrl+Shift+V match the key's first level with Shift held).
    assert None not in codes and len(set(codes)) == len(codes) - len(capitals)
    assert all(km.keycode(up) == km.keycode(up + 0x20) for up in capitals)
    text = km.text()
    assert all(f"[ {ks:#x} ]" in text for ks in ordinary if not chr(ks).isalpha())
    assert all(f'"ALPHABETIC", [ {up + 0x20:#x}, {up:#x} ]' in text for up in capitals)
    assert [km.shifted(ks) for ks in (0x41, 0x7A, 0x31, 0xE9, 0xFF0D)] == [
        True, False, None, None, None,
    ]  # fmt: skip
    assert "modifier_map Shift" in km.text()
    assert km.add(0x61) == km.keycode(0x61) and km.version == 0  # nothing to send again
    km.add(0xE9)  # é: added on demand
    assert km.version == 1 and km.keycode(0xE9) is not None
    for ks in range(0x1000100, 0x1000100 + 300):  # fills up and starts again
        km.add(ks)
    assert [km.keycode(ks) for ks in ordinary] == codes


def test_auto_detection_picks_wlroots_and_fails_clearly_elsewhere(sway: Sway) -> None:
    capture, injector, clipboard = select_backend("auto", None, sway.env)
    assert capture is not None and injector is not None
    with pytest.raises(NoBackend) as info:
        select_backend(
            "auto", None,
            {"WAYLAND_DISPLAY": "wayland-none", "XDG_RUNTIME_DIR": str(sway.runtime),
             "XDG_CURRENT_DESKTOP": "GNOME"},
        )  # fmt: skip
    en, ja = info.value.message("en"), info.value.message("ja")
    assert "GNOME, Wayland" in en and "wayland-wlroots" in en and "X11" in en
    assert "試したもの" in ja and "X11" in ja
    with pytest.raises(NoBackend):
        select_backend("x11", None, {})
    assert select_backend("auto", None, {}) == (None, None, None)
    assert select_backend("auto", "none", sway.env) == (None, None, None)


def test_capture_on_a_missing_socket_is_a_clear_error(sway: Sway) -> None:
    with pytest.raises(CaptureError, match="no Wayland compositor socket"):
        WlrootsCapture(str(sway.runtime / "wayland-9"))


def test_keys_typed_just_before_close_arrive_and_the_next_injector_types_too(
    sway: Sway,
) -> None:
    # Each screen connection makes and closes its injector; the last key before close
    # was lost while every injector had a virtual keyboard of its own.
    for n in range(3):
        inp = WlrootsInput(sway.env["WAYLAND_DISPLAY"])
        type_text(inp, f"echo {n} > closed{n}.txt\n")
        inp.close()
    paths = [sway.work / f"closed{n}.txt" for n in range(3)]
    wait_for(lambda: all(p.exists() for p in paths), 30, "the three files")


class CountingCapture(WlrootsCapture):
    """WlrootsCapture that counts the service's capture calls."""

    def __init__(self, display: str) -> None:
        super().__init__(display)
        self.region_calls = 0

    def changed_regions(self) -> list[Rect] | None:
        self.region_calls += 1
        return super().changed_regions()


def _screen(sway: Sway) -> np.ndarray:
    rgb = sway.grim().astype(np.uint32)
    return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]


async def test_rfb_updates_flow_only_on_change_and_stay_exact(sway: Sway) -> None:
    w, h = sway.width, sway.height
    capture = CountingCapture(sway.env["WAYLAND_DISPLAY"])
    injector = WlrootsInput(sway.env["WAYLAND_DISPLAY"])
    pipe = Pipe()
    service = RFBService(capture, injector, pipe.read, pipe.write, name="sway")
    task = asyncio.create_task(service.run())
    try:
        dec = await pipe.first_frame(service, w, h)
        # foot may still be drawing its first prompt (late on a busy machine): the quiet
        # second starts once the viewer's picture is the screen's.
        await pipe.catch_up(dec, lambda: _screen(sway))
        await pipe.to_server.put(update_request(True, 0, 0, w, h))
        await asyncio.sleep(0.2)  # the service waits on the capture's descriptor now
        calls, frames = capture.region_calls, capture.frames
        await asyncio.sleep(1.0)  # a quiet second: nothing changes on the screen
        assert capture.region_calls == calls and capture.frames == frames
        assert pipe.from_server.empty()
        # The request outstanding all along is answered once a key changes the screen.
        await pipe.to_server.put(b"\x04\x01\x00\x00\x00\x00\x00\x7a")  # 'z' down
        await pipe.to_server.put(b"\x04\x00\x00\x00\x00\x00\x00\x7a")  # 'z' up
        await pipe.receive(dec, lambda: len(dec.updates) == 2, 20)
        await pipe.catch_up(dec, lambda: _screen(sway))
        await pipe.to_server.put(b"\x04\x01\x00\x00\x00\x00\xff\x08")  # BackSpace
        await pipe.to_server.put(b"\x04\x00\x00\x00\x00\x00\xff\x08")
    finally:
        await pipe.to_server.put(b"")  # EOF
        await asyncio.wait_for(task, 10)
        capture.close()
        injector.close()


async def test_a_window_dragged_diagonally_goes_as_copies_and_stays_exact() -> None:
    """Nothing on Wayland says a window moved: the damage step finds the diagonal move
    in the pixels (``enkaku.agent.motion``), and each step of the drag costs a CopyRect
    and the uncovered strips, not the window; the viewer's picture is grim's after each
    step."""
    with headless_sway(1280, 800) as s:
        s.swaymsg("exec foot --app-id=mover -- sh -c 'ls -l /usr/bin | head -40; sleep 1000'")
        assert wait_for(lambda: '"app_id": "mover"' in s.swaymsg("-t", "get_tree"), 20)
        s.swaymsg("[app_id=mover] floating enable, resize set 480 300, move position 150 120")
        w, h = s.width, s.height
        capture = WlrootsCapture(s.env["WAYLAND_DISPLAY"])
        pipe = Pipe()
        service = RFBService(capture, RecordingInjector(), pipe.read, pipe.write, name="sway")
        task = asyncio.create_task(service.run())
        try:
            await pipe.handshake()
            dec = Decoder(w, h, service.server.pixel_format)  # type: ignore[union-attr]
            await pipe.to_server.put(set_encodings(Encoding.ZRLE, Encoding.COPYRECT))
            await pipe.to_server.put(update_request(False, 0, 0, w, h))
            await pipe.receive(dec, lambda: len(dec.updates) == 1)
            await asyncio.sleep(1.0)  # foot's first picture
            await pipe.catch_up(dec, lambda: _screen(s))
            sent = 0
            feed = dec.feed

            def counted(data: bytes) -> None:
                nonlocal sent
                sent += len(data)
                feed(data)

            dec.feed = counted  # type: ignore[method-assign]
            first = len(dec.updates)
            x, y = 150, 120
            steps = [(24, 16)] * 4 + [(-30, 20)] * 2
            for dx, dy in steps:
                x, y = x + dx, y + dy
                await asyncio.to_thread(s.swaymsg, f"[app_id=mover] move position {x} {y}")
                await pipe.catch_up(dec, lambda: _screen(s))
            copies = sum(r[4] == Encoding.COPYRECT for u in dec.updates[first:] for r in u.rects)
            assert copies >= len(steps)
            # The window's pixels alone would be 480 x 300 x 4 bytes a step.
            assert sent < len(steps) * 480 * 300 * 4 // 20
        finally:
            await pipe.to_server.put(b"")
            await asyncio.wait_for(task, 10)
            capture.close()


def test_an_output_resize_is_reported_and_the_capture_follows() -> None:
    with (
        headless_sway(640, 480, foot=False) as sway,
        WlrootsCapture(sway.env["WAYLAND_DISPLAY"]) as cap,
    ):
        event_capture: EventCapture = cap  # the interface the RFB service looks for
        assert event_capture.changed_regions() is None
        assert cap.size == (640, 480)
        sway.swaymsg("output", "HEADLESS-1", "resolution", "800x500")
        wait_for(lambda: cap.size == (800, 500), 30, "the new size")
        assert cap.grab_rects([Rect(0, 0, 10, 10)]) is None  # grab() the whole screen
        assert cap.changed_regions() is None
        assert cap.grab().shape == (500, 800, 4)
        wait_for(lambda: np.array_equal(rgb(cap.grab()), sway.grim()), 30, "capture == grim")
        assert cap.grab_rects([Rect(0, 0, 10, 10)]) is not None


def test_the_agent_on_an_unsupported_wayland_session_stops_with_the_message(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ, "WAYLAND_DISPLAY": "wayland-none", "XDG_RUNTIME_DIR": str(tmp_path),
        "XDG_CURRENT_DESKTOP": "KDE", "DISPLAY": ":99",
    }  # fmt: skip
    out = subprocess.run(
        [ENKAKU, "agent", "--server", "http://127.0.0.1:9", "--headless",
         "--config-dir", str(tmp_path / "cfg")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "KDE, Wayland" in out.stderr and "wayland-wlroots" in out.stderr
    assert "X11" in out.stderr and "試したもの" in out.stderr  # both languages


def _cat_in(folder: Path) -> bool:
    """Whether a ``cat`` runs in ``folder``."""
    for proc in Path("/proc").iterdir():
        try:
            if (proc / "comm").read_text() == "cat\n" and (proc / "cwd").readlink() == folder:
                return True
        except OSError:
            continue
    return False


def test_control_c_is_a_modifier_shortcut(sway: Sway) -> None:
    with WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp:
        type_text(inp, "cat > cat.txt\n")
        # The redirection exists once the shell's child is the terminal's foreground
        # process group, but the child is cat, with SIGINT's default action, only once
        # it has exec'd: a Ctrl+C between the two was lost under load (a clean-clone
        # run, 2026-12-01). Wait for the cat process itself.
        wait_for(lambda: (sway.work / "cat.txt").exists() and _cat_in(sway.work), 30, "cat started")
        inp.key(0xFFE3, True)  # Control_L
        type_text(inp, "c")
        inp.key(0xFFE3, False)
        # The terminal drops what is typed between the ^C and the interrupt: type on
        # once cat has gone.
        wait_for(lambda: not _cat_in(sway.work), 30, "cat gone")
        type_text(inp, "echo $? > rc.txt\n")  # cat ended by SIGINT: 130
        rc = sway.work / "rc.txt"
        wait_for(lambda: rc.exists() and rc.read_text() == "130\n", 30, "cat interrupted")


def _pointer_box(frame: np.ndarray, background: np.ndarray) -> tuple[int, int, int, int] | None:
    """The bounding box (x0, y0, x1, y1) of what differs from the empty desktop."""
    ys, xs = np.nonzero((frame != background).any(axis=2))
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_the_pointer_is_drawn_into_the_captured_frames() -> None:
    with headless_sway(640, 480, foot=False) as sway:
        background = sway.grim()[:1, :1]  # no window: one colour everywhere
        assert (sway.grim() == background).all()
        with (
            WlrootsCapture(sway.env["WAYLAND_DISPLAY"]) as cap,
            WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp,
        ):
            # Not (100, 100): sway shows the pointer there as soon as the virtual pointer
            # exists, so a move there changes nothing and brings no frame.
            for x, y in ((200, 150), (400, 300)):

                def at_pointer(x: int = x, y: int = y) -> bool:
                    box = _pointer_box(rgb(cap.grab()), background)
                    # The arrow's hot spot is its tip: the drawing starts at the pointer.
                    return box is not None and abs(box[0] - x) <= 4 and abs(box[1] - y) <= 4

                # The captured picture changes only with a frame: not drawn there before
                # the move and drawn there after means the move came as a frame.
                frames = cap.frames
                assert not at_pointer()
                inp.pointer(x, y, 0)
                wait_for(at_pointer, 30, f"the pointer drawn at {x},{y}")
                assert cap.frames > frames  # the move came as a frame, with its damage
                box = _pointer_box(rgb(cap.grab()), background)
                assert box is not None and box[2] - box[0] < 64 and box[3] - box[1] < 64
            # The frames ask for the pointer (where the compositor has a hardware cursor
            # plane, only then is it in the picture): libwayland's own trace says so.
            trace = subprocess.run(
                [sys.executable, "-c",
                 "import sys; from enkaku.agent.capture.wlroots import WlrootsCapture as C;"
                 "C(sys.argv[1]).close()", sway.env["WAYLAND_DISPLAY"]],
                env={**os.environ, **sway.env, "WAYLAND_DEBUG": "client"},
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert trace.returncode == 0, trace.stderr[-2000:]
            calls = re.findall(r"zwlr_screencopy_manager_v1[@#]\d+\.capture_output\(([^)]*)\)",
                               trace.stderr)  # fmt: skip
            assert calls and all(c.split(", ")[1] == "1" for c in calls), calls


def _keyboard_layouts(sway: Sway) -> list[str | None]:
    inputs = json.loads(sway.swaymsg("-t", "get_inputs", "-r"))
    return [d.get("xkb_active_layout_name") for d in inputs if d["type"] == "keyboard"]


def test_a_japanese_layout_and_a_layout_change_do_not_change_what_is_typed() -> None:
    # JIS symbols (on other keys than on a US keyboard: @ [ ] : _ \ | ¥ ^ ~ = ` { } + *),
    # kana and a long vowel mark, typed as keysyms whatever the compositor's layout.
    text = "@[]:_\\|¥^~=`{}+*<>? ろー"
    with headless_sway(640, 480, layout="jp") as sway:
        # The seat's keyboard (the fixture's virtual one, shared with ``inp``) has had
        # our keymap since it was made: sway's layout comes with the changes below.
        assert _keyboard_layouts(sway) == [None]
        with WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp:
            for n, layout in enumerate(("us", "jp")):  # each a change: sway applies it
                # sway puts the new layout on every keyboard, ours included: our
                # keycodes would then type the layout's characters.
                sway.swaymsg("input", "*", "xkb_layout", layout)
                name = "Japanese" if layout == "jp" else "English (US)"
                assert _keyboard_layouts(sway) == [name]
                type_text(inp, f"printf '%s\\n' '{text}' > layout{n}.txt\n")
                out = sway.work / f"layout{n}.txt"
                wait_for(lambda o=out: o.exists() and o.read_text() == text + "\n", 30, layout)  # type: ignore[misc]
            assert inp._dev.reuploads >= 2  # our keymap was sent again after each change


def _x_client_focused(sway: Sway) -> bool:
    def walk(node: dict[str, Any]) -> bool:
        if node.get("shell") == "xwayland" and node.get("focused"):
            return True
        return any(walk(c) for c in node.get("nodes", []) + node.get("floating_nodes", []))

    return walk(json.loads(sway.swaymsg("-t", "get_tree", "-r")))


def test_x_clients_through_xwayland_get_the_keys_as_sent_on_a_japanese_layout() -> None:
    # The keymap reaches X clients through XWayland (keycodes up to 255 there).
    text = "@[]:_\\|¥^~=`{}+*<>? é"
    with headless_sway(640, 480, xwayland=True, layout="jp") as sway:
        home = sway.work / "x"  # not foot's folder: the file tells who got the keys
        home.mkdir()
        home.chmod(0o777)
        sway.swaymsg(f"exec env -C {home} xterm -e /bin/sh")
        wait_for(lambda: _x_client_focused(sway), 30, "xterm focused")
        out = home / "x.txt"
        with WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp:
            # xterm's shell may not read yet: type again until the file is there.
            deadline = time.monotonic() + 30
            while not out.exists():
                assert time.monotonic() < deadline, "nothing typed into xterm"
                type_text(inp, f"printf '%s\\n' '{text}' > x.txt\n")
                time.sleep(1)
            wait_for(lambda: out.read_text() == text + "\n", 30, "x.txt as typed")


def test_a_burst_of_keys_while_the_compositor_is_busy_arrives_whole(sway: Sway) -> None:
    # Each key is one message on the socket; the kernel holds about 270 of them for a
    # compositor that reads nothing meanwhile. A burst larger than that (keys that
    # arrived at once over a slow link) used to end the input connection for good.
    line = "".join(chr(ord("a") + i % 26) for i in range(300))
    with WlrootsInput(sway.env["WAYLAND_DISPLAY"]) as inp:
        os.kill(sway.pid, signal.SIGSTOP)
        try:
            type_text(inp, f"echo {line} > burst.txt\n")  # 622 events: over the limit
            assert inp._dev.backlog  # some wait for the compositor, none lost
            time.sleep(1.5)  # the drain thread waits as long as it takes
            assert inp._dev.backlog and not inp._dev.dead
        finally:
            os.kill(sway.pid, signal.SIGCONT)
        out = sway.work / "burst.txt"
        wait_for(lambda: out.exists() and out.read_text() == line + "\n", 30, "the burst")
        wait_for(lambda: not inp._dev.backlog, 10, "the queue sent")
        type_text(inp, "echo after > burst2.txt\n")  # and the keyboard still types
        out2 = sway.work / "burst2.txt"
        wait_for(lambda: out2.exists() and out2.read_text() == "after\n", 30, "keys after it")


def test_closing_while_the_compositor_is_not_reading_does_not_wait_for_it(sway: Sway) -> None:
    inp = WlrootsInput(sway.env["WAYLAND_DISPLAY"])
    os.kill(sway.pid, signal.SIGSTOP)
    try:
        type_text(inp, "echo late > late.txt\n")
        for _ in range(150):  # over the socket's room; erased again
            combo(inp, ord("x"))
            combo(inp, 0xFF08)  # BackSpace
        assert inp._dev.backlog
        closing = threading.Thread(target=inp.close)
        closing.start()
        closing.join(10)  # a hang guard: it used to wait for the compositor
        closed_while_stopped = not closing.is_alive()
    finally:
        os.kill(sway.pid, signal.SIGCONT)
    closing.join()
    assert closed_while_stopped
    out = sway.work / "late.txt"
    wait_for(lambda: out.exists() and out.read_text() == "late\n", 30, "the keys sent late")


async def test_keys_typed_while_the_compositor_is_stopped_arrive_through_the_service(
    sway: Sway,
) -> None:
    # The viewer's keys come in one read after its link stalled, while sway is stopped
    # (a busy machine): the service injects them on its event loop; those that do not
    # fit in the socket wait, and every one arrives once sway runs again.
    w, h = sway.width, sway.height
    capture = WlrootsCapture(sway.env["WAYLAND_DISPLAY"])
    injector = WlrootsInput(sway.env["WAYLAND_DISPLAY"])
    pipe = Pipe()
    service = RFBService(capture, injector, pipe.read, pipe.write, name="sway")
    task = asyncio.create_task(service.run())
    line = "".join(chr(ord("a") + i % 26) for i in range(300))
    keys = b"".join(
        struct.pack(">BBxxI", 4, down, ks)
        for ks in [*map(ord, f"echo {line} > stalled.txt"), 0xFF0D]
        for down in (1, 0)
    )
    try:
        await pipe.first_frame(service, w, h)
        os.kill(sway.pid, signal.SIGSTOP)
        try:
            await pipe.to_server.put(keys)
            await asyncio.sleep(1.0)
            assert injector._dev.backlog and not task.done()
        finally:
            os.kill(sway.pid, signal.SIGCONT)
        out = sway.work / "stalled.txt"
        await asyncio.to_thread(
            wait_for, lambda: out.exists() and out.read_text() == line + "\n", 30, "the keys"
        )
    finally:
        await pipe.to_server.put(b"")  # EOF
        await asyncio.wait_for(task, 10)
        capture.close()
        injector.close()
