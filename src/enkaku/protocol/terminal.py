"""The framing inside a ``terminal`` stream (docs/protocol/terminal.md).

A terminal stream carries frames ``type u8 | length u32 (big-endian) | payload``, both
ways, so that keystrokes, output, window sizes and the shell's exit status share one
ordered byte stream:

- HELLO (agent → technician, first frame): UTF-8 JSON ``{"user", "uid", "root", "shell"}``
  telling the technician whose shell this is before anything is typed into it.
- DATA (both ways): bytes typed into, or printed by, the PTY.
- RESIZE (technician → agent): ``cols u16 | rows u16``.
- EXIT (agent → technician, last frame, then EOF): ``status i32``, the shell's exit
  status as the shell reports it (128 + N when a signal N ended it).

Frames are length-checked before anything is allocated; the decoder is incremental
(any cut of the input gives the same frames) and does no IO.
"""

from __future__ import annotations

import enum
import json
import re
import struct
from dataclasses import dataclass
from typing import Literal

from .errors import ProtocolError

HEADER = struct.Struct(">BI")
#: Largest DATA payload accepted; senders cut their output below this.
MAX_DATA = 64 * 1024
MAX_HELLO = 4096
#: Longest user name or shell path a HELLO carries (characters; longer ones are cut).
MAX_NAME = 256
#: The largest window a RESIZE (or the stream's cols/rows parameters) may ask for.
MAX_DIMENSION = 4096
#: A TERM value either side accepts (the agent refuses any other with ``bad_params``).
TERM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


class FrameType(enum.IntEnum):
    HELLO = 1
    DATA = 2
    RESIZE = 3
    EXIT = 4


#: Which side may send each frame type.
_SENDER: dict[FrameType, Literal["agent", "technician", "both"]] = {
    FrameType.HELLO: "agent",
    FrameType.DATA: "both",
    FrameType.RESIZE: "technician",
    FrameType.EXIT: "agent",
}
_MAX_PAYLOAD = {FrameType.HELLO: MAX_HELLO, FrameType.DATA: MAX_DATA}
_FIXED_PAYLOAD = {FrameType.RESIZE: 4, FrameType.EXIT: 4}


@dataclass(frozen=True, slots=True)
class Hello:
    """Whose shell the technician is typing into."""

    user: str
    uid: int
    root: bool
    shell: str

    def __bytes__(self) -> bytes:
        body = json.dumps(
            {
                "user": self.user[:MAX_NAME],
                "uid": self.uid,
                "root": self.root,
                "shell": self.shell[:MAX_NAME],
            },
            ensure_ascii=False,
        ).encode()
        return frame(FrameType.HELLO, body)

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        try:
            obj = json.loads(payload.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProtocolError(f"terminal HELLO is not UTF-8 JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ProtocolError("terminal HELLO is not a JSON object")
        user, uid, root, shell = (obj.get(k) for k in ("user", "uid", "root", "shell"))
        if not (
            isinstance(user, str)
            and isinstance(uid, int)
            and not isinstance(uid, bool)
            and isinstance(root, bool)
            and isinstance(shell, str)
        ):
            raise ProtocolError("terminal HELLO needs user (str), uid (int), root (bool), shell")
        return cls(user, uid, root, shell)


@dataclass(frozen=True, slots=True)
class Data:
    data: bytes


@dataclass(frozen=True, slots=True)
class Resize:
    cols: int
    rows: int


@dataclass(frozen=True, slots=True)
class Exit:
    status: int


Frame = Hello | Data | Resize | Exit


def frame(kind: FrameType, payload: bytes) -> bytes:
    """One encoded frame."""
    return HEADER.pack(kind, len(payload)) + payload


def data_frames(data: bytes) -> bytes:
    """``data`` as DATA frames no larger than MAX_DATA each."""
    return b"".join(
        frame(FrameType.DATA, data[i : i + MAX_DATA]) for i in range(0, len(data), MAX_DATA)
    )


def resize_frame(cols: int, rows: int) -> bytes:
    check_size(cols, rows)
    return frame(FrameType.RESIZE, struct.pack(">HH", cols, rows))


def exit_frame(status: int) -> bytes:
    return frame(FrameType.EXIT, struct.pack(">i", status))


def check_size(cols: int, rows: int) -> None:
    """Raise ProtocolError unless both dimensions are within 1..MAX_DIMENSION."""
    for name, value in (("cols", cols), ("rows", rows)):
        if not 1 <= value <= MAX_DIMENSION:
            raise ProtocolError(f"terminal {name} {value} is outside 1..{MAX_DIMENSION}")


class Decoder:
    """Incremental decoder of the frames one side receives (``sender`` is the peer)."""

    def __init__(self, sender: Literal["agent", "technician"]) -> None:
        self.sender = sender
        self._buf = bytearray()
        self._hello_seen = sender == "technician"  # only the agent sends HELLO
        self._exited = False

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data``; raises ProtocolError on malformed input."""
        self._buf += data
        out: list[Frame] = []
        while len(self._buf) >= HEADER.size:
            code, length = HEADER.unpack_from(self._buf)
            try:
                kind = FrameType(code)
            except ValueError:
                raise ProtocolError(f"unknown terminal frame type {code}") from None
            if _SENDER[kind] not in (self.sender, "both"):
                raise ProtocolError(f"the {self.sender} may not send terminal {kind.name}")
            fixed = _FIXED_PAYLOAD.get(kind)
            if (fixed is not None and length != fixed) or length > _MAX_PAYLOAD.get(kind, 4):
                raise ProtocolError(f"terminal {kind.name} payload of {length} bytes")
            if len(self._buf) < HEADER.size + length:
                break
            payload = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            out.append(self._frame(kind, payload))
        return out

    def _frame(self, kind: FrameType, payload: bytes) -> Frame:
        if self._exited:
            raise ProtocolError(f"terminal {kind.name} after EXIT")
        if not self._hello_seen and kind is not FrameType.HELLO:
            raise ProtocolError(f"terminal {kind.name} before HELLO")
        if kind is FrameType.HELLO:
            if self._hello_seen:
                raise ProtocolError("terminal HELLO sent twice")
            self._hello_seen = True
            return Hello.parse(payload)
        if kind is FrameType.DATA:
            return Data(payload)
        if kind is FrameType.RESIZE:
            cols, rows = struct.unpack(">HH", payload)
            check_size(cols, rows)
            return Resize(cols, rows)
        self._exited = True
        return Exit(struct.unpack(">i", payload)[0])
