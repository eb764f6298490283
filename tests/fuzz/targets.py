"""Fuzz targets: one function per parser, taking arbitrary bytes.

Each target feeds its input to a parser or state machine the way the network would and
fails (AssertionError, or whatever unexpected exception escapes) when the code breaks
its contract: a documented error type for bad input, a canonical round trip for good
input, no traceback from a server handler. The same targets run under Hypothesis in
the suite (tests/fuzz/test_fuzz.py) and under atheris, coverage-guided, in
tests/fuzz/atheris_main.py and benchmarks/fuzz.py.

``SEEDS`` gives each target a few valid inputs, so that the fuzzers start deep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType

from enkaku.protocol import control, terminal
from enkaku.protocol.errors import ProtocolError, RecordError
from enkaku.protocol.handshake import (
    AgentConfirm,
    AgentHandshake,
    AgentShare,
    Failure,
    HandshakeState,
    Hello,
    TechnicianHandshake,
    TechnicianShare,
)
from enkaku.protocol.jsonlimits import json_depth, loads_limited
from enkaku.protocol.records import RecordChannel
from enkaku.protocol.rfb import RFBServer
from enkaku.protocol.streams import FrameType, Mux, encode_frame

Target = Callable[[bytes], None]

PASSWORD = "k7m2-9qzx"
AGENT_ID = "123456789"


def _seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def _transcript() -> list[bytes]:
    agent = AgentHandshake(PASSWORD, AGENT_ID, randbytes=_seeded(1))
    tech = TechnicianHandshake(PASSWORD, AGENT_ID, randbytes=_seeded(2))
    hello = tech.start()
    [share_a] = agent.receive(hello)
    [share_b] = tech.receive(share_a)
    [confirm] = agent.receive(share_b)
    tech.receive(confirm)
    return [hello, share_a, share_b, confirm]


TRANSCRIPT = _transcript()

# -- handshake ----------------------------------------------------------------------------

_PARSERS: list[Any] = [Hello, AgentShare, TechnicianShare, AgentConfirm, Failure]


def handshake_parsers(data: bytes) -> None:
    """Each message parser: ProtocolError, or a message whose bytes are the input."""
    if not data:
        return
    parser = _PARSERS[data[0] % len(_PARSERS)]
    message = data[1:]
    try:
        parsed = parser.parse(message)
    except ProtocolError:
        return
    assert bytes(parsed) == message, "parse is not the inverse of __bytes__"


def _party_at(step: int) -> AgentHandshake | TechnicianHandshake:
    """A party in the state where message ``step`` (0..3) of the transcript is due."""
    agent = AgentHandshake(PASSWORD, AGENT_ID, randbytes=_seeded(1))
    tech = TechnicianHandshake(PASSWORD, AGENT_ID, randbytes=_seeded(2))
    tech.start()
    if step == 0:
        return agent
    agent.receive(TRANSCRIPT[0])
    if step == 1:
        return tech
    tech.receive(TRANSCRIPT[1])
    return agent if step == 2 else tech


def handshake_state_machines(data: bytes) -> None:
    """Agent and technician: any message in any state is ProtocolError and FAILED."""
    if not data:
        return
    step = data[0] % 4
    side = _party_at(step)
    try:
        replies = side.receive(data[1:])
    except ProtocolError:
        assert side.state is HandshakeState.FAILED
        return
    if step == 0:  # any well-formed HELLO gets the agent's share
        AgentShare.parse(replies[0])
    elif step == 1:  # any valid share gets the technician's, with Tb
        TechnicianShare.parse(replies[0])
    else:  # a Tb or Ta that verifies: only the transcript's own message
        assert data[1:] == TRANSCRIPT[step], "a forged confirmation tag verified"
        assert side.state is HandshakeState.ESTABLISHED


# -- records ------------------------------------------------------------------------------

_ISK, _SID = bytes(range(64)), bytes(range(32))


def record_channel(data: bytes) -> None:
    """RecordChannel.open under drops, duplicates, reordering, bit flips and junk.

    Each pair of input bytes is an operation on the records in flight. ``open`` must
    return the next plaintext exactly when it is handed the next record's exact bytes;
    anything else raises RecordError, and after one RecordError every record fails.
    """
    sender = RecordChannel(_ISK, _SID, "agent", rekey_after=3)
    receiver = RecordChannel(_ISK, _SID, "technician", rekey_after=3)
    wire: list[bytes] = []
    sealed: list[bytes] = []
    plaintexts: list[bytes] = []
    expected = 0
    failed = False

    def deliver(message: bytes) -> None:
        nonlocal expected, failed
        genuine = not failed and expected < len(sealed) and message == sealed[expected]
        try:
            opened = receiver.open(message)
        except RecordError:
            assert not genuine, "the next record failed to open"
            assert receiver.failed
            failed = True
            return
        assert genuine, "a dropped, replayed, reordered or altered record opened"
        assert opened == plaintexts[expected]
        expected += 1

    ops = iter(data)
    for op in ops:
        arg = next(ops, 0)
        kind = op % 7
        if kind == 0:
            plaintexts.append(bytes([arg]) * (arg % 40))
            sealed.append(sender.seal(plaintexts[-1]))
            wire.append(sealed[-1])
        elif kind == 1 and wire:
            deliver(wire.pop(0))
        elif kind == 2 and wire:
            wire.pop(0)  # dropped
        elif kind == 3 and wire:
            wire.insert(0, wire[0])  # replayed
        elif kind == 4 and len(wire) > 1:
            wire[0], wire[1] = wire[1], wire[0]  # reordered
        elif kind == 5 and wire:
            m = bytearray(wire[0])
            m[arg % len(m)] ^= 1 << (op % 8)
            wire[0] = bytes(m)
        elif kind == 6:
            deliver(bytes(next(ops, 0) for _ in range(min(arg, 80))))  # junk


# -- mux and control ------------------------------------------------------------------------


def mux_frames(data: bytes) -> None:
    """A sequence of frames (u8 length each) into both roles: ProtocolError only."""
    for role in ("agent", "technician"):
        mux = Mux(role)
        pos = 0
        try:
            while pos < len(data):
                n = data[pos]
                mux.receive_frame(data[pos + 1 : pos + 1 + n])
                pos += 1 + n
        except ProtocolError:
            pass


def control_reader(data: bytes) -> None:
    """ControlReader: ProtocolError only; cut in two, the same messages as whole."""
    whole: list[Any] = []
    try:
        whole = control.ControlReader().feed(data)
        whole_error = ""
    except ProtocolError as exc:
        whole_error = str(exc)
    if not data:
        return
    cut = data[0] % (len(data) + 1)
    reader = control.ControlReader()
    got: list[Any] = []
    try:
        got += reader.feed(data[:cut])
        got += reader.feed(data[cut:])
        split_error = ""
    except ProtocolError as exc:
        split_error = str(exc)
    assert split_error == whole_error
    if not whole_error:
        assert got == whole


_RFB_OPENING = b"RFB 003.008\n\x01\x01"


def rfb_server(data: bytes) -> None:
    """RFBServer.receive_data after the handshake (or instead of it): ProtocolError only."""
    server = RFBServer(32, 16, "fuzz")
    body = _RFB_OPENING + data[1:] if data[:1] != b"!" else data[1:]
    for start in range(0, len(body), 97):
        try:
            server.receive_data(body[start : start + 97])
        except ProtocolError:
            return
        server.data_to_send()


def terminal_frames(data: bytes) -> None:
    """The terminal stream's Decoder, the first byte choosing the receiving side:
    ProtocolError only; cut in two, the same frames or the same error as whole."""
    if not data:
        return
    sender: Any = "agent" if data[0] & 1 else "technician"
    body, cut = data[1:], data[0] % len(data)
    results = []
    for pieces in ([body], [body[:cut], body[cut:]]):
        decoder, frames = terminal.Decoder(sender), []
        try:
            for piece in pieces:
                frames += decoder.feed(piece)
            results.append((frames, ""))
        except ProtocolError as exc:
            results.append(([], str(exc)))
    assert results[0] == results[1]


def file_transfer(data: bytes) -> None:
    """The file-transfer parsers a hostile peer feeds (technician and agent side):
    filexfer.Refused only, and the same result cut in two as whole."""
    from enkaku.protocol import filexfer as fx

    selector, body = (data[0], data[1:]) if data else (0, b"")
    try:
        if selector % 4 == 0:  # a message line, then its object as each kind's params
            got = fx.LineReader().feed(body)
            if got is not None:
                obj = got[0]
                for parse in (fx.parse_put, fx.parse_get, fx.parse_browse):
                    with contextlib.suppress(fx.Refused):
                        parse(obj)
                for header in (fx.GetHeader, fx.ArchiveHeader):
                    with contextlib.suppress(fx.Refused):
                        header.parse(obj)
                with contextlib.suppress(fx.Refused):
                    fx.parse_offset(obj, 1 << 20)
        elif selector % 4 == 1:  # a folder's tar stream
            whole = fx.FramedReader()
            chunks = whole.feed(body)
            cut = (data[0] >> 2) % (len(body) + 1)
            split = fx.FramedReader()
            try:
                got_split = split.feed(body[:cut]) + split.feed(body[cut:])
            except fx.Refused:
                raise AssertionError("refused cut in two, accepted whole") from None
            assert b"".join(got_split) == b"".join(chunks)
            assert split.trailer == whole.trailer
        elif selector % 4 == 2:
            fx.parse_listing(body)
        else:
            with contextlib.suppress(UnicodeDecodeError):
                fx.check_name(body.decode(), "windows" if len(body) % 2 else "posix")
    except fx.Refused:
        pass


# -- JSON from the network --------------------------------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def json_limits(data: bytes) -> None:
    """loads_limited: ProtocolError, or exactly what json.loads gives within the limits."""
    max_bytes, max_depth = 4096, 8
    try:
        value = loads_limited(data, max_bytes=max_bytes, max_depth=max_depth)
    except ProtocolError:
        try:
            text = data.decode("utf-8")
            reference = json.loads(text)
        except (ValueError, RecursionError):
            return
        # Valid UTF-8 JSON is refused only for its size or its depth.
        assert len(data) > max_bytes or _depth(reference) > max_depth, "valid JSON refused"
        return
    assert len(data) <= max_bytes
    assert _depth(value) <= max_depth
    assert json_depth(data) >= _depth(value)


# -- server handlers with fakes (no socket) -------------------------------------------------


@dataclass
class _Message:
    type: Any
    data: Any


@dataclass
class FakeWebSocket:
    """Just what the server's handlers call on a WebSocketResponse."""

    incoming: list[_Message]
    closed: tuple[int, bytes] | None = None
    sent: list[str] = field(default_factory=list)

    async def receive(self) -> _Message:
        return self.incoming.pop(0) if self.incoming else _Message(WSMsgType.CLOSED, None)

    async def send_str(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, *, code: int, message: bytes = b"") -> None:
        self.closed = (code, message)

    def __aiter__(self) -> FakeWebSocket:
        return self

    async def __anext__(self) -> _Message:
        if not self.incoming:
            raise StopAsyncIteration
        return self.incoming.pop(0)


