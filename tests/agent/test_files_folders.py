"""A fetched folder arrives as NAME.tar: streamed, checked, links kept as links, special
files left out, nothing kept when interrupted."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path

import pytest

from enkaku.agent.services.files import serve_get
from enkaku.protocol import filexfer as fx
from enkaku.technician import files as tf
from tests.agent.test_files import HANG, MiB, Session, do_get, random_file, session


def tree(top: Path) -> dict[str, bytes]:
    """A folder with nested files, an empty folder, a link and a pipe."""
    files = {
        "readme.txt": b"hello",
        "ログ/今日.log": os.urandom(3 * MiB + 5),
        "deep/er/x.bin": os.urandom(1000),
        "empty.dat": b"",
    }
    for rel, data in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(data)
    (top / "nothing").mkdir()
    (top / "link").symlink_to("readme.txt")
    (top / "outside").symlink_to("/etc")
    os.mkfifo(top / "pipe")
    return files


def members(path: Path) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(path.read_bytes()), mode="r:")


async def test_a_folder_arrives_as_a_tar_with_its_contents(tmp_path: Path) -> None:
    s = await session(tmp_path)
    top = tmp_path / "customer" / "app"
    top.mkdir(parents=True)
    files = tree(top)
    skipped: list[int] = []
    params = tf.get_params(str(top), s.downloads)
    stream = await s.tech.open_stream(fx.KIND_GET, {**params, "grant": 1})
    served = await s.agent.incoming.get()
    task = asyncio.ensure_future(serve_get(served, s.ctx(fx.ACTION_GET, {"path": str(top)})))
    seen: list[tuple[int, int]] = []
    saved = await asyncio.wait_for(
        tf.get(stream, s.downloads, lambda *p: seen.append(p), on_skipped=skipped.append), HANG
    )
    await task
    assert saved == s.downloads / "app.tar"
    assert skipped == [1]  # the pipe
    assert seen[-1][0] == seen[-1][1] == saved.stat().st_size
    with members(saved) as tar:
        names = tar.getnames()
        for rel, data in files.items():
            f = tar.extractfile(f"app/{rel}")
            assert f is not None and f.read() == data
        assert tar.getmember("app/link").issym()
        assert tar.getmember("app/link").linkname == "readme.txt"
        assert tar.getmember("app/outside").issym()  # a link, not /etc's contents
        assert tar.getmember("app/nothing").isdir()
    assert "app/pipe" not in names and not any(n.startswith("app/outside/") for n in names)
    assert all(n == "app" or n.startswith("app/") for n in names)
    assert [e for e, _ in s.events] == ["file_sent"]
    assert sorted(p.name for p in s.downloads.iterdir()) == ["app.tar"]
    # Fetched again: a second archive beside the first.
    assert await do_get(s, str(top) + "/") == s.downloads / "app (1).tar"
    await s.close()


async def cut_folder(s: Session, top: Path) -> None:
    cut: list[asyncio.Task[None]] = []

    def progress(done: int, total: int) -> None:
        if done >= 1 * MiB and not cut:
            cut.append(asyncio.ensure_future(s.agent.close("customer_ended")))

    stream = await s.tech.open_stream(fx.KIND_GET, {"path": str(top), "grant": 1})
    served = await s.agent.incoming.get()
    task = asyncio.ensure_future(serve_get(served, s.ctx(fx.ACTION_GET, {"path": str(top)})))
    with pytest.raises(tf.TransferError) as err:
        await asyncio.wait_for(tf.get(stream, s.downloads, progress), HANG)
    assert err.value.reason == "interrupted"
    await asyncio.wait_for(asyncio.gather(task, *cut), HANG)


async def test_an_interrupted_folder_leaves_nothing(tmp_path: Path) -> None:
    s = await session(tmp_path)
    top = tmp_path / "customer" / "big"
    for i in range(4):
        random_file(top / f"f{i}.bin", 2 * MiB)
    await cut_folder(s, top)
    assert list(s.downloads.iterdir()) == []
    assert s.events == [("file_failed", "interrupted")]
