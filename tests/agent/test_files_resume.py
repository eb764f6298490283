"""Interrupted transfers: the verified part is kept under a hidden name, resumed by the
next identical transfer in a new session, expired after the TTL, and nothing is ever
visible under the real name before the whole file's hash matched."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from enkaku.agent.partials import META_SUFFIX, PART_SUFFIX, expire_partials
from enkaku.agent.services.files import serve_get, serve_put
from enkaku.protocol import filexfer as fx
from enkaku.technician import files as tf
from tests.agent.test_files import (
    HANG,
    MiB,
    Session,
    do_get,
    do_put,
    hidden,
    random_file,
    session,
    sha,
)


async def cut_put(s: Session, local: Path, n: int, how: str) -> int:
    """Start a put, send ``n`` bytes from where the agent says, then cut: reset the
    stream or end the session. Returns the offset the agent started from."""
    params = tf.put_params(local)
    details = tf.consent_details(fx.KIND_PUT, params)
    stream = await s.tech.open_stream(fx.KIND_PUT, {**params, "grant": 1})
    served = await asyncio.wait_for(s.agent.incoming.get(), HANG)
    task = asyncio.ensure_future(serve_put(served, s.ctx(fx.ACTION_PUT, details)))
    line = await asyncio.wait_for(stream.read(), HANG)
    offset = json.loads(line)["offset"]
    data = await asyncio.to_thread(lambda: local.read_bytes()[offset : offset + n])
    if data:
        await stream.write(data)
    if how == "reset":
        await stream.reset("cancelled")
    else:
        await s.tech.close("technician_ended")
    await asyncio.wait_for(task, HANG)
    return int(offset)


def part_info(folder: Path) -> dict[str, object]:
    (meta,) = [p for p in folder.iterdir() if p.name.endswith(META_SUFFIX)]
    info: dict[str, object] = json.loads(meta.read_text())
    return info


async def resume_put(tmp_path: Path, local: Path) -> tuple[Session, int]:
    """Send ``local`` again in a new session; returns it and the offset it resumed at."""
    s = await session(tmp_path)
    seen: list[int] = []
    await do_put(s, local, on_progress=lambda done, total: seen.append(done))
    return s, seen[0]


@pytest.mark.parametrize("how", ["reset", "close"])
async def test_put_resumes_after_an_interruption_in_a_new_session(tmp_path: Path, how: str) -> None:
    local = random_file(tmp_path / "tech" / "disk.img", 5 * MiB + 999)
    s = await session(tmp_path)
    assert await cut_put(s, local, 3 * MiB + 5, how) == 0
    assert not (s.incoming / "disk.img").exists()
    assert s.events == [("file_failed", "interrupted")]
    assert part_info(s.incoming)["verified"] == 3 * MiB + 5
    await s.close()

    s2, offset = await resume_put(tmp_path, local)
    assert offset == 3 * MiB + 5
    assert sha(s2.incoming / "disk.img") == sha(local)
    assert hidden(s2.incoming) == []
    assert s2.events == [("file_received", f"{5 * MiB + 999}:{sha(local)}:disk.img")]
    await s2.close()


CUTS = [0, 1, 32 * 1024 - 1, 512 * 1024 + 3, 2 * MiB, 2 * MiB + 1 * MiB - 1, 3 * MiB]


@pytest.mark.parametrize("how", ["reset", "close"])
async def test_a_cut_at_any_point_never_shows_the_real_name(tmp_path: Path, how: str) -> None:
    """Cut the same 3 MiB put at several points, each after resuming the previous cut;
    the real name appears only once the whole file arrived and matched."""
    local = random_file(tmp_path / "tech" / "setup.bin", 3 * MiB)
    incoming = tmp_path / "incoming"
    done = 0
    for cut in CUTS:
        s = await session(tmp_path)
        offset = await cut_put(s, local, max(0, cut - done), how)
        assert offset == done
        done = max(done, cut)
        assert not (incoming / "setup.bin").exists(), cut
        if done == 0:
            assert not incoming.exists() or list(incoming.iterdir()) == []  # nothing kept
        else:
            assert part_info(incoming)["verified"] == done
        await s.close()
    s, offset = await resume_put(tmp_path, local)
    assert offset == 3 * MiB
    assert sha(incoming / "setup.bin") == sha(local)
    assert hidden(incoming) == []
    await s.close()


async def test_bytes_beyond_the_verified_length_are_cut_on_resume(tmp_path: Path) -> None:
    """After a crash the part may hold bytes written after the last fsync; the resume
    starts at the sidecar's verified length."""
    local = random_file(tmp_path / "tech" / "a.bin", 2 * MiB)
    s = await session(tmp_path)
    await cut_put(s, local, 1 * MiB, "reset")
    await s.close()
    (part,) = [p for p in s.incoming.iterdir() if p.name.endswith(PART_SUFFIX)]
    with part.open("ab") as f:
        f.write(b"\0" * 4096)  # unverified garbage
    s2, offset = await resume_put(tmp_path, local)
    assert offset == 1 * MiB
    assert sha(s2.incoming / "a.bin") == sha(local)
    await s2.close()


