"""The bytes and tables the web console's tests and report panel use are what the
Python modules produce now (see console_vectors.py to regenerate them)."""

from __future__ import annotations

from tests.protocol import console_vectors as cv


def test_the_console_vectors_are_current() -> None:
    assert cv.VECTORS.read_text(encoding="utf-8") == cv.render(cv.vectors()), (
        "run: .venv/bin/python -m tests.protocol.console_vectors"
    )


def test_the_console_sysinfo_labels_are_current() -> None:
    assert cv.LABELS.read_text(encoding="utf-8") == cv.render(cv.labels()), (
        "run: .venv/bin/python -m tests.protocol.console_vectors"
    )


def test_the_names_cover_every_refusal_of_check_name() -> None:
    reasons = {row[k] for row in cv.vectors()["files"]["names"] for k in ("posix", "windows")}
    assert reasons >= {
        None,
        "name_empty",
        "name_too_long",
        "name_separator",
        "name_dots",
        "name_control",
        "name_reserved",
        "name_bad_char",
        "name_trailing",
    }


def test_the_console_service_messages_are_current() -> None:
    assert cv.MESSAGES.read_text(encoding="utf-8") == cv.render(cv.messages()), (
        "run: .venv/bin/python -m tests.protocol.console_vectors"
    )
