"""The portal backend against xdg-desktop-portal + xdg-desktop-portal-gnome on a real
headless mutter (tests/portal.py): the permission dialog answered once, the restore
token kept, the next session served with no dialog; keys through the portal's
remote-desktop session; the pointer's shape as cursor metadata (read by our own
``pw_stream`` on the portal's PipeWire connection), and drawn into the frames when that
is not available; backend selection."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import select
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enkaku.agent.backends import NoBackend, select_backend
from enkaku.agent.capture.portal import PortalCapture
from enkaku.agent.gnome import mutter
from enkaku.agent.gnome.pwstream import PwStream
from enkaku.agent.input.portal import PortalInput
from enkaku.agent.portal import session as portal_session
from enkaku.agent.rfbservice import RFBService
from tests.agent.test_rfbservice import Pipe
from tests.e2e.harness import ENKAKU, wait_for
from tests.gnome import (
    _pointer_at,
    bare,
    break_the_metadata_stream,
    enter_foot_once,
    next_shape,
    places,
    pointer_follows,
    said_once_that_the_metadata_stream_failed,
    viewer_gets_each_shape,
)
from tests.portal import Portal, fake_portal, headless_portal
from tests.protocol.rfb.decoders import update_request

RETURN = 0xFF0D


@pytest.fixture(scope="module")
def portal() -> Iterator[Portal]:
    with headless_portal(1280, 720) as p:
        yield p


@pytest.fixture(autouse=True)
def no_shared_session() -> Iterator[None]:
    """Each test starts without the process's shared session (it stays a few seconds
    after its last user, and a test's dialog would then not appear)."""
    yield
    portal_session._stop_all()


def rgb(frame: np.ndarray) -> np.ndarray:
    return frame[..., [2, 1, 0]]


def in_thread(make: Any) -> concurrent.futures.Future[Any]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(make)
    pool.shutdown(wait=False)
    return future


def test_one_dialog_then_the_restore_token_serves_the_screen(
    portal: Portal, tmp_path: Path
) -> None:
    cfg = tmp_path / "cfg"
    token = cfg / portal_session.SC_TOKEN_NAME
    # Debian 12's xdg-desktop-portal 1.16: RemoteDesktop version 1, no restore for a
    # remote-desktop session, so the capture has a screen-cast session of its own.
    assert portal_session.remote_desktop_version(portal.env) == 1
    first = in_thread(lambda: PortalCapture(portal.env, cfg))
    portal.answer(remote=False)  # the customer picks the monitor and presses Share
    with first.result(60) as cap:
        assert cap.size == (1280, 720)
        # Cursor mode "metadata", read by our own stream: the frames have no pointer.
        assert cap._cursor_mode == cap._session.cursor_mode == mutter.CURSOR_METADATA
        assert isinstance(cap._feeds[0].stream, PwStream)
        assert token.exists() and stat.S_IMODE(token.stat().st_mode) == 0o600
        kept = token.read_text().strip()
        assert kept
        wait_for(lambda: portal.share_button() is None, 30, "the dialog closed")
        wait_for(lambda: bare(cap, portal.mutter), 30,
                 "first capture == the reference screen cast")  # fmt: skip
    # The next session: the kept token, no dialog (nothing answers one here).
    second = in_thread(lambda: PortalCapture(portal.env, cfg))
    try:
        cap = second.result(30)
    except concurrent.futures.TimeoutError:
        pytest.fail("the second session asked again: " + portal.tail())
    with cap:
        assert cap._session._session.restored_from == kept
        assert portal.share_button() is None  # no dialog on the screen
        assert cap._session.cursor_mode == mutter.CURSOR_METADATA
        wait_for(lambda: bare(cap, portal.mutter), 30,
                 "restored capture == the reference screen cast")  # fmt: skip
    assert token.read_text().strip()  # the token for the next time is kept
    assert portal.dialogs == 1