async def test_a_part_of_another_file_is_not_resumed(tmp_path: Path) -> None:
    """Same name and size, different content: a new part, not the old one's bytes."""
    local = random_file(tmp_path / "tech" / "conf.ini", 2 * MiB)
    s = await session(tmp_path)
    await cut_put(s, local, 1 * MiB, "reset")
    await s.close()
    local.write_bytes(os.urandom(2 * MiB))
    s2, offset = await resume_put(tmp_path, local)
    assert offset == 0
    assert sha(s2.incoming / "conf.ini") == sha(local)
    # The other file's part stays until it expires.
    assert len(hidden(s2.incoming)) == 2
    await s2.close()


async def test_expired_parts_are_removed(tmp_path: Path) -> None:
    local = random_file(tmp_path / "tech" / "old.bin", 2 * MiB)
    s = await session(tmp_path)
    await cut_put(s, local, 1 * MiB, "reset")
    await s.close()
    updated = float(part_info(s.incoming)["updated"])  # type: ignore[arg-type]
    assert expire_partials(s.incoming, 3600, updated + 3599) == 0
    assert len(hidden(s.incoming)) == 2
    assert expire_partials(s.incoming, 3600, updated + 3601) == 1
    assert hidden(s.incoming) == []
    assert expire_partials(tmp_path / "missing", 3600, time.time()) == 0


async def test_a_put_into_a_folder_removes_its_expired_parts_first(tmp_path: Path) -> None:
    local = random_file(tmp_path / "tech" / "old.bin", 2 * MiB)
    s = await session(tmp_path)
    await cut_put(s, local, 1 * MiB, "reset")
    await s.close()
    s2 = await session(tmp_path)
    s2.ttl = 0.0  # everything is expired
    seen: list[int] = []
    await do_put(s2, local, on_progress=lambda done, total: seen.append(done))
    assert seen[0] == 0
    assert sha(s2.incoming / "old.bin") == sha(local)
    assert hidden(s2.incoming) == []
    await s2.close()


