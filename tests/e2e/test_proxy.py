"""The agent, `login` and `connect` reach the server through an HTTP proxy (tinyproxy).

The server terminates TLS itself; every client is given HTTPS_PROXY (and HTTP_PROXY) for
a tinyproxy on loopback and nothing else, so each connection shows up in the proxy's
log as a CONNECT to the server's port. NO_PROXY naming the server sends them direct.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.xdisplay import stop

from .harness import ENKAKU, LOGIN_PASSWORD, World, free_port, make_db, server_process, wait_for
from .test_tls import make_pki

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tinyproxy") is None, reason="tinyproxy (scripts/bootstrap)"),
]


class TinyProxy:
    """tinyproxy in the foreground on a free loopback port, stopped by PID."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "tinyproxy.log"
        conf = tmp / "tinyproxy.conf"
        conf.write_text(
            f'Port {self.port}\nListen 127.0.0.1\nTimeout 600\nLogFile "{self.log}"\n'
            "LogLevel Info\nMaxClients 100\nAllow 127.0.0.1\n"
        )
        self.proc = subprocess.Popen(
            ["tinyproxy", "-d", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: "Accepting connections" in self.text(), 30, "tinyproxy to listen")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tunnels_to(self, port: int) -> int:
        """CONNECT requests to 127.0.0.1:port the proxy has seen."""
        return self.text().count(f"CONNECT 127.0.0.1:{port} ")

    def stop(self) -> None:
        stop(self.proc)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[TinyProxy]:
    p = TinyProxy(tmp_path)
    try:
        yield p
    finally:
        p.stop()


def test_agent_login_and_connect_go_through_the_proxy(tmp_path: Path, proxy: TinyProxy) -> None:
    ca, cert, key = make_pki(tmp_path)
    world = World(tmp_path)
    port = free_port()
    # Only the proxy variables: NO_PROXY unset, so even a loopback server is proxied.
    via = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url, "NO_PROXY": "", "no_proxy": ""}
    https_via = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "", "no_proxy": ""}
    try:
        db = make_db(tmp_path)
        server_process(
            world, db, port, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https"
        )
        world.login("--ca-file", str(ca), env=via)
        assert proxy.tunnels_to(port) == 1  # login's API call
        agent = world.agent(None, "agent", "allow", "--ca-file", str(ca), env=https_via)
        creds = agent.next_line(60, event="credentials")
        assert proxy.tunnels_to(port) == 2  # the agent's control connection
        tech = world.connect(
            creds["agent_id"], creds["password"], "--ca-file", str(ca), vnc=False, env=https_via
        )
        tech.next_line(60, event="connected")
        # connect's API call and relay leg (one tunnel when aiohttp reuses the kept-alive
        # connection for the upgrade) and the agent's relay leg: all tunnelled.
        assert proxy.tunnels_to(port) >= 4
        before = proxy.tunnels_to(port)
        tech.signal(signal.SIGINT)
        assert tech.wait(30) == 0

        # NO_PROXY naming the server: login goes direct, the proxy sees nothing new.
        world.login("--ca-file", str(ca), env={**via, "no_proxy": "127.0.0.1"})
        assert proxy.tunnels_to(port) == before
    finally:
        world.close()


def test_without_a_working_proxy_the_agent_says_it_cannot_reach_the_server(
    tmp_path: Path,
) -> None:
    """The proxy really is on the path: a proxy that is down stops the connection."""
    world = World(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        db = make_db(tmp_path)
        server_process(world, db, free_port())
        result = subprocess.run(
            [ENKAKU, "login", "--server", world.server_url, "--user", "tech"],
            env=world.env(
                ENKAKU_LOGIN_PASSWORD=LOGIN_PASSWORD, HTTP_PROXY=dead, NO_PROXY="", no_proxy=""
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 9
        assert "Cannot reach the server" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        world.close()
