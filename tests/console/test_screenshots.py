"""Screenshots of the sign-in, home and session pages in Japanese, taken from a real run.

They go to the test's temporary folder; with ENKAKU_CONSOLE_SCREENSHOTS=DIR (what
scripts/console-screenshots sets) they are written there too, e.g. docs/images.
Each page is also checked for text that does not fit its box (a cut-off label).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import World, xterm_on
from tests.xdisplay import xvfb

from .conftest import PASSWORD, USER, connect, csp_violations, cut_text, new_page, wait_connected
from .keys import type_text

pytestmark = [pytest.mark.e2e, pytest.mark.x11]


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[str]:
    work = tmp_path / "desk"
    work.mkdir()
    with xvfb(1024, 768) as display, xterm_on(display, work):
        yield display


def shoot(page: Any, name: str, tmp_path: Path) -> Path:
    assert cut_text(page) == [], name
    path = tmp_path / f"console-{name}-ja.png"
    page.screenshot(path=str(path))
    target = os.environ.get("ENKAKU_CONSOLE_SCREENSHOTS")
    if target:
        shutil.copyfile(path, Path(target) / path.name)
    return path


def test_japanese_screenshots(cworld: World, desktop: str, browser: Any, tmp_path: Path) -> None:
    page = new_page(browser, locale="ja-JP", width=1280, height=800)
    try:
        page.goto(f"{cworld.server_url}/console/login.html")
        assert page.text_content("h1") == "サインイン"
        page.fill("#username", USER)
        shoot(page, "login", tmp_path)
        page.fill("#password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_selector("#connect-form")
        page.wait_for_function("() => document.querySelectorAll('#contract option').length > 0")

        agent = cworld.agent(desktop, "agent", "allow")
        creds = agent.next_line(60, event="credentials")
        connect(page, creds["agent_id"], creds["password"])
        wait_connected(page)
        page.wait_for_selector("#screen canvas")
        # Something on the customer's screen: a command typed from the page.
        page.click("#screen canvas", position={"x": 120, "y": 120})
        type_text(page, "ls -l /etc/X11\n")
        page.click("#tabs button[data-panel='panel-chat']")
        page.fill("#chat-text", "画面を確認しています。少々お待ちください。")
        page.click("#chat-form button[type='submit']")
        page.wait_for_selector(".chat-log .line.mine")
        page.wait_for_function("() => document.getElementById('latency').textContent !== '—'")
        page.wait_for_function(
            "() => Number(document.getElementById('data-used').dataset.bytes) > 0"
        )
        assert page.text_content("#status") == "接続済み"
        shoot(page, "session", tmp_path)

        page.click("#end-session")
        page.click("#end-form button[type='submit']")
        page.wait_for_selector("#status[data-state='ended']")
        page.click("#overlay-home")
        page.wait_for_selector("#recent tbody tr")
        assert "技術者が終了しました" in str(page.text_content("#recent tbody"))
        page.fill("#agent-id", "123456789")
        shoot(page, "home", tmp_path)
        assert csp_violations(page) == []
    finally:
        page.context.close()
