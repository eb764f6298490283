"""The technician's side of a ``screenshot`` stream: receive one PNG and save it.

The bytes are held in memory up to ``max_bytes`` (the stream is reset beyond), checked
to be a PNG of at most ``MAX_PIXELS`` pixels that decodes completely, and only then
written, atomically: a temporary name in the same folder, synced, renamed into place
(``enkaku.secretfile``, mode 0600, since it shows the customer's screen). A refused,
cut or invalid screenshot leaves no file behind.
"""

from __future__ import annotations

import asyncio
import io
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from enkaku.i18n import register, t
from enkaku.secretfile import write_secret

if TYPE_CHECKING:
    from enkaku.transport.channel import Stream

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Largest PNG accepted: an 8K screen of noise is about 100 MB.
MAX_BYTES = 128 * 1024 * 1024
#: Largest image accepted (an 8K screen is 33 M pixels).
MAX_PIXELS = 64 * 1024 * 1024
_IHDR_END = len(PNG_SIGNATURE) + 8 + 13  # signature, IHDR length and type, IHDR data

register(
    {
        "screenshot_no_display": (
            "The customer's computer has no screen to capture.",
            "お客様のコンピューターにはキャプチャできる画面がありません。",
        ),
        "screenshot_refused": (
            "The customer's computer did not send the screenshot ({reason}).",
            "お客様のコンピューターはスクリーンショットを送りませんでした（{reason}）。",
        ),
        "screenshot_incomplete": (
            "The screenshot was cut off (the session or the connection ended); try again.",
            "スクリーンショットが途中で切れました（セッションまたは接続が終了しました）。"
            "もう一度お試しください。",
        ),
        "screenshot_too_large": (
            "The screenshot is larger than {limit}; it was not saved.",
            "スクリーンショットが {limit} を超えているため、保存しませんでした。",
        ),
        "screenshot_not_png": (
            "The customer's computer sent something that is not a valid PNG image;"
            " it was not saved.",
            "お客様のコンピューターから有効な PNG 画像ではないデータが届いたため、"
            "保存しませんでした。",
        ),
    }
)


class ScreenshotError(RuntimeError):
    """No screenshot was saved; ``message(lang)`` says why (``key``: the catalog key)."""

    def __init__(self, key: str, **fields: object) -> None:
        super().__init__(key)
        self.key, self.fields = key, fields

    def message(self, lang: str | None = None) -> str:
        """What went wrong, in ``lang`` (default: the environment's language)."""
        return t(self.key, lang, **self.fields)

    def __str__(self) -> str:
        return self.message()


def _header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk, or None when this is not a PNG's start."""
    if not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _decode(data: bytes) -> tuple[int, int]:
    """Decode the whole PNG (every chunk checked); its size. Raises ScreenshotError."""
    try:  # MAX_PIXELS, checked first, is below Pillow's decompression bomb limit
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            return image.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise ScreenshotError("screenshot_not_png") from exc


def _save(data: bytes, path: Path) -> tuple[int, int]:
    size = _decode(data)
    write_secret(path, data)
    return size


async def _refuse(stream: Stream, reason: str, key: str, **fields: object) -> ScreenshotError:
    await stream.reset(reason)
    return ScreenshotError(key, **fields)


async def receive(
    stream: Stream, path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES
) -> tuple[int, int]:
    """Receive the screenshot into ``path`` (replaced atomically); its (width, height)."""
    data = bytearray()
    checked = False
    while chunk := await stream.read():
        data += chunk
        if len(data) > max_bytes:
            raise await _refuse(stream, "too_large", "screenshot_too_large", limit=max_bytes)
        if not checked and len(data) >= _IHDR_END:
            size = _header_size(bytes(data[:_IHDR_END]))
            if size is None:
                raise await _refuse(stream, "not_png", "screenshot_not_png")
            if size[0] * size[1] > MAX_PIXELS:
                limit = f"{MAX_PIXELS} pixels"
                raise await _refuse(stream, "too_large", "screenshot_too_large", limit=limit)
            checked = True
    if stream.reset_reason == "no_display":
        raise ScreenshotError("screenshot_no_display")
    if stream.reset_reason is not None:
        reason = "".join(c if c.isprintable() else "?" for c in stream.reset_reason)
        raise ScreenshotError("screenshot_refused", reason=reason)
    if not stream.eof:
        raise ScreenshotError("screenshot_incomplete")
    return await asyncio.to_thread(_save, bytes(data), Path(path))
