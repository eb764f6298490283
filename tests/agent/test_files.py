"""File transfer over two real SecureChannels with real files: put and get with the
SHA-256 check, several at once, refusals with their messages, browse."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from enkaku.agent.consent import Requester
from enkaku.agent.partials import Part
from enkaku.agent.services import FileSettings, Grant, ServiceContext, bound_params_match
from enkaku.agent.services.files import (
    GET_SPEC,
    PUT_SPEC,
    serve_browse,
    serve_get,
    serve_put,
    shown_details,
)
from enkaku.i18n import t
from enkaku.protocol import filexfer as fx
from enkaku.technician import files as tf
from enkaku.transport.channel import SecureChannel
from tests.channelpair import channels

MiB = 1 << 20
HANG = 120  # seconds: only a guard against a hang, never a measurement


@dataclass
class Session:
    """One in-memory session: both channels, the agent's audit events, its folders."""

    agent: SecureChannel
    tech: SecureChannel
    incoming: Path
    downloads: Path
    ttl: float = 24 * 3600.0
    events: list[tuple[str, str | None]] = field(default_factory=list)

    async def report(self, event: str, detail: str | None = None) -> None:
        self.events.append((event, detail))

    def ctx(self, action: str, details: Mapping[str, str | int | bool]) -> ServiceContext:
        return ServiceContext(
            session_id="s1",
            agent_id="123456789",
            who=Requester("Tech", "Co"),
            grant=Grant(1, action, dict(details)),
            report=self.report,
            files=FileSettings(incoming=self.incoming, partial_ttl=self.ttl),
        )

    async def close(self) -> None:
        await self.tech.close("technician_ended")
        await self.agent.close("customer_ended")


async def session(tmp_path: Path) -> Session:
    agent, tech = await channels()
    incoming, downloads = tmp_path / "incoming", tmp_path / "downloads"
    downloads.mkdir(exist_ok=True)
    return Session(agent, tech, incoming, downloads)


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(fx.TEMP_PREFIX))


async def do_put(
    s: Session,
    local: Path,
    params: dict[str, Any] | None = None,
    on_progress: tf.Progress | None = None,
) -> str:
    """Ask, open, serve and send, as the session would."""
    params = params if params is not None else tf.put_params(local)
    details = tf.consent_details(fx.KIND_PUT, params)
    stream = await s.tech.open_stream(fx.KIND_PUT, {**params, "grant": 1})
    served = await asyncio.wait_for(s.agent.incoming.get(), HANG)
    assert bound_params_match(PUT_SPEC, served.params, Grant(1, fx.ACTION_PUT, details))
    task = asyncio.ensure_future(serve_put(served, s.ctx(fx.ACTION_PUT, details)))
    try:
        return await asyncio.wait_for(tf.put(stream, local, on_progress), HANG)
    finally:
        await asyncio.wait_for(task, HANG)


async def do_get(
    s: Session, path: str, params: dict[str, Any] | None = None, dest: Path | None = None
) -> Path:
    dest = dest or s.downloads
    params = params if params is not None else tf.get_params(path, dest)
    details = tf.consent_details(fx.KIND_GET, params)
    stream = await s.tech.open_stream(fx.KIND_GET, {**params, "grant": 1})
    served = await asyncio.wait_for(s.agent.incoming.get(), HANG)
    assert bound_params_match(GET_SPEC, served.params, Grant(1, fx.ACTION_GET, details))
    task = asyncio.ensure_future(serve_get(served, s.ctx(fx.ACTION_GET, details)))
    try:
        return await asyncio.wait_for(tf.get(stream, dest), HANG)
    finally:
        await asyncio.wait_for(task, HANG)


async def do_browse(s: Session, path: str) -> tf.Listing:
    stream = await s.tech.open_stream(fx.KIND_BROWSE, {**tf.browse_params(path), "grant": 1})
    served = await asyncio.wait_for(s.agent.incoming.get(), HANG)
    task = asyncio.ensure_future(serve_browse(served, s.ctx(fx.ACTION_BROWSE, {})))
    try:
        return await asyncio.wait_for(tf.browse(stream), HANG)
    finally:
        await asyncio.wait_for(task, HANG)


# -- put ----------------------------------------------------------------------------