class _Anything:
    """A collaborator whose every method accepts anything and returns an awaitable None."""

    def __getattr__(self, name: str) -> Callable[..., _Anything]:
        return lambda *args, **kwargs: self

    def __await__(self) -> Any:
        return iter(())

    def __bool__(self) -> bool:
        return True


@dataclass
class _Row:
    agent_id: str = AGENT_ID
    technician_id: int = 7


class _FakeStore(_Anything):
    async def get_session(self, session_id: str) -> _Row | None:
        return _Row() if session_id == "s1" else None

    async def find_agent(self, key: str) -> str | None:
        return None

    async def agent_for_key(self, key: str) -> str:
        return AGENT_ID


def _text_message(data: bytes) -> _Message | None:
    """What aiohttp would hand over: a TEXT message is valid UTF-8, else BINARY."""
    try:
        return _Message(WSMsgType.TEXT, data.decode("utf-8"))
    except UnicodeDecodeError:
        return _Message(WSMsgType.BINARY, data)


_loop: asyncio.AbstractEventLoop | None = None


def _run(coro: Any) -> Any:
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(coro)


def close_loop() -> None:
    """Close the event loop the server targets share (at the end of a run)."""
    global _loop
    if _loop is not None:
        _loop.close()
        _loop = None


def _gateway() -> Any:
    from enkaku.server.agents import AgentGateway
    from enkaku.server.settings import Settings

    gw: Any = object.__new__(AgentGateway)
    gw.settings, gw.store, gw.presence = Settings(), _FakeStore(), _Anything()
    gw.relay, gw.failures, gw.registrations = _Anything(), _Anything(), _Anything()
    gw.relay.sessions = {}
    gw.connections = set()
    return gw


