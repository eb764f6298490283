"""Recorded Python transcripts for the browser implementation (console/src/protocol).

With fixed randomness, the Python protocol modules produce a handshake (both sides'
messages and the keys derived), records each way across a key update, mux frames and
their events, control-message encodings, and one whole session on the wire (handshake,
then records carrying mux frames carrying control messages and stream data). The JS
tests (console/test/protocol/transcripts.test.ts) replay them: the JS technician must
produce the same bytes from the same inputs and must decrypt and parse the agent's.

``build()`` returns every file's content; ``tests/protocol/test_transcripts.py`` checks
that the committed files equal it, so they cannot go stale. Regenerate with
``.venv/bin/python -m tests.protocol.record_transcripts``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enkaku.protocol import control
from enkaku.protocol.errors import AuthenticationFailed, ProtocolError
from enkaku.protocol.handshake import AgentHandshake, TechnicianHandshake
from enkaku.protocol.records import RecordChannel, derive_direction_keys, next_key
from enkaku.protocol.streams import (
    DataReceived,
    FrameType,
    Mux,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowOpened,
    encode_frame,
)

DIR = Path(__file__).resolve().parent / "transcripts"
AGENT_ID = "418207356"
AT = "2026-11-29T23:05:01+09:00"


class Recorder:
    """Deterministic randomness that remembers every draw (the JS side replays them)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self.draws: list[str] = []

    def __call__(self, n: int) -> bytes:
        data = self._rng.randbytes(n)
        self.draws.append(data.hex())
        return data


def _event(ev: Any) -> dict[str, Any]:
    if isinstance(ev, StreamOpened):
        return {"type": "opened", "stream_id": ev.stream_id, "kind": ev.kind, "params": ev.params}
    if isinstance(ev, DataReceived):
        if len(ev.data) > 256:  # keeps the files small; the JS test hashes the same way
            digest = hashlib.sha256(ev.data).hexdigest()
            return {
                "type": "data",
                "stream_id": ev.stream_id,
                "length": len(ev.data),
                "sha256": digest,
            }
        return {"type": "data", "stream_id": ev.stream_id, "data": ev.data.hex()}
    if isinstance(ev, WindowOpened):
        return {"type": "window", "stream_id": ev.stream_id, "window": ev.window}
    if isinstance(ev, StreamEnded):
        return {"type": "ended", "stream_id": ev.stream_id}
    assert isinstance(ev, StreamReset)
    return {"type": "reset", "stream_id": ev.stream_id, "reason": ev.reason}


def _msg(m: control.Message | control.Unknown) -> dict[str, Any]:
    if isinstance(m, control.Unknown):
        return {"unknown": m.type}
    return m.model_dump(exclude_none=True)


def _handshake(seed_t: int, seed_a: int, tech_password: str) -> dict[str, Any]:
    rand_t, rand_a = Recorder(seed_t), Recorder(seed_a)
    agent = AgentHandshake("qz4m-7k2x", AGENT_ID, randbytes=rand_a)
    tech = TechnicianHandshake(tech_password, AGENT_ID, randbytes=rand_t)
    out: dict[str, Any] = {"agent_id": AGENT_ID, "agent_password": "qz4m-7k2x"}
    out["technician_password"] = tech_password
    hello = tech.start()
    [share_a] = agent.receive(hello)
    [share_b] = tech.receive(share_a)
    out["messages"] = {
        "hello": hello.hex(),
        "agent_share": share_a.hex(),
        "tech_share": share_b.hex(),
    }
    try:
        [confirm] = agent.receive(share_b)
    except AuthenticationFailed:
        out["messages"]["failure"] = "0501"  # what the agent runtime answers
        out["outcome"] = "wrong_password"
    else:
        out["messages"]["agent_confirm"] = confirm.hex()
        assert tech.receive(confirm) == []
        a2t, t2a = derive_direction_keys(_isk(agent), agent.sid)
        out["outcome"] = "established"
        out["derived"] = {
            "sid": agent.sid.hex(),
            "isk": _isk(agent).hex(),
            "key_agent_to_technician": a2t.hex(),
            "key_technician_to_agent": t2a.hex(),
        }
    out["technician_randomness"] = rand_t.draws
    out["agent_randomness"] = rand_a.draws
    return out


def _capture_isk() -> Callable[[], None]:
    """Remember the ISK each RecordChannel is built from (the handshake drops it)."""
    original = RecordChannel.__init__

    def init(self: RecordChannel, isk: bytes, sid: bytes, role: Any, **kw: Any) -> None:
        original(self, isk, sid, role, **kw)
        self._recorded_isk = isk  # type: ignore[attr-defined]

    RecordChannel.__init__ = init  # type: ignore[method-assign]

    def restore() -> None:
        RecordChannel.__init__ = original  # type: ignore[method-assign]

    return restore


