"""Shared pieces of the system information probes: running a command with a timeout,
reading a small system file, and saying in both languages why a section is missing.

A probe returns its section's data or raises ``Unavailable`` with a message key; the
collector turns that into ``{"ok": false, "why": {"en": ..., "ja": ...}}`` so one
unreadable source never spoils the whole report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from enkaku.i18n import both, printable, register

register(
    {
        "sysinfo_why_tool_missing": (
            "The program {tool} is not installed on this machine.",
            "このマシンには {tool} がインストールされていません。",
        ),
        "sysinfo_why_timeout": (
            "{what} did not answer within {seconds} s.",
            "{what} が {seconds} 秒以内に応答しませんでした。",
        ),
        "sysinfo_why_permission": (
            "Not allowed to read {what}; the agent would need administrator rights.",
            "{what} を読む権限がありません。エージェントに管理者権限が必要です。",
        ),
        "sysinfo_why_failed": (
            "{what} failed: {detail}",
            "{what} が失敗しました: {detail}",
        ),
        "sysinfo_why_error": (
            "Reading this section failed unexpectedly ({detail}).",
            "このセクションの取得中に予期しないエラーが発生しました ({detail})。",
        ),
        "sysinfo_why_section_timeout": (
            "Reading this section took longer than {seconds} s and was abandoned.",
            "このセクションの取得に {seconds} 秒以上かかったため中止しました。",
        ),
        "sysinfo_why_no_server": (
            "No support server address was given, so this was not measured.",
            "サポートサーバーのアドレスが指定されていないため、測定していません。",
        ),
        "sysinfo_why_no_systemd": (
            "systemd is not running on this machine (no service manager to ask).",
            "このマシンでは systemd が動作していません (問い合わせるサービス管理がありません)。",
        ),
        "sysinfo_why_no_journal": (
            "This machine keeps no systemd journal.",
            "このマシンには systemd ジャーナルがありません。",
        ),
        "sysinfo_why_no_package_manager": (
            "No supported package manager (dpkg/apt or rpm) was found.",
            "対応するパッケージ管理 (dpkg/apt または rpm) が見つかりません。",
        ),
        "sysinfo_why_no_smart": (
            "This disk does not report SMART health (virtual disks and some USB cases don't).",
            "このディスクは SMART 診断情報を提供していません (仮想ディスクや一部の USB ケース)。",
        ),
        "sysinfo_why_not_linux": (
            "This section is only read on Linux.",
            "このセクションは Linux でのみ取得できます。",
        ),
    }
)

#: Seconds any one external command may take.
COMMAND_TIMEOUT = 4.0
#: A command's output beyond this is cut (a runaway tool must not fill memory).
OUTPUT_CAP = 4 * 1024 * 1024


class Unavailable(Exception):
    """A section (or part of one) cannot be read; ``key`` is its i18n message."""

    def __init__(self, key: str, **kwargs: object) -> None:
        super().__init__(key)
        self.key, self.kwargs = key, kwargs

    def why(self) -> dict[str, str]:
        return both(self.key, **self.kwargs)


def ok(data: Any) -> dict[str, Any]:
    """A section that was read."""
    return {"ok": True, "data": data}


def failed(why: dict[str, str]) -> dict[str, Any]:
    """A section that was not read, and why (English and Japanese)."""
    return {"ok": False, "why": why}


def run(argv: list[str], timeout: float = COMMAND_TIMEOUT, check: bool = True) -> str:
    """Run ``argv`` in the C locale (stable, parseable output) and return its stdout.

    Raises ``Unavailable`` when the tool is missing, times out, is refused, or (with
    ``check``) exits non-zero.
    """
    tool = argv[0]
    path = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise Unavailable("sysinfo_why_tool_missing", tool=tool)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "SYSTEMD_PAGER": "", "PAGER": "cat"}
    try:
        proc = subprocess.run(
            [path, *argv[1:]],
            capture_output=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise Unavailable("sysinfo_why_timeout", what=tool, seconds=timeout) from None
    except PermissionError:
        raise Unavailable("sysinfo_why_permission", what=tool) from None
    if check and proc.returncode != 0:
        detail = printable(proc.stderr.decode("utf-8", "replace").strip(), 160)
        raise Unavailable("sysinfo_why_failed", what=tool, detail=detail or proc.returncode)
    return proc.stdout[:OUTPUT_CAP].decode("utf-8", "replace")


def read_text(path: str | Path, limit: int = 256 * 1024) -> str:
    """A small system file (``/proc``, ``/sys``, ``/etc``), cut at ``limit`` bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except PermissionError:
        raise Unavailable("sysinfo_why_permission", what=str(path)) from None


def read_first_line(path: str | Path) -> str | None:
    """The first line of a small ``/sys`` attribute, or None where it does not exist."""
    try:
        return read_text(path, 4096).strip() or None
    except (OSError, Unavailable):
        return None


def systemd_running() -> bool:
    """Whether systemd is the service manager (its documented test, sd_booted(3))."""
    return Path("/run/systemd/system").is_dir()
