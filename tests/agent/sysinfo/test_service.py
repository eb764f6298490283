"""The system_info stream over two real SecureChannels: the agent collects and sends,
the technician fetches, the JSON parses with findings on top; what fetch refuses."""

from __future__ import annotations

import asyncio
import json

import pytest

from enkaku.agent.consent import Requester
from enkaku.agent.services import FileSettings, Grant, ServiceContext
from enkaku.agent.sysinfo import service
from enkaku.agent.sysinfo.collect import PROBES
from enkaku.agent.sysinfo.findings import findings
from enkaku.technician.sysinfo import MAX_BYTES, SysinfoError, fetch
from enkaku.transport.channel import SecureChannel
from tests.channelpair import channels

HANG = 120  # seconds: only a guard against a hang, never a measurement


class Audit:
    def __init__(self) -> None:
        self.events: list[tuple[str, str | None]] = []

    async def __call__(self, event: str, detail: str | None = None) -> None:
        self.events.append((event, detail))


def context(audit: Audit) -> ServiceContext:
    return ServiceContext(
        session_id="s1",
        agent_id="123456789",
        who=Requester("Tech", "Co"),
        grant=Grant(1, "system_info", {}),
        report=audit,
        files=FileSettings(),
    )


async def close(agent: SecureChannel, tech: SecureChannel) -> None:
    await tech.close("technician_ended")
    await agent.close("agent_ended")


async def test_technician_fetches_the_report_with_findings_on_top(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One section made to need attention, so that a finding certainly travels.
    def full_disk(_server: str | None) -> list[dict[str, object]]:
        return [
            {
                "mount": "/srv",
                "device": "/dev/sdb1",
                "fstype": "ext4",
                "read_only": False,
                "image": False,
                "total": 100 * 2**30,
                "used": 99 * 2**30,
                "free": 2**30,
                "percent": 99.0,
                "inodes_total": 1000,
                "inodes_used": 10,
                "inodes_percent": 1.0,
            }
        ]

    monkeypatch.setitem(PROBES, "storage", full_disk)
    agent, tech = await channels()
    audit = Audit()
    try:
        stream = await tech.open_stream("system_info", {})
        incoming = await asyncio.wait_for(agent.incoming.get(), HANG)
        assert incoming.kind == service.SPEC.kind == "system_info"
        assert service.SPEC.action == "system_info"
        serving = asyncio.create_task(service.SPEC.serve(incoming, context(audit)))
        report = await asyncio.wait_for(fetch(stream), HANG)
        await asyncio.wait_for(serving, HANG)
    finally:
        await close(agent, tech)
    assert list(report)[:2] == ["format", "findings"]
    assert report["format"] == "enkaku.system_info/1"
    assert set(report["sections"]) == set(service.COVERS)
    (disk,) = [f for f in report["findings"] if f["id"] == "disk_full"]
    assert disk["severity"] == "critical" and disk["evidence"]["mount"] == "/srv"
    assert disk["title"]["ja"] and disk["explanation"]["en"]
    assert report["findings"] == [f.to_dict() for f in findings(report)]
    size = len(json.dumps(report, ensure_ascii=False, indent=1).encode("utf-8"))
    assert audit.events == [("system_info_sent", str(size))]


async def _fetch_raw(payload: bytes, eof: bool = True) -> dict[str, object]:
    agent, tech = await channels()
    try:
        stream = await tech.open_stream("system_info", {})
        incoming = await asyncio.wait_for(agent.incoming.get(), HANG)
        if payload:
            await incoming.write(payload)
        if eof:
            await incoming.write_eof()
        else:
            await incoming.reset("service_error")
        return await asyncio.wait_for(fetch(stream, "en"), HANG)
    finally:
        await close(agent, tech)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"a": ', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
async def test_fetch_refuses_what_is_not_a_json_object(payload: bytes, message: str) -> None:
    with pytest.raises(SysinfoError, match=message):
        await _fetch_raw(payload)


async def test_fetch_reports_a_reset_stream() -> None:
    with pytest.raises(SysinfoError, match="did not send the system information"):
        await _fetch_raw(b"{}", eof=False)


async def test_fetch_stops_reading_past_the_cap() -> None:
    agent, tech = await channels()
    try:
        stream = await tech.open_stream("system_info", {})
        incoming = await asyncio.wait_for(agent.incoming.get(), HANG)

        async def flood() -> None:
            chunk = b" " * (1 << 20)
            for _ in range((MAX_BYTES >> 20) + 2):
                await incoming.write(chunk)

        flooding = asyncio.create_task(flood())
        with pytest.raises(SysinfoError, match="larger than 8 MiB"):
            await asyncio.wait_for(fetch(stream, "en"), HANG)
        with pytest.raises(Exception):  # noqa: B017 - the writer learns of the reset
            await asyncio.wait_for(flooding, HANG)
        assert stream.reset_reason == "system_info_too_large"
    finally:
        await close(agent, tech)


def test_consent_text_covers_every_group_in_both_languages() -> None:
    en, ja = service.covers_text("en"), service.covers_text("ja")
    assert len(en) == len(ja) == 9
    assert "never" in en[-1].lower() and "収集しない" in ja[-1]
    assert service.COVERS[0] == "cpu" and "journal" in service.COVERS


def test_spec_for_a_server_url() -> None:
    spec = service.spec_for("https://support.example.jp")
    assert (spec.kind, spec.action, spec.bound) == ("system_info", "system_info", ())
