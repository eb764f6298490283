"""The agent on KDE Plasma's compositor, KWin 5.27, run headless (tests/kde.py): the
clipboard through wlr-data-control both ways, and the portal backend against
xdg-desktop-portal-kde (its dialog answered once by KWin's fake input, the restore
token skipping it the next time) and backend selection.

Not tested here, because they do not work on this headless KWin: frames of the portal's
screen cast (KWin 5.27 starts the PipeWire stream, memfd buffers as there is no GPU for
dmabuf, but no frame reaches a consumer, ours or ``gst-launch-1.0 pipewiresrc``), and
keys typed through the portal (no terminal to show them: foot 1.13 dies of SIGFPE on
KWin's virtual output)."""

from __future__ import annotations

import concurrent.futures
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enkaku.agent.backends import select_backend
from enkaku.agent.clipboard.wlroots import WlrootsClipboard
from enkaku.agent.portal import session as portal_session
from tests.agent.test_wayland_clipboard import wl
from tests.e2e.harness import wait_for
from tests.kde import FakeInput, KWin, headless_kwin, missing, portal_missing

pytestmark = [
    pytest.mark.skipif(missing() is not None, reason=missing() or ""),
    pytest.mark.skipif(
        shutil.which("wl-copy") is None, reason="wl-clipboard missing: run scripts/bootstrap"
    ),
]
needs_portal = pytest.mark.skipif(portal_missing() is not None, reason=portal_missing() or "")


@pytest.fixture(scope="module")
def kwin() -> Iterator[KWin]:
    with headless_kwin(1280, 720, portal=portal_missing() is None) as k:
        yield k


@pytest.fixture(autouse=True)
def no_shared_session() -> Iterator[None]:
    yield
    portal_session._stop_all()


def in_thread(make: Any) -> concurrent.futures.Future[Any]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(make)
    pool.shutdown(wait=False)
    return future


def test_kwin_offers_wlr_data_control_and_the_clipboard_goes_both_ways(kwin: KWin) -> None:
    display = kwin.env["WAYLAND_DISPLAY"]
    with WlrootsClipboard(display) as clip:
        changes: list[int] = []
        clip.watch(lambda: changes.append(1))
        # The technician's text, for the customer's programs (wl-paste).
        text = "クリップボード ¥ 技術者から-7"
        clip.set_text(text)
        assert clip.read_text() == text
        assert wl(kwin, "wl-paste", "--no-newline").stdout.decode() == text
        assert changes == []  # our own text is no change from another program
        # The customer's copy, announced and read.
        wl(kwin, "wl-copy", "お客様のコピー ✓")
        wait_for(lambda: bool(changes), 30, "wl-copy's copy announced")
        wait_for(lambda: clip.read_text() == "お客様のコピー ✓", 30, "wl-copy's copy read")
        wl(kwin, "wl-copy", "--clear")
        wait_for(lambda: clip.read_text() is None, 30, "the emptied clipboard")


@needs_portal
def test_selection_on_kde_is_the_portal_with_the_data_control_clipboard(
    kwin: KWin, tmp_path: Path
) -> None:
    # KWin has no wlroots screencopy or virtual input: the portal serves screen and
    # input, and the clipboard comes from KWin's data-control protocol.
    capture, injector, clipboard = select_backend("auto", None, kwin.env, config_dir=tmp_path)
    assert capture is not None and injector is not None and clipboard is not None
    clip = clipboard()
    try:
        clip.set_text("選択 selection-3")
        assert wl(kwin, "wl-paste", "-n").stdout.decode() == "選択 selection-3"
    finally:
        clip.close()


@needs_portal
def test_one_dialog_then_the_restore_token_skips_it(kwin: KWin, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    token = cfg / portal_session.SC_TOKEN_NAME
    # Debian 12's xdg-desktop-portal 1.16: RemoteDesktop version 1, the screen-cast
    # session persists.
    assert portal_session.remote_desktop_version(kwin.env) == 1
    assert portal_session.probe(kwin.env) is None
    dialogs = kwin.dialogs
    first = in_thread(lambda: portal_session.PortalSession(kwin.env, cfg, remote_desktop=False))
    with FakeInput(str(kwin.socket)) as hand:
        kwin.answer(hand)  # the output chosen, Share
    session = first.result(60)
    try:
        assert session.size == (kwin.width, kwin.height) and session.node
        kept = token.read_text().strip()
        assert kept
    finally:
        session.stop()
    # The next session: the kept token, no dialog (nothing answers one here).
    second = in_thread(lambda: portal_session.PortalSession(kwin.env, cfg, remote_desktop=False))
    try:
        session = second.result(30)
    except concurrent.futures.TimeoutError:
        pytest.fail("the second session asked again: " + kwin.tail())
    try:
        assert session.restored_from == kept
        assert not kwin.dialog_shown()
        assert session.size == (kwin.width, kwin.height)
    finally:
        session.stop()
    assert token.read_text().strip()
    assert kwin.dialogs == dialogs + 1
