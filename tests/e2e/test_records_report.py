"""Issue 9, acceptance 3: after a scripted real session — a file each way, a screenshot
the customer allowed and one they refused, a policy end reason with a comment — the
monthly report (CSV and printable page, through the API and `enkaku admin report`) and
the session's audit trail show exactly what happened, with the data volumes, and the
database holds no content: no file bytes, no chat text, no file name in clear (the
server keeps only their hash by default).

The real server process (time zone Asia/Tokyo), a headless agent on Xvfb that asks its
customer on a terminal, `enkaku connect` holding the session, `enkaku session ...` and
`enkaku end`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from enkaku.server.agents import hash_file_name
from tests.xdisplay import xvfb

from .harness import (
    ENKAKU,
    World,
    free_port,
    make_db,
    saved_token,
    server_process,
    wait_for,
    xterm_on,
)
from .test_consent import Terminal
from .test_session_tools import Held

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

COMMENT = "Malware found in the shared folder; customer informed by phone"
CHAT = "CHAT-TEXT-NEVER-STORED-5521"
PUT_NAME = "fix-printer-ACME.cmd"
GET_NAME = "customer-invoice-2026-11.txt"
PUT_BYTES = b"PUT-FILE-BYTES-7781\n" * 5000
GET_BYTES = b"GET-FILE-BYTES-3319\n" * 3000
AUDITOR_PASSWORD = "auditor horse battery"


def _api(world: World, token: str, path: str) -> tuple[str, bytes]:
    req = urllib.request.Request(
        world.server_url + "/api/v1" + path, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers.get_content_type(), r.read()


def _token(world: World, user: str, password: str) -> str:
    req = urllib.request.Request(
        world.server_url + "/api/v1/auth/token",
        data=json.dumps({"username": user, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(json.loads(r.read())["token"])


def _enkaku(world: World, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [ENKAKU, *args],
        env=world.env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (args, done.stderr)
    return done


class Prompts:
    """The customer's terminal: answers the n-th [y/N] question."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal, self.answered = terminal, 0

    def answer(self, yes: bool) -> None:
        n = self.answered + 1
        wait_for(lambda: self._count() >= n, 60, f"question {n} on the customer's terminal")
        self.answered = n
        self.terminal.type("y\n" if yes else "n\n")

    def _count(self) -> int:
        import select

        while select.select([self.terminal.master], [], [], 0.05)[0]:
            self.terminal.seen += os.read(self.terminal.master, 4096)
        return self.terminal.seen.count(b"[y/N]")


