"""The home page: only contracts valid today, the ID grouped as it is typed."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import date
from typing import Any

import pytest

from tests.e2e.harness import ENKAKU, World

from .conftest import PASSWORD, USER, csp_violations, cut_text, new_page, sign_in

pytestmark = pytest.mark.e2e


def add_contract(world: World, code: str, *extra: str) -> None:
    subprocess.run(
        [ENKAKU, "contract", "--db", world.db, "add", code, "--customer", "Other", *extra],  # type: ignore[attr-defined]
        env=world.env(),
        check=True,
        capture_output=True,
        timeout=60,
    )


def admin(world: World, *args: str) -> str:
    """`enkaku admin ARGS` on the server's database; its output."""
    done = subprocess.run(
        [ENKAKU, "admin", *args],
        env=world.env(ENKAKU_DB=world.db),  # type: ignore[attr-defined]
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


def enrolled_agent(world: World, customer: str, name: str) -> str:
    """A headless agent linked to ``customer`` by an enrolment code; its ID."""
    printed = admin(world, "enrol", "create", customer)
    found = re.search(r"--enrol ([0-9A-Z]{4}(?:-[0-9A-Z]{4}){3})", printed)
    assert found, "no enrolment code printed"
    agent = world.agent(None, name, "allow", "--enrol", found.group(1))
    return str(agent.next_line(60, event="credentials")["agent_id"])


def options(page: Any) -> list[str]:
    return list(page.locator("#contract option").all_text_contents())


def test_contracts_usable_for_the_typed_id(cworld: World, page: Any) -> None:
    # Beta has a contract; Gamma only one without remote support. C-100 is Example Ltd's.
    admin(cworld, "customer", "add", "Beta K.K.")
    admin(cworld, "contract", "add", "C-200", "--customer", "Beta K.K.")
    admin(cworld, "customer", "add", "Gamma")
    admin(cworld, "contract", "add", "C-300", "--customer", "Gamma", "--no-remote-support")
    beta = enrolled_agent(cworld, "Beta K.K.", "beta")
    gamma = enrolled_agent(cworld, "Gamma", "gamma")
    sign_in(page, cworld)
    everything = ["C-100 — Example Ltd", "C-200 — Beta K.K."]
    assert options(page) == everything  # before an ID is typed: all valid today
    assert page.is_hidden("#connect-message")

    page.fill("#agent-id", beta)
    page.wait_for_function("() => document.querySelectorAll('#contract option').length === 1")
    assert options(page) == ["C-200 — Beta K.K."]
    # One digit less: the whole list again.
    page.click("#agent-id")
    page.keyboard.press("End")
    page.keyboard.press("Backspace")
    page.wait_for_function("() => document.querySelectorAll('#contract option').length === 2")
    assert options(page) == everything

    # A machine of a customer without a usable contract: nothing to choose, and why.
    page.fill("#agent-id", gamma)
    page.wait_for_selector("#connect-message:not([hidden])")
    assert options(page) == []
    assert page.is_disabled("#contract")
    shown = f"{gamma[:3]} {gamma[3:6]} {gamma[6:]}"
    assert page.text_content("#connect-message") == (
        f"No contract can be billed for machine {shown}: its customer has no contract that "
        "includes remote support and is valid today. Ask an admin to check the customer's "
        "contracts."
    )
    page.click("#lang-switch")
    assert str(page.text_content("#connect-message")).startswith(
        f"マシン {shown} に請求できる契約がありません。"
    )
    # Connect does not go ahead without a contract.
    page.fill("#otp", "abcd2345")
    page.click("#connect-submit")
    page.wait_for_selector("#connect-submit:not([disabled])")
    assert str(page.text_content("#connect-message")).startswith(f"マシン {shown} に")
    assert page.url.endswith("/console/")

    # A machine not linked to a customer yet: every contract valid today.
    page.fill("#agent-id", "000000001")
    page.wait_for_function("() => document.querySelectorAll('#contract option').length === 2")
    assert page.is_hidden("#connect-message")


def test_contracts_valid_today_and_the_id_format(cworld: World, page: Any) -> None:
    # A contract's last day still counts; one without remote support never does. (The
    # CLI cannot make a contract that has already ended: console/test/ui covers that.)
    today = date.today().isoformat()
    add_contract(cworld, "C-LASTDAY", "--valid-until", today)
    add_contract(cworld, "C-NOREMOTE", "--no-remote-support")
    sign_in(page, cworld)
    options = page.locator("#contract option").all_text_contents()
    assert options == ["C-100 — Example Ltd", "C-LASTDAY — Other"]
    page.click("#agent-id")
    page.keyboard.type("12345678")
    assert page.input_value("#agent-id") == "123 456 78"
    page.keyboard.type("9")
    assert page.input_value("#agent-id") == "123 456 789"
    # The one-time password is a password field and is never put in the address.
    assert page.get_attribute("#otp", "type") == "password"


def test_japanese_home_fits_at_1280(cworld: World, browser: Any) -> None:
    # The empty ID field's placeholder was cut off in Japanese ("9 桁の数字 (例: 123 456").
    page = new_page(browser, locale="ja-JP", width=1280, height=800)
    try:
        sign_in(page, cworld)
        assert page.input_value("#agent-id") == ""
        assert page.get_attribute("#agent-id", "placeholder")
        assert cut_text(page) == []
        assert csp_violations(page) == []
    finally:
        page.context.close()


def test_typing_while_the_lists_load_keeps_the_field_and_its_keys(cworld: World, page: Any) -> None:
    """The home page focuses the ID field when it has loaded, but not onto a technician
    who is already typing: keys typed into the password field while the recent sessions
    are still on their way stay there (they used to land in the full ID field, lost)."""
    release: list[Any] = []
    page.route("**/api/v1/sessions?limit=*", lambda route: release.append(route))
    page.goto(f"{cworld.server_url}/console/login.html")
    page.fill("#username", USER)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_function("() => document.querySelectorAll('#contract option').length > 0")
    deadline = time.monotonic() + 30
    while not release and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # the page's request for its recent sessions, held
    assert release, "the home page never asked for its recent sessions"
    page.fill("#agent-id", "123456789")
    page.click("#otp")
    page.keyboard.type("ABCD-EFGH")
    release[0].continue_()  # the lists finish loading now
    page.wait_for_function("() => !document.querySelector('#recent-none').hidden"
                           " || !document.querySelector('#recent').hidden")  # fmt: skip
    page.keyboard.type("-JK")
    assert page.evaluate("() => document.activeElement.id") == "otp"
    assert page.input_value("#otp") == "ABCD-EFGH-JK"
    assert page.input_value("#agent-id") == "123 456 789"


def test_sign_out_before_the_page_has_its_token_signs_out(cworld: World, page: Any) -> None:
    """Sign out clicked while the home page's own GET /auth/console (which hands it the
    CSRF token) is still on its way: the console asks for the token first and signs out,
    rather than sending a refused DELETE and landing on a sign-in page that bounces back
    (seen as a flaky sign-in test)."""
    held: list[Any] = []
    sign_in(page, cworld)

    def hold_first(route: Any) -> None:
        if route.request.method == "GET" and not held:
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/v1/auth/console", hold_first)
    page.reload()
    page.wait_for_selector("#connect-form")
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the home page never asked who is signed in"
    page.click("#account-menu summary")
    page.click("#sign-out")
    page.wait_for_url("**/login.html")
    held[0].continue_()
    page.wait_for_timeout(500)  # a bounce back to home would come now
    assert page.url.endswith("/login.html")
    status = page.evaluate("async () => (await fetch('/api/v1/auth/console')).status")
    assert status == 401


@pytest.mark.parametrize("locale", ["en-US", "ja-JP"])
def test_a_failed_sign_out_says_so_and_stays(cworld: World, browser: Any, locale: str) -> None:
    """A sign-out the server does not take (here it answers 503) leaves the technician on
    the home page with a message in their language, still signed in, rather than on a
    sign-in page that sends them straight back."""
    page = new_page(browser, locale=locale)
    sign_in(page, cworld)
    page.route(
        "**/api/v1/auth/console",
        lambda route: (
            route.fulfill(status=503, body="")
            if route.request.method == "DELETE"
            else route.continue_()
        ),
    )
    page.click("#account-menu summary")
    page.click("#sign-out")
    page.wait_for_selector("#connect-message[data-kind='error']")
    text = str(page.text_content("#connect-message"))
    expected = {
        "en-US": "Could not sign out; you are still signed in. "
        "The server answered with an error (503).",
        "ja-JP": "サインアウトできませんでした。サインインしたままです。"
        "サーバーがエラーを返しました (503)。",
    }[locale]
    assert text == expected
    assert page.url.endswith("/console/")
    # The open menu's "signed in as" line is one line in either language (the Japanese
    # one used to wrap its last character).
    lines = page.evaluate(
        """() => { const r = document.createRange();
        r.selectNodeContents(document.getElementById('signed-in-as'));
        return new Set([...r.getClientRects()].map((b) => Math.round(b.top))).size; }"""
    )
    assert lines == 1
    page.unroute("**/api/v1/auth/console")
    page.click("#sign-out")  # the menu stays open for another try
    page.wait_for_url("**/login.html")
