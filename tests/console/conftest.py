"""The web console in Debian's Chromium (Playwright, never a downloaded browser) against
a real server process and real agents.

The console is built once per run into a temporary folder (`npx vite build --outDir`)
and served from there (ENKAKU_CONSOLE_DIR), so a build running elsewhere in the checkout
cannot change the pages under a test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    LOGIN_PASSWORD,
    World,
    free_port,
    make_db,
    saved_token,
    server_process,
)

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER = "tech"
PASSWORD = LOGIN_PASSWORD

playwright_sync = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="session")
def console_dir() -> Iterator[Path]:
    """The console built from console/ into a folder of its own."""
    if shutil.which("npx") is None:
        raise RuntimeError("npx is missing: run scripts/bootstrap")
    out = Path(tempfile.mkdtemp(prefix="enkaku-console-"))
    subprocess.run(
        ["npx", "vite", "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "warn"],
        cwd=REPO / "console",
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (out / "session.html").exists()
    try:
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Not longer: while Playwright's synchronous API is
    started it keeps an event loop current in this thread, and other modules' tests
    call asyncio.run()."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Chromium is missing: apt-get install chromium")
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def new_page(browser: Any, locale: str = "en-US", width: int = 1280, height: int = 800) -> Any:
    context = browser.new_context(locale=locale, viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(60_000)
    # Anything the Content-Security-Policy blocked (an inline script, eval, a foreign
    # connection) is a bug of the pages: collected here, checked by csp_violations().
    page.csp_errors = []
    page.on(
        "console",
        lambda msg: (
            page.csp_errors.append(msg.text) if "Content Security Policy" in msg.text else None
        ),
    )
    return page


def csp_violations(page: Any) -> list[str]:
    return list(page.csp_errors)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    p = new_page(browser)
    try:
        yield p
        assert csp_violations(p) == []
    finally:
        p.context.close()


@pytest.fixture
def cworld(tmp_path: Path, console_dir: Path) -> Iterator[World]:
    """A real server serving the built console, a technician (CLI logged in too, for the
    API checks) and contract C-100."""
    w = World(tmp_path)
    try:
        w.db = make_db(tmp_path)  # type: ignore[attr-defined]
        w.port = free_port()  # type: ignore[attr-defined]
        server_process(w, w.db, w.port, env={"ENKAKU_CONSOLE_DIR": str(console_dir)})  # type: ignore[attr-defined]
        w.login()
        yield w
    finally:
        w.close()


def sign_in(page: Any, world: World, totp: str | None = None) -> None:
    """Sign in through the page (password only, or with a code) and wait for home."""
    page.goto(f"{world.server_url}/console/login.html")
    page.fill("#username", USER)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    if totp is not None:
        page.wait_for_selector("#totp", state="visible")
        page.fill("#totp", totp)
        page.click("#login-submit")
    page.wait_for_selector("#connect-form")
    page.wait_for_function("() => document.querySelectorAll('#contract option').length > 0")


def connect(page: Any, agent_id: str, password: str) -> None:
    """Fill the home page's connect form and press Connect."""
    page.fill("#agent-id", agent_id)
    page.fill("#otp", password)
    page.click("#connect-submit")


def api_get(world: World, path: str) -> dict[str, Any]:
    """GET /api/v1<path> with the CLI's token (what the console cannot fake)."""
    request = urllib.request.Request(
        f"{world.server_url}/api/v1{path}",
        headers={"Authorization": f"Bearer {saved_token(world)}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.load(response))


# Elements whose text must fit (and empty fields' placeholders): a label cut by its box
# is a layout bug.
OVERFLOW_CHECK = """() => {
  const bad = [];
  for (const e of document.querySelectorAll(
      'button, label, th, td, summary, h1, h2, h3, option, .status, .stat, p')) {
    if (e.offsetParent === null) continue;  // not shown
    if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'auto')
      bad.push(e.tagName + ': ' + e.textContent.trim().slice(0, 40));
  }
  // An empty field's placeholder: scrollWidth does not count it, so it is measured in a
  // span with the placeholder's font against the field's inner width.
  for (const e of document.querySelectorAll('input[placeholder], textarea[placeholder]')) {
    if (e.offsetParent === null || e.value !== '' || !e.placeholder) continue;
    const ph = getComputedStyle(e, '::placeholder');
    const box = getComputedStyle(e);
    const probe = document.createElement('span');
    probe.textContent = e.placeholder;
    for (const p of ['font-family', 'font-size', 'font-weight', 'font-style',
                     'letter-spacing', 'word-spacing'])
      probe.style.setProperty(p, ph.getPropertyValue(p) || box.getPropertyValue(p));
    probe.style.position = 'absolute';
    probe.style.visibility = 'hidden';
    probe.style.whiteSpace = 'pre';
    document.body.append(probe);
    const need = probe.getBoundingClientRect().width;
    probe.remove();
    const inner = e.clientWidth - parseFloat(box.paddingLeft) - parseFloat(box.paddingRight);
    if (need > inner + 1) bad.push('placeholder of #' + e.id + ': ' + e.placeholder.slice(0, 40));
  }
  return bad;
}"""


def cut_text(page: Any) -> list[str]:
    """Shown elements whose text does not fit their box (a cut-off label)."""
    return list(page.evaluate(OVERFLOW_CHECK))


def wait_connected(page: Any) -> None:
    """Wait until the session page shows the session connected; on a timeout, fail with
    what the page says instead (the state and the overlay's text)."""
    try:
        page.wait_for_selector("#status[data-state='connected']")
    except playwright_sync.TimeoutError:
        if page.query_selector("#status") is None:  # never reached the session page
            body = (page.text_content("body") or "").split()
            raise AssertionError(
                f"not on the session page: {page.url}, it says {' '.join(body)[:400]!r}"
            ) from None
        state = page.get_attribute("#status", "data-state")
        text = page.text_content("#overlay-text")
        raise AssertionError(
            f"session not connected: state {state!r}, page says {text!r}"
        ) from None