def _isk(hs: AgentHandshake) -> bytes:
    return bytes(hs.channel._recorded_isk)  # type: ignore[attr-defined]


def handshake_transcript() -> dict[str, Any]:
    restore = _capture_isk()
    try:
        return {
            "established": _handshake(1001, 2002, "QZ4M 7K2X"),
            "wrong_password": _handshake(3003, 4004, "qz4m-7k2y"),
        }
    finally:
        restore()


def records_transcript() -> dict[str, Any]:
    rng = random.Random(5005)
    isk, sid = rng.randbytes(64), rng.randbytes(32)
    rekey = 3
    agent = RecordChannel(isk, sid, "agent", rekey_after=rekey)
    tech = RecordChannel(isk, sid, "technician", rekey_after=rekey)
    a2t, t2a = derive_direction_keys(isk, sid)
    plain_a = [
        b"",
        b"agent record 1",
        bytes(range(256)),
        b"after the key update",
        b"x" * 1000,
        b"!",
    ]
    plain_t = [b"technician record 1", b"", b"\x00" * 40, b"after the key update", b"t" * 700]
    return {
        "isk": isk.hex(),
        "sid": sid.hex(),
        "rekey_after": rekey,
        "key_agent_to_technician": a2t.hex(),
        "key_technician_to_agent": t2a.hex(),
        "updated_key_agent_to_technician": next_key(a2t).hex(),
        "updated_key_technician_to_agent": next_key(t2a).hex(),
        "agent_records": [{"plaintext": p.hex(), "record": agent.seal(p).hex()} for p in plain_a],
        "technician_records": [
            {"plaintext": p.hex(), "record": tech.seal(p).hex()} for p in plain_t
        ],
    }


def mux_transcript() -> dict[str, Any]:
    """Steps on a technician Mux and an agent Mux (Python both), with the frames each step
    queues and the events each side's receive_frame gives."""
    tech, agent = Mux("technician"), Mux("agent")
    steps: list[dict[str, Any]] = []

    def step(side: str, op: dict[str, Any], run: Callable[[Mux], Any]) -> None:
        mux, peer = (tech, agent) if side == "technician" else (agent, tech)
        result = run(mux)
        frames = mux.frames_to_send()
        events = [[_event(e) for e in peer.receive_frame(f)] for f in frames]
        entry: dict[str, Any] = {"side": side, "op": op, "frames": [f.hex() for f in frames]}
        entry["events"] = events
        if isinstance(result, int):
            entry["result"] = result
        steps.append(entry)

    file_params = {"name": "見積書 2026.pdf", "size": 1234, "dest": "Desktop", "overwrite": False}
    step("technician", {"op": "open", "kind": "rfb", "params": {}}, lambda m: m.open_stream("rfb"))
    step(
        "technician",
        {"op": "open", "kind": "file_put", "params": {**file_params, "grant": 3}},
        lambda m: m.open_stream("file_put", {**file_params, "grant": 3}),
    )
    hello = b"RFB 003.008\n"
    step("agent", {"op": "data", "stream": 1, "data": hello.hex()}, lambda m: m.send_data(1, hello))
    step(
        "technician",
        {"op": "data", "stream": 1, "data": hello.hex()},
        lambda m: m.send_data(1, hello),
    )
    # 33000 bytes counting modulo 251: two DATA frames (MAX_DATA, then the rest).
    big = bytes(i % 251 for i in range(33000))
    step("technician", {"op": "data", "stream": 3, "pattern": 251, "length": len(big)},
         lambda m: m.send_data(3, big))  # fmt: skip
    step("agent", {"op": "consumed", "stream": 3, "n": 33000}, lambda m: m.consumed(3, 33000))
    step("agent", {"op": "consumed", "stream": 3, "n": 100000}, lambda m: m.consumed(3, 100000))
    step("technician", {"op": "eof", "stream": 3}, lambda m: m.send_eof(3))
    step(
        "agent",
        {"op": "reset", "stream": 3, "reason": "consent_required"},
        lambda m: m.reset(3, "consent_required"),
    )
    step(
        "technician", {"op": "consumed", "stream": 1, "n": 131072}, lambda m: m.consumed(1, 131072)
    )
    req = control.encode(control.Request(id=1, action="screenshot", purpose="画面の確認"))
    step(
        "technician", {"op": "data", "stream": 0, "data": req.hex()}, lambda m: m.send_data(0, req)
    )
    step("agent", {"op": "eof", "stream": 1}, lambda m: m.send_eof(1))
    step("technician", {"op": "eof", "stream": 1}, lambda m: m.send_eof(1))
    term = {"cols": 80, "rows": 24, "term": "xterm-256color"}
    step(
        "technician",
        {"op": "open", "kind": "terminal", "params": term},
        lambda m: m.open_stream("terminal", term),
    )
    step(
        "technician",
        {"op": "reset", "stream": 5, "reason": "viewer_closed"},
        lambda m: m.reset(5, "viewer_closed"),
    )
    # A frame for a stream this side already forgot is dropped without an event.
    late = encode_frame(FrameType.DATA, 5, b"late")
    assert tech.receive_frame(late) == []

    # Frames a technician's Mux must refuse (each on a fresh Mux).
    invalid = {
        "short frame": "01000000",
        "unknown type": encode_frame(9, 0).hex(),  # type: ignore[arg-type]
        "open with the technician's parity": encode_frame(FrameType.OPEN, 1, b"\x03rfb").hex(),
        "open of stream 0": encode_frame(FrameType.OPEN, 0, b"\x03rfb").hex(),
        "open with empty kind": encode_frame(FrameType.OPEN, 2, b"\x00").hex(),
        "open truncated": encode_frame(FrameType.OPEN, 2, b"\x05rfb").hex(),
        "open params not an object": encode_frame(FrameType.OPEN, 2, b"\x03rfb[1]").hex(),
        "open params not JSON": encode_frame(FrameType.OPEN, 2, b"\x03rfb{").hex(),
        "eof on the control stream": encode_frame(FrameType.EOF, 0).hex(),
        "reset on the control stream": encode_frame(FrameType.RESET, 0, b"x").hex(),
        "window of 3 bytes": encode_frame(FrameType.WINDOW, 0, b"\x00\x00\x01").hex(),
        "window of zero": encode_frame(FrameType.WINDOW, 0, bytes(4)).hex(),
        "window over MAX_WINDOW":
            encode_frame(FrameType.WINDOW, 0, (1 << 30).to_bytes(4, "big")).hex(),
        "data for a never-opened stream": encode_frame(FrameType.DATA, 2, b"x").hex(),
        "window for a never-opened own stream":
            encode_frame(FrameType.WINDOW, 1, b"\x00\x00\x00\x01").hex(),
    }  # fmt: skip
    for name, frame in invalid.items():
        try:
            Mux("technician").receive_frame(bytes.fromhex(frame))
        except ProtocolError:
            continue
        raise AssertionError(f"Python accepted {name}")
    return {"steps": steps, "dropped": late.hex(), "invalid_for_technician": invalid}


