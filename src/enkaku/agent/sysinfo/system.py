"""Operating system probes: distribution and kernel, clock, logged-in users, storage,
failed services, packages and the journal's recent errors and crashes.

Personal data is kept out on purpose: users are names and terminals only, journal
messages are cut at 200 characters and at most 50 are sent, and no file inside a home
directory is ever opened.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import psutil

from enkaku.agent.sysinfo.probe import Unavailable, read_text, run, systemd_running
from enkaku.i18n import printable

#: Seconds the support server has to answer the clock question.
CLOCK_TIMEOUT = 3.0
#: File systems that are full by design (images) and are listed but never "full".
IMAGE_FS = frozenset({"squashfs", "iso9660", "erofs", "udf", "cramfs"})
JOURNAL_HOURS = 24
CRASH_DAYS = 7
MAX_JOURNAL_ENTRIES = 50
MAX_MESSAGE = 200
#: Kernel messages that mean a crash; the group name is the kind reported.
KERNEL_CRASH = re.compile(
    r"(?P<panic>Kernel panic)|(?P<oops>Oops|BUG: |general protection fault)|"
    r"(?P<segfault>segfault at|traps: .* trap )"
)

#: "Process 1234 (name) of user 1000 dumped core." (systemd-coredump)
CORE_PROCESS = re.compile(r"Process \d+ \(([^)]{1,64})\)")
#: "name[1234]: segfault at ..." and "traps: name[1234] trap ..." (kernel)
SEGFAULT_PROCESS = re.compile(r"(?:^|traps: )([^\s\[]{1,64})\[\d+\]")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def os_release() -> dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = read_text(path)
        except OSError:
            continue
        out = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip().strip("\"'")
        return out
    return {}


def system(_server: str | None) -> dict[str, Any]:
    """Distribution, kernel, architecture, boot time, uptime, pending reboot."""
    rel = os_release()
    boot = psutil.boot_time()
    return {
        "distribution": rel.get("PRETTY_NAME") or rel.get("NAME"),
        "id": rel.get("ID"),
        "version": rel.get("VERSION_ID"),
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "hostname": socket.gethostname(),
        "boot_time": iso(boot),
        "uptime_s": int(time.time() - boot),
        "reboot_required": Path("/run/reboot-required").exists(),
    }


def _timezone() -> str | None:
    if os.environ.get("TZ"):
        return os.environ["TZ"].lstrip(":")
    try:
        return read_text("/etc/timezone").strip() or None
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return None
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else None


def server_base(server_url: str) -> str:
    """The support server's https:// (or http://) base for an agent URL of any scheme."""
    url = server_url.strip()
    for ws, http in (("wss://", "https://"), ("ws://", "http://")):
        if url.startswith(ws):
            return http + url[len(ws) :]
    return url


def clock_offset(server_url: str) -> float:
    """Server time minus local time, from the server's HTTP ``Date`` (±1 s)."""
    req = urllib.request.Request(server_base(server_url), method="HEAD")
    start = time.time()
    try:
        with urllib.request.urlopen(req, timeout=CLOCK_TIMEOUT) as resp:
            date = resp.headers.get("Date")
    except urllib.error.HTTPError as exc:  # a 404 still carries the server's Date
        date = exc.headers.get("Date")
    end = time.time()
    if not date:
        raise ValueError("no Date header")
    return round(parsedate_to_datetime(date).timestamp() - (start + end) / 2, 1)


def clock(server: str | None) -> dict[str, Any]:
    """Time zone, UTC offset, NTP synchronisation and the offset from the server's clock."""
    now = time.time()
    data: dict[str, Any] = {
        "timezone": _timezone(),
        "utc_offset": time.strftime("%z", time.localtime(now)),
        "local_time": datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds"),
        "ntp_synchronized": None,
        "offset_s": None,
        "offset_why": None,
    }
    if systemd_running():
        try:
            value = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"]).strip()
            data["ntp_synchronized"] = value == "yes"
        except Unavailable:
            pass
    if server is None:
        data["offset_why"] = Unavailable("sysinfo_why_no_server").why()
        return data
    try:
        data["offset_s"] = clock_offset(server)
    except (OSError, ValueError) as exc:
        detail = printable(type(exc).__name__ + ": " + str(exc), 160)
        data["offset_why"] = Unavailable(
            "sysinfo_why_failed", what="HTTP Date", detail=detail
        ).why()
    return data


def users(_server: str | None) -> dict[str, Any]:
    """Who is logged in: names and terminals (never what is in their homes)."""
    sessions = [
        {
            "name": printable(u.name, 64),
            "terminal": printable(u.terminal or "", 32) or None,
            "started": iso(u.started),
        }
        for u in psutil.users()
    ]
    return {"count": len(sessions), "sessions": sessions}


def storage(_server: str | None) -> list[dict[str, Any]]:
    """Space and inodes of each mounted on-disk file system (pseudo file systems skipped)."""
    seen: set[str] = set()
    out = []
    for part in psutil.disk_partitions(all=False):
        if part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            st = os.statvfs(part.mountpoint)
            use = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        inodes_used = st.f_files - st.f_ffree
        out.append(
            {
                "mount": part.mountpoint,
                "device": part.device,
                "fstype": part.fstype,
                "read_only": "ro" in part.opts.split(","),
                "image": part.fstype in IMAGE_FS,
                "total": use.total,
                "used": use.used,
                "free": use.free,
                "percent": use.percent,
                "inodes_total": st.f_files or None,
                "inodes_used": inodes_used if st.f_files else None,
                "inodes_percent": round(100.0 * inodes_used / st.f_files, 1)
                if st.f_files
                else None,
            }
        )
    return out


