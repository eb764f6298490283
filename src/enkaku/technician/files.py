"""The technician's side of file transfer: send a file to the customer, fetch one, list
a folder. Wire format in ``protocol/filexfer.py`` (docs/protocol/files.md).

The caller (CLI or console) builds the consent request and the stream parameters here
(``put_params`` / ``get_params`` / ``browse_params`` and ``consent_details``), opens the
stream with the grant added, and hands it to ``put`` / ``get`` / ``browse``. A download
is kept as a hidden part in the download folder like the agent keeps uploads
(``agent/partials.py``): ``get_params`` offers its verified length and hash, so asking
again resumes; the whole file's SHA-256 is checked before it gets its name, and an
existing file is never replaced ("name (1).ext" instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from enkaku.agent.partials import (
    Part,
    WriteBehind,
    expire_partials,
    open_folder,
    os_reason,
    read_info,
    stem_for,
)
from enkaku.protocol import filexfer as fx
from enkaku.transport.channel import Stream
from enkaku.transport.errors import SessionEnded

#: on_progress(done_bytes, total_bytes); done includes a resumed part.
Progress = Callable[[int, int], None]

#: How long a partial download is kept (as the agent's FileSettings.partial_ttl).
PARTIAL_TTL = 24 * 3600.0
#: Received bytes go to disk in batches of this size.
WRITE_BATCH = 1 << 20
CHECKPOINT_EVERY = 16 << 20
#: "name (1).ext" … "name (999).ext" before giving up.
MAX_RENAMES = 999


class TransferError(Exception):
    """A transfer failed or was refused; ``reason`` is the RESET reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def message(self, lang: str | None = None) -> str:
        """What went wrong and what to do, in the technician's language."""
        return fx.message(self.reason, lang)

    def __str__(self) -> str:
        return self.message()


def _no_progress(done: int, total: int) -> None:
    pass


# -- parameters and consent ---------------------------------------------------------


def _regular(local_path: Path) -> os.stat_result:
    try:
        st = local_path.stat()
    except FileNotFoundError:
        raise TransferError("not_found") from None
    except PermissionError:
        raise TransferError("permission_denied") from None
    if stat.S_ISDIR(st.st_mode):
        raise TransferError("is_directory")
    if not stat.S_ISREG(st.st_mode):
        raise TransferError("not_regular_file")
    return st


def put_params(
    local_path: Path, dest: str = "", overwrite: bool = False, os_kind: fx.OsKind = "posix"
) -> dict[str, Any]:
    """The ``file_put`` stream parameters (add ``grant``) for sending ``local_path`` into
    the customer's folder ``dest`` ("" = the agent's incoming folder). Reads the whole
    file for its SHA-256: call it on a worker thread for big files. ``os_kind`` is the
    customer's (their agent checks again)."""
    st = _regular(local_path)
    name = local_path.name
    bad = fx.check_name(name, os_kind)
    if bad is not None:
        raise TransferError(bad)
    if dest and not dest.startswith("/"):
        raise TransferError("bad_path")
    hasher = hashlib.sha256()
    with local_path.open("rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return {
        "name": name,
        "size": st.st_size,
        "sha256": hasher.hexdigest(),
        "dest": dest,
        "overwrite": overwrite,
    }


def _get_key(path: str) -> str:
    return f"get\0{path}"


def get_params(path: str, dest_dir: Path, ttl: float = PARTIAL_TTL) -> dict[str, Any]:
    """The ``file_get`` parameters (add ``grant``) for fetching the customer's ``path``
    into ``dest_dir``: with the offset and hash of a part kept from an earlier try.
    Removes expired parts in ``dest_dir`` first."""
    if not path.startswith("/"):
        raise TransferError("bad_path")
    expire_partials(dest_dir, ttl, time.time())
    params: dict[str, Any] = {"path": path, "offset": 0}
    with contextlib.suppress(fx.Refused):
        dir_fd = open_folder(dest_dir, follow=True)
        try:
            info = read_info(dir_fd, stem_for(_get_key(path)))
        finally:
            os.close(dir_fd)
        if info is not None and info.key == _get_key(path) and info.verified > 0:
            params.update(offset=info.verified, sha256=info.sha256)
    return params


def browse_params(path: str = "") -> dict[str, Any]:
    """The ``browse`` parameters (add ``grant``): an absolute folder, "" = home."""
    if path and not path.startswith("/"):
        raise TransferError("bad_path")
    return {"path": path}


def consent_details(
    kind: str, params: dict[str, Any], size: int | None = None
) -> dict[str, str | int | bool]:
    """The consent request's ``details`` for a stream of ``kind`` with ``params`` (what
    the customer reads and the agent binds the stream to). ``size``: a fetched file's
    size when known from ``browse``."""
    if kind == fx.KIND_PUT:
        keys = ("name", "size", "dest", "overwrite")
        return {k: params[k] for k in keys}
    if kind == fx.KIND_GET:
        details: dict[str, str | int | bool] = {"path": params["path"]}
        if size is not None:
            details["size"] = size
        return details
    if kind == fx.KIND_BROWSE:
        return {}
    raise ValueError(f"not a file stream kind: {kind!r}")


