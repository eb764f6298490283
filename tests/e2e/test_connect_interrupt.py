"""Ctrl-C in `enkaku connect` while a VNC viewer is attached ends cleanly."""

from __future__ import annotations

import signal
import socket
import struct
from pathlib import Path

import pytest

from tests.xdisplay import xvfb

from .harness import World

pytestmark = [pytest.mark.e2e, pytest.mark.x11]


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"viewer connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def attach_viewer(port: int) -> socket.socket:
    """A minimal RFB 3.8 viewer (security None) that asks for updates and keeps reading."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    assert recv_exactly(sock, 12) == b"RFB 003.008\n"
    sock.sendall(b"RFB 003.008\n")
    (count,) = recv_exactly(sock, 1)
    assert 1 in recv_exactly(sock, count)  # security type None
    sock.sendall(b"\x01")
    assert recv_exactly(sock, 4) == b"\x00\x00\x00\x00"  # SecurityResult OK
    sock.sendall(b"\x01")  # ClientInit, shared
    width, height = struct.unpack(">HH", recv_exactly(sock, 4))
    _pixel_format = recv_exactly(sock, 16)
    (name_len,) = struct.unpack(">I", recv_exactly(sock, 4))
    recv_exactly(sock, name_len)
    # FramebufferUpdateRequest (full), then wait for the first update's header.
    sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    assert recv_exactly(sock, 1) == b"\x00"  # FramebufferUpdate: the screen is flowing
    return sock


def test_ctrl_c_with_a_viewer_attached_exits_cleanly(world: World, tmp_path: Path) -> None:
    with xvfb(640, 480) as display:
        agent = world.agent(display)
        creds = agent.next_line(60, event="credentials")
        tech = world.connect(creds["agent_id"], creds["password"])
        port = int(tech.next_line(60, event="vnc_listening")["port"])
        viewer = attach_viewer(port)
        try:
            # Keep asking for updates so data is in flight both ways at the interrupt.
            viewer.sendall(struct.pack(">BBHHHH", 3, 1, 0, 0, 640, 480))
            tech.signal(signal.SIGINT)
            assert tech.wait(30) == 0
        finally:
            viewer.close()
        err = tech.stderr(None)
        assert "Traceback" not in err, err
        assert "Task exception was never retrieved" not in err, err
        assert "Task was destroyed" not in err, err
        assert "Ending the session" in err
