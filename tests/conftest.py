"""Settings every test shares."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

#: Where the long test files are (real servers, agents, browsers: 10-260 s a file, against
#: well under 10 s for most others). They run first: the workers take whole files
#: in collection order (scripts/test passes --no-loadscope-reorder, without which
#: pytest-xdist 3.8 hands out the files of most tests first), so a long file collected
#: last keeps one worker busy while the others have nothing left (tests/test_cli.py,
#: 170 s, used to come after tests/server; on 2026-12-02 tests/e2e/test_download.py's
#: 125 s build started near the end).
LONG_FIRST = (
    "tests/e2e/",
    "tests/console/",
    "tests/agent/window/",
    "tests/test_cli.py",
    "tests/benchmarks/",
)


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long files first (``LONG_FIRST``), each file's tests together and in order."""
    root = config.rootpath

    def long(item: pytest.Item) -> bool:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        return path.startswith(LONG_FIRST)

    items.sort(key=lambda item: not long(item))  # stable: the order within stays


@pytest.fixture(autouse=True)
def _enkaku_log_level() -> Iterator[None]:
    """Each test starts with the "enkaku" logger's level unset: a command run in-process
    (enkaku.cli.main) sets it for its verbosity, and with workers taking whole files
    in any order, that once hid the records a later test's caplog looked for."""
    logger = logging.getLogger("enkaku")
    saved = logger.level
    logger.setLevel(logging.NOTSET)
    yield
    logger.setLevel(saved)
