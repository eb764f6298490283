"""A real ext4 file system on a loop device, filled past 90 %: the collector sees it and
the disk-full finding names its mount point with the numbers."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from enkaku.agent.sysinfo.collect import collect
from enkaku.agent.sysinfo.findings import findings
from enkaku.agent.sysinfo.report import to_html

IMAGE_MB = 16


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


@pytest.fixture
def full_ext4(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root")
    for tool in ("mkfs.ext4", "losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (e2fsprogs / util-linux)")
    image, mountpoint = tmp_path / "disk.img", tmp_path / "mnt"
    mountpoint.mkdir()
    with open(image, "wb") as f:
        f.truncate(IMAGE_MB * 1024 * 1024)
    _run("mkfs.ext4", "-F", "-q", "-m", "0", str(image))
    try:
        loop = _run("losetup", "--find", "--show", str(image)).strip()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"no loop device available here: {exc.stderr.strip()}")
    mounted = False
    try:
        try:
            _run("mount", "-t", "ext4", loop, str(mountpoint))
            mounted = True
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"mounting {loop} failed: {exc.stderr.strip()}")
        st = os.statvfs(mountpoint)
        fill = int(st.f_bavail * st.f_frsize * 0.95)  # well past 90 % of the usable space
        with open(mountpoint / "filler.bin", "wb") as f:
            f.write(b"\0" * fill)
            f.flush()
            os.fsync(f.fileno())
        yield mountpoint
    finally:
        if mounted:
            _run("umount", str(mountpoint))
        _run("losetup", "--detach", loop)


def test_a_nearly_full_real_file_system_is_found(full_ext4: Path) -> None:
    report = collect(None)
    storage = report["sections"]["storage"]
    assert storage["ok"], storage
    (fs,) = [fs for fs in storage["data"] if fs["mount"] == str(full_ext4)]
    assert fs["fstype"] == "ext4" and fs["device"].startswith("/dev/loop")
    assert fs["percent"] > 90
    disk = [f for f in findings(report) if f.id == "disk_full"]
    (found,) = [f for f in disk if f.evidence["mount"] == str(full_ext4)]
    assert found.severity in ("warning", "critical")
    assert found.evidence["percent"] == fs["percent"]
    assert found.evidence["total"] == fs["total"] and found.evidence["free"] == fs["free"]
    assert str(full_ext4) in found.title["en"] and str(full_ext4) in found.title["ja"]
    assert str(full_ext4) in to_html(report, "ja")