async def test_put_delivers_the_file_with_its_hash_and_reports_its_size(tmp_path: Path) -> None:
    s = await session(tmp_path)
    local = random_file(tmp_path / "tech" / "report.pdf", 3 * MiB + 17)
    seen: list[tuple[int, int]] = []
    name = await do_put(s, local, on_progress=lambda done, total: seen.append((done, total)))
    assert name == "report.pdf"
    assert sha(s.incoming / "report.pdf") == sha(local)
    assert hidden(s.incoming) == []
    assert (s.incoming / "report.pdf").stat().st_mode & 0o777 == 0o644
    assert s.events == [("file_received", f"{3 * MiB + 17}:{sha(local)}:report.pdf")]
    assert seen[0] == (0, 3 * MiB + 17) and seen[-1] == (3 * MiB + 17, 3 * MiB + 17)
    await s.close()


async def test_put_of_64_mib_goes_through_flow_control(tmp_path: Path) -> None:
    s = await session(tmp_path)
    local = random_file(tmp_path / "tech" / "big.iso", 64 * MiB)
    await do_put(s, local)
    assert sha(s.incoming / "big.iso") == sha(local)
    assert hidden(s.incoming) == []
    await s.close()


async def test_an_empty_file_is_sent_too(tmp_path: Path) -> None:
    s = await session(tmp_path)
    local = random_file(tmp_path / "tech" / "empty.txt", 0)
    await do_put(s, local)
    assert (s.incoming / "empty.txt").read_bytes() == b""
    await s.close()


async def test_two_puts_and_a_get_at_once(tmp_path: Path) -> None:
    s = await session(tmp_path)
    a = random_file(tmp_path / "tech" / "a.bin", 5 * MiB)
    b = random_file(tmp_path / "tech" / "b.bin", 4 * MiB + 1)
    remote = random_file(tmp_path / "customer" / "log.txt", 3 * MiB)
    # Open all three streams first, so they run at the same time on one channel.
    pa, pb = tf.put_params(a), tf.put_params(b)
    sa = await s.tech.open_stream(fx.KIND_PUT, {**pa, "grant": 1})
    sb = await s.tech.open_stream(fx.KIND_PUT, {**pb, "grant": 2})
    sg = await s.tech.open_stream(fx.KIND_GET, {**tf.get_params(str(remote), s.downloads)})
    served = [await s.agent.incoming.get() for _ in range(3)]
    tasks = [
        serve_put(served[0], s.ctx(fx.ACTION_PUT, tf.consent_details(fx.KIND_PUT, pa))),
        serve_put(served[1], s.ctx(fx.ACTION_PUT, tf.consent_details(fx.KIND_PUT, pb))),
        serve_get(served[2], s.ctx(fx.ACTION_GET, {"path": str(remote)})),
    ]
    results = await asyncio.wait_for(
        asyncio.gather(tf.put(sa, a), tf.put(sb, b), tf.get(sg, s.downloads), *tasks), HANG
    )
    assert results[:3] == ["a.bin", "b.bin", s.downloads / "log.txt"]
    assert sha(s.incoming / "a.bin") == sha(a)
    assert sha(s.incoming / "b.bin") == sha(b)
    assert sha(s.downloads / "log.txt") == sha(remote)
    assert sorted(e for e, _ in s.events) == ["file_received", "file_received", "file_sent"]
    await s.close()


async def test_put_into_a_chosen_folder(tmp_path: Path) -> None:
    s = await session(tmp_path)
    dest = tmp_path / "customer" / "Desktop"
    dest.mkdir(parents=True)
    local = random_file(tmp_path / "tech" / "fix.sh", 1000)
    await do_put(s, local, tf.put_params(local, str(dest)))
    assert sha(dest / "fix.sh") == sha(local)
    await s.close()


async def test_existing_file_is_refused_without_overwrite_and_replaced_with_it(
    tmp_path: Path,
) -> None:
    s = await session(tmp_path)
    s.incoming.mkdir()
    target = s.incoming / "notes.txt"
    target.write_bytes(b"the customer's own notes")
    target.chmod(0o600)
    local = random_file(tmp_path / "tech" / "notes.txt", 2 * MiB)
    with pytest.raises(tf.TransferError) as err:
        await do_put(s, local)
    assert err.value.reason == "exists"
    assert "overwrite" in err.value.message("en") and "上書き" in err.value.message("ja")
    assert target.read_bytes() == b"the customer's own notes"
    assert hidden(s.incoming) == []  # refused before any byte: no file at all
    assert s.events == [("file_failed", "exists")]

    await do_put(s, local, tf.put_params(local, overwrite=True))
    assert sha(target) == sha(local)
    assert target.stat().st_mode & 0o777 == 0o600  # the replaced file's mode is kept
    await s.close()