def control_transcript() -> dict[str, Any]:
    messages: list[control.Message] = [
        control.Consent(granted=True, scope=["screen", "control"]),
        control.Consent(granted=False),
        control.Status(control_paused=True),
        control.Status(control_paused=False, granted=["screen", "control", "terminal"]),
        control.Request(
            id=7,
            action="file_to_customer",
            details={"name": "設定.txt", "size": 10, "dest": "Desktop", "overwrite": True},
        ),
        control.Request(id=8, action="screen", purpose="確認のため \"quoted\" \\ \n"),
        control.Answer(id=7, action="file_to_customer", granted=True),
        control.Answer(id=8, action="terminal", granted=False, reason="timeout"),
        control.Chat(text="こんにちは 😀 \u2028 <tag> &", at=AT),
        control.End(reason="technician_ended"),
        control.End(reason="customer_ended", detail="画面を閉じました"),
        control.Error(code="unknown_message", message="x is not handled by this side"),
    ]  # fmt: skip
    encoded = [{"message": _msg(m), "bytes": control.encode(m).hex()} for m in messages]
    invalid = {
        "extra field": b'{"type":"chat","text":"a","at":"b","x":1}',
        "empty chat": b'{"type":"chat","text":"","at":"b"}',
        "long chat": json.dumps({"type": "chat", "text": "a" * 4001, "at": "b"}).encode(),
        "unknown action": b'{"type":"request","id":1,"action":"everything"}',
        "id zero": b'{"type":"request","id":0,"action":"screen"}',
        "id too large": b'{"type":"request","id":2147483648,"action":"screen"}',
        "end reason unknown": b'{"type":"end","reason":"bored"}',
        "no type": b'{"text":"a"}',
        "type too long": json.dumps({"type": "t" * 33}).encode(),
        "not an object": b"[1,2]",
        "not JSON": b"{",
        "too deep": b"[" * 40 + b"]" * 40,
        "consent granted missing": b'{"type":"consent"}',
        "details value a list": b'{"type":"request","id":1,"action":"screen","details":{"a":[1]}}',
        "scope null": b'{"type":"consent","granted":true,"scope":null}',
    }
    for name, body in invalid.items():
        try:
            control.parse(body)
        except ProtocolError:
            continue
        raise AssertionError(f"Python accepted {name}")
    unknown = b'{"type":"screen_layout","monitors":[1,2]}'
    assert control.parse(unknown) == control.Unknown("screen_layout")
    lenient = b'{"type":"status","control_paused":false,"granted":null}'
    return {
        "encoded": encoded,
        "invalid": {k: v.hex() for k, v in invalid.items()},
        "unknown": {"body": unknown.hex(), "type": "screen_layout"},
        "parsed": [{"body": lenient.hex(), "message": _msg(control.parse(lenient))}],
    }


