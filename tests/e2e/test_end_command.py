"""`enkaku end`: the technician ends a running session with a policy reason and a comment.

A real server process, an agent that allows (--headless --consent allow) and a running
`enkaku connect`; `enkaku end` is a second process using the same saved login.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from .harness import ENKAKU, World, saved_token, session_record, wait_for

pytestmark = pytest.mark.e2e

COMMENT = "Trojan found in C:\\Users\\Public; customer informed"


def end(world: World, *args: str, lang: str = "en") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENKAKU, "end", *args],
        env=world.env(ENKAKU_LANG=lang),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_end_records_a_policy_reason_with_its_comment(world: World) -> None:
    agent = world.agent(None)
    creds = agent.next_line(60, event="credentials")
    tech = world.connect(creds["agent_id"], creds["password"], vnc=False)
    session_id = tech.next_line(60, event="session")["session_id"]
    # The connected line carries the session ID the end command needs, and says how.
    assert tech.next_line(60, event="connected")["session_id"] == session_id
    assert f"enkaku end {session_id} --reason" in tech.stderr()

    def ended() -> subprocess.CompletedProcess[str] | None:
        # The agent reports its consent to the server on its own link, which may reach the
        # server just after the technician saw the consent: until then the server says
        # "only in a session the customer allowed" (403, exit 4) and nothing is recorded.
        done = end(world, session_id, "--reason", "malware_found", "--comment", COMMENT)
        if done.returncode == 4 and "customer allowed" in done.stderr:
            return None
        return done

    done = wait_for(ended, 30, "the server to record the consent")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"Session {session_id} ended: malware was found."
    assert json.loads(done.stdout) == {
        "event": "ended",
        "session_id": session_id,
        "reason": "malware_found",
    }
    rec = session_record(world.server_url, saved_token(world), session_id)
    assert rec["end_reason"] == "malware_found"
    assert rec["end_comment"] == COMMENT
    assert rec["end_asserted_by"] == "technician"
    assert rec["ended_by_technician_id"] is not None
    # The running `enkaku connect` learns the reason and stops.
    assert tech.wait(30) == 8
    assert "malware was found" in tech.stderr()

    # Ending it again: the server's own message, in the user's language (409, exit 4).
    again = end(world, session_id, "--reason", "technician_ended", lang="ja")
    assert again.returncode == 4
    assert "このセッションはすでに終了しています" in again.stderr
    assert "Traceback" not in again.stderr


def test_a_policy_reason_of_an_unknown_session_is_refused(world: World) -> None:
    done = end(world, "0" * 32, "--reason", "illegal_request", "--comment", "asked to copy data")
    assert done.returncode == 4
    assert done.stderr.strip() == "No such session."
    assert done.stdout == ""