def _session_cmd(held: Held, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ENKAKU, "session", *args],
        env=held.world.env(XDG_RUNTIME_DIR=str(held.run)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_monthly_report_and_trail_show_what_happened_and_the_database_no_content(
    tmp_path: Path, rundir: Path
) -> None:
    world = World(tmp_path)
    terminal = Terminal()
    prompts = Prompts(terminal)
    incoming, fetched, desk = tmp_path / "incoming", tmp_path / "fetched", tmp_path / "desk"
    for d in (incoming, fetched, desk):
        d.mkdir()
    put_source = tmp_path / PUT_NAME
    put_source.write_bytes(PUT_BYTES)
    get_source = desk / GET_NAME
    get_source.write_bytes(GET_BYTES)
    db = make_db(tmp_path)
    db_env = {"ENKAKU_NEW_PASSWORD": AUDITOR_PASSWORD}
    _enkaku(world, "admin", "user", "--db", db, "add", "aud", "--role", "auditor", **db_env)
    try:
        server_process(world, db, free_port(), env={"ENKAKU_TIME_ZONE": "Asia/Tokyo"})
        world.login()
        with xvfb(640, 480) as display, xterm_on(display, desk):
            agent = world.agent(
                display, "agent", "ask", "--incoming", str(incoming),
                stdin=terminal.slave, prefix=("setsid", "-c"),
            )  # fmt: skip
            creds = agent.next_line(60, event="credentials")
            tech = world.connect(
                creds["agent_id"], creds["password"], vnc=False,
                env={"XDG_RUNTIME_DIR": str(rundir)},
            )  # fmt: skip
            prompts.answer(True)  # the session
            session_id = tech.next_line(60, event="connected")["session_id"]
            sock = Path(tech.next_line(30, event="control_socket")["path"])
            held = Held(world, agent, tech, session_id, sock, rundir)

            def run(args: tuple[str, ...], yes: bool | None, code: int = 0) -> None:
                proc = _session_cmd(held, *args)
                if yes is not None:
                    prompts.answer(yes)
                _out, err = proc.communicate(timeout=120)
                assert proc.returncode == code, (args, err)

            run(("put", str(put_source)), True)
            run(("get", str(get_source), str(fetched)), True)
            run(("screenshot", str(tmp_path / "no.png"), "--purpose", "see the error"), False, 7)
            run(("screenshot", str(tmp_path / "yes.png"), "--purpose", "see the error"), True)
            run(("chat", CHAT), None)
            assert (incoming / PUT_NAME).read_bytes() == PUT_BYTES
            assert (fetched / GET_NAME).read_bytes() == GET_BYTES

            def ended() -> bool:
                done = subprocess.run(
                    [ENKAKU, "end", session_id, "--reason", "malware_found", "--comment", COMMENT],
                    env=world.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                    timeout=60,
                )  # fmt: skip
                return done.returncode == 0

            wait_for(ended, 30, "the end with a policy reason")
            assert tech.wait(30) == 8

        own = saved_token(world)
        auditor = _token(world, "aud", AUDITOR_PASSWORD)

        def trail() -> dict[str, Any]:
            return json.loads(_api(world, own, f"/sessions/{session_id}/audit")[1])

        def complete() -> bool:
            events = [e["event"] for e in trail()["events"]]
            return "session_end" in events and "screenshot_sent" in events and "ended" in events

        wait_for(complete, 30, "every report of the agent")
        t = trail()
        assert t["time_zone"] == "Asia/Tokyo" and t["requested_at"].endswith("+09:00")
        assert t["end_reason"] == "malware_found" and t["end_asserted_by"] == "technician"
        assert t["ended_by"] == "tech" and t["end_comment"] == COMMENT
        files = {e["event"]: e for e in t["events"] if e["file_size"] is not None}
        assert files["file_received"]["file_size"] == len(PUT_BYTES)
        assert files["file_received"]["file_sha256"] == hashlib.sha256(PUT_BYTES).hexdigest()
        assert files["file_received"]["file_name"] == hash_file_name(PUT_NAME)
        assert files["file_sent"]["file_size"] == len(GET_BYTES)
        assert files["file_sent"]["file_sha256"] == hashlib.sha256(GET_BYTES).hexdigest()
        assert files["file_sent"]["file_name"] == hash_file_name(GET_NAME)
        decisions = [
            (e["event"], e["detail"])
            for e in t["events"]
            if e["event"].startswith(("action_", "consent_"))
        ]
        assert decisions == [
            ("consent_granted", None),
            ("action_granted", "file_to_customer"),
            ("action_granted", "file_from_customer"),
            ("action_denied", "screenshot:denied"),
            ("action_granted", "screenshot"),
        ]
        # The data volumes: what the relay counted, each way, at least the files' bytes.
        to_customer, from_customer = t["bytes_to_customer"], t["bytes_from_customer"]
        assert to_customer > len(PUT_BYTES) and from_customer > len(GET_BYTES)

        # The monthly report, in Tokyo's month of the session, through the API (an
        # auditor) and on the command line: the same CSV.
        month = datetime.fromisoformat(t["requested_at"]).strftime("%Y-%m")
        customer_id = 1  # make_db's only customer ("Example Ltd")
        ctype, body = _api(world, auditor, f"/reports/monthly/{customer_id}/{month}.csv")
        assert ctype == "text/csv"
        (row,) = list(csv.DictReader(io.StringIO(body.decode())))
        expected = {
            "session_id": session_id,
            "technician": "tech",
            "contract": "C-100",
            "agent_id": creds["agent_id"],
            "bytes_to_customer": str(to_customer),
            "bytes_from_customer": str(from_customer),
            "consent": "granted",
            "actions": "file_to_customer granted; file_from_customer granted; "
            "screenshot denied (denied); screenshot granted",
            "screenshots": "1",
            "files_to_customer": f"{hash_file_name(PUT_NAME)} {len(PUT_BYTES)} "
            f"sha256:{hashlib.sha256(PUT_BYTES).hexdigest()}",
            "files_from_customer": f"{hash_file_name(GET_NAME)} {len(GET_BYTES)} "
            f"sha256:{hashlib.sha256(GET_BYTES).hexdigest()}",
            "files_failed": "",
            "end_reason": "malware_found",
            "end_asserted_by": "technician",
            "ended_by": "tech",
            "comment": COMMENT,
        }
        assert {k: row[k] for k in expected} == expected
        assert row["requested"].endswith("+09:00") and int(row["duration_seconds"]) >= 0
        out = tmp_path / "monthly.csv"
        _enkaku(
            world, "admin", "report", "--db", db, "monthly", "Example Ltd", "--month", month,
            "--csv", str(out), "--html", str(tmp_path / "monthly.html"),
            ENKAKU_TIME_ZONE="Asia/Tokyo",
        )  # fmt: skip
        assert out.read_bytes() == body
        assert (out.stat().st_mode & 0o777) == 0o600
        ctype, page = _api(world, auditor, f"/reports/monthly/{customer_id}/{month}.html")
        assert ctype == "text/html"
        html = page.decode()
        for text in ("リモートサポート月次報告書", "@media print", "Asia/Tokyo", COMMENT,
                     f"{to_customer:,}", f"{from_customer:,}", "malware_found",
                     "お客様が拒否: screenshot:denied"):  # fmt: skip
            assert text in html, text
        shown = _enkaku(
            world, "admin", "report", "--db", db, "session", session_id,
            ENKAKU_TIME_ZONE="Asia/Tokyo",
        ).stdout  # fmt: skip
        assert f"bytes to customer\t{to_customer}" in shown
        assert f"File to the customer: {hash_file_name(PUT_NAME)}, {len(PUT_BYTES)} bytes" in shown
        requested = datetime.fromisoformat(t["requested_at"]).astimezone(UTC)
        tokyo = requested.astimezone(ZoneInfo("Asia/Tokyo")).isoformat(timespec="seconds")
        assert f"requested\t{tokyo}" in shown

        # No content in the database: every table's rows, and the raw file too.
        with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
            dump = "\n".join(conn.iterdump()).encode()
        path = Path(db.removeprefix("sqlite:///"))
        wal = path.with_name(path.name + "-wal")
        raw = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        for needle in (
            PUT_BYTES[:19], GET_BYTES[:19], CHAT.encode(), PUT_NAME.encode(), GET_NAME.encode(),
            b"fix-printer", b"customer-invoice",
        ):  # fmt: skip
            assert needle not in dump, needle
            assert needle not in raw, needle
    finally:
        world.close()
        terminal.close()
