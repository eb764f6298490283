"""Clipboard text through RFBService, end to end, against viewers nobody here wrote.

The agent's display is a real Xvfb whose clipboard the service reads and writes with
``X11Clipboard``; a second ``X11Clipboard`` on the same display plays the customer's
program. TigerVNC's viewer runs on a second Xvfb (ExtendedClipboard, UTF-8), vncdotool
in a subprocess (plain cut text, Latin-1). Waits are on the audit callback, then polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from enkaku.agent.clipboard.x11 import X11Clipboard
from enkaku.agent.rfbservice import FROM_CUSTOMER, TO_CUSTOMER, RFBService
from enkaku.protocol.rfb import Encoding
from enkaku.protocol.rfb import messages as m
from enkaku.protocol.rfb.messages import ClipboardAction as A
from enkaku.protocol.rfb.messages import ClipboardFormat as F
from tests.agent.test_rfbservice import (
    FakeCapture,
    Pipe,
    RecordingInjector,
    Served,
    needs_tigervnc,
    rgb,
    run,
    serve,
    start_viewer,
    wait_for_image,
)
from tests.protocol.rfb.decoders import sample_image, set_encodings
from tests.protocol.rfb.test_extended_clipboard import CAPS, client, provide
from tests.xdisplay import x_env, xvfb

W, H = 320, 240
JAPANESE_TO_CUSTOMER = "技術者から：こんにちは、世界！\n二行目 ✓"
JAPANESE_FROM_CUSTOMER = "お客様から：日本語のテキスト\n改行あり"


@dataclass
class Audit:
    """Records ``on_clipboard`` calls and lets a test wait for one."""

    events: list[tuple[str, int]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, direction: str, n_chars: int) -> None:
        self.events.append((direction, n_chars))
        self.changed.set()

    async def wait(self, direction: str, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not any(d == direction for d, _ in self.events):
                self.changed.clear()
                await self.changed.wait()


@contextlib.contextmanager
def clipboard(display: str, *, primary: bool = True) -> Iterator[X11Clipboard]:
    board = X11Clipboard(display, primary=primary)
    try:
        yield board
    finally:
        board.close()


async def wait_text(board: X11Clipboard, expected: str, timeout: float = 30) -> None:
    """Wait until ``board`` holds ``expected``: read again whenever a program copies."""
    loop = asyncio.get_running_loop()
    copied = asyncio.Event()
    unwatch = board.watch(lambda: loop.call_soon_threadsafe(copied.set))
    try:
        async with asyncio.timeout(timeout):
            while await asyncio.to_thread(board.read_text) != expected:
                await copied.wait()
                copied.clear()
    finally:
        unwatch()


@contextlib.asynccontextmanager
async def agent(
    display: str, allowed: Callable[[], bool], audit: Audit
) -> AsyncIterator[tuple[Served, X11Clipboard]]:
    """An RFBService with the clipboard of ``display``, and the customer's own program."""
    with clipboard(display) as service_board, clipboard(display) as customer:
        capture = FakeCapture(sample_image(H, W, seed=5))
        async with serve(
            capture,
            RecordingInjector(),
            clipboard=service_board,
            clipboard_allowed=allowed,
            on_clipboard=audit,
        ) as served:
            yield served, customer