def agent_link(data: bytes) -> None:
    """/ws/agent: the hello and the control messages after it, handled by the server's
    own code over a fake socket. Nothing may escape; bad input closes with a code."""
    from enkaku.protocol.agentlink import CLOSE_MALFORMED, CLOSE_UNAUTHORIZED
    from enkaku.server.agents import AgentConnection

    msg = _text_message(data)
    assert msg is not None
    gw = _gateway()
    ws = FakeWebSocket([msg])
    assert _run(gw._authenticate(ws, "192.0.2.1")) is None  # the nonce is random
    assert ws.closed is not None and ws.closed[0] in (CLOSE_UNAUTHORIZED, 1009)
    ws = FakeWebSocket([msg])
    _run(gw._serve(AgentConnection(AGENT_ID, ws)))  # type: ignore[arg-type]
    if ws.closed is not None:
        assert ws.closed[0] == CLOSE_MALFORMED


_TOKENS = {"technician": "t" * 32, "agent": "a" * 32}


def relay_token(data: bytes) -> None:
    """/ws/relay: the first message (the token) through the server's own code over a
    fake socket. Nothing may escape; only the right token names a leg."""
    import hashlib

    from enkaku.server.relay import RelayHub, RelaySession
    from enkaku.server.settings import Settings

    hub: Any = object.__new__(RelayHub)
    hub.settings = Settings()
    digests = {r: hashlib.sha256(t.encode()).digest() for r, t in _TOKENS.items()}
    sess = RelaySession("s1", AGENT_ID, 7, digests)  # type: ignore[arg-type]
    msg = _text_message(data)
    ws = FakeWebSocket([msg] if msg is not None else [])
    role = _run(hub._authenticate(ws, sess))
    if role is None:
        assert ws.closed is not None
    else:
        assert json.loads(data)["token"] == _TOKENS[role]