async def test_overwrite_needs_a_grant_that_said_so(tmp_path: Path) -> None:
    s = await session(tmp_path)
    s.incoming.mkdir()
    (s.incoming / "x.txt").write_bytes(b"keep")
    local = random_file(tmp_path / "tech" / "x.txt", 10)
    params = tf.put_params(local, overwrite=True)
    stream = await s.tech.open_stream(fx.KIND_PUT, {**params, "grant": 1})
    served = await s.agent.incoming.get()
    # The customer was asked without "overwrite": the stream may not replace.
    details = {k: v for k, v in tf.consent_details(fx.KIND_PUT, params).items()}
    details["overwrite"] = False
    await serve_put(served, s.ctx(fx.ACTION_PUT, details))
    with pytest.raises(tf.TransferError) as err:
        await tf.put(stream, local)
    assert err.value.reason == "consent_required"
    assert (s.incoming / "x.txt").read_bytes() == b"keep"
    await s.close()


async def test_hash_mismatch_keeps_nothing_under_the_real_name(tmp_path: Path) -> None:
    s = await session(tmp_path)
    local = random_file(tmp_path / "tech" / "tool.exe", 2 * MiB)
    params = tf.put_params(local)
    params["sha256"] = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(tf.TransferError) as err:
        await do_put(s, local, params)
    assert err.value.reason == "hash_mismatch"
    assert "SHA-256" in err.value.message("en") and "SHA-256" in err.value.message("ja")
    assert list(s.incoming.iterdir()) == []
    assert s.events == [("file_failed", "hash_mismatch")]
    await s.close()


def test_folders_are_not_sent_as_such(tmp_path: Path) -> None:
    with pytest.raises(tf.TransferError) as err:
        tf.put_params(tmp_path)
    assert err.value.reason == "is_directory"
    assert "zip" in err.value.message("en") and "zip" in err.value.message("ja")


async def test_a_file_that_changed_since_put_params_is_refused(tmp_path: Path) -> None:
    s = await session(tmp_path)
    local = random_file(tmp_path / "tech" / "grow.log", 1000)
    params = tf.put_params(local)
    local.write_bytes(os.urandom(1001))
    with pytest.raises(tf.TransferError) as err:
        await do_put(s, local, params)
    assert err.value.reason == "size_mismatch"
    assert not (s.incoming / "grow.log").exists()
    await s.close()


HOSTILE = [
    ("../x", "name_separator"),
    ("/etc/passwd", "name_separator"),
    ("..", "name_dots"),
    ("a\x00b", "name_control"),
    ("evil\u202etxt.exe", "name_control"),
    ("x" * 256, "name_too_long"),
    ("あ" * 86, "name_too_long"),  # 258 bytes in UTF-8
    ("", "name_empty"),
    (".enkaku-0123.part", "name_reserved"),
]


@pytest.mark.parametrize(("name", "reason"), HOSTILE)
async def test_hostile_names_are_refused_with_a_clear_message(
    tmp_path: Path, name: str, reason: str
) -> None:
    s = await session(tmp_path)
    local = random_file(tmp_path / "tech" / "payload", 100)
    params = {**tf.put_params(local), "name": name}
    with pytest.raises(tf.TransferError) as err:
        await do_put(s, local, params)
    assert err.value.reason == reason
    assert err.value.message("en") == t(f"files_err_{reason}", "en")
    assert err.value.message("ja") != err.value.message("en")
    assert not s.incoming.exists() or list(s.incoming.iterdir()) == []
    assert not (tmp_path / "x").exists() and s.events == [("file_failed", reason)]
    await s.close()


async def test_a_symlink_or_device_under_the_target_name_is_never_written_through(
    tmp_path: Path,
) -> None:
    s = await session(tmp_path)
    s.incoming.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    (s.incoming / "link.txt").symlink_to(outside)
    (s.incoming / "null").symlink_to("/dev/null")
    os.mkfifo(s.incoming / "fifo")
    for name in ("link.txt", "null", "fifo"):
        local = random_file(tmp_path / "tech" / name, 100)
        for overwrite in (False, True):
            with pytest.raises(tf.TransferError) as err:
                await do_put(s, local, tf.put_params(local, overwrite=overwrite))
            assert err.value.reason == "target_not_file"
    assert outside.read_bytes() == b"precious"
    assert hidden(s.incoming) == []
    await s.close()