@pytest.mark.x11
@needs_tigervnc
async def test_tigervnc_japanese_both_ways_with_extended_clipboard() -> None:
    audit = Audit()
    with xvfb() as agent_display, xvfb() as viewer_display:
        async with agent(agent_display, lambda: True, audit) as (served, customer):
            proc = await start_viewer(viewer_display, served.port, "-PreferredEncoding=ZRLE")
            try:
                x, y = await wait_for_image(viewer_display, rgb(sample_image(H, W, seed=5)))
                # No window manager: give the viewer keyboard focus (it only exchanges
                # clipboards while focused, like TigerVNC on any desktop).
                await run(
                    "xdotool", "search", "--sync", "--name", "enkaku test", "windowfocus",
                    "mousemove", str(x + 10), str(y + 10), "click", "1",
                    env=x_env(viewer_display),
                )  # fmt: skip
                # CLIPBOARD only: TigerVNC would announce PRIMARY too (SendPrimary), and
                # its second provide could land after the customer's copy below.
                with clipboard(viewer_display, primary=False) as technician:
                    # technician copies on their machine -> the customer can paste it
                    await asyncio.to_thread(technician.set_text, JAPANESE_TO_CUSTOMER)
                    await audit.wait(TO_CUSTOMER)
                    assert await asyncio.to_thread(customer.read_text) == JAPANESE_TO_CUSTOMER
                    # the customer copies -> the technician can paste it
                    await asyncio.to_thread(customer.set_text, JAPANESE_FROM_CUSTOMER)
                    await audit.wait(FROM_CUSTOMER)
                    await wait_text(technician, JAPANESE_FROM_CUSTOMER)
                server = served.services[0].server
                assert server is not None and server.extended_clipboard
            finally:
                proc.terminate()
                await proc.wait()
            await served.wait_closed()
    assert (TO_CUSTOMER, len(JAPANESE_TO_CUSTOMER)) in audit.events
    assert (FROM_CUSTOMER, len(JAPANESE_FROM_CUSTOMER)) in audit.events
    assert {d for d, _ in audit.events} == {TO_CUSTOMER, FROM_CUSTOMER}


# -- vncdotool: plain ClientCutText / ServerCutText ----------------------------------

#: Pastes argv[2] (ClientCutText), says so, then prints each ServerCutText as JSON and
#: leaves after the first one.
VNCDO_CLIPBOARD = """
import json, queue, sys
from vncdotool import api, client
texts = queue.Queue()
client.VNCDoToolClient.copy_text = lambda self, text: texts.put(text)
c = api.connect(sys.argv[1])
try:
    c.paste(sys.argv[2])
    print("pasted", flush=True)
    print(json.dumps(texts.get(timeout=60)), flush=True)
finally:
    c.disconnect()
    api.shutdown()
"""

LATIN1_TO_CUSTOMER = "Grüße aus Zürich: café, ½ × 3\nzweite Zeile"
LATIN1_FROM_CUSTOMER = "Ça marche, señor! ±5 °C"


async def test_vncdotool_latin1_both_ways_with_plain_cut_text() -> None:
    audit = Audit()
    with xvfb() as display:
        async with agent(display, lambda: True, audit) as (served, customer):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", VNCDO_CLIPBOARD,
                f"127.0.0.1::{served.port}", LATIN1_TO_CUSTOMER,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            assert proc.stdout is not None
            try:
                async with asyncio.timeout(60):
                    assert await proc.stdout.readline() == b"pasted\n"
                await audit.wait(TO_CUSTOMER)
                assert await asyncio.to_thread(customer.read_text) == LATIN1_TO_CUSTOMER
                await asyncio.to_thread(customer.set_text, LATIN1_FROM_CUSTOMER)
                async with asyncio.timeout(60):
                    line = await proc.stdout.readline()
                assert json.loads(line) == LATIN1_FROM_CUSTOMER
                assert await proc.wait() == 0
            finally:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            await served.wait_closed()
            server = served.services[0].server
            assert server is not None and not server.extended_clipboard
    assert audit.events == [
        (TO_CUSTOMER, len(LATIN1_TO_CUSTOMER)),
        (FROM_CUSTOMER, len(LATIN1_FROM_CUSTOMER)),
    ]


# -- denied: nothing crosses -----------------------------------------------------------


@dataclass
class RecordingClipboard:
    """The service's clipboard, recording every read and write it makes."""

    inner: X11Clipboard
    calls: list[str] = field(default_factory=list)

    def read_text(self) -> str | None:
        self.calls.append("read")
        return self.inner.read_text()

    def set_text(self, text: str) -> None:
        self.calls.append("set")
        self.inner.set_text(text)

    def watch(self, on_change: Callable[[], object]) -> Callable[[], None]:
        return self.inner.watch(on_change)

    def close(self) -> None:
        self.inner.close()


async def wait_dropped(served: Served, index: int, timeout: float = 30) -> None:
    """Wait until connection ``index`` dropped something from its viewer."""
    async with asyncio.timeout(timeout):
        while len(served.services) <= index or not served.services[index].clipboard_dropped:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.mark.x11
