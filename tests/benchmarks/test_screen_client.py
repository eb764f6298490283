"""The screen benchmark's RFB client with continuous updates (the ``-cu`` profiles): it
turns them on once the server offers them, then sends no incremental requests, and it
answers fence requests as TigerVNC's viewer does. Against a scripted server."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from benchmarks.screen import PROFILES, Client

#: What the client sends after its encodings here: 29 bytes either way (EnableContinuous
#: Updates or an incremental request, the fence's answer, the full request).
AFTER = 10 + 9 + 10


def _serve(listener: socket.socket, profile: str, received: list[bytes]) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(b"RFB 003.008\n")
        conn.recv(12)
        conn.sendall(b"\x01\x01")  # one security type: None
        conn.recv(1)
        conn.sendall(b"\x00\x00\x00\x00")
        conn.recv(1)  # ClientInit
        conn.sendall(struct.pack("!HH", 64, 48) + bytes(16) + struct.pack("!I", 1) + b"x")
        # SetPixelFormat (20 bytes), then SetEncodings (4 + 4 a code).
        need = 20 + 4 + 4 * len(PROFILES[profile])
        head = b""
        while len(head) < need:
            head += conn.recv(need - len(head))
        received.append(head)
        conn.sendall(b"\x96")  # EndOfContinuousUpdates: continuous updates offered
        conn.sendall(struct.pack("!B3xIB", 248, 1 << 31 | 1, 3) + b"abc")  # a fence request
        conn.settimeout(2)
        data = b""
        while len(data) < AFTER:
            try:
                chunk = conn.recv(100)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        received.append(data)


@pytest.mark.parametrize("profile", ["zrle-cu", "zrle"])
def test_continuous_updates_on_when_wanted_and_offered_and_fences_answered(profile: str) -> None:
    continuous = profile.endswith("-cu")
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []
    server = threading.Thread(target=_serve, args=(listener, profile, received))
    server.start()
    client = Client(listener.getsockname()[1], PROFILES[profile], full=False)
    try:
        assert client.wants_continuous == continuous and not client.continuous
        assert client.read(5) is False  # EndOfContinuousUpdates
        assert client.continuous == continuous
        assert client.read(5) is False  # the fence request
        assert client.fences == 1
        client.request()  # incremental: with continuous updates not sent
        client.request(False)  # a full update is always asked for
        server.join(10)
    finally:
        client.close()
        listener.close()
    encodings = received[0][24:]
    codes = struct.unpack(f"!{len(encodings) // 4}i", encodings)
    assert (codes[-2:] == (-312, -313)) == continuous
    incremental = struct.pack("!BBHHHH", 3, 1, 0, 0, 64, 48)
    assert received[1] == (
        (struct.pack("!BBHHHH", 150, 1, 0, 0, 64, 48) if continuous else b"")  # Enable, all
        + struct.pack("!B3xIB", 248, 0, 3) + b"abc"  # the fence answered, no flag kept
        + (b"" if continuous else incremental)
        + struct.pack("!BBHHHH", 3, 0, 0, 0, 64, 48)  # the full request
    )  # fmt: skip