async def test_the_rfb_service_serves_the_restored_screen(portal: Portal, tmp_path: Path) -> None:
    """A viewer through the RFB service: the capture from a kept token (its dialog
    answered once, before), input through the remote-desktop session (its dialog);
    a key typed by the viewer shows, and the viewer's picture equals the reference."""
    cfg = tmp_path / "cfg"
    first = in_thread(lambda: PortalCapture(portal.env, cfg))
    await asyncio.to_thread(portal.answer, False)
    (await asyncio.wrap_future(first)).close()
    dialogs = portal.dialogs
    capture = await asyncio.wait_for(asyncio.to_thread(PortalCapture, portal.env, cfg), 30)
    assert portal.dialogs == dialogs  # restored: nothing was answered
    pending = in_thread(lambda: PortalInput(portal.env, cfg))
    await asyncio.to_thread(portal.answer, True)
    injector = await asyncio.wrap_future(pending)
    w, h = capture.size
    pipe = Pipe()
    service = RFBService(capture, injector, pipe.read, pipe.write, name="portal")
    task = asyncio.create_task(service.run())
    try:
        dec = await pipe.first_frame(service, w, h)
        await pipe.to_server.put(update_request(True, 0, 0, w, h))
        await pipe.to_server.put(b"\x04\x01\x00\x00\x00\x00\x00\x71")  # 'q' down
        await pipe.to_server.put(b"\x04\x00\x00\x00\x00\x00\x00\x71")  # 'q' up
        await pipe.receive(dec, lambda: len(dec.updates) == 2, 20)
        await pipe.catch_up(dec, lambda: _screen(portal))
        await pipe.to_server.put(b"\x04\x01\x00\x00\x00\x00\xff\x08")  # BackSpace
        await pipe.to_server.put(b"\x04\x00\x00\x00\x00\x00\xff\x08")
    finally:
        await pipe.to_server.put(b"")  # EOF
        await asyncio.wait_for(task, 10)
        await asyncio.to_thread(capture.close)
        await asyncio.to_thread(injector.close)


def _screen(portal: Portal) -> np.ndarray:
    rgb = portal.mutter.screenshot(pointer=False).astype(np.uint32)
    return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]


def test_keys_through_the_portal_remote_desktop_session(portal: Portal, tmp_path: Path) -> None:
    pending = in_thread(lambda: PortalInput(portal.env, tmp_path / "cfg"))
    portal.answer(remote=True)  # allow remote interaction, Share
    with pending.result(60) as inp:
        text = "echo portal_$((6*7)) > portal.txt\n"
        for ch in text:
            ks = RETURN if ch == "\n" else ord(ch)
            inp.key(ks, True)
            inp.key(ks, False)
        out = portal.mutter.work / "portal.txt"
        wait_for(lambda: out.exists() and out.read_text() == "portal_42\n", 30, "typed text")
        inp.pointer(10, 10, 0)  # the pointer goes through the session's stream too


def _capture_and_input(portal: Portal, cfg: Path) -> tuple[PortalCapture, PortalInput]:
    """A capture (its screen-cast dialog answered unless its token is kept) and an
    injector (the remote-desktop dialog answered)."""
    token = cfg / portal_session.SC_TOKEN_NAME
    pending = in_thread(lambda: PortalCapture(portal.env, cfg))
    if not token.exists():
        portal.answer(remote=False)
    cap = pending.result(60)
    wait_for(lambda: portal.share_button() is None, 30, "the dialog closed")
    pending_input = in_thread(lambda: PortalInput(portal.env, cfg))
    portal.answer(remote=True)
    return cap, pending_input.result(60)


def test_the_pointer_shape_comes_through_the_portal_not_in_the_frames(
    portal: Portal, tmp_path: Path
) -> None:
    # xdg-desktop-portal-gnome offers cursor mode "metadata": the pointer moved through
    # the portal's remote-desktop session gives foot's I-beam over foot, the desktop's
    # arrow elsewhere (each a new serial, the descriptor readable with no changed
    # pixel), and the frames stay without it.
    inside, outside, plain = places(portal.mutter)
    cap, inp = _capture_and_input(portal, tmp_path / "cfg")
    with cap, inp:
        assert cap._session.cursor_mode == mutter.CURSOR_METADATA
        enter_foot_once(cap, lambda x, y: inp.pointer(x, y, 0), inside, outside)
        start = cap.cursor()
        cap.changed_regions()
        inp.pointer(*inside, 0)
        beam = next_shape(cap, start, "foot's I-beam", beam=True)
        # The new shape alone makes the descriptor readable (no pixel changed).
        assert select.select([cap.fileno()], [], [], 10)[0]
        inp.pointer(*outside, 0)
        arrow = next_shape(cap, beam, "the desktop's arrow", beam=False)
        for shape in (beam, arrow):
            h, w = shape.pixels.shape[:2]
            assert 0 <= shape.hotspot_x < w and 0 <= shape.hotspot_y < h
            assert (shape.pixels[..., 3] > 0).any() and (shape.pixels[..., 3] == 0).any()
        assert (beam.hotspot_x, beam.hotspot_y) != (arrow.hotspot_x, arrow.hotspot_y)
        x, y = outside
        wait_for(lambda: bare(cap, portal.mutter), 30, "capture == the screen without pointer")
        assert _pointer_at(portal.mutter.screenshot(pointer=True), x, y, plain)
        assert not _pointer_at(rgb(cap.grab()), x, y, plain)
        inp.pointer(*inside, 0)
        again = next_shape(cap, arrow, "foot's I-beam again", beam=True)
        assert np.array_equal(again.pixels, beam.pixels)
        assert again.serial not in (beam.serial, arrow.serial)


