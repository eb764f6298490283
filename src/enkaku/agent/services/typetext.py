"""The ``type_text`` service: type a text on the customer's keyboard, for login screens
and password fields that no clipboard reaches.

The technician sends the text as the stream's bytes (UTF-8, at most ``MAX_CHARS``
characters) and EOF; the agent checks all of it before the first key, types it through
the input layer (``InputInjector.key``: each character's keysym, a Unicode keysym
``0x01000000 + code point`` for characters outside Latin-1, which the X11 layer binds
to a spare keycode when the keyboard map lacks it), then answers
``{"ok": true, "typed": N}`` and EOF. It needs the session grant ``control`` and stops
when the customer pauses control. The text is never logged or reported: the audit
event ``text_typed`` carries the number of characters.

RESET reasons: ``bad_text`` (not UTF-8, or a control character other than tab and line
breaks), ``text_too_long``, ``control_paused`` (paused before or while typing: what was
typed stays typed), ``no_display`` (no input on this agent), ``input_failed`` (the
display refused a key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import unicodedata
from typing import TYPE_CHECKING

from enkaku.agent.input.settle import close_after_settle
from enkaku.transport.errors import SessionEnded

from . import ServiceContext, ServiceSpec

if TYPE_CHECKING:
    from enkaku.agent.input.base import InputInjector
    from enkaku.transport.channel import Stream

log = logging.getLogger(__name__)

KIND = "type_text"
ACTION = "control"
#: The longest text, in characters (code points), and in bytes (UTF-8, 4 per character).
MAX_CHARS = 4096
MAX_BYTES = 4 * MAX_CHARS

RESET_BAD_TEXT = "bad_text"
RESET_TOO_LONG = "text_too_long"
RESET_PAUSED = "control_paused"
RESET_NO_DISPLAY = "no_display"
RESET_INPUT_FAILED = "input_failed"

#: Keys typed between two short pauses (PACE_PAUSE seconds). An X client looks a
#: keycode's keysym up when it handles the event, in the keymap of that moment: a spare
#: keycode rebound (the input layer reuses the least recently used one when none is
#: free) or unbound (at close) before the client handled its last event would be read
#: as another character or none. The pauses give the client that time; the text is
#: typed at about 200 characters a second. After the last key the spare keycodes stay
#: bound for ``input.settle.SETTLE``, also when the session ends meanwhile.
PACE_KEYS = 4
PACE_PAUSE = 0.02

XK_TAB = 0xFF09
XK_RETURN = 0xFF0D
UNICODE_KEYSYM = 0x01000000


def keysyms(text: str) -> list[int]:
    """The keysym of each character to type: tab is Tab, ``\\n``, ``\\r`` and ``\\r\\n``
    are one Return each; raises ValueError for any other control character."""
    out: list[int] = []
    previous = ""
    for ch in text:
        if ch == "\n" and previous == "\r":
            previous = ch
            continue  # \r\n is one line break
        previous = ch
        cp = ord(ch)
        if ch in "\r\n":
            out.append(XK_RETURN)
        elif ch == "\t":
            out.append(XK_TAB)
        elif unicodedata.category(ch) in ("Cc", "Cs"):
            raise ValueError(f"control character U+{cp:04X}")
        elif 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
            out.append(cp)  # Latin-1 keysyms are the code points
        else:
            out.append(UNICODE_KEYSYM + cp)
    return out


def done_line(typed: int) -> bytes:
    """The agent's answer after typing ``typed`` characters."""
    return json.dumps({"ok": True, "typed": typed}, separators=(",", ":")).encode() + b"\n"


async def _read_text(stream: Stream) -> str | None:
    """The whole text (to EOF), or None after resetting the stream with the reason."""
    data = bytearray()
    while chunk := await stream.read():
        data += chunk
        if len(data) > MAX_BYTES:
            await stream.reset(RESET_TOO_LONG)
            return None
    if not stream.eof:  # reset by the technician, or the session ended
        return None
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        await stream.reset(RESET_BAD_TEXT)
        return None
    if len(text) > MAX_CHARS:
        await stream.reset(RESET_TOO_LONG)
        return None
    return text


def _type_one(injector: InputInjector, keysym: int) -> None:
    injector.key(keysym, True)
    injector.key(keysym, False)


async def serve(stream: Stream, ctx: ServiceContext) -> None:
    """Serve one ``type_text`` stream: read, check, type, answer."""
    text = await _read_text(stream)
    if text is None:
        return
    try:
        syms = keysyms(text)
    except ValueError:
        await stream.reset(RESET_BAD_TEXT)
        return
    del text
    if not ctx.allowed(ACTION):
        await stream.reset(RESET_PAUSED)
        return
    if ctx.input_factory is None:
        await stream.reset(RESET_NO_DISPLAY)
        return
    try:
        injector = await asyncio.to_thread(ctx.input_factory)
    except Exception as exc:  # the display went away or XTEST is missing
        log.warning("cannot type: %s", exc)
        await stream.reset(RESET_NO_DISPLAY)
        return
    typed = 0
    last_key: float | None = None  # the loop's time of the last key typed
    try:
        for keysym in syms:
            if typed and typed % PACE_KEYS == 0:
                await asyncio.sleep(PACE_PAUSE)
            if not ctx.allowed(ACTION):
                log.info("typing stopped after %d characters: control paused", typed)
                await stream.reset(RESET_PAUSED)
                return
            try:
                await asyncio.to_thread(_type_one, injector, keysym)
            except Exception as exc:
                log.warning("typing stopped after %d characters: %s", typed, exc)
                await stream.reset(RESET_INPUT_FAILED)
                return
            finally:
                last_key = asyncio.get_running_loop().time()
            typed += 1
        log.info("typed %d characters for the technician", typed)
        await ctx.report("text_typed", str(typed))
        try:
            await stream.write(done_line(typed))
            await stream.write_eof()
        except SessionEnded:
            return
    finally:
        # The session may end right after the text (a password typed, then the
        # technician disconnects): the spare keycodes stay bound until the application
        # has read its keys all the same.
        await close_after_settle(injector, last_key)


SPEC = ServiceSpec(kind=KIND, action=ACTION, serve=serve)