def session_transcript() -> dict[str, Any]:
    """A whole session as the relay carries it, technician's view: handshake, then each
    record with its frame (t2a: the operation that produced it)."""
    restore = _capture_isk()
    try:
        rand_t, rand_a = Recorder(7007), Recorder(8008)
        agent_hs = AgentHandshake("3hmp-v9wd", AGENT_ID, randbytes=rand_a)
        tech_hs = TechnicianHandshake("3HMP V9WD", AGENT_ID, randbytes=rand_t)
        wire: list[dict[str, Any]] = []
        hello = tech_hs.start()
        wire.append({"dir": "t2a", "handshake": True, "wire": hello.hex()})
        [share_a] = agent_hs.receive(hello)
        wire.append({"dir": "a2t", "handshake": True, "wire": share_a.hex()})
        [share_b] = tech_hs.receive(share_a)
        wire.append({"dir": "t2a", "handshake": True, "wire": share_b.hex()})
        [confirm] = agent_hs.receive(share_b)
        wire.append({"dir": "a2t", "handshake": True, "wire": confirm.hex()})
        tech_hs.receive(confirm)
    finally:
        restore()
    ar, tr = agent_hs.channel, tech_hs.channel
    tmux, amux = Mux("technician"), Mux("agent")
    reader = control.ControlReader()

    def t2a(op: dict[str, Any], run: Callable[[Mux], Any]) -> None:
        run(tmux)
        for frame in tmux.frames_to_send():
            events = [_event(e) for e in amux.receive_frame(frame)]
            wire.append(
                {"dir": "t2a", "op": op, "frame": frame.hex(), "wire": tr.seal(frame).hex(),
                 "agent_events": events}
            )  # fmt: skip

    def a2t(run: Callable[[Mux], Any]) -> None:
        run(amux)
        for frame in amux.frames_to_send():
            record = ar.seal(frame)
            events = tmux.receive_frame(tr.open(record))
            msgs = [
                _msg(m)
                for e in events
                if isinstance(e, DataReceived) and e.stream_id == 0
                for m in reader.feed(e.data)
            ]
            entry = {"dir": "a2t", "wire": record.hex(), "frame": frame.hex()}
            wire.append({**entry, "events": [_event(e) for e in events], "control": msgs})

    def ctl(msg: control.Message) -> Callable[[Mux], Any]:
        return lambda m: m.send_data(0, control.encode(msg))

    a2t(ctl(control.Consent(granted=True, scope=["screen", "control"])))
    chat = control.Chat(text="こんにちは、画面を拝見します", at=AT)
    t2a({"op": "control", "message": _msg(chat)}, ctl(chat))
    t2a({"op": "open", "kind": "rfb", "params": {}}, lambda m: m.open_stream("rfb"))
    version = b"RFB 003.008\n"
    a2t(lambda m: m.send_data(1, version))
    t2a({"op": "data", "stream": 1, "data": version.hex()}, lambda m: m.send_data(1, version))
    a2t(lambda m: m.send_data(1, b"\x01\x01"))  # security types: None
    a2t(ctl(control.Status(control_paused=False, granted=["screen", "control"])))
    request = control.Request(id=1, action="system_info", purpose="診断")
    t2a({"op": "control", "message": _msg(request)}, ctl(request))
    a2t(ctl(control.Answer(id=1, action="system_info", granted=True)))
    a2t(ctl(control.Chat(text="はい、どうぞ", at=AT)))
    t2a(
        {"op": "reset", "stream": 1, "reason": "viewer_closed"},
        lambda m: m.reset(1, "viewer_closed"),
    )
    end = control.End(reason="technician_ended")
    t2a({"op": "control", "message": _msg(end)}, ctl(end))
    return {
        "agent_id": AGENT_ID,
        "agent_password": "3hmp-v9wd",
        "technician_password": "3HMP V9WD",
        "technician_randomness": rand_t.draws,
        "agent_randomness": rand_a.draws,
        "wire": wire,
    }


def build() -> dict[str, str]:
    """Every transcript file's name and exact content."""
    files = {
        "handshake.json": handshake_transcript(),
        "records.json": records_transcript(),
        "mux.json": mux_transcript(),
        "control.json": control_transcript(),
        "session.json": session_transcript(),
    }
    return {
        name: json.dumps(content, indent=1, ensure_ascii=False) + "\n"
        for name, content in files.items()
    }


def main() -> None:
    DIR.mkdir(exist_ok=True)
    for name, text in build().items():
        (DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {DIR / name}")


if __name__ == "__main__":
    main()
