"""Server-supplied text the technician CLI prints is made printable."""

from __future__ import annotations

import pytest

from enkaku.technician.client import _lang_message


def test_server_error_text_loses_control_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENKAKU_LANG", "en")
    body = {"error": {"message": {"en": "Agent\x1b[2J\x1b]0;x\x07 busy\u202e\r\nok", "ja": ""}}}
    assert _lang_message(body, "fallback") == "Agent[2J]0;x busy  ok"


def test_a_body_without_a_message_gives_the_fallback() -> None:
    assert _lang_message({"detail": 1}, "fallback") == "fallback"
    assert _lang_message(None, "fallback") == "fallback"
