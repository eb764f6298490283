"""End session from the page with a reason of the terms and a comment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import World, wait_for
from tests.xdisplay import xvfb

from .conftest import api_get, connect, sign_in, wait_connected

pytestmark = [pytest.mark.e2e, pytest.mark.x11]


def test_end_with_a_policy_reason_and_comment(cworld: World, page: Any, tmp_path: Path) -> None:
    with xvfb(640, 480) as display:
        agent = cworld.agent(display, "agent", "allow")
        creds = agent.next_line(60, event="credentials")
        sign_in(page, cworld)
        connect(page, creds["agent_id"], creds["password"])
        wait_connected(page)
        session_id = page.get_attribute("body", "data-session-id")
        assert session_id
        page.click("#end-session")
        page.select_option("#end-reason", "malware_found")
        # A policy reason without a comment is refused in the page.
        page.click("#end-form button[type='submit']")
        assert page.text_content("#end-message") == "A comment is required for this reason."
        comment = "Ransomware note on the desktop; the customer was told to call the police."
        page.fill("#end-comment", comment)
        page.click("#end-form button[type='submit']")
        # The page ends, saying why.
        page.wait_for_selector("#status[data-state='ended']")
        assert page.text_content("#overlay-text") == "Session ended: malware was found."
        assert page.is_visible("#overlay-home")
        assert page.is_disabled("#end-session")
        # The agent ended too, and drew a new one-time password.
        new = agent.next_line(60, event="credentials")
        assert new["agent_id"] == creds["agent_id"]
        assert new["password"] != creds["password"]
        wait_for(lambda: "malware was found" in agent.stderr(), 30, "the agent's end message")
        # The record holds the reason, the comment and who asserted it.
        record = wait_for(
            lambda: (r := api_get(cworld, f"/sessions/{session_id}"))["ended_at"] and r,
            30,
            "the ended record",
        )
        assert record["end_reason"] == "malware_found"
        assert record["end_comment"] == comment
        assert record["end_asserted_by"] == "technician"
        assert record["ended_by_technician_id"] is not None


def test_end_still_ends_when_the_sign_in_has_expired(cworld: World, page: Any) -> None:
    agent = cworld.agent(None, "agent", "allow")
    creds = agent.next_line(60, event="credentials")
    sign_in(page, cworld)
    connect(page, creds["agent_id"], creds["password"])
    wait_connected(page)
    session_id = page.get_attribute("body", "data-session-id")
    page.context.clear_cookies()  # the console sign-in is gone
    page.click("#end-session")
    page.click("#end-form button[type='submit']")
    page.wait_for_selector("#status[data-state='ended']")
    assert page.text_content("#overlay-text") == "Session ended: the technician ended it."
    assert agent.next_line(60, event="credentials")["password"] != creds["password"]
    record = wait_for(
        lambda: (r := api_get(cworld, f"/sessions/{session_id}"))["ended_at"] and r,
        30,
        "the ended record",
    )
    assert (record["end_reason"], record["end_asserted_by"]) == ("technician_ended", "technician")
