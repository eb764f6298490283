"""Session lifecycle with real processes: wrong passwords, every way a session ends."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from .harness import (
    InProcessServer,
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


def started_agent(world: World) -> tuple[Proc, str, str]:
    agent = world.agent(None)
    creds = agent.next_line(60, event="credentials")
    return agent, creds["agent_id"], creds["password"]


def test_wrong_password_three_times_replaces_it_and_slows_requests(
    inproc: tuple[World, InProcessServer],
) -> None:
    world, server = inproc
    agent, agent_id, password = started_agent(world)
    wrong = "zzzz-zzzz" if password != "zzzz-zzzz" else "yyyy-yyyy"
    codes = []
    for i in range(3):
        proc = world.connect(agent_id, wrong, vnc=False, name=f"wrong{i}")
        codes.append(proc.wait(60))
    # 5 = wrong password, 6 = wrong password and the agent drew a new one.
    assert codes == [5, 5, 6]
    new = agent.next_line(30, event="credentials")
    assert new["agent_id"] == agent_id and new["password"] != password
    # The customer was told about every wrong attempt, and sees the new password once.
    told = wait_for(lambda: new["password"] in agent.stderr(None) and agent.stderr(None), 30)
    assert "attempt 1 of 3" in told and "attempt 2 of 3" in told
    assert "a new one-time password was drawn" in told
    assert told.count(new["password"]) == 1
    # The old password no longer works, the new one does.
    assert world.connect(agent_id, password, vnc=False, name="old").wait(60) == 5
    # Counted from the agent's reports: for this technician and agent, and the agent's ceiling.
    limits = server.services.limits.sessions
    assert limits.pair.delay((1, agent_id)) > 0  # the world's only technician
    # The last failure is counted when the agent's report arrives, which may be just
    # after the technician was told (a loaded machine): waited for, not raced.
    assert wait_for(lambda: limits.agent.failures(agent_id) >= 4, 30)
    ok = world.connect(agent_id, new["password"], vnc=False, name="right")
    ok.next_line(60, event="connected")
    ok.signal(signal.SIGINT)
    assert ok.wait(30) == 0
    # Nothing the relay carried contains either password.
    for _sid, _role, data in server.relayed:
        for pw in (password, new["password"], wrong):
            assert pw.encode() not in data and pw.replace("-", "").encode() not in data


ENDINGS = {
    "technician_ctrl_c": "technician_ended",
    "technician_killed": "technician_disconnected",
    "technician_frozen": "technician_disconnected",
    "agent_killed": "agent_disconnected",
    "server_killed": "server_restart",
    "server_stopped": "server_shutdown",
}


@pytest.mark.parametrize("how", list(ENDINGS))
def test_every_ending_is_noticed_and_recorded(world: World, how: str) -> None:
    agent, agent_id, password = started_agent(world)
    tech = world.connect(agent_id, password, vnc=False)
    session_id = tech.next_line(60, event="session")["session_id"]
    tech.next_line(60, event="connected")
    start = time.monotonic()
    if how == "technician_ctrl_c":
        tech.signal(signal.SIGINT)
        assert tech.wait(30) == 0
    elif how == "technician_killed":
        tech.signal(signal.SIGKILL)
    elif how == "technician_frozen":
        tech.signal(signal.SIGSTOP)  # alive but silent: only heartbeats can tell
    elif how == "agent_killed":
        agent.signal(signal.SIGKILL)
        assert tech.wait(30) in (8, 9)
    elif how in ("server_killed", "server_stopped"):
        server = next(p for p in world.procs if p.name == "server")
        server.signal(signal.SIGKILL if how == "server_killed" else signal.SIGTERM)
        server.wait(10)
        assert tech.wait(30) in (8, 9)
    if how != "agent_killed":
        # The agent noticed: the session is over and the password was replaced.
        new = agent.next_line(30, event="credentials")
        assert new["password"] != password
    noticed = time.monotonic() - start
    print(f"{how}: the other side noticed after {noticed:.2f} s")
    if how in ("server_killed", "server_stopped"):
        server_process(world, world.db, world.port)
        # The agent comes back online by itself, with the same ID.
        wait_for(lambda: "agent_online" in _agent_status(world, agent_id), 60, "agent back online")
    record = session_record(world.server_url, saved_token(world), session_id)
    assert record["end_reason"] == ENDINGS[how]
    # The server's DEBUG log holds metadata only: never the password or the API token.
    server_log = "".join(p.stderr(None) for p in world.procs if p.name == "server")
    assert "session" in server_log  # it did log, at DEBUG
    for secret in (password, password.replace("-", ""), saved_token(world)):
        assert secret not in server_log


def _agent_status(world: World, agent_id: str) -> str:
    import asyncio

    import aiohttp

    async def fetch() -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{world.server_url}/api/v1/agents/{agent_id}",
                headers={"Authorization": f"Bearer {saved_token(world)}"},
            ) as r,
        ):
            body = await r.json()
            return "agent_online" if body.get("online") else "agent_offline"

    try:
        return asyncio.run(fetch())
    except (aiohttp.ClientError, OSError):
        return "server_down"


def test_an_agent_started_before_the_server_waits_and_comes_online(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        port = free_port()
        world.server_url = f"http://127.0.0.1:{port}"
        agent = world.agent(None)
        # Nothing listens yet: the agent says so (bilingual catalog, English here) and retries.
        wait_for(lambda: "retrying in" in agent.stderr(), 30, "the agent's retry notice")
        assert agent.proc.poll() is None
        server_process(world, make_db(tmp_path), port)
        creds = agent.next_line(60, event="credentials")
        assert len(creds["agent_id"]) == 9
    finally:
        world.close()