async def test_expiry_leaves_orphans_young_and_removes_them_old(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    orphan = folder / ".enkaku-00112233445566778899aabbccddeeff.part"
    orphan.write_bytes(b"x")
    (folder / "user.part").write_bytes(b"not ours")
    now = orphan.stat().st_mtime
    assert expire_partials(folder, 60, now + 1) == 0
    assert expire_partials(folder, 60, now + 61) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["user.part"]


async def cut_get(s: Session, remote: Path, after: int) -> None:
    """Fetch ``remote`` and end the session once ``after`` bytes are on the technician's
    disk."""
    cut: list[asyncio.Task[None]] = []

    def progress(done: int, total: int) -> None:
        if done >= after and not cut:
            cut.append(asyncio.ensure_future(s.tech.close("technician_ended")))

    params = tf.get_params(str(remote), s.downloads)
    stream = await s.tech.open_stream(fx.KIND_GET, {**params, "grant": 1})
    served = await asyncio.wait_for(s.agent.incoming.get(), HANG)
    task = asyncio.ensure_future(serve_get(served, s.ctx(fx.ACTION_GET, {"path": str(remote)})))
    with pytest.raises(tf.TransferError) as err:
        await asyncio.wait_for(tf.get(stream, s.downloads, progress), HANG)
    assert err.value.reason == "interrupted"
    await asyncio.wait_for(asyncio.gather(task, *cut), HANG)


async def test_get_resumes_from_the_technicians_part(tmp_path: Path) -> None:
    remote = random_file(tmp_path / "customer" / "dump.bin", 8 * MiB)
    s = await session(tmp_path)
    await cut_get(s, remote, 2 * MiB)
    assert not (s.downloads / "dump.bin").exists()
    params = tf.get_params(str(remote), s.downloads)
    assert params["offset"] >= 2 * MiB and params["sha256"] == sha(remote)
    assert ("file_failed", "interrupted") in s.events

    s2 = await session(tmp_path)
    stream = await s2.tech.open_stream(fx.KIND_GET, {**params, "grant": 1})
    served = await s2.agent.incoming.get()
    task = asyncio.ensure_future(serve_get(served, s2.ctx(fx.ACTION_GET, {"path": str(remote)})))
    seen: list[int] = []
    saved = await asyncio.wait_for(
        tf.get(stream, s2.downloads, lambda done, total: seen.append(done)), HANG
    )
    await task
    assert seen[0] == params["offset"]
    assert sha(saved) == sha(remote)
    assert hidden(s2.downloads) == []
    await s2.close()


async def test_get_starts_over_when_the_customers_file_changed(tmp_path: Path) -> None:
    remote = random_file(tmp_path / "customer" / "syslog", 4 * MiB)
    s = await session(tmp_path)
    await cut_get(s, remote, 1 * MiB)
    remote.write_bytes(os.urandom(4 * MiB))
    s2 = await session(tmp_path)
    params = tf.get_params(str(remote), s2.downloads)
    assert params["offset"] > 0  # the technician offers its part ...
    saved = await do_get(s2, str(remote), params)
    assert sha(saved) == sha(remote)  # ... the agent starts over, the result is right
    assert hidden(s2.downloads) == []
    await s2.close()


async def test_get_params_removes_expired_downloads(tmp_path: Path) -> None:
    remote = random_file(tmp_path / "customer" / "big.log", 4 * MiB)
    s = await session(tmp_path)
    await cut_get(s, remote, 1 * MiB)
    assert hidden(s.downloads) != []
    params = tf.get_params(str(remote), s.downloads, ttl=0.0)
    assert params == {"path": str(remote), "offset": 0}
    assert hidden(s.downloads) == []


async def test_a_cancelled_put_tells_the_agent_which_keeps_the_part(tmp_path: Path) -> None:
    """The technician gives up (Ctrl-C): the agent is not left waiting for more bytes."""
    local = random_file(tmp_path / "tech" / "iso.bin", 4 * MiB)
    s = await session(tmp_path)
    params = tf.put_params(local)
    stream = await s.tech.open_stream(fx.KIND_PUT, {**params, "grant": 1})
    served = await asyncio.wait_for(s.agent.incoming.get(), HANG)
    details = tf.consent_details(fx.KIND_PUT, params)
    task = asyncio.ensure_future(serve_put(served, s.ctx(fx.ACTION_PUT, details)))
    sender: asyncio.Future[str] | None = None

    def progress(done: int, total: int) -> None:
        if done >= 1 * MiB and sender is not None:
            sender.cancel()

    sender = asyncio.ensure_future(tf.put(stream, local, progress))
    with pytest.raises(asyncio.CancelledError):
        await sender
    await asyncio.wait_for(task, HANG)
    assert s.events == [("file_failed", "interrupted")]
    assert not (s.incoming / "iso.bin").exists()
    assert int(part_info(s.incoming)["verified"]) >= 1 * MiB  # type: ignore[call-overload]
    await s.close()
    s2, offset = await resume_put(tmp_path, local)
    assert offset >= 1 * MiB and sha(s2.incoming / "iso.bin") == sha(local)
    await s2.close()
