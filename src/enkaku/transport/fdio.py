"""Non-blocking file descriptors on the event loop (PTY masters, the local terminal).

One reader or writer callback per wait, removed when the wait ends, so nothing is read
while the reader's consumer is busy (backpressure) and no thread is needed.
"""

from __future__ import annotations

import asyncio
import errno
import os


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_fd(fd: int, *, write: bool = False) -> None:
    """Wait until ``fd`` is readable (or writable), or hung up."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    if write:
        loop.add_writer(fd, _wake, fut)
    else:
        loop.add_reader(fd, _wake, fut)
    try:
        await fut
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def read_fd(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from non-blocking ``fd``; b"" at end of file, or when the
    other side of a PTY has closed (Linux reports EIO there)."""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            await wait_fd(fd)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise


async def write_fd(fd: int, data: bytes) -> bool:
    """Write all of ``data`` to non-blocking ``fd``, waiting while it is full; False when
    the other side of a PTY has closed (EIO) and the rest was dropped."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await wait_fd(fd, write=True)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False
            raise
    return True
