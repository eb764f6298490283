"""Socket settings for relay legs: keep queued bytes in the application, not the kernel.

A relay leg carries a screen update and a file transfer on one TCP connection. Linux
lets a socket's send buffer grow to megabytes, and bytes queued there go out in order:
a screen update sealed after 2 MB of file data waits for all of it. With
``TCP_NOTSENT_LOWAT`` the kernel reports the socket writable only while little unsent
data is queued, so the rest waits in the sender's own queue, where the channel's writer
puts control and screen data first (docs/protocol/streams.md#the-writer).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

#: Unsent bytes the kernel may hold per relay socket: several records, a few ms at the
#: rates a relay leg reaches, so throughput is unchanged.
NOTSENT_LOWAT = 128 * 1024


def limit_unsent(sock: Any) -> None:
    """Apply ``NOTSENT_LOWAT`` to ``sock`` where the platform has it (Linux, macOS);
    elsewhere, and for anything that is not a TCP socket, nothing happens."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is None or not isinstance(sock, socket.socket):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, NOTSENT_LOWAT)
