"""`enkaku admin report|retention` and `enkaku admin customer export|delete` on the
server's database (issue 9): the real command line, its files private, its errors in
both languages."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from enkaku.server.store.db import open_engine
from enkaku.server.store.repo import Store
from tests.e2e.harness import ENKAKU

from .test_store import FakeClock


def enkaku(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENKAKU, *args],
        env={**os.environ, "ENKAKU_LANG": "en", **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _seed(url: str) -> str:
    """A customer with a contact, a session ended 401 days before now (real time), one
    ended now; returns the old session's id."""
    clock = FakeClock(datetime.now(UTC) - timedelta(days=401))
    store = Store(await open_engine(url), clock=clock)
    try:
        c = await store.records.create_customer("Acme", ["it@acme.example"])
        contract = await store.create_contract("AC-1", c.id, valid_from=date(2020, 1, 1))
        tech = await store.create_technician("taro", "correct horse battery")
        agent = await store.agent_for_key("55" * 32)
        for sid in ("a" * 32, "b" * 32):
            await store.create_session(sid, agent, tech.id, contract.id, "n1")
            await store.end_session(
                sid, "technician_ended", bytes_to_agent=5, bytes_to_technician=6,
                asserted_by="technician", comment="printer fixed",
            )  # fmt: skip
            clock.now = datetime.now(UTC)
    finally:
        await store.close()
    return "a" * 32


def test_export_delete_report_and_purge_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    old = asyncio.run(_seed(url))
    db = ("--db", url)
    out = tmp_path / "acme.json"
    done = enkaku("admin", "customer", *db, "export", "Acme", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out.stat().st_mode & 0o777) == 0o600
    data = json.loads(out.read_text())
    assert data["customer"]["contacts"] == ["it@acme.example"]
    assert [s["id"] for s in data["sessions"]] == [old, "b" * 32]

    listed = enkaku("admin", "report", *db, "sessions", "--customer", "Acme")
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [old, "b" * 32]
    assert enkaku("admin", "report", *db, "sessions", "--technician", "nobody").returncode == 1

    trail = enkaku("admin", "report", *db, "session", old, "--time-zone", "Asia/Tokyo")
    assert trail.returncode == 0 and "+09:00" in trail.stdout and "printer fixed" in trail.stdout
    missing = enkaku("admin", "report", *db, "session", "0" * 32)
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-2:] == [
        f"enkaku: no session {'0' * 32}",
        f"enkaku: セッション {'0' * 32} はありません",
    ]
    bad = enkaku("admin", "report", *db, "monthly", "Acme", "--month", "26-11")
    assert bad.returncode == 1 and "YYYY-MM" in bad.stderr and "月の指定" in bad.stderr

    # Deleting needs --yes; then the name and address are gone, the volumes stay.
    refused = enkaku("admin", "customer", *db, "delete", "Acme")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert enkaku("admin", "customer", *db, "delete", "Acme", "--yes").returncode == 0
    data = json.loads(enkaku("admin", "customer", *db, "export", "1").stdout)
    assert data["customer"]["name"] == "deleted customer 1"
    assert data["customer"]["contacts"] == []
    assert [(s["bytes_to_customer"], s["end_comment"]) for s in data["sessions"]] == [
        (5, None),
        (5, None),
    ]

    # The default retention (400 days) purges the session that ended 401 days ago.
    purged = enkaku("admin", "retention", *db, "purge")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("purged 1 session record(s)")
    data = json.loads(enkaku("admin", "customer", *db, "export", "1").stdout)
    assert [s["id"] for s in data["sessions"]] == ["b" * 32]
    kept = enkaku(
        "admin", "retention", *db, "purge", ENKAKU_SESSION_RETENTION_DAYS="0"
    )  # fmt: skip
    assert kept.returncode == 0 and kept.stdout.startswith("purged 0 session record(s)")
