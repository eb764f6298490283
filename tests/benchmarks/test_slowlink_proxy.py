"""The slow-link benchmark's proxy (``benchmarks/slowlink.py``'s ``Throttle``): data
crosses it intact and in order with a rate and a one-way delay, and a round trip through
it takes at least twice the delay (a lower bound the proxy guarantees, not a timing
threshold: nothing here asserts how fast anything is)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from benchmarks.slowlink import Throttle


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A real TCP echo server on loopback; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                conns.append(conn)
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for c in conns:
            c.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, f"the stream ended after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("delay", [0.0, 0.04])
def test_data_crosses_intact_and_in_order(delay: float) -> None:
    payload = os.urandom(400_000)
    with echo_server() as port:
        proxy = Throttle(port, 1_000_000, delay)
        try:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
                got = bytearray()

                def read() -> None:
                    got.extend(recv_exactly(sock, len(payload)))

                reader = threading.Thread(target=read)
                reader.start()
                start = time.monotonic()
                for i in range(0, len(payload), 7_000):  # uneven writes
                    sock.sendall(payload[i : i + 7_000])
                reader.join(60)
                elapsed = time.monotonic() - start
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(1) == b""  # the end of the stream crosses the line too
        finally:
            proxy.close()
    assert bytes(got) == payload
    # Lower bounds the proxy guarantees: the paced bytes (less its 20 ms burst
    # allowance) and the delay, there and back.
    assert elapsed >= len(payload) / 1_000_000 - 0.02 + 2 * delay


@pytest.mark.parametrize("delay", [0.03, 0.08])
def test_a_round_trip_takes_at_least_twice_the_delay(delay: float) -> None:
    with echo_server() as port:
        proxy = Throttle(port, 250_000, delay)
        try:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
                trips = []
                for i in range(5):
                    start = time.monotonic()
                    sock.sendall(bytes([i]) * 10)
                    assert recv_exactly(sock, 10) == bytes([i]) * 10
                    trips.append(time.monotonic() - start)
        finally:
            proxy.close()
    assert min(trips) >= 2 * delay