async def test_destination_folder_must_be_a_real_existing_folder(tmp_path: Path) -> None:
    s = await session(tmp_path)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "linked").symlink_to(real)
    (tmp_path / "afile").write_bytes(b"")
    local = random_file(tmp_path / "tech" / "a.txt", 10)
    cases = [
        (tmp_path / "missing", "dest_missing"),
        (tmp_path / "linked", "dest_symlink"),
        (tmp_path / "afile", "dest_not_dir"),
    ]
    for dest, reason in cases:
        with pytest.raises(tf.TransferError) as err:
            await do_put(s, local, tf.put_params(local, str(dest)))
        assert err.value.reason == reason
    params = {**tf.put_params(local), "dest": "relative/dir"}
    with pytest.raises(tf.TransferError) as err:
        await do_put(s, local, params)
    assert err.value.reason == "bad_path"
    assert list(real.iterdir()) == []
    await s.close()


async def test_a_second_put_of_the_same_file_while_the_first_runs_is_busy(
    tmp_path: Path,
) -> None:
    s = await session(tmp_path)
    s.incoming.mkdir()
    local = random_file(tmp_path / "tech" / "same.bin", 1000)
    params = tf.put_params(local)
    key = f"put\0same.bin\0{params['size']}\0{params['sha256']}"
    dir_fd = os.open(s.incoming, os.O_RDONLY | os.O_DIRECTORY)
    holder = Part.open(dir_fd, key, params["size"], params["sha256"], 0.0)  # the first one
    try:
        with pytest.raises(tf.TransferError) as err:
            await do_put(s, local, params)
        assert err.value.reason == "busy"
    finally:
        holder.discard()
        os.close(dir_fd)
    await s.close()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("CON", "name_reserved"),
        ("con.txt", "name_reserved"),
        ("COM1", "name_reserved"),
        ("LPT9.log", "name_reserved"),
        ("a:b", "name_bad_char"),
        ("what?", "name_bad_char"),
        ("dot.", "name_trailing"),
        ("space ", "name_trailing"),
        ("a\\b", "name_separator"),
    ],
)
def test_windows_names(name: str, reason: str) -> None:
    assert fx.check_name(name, "windows") == reason
    expected_posix = "name_separator" if "\\" in name else None
    assert fx.check_name(name, "posix") == expected_posix


# -- get ----------------------------------------------------------------------------


async def test_get_fetches_a_file_with_its_hash(tmp_path: Path) -> None:
    s = await session(tmp_path)
    remote = random_file(tmp_path / "customer" / "Xorg.0.log", 6 * MiB + 3)
    saved = await do_get(s, str(remote))
    assert saved == s.downloads / "Xorg.0.log"
    assert sha(saved) == sha(remote)
    assert hidden(s.downloads) == []
    assert s.events == [("file_sent", f"{6 * MiB + 3}:{sha(remote)}:Xorg.0.log")]
    # Fetched again: the first copy stays, the second gets its own name.
    again = await do_get(s, str(remote))
    assert again == s.downloads / "Xorg.0 (1).log"
    assert sha(again) == sha(remote)
    await s.close()


async def test_get_of_64_mib(tmp_path: Path) -> None:
    s = await session(tmp_path)
    remote = random_file(tmp_path / "customer" / "core", 64 * MiB)
    saved = await do_get(s, str(remote))
    assert sha(saved) == sha(remote)
    await s.close()


async def test_get_refuses_links_devices_and_missing_files(tmp_path: Path) -> None:
    s = await session(tmp_path)
    home = tmp_path / "customer"
    home.mkdir()
    (home / "link").symlink_to("/etc/hostname")
    os.mkfifo(home / "fifo")
    cases = [
        (str(home / "link"), "symlink"),
        (str(home / "fifo"), "not_regular_file"),
        ("/dev/null", "not_regular_file"),
        (str(home / "nothing"), "not_found"),
    ]
    for path, reason in cases:
        with pytest.raises(tf.TransferError) as err:
            await do_get(s, path)
        assert err.value.reason == reason, path
        assert err.value.message("ja") != err.value.message("en")
    with pytest.raises(tf.TransferError) as err:
        await do_get(s, "", {"path": "relative.txt", "offset": 0})
    assert err.value.reason == "bad_path"
    assert list(s.downloads.iterdir()) == []
    assert [e for e, _ in s.events] == ["file_failed"] * 5
    await s.close()


async def test_get_refuses_a_name_the_technician_cannot_create(tmp_path: Path) -> None:
    s = await session(tmp_path)
    remote = random_file(tmp_path / "customer" / ".enkaku-trap.part", 10)
    with pytest.raises(tf.TransferError) as err:
        await do_get(s, str(remote))
    assert err.value.reason == "name_reserved"
    assert list(s.downloads.iterdir()) == []
    await s.close()


