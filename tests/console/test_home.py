"""The home page: only contracts valid today, the ID grouped as it is typed."""

from __future__ import annotations

import subprocess
from datetime import date
from typing import Any

import pytest

from tests.e2e.harness import ENKAKU, World

from .conftest import csp_violations, cut_text, new_page, sign_in

pytestmark = pytest.mark.e2e


def add_contract(world: World, code: str, *extra: str) -> None:
    subprocess.run(
        [ENKAKU, "contract", "--db", world.db, "add", code, "--customer", "Other", *extra],  # type: ignore[attr-defined]
        env=world.env(),
        check=True,
        capture_output=True,
        timeout=60,
    )


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
