"""Hardware probes: CPU, memory, disks with SMART health, GPU, battery, sensors.

Each function takes the collection's server URL (unused here, for one probe signature)
and returns its section's data, or raises ``Unavailable``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import psutil

from enkaku.agent.sysinfo.probe import Unavailable, read_first_line, read_text, run
from enkaku.i18n import printable

#: Seconds over which CPU use and swap activity are sampled.
SAMPLE_SECONDS = 0.5
#: Block devices that are not hardware (loop files, RAM disks, device-mapper, zram).
VIRTUAL_BLOCK = re.compile(r"^(loop|ram|zram|dm-|md|sr|fd|nbd)")
SMART_TIMEOUT = 5.0


def cpu(_server: str | None) -> dict[str, Any]:
    """Model, counts, frequency, load average and use over half a second."""
    model = None
    try:
        for line in read_text("/proc/cpuinfo").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor", "cpu model"):
                model = value.strip()
                break
    except OSError:
        pass
    freq = None
    try:
        f = psutil.cpu_freq()
        if f is not None:
            freq = {"current_mhz": round(f.current), "max_mhz": round(f.max) or None}
    except (OSError, NotImplementedError):
        pass
    load = [round(x, 2) for x in os.getloadavg()]
    return {
        "model": model,
        "logical": psutil.cpu_count(logical=True),
        "physical": psutil.cpu_count(logical=False),
        "frequency": freq,
        "load_average": {"1m": load[0], "5m": load[1], "15m": load[2]},
        "percent": psutil.cpu_percent(interval=SAMPLE_SECONDS),
    }


def _swap_pages() -> tuple[int, int] | None:
    try:
        fields = dict(line.split() for line in read_text("/proc/vmstat").splitlines())
        return int(fields["pswpin"]), int(fields["pswpout"])
    except (OSError, KeyError, ValueError):
        return None


def _pressure() -> dict[str, float] | None:
    """Linux pressure stall information for memory: share of time tasks waited."""
    try:
        text = read_text("/proc/pressure/memory")
    except (OSError, Unavailable):
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        for pair in pairs:
            name, _, value = pair.partition("=")
            if name == "avg10":
                out[f"{kind}_avg10"] = float(value)
    return out or None


def memory(_server: str | None) -> dict[str, Any]:
    """RAM and swap use, pages swapped per second while sampling, memory pressure."""
    before, t0 = _swap_pages(), time.monotonic()
    time.sleep(SAMPLE_SECONDS)
    after, elapsed = _swap_pages(), time.monotonic() - t0
    rate = None
    if before is not None and after is not None:
        rate = {
            "in": round((after[0] - before[0]) / elapsed, 1),
            "out": round((after[1] - before[1]) / elapsed, 1),
        }
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    return {
        "total": vm.total,
        "available": vm.available,
        "used": vm.used,
        "available_percent": round(100.0 * vm.available / vm.total, 1) if vm.total else None,
        "swap_total": sw.total,
        "swap_used": sw.used,
        "swap_percent": sw.percent,
        "swap_pages_per_s": rate,
        "pressure": _pressure(),
    }


def _smart(device: str) -> dict[str, Any]:
    """SMART health and the counters that predict failure, from ``smartctl --json``."""
    try:
        out = run(
            ["smartctl", "--json=c", "-n", "standby", "-i", "-H", "-A", f"/dev/{device}"],
            timeout=SMART_TIMEOUT,
            check=False,
        )
        doc = json.loads(out)
    except Unavailable as exc:
        return {"ok": False, "why": exc.why()}
    except ValueError:
        return {
            "ok": False,
            "why": Unavailable("sysinfo_why_failed", what="smartctl", detail="no JSON").why(),
        }
    return smart_of(doc)


def smart_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The health summary of one ``smartctl --json`` document (ATA or NVMe)."""
    status = int(doc.get("smartctl", {}).get("exit_status", 0))
    if status & 0b11:  # command line or device open failed (or asleep with -n)
        msgs = [m.get("string", "") for m in doc.get("smartctl", {}).get("messages", [])]
        detail = printable("; ".join(msgs), 160) or f"exit status {status}"
        if "Unable to detect device type" in detail or "Unknown USB bridge" in detail:
            return {"ok": False, "why": Unavailable("sysinfo_why_no_smart").why()}
        if "ermission" in detail:
            return {"ok": False, "why": Unavailable("sysinfo_why_permission", what="SMART").why()}
        return {
            "ok": False,
            "why": Unavailable("sysinfo_why_failed", what="smartctl", detail=detail).why(),
        }
    attrs = {a.get("id"): a for a in doc.get("ata_smart_attributes", {}).get("table", [])}

    def raw(attr_id: int) -> int | None:
        a = attrs.get(attr_id)
        return int(a["raw"]["value"]) if a and "raw" in a else None

    nvme = doc.get("nvme_smart_health_information_log", {})
    return {
        "ok": True,
        "passed": doc.get("smart_status", {}).get("passed"),
        "reallocated": raw(5),
        "pending": raw(197),
        "uncorrectable": raw(198),
        "nvme_critical_warning": nvme.get("critical_warning"),
        "media_errors": nvme.get("media_errors"),
        "percentage_used": nvme.get("percentage_used"),
        "temperature": doc.get("temperature", {}).get("current"),
        "power_on_hours": doc.get("power_on_time", {}).get("hours"),
    }


