"""The agent's file services: receive a file (``file_put``), send one (``file_get``),
list a folder (``browse``). Wire format in ``protocol/filexfer.py`` and
docs/protocol/files.md.

A received file is written under a hidden name in its destination folder
(``agent/partials.py``), checked against the sender's SHA-256 and only then renamed
into place, so nothing half-written or wrong is ever visible under its real name; an
interrupted one keeps its verified part for ``FileSettings.partial_ttl`` and the next
identical put resumes it. Every refusal is a stream RESET with a reason from
``filexfer.REASONS`` and a ``file_failed`` audit event carrying that reason. A finished
transfer is reported as ``file_received``/``file_sent`` with its size, the SHA-256 of its
bytes and its name (the server keeps the name in clear or only its hash, as its
``audit_file_names`` setting says; docs/privacy.md); contents are never reported, and
names never logged above debug.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from enkaku.agent.partials import Part, WriteBehind, expire_in, open_folder, os_reason, target_state
from enkaku.agent.services import FileSettings, ServiceContext, ServiceSpec
from enkaku.agent.tarstream import TarStream, estimate
from enkaku.protocol import filexfer as fx
from enkaku.transport.channel import Stream
from enkaku.transport.errors import SessionEnded

log = logging.getLogger(__name__)

#: Received bytes go to disk in batches of this size (one worker-thread hop each).
WRITE_BATCH = 1 << 20
#: Received bytes are fsync'd and recorded as verified every this many bytes.
CHECKPOINT_EVERY = 16 << 20


def wall_clock() -> float:
    """Seconds since the epoch: part ages must survive restarts (not monotonic)."""
    return time.time()


async def _refuse(stream: Stream, ctx: ServiceContext, reason: str) -> None:
    log.debug("%s stream %d refused: %s", stream.kind, stream.id, reason)
    await stream.reset(reason)
    await ctx.report("file_failed", reason)


# -- file_put -----------------------------------------------------------------------


class Progress:
    """A transfer's start, progress (each whole percent at most: at most 101 calls) and
    end, told to the customer's UI through ``ctx.activity`` (local only)."""

    def __init__(self, ctx: ServiceContext, stream: Stream, direction: str) -> None:
        self.ctx, self.id, self.direction = ctx, stream.id, direction
        self.info: dict[str, Any] | None = None
        self.percent = -1

    def start(self, name: str, size: int, done: int) -> None:
        self.info = {"id": self.id, "direction": self.direction, "name": name, "size": size}
        self._tell("start", done)

    def advance(self, done: int) -> None:
        if self.info is not None:
            percent = done * 100 // max(1, self.info["size"])
            if percent != self.percent:
                self.percent = percent
                self._tell("progress", done)

    def end(self, ok: bool) -> None:
        if self.info is not None:
            self._tell("done" if ok else "failed", self.info["size"] if ok else self.info["done"])
            self.info = None

    def _tell(self, state: str, done: int) -> None:
        assert self.info is not None
        self.info["done"] = done
        self.ctx.activity("transfer", {**self.info, "state": state})


async def serve_put(stream: Stream, ctx: ServiceContext) -> None:
    """Receive one file from the technician into the folder the customer allowed."""
    progress = Progress(ctx, stream, "receive")
    try:
        size, digest, name = await _put(stream, ctx, progress)
    except fx.Refused as exc:
        progress.end(False)
        await _refuse(stream, ctx, exc.reason)
    except OSError as exc:
        progress.end(False)
        await _refuse(stream, ctx, os_reason(exc))
    else:
        progress.end(True)
        await ctx.report("file_received", file_detail(size, digest, name))


def file_detail(size: int, sha256: str, name: str) -> str:
    """A transfer's audit detail: ``SIZE:SHA256:NAME`` (the name last: it may hold ':')."""
    return f"{size}:{sha256}:{name}"


async def _put(stream: Stream, ctx: ServiceContext, progress: Progress) -> tuple[int, str, str]:
    req = fx.parse_put(stream.params)
    if req.overwrite and ctx.grant.details.get("overwrite") is not True:
        raise fx.Refused("consent_required")  # the customer was not told it replaces
    bad = fx.check_name(req.name, fx.local_os_kind())
    if bad is not None:
        raise fx.Refused(bad)
    folder = Path(req.dest) if req.dest else ctx.files.incoming
    # The incoming folder is the agent's own setting (it may be a link, say to another
    # disk); a folder the technician names must be the real one.
    dir_fd = await asyncio.to_thread(open_folder, folder, req.dest == "", req.dest == "")
    try:
        await asyncio.to_thread(expire_in, dir_fd, ctx.files.partial_ttl, wall_clock())
        state = await asyncio.to_thread(target_state, dir_fd, req.name)
        if state == "other":
            raise fx.Refused("target_not_file")
        if state == "file" and not req.overwrite:
            raise fx.Refused("exists")
        key = f"put\0{req.name}\0{req.size}\0{req.sha256}"
        part = await asyncio.to_thread(Part.open, dir_fd, key, req.size, req.sha256, wall_clock())
        try:
            await _receive(stream, part, dir_fd, req, progress)
        finally:
            await _settle(part)
    finally:
        os.close(dir_fd)
    return req.size, req.sha256, req.name


