"""Each way a connection fails has its own words in the page: wrong one-time password,
an ID that is not online, the customer refusing, terms of use not accepted."""

from __future__ import annotations

import os
import signal
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from enkaku.server.terms import terms_today
from tests.e2e.harness import World, free_port, make_db, server_process, wait_for
from tests.e2e.test_consent import Terminal
from tests.e2e.test_terms import TERMS_V1, only_agent_id, publish
from tests.xdisplay import xvfb, xvfb_pid

from .conftest import connect, sign_in, wait_connected
from .test_screen import open_session, wait_screen

pytestmark = pytest.mark.e2e

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def wrong(password: str) -> str:
    """The same password with its last character changed (still well-formed)."""
    last = password[-1]
    return password[:-1] + ALPHABET[(ALPHABET.index(last) + 1) % len(ALPHABET)]


def overlay_text(page: Any) -> str:
    page.wait_for_selector("#status[data-state='ended']")
    return str(page.text_content("#overlay-text"))


def test_wrong_password_then_the_right_one(cworld: World, page: Any) -> None:
    agent = cworld.agent(None, "agent", "allow")
    creds = agent.next_line(60, event="credentials")
    sign_in(page, cworld)
    connect(page, creds["agent_id"], wrong(creds["password"]))
    assert overlay_text(page).startswith("Wrong one-time password.")
    # Back home, the right password connects (one of the customer's attempts was spent).
    page.click("#overlay-home")
    page.wait_for_selector("#connect-form")
    connect(page, creds["agent_id"], creds["password"])
    wait_connected(page)


def test_an_id_that_is_not_online(cworld: World, page: Any) -> None:
    sign_in(page, cworld)
    connect(page, "123456789", "k3m9-x2qa")
    page.wait_for_selector("#connect-message[data-kind='error']")
    assert page.text_content("#connect-message") == (
        "The computer with this ID is not online. Ask the customer to start enkaku and "
        "read the ID again."
    )
    assert page.url.endswith("/console/")  # still on the home page


def test_the_customer_refuses(cworld: World, page: Any) -> None:
    agent = cworld.agent(None, "agent", "deny")
    creds = agent.next_line(60, event="credentials")
    sign_in(page, cworld)
    connect(page, creds["agent_id"], creds["password"])
    assert overlay_text(page) == "The customer did not allow the session."


def test_terms_not_accepted(tmp_path: Path, console_dir: Path, page: Any) -> None:
    world = World(tmp_path)
    terminal = Terminal()
    try:
        db = make_db(tmp_path)
        today: date = terms_today()
        assert publish(world, db, TERMS_V1, "1", today.isoformat()).returncode == 0
        server_process(world, db, free_port(), env={"ENKAKU_CONSOLE_DIR": str(console_dir)})
        # The agent asks its customer to accept the terms; nobody has answered yet.
        world.agent(None, "agent", "deny", stdin=terminal.slave, prefix=("setsid", "-c"))
        terminal.read_until(b"[y/N]")
        agent_id = wait_for(lambda: only_agent_id(db), what="the agent's row")
        sign_in(page, world)
        connect(page, agent_id, "k3m9-x2qa")
        page.wait_for_selector("#connect-message[data-kind='error']")
        assert page.text_content("#connect-message") == (
            "The customer has not accepted the current terms of service. Ask them to accept "
            "the terms in enkaku first."
        )
    finally:
        world.close()
        terminal.close()


def test_a_computer_without_a_screen_keeps_the_tools(cworld: World, page: Any) -> None:
    agent = cworld.agent(None, "agent", "allow")  # no display at all
    creds = agent.next_line(60, event="credentials")
    sign_in(page, cworld)
    connect(page, creds["agent_id"], creds["password"])
    page.wait_for_selector("#screen-notice:not([hidden])")
    assert page.get_attribute("#screen-notice", "data-reason") == "no_display"
    assert str(page.text_content("#screen-notice")).startswith(
        "The customer's computer has no screen to share"
    )
    assert page.get_attribute("#status", "data-state") == "connected"
    page.click("#tabs button[data-panel='panel-chat']")
    page.fill("#chat-text", "no-screen chat 5R")
    page.click("#chat-form button[type='submit']")
    wait_for(lambda: "no-screen chat 5R" in agent.stderr(None), 30, "the chat line")


@pytest.mark.x11
def test_a_screen_that_goes_away_says_so_and_keeps_the_tools(cworld: World, page: Any) -> None:
    with xvfb(640, 480) as display:
        agent, _creds = open_session(page, cworld, display)
        wait_screen(page)
        assert page.is_hidden("#screen-notice")
        os.kill(xvfb_pid(display), signal.SIGKILL)  # the customer's X server dies
        page.wait_for_selector("#screen-notice:not([hidden])")
        assert page.get_attribute("#screen-notice", "data-reason") == "screen_failed"
        assert str(page.text_content("#screen-notice")).startswith(
            "The customer's screen could not be shared, or stopped being shared"
        )
        # In the other language too, switched after the notice was shown.
        page.click("#lang-switch")
        assert str(page.text_content("#screen-notice")).startswith(
            "お客様の画面を共有できないか、共有が止まりました"
        )
        page.click("#lang-switch")
        # The session goes on: the chat still reaches the customer.
        assert page.get_attribute("#status", "data-state") == "connected"
        page.click("#tabs button[data-panel='panel-chat']")
        page.fill("#chat-text", "screen-gone chat 7Q")
        page.click("#chat-form button[type='submit']")
        wait_for(lambda: "screen-gone chat 7Q" in agent.stderr(None), 30, "the chat line")
    assert "the screen stopped" in agent.stderr(None)


def test_a_typo_that_cannot_be_a_password_costs_no_attempt(cworld: World, page: Any) -> None:
    agent = cworld.agent(None, "agent", "allow")
    creds = agent.next_line(60, event="credentials")
    sign_in(page, cworld)
    connect(page, creds["agent_id"], "k3m9-x2q!")
    page.wait_for_selector("#connect-message[data-kind='error']")
    assert str(page.text_content("#connect-message")).startswith("That is not a one-time password")
    assert page.url.endswith("/console/")  # nothing was asked of the customer's computer
    connect(page, creds["agent_id"], creds["password"])
    wait_connected(page)
    assert "wrong password" not in agent.stderr(None)


def test_the_customers_computer_going_offline(cworld: World, page: Any) -> None:
    agent = cworld.agent(None, "agent", "allow")
    creds = agent.next_line(60, event="credentials")
    sign_in(page, cworld)
    connect(page, creds["agent_id"], creds["password"])
    wait_connected(page)
    agent.proc.kill()  # the customer's computer drops off the network, no goodbye
    assert overlay_text(page).startswith("The customer's computer went offline")


def test_the_connection_lost(cworld: World, page: Any) -> None:
    agent = cworld.agent(None, "agent", "allow")
    creds = agent.next_line(60, event="credentials")
    sign_in(page, cworld)
    connect(page, creds["agent_id"], creds["password"])
    wait_connected(page)
    server = next(p for p in cworld.procs if p.name == "server")
    server.proc.kill()  # the relay vanishes without closing anything
    assert overlay_text(page) == "The connection was lost."