# -- browse -------------------------------------------------------------------------


async def test_browse_lists_names_types_sizes_without_our_temporary_files(
    tmp_path: Path,
) -> None:
    s = await session(tmp_path)
    home = tmp_path / "customer"
    (home / "Documents").mkdir(parents=True)
    (home / "a.txt").write_bytes(b"12345")
    (home / ".bashrc").write_bytes(b"x")
    (home / "link").symlink_to(home / "a.txt")
    os.mkfifo(home / "pipe")
    (home / ".enkaku-0123456789abcdef.part").write_bytes(b"part")
    (home / ".enkaku-0123456789abcdef.part.json").write_bytes(b"{}")
    listing = await do_browse(s, str(home))
    assert listing.path == str(home) and not listing.truncated
    assert [(e["name"], e["type"], e["size"]) for e in listing] == [
        ("Documents", "dir", 0),
        (".bashrc", "file", 1),
        ("a.txt", "file", 5),
        ("link", "link", 0),
        ("pipe", "other", 0),
    ]
    assert all(isinstance(e["mtime"], float) for e in listing)
    assert s.events == []  # browsing is not a transfer
    await s.close()


async def test_browse_is_bounded(tmp_path: Path) -> None:
    s = await session(tmp_path)
    home = tmp_path / "many"
    home.mkdir()
    for i in range(fx.MAX_ENTRIES + 5):
        (home / f"f{i:05d}").write_bytes(b"")
    listing = await do_browse(s, str(home))
    assert listing.truncated and len(listing) == fx.MAX_ENTRIES
    await s.close()


async def test_browse_errors(tmp_path: Path) -> None:
    s = await session(tmp_path)
    (tmp_path / "file").write_bytes(b"")
    for path, reason in [
        (str(tmp_path / "nope"), "not_found"),
        (str(tmp_path / "file"), "not_a_directory"),
    ]:
        with pytest.raises(tf.TransferError) as err:
            await do_browse(s, path)
        assert err.value.reason == reason
    await s.close()


def test_the_customer_sees_the_incoming_folder_for_dest_empty(tmp_path: Path) -> None:
    local = random_file(tmp_path / "a.txt", 3)
    details = tf.consent_details(fx.KIND_PUT, tf.put_params(local))
    files = FileSettings(incoming=tmp_path / "in")
    assert shown_details(fx.ACTION_PUT, details, files)["dest"] == str(tmp_path / "in")
    assert details["dest"] == ""  # the grant keeps what the stream repeats


async def test_the_incoming_folder_and_the_download_folder_may_be_links(tmp_path: Path) -> None:
    """Our own settings are trusted; only a folder the peer names must be the real one."""
    s = await session(tmp_path)
    links = [(tmp_path / "disk2-in", s.incoming), (tmp_path / "disk2-dl", tmp_path / "dl")]
    for real, link in links:
        real.mkdir()
        link.symlink_to(real)
    local = random_file(tmp_path / "tech" / "a.txt", 100)
    await do_put(s, local)
    assert sha(tmp_path / "disk2-in" / "a.txt") == sha(local)
    saved = await do_get(s, str(local), dest=tmp_path / "dl")
    assert sha(tmp_path / "disk2-dl" / "a.txt") == sha(local) and saved.name == "a.txt"
    await s.close()


async def test_a_missing_download_folder_is_named_to_the_technician(tmp_path: Path) -> None:
    s = await session(tmp_path)
    remote = random_file(tmp_path / "customer" / "a.txt", 10)
    with pytest.raises(tf.TransferError) as err:
        await do_get(s, str(remote), dest=tmp_path / "nowhere")
    assert err.value.reason == "dest_missing"
    assert not (tmp_path / "nowhere").exists()
    await s.close()


async def test_a_file_larger_than_the_free_space_is_refused_before_any_byte(
    tmp_path: Path,
) -> None:
    s = await session(tmp_path)
    local = random_file(tmp_path / "tech" / "huge.img", 10)
    params = {**tf.put_params(local), "size": fx.MAX_SIZE}
    with pytest.raises(tf.TransferError) as err:
        await do_put(s, local, params)
    assert err.value.reason == "disk_full"
    assert list(s.incoming.iterdir()) == []
    await s.close()


async def test_browse_of_the_empty_path_lists_the_home_folder(tmp_path: Path) -> None:
    s = await session(tmp_path)
    listing = await do_browse(s, "")
    assert listing.path == str(Path.home())
    await s.close()
