"""A contract past its monthly allowance: the session goes ahead and the session page
shows the server's warning in the page's language until the technician closes it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.harness import World

from .conftest import connect, sign_in, wait_connected
from .test_home import admin

pytestmark = pytest.mark.e2e


def end_from_the_page(page: Any) -> None:
    page.click("#end-session")
    page.click("#end-form button[type='submit']")
    page.wait_for_selector("#status[data-state='ended']")


def test_allowance_warning_on_the_session_page(cworld: World, page: Any) -> None:
    admin(cworld, "contract", "edit", "C-100", "--monthly-sessions", "1")
    agent = cworld.agent(None, "agent", "allow")
    creds = agent.next_line(60, event="credentials")
    sign_in(page, cworld)

    # The month's first session is within the allowance: no warning.
    connect(page, creds["agent_id"], creds["password"])
    wait_connected(page)
    assert page.is_hidden("#session-warning")
    end_from_the_page(page)
    creds = agent.next_line(60, event="credentials")

    # The second goes ahead, with the warning.
    page.click("#overlay-home")
    page.wait_for_function("() => document.querySelectorAll('#contract option').length > 0")
    connect(page, creds["agent_id"], creds["password"])
    wait_connected(page)
    assert page.is_visible("#session-warning")
    assert page.text_content("#session-warning-text") == (
        "Contract C-100 is past its monthly allowance: this is session 2 of 1 included this "
        "month. The session is recorded as usual."
    )
    page.click("#lang-switch")  # the server's message in the other language
    assert page.text_content("#session-warning-text") == (
        "契約 C-100 は今月の上限を超えています: 今月 1 回までのところ、このセッションは 2 回目"
        "です。セッションは通常どおり記録されます。"
    )
    assert page.text_content("#session-warning-close") == "閉じる"
    page.click("#session-warning-close")
    assert page.is_hidden("#session-warning")
    assert page.get_attribute("#status", "data-state") == "connected"  # the session goes on
    end_from_the_page(page)
