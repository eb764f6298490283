"""The agent's screen served over one of the paths a technician's viewer can use, for
benchmarks only (``benchmarks/screen.py`` starts these).

``python -m benchmarks.screen_paths direct --backend B --display D --port P``
    ``RFBService`` with backend B (``x11`` or ``wayland-wlroots``; for Wayland, D is the
    compositor socket, else ``$WAYLAND_DISPLAY``) on plain TCP, **127.0.0.1 only, no
    authentication, no encryption**: what ``benchmarks.rfb_direct`` does for X11, for
    any backend.

``python -m benchmarks.screen_paths bridge --backend B --display D --port P``
    The bridge without the server: this process is the technician's side, a
    ``VNCBridge`` (the code behind ``enkaku connect --vnc-listen``) on 127.0.0.1:P over a
    ``SecureChannel``; a child process is the agent's side, a ``SecureChannel`` serving
    each ``rfb`` stream with the agent's own screen service
    (``enkaku.agent.services.screen.serve``). The two talk over a local socket pair with
    the real CPace handshake and AES-GCM records, but no relay server and no WebSocket in
    between. Against ``direct`` it measures the end-to-end channel, the stream mux and
    the bridge; against the whole product (``benchmarks.e2e_chain``) it leaves the
    server's relay as the only difference.

Both stay in the foreground until SIGTERM/SIGINT. Each prints ``screen_paths: PIDs
agent=N [connect=M]`` on stderr once it serves: the agent PID is the one whose CPU is
the server's (``benchmarks.e2e_chain`` prints the same kind of line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence

from enkaku.agent.capture.base import ScreenCapture
from enkaku.agent.input.base import InputInjector
from enkaku.protocol.handshake import AgentHandshake, TechnicianHandshake
from enkaku.transport.channel import SecureChannel, run_handshake
from enkaku.transport.errors import SessionEnded

log = logging.getLogger("benchmarks.screen_paths")

PASSWORD = "abcd-efgh"
AGENT_ID = "123456789"
_DATA, _CLOSE = 0, 1


class SocketLeg:
    """A relay leg over a local stream socket: one message = type byte, length, bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(struct.pack("!BI", _DATA, len(data)) + data)
        await self.writer.drain()

    async def receive(self, timeout: float | None = None) -> bytes:
        try:
            head = await asyncio.wait_for(self.reader.readexactly(5), timeout)
            kind, n = struct.unpack("!BI", head)
            body = await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise SessionEnded("connection_lost") from None
        if kind == _CLOSE:
            raise SessionEnded(body.decode(errors="replace"))
        return body

    async def close(self, reason: str) -> None:
        with contextlib.suppress(Exception):
            body = reason.encode()
            self.writer.write(struct.pack("!BI", _CLOSE, len(body)) + body)
            await self.writer.drain()
            self.writer.close()


def factories(
    backend: str, display: str | None
) -> tuple[Callable[[], ScreenCapture], Callable[[], InputInjector]]:
    """The capture and input factories of ``backend`` (as the agent picks them)."""
    from enkaku.agent.backends import select_backend

    env = dict(os.environ)
    if backend == "wayland-wlroots" and display:
        env["WAYLAND_DISPLAY"] = display
    capture, injector, _clipboard = select_backend(
        backend, display if backend == "x11" else None, env
    )
    assert capture is not None and injector is not None
    return capture, injector


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- direct ------------------------------------------------------------------------------


async def direct(args: argparse.Namespace) -> int:
    from enkaku.agent.rfbservice import RFBService

    new_capture, new_input = factories(args.backend, args.display)
    one = asyncio.Lock()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with one:
            capture = injector = None
            try:
                capture = await asyncio.to_thread(new_capture)
                injector = await asyncio.to_thread(new_input)

                async def read() -> bytes:
                    return await reader.read(64 * 1024)

                async def write(data: bytes) -> None:
                    writer.write(data)
                    await writer.drain()

                await RFBService(capture, injector, read, write, name="enkaku bench").run()
            except (ConnectionError, EOFError) as exc:
                log.info("connection ended: %s", exc)
            except Exception:
                log.exception("connection failed")
            finally:
                if injector is not None:
                    await asyncio.to_thread(injector.close)
                if capture is not None:
                    await asyncio.to_thread(capture.close)
                writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    print(f"screen_paths: PIDs agent={os.getpid()}", file=sys.stderr, flush=True)
    try:
        await _until_signal()
    finally:
        server.close()
    return 0