# -- streams ------------------------------------------------------------------------


def _ended(stream: Stream, exc: SessionEnded | None = None) -> TransferError:
    """Why the stream stopped: the agent's RESET reason, else an interruption."""
    if exc is not None and exc.reason == "stream_reset" and exc.detail:
        return TransferError(exc.detail)
    return TransferError(stream.reset_reason or "interrupted")


async def _fail(stream: Stream, reason: str) -> TransferError:
    await stream.reset(reason)
    return TransferError(reason)


async def _read_line(stream: Stream, reader: fx.LineReader) -> tuple[dict[str, Any], bytes]:
    while True:
        data = await stream.read()
        if not data:
            raise _ended(stream)
        try:
            done = reader.feed(data)
        except fx.Refused as exc:
            raise await _fail(stream, exc.reason) from None
        if done is not None:
            return done


async def put(stream: Stream, local_path: Path, on_progress: Progress | None = None) -> str:
    """Send ``local_path`` on a ``file_put`` stream opened with ``put_params``; returns
    the name the customer's file got. Raises TransferError. Cancelling it resets the
    stream with ``cancelled`` (the agent keeps what arrived, for a resume)."""
    async with _cancels(stream):
        return await _put(stream, local_path, on_progress or _no_progress)


@contextlib.asynccontextmanager
async def _cancels(stream: Stream) -> AsyncIterator[None]:
    """A cancelled transfer tells the agent, which otherwise would wait for more."""
    try:
        yield
    except asyncio.CancelledError:
        await stream.reset("cancelled")
        raise


