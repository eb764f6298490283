"""Collect the system information report: every probe at once on worker threads, each
section answered or explained, the whole within ``DEADLINE`` seconds.

The report::

    {"format": "enkaku.system_info/1", "collected_at": ISO-8601 UTC, "duration_s": float,
     "sections": {name: {"ok": true, "data": ...} | {"ok": false, "why": {"en", "ja"}}}}

``findings.findings(report)`` reads it; ``report.to_json`` puts the findings on top.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psutil

from enkaku.agent.sysinfo import hardware, network, system
from enkaku.agent.sysinfo.probe import Unavailable, failed, ok
from enkaku.i18n import both, printable

FORMAT = "enkaku.system_info/1"
#: Seconds after which sections still running are reported as timed out.
DEADLINE = 12.0
TOP = 10

Probe = Callable[[str | None], Any]


def processes(_server: str | None) -> dict[str, Any]:
    """The ten processes using most CPU (over half a second) and most memory: name,
    pid, user, CPU %, resident memory. Never command lines: arguments can hold secrets."""
    attrs = ["pid", "name", "username", "cpu_times", "memory_info"]
    first = {p.pid: p.info for p in psutil.process_iter(attrs)}
    t0 = time.monotonic()
    time.sleep(hardware.SAMPLE_SECONDS)
    elapsed = time.monotonic() - t0
    rows = []
    for p in psutil.process_iter(attrs):
        info = p.info
        before = first.get(p.pid)
        cpu = 0.0
        if before and before.get("cpu_times") and info.get("cpu_times"):
            used = sum(info["cpu_times"][:2]) - sum(before["cpu_times"][:2])
            cpu = max(0.0, round(100.0 * used / elapsed, 1))
        mem = info.get("memory_info")
        rows.append(
            {
                "name": printable(info.get("name") or "", 64),
                "pid": info["pid"],
                "user": printable(info.get("username") or "", 64) or None,
                "cpu_percent": cpu,
                "rss": mem.rss if mem else None,
            }
        )
    return {
        "count": len(rows),
        "top_cpu": sorted(rows, key=lambda r: r["cpu_percent"], reverse=True)[:TOP],
        "top_memory": sorted(rows, key=lambda r: r["rss"] or 0, reverse=True)[:TOP],
    }


#: Section name -> probe, in report order. Tests may replace an entry.
PROBES: dict[str, Probe] = {
    "cpu": hardware.cpu,
    "memory": hardware.memory,
    "disks": hardware.disks,
    "gpu": hardware.gpu,
    "battery": hardware.battery,
    "sensors": hardware.sensors,
    "system": system.system,
    "clock": system.clock,
    "users": system.users,
    "storage": system.storage,
    "interfaces": network.interfaces,
    "routes": network.routes,
    "dns": network.dns,
    "reachability": network.reachability,
    "listening": network.listening,
    "processes": processes,
    "services": system.services,
    "packages": system.packages,
    "journal": system.journal,
}

#: How the sections are grouped for reading (report.py's headings).
GROUPS: dict[str, tuple[str, ...]] = {
    "hardware": ("cpu", "memory", "disks", "gpu", "battery", "sensors"),
    "os": ("system", "clock", "users"),
    "storage": ("storage",),
    "network": ("interfaces", "routes", "dns", "reachability", "listening"),
    "processes": ("processes",),
    "services": ("services",),
    "packages": ("packages",),
    "journal": ("journal",),
}


def _result(future: concurrent.futures.Future[Any]) -> dict[str, Any]:
    try:
        return ok(future.result(timeout=0))
    except Unavailable as exc:
        return failed(exc.why())
    except PermissionError as exc:
        return failed(both("sysinfo_why_permission", what=printable(exc.filename or "?", 120)))
    except Exception as exc:
        return failed(
            both("sysinfo_why_error", detail=printable(f"{type(exc).__name__}: {exc}", 160))
        )


def collect(server_url: str | None) -> dict[str, Any]:
    """Read every section (blocking, a few seconds; run it with ``asyncio.to_thread``)."""
    start = time.monotonic()
    collected_at = datetime.now(UTC).isoformat(timespec="seconds")
    pool = concurrent.futures.ThreadPoolExecutor(len(PROBES), "sysinfo")
    try:
        futures = {name: pool.submit(probe, server_url) for name, probe in PROBES.items()}
        concurrent.futures.wait(futures.values(), timeout=DEADLINE)
    finally:
        # A probe stuck in the kernel (a hung mount) is left behind, never waited for.
        pool.shutdown(wait=False, cancel_futures=True)
    sections = {
        name: _result(f)
        if f.done()
        else failed(both("sysinfo_why_section_timeout", seconds=DEADLINE))
        for name, f in futures.items()
    }
    return {
        "format": FORMAT,
        "collected_at": collected_at,
        "duration_s": round(time.monotonic() - start, 2),
        "sections": sections,
    }
