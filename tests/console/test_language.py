"""The page's language: the browser's first, then the switch, remembered."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.harness import World

from .conftest import csp_violations, new_page

pytestmark = pytest.mark.e2e


def test_browser_language_then_the_switch_is_remembered(cworld: World, browser: Any) -> None:
    page = new_page(browser, locale="ja-JP")
    try:
        page.goto(f"{cworld.server_url}/console/login.html")
        assert page.text_content("h1") == "サインイン"
        assert page.get_attribute("html", "lang") == "ja"
        assert page.title() == "サインイン — enkaku コンソール"
        page.click("#lang-switch")
        assert page.text_content("h1") == "Sign in"
        assert page.get_attribute("html", "lang") == "en"
        assert page.text_content("#lang-switch") == "日本語"
        page.reload()
        assert page.text_content("h1") == "Sign in"  # remembered
        # A failure shown after the switch is in the chosen language.
        page.fill("#username", "nobody")
        page.fill("#password", "x")
        page.click("#login-submit")
        page.wait_for_selector("#login-message[data-kind='error']")
        assert page.text_content("#login-message") == "Wrong user name or password."
        assert csp_violations(page) == []
    finally:
        page.context.close()