def services(_server: str | None) -> dict[str, Any]:
    """The system state and the failed systemd units."""
    if not systemd_running():
        raise Unavailable("sysinfo_why_no_systemd")
    state = run(["systemctl", "is-system-running"], check=False).strip() or None
    text = run(
        [
            "systemctl",
            "list-units",
            "--state=failed",
            "--all",
            "--plain",
            "--no-legend",
            "--no-pager",
        ]
    )
    failed = []
    for line in text.splitlines():
        parts = line.split(None, 4)
        if len(parts) >= 4:
            failed.append(
                {
                    "unit": printable(parts[0], 128),
                    "load": parts[1],
                    "active": parts[2],
                    "sub": parts[3],
                    "description": printable(parts[4] if len(parts) > 4 else "", 200),
                }
            )
    return {"state": state, "failed": failed}


def _apt_lists_time() -> str | None:
    lists = Path("/var/lib/apt/lists")
    times = [p.stat().st_mtime for p in lists.glob("*Release")] if lists.is_dir() else []
    return iso(max(times)) if times else None


def packages(_server: str | None) -> dict[str, Any]:
    """Installed package count and pending updates from the local package lists (no
    network: what the machine last downloaded, dated by ``lists_updated``)."""
    try:
        status = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\n"], timeout=4.0)
    except Unavailable as exc:
        if exc.key != "sysinfo_why_tool_missing":
            raise
        try:
            rpm = run(["rpm", "-qa", "--qf", ".\n"], timeout=4.0)
        except Unavailable:
            raise Unavailable("sysinfo_why_no_package_manager") from None
        return {
            "manager": "rpm",
            "installed": rpm.count("\n"),
            "updates": None,
            "updates_why": Unavailable("sysinfo_why_tool_missing", tool="apt").why(),
        }
    data: dict[str, Any] = {
        "manager": "dpkg",
        "installed": sum(1 for line in status.splitlines() if line.startswith("ii")),
        "lists_updated": _apt_lists_time(),
        "updates": None,
        "security_updates": None,
        "security_names": [],
        "updates_why": None,
    }
    try:
        text = run(["apt", "list", "--upgradable"], timeout=7.0)
    except Unavailable as exc:
        data["updates_why"] = exc.why()
        return data
    updates = security = 0
    names = []
    for line in text.splitlines():
        m = re.match(r"^([^/\s]+)/(\S+)\s", line)
        if not m:
            continue
        updates += 1
        if "security" in m.group(2):
            security += 1
            names.append(printable(m.group(1), 64))
    data.update(updates=updates, security_updates=security, security_names=names[:30])
    return data


def _journal(args: list[str], limit: int) -> list[dict[str, Any]]:
    text = run(
        ["journalctl", "--no-pager", "-q", "-o", "json", "-n", str(limit), *args], timeout=5.0
    )
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _message(entry: dict[str, Any]) -> str:
    msg = entry.get("MESSAGE", "")
    if isinstance(msg, list):  # binary messages come as byte arrays
        msg = bytes(b for b in msg if isinstance(b, int) and 0 <= b < 256).decode(
            "utf-8", "replace"
        )
    return printable(str(msg), MAX_MESSAGE)


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    ts = entry.get("__REALTIME_TIMESTAMP")
    unit = entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or entry.get("_TRANSPORT")
    return {
        "time": iso(int(ts) / 1e6) if isinstance(ts, str) and ts.isdigit() else None,
        "unit": printable(str(unit), 128) if unit else None,
        "priority": int(entry["PRIORITY"]) if str(entry.get("PRIORITY", "")).isdigit() else None,
        "message": _message(entry),
    }


def crashes_of(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kernel crashes (oops, panic, segfault) and core dumps among journal entries."""
    crashes = []
    for entry in entries:
        text = _message(entry)
        if entry.get("SYSLOG_IDENTIFIER") == "systemd-coredump":
            if "dumped core" in text:
                m = CORE_PROCESS.search(text)
                crashes.append({"kind": "coredump", "process": m and m.group(1), **_summary(entry)})
            continue
        m = KERNEL_CRASH.search(text)
        if m:
            p = SEGFAULT_PROCESS.search(text) if m.lastgroup == "segfault" else None
            crashes.append({"kind": m.lastgroup, "process": p and p.group(1), **_summary(entry)})
    return crashes


def journal(_server: str | None) -> dict[str, Any]:
    """Errors of the last 24 hours and crashes (kernel oops, panic, segfault, core
    dumps) of the last 7 days, newest last, messages cut at 200 characters."""
    has_journal = any(Path(p).is_dir() for p in ("/run/log/journal", "/var/log/journal"))
    if not has_journal:
        raise Unavailable("sysinfo_why_no_journal")
    cap = 1000
    errors = _journal(["-p", "0..3", "--since", f"-{JOURNAL_HOURS}h"], cap)
    crashes: list[dict[str, Any]] = []
    crashes_why = None
    try:
        crashes = crashes_of(
            _journal(
                [
                    "--since",
                    f"-{CRASH_DAYS}d",
                    "_TRANSPORT=kernel",
                    "+",
                    "SYSLOG_IDENTIFIER=systemd-coredump",
                ],
                5000,
            )
        )
    except Unavailable as exc:  # the errors above are still worth sending
        crashes_why = exc.why()
    return {
        "window_hours": JOURNAL_HOURS,
        "error_count": len(errors),
        "error_count_capped": len(errors) >= cap,
        "errors": [_summary(e) for e in errors[-MAX_JOURNAL_ENTRIES:]],
        "crash_window_days": CRASH_DAYS,
        "crashes": crashes[-MAX_JOURNAL_ENTRIES:],
        "crash_count": len(crashes),
        "crashes_why": crashes_why,
    }
