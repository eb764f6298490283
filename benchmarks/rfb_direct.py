"""Serve the agent's RFB server over plain TCP on loopback: for benchmarks only.

``python -m benchmarks.rfb_direct --display :42 --port 5942 [--max-fps N]``

This program exists so that the peer harness (``run_peers.sh --harness DIR``, see
benchmarks/README.md) can measure ``RFBService`` (capture, damage detection, encoding,
input injection) against other VNC servers without the relay and the encrypted channel
in between. It has no authentication (RFB security type None) and no encryption, by
design, and therefore only ever binds a loopback address. The product never exposes RFB
on a socket except through ``enkaku connect --vnc-listen`` on the technician's side,
behind the end-to-end encrypted channel.

One connection is served at a time (a second one waits for the first to end); the
process stays in the foreground until SIGTERM or SIGINT, so its PID is the one whose CPU
the harness measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enkaku.agent.capture.x11 import X11Capture
from enkaku.agent.input.x11 import X11Input
from enkaku.agent.rfbservice import RFBService

log = logging.getLogger("benchmarks.rfb_direct")


def is_loopback(host: str) -> bool:
    """True when ``host`` is a literal loopback address (127.0.0.0/8 or ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DirectServer:
    """Accepts TCP connections and runs one ``RFBService`` at a time."""

    def __init__(self, display: str, max_fps: float | None) -> None:
        self.display = display
        self.max_fps = max_fps
        self._one_at_a_time = asyncio.Lock()
        self._count = 0

    def _fps(self) -> dict[str, Any]:
        """max_fps for RFBService, when given (else the service's own default)."""
        return {} if self.max_fps is None else {"max_fps": self.max_fps}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one viewer connection (after the previous one has ended)."""
        peer = writer.get_extra_info("peername")
        async with self._one_at_a_time:
            self._count += 1
            n = self._count
            log.info("connection %d from %s", n, peer)
            capture: X11Capture | None = None
            injector: X11Input | None = None
            try:
                capture = await asyncio.to_thread(X11Capture, self.display)
                injector = await asyncio.to_thread(X11Input, self.display)

                async def read() -> bytes:
                    return await reader.read(64 * 1024)

                async def write(data: bytes) -> None:
                    writer.write(data)
                    await writer.drain()

                service = RFBService(
                    capture,
                    injector,
                    read,
                    write,
                    name=f"enkaku rfb_direct {self.display}",
                    **self._fps(),
                )
                await service.run()
            except (ConnectionError, EOFError) as exc:
                log.info("connection %d ended: %s", n, exc)
            except Exception:
                log.exception("connection %d failed", n)
            finally:
                if injector is not None:
                    await asyncio.to_thread(injector.close)
                if capture is not None:
                    await asyncio.to_thread(capture.close)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                log.info("connection %d closed", n)


async def serve(host: str, port: int, display: str, max_fps: float | None) -> int:
    """Listen on host:port until SIGTERM/SIGINT."""
    direct = DirectServer(display, max_fps)
    server = await asyncio.start_server(direct.handle, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"rfb_direct: serving {display} on {host}:{port} (no auth, no encryption; "
        f"benchmarks only), max_fps={'default' if max_fps is None else f'{max_fps:g}'}",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.rfb_direct",
        description="Benchmark-only: RFBService on loopback TCP, no auth, no encryption.",
    )
    p.add_argument("--display", required=True, help="X display to serve, e.g. :42")
    p.add_argument("--port", type=int, default=5942, help="TCP port (default 5942)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    p.add_argument(
        "--max-fps", type=float, default=None, help="RFBService max_fps (default: its own)"
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    p.add_argument(
        "--record", type=Path, metavar="FILE",
        help="keep what the Tight and ZRLE encoders are given, written to FILE (.npz) at "
        "exit, for benchmarks.encode_replay",
    )  # fmt: skip
    p.add_argument(
        "--record-damage", type=Path, metavar="FILE",
        help="keep what the damage step is given, written to FILE (.npz) at exit, for "
        "benchmarks.damage_replay",
    )  # fmt: skip
    p.add_argument(
        "--step-times", type=Path, metavar="FILE",
        help="write the thread CPU time of the service's steps to FILE at exit "
        "(benchmarks.step_times)",
    )  # fmt: skip
    p.add_argument(
        "--record-max", type=int, default=200,
        help="rectangles (--record) or steps (--record-damage) kept (default 200)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if not is_loopback(args.host):
        print(
            f"rfb_direct: refusing to listen on {args.host!r}: loopback addresses only "
            "(this server has no authentication and no encryption)",
            file=sys.stderr,
        )
        return 2
    if args.max_fps is not None and args.max_fps <= 0:
        print("rfb_direct: --max-fps must be > 0", file=sys.stderr)
        return 2
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("enkaku").setLevel(level)
    log.setLevel(level)
    kept = _instruments(args)
    try:
        return asyncio.run(serve(args.host, args.port, args.display, args.max_fps))
    finally:
        for instrument in kept:
            instrument.save()


def _instruments(args: argparse.Namespace) -> list[Any]:
    """What ``--record``, ``--record-damage`` and ``--step-times`` ask for, installed
    (each is saved when the server stops)."""
    made: list[Any] = []
    if args.record is not None:
        from benchmarks.encode_replay import Recorder

        made.append(Recorder(args.record, args.record_max))
    if args.record_damage is not None:
        from benchmarks.damage_replay import DamageRecorder

        made.append(DamageRecorder(args.record_damage, args.record_max))
    if args.step_times is not None:
        from benchmarks.step_times import StepTimes

        made.append(StepTimes(args.step_times))
    for instrument in made:
        instrument.install()
    return made


if __name__ == "__main__":
    sys.exit(main())