TARGETS: dict[str, Target] = {
    "handshake_parsers": handshake_parsers,
    "handshake_state_machines": handshake_state_machines,
    "record_channel": record_channel,
    "mux_frames": mux_frames,
    "control_reader": control_reader,
    "rfb_server": rfb_server,
    "file_transfer": file_transfer,
    "terminal_frames": terminal_frames,
    "json_limits": json_limits,
    "agent_link": agent_link,
    "relay_token": relay_token,
}


def _mux_seed() -> bytes:
    frames = [
        encode_frame(FrameType.OPEN, 1, b"\x03rfb{}"),
        encode_frame(FrameType.DATA, 1, b"hello"),
        encode_frame(FrameType.WINDOW, 0, struct.pack(">I", 9)),
        encode_frame(FrameType.EOF, 1),
        encode_frame(FrameType.RESET, 2, b"x"),
    ]
    return b"".join(bytes([len(f)]) + f for f in frames)


SEEDS: dict[str, list[bytes]] = {
    "handshake_parsers": [bytes([i]) + m for i, m in enumerate(TRANSCRIPT)] + [b"\x04\x05\x01"],
    "handshake_state_machines": [bytes([i]) + m for i, m in enumerate(TRANSCRIPT)],
    "record_channel": [bytes([0, 5, 1, 0, 0, 9, 3, 0, 1, 0, 1, 0]), bytes([0, 3, 2, 0, 1, 0])],
    "mux_frames": [_mux_seed()],
    "control_reader": [
        b"\x05" + control.encode(control.End(reason="timeout")),
        b"\x00" + control.encode(control.Consent(granted=True, scope=["screen"])),
    ],
    "rfb_server": [
        b"\x00" + struct.pack("!BxH2i", 2, 2, 7, -223) + struct.pack("!BB4H", 3, 0, 0, 0, 9, 9),
        b"!RFB 003.003\n\x01",
    ],
    "file_transfer": [
        b"\x00" + b'{"name":"a.txt","size":3,"sha256":"' + b"0" * 64 + b'","dest":""}\n',
        b"\x01"
        + b"\x00\x00\x00\x03abc\x00\x00\x00\x00"
        + b'{"size":3,"sha256":"'
        + b"1" * 64
        + b'","skipped":0}\n',
        b"\x02" + b'{"path":"/tmp","entries":[{"name":"a","type":"file","size":1,"mtime":0}]}',
        b"\x03CON.txt",
    ],
    "terminal_frames": [
        b"\x07"
        + bytes(terminal.Hello("root", 0, True, "/bin/sh"))
        + terminal.data_frames(b"ls\r\n")
        + terminal.exit_frame(129),
        b"\x04" + terminal.resize_frame(80, 24) + terminal.data_frames(b"\x03~."),
    ],
    "json_limits": [b'{"a": [1, {"b": "x\\"]"}]}', b"[[[[[[[[[1]]]]]]]]]"],
    "agent_link": [
        json.dumps({"type": "session_event", "session_id": "s1", "event": "busy"}).encode(),
        json.dumps({"type": "hello", "public_key": "00" * 32, "signature": "00" * 64}).encode(),
    ],
    "relay_token": [json.dumps({"token": _TOKENS["agent"]}).encode(), b'{"token": 1}'],
}