async def _put(stream: Stream, local_path: Path, progress: Progress) -> str:
    size = stream.params["size"]
    obj, _ = await _read_line(stream, fx.LineReader())
    try:
        offset = fx.parse_offset(obj, size)
    except fx.Refused as exc:
        raise await _fail(stream, exc.reason) from None
    try:
        fd = os.open(local_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        raise await _fail(stream, "cancelled") from None
    try:
        if os.fstat(fd).st_size != size:
            raise await _fail(stream, "size_mismatch")
        pos = offset
        progress(pos, size)
        while pos < size:
            chunk = await asyncio.to_thread(os.pread, fd, min(fx.CHUNK, size - pos), pos)
            if not chunk:
                raise await _fail(stream, "size_mismatch")
            try:
                await stream.write(chunk)
            except SessionEnded as exc:
                raise _ended(stream, exc) from None
            pos += len(chunk)
            progress(pos, size)
    finally:
        os.close(fd)
    await stream.write_eof()
    result, _ = await _read_line(stream, fx.LineReader())
    name = result.get("name")
    if result.get("ok") is not True or not isinstance(name, str):
        raise await _fail(stream, "bad_params")
    return name


def _commit_unique(part: Part, name: str) -> str:
    """Give the finished part ``name``, or "name (n).ext" when taken."""
    base, dot, ext = name.rpartition(".")
    if not base:  # no extension, or a dot file
        base, dot, ext = name, "", ""
    candidates = [name] + [f"{base} ({n}){dot}{ext}" for n in range(1, MAX_RENAMES + 1)]
    for candidate in candidates:
        if fx.check_name(candidate, fx.local_os_kind()) is not None:
            break
        try:
            part.commit(candidate, overwrite=False)
        except fx.Refused as exc:
            if exc.reason in ("exists", "target_not_file"):
                continue
            raise
        return candidate
    raise fx.Refused("exists")


async def get(
    stream: Stream,
    dest_dir: Path,
    on_progress: Progress | None = None,
    *,
    on_skipped: Callable[[int], None] | None = None,
) -> Path:
    """Receive the file of a ``file_get`` stream opened with ``get_params`` into
    ``dest_dir``; returns where it was saved. Raises TransferError (an interrupted
    download keeps its part: the next ``get_params`` resumes it). A folder arrives as
    ``NAME.tar``; ``on_skipped(n)`` is told how many of its entries were left out
    (message "files_archive_skipped"). Cancelling it resets the stream with ``cancelled``."""
    async with _cancels(stream):
        return await _get(stream, dest_dir, on_progress or _no_progress, on_skipped)


async def _get(
    stream: Stream,
    dest_dir: Path,
    progress: Progress,
    on_skipped: Callable[[int], None] | None,
) -> Path:
    obj, rest = await _read_line(stream, fx.LineReader())
    if "archive" in obj:
        path = await _get_archive(stream, obj, rest, dest_dir, progress, on_skipped)
        await stream.write_eof()
        return path
    try:
        header = fx.GetHeader.parse(obj)
    except fx.Refused as exc:
        raise await _fail(stream, exc.reason) from None
    dir_fd = await _open_dest(stream, dest_dir, header.name)
    try:
        key = _get_key(stream.params["path"])
        part = await asyncio.to_thread(
            Part.open, dir_fd, key, header.size, header.sha256, time.time()
        )
        try:
            if header.offset != part.offset:
                await asyncio.to_thread(part.rewind, header.offset)
            name = await _receive(stream, part, header, rest, progress)
        except fx.Refused as exc:
            raise await _fail(stream, exc.reason) from None
        finally:
            if not part.closed:
                await asyncio.to_thread(part.keep, time.time())
    except fx.Refused as exc:
        raise await _fail(stream, exc.reason) from None
    except OSError as exc:
        raise await _fail(stream, os_reason(exc)) from None
    finally:
        os.close(dir_fd)
    await stream.write_eof()
    return dest_dir / name


async def _receive(
    stream: Stream, part: Part, header: fx.GetHeader, first: bytes, progress: Progress
) -> str:
    size = header.size
    progress(part.written, size)
    disk = WriteBehind(part, CHECKPOINT_EVERY, time.time)
    batch = bytearray(first)
    received = part.written + len(batch)
    while True:
        if received > size:
            await disk.drain()
            await asyncio.to_thread(part.discard)
            raise fx.Refused("size_mismatch")
        if len(batch) >= WRITE_BATCH:
            await disk.write(bytes(batch))
            batch.clear()
            progress(received, size)
        chunk = await stream.read()
        if not chunk:
            break
        batch += chunk
        received += len(chunk)
    if batch:
        await disk.write(bytes(batch))
    await disk.drain()
    progress(part.written, size)
    if not stream.eof:
        raise _ended(stream)
    if part.written != size:
        raise fx.Refused("size_mismatch")
    return await asyncio.to_thread(_commit_unique, part, header.name)


async def _open_dest(stream: Stream, dest_dir: Path, name: str) -> int:
    bad = fx.check_name(name, fx.local_os_kind())
    if bad is not None:
        raise await _fail(stream, bad)
    try:
        return await asyncio.to_thread(open_folder, dest_dir, False, True)
    except fx.Refused as exc:
        raise await _fail(stream, exc.reason) from None


async def _get_archive(
    stream: Stream,
    obj: dict[str, Any],
    first: bytes,
    dest_dir: Path,
    progress: Progress,
    on_skipped: Callable[[int], None] | None,
) -> Path:
    """A folder's tar stream: written to a hidden part, checked, named ``NAME.tar``.
    Nothing is kept when it is interrupted (an archive is made afresh each time)."""
    try:
        header = fx.ArchiveHeader.parse(obj)
    except fx.Refused as exc:
        raise await _fail(stream, exc.reason) from None
    dir_fd = await _open_dest(stream, dest_dir, header.name)
    try:
        key = f"tar\0{stream.params['path']}"
        part = await asyncio.to_thread(Part.open, dir_fd, key, 0, "", time.time())
        try:
            trailer = await _receive_frames(stream, part, header.estimate, first, progress)
            part.info.size, part.info.sha256 = part.written, trailer.sha256
            name = await asyncio.to_thread(_commit_unique, part, header.name)
        except fx.Refused as exc:
            raise await _fail(stream, exc.reason) from None
        finally:
            if not part.closed:
                await asyncio.to_thread(part.discard)
    except fx.Refused as exc:
        raise await _fail(stream, exc.reason) from None
    except OSError as exc:
        raise await _fail(stream, os_reason(exc)) from None
    finally:
        os.close(dir_fd)
    if on_skipped is not None and trailer.skipped:
        on_skipped(trailer.skipped)
    return dest_dir / name


async def _receive_frames(
    stream: Stream, part: Part, estimate: int, first: bytes, progress: Progress
) -> fx.Trailer:
    reader = fx.FramedReader()
    batch = bytearray()
    data = first
    while True:
        for chunk in reader.feed(data):
            batch += chunk
        if len(batch) >= WRITE_BATCH:
            await asyncio.to_thread(part.write, bytes(batch))
            batch.clear()
            progress(part.written, max(estimate, part.written))
        data = await stream.read()
        if not data:
            break
    if batch:
        await asyncio.to_thread(part.write, bytes(batch))
        progress(part.written, part.written)
    if reader.trailer is None or not stream.eof:
        raise _ended(stream)
    if reader.trailer.size != part.written:
        raise fx.Refused("size_mismatch")
    return reader.trailer


class Listing(list[dict[str, Any]]):
    """A folder's entries (name, type, size, mtime), with the folder's ``path`` and
    whether the agent ``truncated`` the list."""

    def __init__(self, entries: list[dict[str, Any]], path: str, truncated: bool) -> None:
        super().__init__(entries)
        self.path, self.truncated = path, truncated


async def browse(stream: Stream) -> Listing:
    """Read the listing of a ``browse`` stream opened with ``browse_params``."""
    async with _cancels(stream):
        return await _browse(stream)


async def _browse(stream: Stream) -> Listing:
    data = bytearray()
    while chunk := await stream.read():
        data += chunk
        if len(data) > fx.MAX_LISTING:
            raise await _fail(stream, "bad_params")
    if not stream.eof:
        raise _ended(stream)
    try:
        path, entries, truncated = fx.parse_listing(bytes(data))
    except fx.Refused as exc:
        raise await _fail(stream, exc.reason) from None
    await stream.write_eof()
    return Listing(entries, path, truncated)
