"""Read the agent's system information report from a ``system_info`` stream.

The agent writes one JSON object and EOF. The technician reads at most ``MAX_BYTES``
(a report is tens of KiB; a peer that sends more is refused, never buffered without
bound) and checks that it is a JSON object before anyone renders it.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from enkaku.i18n import register, t

#: A report larger than this is refused (real ones are well under 1 MiB).
MAX_BYTES = 8 * 1024 * 1024
RESET_TOO_LARGE = "system_info_too_large"

register(
    {
        "sysinfo_fetch_too_large": (
            "The system information report is larger than {limit} MiB; it was refused.",
            "システム情報レポートが {limit} MiB を超えたため、受け取りを拒否しました。",
        ),
        "sysinfo_fetch_reset": (
            "The agent did not send the system information ({reason}).",
            "エージェントがシステム情報を送信しませんでした ({reason})。",
        ),
        "sysinfo_fetch_invalid": (
            "The system information report is not valid JSON ({detail}).",
            "システム情報レポートが正しい JSON ではありません ({detail})。",
        ),
        "sysinfo_fetch_not_object": (
            "The system information report is not a JSON object.",
            "システム情報レポートが JSON オブジェクトではありません。",
        ),
    }
)


class ReadStream(Protocol):
    reset_reason: str | None

    async def read(self) -> bytes: ...

    async def reset(self, reason: str) -> None: ...


class SysinfoError(Exception):
    """The report could not be read; the message is for the technician."""


async def fetch(stream: ReadStream, lang: str | None = None) -> dict[str, Any]:
    """Read the report to EOF and return it as a dict; raises ``SysinfoError``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read():
        size += len(chunk)
        if size > MAX_BYTES:
            await stream.reset(RESET_TOO_LARGE)
            raise SysinfoError(t("sysinfo_fetch_too_large", lang, limit=MAX_BYTES >> 20))
        chunks.append(chunk)
    if stream.reset_reason is not None:
        raise SysinfoError(t("sysinfo_fetch_reset", lang, reason=stream.reset_reason[:64]))
    try:
        doc = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SysinfoError(t("sysinfo_fetch_invalid", lang, detail=str(exc)[:120])) from None
    if not isinstance(doc, dict):
        raise SysinfoError(t("sysinfo_fetch_not_object", lang))
    return doc