@needs_tigervnc
async def test_denied_nothing_crosses_until_allowed() -> None:
    """Denied: the viewer's offer is dropped unrequested and the customer's copy is not
    even read, with TigerVNC (ExtendedClipboard) and vncdotool (plain) alike. Allowing
    it later lets the next copy through, so the denied ones were really processed."""
    audit = Audit()
    allowed = [False]
    image = sample_image(H, W, seed=5)
    with (
        xvfb() as agent_display,
        xvfb() as viewer_display,
        clipboard(agent_display) as inner,
        clipboard(agent_display) as customer,
        clipboard(viewer_display, primary=False) as technician,
    ):
        service_board = RecordingClipboard(inner)
        async with serve(
            FakeCapture(image),
            RecordingInjector(),
            clipboard=service_board,
            clipboard_allowed=lambda: allowed[0],
            on_clipboard=audit,
        ) as served:
            await asyncio.to_thread(customer.set_text, "before the session")
            proc = await start_viewer(viewer_display, served.port, "-PreferredEncoding=ZRLE")
            vncdo = None
            try:
                x, y = await wait_for_image(viewer_display, rgb(image))
                await run(
                    "xdotool", "search", "--sync", "--name", "enkaku test", "windowfocus",
                    "mousemove", str(x + 10), str(y + 10), "click", "1",
                    env=x_env(viewer_display),
                )  # fmt: skip
                await asyncio.to_thread(technician.set_text, "secret of the technician")
                await wait_dropped(served, 0)  # TigerVNC's notify, never requested
                vncdo = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", VNCDO_CLIPBOARD, f"127.0.0.1::{served.port}",
                    "plain secret of the technician",
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                assert vncdo.stdout is not None
                async with asyncio.timeout(60):
                    assert await vncdo.stdout.readline() == b"pasted\n"
                await wait_dropped(served, 1)  # vncdotool's ClientCutText, dropped
                await asyncio.to_thread(customer.set_text, "secret of the customer")
                assert await asyncio.to_thread(customer.read_text) == "secret of the customer"
                assert service_board.calls == []
                assert audit.events == []
                # allowed from now on: the next copy reaches both viewers
                allowed[0] = True
                await asyncio.to_thread(customer.set_text, "allowed now")
                await wait_text(technician, "allowed now")
                async with asyncio.timeout(60):
                    assert json.loads(await vncdo.stdout.readline()) == "allowed now"
                assert await vncdo.wait() == 0
            finally:
                for p in (proc, vncdo):
                    if p is not None and p.returncode is None:
                        p.kill()
                        await p.wait()
            await served.wait_closed(count=2)
    # read only once allowed (per connection, per selection the customer's copy took),
    # never written: the technician's texts never reached the customer's clipboard
    assert service_board.calls and set(service_board.calls) == {"read"}
    assert [d for d, _ in audit.events] == [FROM_CUSTOMER, FROM_CUSTOMER]
    # TigerVNC notifies for CLIPBOARD and PRIMARY (SendPrimary): one or two offers
    assert served.services[0].clipboard_dropped >= 1
    assert served.services[1].clipboard_dropped == 1


# -- in memory: what real viewers do not send ------------------------------------------


@dataclass
class MemoryClipboard:
    """A clipboard in a variable; ``copy()`` plays another program copying."""

    text: str | None = None
    watchers: list[Callable[[], object]] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)

    def read_text(self) -> str | None:
        return self.text

    def set_text(self, text: str) -> None:
        self.writes.append(text)
        self.text = text

    def watch(self, on_change: Callable[[], object]) -> Callable[[], None]:
        self.watchers.append(on_change)
        return lambda: self.watchers.remove(on_change)

    def close(self) -> None:
        pass

    def copy(self, text: str) -> None:
        self.text = text
        for on_change in self.watchers:
            on_change()


FENCE = bytes(m.Fence(m.FenceFlags.REQUEST, b"sync"))


