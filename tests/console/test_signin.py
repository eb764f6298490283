"""Sign-in to the console with a password and the authenticator code (enrolled through
the page's account dialog), a wrong code refused, a recovery code, and the lockout."""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from base64 import b32decode
from typing import Any

import pytest

from tests.e2e.harness import World

from .conftest import PASSWORD, USER, csp_violations, new_page

pytestmark = pytest.mark.e2e


def totp_at(secret: str, step: int) -> str:
    """RFC 6238 (SHA-1, 6 digits, 30 s), written here so the test does not trust the
    server's own code."""
    key = b32decode(secret.replace(" ", "").upper() + "=" * (-len(secret.replace(" ", "")) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 1_000_000).zfill(6)


def now_step() -> int:
    return int(time.time() // 30)


def error_after_submit(page: Any) -> str:
    """Press Sign in and return the error shown once the answer came."""
    page.click("#login-submit")
    page.wait_for_selector("#login-submit:not([disabled])")
    page.wait_for_selector("#login-message[data-kind='error']")
    return str(page.text_content("#login-message"))


def password_step(page: Any, world: World, user: str = USER, password: str = PASSWORD) -> None:
    page.goto(f"{world.server_url}/console/login.html")
    page.fill("#username", user)
    page.fill("#password", password)


def test_password_and_authenticator_code(cworld: World, browser: Any) -> None:
    page = new_page(browser)
    # Signed in with the password alone, the technician turns on two-step sign-in.
    password_step(page, cworld)
    page.click("#login-submit")
    page.wait_for_selector("#connect-form")
    page.click("#account-menu summary")
    page.click("#open-account")
    assert page.text_content("#totp-state") == (
        "Two-step sign-in is off. Turn it on to protect your account with an authenticator app."
    )
    page.fill("#totp-start-password", PASSWORD)
    page.click("#totp-start-button")
    page.wait_for_selector("#totp-confirm:not([hidden])")
    assert page.get_attribute("#totp-qr", "src").startswith("data:image/svg+xml")
    secret = str(page.text_content("#totp-secret")).replace(" ", "")
    used = now_step()
    page.fill("#totp-confirm-code", totp_at(secret, used))
    page.click("#totp-confirm button[type='submit']")
    page.wait_for_selector("#recovery-codes:not([hidden])")
    codes = [str(c) for c in page.locator("#recovery-list li").all_text_contents()]
    assert len(codes) == 10 and len(set(codes)) == 10
    page.click("#recovery-done")
    assert page.locator("#recovery-list li").count() == 0  # shown once
    page.keyboard.press("Escape")
    page.click("#account-menu summary")
    page.click("#sign-out")
    page.wait_for_url("**/login.html")

    # The password alone is not enough any more: the page asks for the code.
    password_step(page, cworld)
    page.click("#login-submit")
    page.wait_for_selector("#totp", state="visible")
    assert page.text_content("#login-message") == "Enter the code from your authenticator app."
    # A wrong code is refused with its own words.
    wrong = "000000" if totp_at(secret, now_step()) != "000000" else "111111"
    page.fill("#totp", wrong)
    assert error_after_submit(page).startswith("That authentication code is not right.")
    # The right code (a step after the one the enrolment spent) signs in.
    page.fill("#totp", totp_at(secret, max(now_step(), used + 1)))
    page.click("#login-submit")
    page.wait_for_selector("#connect-form")
    page.click("#account-menu summary")
    assert page.text_content("#signed-in-as") == "Signed in as Taro Tanaka"
    page.click("#sign-out")
    page.wait_for_url("**/login.html")

    # A recovery code instead of the app's code, once.
    for attempt in range(2):
        password_step(page, cworld)
        page.click("#login-submit")
        page.wait_for_selector("#use-recovery", state="visible")
        page.click("#use-recovery")
        page.fill("#recovery", codes[0])
        if attempt == 0:
            page.click("#login-submit")
            page.wait_for_selector("#connect-form")
            page.click("#account-menu summary")
            page.click("#sign-out")
            page.wait_for_url("**/login.html")
        else:
            assert error_after_submit(page) == "That recovery code is not valid or has been used."
    # Another recovery code signs in; the account dialog counts what is left and makes a
    # new set (with the password and a recovery code), shown once.
    page.fill("#recovery", codes[1])
    page.click("#login-submit")
    page.wait_for_selector("#connect-form")
    page.click("#account-menu summary")
    page.click("#open-account")
    assert page.text_content("#recovery-left") == "Recovery codes left: 8 of 10."
    page.fill("#totp-disable-password", PASSWORD)
    page.fill("#totp-disable-code", codes[2])
    page.click("#recovery-renew")
    page.wait_for_selector("#recovery-codes:not([hidden])")
    renewed = [str(c) for c in page.locator("#recovery-list li").all_text_contents()]
    assert len(renewed) == 10 and not set(renewed) & set(codes)
    assert page.text_content("#recovery-left") == "Recovery codes left: 10 of 10."
    assert csp_violations(page) == []
    page.context.close()


def test_wrong_passwords_lock_the_account_out(cworld: World, page: Any) -> None:
    # An unknown user and a wrong password read the same.
    password_step(page, cworld, user="nobody")
    assert error_after_submit(page) == "Wrong user name or password."
    password_step(page, cworld, password="not the password")
    seen = []
    for _ in range(12):
        message = error_after_submit(page)
        seen.append(message)
        if message.startswith("Too many failed attempts."):
            break
        assert message == "Wrong user name or password."
    assert seen[-1].startswith("Too many failed attempts. Try again in ")
    # Locked out: the right password is refused too, with the wait.
    page.fill("#password", PASSWORD)
    assert error_after_submit(page).startswith("Too many failed attempts. Try again in ")
    assert page.url.endswith("/login.html")


def test_password_change_from_the_account_dialog(cworld: World, page: Any) -> None:
    new = "a new and longer passphrase"
    password_step(page, cworld)
    page.click("#login-submit")
    page.wait_for_selector("#connect-form")
    page.click("#account-menu summary")
    page.click("#open-account")
    page.fill("#pw-current", PASSWORD)
    page.fill("#pw-new", new)
    page.fill("#pw-again", new + "x")
    page.click("#password-form button[type='submit']")
    assert page.text_content("#password-message") == "The two new passwords differ."
    page.fill("#pw-again", new)
    page.click("#password-form button[type='submit']")
    page.wait_for_selector("#password-message[data-kind='ok']")
    assert page.text_content("#password-message") == "Your password has been changed."
    page.keyboard.press("Escape")
    page.click("#account-menu summary")
    page.click("#sign-out")
    page.wait_for_url("**/login.html")
    password_step(page, cworld)  # the old password
    assert error_after_submit(page) == "Wrong user name or password."
    password_step(page, cworld, password=new)
    page.click("#login-submit")
    page.wait_for_selector("#connect-form")
