"""A folder as a tar stream, produced on a worker thread and read chunk by chunk on the
event loop, without a temporary file and with backpressure (a bounded queue).

Regular files, folders and symbolic links (as links, never followed) go in, in pax
format so any name survives; devices, pipes and sockets are left out, and so are files
that cannot be read. A file that shrinks while it is archived is padded with zeros to
the size its header announced (the archive stays readable); both count in ``skipped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tarfile
from collections.abc import AsyncGenerator
from typing import IO

#: Bytes the tar writer hands over at a time, and how many such chunks may wait.
CHUNK = 256 * 1024
QUEUE_CHUNKS = 8


class _Cancelled(Exception):
    """The reader went away: the worker stops at its next write."""


class _Pipe:
    """The tar writer's file object: each write goes into the loop's queue (waiting
    while it is full)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]):
        self.loop, self.queue = loop, queue
        self.cancelled = False

    def put(self, item: bytes | None) -> None:
        if self.cancelled:
            raise _Cancelled
        asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop).result()

    def write(self, data: bytes) -> int:
        self.put(bytes(data))
        return len(data)


class _Padded:
    """Reads a file, then zeros once it ends early (it shrank since its header)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.short = f, False

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if n > 0 and len(data) < n:
            self.short = True
            data += bytes(n - len(data))
        return data


def _add(tar: tarfile.TarFile, path: str, arcname: str) -> bool:
    """Add one entry; False when it is left out."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISREG(st.st_mode):
        try:
            f = open(path, "rb", opener=_nofollow)  # noqa: SIM115 - closed below
        except OSError:
            return False
        with f:
            info = tar.gettarinfo(arcname=arcname, fileobj=f)
            if not info.isreg():
                return False
            padded = _Padded(f)
            tar.addfile(info, padded)
            return not padded.short
    if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
        try:
            info = tar.gettarinfo(path, arcname)
        except OSError:
            return False  # vanished meanwhile
        tar.addfile(info)
        return True
    return False


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def write_tar(top: str, name: str, pipe: _Pipe) -> int:
    """Archive folder ``top`` as ``name/…`` into ``pipe``; returns the entries left out."""
    skipped = 0

    def unreadable(exc: OSError) -> None:  # a folder os.walk cannot list
        nonlocal skipped
        skipped += 1

    # bufsize: the writer hands over CHUNK-sized pieces instead of 10 KiB records.
    with tarfile.open(  # type: ignore[call-overload]
        fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK
    ) as tar:
        tar.addfile(tar.gettarinfo(top, name))
        for root, dirs, files in os.walk(top, onerror=unreadable, followlinks=False):
            rel = os.path.relpath(root, top)
            base = name if rel == "." else f"{name}/{rel}"
            dirs.sort()
            for entry in [*sorted(files), *(d for d in dirs if os.path.islink(f"{root}/{d}"))]:
                if not _add(tar, os.path.join(root, entry), f"{base}/{entry}"):
                    skipped += 1
            for d in [d for d in dirs if not os.path.islink(f"{root}/{d}")]:
                _add(tar, os.path.join(root, d), f"{base}/{d}")
            tar.members.clear()  # written members need not stay in memory
    pipe.put(None)
    return skipped


def estimate(top: str) -> int:
    """The sum of the regular files' sizes under ``top`` (for progress; no reading)."""
    total = 0
    for root, _dirs, files in os.walk(top, followlinks=False):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, f))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


class TarStream:
    """``async for chunk in TarStream(path, name)``, then ``skipped``."""

    def __init__(self, top: str, name: str) -> None:
        self.top, self.name = top, name
        self.skipped = 0

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        pipe = _Pipe(asyncio.get_running_loop(), queue)
        worker = asyncio.ensure_future(asyncio.to_thread(write_tar, self.top, self.name, pipe))
        worker.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, worker}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done() and worker.exception() is not None:
                    getter.cancel()
                    worker.result()  # raises the writer's error
                item = await getter  # a writer that returned put its last chunks first
                if item is None:
                    break
                yield item
            self.skipped = await worker
        finally:
            if not worker.done():
                pipe.cancelled = True
                while not queue.empty():  # unblock a put in flight
                    queue.get_nowait()
