"""The parsers of recorded tool output: smartctl's JSON (ATA, NVMe, refused) and
journal entries (segfault, core dump, kernel BUG, binary message, ordinary lines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from enkaku.agent.sysinfo.findings import findings
from enkaku.agent.sysinfo.hardware import smart_of
from enkaku.agent.sysinfo.system import crashes_of

SAMPLES = Path(__file__).parent / "samples"


def doc(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text("utf-8"))


def disks_report(smart: dict[str, Any]) -> dict[str, Any]:
    return {"sections": {"disks": {"ok": True, "data": [{"name": "sda", "smart": smart}]}}}


def test_ata_counters_are_read_and_bad_sectors_found() -> None:
    smart = smart_of(doc("smartctl_ata.json"))
    assert smart["ok"] and smart["passed"] is True
    assert (smart["reallocated"], smart["pending"], smart["uncorrectable"]) == (8, 2, 0)
    assert (smart["temperature"], smart["power_on_hours"]) == (36, 21000)
    (f,) = findings(disks_report(smart))
    assert f.id == "smart_sectors" and f.evidence["reallocated"] == 8


def test_nvme_failing_drive() -> None:
    smart = smart_of(doc("smartctl_nvme.json"))
    assert smart["passed"] is False and smart["nvme_critical_warning"] == 4
    assert smart["reallocated"] is None and smart["percentage_used"] == 3
    (f,) = findings(disks_report(smart))
    assert (f.id, f.severity) == ("smart_failed", "critical")


def test_refused_smartctl_says_it_needs_rights() -> None:
    smart = smart_of(doc("smartctl_denied.json"))
    assert smart["ok"] is False
    assert "administrator" in smart["why"]["en"] and "管理者権限" in smart["why"]["ja"]
    assert findings(disks_report(smart)) == []


def test_journal_crashes_are_recognised() -> None:
    text = (SAMPLES / "journal_crashes.jsonl").read_text("utf-8")
    entries = [json.loads(line) for line in text.splitlines()]
    crashes = crashes_of(entries)
    assert [(c["kind"], c["process"]) for c in crashes] == [
        ("segfault", "firefox"),
        ("coredump", "gimp-2.10"),
        ("oops", None),
        ("segfault", "crashy"),
    ]
    core = crashes[1]
    assert core["unit"] == "systemd-coredump@0-1234-0.service" and core["priority"] == 2
    assert "\n" not in core["message"] and len(core["message"]) <= 200
    assert crashes[0]["time"] == "2026-11-28T07:13:20+00:00"
    assert all(len(c["message"]) <= 200 for c in crashes)
    report = {"sections": {"journal": {"ok": True, "data": {"crashes": crashes}}}}
    assert [f.id for f in findings(report)] == ["kernel_crash", "app_crash"]


def test_a_virtual_disk_says_it_has_no_smart() -> None:
    smart = smart_of(doc("smartctl_virtual.json"))  # recorded on this machine's /dev/vda
    assert smart["ok"] is False
    assert "does not report SMART" in smart["why"]["en"] and "SMART" in smart["why"]["ja"]