# -- bridge ------------------------------------------------------------------------------


async def agent_side(args: argparse.Namespace) -> int:
    """The child: the agent's end of the channel, serving ``rfb`` streams."""
    from enkaku.agent.services import FileSettings, Grant, ServiceContext
    from enkaku.agent.services.screen import serve

    new_capture, new_input = factories(args.backend, args.display)
    sock = socket.socket(fileno=args.fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    leg = SocketLeg(reader, writer)
    records = await run_handshake(leg, AgentHandshake(PASSWORD, AGENT_ID))  # type: ignore[arg-type]
    channel = SecureChannel(leg, records, "agent")  # type: ignore[arg-type]
    channel.start()

    async def report(event: str, detail: str | None = None) -> None:
        pass

    grant = Grant(1, "screen", {})
    tasks: set[asyncio.Task[None]] = set()

    async def accept() -> None:
        while True:
            stream = await channel.incoming.get()
            if stream.kind != "rfb":
                await stream.reset("unsupported_stream")
                continue
            ctx = ServiceContext(
                session_id="bench", agent_id=AGENT_ID, who=None,  # type: ignore[arg-type]
                grant=grant, report=report, files=FileSettings(),
                capture_factory=new_capture, input_factory=new_input,
            )  # fmt: skip
            task = asyncio.create_task(serve(stream, ctx))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    acceptor = asyncio.create_task(accept())
    stop = asyncio.create_task(_until_signal())
    closed = asyncio.create_task(channel.closed.wait())
    await asyncio.wait({stop, closed}, return_when=asyncio.FIRST_COMPLETED)
    for task in (acceptor, stop, closed, *tasks):
        task.cancel()
    await channel.close("customer_ended")
    return 0


async def bridge(args: argparse.Namespace) -> int:
    """The technician's end: a VNCBridge on the port, the agent in a child process."""
    from enkaku.technician.vncbridge import VNCBridge

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    cmd = [sys.executable, "-m", "benchmarks.screen_paths", "_agent", "--fd", str(theirs.fileno()),
           "--backend", args.backend, *(["--display", args.display] if args.display else []),
           *(["-v"] * args.verbose)]  # fmt: skip
    child = await asyncio.create_subprocess_exec(
        *cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
    )
    theirs.close()
    channel = None
    vnc = VNCBridge("127.0.0.1", args.port)
    try:
        reader, writer = await asyncio.open_unix_connection(sock=mine)
        leg = SocketLeg(reader, writer)
        records = await run_handshake(leg, TechnicianHandshake(PASSWORD, AGENT_ID))  # type: ignore[arg-type]
        channel = SecureChannel(leg, records, "technician")  # type: ignore[arg-type]
        channel.start()
        await vnc.bind()
        await vnc.start(channel)
        print(f"screen_paths: PIDs agent={child.pid} connect={os.getpid()}", file=sys.stderr,
              flush=True)  # fmt: skip
        stop = asyncio.create_task(_until_signal())
        closed = asyncio.create_task(channel.closed.wait())
        await asyncio.wait({stop, closed}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        closed.cancel()
    finally:
        await vnc.close()
        if channel is not None:
            await channel.close("technician_ended")
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.wait(), 5)
        except TimeoutError:
            child.kill()
            await child.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.screen_paths", description=__doc__)
    p.add_argument("mode", choices=["direct", "bridge", "_agent"])
    p.add_argument("--backend", default="x11", choices=["x11", "wayland-wlroots"])
    p.add_argument("--display", default=None, help="X display, or the Wayland socket")
    p.add_argument("--port", type=int, default=5942, help="VNC port on 127.0.0.1")
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run = {"direct": direct, "bridge": bridge, "_agent": agent_side}[args.mode]
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
