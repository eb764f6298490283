"""Terms of use end to end: `enkaku admin terms publish`, a real server process, real
agents (a PTY as the customer's terminal, and --accept-terms), and the technician CLI.
The test-only clock offset (ENKAKU_TEST_CLOCK_OFFSET_DAYS) moves the server past a later
version's effective date."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from enkaku.protocol.terms import one_month_after
from enkaku.server.terms import terms_today

from .harness import (
    ENKAKU,
    InProcessServer,
    World,
    free_port,
    make_db,
    server_process,
    wait_for,
)
from .test_consent import Terminal

pytestmark = pytest.mark.e2e

TERMS_V1 = (
    'en = """Rule one: <stay> at the machine & back up your data."""\n'
    'ja = """第1条: 作業中は<席>を離れないでください。"""\n'
)
TERMS_V2 = 'en = """Version two: the new rules."""\nja = """第2版: 新しい規約です。"""\n'


def publish(
    world: World, db: str, text: str, version: str, effective: str
) -> subprocess.CompletedProcess[str]:
    path = world.tmp / f"terms-{version}.toml"
    path.write_text(text, encoding="utf-8")
    return subprocess.run(
        [
            ENKAKU,
            "admin",
            "terms",
            "publish",
            str(path),
            "--version",
            version,
            "--effective",
            effective,
            "--db",
            db,
        ],
        env=world.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def acceptances(db: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        return list(conn.execute("SELECT agent_id, version FROM terms_acceptances ORDER BY id"))


def only_agent_id(db: str) -> str:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        rows = list(conn.execute("SELECT id FROM agents"))
    return str(rows[0][0]) if len(rows) == 1 else ""


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    yield term
    term.close()


@pytest.fixture
def served(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.db = make_db(tmp_path)  # type: ignore[attr-defined]
    w.port = free_port()  # type: ignore[attr-defined]
    yield w  # type: ignore[misc]
    w.close()


def test_the_customer_accepts_on_the_terminal_before_any_id(
    served: World, terminal: Terminal
) -> None:
    world, db = served, served.db  # type: ignore[attr-defined]
    today = terms_today()
    assert publish(world, db, TERMS_V1, "1", today.isoformat()).returncode == 0
    server_process(world, db, world.port)  # type: ignore[attr-defined]
    world.login()
    agent = world.agent(None, "agent", "deny", stdin=terminal.slave, prefix=("setsid", "-c"))
    shown = terminal.read_until(b"[y/N]").decode()
    assert "Rule one: <stay> at the machine & back up your data." in shown
    assert "version 1" in shown
    # Asked, not yet answered: no ID anywhere, nothing accepted.
    assert agent.all_lines == [] and "Your ID" not in agent.stderr()
    assert acceptances(db) == []
    # A technician who got the ID some other way is refused, with the reason.
    agent_id = wait_for(lambda: only_agent_id(db), what="the agent's row")
    tech = world.connect(agent_id, "k3m9-x2qa", vnc=False, name="early")
    assert tech.wait(60) == 4  # refused
    assert "has not accepted the terms of use in force (version 1)" in tech.stderr()

    terminal.type("y\n")
    creds = agent.next_line(60, event="credentials")
    assert creds["agent_id"] == agent_id
    assert acceptances(db) == [(agent_id, "1")]
    # Now the session request reaches the agent (which denies consent: --consent deny).
    tech = world.connect(agent_id, creds["password"], vnc=False)
    tech.next_line(60, event="session")
    assert tech.wait(60) == 7


def test_a_refusal_stops_the_agent_without_an_id(served: World, terminal: Terminal) -> None:
    world, db = served, served.db  # type: ignore[attr-defined]
    assert publish(world, db, TERMS_V1, "1", terms_today().isoformat()).returncode == 0
    server_process(world, db, world.port)  # type: ignore[attr-defined]
    agent = world.agent(None, "agent", "deny", stdin=terminal.slave, prefix=("setsid", "-c"))
    terminal.read_until(b"[y/N]")
    terminal.type("n\n")
    assert agent.wait(60) == 0
    assert agent.all_lines == []
    assert "The terms of use were not accepted" in agent.stderr()
    assert acceptances(db) == []


def test_a_new_version_needs_a_month_and_is_asked_again_once_in_force(
    served: World, terminal: Terminal
) -> None:
    world, db = served, served.db  # type: ignore[attr-defined]
    today = terms_today()
    assert publish(world, db, TERMS_V1, "1", today.isoformat()).returncode == 0
    server = server_process(world, db, world.port)  # type: ignore[attr-defined]
    # Scripted install: version 1 is accepted without a question.
    agent = world.agent(
        None, "agent", "deny", "--accept-terms", "1", stdin=terminal.slave, prefix=("setsid", "-c")
    )
    agent_id = agent.next_line(60, event="credentials")["agent_id"]
    assert "accepted (--accept-terms)" in agent.stderr()
    assert acceptances(db) == [(agent_id, "1")]

    too_soon = one_month_after(today) - timedelta(days=1)
    refused = publish(world, db, TERMS_V2, "2", too_soon.isoformat())
    assert refused.returncode == 2
    assert "at least one month after it is published" in refused.stderr
    assert "1 か月以上後" in refused.stderr
    accepted = publish(world, db, TERMS_V2, "2", one_month_after(today).isoformat())
    assert accepted.returncode == 0, accepted.stderr
    listed = subprocess.run(
        [ENKAKU, "admin", "terms", "list", "--db", db],
        env=world.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "1\t" in listed and "in force" in listed and "upcoming" in listed

    # The server, restarted with its clock past version 2's effective date: the agent
    # reconnects and is asked again (it accepted only version 1 by option).
    server.close()
    days = (one_month_after(today) - today).days
    server_process(world, db, world.port, env={"ENKAKU_TEST_CLOCK_OFFSET_DAYS": str(days)})  # type: ignore[attr-defined]
    assert "Version two: the new rules." in terminal.read_until(b"[y/N]").decode()
    before = len(agent.all_lines)
    terminal.type("y\n")
    wait_for(lambda: len(agent.all_lines) > before, 60, "the credentials after accepting")
    assert agent.all_lines[-1]["agent_id"] == agent_id
    assert acceptances(db) == [(agent_id, "1"), (agent_id, "2")]
    agent.signal(signal.SIGTERM)
    assert agent.wait(30) == 0


def test_terms_published_while_the_agent_is_connected_are_asked_at_once(
    inproc: tuple[World, InProcessServer], terminal: Terminal
) -> None:
    world, server = inproc
    agent = world.agent(None, "agent", "deny", stdin=terminal.slave, prefix=("setsid", "-c"))
    agent_id = agent.next_line(60, event="credentials")["agent_id"]  # no terms: today's way
    db = server.settings.db_url
    assert publish(world, db, TERMS_V1, "1", terms_today().isoformat()).returncode == 0
    # The server's periodic check (TERMS_CHECK), run now.
    assert server.call(server.services.agents.check_terms()) == 1
    assert "Rule one" in terminal.read_until(b"[y/N]").decode()
    terminal.type("y\n")
    again = agent.next_line(60, event="credentials")
    assert again["agent_id"] == agent_id
    assert acceptances(db) == [(agent_id, "1")]


def test_without_a_terminal_the_agent_names_accept_terms_and_stops(served: World) -> None:
    world, db = served, served.db  # type: ignore[attr-defined]
    assert publish(world, db, TERMS_V1, "1", terms_today().isoformat()).returncode == 0
    server_process(world, db, world.port)  # type: ignore[attr-defined]
    # setsid without -c: a new session with no controlling terminal, so no /dev/tty.
    agent = world.agent(None, "agent", "deny", "--accept-terms", "0.9", prefix=("setsid",))
    assert agent.wait(60) == 0
    assert agent.all_lines == []
    assert "start the agent with --accept-terms 1" in agent.stderr()
    assert acceptances(db) == []
