"""collect() on this real machine: every section answered or explained in both
languages, one failing probe never spoils the report, the clock is measured against a
real HTTP server and the support server's port is really connected to."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from enkaku.agent.sysinfo import collect as cmod
from enkaku.agent.sysinfo.collect import GROUPS, PROBES, collect
from enkaku.agent.sysinfo.findings import findings


def check_section(name: str, section: dict[str, Any]) -> None:
    if section["ok"] is True:
        assert "data" in section, name
    else:
        assert section["ok"] is False, name
        assert section["why"]["en"] and section["why"]["ja"], name
        assert section["why"]["en"] != section["why"]["ja"], name


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(204)  # send_response adds the Date header
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_collect_on_this_machine_answers_or_explains_every_section(http_server: str) -> None:
    report = collect(http_server)
    assert report["format"] == "enkaku.system_info/1"
    assert list(report["sections"]) == list(PROBES)
    for name, section in report["sections"].items():
        check_section(name, section)
    sections = report["sections"]
    # What this machine certainly has.
    for name in ("cpu", "memory", "system", "clock", "storage", "interfaces", "processes"):
        assert sections[name]["ok"], (name, sections[name])
    assert any(fs["mount"] == "/" for fs in sections["storage"]["data"])
    # Against the local server: the clocks agree and the port answers.
    clock = sections["clock"]["data"]
    assert clock["offset_why"] is None
    assert abs(clock["offset_s"]) <= 2
    reach = sections["reachability"]["data"]
    assert reach["connected"] is True and reach["error"] is None
    assert report["duration_s"] < cmod.DEADLINE
    json.dumps(report)  # plain JSON all through
    assert all(f.id not in ("clock_skew", "server_unreachable") for f in findings(report))


def test_groups_name_every_section_once() -> None:
    grouped = [s for names in GROUPS.values() for s in names]
    assert sorted(grouped) == sorted(PROBES)


def test_without_a_server_url_clock_and_reachability_say_why() -> None:
    report = collect(None)
    clock = report["sections"]["clock"]
    assert clock["ok"] and clock["data"]["offset_s"] is None
    assert "server" in clock["data"]["offset_why"]["en"]
    assert "サーバー" in clock["data"]["offset_why"]["ja"]
    reach = report["sections"]["reachability"]
    assert reach["ok"] is False and "サーバー" in reach["why"]["ja"]


def test_a_closed_port_is_reported_unreachable() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = collect(f"http://127.0.0.1:{port}")
    reach = report["sections"]["reachability"]["data"]
    assert reach["connected"] is False and reach["error"]
    (f,) = [f for f in findings(report) if f.id == "server_unreachable"]
    assert f.evidence["port"] == port
    assert report["sections"]["clock"]["data"]["offset_why"]["en"].startswith("HTTP Date")


def test_one_probe_raising_still_gives_the_whole_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_server: str | None) -> None:
        raise RuntimeError("sensor driver exploded")

    def refused(_server: str | None) -> None:
        raise PermissionError(13, "Permission denied", "/sys/class/hwmon/hwmon0/temp1_input")

    monkeypatch.setitem(PROBES, "memory", broken)
    monkeypatch.setitem(PROBES, "sensors", refused)
    report = collect(None)
    assert list(report["sections"]) == list(PROBES)
    memory, sensors = report["sections"]["memory"], report["sections"]["sensors"]
    assert memory["ok"] is False
    assert "RuntimeError: sensor driver exploded" in memory["why"]["en"]
    assert "予期しない" in memory["why"]["ja"]
    assert sensors["ok"] is False and "temp1_input" in sensors["why"]["en"]
    assert "権限" in sensors["why"]["ja"]
    assert report["sections"]["cpu"]["ok"] and report["sections"]["storage"]["ok"]


def test_a_probe_past_the_deadline_is_reported_as_timed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    def stuck(_server: str | None) -> None:
        release.wait()  # like a statvfs on a hung network mount

    monkeypatch.setitem(PROBES, "storage", stuck)
    monkeypatch.setattr(cmod, "DEADLINE", 0.01)
    try:
        report = collect(None)
    finally:
        release.set()
    storage = report["sections"]["storage"]
    assert storage["ok"] is False and "0.01" in storage["why"]["en"]
