"""Settings every test shares."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _english_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages in English whatever the developer's locale (LANG=ja_JP would otherwise
    turn errors that tests match on into Japanese); a test that wants Japanese sets
    ENKAKU_LANG=ja itself."""
    monkeypatch.setenv("ENKAKU_LANG", "en")