def disks(_server: str | None) -> list[dict[str, Any]]:
    """Physical block devices from ``/sys/block`` with their SMART health."""
    root = Path("/sys/block")
    if not root.is_dir():
        raise Unavailable("sysinfo_why_not_linux")
    out = []
    for dev in sorted(p.name for p in root.iterdir()):
        if VIRTUAL_BLOCK.match(dev):
            continue
        base = root / dev
        sectors = read_first_line(base / "size")
        out.append(
            {
                "name": dev,
                "size": int(sectors) * 512 if sectors and sectors.isdigit() else None,
                "model": read_first_line(base / "device" / "model"),
                "vendor": read_first_line(base / "device" / "vendor"),
                "rotational": read_first_line(base / "queue" / "rotational") == "1",
                "removable": read_first_line(base / "removable") == "1",
                "smart": _smart(dev),
            }
        )
    return out


def gpu(_server: str | None) -> list[dict[str, Any]]:
    """Display adapters: from ``lspci`` where installed, else from ``/sys/class/drm``."""
    try:
        out = run(["lspci", "-mm"])
    except Unavailable:
        out = None
    if out is not None:
        found = []
        for line in out.splitlines():
            parts = re.findall(r'"([^"]*)"', line)
            if len(parts) >= 3 and re.search(r"VGA|3D|Display", parts[0]):
                found.append({"name": printable(f"{parts[1]} {parts[2]}", 200), "driver": None})
        return found
    drm = Path("/sys/class/drm")
    found = []
    for card in sorted(drm.glob("card[0-9]")) if drm.is_dir() else []:
        dev = card / "device"
        driver = (
            os.path.basename(os.readlink(dev / "driver")) if (dev / "driver").exists() else None
        )
        vendor, device = read_first_line(dev / "vendor"), read_first_line(dev / "device")
        found.append({"name": f"PCI {vendor}:{device}", "driver": driver})
    return found


def battery(_server: str | None) -> dict[str, Any]:
    """Charge and whether the charger is plugged in (absent on most desktops)."""
    b = psutil.sensors_battery()
    if b is None:
        return {"present": False}
    secs = b.secsleft if isinstance(b.secsleft, int) and b.secsleft >= 0 else None
    return {
        "present": True,
        "percent": round(b.percent, 1),
        "plugged": b.power_plugged,
        "seconds_left": secs,
    }


def sensors(_server: str | None) -> dict[str, Any]:
    """Temperatures (with the hardware's own high and critical marks) and fans."""
    temps: list[dict[str, Any]] = []
    for chip, entries in psutil.sensors_temperatures().items():
        for e in entries:
            temps.append(
                {
                    "chip": chip,
                    "label": e.label or None,
                    "current": e.current,
                    "high": e.high,
                    "critical": e.critical,
                }
            )
    fans = [
        {"chip": chip, "label": f.label or None, "rpm": f.current}
        for chip, entries in psutil.sensors_fans().items()
        for f in entries
    ]
    return {"temperatures": temps, "fans": fans}