async def _receive(
    stream: Stream, part: Part, dir_fd: int, req: fx.PutParams, progress: Progress
) -> None:
    free = await asyncio.to_thread(os.statvfs, dir_fd)
    if free.f_bavail * free.f_frsize < req.size - part.offset:
        raise fx.Refused("disk_full")
    log.debug("put stream %d starts at %d of %d", stream.id, part.offset, req.size)
    await _send(stream, fx.encode_line({"offset": part.offset}))
    disk = WriteBehind(part, CHECKPOINT_EVERY, wall_clock)
    batch = bytearray()
    received = part.written
    progress.start(req.name, req.size, received)
    while True:
        chunk = await stream.read()
        if not chunk:
            break
        received += len(chunk)
        progress.advance(min(received, req.size))
        if received > req.size:
            await disk.drain()
            await asyncio.to_thread(part.discard)  # the sender is broken: keep nothing
            raise fx.Refused("size_mismatch")
        batch += chunk
        if len(batch) >= WRITE_BATCH:
            await disk.write(bytes(batch))
            batch.clear()
    if batch:
        await disk.write(bytes(batch))
    await disk.drain()
    if not stream.eof:  # reset by the technician, or the session ended
        raise fx.Refused("interrupted")
    if part.written != req.size:
        raise fx.Refused("size_mismatch")
    await asyncio.to_thread(part.commit, req.name, req.overwrite)
    await _send(stream, fx.encode_line({"ok": True, "name": req.name}))
    await stream.write_eof()


async def _settle(part: Part) -> None:
    """Keep the verified part of a transfer that did not commit (nothing if it did)."""
    if part.closed:
        return
    try:
        await asyncio.shield(asyncio.to_thread(part.keep, wall_clock()))
    except asyncio.CancelledError:
        part.keep(wall_clock())  # waits for the thread above through the part's lock
        raise
    except OSError:
        log.warning("could not keep a partial transfer", exc_info=True)


async def _send(stream: Stream, data: bytes) -> None:
    try:
        await stream.write(data)
    except SessionEnded:
        raise fx.Refused("interrupted") from None


# -- file_get -----------------------------------------------------------------------


async def serve_get(stream: Stream, ctx: ServiceContext) -> None:
    """Send one of the customer's files to the technician, from the offset asked for
    when the technician's kept part is of this very file."""
    progress = Progress(ctx, stream, "send")
    try:
        size, digest, name = await _get(stream, progress)
    except fx.Refused as exc:
        progress.end(False)
        await _refuse(stream, ctx, exc.reason)
    except OSError as exc:
        progress.end(False)
        await _refuse(stream, ctx, os_reason(exc))
    else:
        progress.end(True)
        await ctx.report("file_sent", file_detail(size, digest, name))


