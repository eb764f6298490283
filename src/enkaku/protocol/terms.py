"""The terms of use as the server publishes them and the agent shows them.

A version has a Japanese and an English text, the date it was published and the date it
takes effect. The support company's terms (Art. 10) promise at least a month's notice of
a change, so every version after the first takes effect no sooner than one month after
it was published (checked where it is published, on the server).

On the wire (the agent link's ``welcome``, docs/protocol/agent-control.md) a version is
``{"version", "published", "effective", "text": {"en", "ja"}}`` with ISO dates.
"""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

#: A version label: what the admin passes to --version and the customer to --accept-terms.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
#: The largest version the server publishes: its JSON as sent to agents (json.dumps,
#: ASCII: a Japanese character takes 6 bytes), so that a welcome with the version in force
#: and the upcoming one stays within the agent's 256 KiB message limit
#: (agent.runtime.MAX_SERVER_MESSAGE).
MAX_WIRE = 120 * 1024
#: The agent's sanity bound on one text (characters); the server's limit is MAX_WIRE.
MAX_TEXT = MAX_WIRE
LANGUAGES = ("en", "ja")


@dataclass(frozen=True)
class Terms:
    version: str
    published: date
    effective: date
    #: The text per language: {"en": ..., "ja": ...}.
    text: dict[str, str]

    def text_for(self, lang: str) -> str:
        """The text in ``lang``, else the other language's (never empty if either is set)."""
        return self.text.get(lang) or self.text.get("en") or self.text.get("ja") or ""

    def wire_size(self) -> int:
        """Bytes of this version in a server message (checked against MAX_WIRE)."""
        return len(json.dumps(self.to_json()).encode())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "published": self.published.isoformat(),
            "effective": self.effective.isoformat(),
            "text": {lang: self.text.get(lang, "") for lang in LANGUAGES},
        }

    @classmethod
    def from_json(cls, obj: object) -> Terms:
        """Parse a version from a server message; ValueError if it is not well formed."""
        if not isinstance(obj, dict):
            raise ValueError("terms: not an object")
        version, text = obj.get("version"), obj.get("text")
        if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
            raise ValueError("terms: malformed version")
        if not isinstance(text, dict):
            raise ValueError("terms: text is not an object")
        texts: dict[str, str] = {}
        for lang in LANGUAGES:
            value = text.get(lang, "")
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                raise ValueError(f"terms: malformed {lang} text")
            texts[lang] = value
        if not any(texts.values()):
            raise ValueError("terms: no text")
        return cls(version, _day(obj.get("published")), _day(obj.get("effective")), texts)


def one_month_after(day: date) -> date:
    """The same day of the next calendar month, or that month's last day if it is shorter
    (Jan 31 -> Feb 28/29): the earliest effective date for a version published on ``day``."""
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _day(value: object) -> date:
    if not isinstance(value, str):
        raise ValueError("terms: malformed date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("terms: malformed date") from None
