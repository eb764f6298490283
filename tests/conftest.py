"""Settings every test shares."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Messages in English whatever the developer's locale (LANG=ja_JP would otherwise
    turn errors that tests match on into Japanese); a test that wants Japanese sets
    ENKAKU_LANG=ja itself.

    Set once, before any test starts a thread: changing the process environment around
    every test (an autouse monkeypatch) raced with libX11 reading it in the X tests'
    worker threads and made XOpenDisplay fail now and then.
    """
    os.environ["ENKAKU_LANG"] = "en"
    # The technician's terminal starts /bin/sh, not this machine's login shell: a login
    # bash runs the user's profile, and a profile that waits (pyenv's rehash waits 60 s
    # on a lock that a shell killed mid-profile left behind) would fail the terminal
    # tests for reasons outside the project. Tests of the choice itself unset it.
    os.environ["ENKAKU_TERMINAL_SHELL"] = "/bin/sh"


@pytest.fixture(autouse=True)
def _enkaku_log_level() -> Iterator[None]:
    """Each test starts with the "enkaku" logger's level unset: a command run in-process
    (enkaku.cli.main) sets it for its verbosity, and with two workers taking whole files
    in any order, that once hid the records a later test's caplog looked for."""
    logger = logging.getLogger("enkaku")
    saved = logger.level
    logger.setLevel(logging.NOTSET)
    yield
    logger.setLevel(saved)
