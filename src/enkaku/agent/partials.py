"""Partly received files: hidden in the destination folder, resumable, expiring.

A file being received is written as ``.enkaku-<id>.part`` next to its final place, with a
sidecar ``.enkaku-<id>.part.json`` (``key``, ``size``, ``sha256``, ``created``,
``updated``, ``verified``). ``<id>`` is derived from the transfer's key (for a put: name,
size and hash), so the same transfer finds its part again and a 255-byte name still
fits. ``verified`` counts the bytes that were fsync'd before the sidecar was written: a
resume starts there and cuts anything after it (records are authenticated, so bytes
received and on disk are good). Only ``commit`` makes the file visible under its real
name, after the whole-file SHA-256 matched. Parts not updated for the TTL are removed by
``expire_partials``.

Every call here blocks (disk IO, fsync, hashing): async callers use a thread. Operations
go through the folder's file descriptor, so nothing escapes the folder even if a path
component is swapped for a symbolic link meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from enkaku.protocol.filexfer import TEMP_PREFIX, Refused

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
META_SUFFIX = ".part.json"
_TMP_SUFFIX = ".part.json.tmp"
_SUFFIXES = (PART_SUFFIX, META_SUFFIX, _TMP_SUFFIX)
#: Largest sidecar we read back.
_MAX_META = 8192
#: Mode of a finished file (a replaced file keeps its own mode).
FILE_MODE = 0o644


@dataclass
class PartInfo:
    """The sidecar: which transfer this part is for and how much of it is safe."""

    key: str
    size: int
    sha256: str
    created: float
    updated: float
    verified: int


def os_reason(exc: OSError) -> str:
    """The RESET reason for a disk error."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission_denied"
    return "io_error"