def open_source(path: str) -> int:
    """A descriptor on the regular file ``path`` (not a link, device, pipe or socket)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise fx.Refused("not_found") from None
    except PermissionError:
        raise fx.Refused("permission_denied") from None
    if stat.S_ISLNK(st.st_mode):
        raise fx.Refused("symlink")
    if stat.S_ISDIR(st.st_mode):
        raise fx.Refused("is_directory")
    if not stat.S_ISREG(st.st_mode):
        raise fx.Refused("not_regular_file")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except PermissionError:
        raise fx.Refused("permission_denied") from None
    except OSError as exc:  # swapped since the lstat
        raise fx.Refused("symlink" if exc.errno == errno.ELOOP else "file_changed") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise fx.Refused("file_changed")
    return fd


def hash_file(fd: int, size: int) -> str:
    """SHA-256 of the first ``size`` bytes; Refused("file_changed") if it is shorter."""
    hasher = hashlib.sha256()
    pos = 0
    while pos < size:
        chunk = os.pread(fd, min(1 << 20, size - pos), pos)
        if not chunk:
            raise fx.Refused("file_changed")
        hasher.update(chunk)
        pos += len(chunk)
    return hasher.hexdigest()


async def _get(stream: Stream, progress: Progress) -> tuple[int, str, str]:
    req = fx.parse_get(stream.params)
    try:
        fd = await asyncio.to_thread(open_source, req.path)
    except fx.Refused as exc:
        if exc.reason != "is_directory":
            raise
        return await _get_folder(stream, req.path, progress)
    try:
        st = os.fstat(fd)
        size = st.st_size
        digest = await asyncio.to_thread(hash_file, fd, size)
        offset = req.offset if req.sha256 == digest and req.offset <= size else 0
        header = fx.GetHeader(os.path.basename(req.path), size, digest, offset, st.st_mtime)
        await _send(stream, header.encode())
        pos = offset
        progress.start(header.name, size, pos)
        while pos < size:
            chunk = await asyncio.to_thread(os.pread, fd, min(fx.CHUNK, size - pos), pos)
            if not chunk:
                raise fx.Refused("file_changed")
            await _send(stream, chunk)
            pos += len(chunk)
            progress.advance(pos)
        await stream.write_eof()
    finally:
        os.close(fd)
    return size, digest, header.name


def _can_list(path: str) -> None:
    with os.scandir(path):
        pass


async def _get_folder(stream: Stream, path: str, progress: Progress) -> tuple[int, str, str]:
    """Send a folder as a tar stream in frames, then its size and SHA-256 (no resume:
    an archive is made afresh each time)."""
    top = path.rstrip("/") or "/"
    name = os.path.basename(top) or "root"
    await asyncio.to_thread(_can_list, top)  # an unreadable folder is refused, not empty
    total = await asyncio.to_thread(estimate, top)
    await _send(stream, fx.ArchiveHeader(f"{name}.tar", total).encode())
    tar = TarStream(top, name)
    hasher, size = hashlib.sha256(), 0
    progress.start(f"{name}.tar", total, 0)
    async with contextlib.aclosing(tar.chunks()) as chunks:
        async for chunk in chunks:
            hasher.update(chunk)
            size += len(chunk)
            progress.advance(min(size, total))
            await _send(stream, fx.frame(chunk))
    await _send(stream, fx.Trailer(size, hasher.hexdigest(), tar.skipped).encode())
    await stream.write_eof()
    return size, hasher.hexdigest(), f"{name}.tar"


# -- browse -------------------------------------------------------------------------


async def serve_browse(stream: Stream, ctx: ServiceContext) -> None:
    """List one folder: names, types, sizes, times (never contents), then EOF."""
    try:
        path = fx.parse_browse(stream.params) or str(Path.home())
        listing = await asyncio.to_thread(list_folder, path)
        await _send(stream, listing)
        await stream.write_eof()
    except fx.Refused as exc:
        await stream.reset(exc.reason)
    except OSError as exc:
        await stream.reset(os_reason(exc))


def _entry(entry: os.DirEntry[str]) -> dict[str, Any] | None:
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None  # vanished meanwhile
    if stat.S_ISLNK(st.st_mode):
        kind = "link"
    elif stat.S_ISDIR(st.st_mode):
        kind = "dir"
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
    else:
        kind = "other"
    # Names that are not UTF-8 are shown with U+FFFD (they cannot be fetched by name).
    name = entry.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    size = st.st_size if kind == "file" else 0
    return {"name": name, "type": kind, "size": size, "mtime": st.st_mtime}


def list_folder(path: str) -> bytes:
    """The ``browse`` answer for ``path``: folders first, then by name, at most
    MAX_ENTRIES entries and MAX_LISTING bytes (``truncated`` says when cut)."""
    entries: list[dict[str, Any]] = []
    budget = fx.MAX_LISTING - fx.MAX_PATH * 6 - 100
    truncated = False
    try:
        with os.scandir(path) as it:
            for entry in it:
                if fx.is_own_temp(entry.name):
                    continue
                item = _entry(entry)
                if item is None:
                    continue
                cost = len(fx.encode_line(item, fx.MAX_LISTING)) + 1
                if len(entries) >= fx.MAX_ENTRIES or cost > budget:
                    truncated = True
                    break
                budget -= cost
                entries.append(item)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise fx.Refused(
            "not_a_directory" if isinstance(exc, NotADirectoryError) else "not_found"
        ) from None
    except PermissionError:
        raise fx.Refused("permission_denied") from None
    entries.sort(key=lambda e: (e["type"] != "dir", e["name"]))
    shown = os.path.abspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        listing = {"path": shown, "entries": entries, "truncated": truncated}
        return fx.encode_line(listing, fx.MAX_LISTING)
    raise fx.Refused("io_error")


def shown_details(
    action: str, details: Mapping[str, str | int | bool], files: FileSettings
) -> dict[str, str | int | bool]:
    """The details to show the customer: a put's ``dest`` "" is the incoming folder
    (the grant keeps "", which is what the stream repeats)."""
    shown = dict(details)
    if action == fx.ACTION_PUT and shown.get("dest") == "":
        shown["dest"] = str(files.incoming)
    return shown


PUT_SPEC = ServiceSpec(
    kind=fx.KIND_PUT, action=fx.ACTION_PUT, serve=serve_put, bound=("name", "size", "dest")
)
GET_SPEC = ServiceSpec(kind=fx.KIND_GET, action=fx.ACTION_GET, serve=serve_get, bound=("path",))
BROWSE_SPEC = ServiceSpec(kind=fx.KIND_BROWSE, action=fx.ACTION_BROWSE, serve=serve_browse)
#: The file services, for the agent's registry.
SPECS = [PUT_SPEC, GET_SPEC, BROWSE_SPEC]
