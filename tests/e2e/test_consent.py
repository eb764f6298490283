"""The customer decides: consent asked on the agent's terminal, denial, one session at a time."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    Proc,
    World,
    free_port,
    make_db,
    saved_token,
    server_process,
    session_record,
    wait_for,
)

pytestmark = pytest.mark.e2e


class Terminal:
    """A pseudo-terminal that becomes the agent's controlling terminal (setsid -c)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.seen = b""

    def read_until(self, needle: bytes, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"terminal never showed {needle!r}; saw {self.seen[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                self.seen += os.read(self.master, 4096)
        return self.seen

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    yield term
    term.close()


def ask_agent(world: World, terminal: Terminal, *extra: str) -> tuple[Proc, dict[str, Any]]:
    agent = world.agent(None, "agent", "ask", *extra, stdin=terminal.slave, prefix=("setsid", "-c"))
    return agent, agent.next_line(60, event="credentials")


@pytest.mark.parametrize("answer", ["y", "n"])
def test_the_customer_answers_on_the_terminal(
    world: World, terminal: Terminal, answer: str
) -> None:
    _agent, creds = ask_agent(world, terminal)
    tech = world.connect(creds["agent_id"], creds["password"], vnc=False)
    session_id = tech.next_line(60, event="session")["session_id"]
    # The question names the technician and the company, as the customer must see it.
    terminal.read_until(b"Taro Tanaka").decode()
    assert b"ACME Support" in terminal.read_until(b"[y/N]")
    terminal.type(answer + "\n")
    if answer == "y":
        tech.next_line(60, event="connected")
        tech.signal(signal.SIGINT)
        assert tech.wait(30) == 0
        assert session_record(world.server_url, saved_token(world), session_id)["end_reason"] == (
            "technician_ended"
        )
    else:
        assert tech.wait(60) == 7  # consent denied
        assert "did not allow" in tech.stderr()
        assert session_record(world.server_url, saved_token(world), session_id)["end_reason"] == (
            "consent_denied"
        )


def test_no_answer_is_a_no(world: World, terminal: Terminal) -> None:
    _agent, creds = ask_agent(world, terminal, "--consent-timeout", "2")
    tech = world.connect(creds["agent_id"], creds["password"], vnc=False)
    terminal.read_until(b"[y/N]")
    assert tech.wait(60) == 7


def test_without_a_terminal_the_agent_denies(world: World) -> None:
    agent = world.agent(None, consent="ask")  # stdin is /dev/null and there is no tty
    creds = agent.next_line(60, event="credentials")
    tech = world.connect(creds["agent_id"], creds["password"], vnc=False)
    assert tech.wait(60) == 7


def test_a_second_technician_finds_the_agent_busy(world: World) -> None:
    agent = world.agent(None)
    creds = agent.next_line(60, event="credentials")
    first = world.connect(creds["agent_id"], creds["password"], vnc=False, name="first")
    first.next_line(60, event="connected")
    second = world.connect(creds["agent_id"], creds["password"], vnc=False, name="second")
    assert second.wait(60) == 8
    assert "already in a session" in second.stderr()
    # The first session goes on undisturbed.
    assert first.proc.poll() is None
    first.signal(signal.SIGINT)
    assert first.wait(30) == 0


def test_a_withdrawn_question_ends_its_line(world: World, terminal: Terminal) -> None:
    _agent, creds = ask_agent(world, terminal)
    tech = world.connect(creds["agent_id"], creds["password"], vnc=False)
    terminal.read_until(b"[y/N] ")
    tech.signal(signal.SIGINT)  # the technician gives up while the customer is asked
    assert tech.wait(30) == 0
    seen = terminal.read_until(b"withdrawn")
    # The prompt's line is ended, so the next message starts on a line of its own.
    assert b"[y/N] \r\n(The request was withdrawn.)\r\n" in seen


@pytest.mark.parametrize("own", ["deny", "ask"])
def test_implicit_consent_never_overrides_the_agents_own_setting(
    tmp_path: Path, terminal: Terminal, own: str
) -> None:
    """ENKAKU_IMPLICIT_CONSENT on the server: a `--consent deny` agent still refuses; an
    asking agent grants without a prompt and says the support company's policy did."""
    world = World(tmp_path)
    try:
        server_process(world, make_db(tmp_path), free_port(), env={"ENKAKU_IMPLICIT_CONSENT": "1"})
        world.login()
        if own == "ask":
            agent, creds = ask_agent(world, terminal)
        else:
            agent = world.agent(None, "agent", "deny")
            creds = agent.next_line(60, event="credentials")
        tech = world.connect(creds["agent_id"], creds["password"], vnc=False)
        if own == "deny":
            assert tech.wait(60) == 7
            assert "--consent allow" not in agent.stderr(None)
        else:
            tech.next_line(60, event="connected")
            err = wait_for(
                lambda: "policy" in agent.stderr(None) and agent.stderr(None),
                30,
                "the agent's notice",
            )
            assert "--consent allow" not in err
            assert b"[y/N]" not in terminal.seen  # no prompt
            tech.signal(signal.SIGINT)
            assert tech.wait(30) == 0
    finally:
        world.close()
