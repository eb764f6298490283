"""The technician's side of a ``type_text`` stream: send the text, read how much was
typed (docs/protocol/services.md#typing-a-text).

The text is checked here first with the agent's own rules (length, control
characters), so a refusal needs no round trip; the agent checks again. The text is
never logged.
"""

from __future__ import annotations

import json

from enkaku.agent.services.typetext import KIND, MAX_CHARS, keysyms
from enkaku.i18n import printable, register, t
from enkaku.transport.channel import Stream
from enkaku.transport.errors import SessionEnded

__all__ = ["KIND", "MAX_CHARS", "TypeTextError", "check_text", "type_text"]

#: What each RESET reason tells the technician (English, Japanese).
_MESSAGES: dict[str, tuple[str, str]] = {
    "bad_text": (
        "The text contains a control character that cannot be typed (only tab and line "
        "breaks are allowed).",
        "テキストに入力できない制御文字が含まれています (使えるのはタブと改行だけです)。",
    ),
    "text_too_long": (
        f"The text is longer than {MAX_CHARS} characters; send it in parts.",
        f"テキストが {MAX_CHARS} 文字を超えています。分けて送ってください。",
    ),
    "text_empty": ("There is no text to type.", "入力するテキストがありません。"),
    "control_paused": (
        "The customer paused remote control, so nothing more was typed.",
        "お客様がリモート操作を一時停止したため、それ以上は入力していません。",
    ),
    "no_display": (
        "The customer's computer has no screen or keyboard to type on.",
        "お客様のコンピューターには入力できる画面やキーボードがありません。",
    ),
    "input_failed": (
        "The customer's screen stopped accepting keys; part of the text may have been typed.",
        "お客様の画面がキー入力を受け付けなくなりました。テキストの一部だけが入力された"
        "可能性があります。",
    ),
    "consent_required": (
        "The customer has not allowed remote control.",
        "お客様はリモート操作を許可していません。",
    ),
    "unsupported_stream": (
        "The customer's enkaku cannot type text; ask them to update it.",
        "お客様の enkaku はテキスト入力に対応していません。更新を依頼してください。",
    ),
    "interrupted": (
        "The session ended before the text was typed.",
        "テキストを入力する前にセッションが終了しました。",
    ),
}
register({f"typetext_err_{reason}": texts for reason, texts in _MESSAGES.items()})
register(
    {
        "typetext_err_other": (
            "Typing the text failed ({reason}).",
            "テキスト入力に失敗しました ({reason})。",
        )
    }
)


class TypeTextError(Exception):
    """The text was not (wholly) typed; ``reason`` is the RESET reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def message(self, lang: str | None = None) -> str:
        if self.reason in _MESSAGES:
            return t(f"typetext_err_{self.reason}", lang)
        return t("typetext_err_other", lang, reason=printable(self.reason, 64))

    def __str__(self) -> str:
        return self.message()


def check_text(text: str) -> None:
    """Raise TypeTextError unless the agent would accept ``text``."""
    if not text:
        raise TypeTextError("text_empty")
    if len(text) > MAX_CHARS:
        raise TypeTextError("text_too_long")
    try:
        keysyms(text)
    except ValueError:
        raise TypeTextError("bad_text") from None


async def type_text(stream: Stream, text: str) -> int:
    """Send ``text`` on a ``type_text`` stream; the number of keys typed (a line break
    ``\\r\\n`` is one). Raises TypeTextError."""
    check_text(text)
    try:
        await stream.write(text.encode())
        await stream.write_eof()
    except SessionEnded as exc:
        if exc.reason == "stream_reset" and exc.detail:
            raise TypeTextError(exc.detail) from None
        raise TypeTextError(stream.reset_reason or "interrupted") from None
    answer = bytearray()
    while chunk := await stream.read():
        answer += chunk
        if len(answer) > 256:
            await stream.reset("bad_answer")
            raise TypeTextError("bad_answer")
    if not stream.eof:
        raise TypeTextError(stream.reset_reason or "interrupted")
    try:
        obj = json.loads(bytes(answer))
    except ValueError:
        obj = None
    typed = obj.get("typed") if isinstance(obj, dict) and obj.get("ok") is True else None
    if not isinstance(typed, int) or isinstance(typed, bool):
        raise TypeTextError("bad_answer")
    return typed
