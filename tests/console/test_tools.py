"""Every tool of the session page against a real agent: chat, system information, a
file each way with progress, a screenshot, a terminal command, "type this text"."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import World, wait_for, xterm_on
from tests.xdisplay import x_env, xvfb

from .conftest import connect, cut_text, sign_in, wait_connected

pytestmark = [pytest.mark.e2e, pytest.mark.x11]


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    work = tmp_path / "desk"
    work.mkdir()
    with xvfb(800, 600) as display, xterm_on(display, work):
        yield display, work


def tab(page: Any, panel: str) -> None:
    page.click(f"#tabs button[data-panel='panel-{panel}']")


def test_every_tool_from_the_page(
    cworld: World, desktop: tuple[str, Path], page: Any, tmp_path: Path
) -> None:
    display, work = desktop
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    agent = cworld.agent(display, "agent", "allow", "--incoming", str(incoming))
    creds = agent.next_line(60, event="credentials")
    sign_in(page, cworld)
    connect(page, creds["agent_id"], creds["password"])
    wait_connected(page)

    # Chat reaches the customer.
    tab(page, "chat")
    page.fill("#chat-text", "再起動してもよろしいですか? (chat-7Q)")
    page.click("#chat-form button[type='submit']")
    page.wait_for_selector(".chat-log .line.mine")
    wait_for(lambda: "(chat-7Q)" in agent.stderr(None), 30, "the chat line at the agent")

    # System information: the findings first, then the sections.
    tab(page, "sysinfo")
    page.click("#sysinfo-get")
    page.wait_for_selector("#sysinfo-report h3")
    first = page.eval_on_selector("#sysinfo-report", "r => r.firstElementChild.tagName")
    assert first == "H3"  # the findings heading comes first
    assert page.locator("#sysinfo-report details").count() >= 3

    # A file to the customer, with progress.
    tab(page, "files")
    payload = os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "send.bin"
    local.write_bytes(payload)
    page.set_input_files("#files-input", str(local))
    page.wait_for_selector(".transfer[data-direction='send'][data-state='done']")
    done = page.get_attribute(".transfer[data-direction='send']", "data-done")
    assert done == str(len(payload))
    assert hashlib.sha256((incoming / "send.bin").read_bytes()).digest() == (
        hashlib.sha256(payload).digest()
    )

    # Again: refused while a file of that name is there, replaced once asked to.
    page.set_input_files("#files-input", str(local))
    page.wait_for_selector(".transfer[data-direction='send'][data-state='failed']")
    assert page.text_content(".transfer[data-state='failed'] .hint") == (
        "A file of that name already exists there; ask again with overwrite to replace it."
    )
    changed = os.urandom(1000)
    local.write_bytes(changed)
    page.check("#files-overwrite")
    page.set_input_files("#files-input", str(local))
    page.wait_for_function(
        "() => document.querySelectorAll(\".transfer[data-direction='send'][data-state='done']\")"
        ".length === 2"
    )
    assert (incoming / "send.bin").read_bytes() == changed

    # The data used counts what crossed the channel, the file included.
    page.wait_for_function(
        f"() => Number(document.getElementById('data-used').dataset.bytes) > {len(payload)}"
    )

    # A file from the customer: browse their folder, take it.
    wanted = os.urandom(2 * 1024 * 1024 + 5)
    (work / "report.bin").write_bytes(wanted)
    page.fill("#browse-path", str(work))
    page.click("#browse-go")
    page.wait_for_selector("#browse-list [data-take='report.bin']")
    with page.expect_download() as info:
        page.click("#browse-list [data-take='report.bin']")
    download = info.value
    assert download.suggested_filename == "report.bin"
    assert Path(download.path()).read_bytes() == wanted
    row = ".transfer[data-direction='take'][data-state='done']"
    page.wait_for_selector(row)
    assert page.get_attribute(row, "data-done") == str(len(wanted))

    # A screenshot.
    tab(page, "screenshot")
    page.click("#screenshot-take")
    page.wait_for_selector("#screenshot-image:not([hidden])")
    assert page.get_attribute("#screenshot-image", "data-width") == "800"
    assert page.get_attribute("#screenshot-image", "data-height") == "600"

    # Nothing cut off in English either, with transfers and a listing shown.
    assert cut_text(page) == []

    # A terminal command.
    tab(page, "terminal")
    page.click("#terminal-open")
    page.wait_for_selector("#terminal .xterm-screen")
    page.click("#terminal .xterm-screen")
    target = tmp_path / "term.txt"
    page.keyboard.type(f"echo terminal-ok > {target}\n")
    wait_for(lambda: target.exists() and target.read_text() == "terminal-ok\n", 30, "the command")

    # "Type this text" into the remote xterm (the pointer on it gives it the keyboard).
    subprocess.run(["xdotool", "mousemove", "200", "150"], env=x_env(display), check=True)
    tab(page, "type")
    page.fill("#type-text", 'echo "typed ok" > typed.txt\n')
    page.click("#type-form button[type='submit']")
    page.wait_for_selector("#type-message[data-kind='ok']")
    out = work / "typed.txt"
    wait_for(lambda: out.exists() and out.read_text() == "typed ok\n", 30, "the typed text")