def stem_for(key: str) -> str:
    """The hidden base name of the part for transfer ``key``."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{TEMP_PREFIX}{digest}"


def open_folder(path: Path, create: bool = False, follow: bool = False) -> int:
    """A file descriptor on folder ``path``, whose last component may not be a symbolic
    link unless ``follow`` (a folder the peer names: no; one from our own settings, such
    as the incoming folder or the technician's downloads: yes). Refused with
    dest_missing, dest_not_dir, dest_symlink or permission_denied."""
    if create:  # the default incoming folder is made on first use (not its parents)
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.mkdir(path, 0o700)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        raise Refused("dest_missing") from None
    except PermissionError:
        raise Refused("permission_denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused("dest_symlink") from None
        if exc.errno == errno.ENOTDIR:
            raise Refused("dest_symlink" if path.is_symlink() else "dest_not_dir") from None
        raise


def target_state(dir_fd: int, name: str) -> str:
    """What ``name`` is in the folder: "absent", "file" (a regular file) or "other"."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return "absent"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def read_info(dir_fd: int, stem: str) -> PartInfo | None:
    """The sidecar of part ``stem``, or None when missing or unreadable."""
    try:
        fd = os.open(stem + META_SUFFIX, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        raw = os.read(fd, _MAX_META + 1)
    finally:
        os.close(fd)
    try:
        obj: Any = json.loads(raw) if len(raw) <= _MAX_META else None
        info = PartInfo(**obj)
    except (TypeError, ValueError):
        return None
    numbers = (info.size, info.verified)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        return None
    if not isinstance(info.key, str) or not isinstance(info.sha256, str):
        return None
    if not all(isinstance(x, (int, float)) for x in (info.created, info.updated)):
        return None
    return info


class Part:
    """One part being written: locked, hashed as it grows, committed or kept."""

    def __init__(self, dir_fd: int, stem: str, fd: int, info: PartInfo) -> None:
        self.dir_fd, self.stem, self.fd, self.info = dir_fd, stem, fd, info
        self.hasher = hashlib.sha256()
        #: Bytes written (and hashed) so far; ``info.verified`` lags until a checkpoint.
        self.written = info.verified
        self.closed = False
        # A write may still run on a worker thread when its awaiting task is cancelled:
        # keep/close wait for it, so the descriptor is never closed under it.
        self.lock = threading.RLock()

    @property
    def offset(self) -> int:
        """Where the transfer (re)starts."""
        return self.written

    @classmethod
    def open(cls, dir_fd: int, key: str, size: int, sha256: str, now: float) -> Part:
        """The part of transfer ``key`` in the folder: the kept one when its sidecar is
        for the same size and hash (cut to its verified length, hashed again), else a new
        empty one. Refused("busy") when another transfer holds it."""
        stem = stem_for(key)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(stem + PART_SUFFIX, flags, 0o600, dir_fd=dir_fd)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Refused("busy") from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Refused("io_error")
            if _inode(dir_fd, stem + PART_SUFFIX) != (st.st_dev, st.st_ino):
                raise Refused("busy")  # expired and removed between our open and lock
            old = read_info(dir_fd, stem)
            keep, created = 0, now
            if old is not None and (old.key, old.size, old.sha256) == (key, size, sha256):
                keep = min(old.verified, os.fstat(fd).st_size, size)
                created = old.created
            info = PartInfo(key, size, sha256, created, now, keep)
            part = cls(dir_fd, stem, fd, info)
            os.ftruncate(fd, keep)
            part._rehash(keep)
            part._write_info()
            return part
        except BaseException:
            os.close(fd)
            raise

    def _rehash(self, length: int) -> None:
        self.hasher = hashlib.sha256()
        pos = 0
        while pos < length:
            chunk = os.pread(self.fd, min(1 << 20, length - pos), pos)
            if not chunk:
                raise Refused("io_error")
            self.hasher.update(chunk)
            pos += len(chunk)
        self.written = length

    def rewind(self, length: int) -> None:
        """Keep only the first ``length`` bytes (the sender starts there)."""
        if length > self.written:
            raise Refused("resume_mismatch")
        os.ftruncate(self.fd, length)
        self._rehash(length)
        self.info.verified = min(self.info.verified, length)
        self._write_info()

    def write(self, data: bytes) -> None:
        """Append ``data`` (the caller keeps the total within ``size``)."""
        with self.lock:
            if self.closed:
                raise Refused("io_error")
            view = memoryview(data)
            while view:
                n = os.pwrite(self.fd, view, self.written)
                self.hasher.update(view[:n])
                self.written += n
                view = view[n:]

    def checkpoint(self, now: float) -> None:
        """Make what was written durable and record it as verified."""
        with self.lock:
            os.fsync(self.fd)
            self.info.verified = self.written
            self.info.updated = now
            self._write_info()

    def _write_info(self) -> None:
        tmp, meta = self.stem + _TMP_SUFFIX, self.stem + META_SUFFIX
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=self.dir_fd)
        try:
            os.write(fd, json.dumps(asdict(self.info)).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, meta, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        os.fsync(self.dir_fd)

    def commit(self, name: str, overwrite: bool) -> None:
        """Check the whole file and give it its real name. Refused("hash_mismatch") (the
        part is removed), ("exists") if ``name`` appeared meanwhile and may not be
        replaced (the part is kept), ("target_not_file")."""
        if self.written != self.info.size:
            raise Refused("size_mismatch")
        if self.hasher.hexdigest() != self.info.sha256:
            self.discard()
            raise Refused("hash_mismatch")
        os.fsync(self.fd)
        src, d = self.stem + PART_SUFFIX, self.dir_fd
        state = target_state(d, name)
        if state == "other":
            raise Refused("target_not_file")
        if state == "file" and not overwrite:
            raise Refused("exists")
        if state == "file":
            mode = stat.S_IMODE(os.stat(name, dir_fd=d, follow_symlinks=False).st_mode)
            os.fchmod(self.fd, mode)
            os.replace(src, name, src_dir_fd=d, dst_dir_fd=d)
        else:
            os.fchmod(self.fd, FILE_MODE)
            _link_no_replace(d, src, name)
        self._unlink(META_SUFFIX)
        os.fsync(d)
        self.close()

    def discard(self) -> None:
        """Remove the part and its sidecar."""
        for suffix in _SUFFIXES:
            self._unlink(suffix)
        self.close()

    def _unlink(self, suffix: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.stem + suffix, dir_fd=self.dir_fd)

    def keep(self, now: float) -> None:
        """Stop here and keep the verified part for a later resume (an empty one is
        removed)."""
        with self.lock:
            if not self.closed:
                self._keep(now)

    def _keep(self, now: float) -> None:
        try:
            self.checkpoint(now)
        except BaseException:
            self.close()
            raise
        if self.info.verified == 0:
            self.discard()  # nothing worth resuming: leave no file at all
        else:
            self.close()

    def close(self) -> None:
        """Release the part (its lock goes with the descriptor)."""
        with self.lock:
            if not self.closed:
                self.closed = True
                os.close(self.fd)


def _inode(dir_fd: int, name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _link_no_replace(dir_fd: int, src: str, name: str) -> None:
    """Rename ``src`` to ``name`` unless ``name`` exists (atomically where hard links
    work; on file systems without them, a check then a rename)."""
    try:
        os.link(src, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise Refused("exists") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if target_state(dir_fd, name) != "absent":
            raise Refused("exists") from None
        os.rename(src, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    os.unlink(src, dir_fd=dir_fd)


def expire_partials(folder: Path, ttl: float, now: float) -> int:
    """Remove parts (and sidecars) in ``folder`` not updated for ``ttl`` seconds, skipping
    those in use. Returns how many parts were removed. A missing folder has none."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return expire_in(dir_fd, ttl, now)
    finally:
        os.close(dir_fd)


def expire_in(dir_fd: int, ttl: float, now: float) -> int:
    """``expire_partials`` for a folder already open (as ``open_folder`` gives)."""
    stems: set[str] = set()
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                for suffix in _SUFFIXES:
                    if entry.name.endswith(suffix):
                        stems.add(entry.name[: -len(suffix)])
                        break
    removed = 0
    for stem in stems:
        if _expire_one(dir_fd, stem, ttl, now):
            removed += 1
    return removed


def _expire_one(dir_fd: int, stem: str, ttl: float, now: float) -> bool:
    info = read_info(dir_fd, stem)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(stem + PART_SUFFIX, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        fd = -1
    except OSError:
        return False  # not ours to judge (a link or a special file of that name)
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use
        if info is not None:
            updated = info.updated
        else:  # no readable sidecar: judge by the files' own times
            times = []
            for suffix in _SUFFIXES:
                with contextlib.suppress(OSError):
                    st = os.stat(stem + suffix, dir_fd=dir_fd, follow_symlinks=False)
                    times.append(st.st_mtime)
            updated = max(times, default=now)
        if now - updated < ttl:
            return False
        for suffix in _SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stem + suffix, dir_fd=dir_fd)
        log.debug("removed an expired partial transfer %s", stem)
        return True
    finally:
        if fd >= 0:
            os.close(fd)


class WriteBehind:
    """Writes a part's batches on a worker thread while the caller goes on reading the
    stream: at most one batch (with its checkpoint) in flight, so memory stays bounded,
    the network is not paused for the disk, and a write error surfaces at the next call.
    """

    def __init__(self, part: Part, checkpoint_every: int, clock: Callable[[], float]) -> None:
        self.part, self.checkpoint_every, self.clock = part, checkpoint_every, clock
        self._pending: asyncio.Future[None] | None = None

    def _write(self, data: bytes) -> None:
        self.part.write(data)
        if self.part.written - self.part.info.verified >= self.checkpoint_every:
            self.part.checkpoint(self.clock())

    async def write(self, data: bytes) -> None:
        await self.drain()
        pending = asyncio.ensure_future(asyncio.to_thread(self._write, data))
        # Abandoned by a cancelled caller: the error is the part's to report, not the loop's.
        pending.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending = pending

    async def drain(self) -> None:
        """Wait for the write in flight (and raise its error)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