async def test_the_viewer_gets_the_portals_pointer_shapes_as_cursor_rects(
    portal: Portal, tmp_path: Path
) -> None:
    cap, inp = await asyncio.to_thread(_capture_and_input, portal, tmp_path / "cfg")
    assert cap._session.cursor_mode == mutter.CURSOR_METADATA
    await viewer_gets_each_shape(cap, inp, portal.mutter, "portal")


def test_without_cursor_metadata_the_pointer_is_in_the_portals_frames(
    portal: Portal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Our metadata stream made to fail: the capture says so once and starts the
    # session again in cursor mode "embedded" (from the restore token its first start
    # got: no second dialog), read through GStreamer; the pointer moved through the
    # portal's remote-desktop session is drawn into the frames, a still pointer sends
    # nothing. The next capture asks for "embedded" at once.
    break_the_metadata_stream(monkeypatch, caplog)
    cfg = tmp_path / "cfg"
    dialogs = portal.dialogs
    cap, inp = _capture_and_input(portal, cfg)
    with cap, inp:
        assert portal.dialogs == dialogs + 2  # the screen cast's and the input's
        assert cap._cursor_mode == cap._session.cursor_mode == mutter.CURSOR_EMBEDDED
        assert cap.cursor() is None
        pointer_follows(cap, lambda x, y: inp.pointer(x, y, 0), portal.mutter.screenshot)
        with PortalCapture(portal.env, cfg) as again:
            assert again._session._session.cursor_mode == portal_session.CURSOR_EMBEDDED
            assert again.cursor() is None
    said_once_that_the_metadata_stream_failed(caplog)


def test_selection(portal: Portal, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level("INFO", logger="enkaku.agent.backends")
    # A Wayland desktop that is not GNOME and has no wlroots protocols: the portal.
    kde = {**portal.env, "XDG_CURRENT_DESKTOP": "KDE"}
    capture, injector, clipboard = select_backend("auto", None, kde, config_dir=tmp_path)
    assert capture is not None and injector is not None and clipboard is None
    assert "screen backend: wayland-portal" in caplog.text
    forced, _, _ = select_backend("wayland-portal", None, portal.env, config_dir=tmp_path)
    assert forced is not None
    # GNOME with mutter's API on the bus stays with the GNOME backend.
    caplog.clear()
    select_backend("auto", None, portal.env)
    assert "screen backend: wayland-gnome" in caplog.text
    with pytest.raises(NoBackend) as info:
        select_backend("wayland-portal", None, {"XDG_RUNTIME_DIR": str(tmp_path),
                                                "WAYLAND_DISPLAY": "wayland-9"})  # fmt: skip
    en, ja = info.value.message("en"), info.value.message("ja")
    assert "wayland-portal (no D-Bus session bus" in en and "xdg-desktop-portal-kde" in en
    assert "wayland-portal" in ja and "ポータル" in ja


def test_the_agent_forced_to_the_portal_without_one_stops_with_the_message(
    tmp_path: Path,
) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WAYLAND_DISPLAY": "wayland-9",
           "XDG_RUNTIME_DIR": str(tmp_path), "XDG_CURRENT_DESKTOP": "KDE"}  # fmt: skip
    out = subprocess.run(
        [ENKAKU, "agent", "--server", "http://127.0.0.1:9", "--headless", "--backend",
         "wayland-portal", "--config-dir", str(tmp_path / "cfg")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "KDE, Wayland" in out.stderr and "wayland-portal" in out.stderr
    assert "試したもの" in out.stderr


# -- against a fake portal on a private bus: what Debian 12's portal cannot show -------


def test_fake_v2_one_dialog_one_shared_session_then_the_token(tmp_path: Path) -> None:
    """RemoteDesktop version 2 (xdg-desktop-portal 1.18+): one remote-desktop session
    for capture and input, persisted through SelectDevices; the next one restored."""
    cfg = tmp_path / "cfg"
    token = cfg / portal_session.TOKEN_NAME
    with fake_portal(rd_version=2) as fake:
        assert portal_session.probe(fake.env) is None
        session = portal_session.acquire(fake.env, cfg)
        with PortalInput(fake.env, cfg) as inp:
            assert portal_session.acquire(fake.env, cfg) is session  # shared
            portal_session.release(session)
            inp.key(0x61, True)
            inp.key(0x61, False)
            inp.pointer(5, 6, 1)
            inp.pointer(5, 6, 0)
            fd = session.open_pipewire()
            try:
                assert stat.S_ISSOCK(os.fstat(fd).st_mode)
            finally:
                os.close(fd)
        assert [m for m, _, _ in fake.calls][:4] == [
            "CreateSession", "SelectDevices", "SelectSources", "Start"]  # fmt: skip
        ((_, devices),) = fake.named("SelectDevices")
        assert devices["types"] == 3 and devices["persist_mode"] == 2
        assert "restore_token" not in devices
        ((_, sources),) = fake.named("SelectSources")
        assert sources["types"] == 1 and sources["cursor_mode"] == 2  # embedded: input's
        assert "persist_mode" not in sources  # the remote-desktop session persists
        handle = session.handle
        assert fake.named("NotifyKeyboardKeysym") == [
            ([handle, 0x61, 1], {}), ([handle, 0x61, 0], {})]  # fmt: skip
        assert ([handle, 42, 5.0, 6.0], {}) in fake.named("NotifyPointerMotionAbsolute")
        assert fake.named("NotifyPointerButton") == [
            ([handle, 0x110, 1], {}), ([handle, 0x110, 0], {})]  # fmt: skip
        assert session.size == (640, 480) and session.node == 42
        assert token.read_text().strip() == "tok-1" and fake.dialogs == 1
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        portal_session.release(session, grace=0)
        assert fake.named("Close")  # the session is closed at once
        again = portal_session.PortalSession(fake.env, cfg)
        again.stop()
        assert fake.named("SelectDevices")[-1][1]["restore_token"] == "tok-1"
        assert fake.dialogs == 1  # no dialog
        assert token.read_text().strip() == "tok-2"  # the next time's token replaces it


def test_fake_v1_and_a_refused_dialog(tmp_path: Path) -> None:
    """RemoteDesktop version 1 (Debian 12's 1.16): no persist_mode on the remote-desktop
    session, the screen-cast session persists; a cancelled dialog is a clear error and
    keeps the stored token."""
    cfg = tmp_path / "cfg"
    with fake_portal(rd_version=1) as fake:
        rd = portal_session.PortalSession(fake.env, cfg)
        rd.stop()
        assert "persist_mode" not in fake.named("SelectDevices")[-1][1]
        assert not (cfg / portal_session.TOKEN_NAME).exists()
        sc = portal_session.PortalSession(fake.env, cfg, remote_desktop=False)
        sc.stop()
        assert fake.named("SelectSources")[-1][1]["persist_mode"] == 2
        assert (cfg / portal_session.SC_TOKEN_NAME).read_text().strip() == "tok-1"
        fake.start_response = 1
        with pytest.raises(portal_session.PortalUnavailable, match="cancelled"):
            portal_session.PortalSession(fake.env, cfg, remote_desktop=False)
        assert fake.named("SelectSources")[-1][1]["restore_token"] == "tok-1"
        assert (cfg / portal_session.SC_TOKEN_NAME).read_text().strip() == "tok-1"


def test_fake_cursor_modes_metadata_where_offered_else_embedded_else_none(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "cfg"
    with fake_portal(rd_version=1) as fake:
        for offered, asked in ((7, 4), (3, 2), (1, None)):
            fake.cursor_modes = offered
            sc = portal_session.PortalSession(fake.env, cfg, remote_desktop=False, metadata=True)
            sc.stop()
            assert fake.named("SelectSources")[-1][1].get("cursor_mode") == asked, offered
            assert sc.cursor_mode == (asked or 0)
        fake.cursor_modes = 7
        sc = portal_session.PortalSession(fake.env, cfg, remote_desktop=False)
        sc.stop()
        assert fake.named("SelectSources")[-1][1]["cursor_mode"] == 2
    with fake_portal(rd_version=2) as fake:
        # Version 2: the capture's session is the shared one, started in metadata mode
        # when the capture starts it.
        session = portal_session.acquire(fake.env, cfg, metadata=True)
        portal_session.release(session, grace=0)
        assert fake.named("SelectSources")[-1][1]["cursor_mode"] == 4


def test_probe_without_a_portal_says_so(tmp_path: Path) -> None:
    with fake_portal() as fake:
        empty = {"DBUS_SESSION_BUS_ADDRESS": fake.bus.replace("/bus", "/nobus")}
        assert "cannot reach" in (portal_session.probe(empty) or "")
    assert "no D-Bus session bus" in (
        portal_session.probe({"XDG_RUNTIME_DIR": str(tmp_path)}) or ""
    )
