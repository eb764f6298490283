"""Files that hold secrets (the agent's device key, the technician's API tokens).

Written through a fresh temporary name opened with ``O_CREAT | O_EXCL | O_NOFOLLOW``
(mode 0600), synced, then renamed into place: a symlink planted at any name the writer
uses can never receive the secret. Read with ``O_NOFOLLOW``, and refused when the file
is not a regular file of this user or is readable or writable by anyone else
(as ssh refuses a loose private key): the secret may already have leaked, and the
user decides, with the fix in the message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from enkaku.i18n import t

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at the path must not hang us


class SecretFileError(ValueError):
    """A secret file is unsafe or unreadable; the message says what to do (user's language)."""


def read_secret(path: Path, max_size: int) -> bytes | None:
    """The contents of the private file ``path`` (at most ``max_size + 1`` bytes are
    read, so a caller can tell an oversized file), or None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise SecretFileError(t("secret_file_not_regular", path=path)) from None
        raise SecretFileError(t("secret_file_unreadable", path=path, error=exc.strerror)) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SecretFileError(t("secret_file_not_regular", path=path))
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise SecretFileError(t("secret_file_owner", path=path))
        if st.st_mode & 0o077:
            raise SecretFileError(
                t("secret_file_loose", path=path, mode=f"{stat.S_IMODE(st.st_mode):04o}")
            )
        return f.read(max_size + 1)


def write_secret(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write ``data`` to ``path`` (mode 0600) atomically. With ``replace=False`` an
    existing ``path`` is kept and False returned (someone created it first)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)  # rename replaces a symlink at path, never follows it
        else:
            try:
                os.link(tmp, path)  # fails on any existing entry, dangling symlinks too
            except FileExistsError:
                return False
            except OSError:  # no hard links on this file system: check, then rename
                if os.path.lexists(path):
                    return False
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_dir(path.parent)
    return True


def _sync_dir(directory: Path) -> None:
    # The rename is durable once the directory entry is (POSIX); not possible everywhere.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | _CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
