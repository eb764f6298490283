"""Bytes a sideways scroll costs: the Tk canvas of the X11 sideways test (a wide page
scrolled 30 steps of 24 columns right, then 30 back, with a real scroll bar) on a
private Xvfb, served by ``RFBService`` now and at a git revision, to the test suite's
decoder, one incremental request after another until the screen is still.

``python -m benchmarks.sideways [--before REV]``

Prints, per encoding (ZRLE, Tight; CopyRect listed), the updates, the bytes, bytes per
update and the CopyRects sent. Bytes only: no timing, so it does not need a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.agent.test_rfbservice import Pipe, RecordingInjector
from tests.agent.test_x11_screen_events import SIDEWAYS_SCROLL, CountingCapture, H, W
from tests.protocol.rfb.decoders import Decoder, set_encodings, update_request
from tests.xdisplay import wait_window, x_client, xvfb

from benchmarks.damage_step import rfbservice_versions
from enkaku.protocol.rfb import Encoding


async def run(module: ModuleType, encoding: int, script: Path) -> tuple[int, int, int]:
    with xvfb(W, H) as display:
        capture = CountingCapture(display)
        pipe = Pipe()
        service: Any = module.RFBService(
            capture, RecordingInjector(), pipe.read, pipe.write, name="x"
        )
        task = asyncio.create_task(service.run())
        try:
            await pipe.handshake()
            dec = Decoder(W, H, service.server.pixel_format)
            await pipe.to_server.put(set_encodings(encoding, Encoding.COPYRECT))
            await pipe.to_server.put(update_request(False, 0, 0, W, H))
            await pipe.receive(dec, lambda: len(dec.updates) == 1)
            total, updates = 0, 0
            with x_client([sys.executable, str(script)], display):
                wait_window(display, "wide")
                feed = dec.feed

                def counted(data: bytes) -> None:
                    nonlocal total
                    total += len(data)
                    feed(data)

                dec.feed = counted  # type: ignore[method-assign]
                while True:
                    n = len(dec.updates)
                    await pipe.to_server.put(update_request(True, 0, 0, W, H))
                    try:
                        await pipe.receive(dec, lambda n=n: len(dec.updates) > n, 4)
                    except TimeoutError:
                        break  # still for 4 s: the scrolling is over
                    updates += 1
            copies = sum(r[4] == Encoding.COPYRECT for u in dec.updates[1:] for r in u.rects)
            return updates, total, copies
        finally:
            await pipe.to_server.put(b"")
            await asyncio.wait_for(task, 10)
            capture.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        modules = rfbservice_versions(args.before, Path(tmp), "_sideways")
        script = Path(tmp) / "wide.py"
        script.write_text(SIDEWAYS_SCROLL)
        for encoding in (Encoding.ZRLE, Encoding.TIGHT):
            for label, module in modules.items():
                updates, total, copies = asyncio.run(run(module, encoding, script))
                print(
                    f"{Encoding(encoding).name:5} {label:10} {updates:3} updates {total:8} bytes"
                    f" {total // max(updates, 1):6} B/update, CopyRects {copies}"
                )


if __name__ == "__main__":
    main()
