"""Network probes: interfaces, routes, DNS servers, whether the support server's port
answers, and the ports this machine listens on (process names only, no command lines).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from enkaku.agent.sysinfo.probe import Unavailable, read_text, run
from enkaku.agent.sysinfo.system import server_base
from enkaku.i18n import printable

CONNECT_TIMEOUT = 3.0
MAX_ROUTES = 100
MAX_LISTENING = 200
#: systemd-resolved's local stub; the servers it forwards to are in its own file.
RESOLVED_STUB = "127.0.0.53"


def interfaces(_server: str | None) -> list[dict[str, Any]]:
    """Each interface: up or down, speed, MTU, hardware and IP addresses."""
    stats = psutil.net_if_stats()
    out = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        st = stats.get(name)
        entry: dict[str, Any] = {
            "name": printable(name, 32),
            "up": st.isup if st else None,
            "speed_mbps": st.speed or None if st else None,
            "mtu": st.mtu if st else None,
            "mac": None,
            "ipv4": [],
            "ipv6": [],
        }
        for a in addrs:
            if a.family == psutil.AF_LINK:
                entry["mac"] = a.address
            elif a.family == socket.AF_INET:
                entry["ipv4"].append(f"{a.address}/{_prefix(a.netmask)}")
            elif a.family == socket.AF_INET6:
                entry["ipv6"].append(f"{a.address.split('%')[0]}/{_prefix(a.netmask)}")
        out.append(entry)
    return out


def _prefix(netmask: str | None) -> int | str:
    if not netmask:
        return "?"
    if ":" in netmask:
        return sum(bin(int(g or "0", 16)).count("1") for g in netmask.split(":"))
    return sum(bin(int(o)).count("1") for o in netmask.split("."))


def _proc_routes() -> list[dict[str, Any]]:
    """IPv4 routes from ``/proc/net/route`` where ``ip`` is not installed."""
    routes = []
    for line in read_text("/proc/net/route").splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        dst, gw, mask = (socket.inet_ntoa(bytes.fromhex(x)[::-1]) for x in (f[1], f[2], f[7]))
        routes.append(
            {
                "dst": "default" if dst == "0.0.0.0" and mask == "0.0.0.0" else f"{dst}/{mask}",
                "gateway": None if gw == "0.0.0.0" else gw,
                "dev": f[0],
                "metric": int(f[6]),
                "family": "ipv4",
            }
        )
    return routes


def routes(_server: str | None) -> dict[str, Any]:
    """The routing table (main) and the default routes of both families."""
    try:
        table = []
        for family, flag in (("ipv4", "-4"), ("ipv6", "-6")):
            for r in json.loads(run(["ip", "-j", flag, "route", "show"]) or "[]"):
                table.append(
                    {
                        "dst": r.get("dst"),
                        "gateway": r.get("gateway"),
                        "dev": r.get("dev"),
                        "metric": r.get("metric"),
                        "family": family,
                    }
                )
    except Unavailable as exc:
        if exc.key != "sysinfo_why_tool_missing":
            raise
        table = _proc_routes()
    default = [r for r in table if r["dst"] == "default"]
    return {"default": default, "routes": table[:MAX_ROUTES], "count": len(table)}


def _nameservers(path: str) -> tuple[list[str], list[str]]:
    servers: list[str] = []
    search: list[str] = []
    for line in read_text(path).splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            servers.append(printable(words[1], 64))
        elif words and words[0] in ("search", "domain"):
            search.extend(printable(w, 128) for w in words[1:])
    return servers, search


def dns(_server: str | None) -> dict[str, Any]:
    """Name servers from ``/etc/resolv.conf`` (and resolved's upstream servers)."""
    servers, search = _nameservers("/etc/resolv.conf")
    upstream: list[str] = []
    if RESOLVED_STUB in servers and Path("/run/systemd/resolve/resolv.conf").exists():
        upstream, _ = _nameservers("/run/systemd/resolve/resolv.conf")
    return {"servers": servers, "upstream": upstream, "search": search}


def reachability(server: str | None) -> dict[str, Any]:
    """Whether a TCP connection to the support server's host and port opens."""
    if server is None:
        raise Unavailable("sysinfo_why_no_server")
    parts = urlsplit(server_base(server))
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme or "https")
    data: dict[str, Any] = {
        "host": printable(host, 253),
        "port": port,
        "proxy_configured": bool(proxy),
        "resolved": [],
        "connected": False,
        "connect_ms": None,
        "error": None,
    }
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        data["error"] = f"name resolution failed: {printable(str(exc), 120)}"
        return data
    data["resolved"] = sorted({str(i[4][0]) for i in infos})[:8]
    for family, kind, proto, _, addr in infos[:3]:
        start = time.monotonic()
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect(addr)
        except TimeoutError:
            data["error"] = f"no answer within {CONNECT_TIMEOUT:g} s"
        except OSError as exc:
            data["error"] = printable(exc.strerror or type(exc).__name__, 120)
        else:
            data.update(
                connected=True,
                error=None,
                address=str(addr[0]),
                connect_ms=round((time.monotonic() - start) * 1000, 1),
            )
            break
    return data


def listening(_server: str | None) -> list[dict[str, Any]]:
    """Listening TCP and bound UDP ports with the owning process's name."""
    names: dict[int, str] = {}
    out = []
    seen = set()
    for c in psutil.net_connections(kind="inet"):
        tcp = c.type == socket.SOCK_STREAM
        if (tcp and c.status != psutil.CONN_LISTEN) or (not tcp and c.raddr):
            continue
        key = ("tcp" if tcp else "udp", c.laddr.ip, c.laddr.port)
        if key in seen:
            continue
        seen.add(key)
        if c.pid is not None and c.pid not in names:
            try:
                names[c.pid] = printable(psutil.Process(c.pid).name(), 64)
            except psutil.Error:
                names[c.pid] = ""
        out.append(
            {
                "proto": key[0],
                "address": c.laddr.ip,
                "port": c.laddr.port,
                "pid": c.pid,
                "process": names.get(c.pid) if c.pid else None,
            }
        )
    out.sort(key=lambda e: (e["port"], e["proto"], e["address"]))
    return out[:MAX_LISTENING]
