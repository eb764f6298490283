"""Socket timestamps for ``benchmarks.hop_trace`` (benchmarks only, never installed).

Put on ``PYTHONPATH`` with ``HOPTRACE_DIR`` set, Python imports this at start-up. In an
``enkaku server``, ``agent`` or ``connect`` process it wraps asyncio's socket transport:
each write (with its size) and each time a socket turned readable, with
``time.perf_counter()`` (CLOCK_MONOTONIC: one clock for every process of the machine)
and the socket's local and remote ports, one line each in ``HOPTRACE_DIR/ROLE-PID.txt``.
Sizes and ports only: no content.
"""

from __future__ import annotations

import os
import time


def _install(folder: str, role: str) -> None:
    import asyncio.selector_events as se

    out = open(os.path.join(folder, f"{role}-{os.getpid()}.txt"), "w", buffering=1)  # noqa: SIM115
    clock = time.perf_counter
    cls = se._SelectorSocketTransport

    def ports(transport: object) -> str:
        try:
            sock = transport._sock  # type: ignore[attr-defined]
            here, there = sock.getsockname(), sock.getpeername()
        except (OSError, AttributeError):
            return "? ?"
        if not isinstance(here, tuple) or not isinstance(there, tuple):
            return "unix unix"
        return f"{here[1]} {there[1]}"

    write = cls.write

    def traced_write(self: object, data: bytes) -> None:
        out.write(f"{clock():.7f} w {len(data)} {ports(self)}\n")
        write(self, data)  # type: ignore[arg-type]

    cls.write = traced_write  # type: ignore[method-assign]
    for name in ("_read_ready__data_received", "_read_ready__get_buffer"):
        ready = getattr(cls, name)

        def traced_ready(self: object, _ready=ready) -> None:  # type: ignore[no-untyped-def]
            t = clock()
            _ready(self)
            out.write(f"{t:.7f} r 0 {ports(self)}\n")

        setattr(cls, name, traced_ready)


def _role() -> str | None:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "enkaku.cli" not in args:
        return None
    return next((a for a in args if a in ("server", "agent", "connect")), None)


_folder = os.environ.get("HOPTRACE_DIR")
if _folder:
    _r = _role()
    if _r is not None:
        _install(_folder, _r)