async def in_memory(
    board: MemoryClipboard, allowed: list[bool], audit: Audit
) -> tuple[Pipe, RFBService, asyncio.Task[None]]:
    pipe = Pipe()
    service = RFBService(
        FakeCapture(sample_image(48, 64)), RecordingInjector(), pipe.read, pipe.write,
        name="mem", clipboard=board, clipboard_allowed=lambda: allowed[0], on_clipboard=audit,
    )  # fmt: skip
    task = asyncio.create_task(service.run())
    await pipe.handshake()
    await pipe.to_server.put(set_encodings(Encoding.RAW, Encoding.EXTENDED_CLIPBOARD))
    assert await pipe.from_server.get() == CAPS
    return pipe, service, task


async def synced(pipe: Pipe) -> list[bytes]:
    """Send a fence after what was sent; return what came back until its answer.

    The service handles each read completely before the next, so once the fence is
    answered everything before it has been dealt with.
    """
    await pipe.to_server.put(FENCE)
    got: list[bytes] = []
    async with asyncio.timeout(10):
        while (data := await pipe.from_server.get()) != FENCE.replace(b"\x80", b"\x00", 1):
            got.append(data)
    return got


async def test_in_memory_requests_only_while_allowed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    board, allowed, audit = MemoryClipboard(), [False], Audit()
    pipe, service, task = await in_memory(board, allowed, audit)
    secret = "秘密のテキスト"
    # denied: an offer is not requested, a request not answered, a provide not applied
    await pipe.to_server.put(client(A.NOTIFY | F.TEXT))
    await pipe.to_server.put(client(A.REQUEST | F.TEXT))
    raw = secret.encode() + b"\0"
    await pipe.to_server.put(
        client(A.PROVIDE | F.TEXT, zlib.compress(struct.pack("!I", len(raw)) + raw))
    )
    assert await synced(pipe) == []
    assert service.clipboard_dropped == 2 and board.writes == [] and audit.events == []
    # allowed: the offer is requested and the text applied
    allowed[0] = True
    await pipe.to_server.put(client(A.NOTIFY | F.TEXT))
    assert await synced(pipe) == [bytes.fromhex("03000000fffffffc02000001")]
    await pipe.to_server.put(
        client(A.PROVIDE | F.TEXT, zlib.compress(struct.pack("!I", len(raw)) + raw))
    )
    await synced(pipe)
    assert board.writes == [secret] and audit.events == [(TO_CUSTOMER, len(secret))]
    # text declared over the limit is dropped, the connection goes on
    z = zlib.compressobj(9)
    big = m.MAX_CLIPBOARD_TEXT + 1
    body = z.compress(struct.pack("!I", big) + bytes(big)) + z.flush()
    await pipe.to_server.put(client(A.PROVIDE | F.TEXT, body))
    await synced(pipe)
    assert service.clipboard_dropped == 3 and board.writes == [secret]
    # a malformed message ends this connection with one clear line, no content
    await pipe.to_server.put(provide(raw, declared=99))  # the stream ends before that
    await asyncio.wait_for(task, 10)
    ended = [r.getMessage() for r in caplog.records if "connection ended" in r.getMessage()]
    assert ended == ["rfb connection ended: ExtendedClipboard data ends early"]
    assert not any(secret in r.getMessage() for r in caplog.records)


async def test_in_memory_customer_copy_is_offered_then_sent_on_request() -> None:
    board, allowed, audit = MemoryClipboard(), [True], Audit()
    pipe, service, task = await in_memory(board, allowed, audit)
    await pipe.to_server.put(client(A.CAPS | A.NOTIFY | A.PROVIDE | A.REQUEST | F.TEXT, bytes(4)))
    board.copy("コピー")
    async with asyncio.timeout(10):
        assert await pipe.from_server.get() == bytes.fromhex("03000000fffffffc08000001")
    assert audit.events == []  # offered, not yet sent
    await pipe.to_server.put(client(A.REQUEST | F.TEXT))
    async with asyncio.timeout(10):
        sent = m.ExtendedClipboard.parse_body((await pipe.from_server.get())[8:])
    assert sent.text == "コピー" and audit.events == [(FROM_CUSTOMER, 3)]
    # withdrawn: a later request gets nothing
    allowed[0] = False
    await pipe.to_server.put(client(A.REQUEST | F.TEXT))
    assert await synced(pipe) == []
    await pipe.to_server.put(b"")  # EOF
    await asyncio.wait_for(task, 10)
