"""The technician's side against a hostile or broken agent, and real device nodes on
the customer's side (when the tests may create them)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path

import pytest

from enkaku.protocol import filexfer as fx
from enkaku.technician import files as tf
from enkaku.transport.channel import Stream
from tests.agent.test_files import HANG, do_get, do_put, hidden, random_file, session

SHA_OF_X = hashlib.sha256(b"x").hexdigest()


async def fake_get(tmp_path: Path, *messages: bytes) -> tuple[tf.TransferError, Path]:
    """A ``file_get`` whose agent side sends ``messages`` and EOF."""
    s = await session(tmp_path)
    stream = await s.tech.open_stream(fx.KIND_GET, {"path": "/x", "offset": 0, "grant": 1})
    served: Stream = await asyncio.wait_for(s.agent.incoming.get(), HANG)
    for message in messages:
        await served.write(message)
    await served.write_eof()
    with pytest.raises(tf.TransferError) as err:
        await asyncio.wait_for(tf.get(stream, s.downloads), HANG)
    await s.close()
    return err.value, s.downloads


async def test_a_wrong_hash_from_the_agent_keeps_nothing(tmp_path: Path) -> None:
    header = fx.GetHeader("x.txt", 5, SHA_OF_X, 0, 0.0)
    err, downloads = await fake_get(tmp_path, header.encode() + b"hello")
    assert err.reason == "hash_mismatch"
    assert list(downloads.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [("../../.bashrc", "name_separator"), ("..", "name_dots"), ("a\x1b[2J", "name_control")],
)
async def test_a_hostile_name_from_the_agent_is_refused(
    tmp_path: Path, name: str, reason: str
) -> None:
    header = fx.GetHeader(name, 1, SHA_OF_X, 0, 0.0)
    err, downloads = await fake_get(tmp_path, header.encode() + b"x")
    assert err.reason == reason
    assert list(downloads.iterdir()) == [] and not (tmp_path / ".bashrc").exists()


async def test_a_hostile_archive_name_is_refused(tmp_path: Path) -> None:
    header = fx.ArchiveHeader("../evil.tar", 0)
    err, downloads = await fake_get(tmp_path, header.encode())
    assert err.reason == "name_separator" and list(downloads.iterdir()) == []


async def test_more_bytes_than_announced_keep_nothing(tmp_path: Path) -> None:
    header = fx.GetHeader("x.txt", 1, SHA_OF_X, 0, 0.0)
    err, downloads = await fake_get(tmp_path, header.encode() + b"xx")
    assert err.reason == "size_mismatch" and list(downloads.iterdir()) == []


async def test_an_archive_whose_hash_is_wrong_keeps_nothing(tmp_path: Path) -> None:
    wire = fx.ArchiveHeader("d.tar", 3).encode() + fx.frame(b"abc")
    err, downloads = await fake_get(tmp_path, wire + fx.Trailer(3, SHA_OF_X, 0).encode())
    assert err.reason == "hash_mismatch" and list(downloads.iterdir()) == []


async def test_an_archive_cut_before_its_trailer_keeps_nothing(tmp_path: Path) -> None:
    wire = fx.ArchiveHeader("d.tar", 3).encode() + fx.frame(b"abc")
    err, downloads = await fake_get(tmp_path, wire)
    assert err.reason == "interrupted" and list(downloads.iterdir()) == []


async def test_a_malformed_header_is_refused(tmp_path: Path) -> None:
    err, _ = await fake_get(tmp_path, b'{"name":"x","size":-5}\n')
    assert err.reason == "bad_params"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")


@needs_root
async def test_device_nodes_are_never_written_or_read(tmp_path: Path) -> None:
    s = await session(tmp_path)
    s.incoming.mkdir()
    device = s.incoming / "zero"
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # like /dev/zero
    local = random_file(tmp_path / "tech" / "zero", 10)
    with pytest.raises(tf.TransferError) as err:
        await do_put(s, local, tf.put_params(local, overwrite=True))
    assert err.value.reason == "target_not_file"
    assert stat.S_ISCHR(device.lstat().st_mode) and hidden(s.incoming) == []
    with pytest.raises(tf.TransferError) as err:
        await do_get(s, str(device))
    assert err.value.reason == "not_regular_file"
    assert list(s.downloads.iterdir()) == []
    await s.close()
