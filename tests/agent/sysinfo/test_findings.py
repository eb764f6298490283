"""Each finding on recorded section samples (collected on this machine, values edited):
it fires, it does not fire, and where it has a threshold, just on either side of it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from enkaku.agent.sysinfo import findings as fmod
from enkaku.agent.sysinfo.findings import Finding, findings

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text("utf-8"))


def report(**sections: dict[str, Any]) -> dict[str, Any]:
    return {"format": "enkaku.system_info/1", "sections": sections}


def only(report_: dict[str, Any], kind: str) -> list[Finding]:
    return [f for f in findings(report_) if f.id == kind]


def test_recorded_samples_of_a_healthy_machine_give_no_finding() -> None:
    healthy = {
        name: sample(name)
        for name in (
            "storage",
            "memory",
            "routes",
            "dns",
            "system",
            "battery",
            "sensors",
            "disks",
            "services",
            "clock",
            "reachability",
            "journal",
        )
    }
    assert findings(report(**healthy)) == []


def test_every_finding_speaks_both_languages() -> None:
    storage = sample("storage")
    storage["data"][0]["percent"] = 99.0
    (f,) = findings(report(storage=storage))
    assert f.title["en"] and f.title["ja"] and f.explanation["en"] and f.explanation["ja"]
    assert f.title["en"] != f.title["ja"]


# ------------------------------------------------------------------ disk full


@pytest.mark.parametrize(
    ("percent", "severity"),
    [(22.8, None), (90.0, None), (90.1, "warning"), (97.0, "warning"), (97.1, "critical")],
)
def test_disk_full_thresholds(percent: float, severity: str | None) -> None:
    storage = sample("storage")
    storage["data"][0].update(percent=percent, free=3 * 2**30)
    found = only(report(storage=storage), "disk_full")
    assert [f.severity for f in found] == ([severity] if severity else [])
    if severity:
        assert found[0].evidence["mount"] == "/"
        assert found[0].evidence["percent"] == percent
        assert "3.0 GiB" in found[0].explanation["en"]


def test_disk_full_ignores_image_file_systems() -> None:
    storage = sample("storage")
    snap = dict(
        storage["data"][0], mount="/snap/core/1", fstype="squashfs", image=True, percent=100.0
    )
    storage["data"].append(snap)
    assert only(report(storage=storage), "disk_full") == []


# ------------------------------------------------------------------ inodes


@pytest.mark.parametrize(
    ("percent", "severity"), [(2.5, None), (90.0, None), (90.5, "warning"), (99.9, "critical")]
)
def test_inode_exhaustion(percent: float, severity: str | None) -> None:
    storage = sample("storage")
    storage["data"][0]["inodes_percent"] = percent
    found = only(report(storage=storage), "inodes_full")
    assert [f.severity for f in found] == ([severity] if severity else [])


def test_inodes_unknown_on_file_systems_without_them() -> None:
    storage = sample("storage")
    storage["data"][0].update(inodes_total=None, inodes_used=None, inodes_percent=None)
    assert only(report(storage=storage), "inodes_full") == []


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize(
    ("available", "severity"),
    [(97.4, None), (10.0, None), (9.9, "warning"), (5.0, "warning"), (4.9, "critical")],
)
def test_memory_low(available: float, severity: str | None) -> None:
    memory = sample("memory")
    memory["data"]["available_percent"] = available
    found = only(report(memory=memory), "memory_low")
    assert [f.severity for f in found] == ([severity] if severity else [])
    if severity:
        assert found[0].evidence["available_percent"] == available


@pytest.mark.parametrize(
    ("pages_in", "pages_out", "stall", "fires"),
    [
        (0.0, 0.0, 0.0, False),
        (50.0, 50.0, 0.0, False),
        (60.0, 50.0, 0.0, True),
        (0.0, 0.0, 10.0, False),
        (0.0, 0.0, 25.5, True),
    ],
)
def test_swapping(pages_in: float, pages_out: float, stall: float, fires: bool) -> None:
    memory = sample("memory")
    memory["data"]["swap_pages_per_s"] = {"in": pages_in, "out": pages_out}
    memory["data"]["pressure"] = {"some_avg10": stall, "full_avg10": stall}
    found = only(report(memory=memory), "swapping")
    assert bool(found) is fires
    if fires:
        assert found[0].evidence["swap_pages_per_s"] == pages_in + pages_out


# ------------------------------------------------------------------ services


def test_failed_services() -> None:
    services = sample("services")
    assert only(report(services=services), "services_failed") == []
    services["data"]["failed"] = [
        {
            "unit": "nginx.service",
            "load": "loaded",
            "active": "failed",
            "sub": "failed",
            "description": "A high performance web server",
        },
    ]
    (f,) = only(report(services=services), "services_failed")
    assert f.evidence == {"units": ["nginx.service"], "count": 1}
    assert "nginx.service" in f.explanation["ja"]


def test_services_unreadable_is_no_finding() -> None:
    why = {"ok": False, "why": {"en": "systemd is not running", "ja": "systemd なし"}}
    assert findings(report(services=why)) == []


# ------------------------------------------------------------------ network


def test_no_default_route() -> None:
    routes = sample("routes")
    assert only(report(routes=routes), "no_default_route") == []
    routes["data"]["default"] = [r for r in routes["data"]["default"] if r["family"] == "ipv6"]
    assert only(report(routes=routes), "no_default_route") == []  # IPv6 alone is a route
    routes["data"]["default"] = []
    (f,) = only(report(routes=routes), "no_default_route")
    assert f.severity == "critical"


def test_no_dns_servers() -> None:
    dns = sample("dns")
    assert only(report(dns=dns), "no_dns") == []
    dns["data"]["servers"] = []
    (f,) = only(report(dns=dns), "no_dns")
    assert f.severity == "critical"
    dns["data"]["upstream"] = ["192.0.2.53"]  # resolved's upstream counts
    assert only(report(dns=dns), "no_dns") == []


def test_support_server_unreachable() -> None:
    reach = sample("reachability")
    assert only(report(reachability=reach), "server_unreachable") == []
    reach["data"].update(connected=False, connect_ms=None, error="Connection refused")
    (f,) = only(report(reachability=reach), "server_unreachable")
    assert f.severity == "critical"
    assert f.evidence["error"] == "Connection refused"
    assert "support.example.jp:443" in f.title["en"]
    reach["data"]["proxy_configured"] = True  # the agent goes through its proxy
    (f,) = only(report(reachability=reach), "server_unreachable")
    assert f.severity == "info"


# ------------------------------------------------------------------ clock


@pytest.mark.parametrize(
    ("offset", "severity"),
    [
        (0.4, None),
        (60.0, None),
        (-60.0, None),
        (61.0, "warning"),
        (-61.0, "warning"),
        (300.0, "warning"),
        (-3600.0, "critical"),
    ],
)
def test_clock_skew(offset: float, severity: str | None) -> None:
    clock = sample("clock")
    clock["data"]["offset_s"] = offset
    found = only(report(clock=clock), "clock_skew")
    assert [f.severity for f in found] == ([severity] if severity else [])
    if severity:
        assert found[0].evidence == {"offset_s": offset}


def test_clock_not_measured_is_no_finding() -> None:
    clock = sample("clock")
    clock["data"].update(offset_s=None, offset_why={"en": "no server", "ja": "なし"})
    assert only(report(clock=clock), "clock_skew") == []


# ------------------------------------------------------------------ crashes


def crash(kind: str, process: str | None, message: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "process": process,
        "time": "2026-11-28T10:00:00+00:00",
        "unit": "kernel",
        "priority": 6 if kind == "segfault" else 2,
        "message": message,
    }


def test_kernel_crash_is_critical() -> None:
    journal = sample("journal")
    assert findings(report(journal=journal)) == []
    journal["data"]["crashes"] = [crash("oops", None, "Oops: 0000 [#1] PREEMPT SMP")]
    (f,) = findings(report(journal=journal))
    assert (f.id, f.severity) == ("kernel_crash", "critical")
    assert f.evidence["last"] == "2026-11-28T10:00:00+00:00"


def test_application_crashes_name_the_programs() -> None:
    journal = sample("journal")
    journal["data"]["crashes"] = [
        crash("segfault", "firefox", "firefox[1234]: segfault at 0 ip 00007f error 4"),
        crash("coredump", "gimp", "Process 99 (gimp) of user 1000 dumped core."),
        crash("segfault", "firefox", "firefox[1299]: segfault at 8 ip 00007f error 4"),
    ]
    (f,) = findings(report(journal=journal))
    assert (f.id, f.severity) == ("app_crash", "warning")
    assert f.evidence["count"] == 3
    assert f.evidence["sources"] == ["firefox", "gimp"]


# ------------------------------------------------------------------ SMART


def test_smart_healthy_disk_gives_nothing_and_unreadable_smart_neither() -> None:
    disks = sample("disks")
    assert only(report(disks=disks), "smart_failed") == []
    disks["data"][0]["smart"] = {"ok": False, "why": {"en": "no SMART", "ja": "なし"}}
    assert findings(report(disks=disks)) == []


def test_smart_health_failed() -> None:
    disks = sample("disks")
    disks["data"][0]["smart"]["passed"] = False
    (f,) = findings(report(disks=disks))
    assert (f.id, f.severity, f.evidence["disk"]) == ("smart_failed", "critical", "sda")


def test_nvme_critical_warning() -> None:
    disks = sample("disks")
    disks["data"][0]["smart"].update(
        reallocated=None, pending=None, uncorrectable=None, nvme_critical_warning=4, media_errors=0
    )
    (f,) = findings(report(disks=disks))
    assert (f.id, f.evidence["nvme_critical_warning"]) == ("smart_failed", 4)


@pytest.mark.parametrize("counter", ["reallocated", "pending", "uncorrectable", "media_errors"])
def test_smart_bad_sectors(counter: str) -> None:
    disks = sample("disks")
    disks["data"][0]["smart"][counter] = 1  # the boundary: one sector is already a sign
    (f,) = findings(report(disks=disks))
    assert (f.id, f.severity, f.evidence[counter]) == ("smart_sectors", "warning", 1)


# ------------------------------------------------------------------ updates, battery, heat


def test_pending_security_updates() -> None:
    packages = sample("packages")  # as recorded here: 78 security updates pending
    (f,) = findings(report(packages=packages))
    assert (f.id, f.evidence["count"]) == ("security_updates", 78)
    assert len(f.evidence["packages"]) == 10
    packages["data"].update(security_updates=0, security_names=[])
    assert findings(report(packages=packages)) == []
    packages["data"].update(security_updates=None, updates_why={"en": "x", "ja": "x"})
    assert findings(report(packages=packages)) == []


@pytest.mark.parametrize(
    ("percent", "plugged", "severity"),
    [
        (42.0, False, None),
        (15.0, False, None),
        (14.0, False, "warning"),
        (4.0, False, "critical"),
        (4.0, True, None),
    ],
)
def test_low_battery(percent: float, plugged: bool, severity: str | None) -> None:
    battery = sample("battery")
    battery["data"].update(percent=percent, plugged=plugged)
    found = findings(report(battery=battery))
    assert [f.severity for f in found] == ([severity] if severity else [])


def test_no_battery_is_no_finding() -> None:
    assert findings(report(battery={"ok": True, "data": {"present": False}})) == []


@pytest.mark.parametrize(
    ("current", "severity"), [(55.0, None), (83.9, None), (84.0, "warning"), (100.0, "critical")]
)
def test_overheating(current: float, severity: str | None) -> None:
    sensors = sample("sensors")
    sensors["data"]["temperatures"][0]["current"] = current
    found = findings(report(sensors=sensors))
    assert [f.severity for f in found] == ([severity] if severity else [])
    if severity:
        assert found[0].evidence["sensor"] == "coretemp Package id 0"


def test_reboot_required_is_a_note() -> None:
    system = sample("system")
    system["data"]["reboot_required"] = True
    (f,) = findings(report(system=system))
    assert (f.id, f.severity) == ("reboot_required", "info")


def test_findings_are_sorted_most_severe_first() -> None:
    storage, routes, system = sample("storage"), sample("routes"), sample("system")
    storage["data"][0]["percent"] = 92.0
    routes["data"]["default"] = []
    system["data"]["reboot_required"] = True
    found = findings(report(system=system, storage=storage, routes=routes))
    assert [f.severity for f in found] == ["critical", "warning", "info"]


def test_odd_report_shapes_give_no_finding_and_no_error() -> None:
    for odd in (
        {},
        {"sections": None},
        {"sections": {"storage": {"ok": True, "data": []}}},
        {"sections": {"memory": {"ok": "yes", "data": {}}}},
    ):
        assert findings(copy.deepcopy(odd)) == []
    assert fmod.data({"sections": {"x": {"ok": True, "data": 1}}}, "x") == 1
