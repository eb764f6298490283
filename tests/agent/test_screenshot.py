"""The screenshot service on a real Xvfb, and the technician's checked, atomic save."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import stat
import struct
import subprocess
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from enkaku.agent.capture.base import ScreenCapture
from enkaku.agent.capture.x11 import X11Capture
from enkaku.agent.services.screenshot import SPEC, serve
from enkaku.technician.screenshot import MAX_PIXELS, PNG_SIGNATURE, ScreenshotError, receive
from enkaku.transport.channel import SecureChannel, Stream
from tests.agent.test_terminal import LIMIT, Audit, context
from tests.agent.test_x11_capture import noise, set_root_image
from tests.channelpair import channels
from tests.xdisplay import xvfb, xwd_root


def test_spec() -> None:
    assert (SPEC.kind, SPEC.action, SPEC.serve, SPEC.bound) == (
        "screenshot",
        "screenshot",
        serve,
        (),
    )


async def shoot(
    capture_factory: Callable[[], ScreenCapture] | None, path: Path | str
) -> tuple[tuple[int, int], Audit]:
    """Ask the service for a screenshot and save it at ``path``."""
    agent, tech = await channels()
    audit = Audit()
    ctx = dataclasses.replace(context(audit, "screenshot"), capture_factory=capture_factory)
    stream = await tech.open_stream("screenshot", {"grant": 1})
    serving = asyncio.ensure_future(serve(await agent.incoming.get(), ctx))
    try:
        size = await asyncio.wait_for(receive(stream, path), LIMIT)
        await asyncio.wait_for(serving, LIMIT)
        return size, audit
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await tech.close("technician_ended")


def imagemagick_xwd(display: str) -> npt.NDArray[np.uint8]:
    """The root window by ``xwd -root | convert xwd:- png:-``: another reader of xwd."""
    dump = subprocess.run(
        ["xwd", "-root", "-silent", "-display", display], check=True, capture_output=True
    ).stdout
    data = subprocess.run(
        ["convert", "xwd:-", "png:-"], input=dump, check=True, capture_output=True
    ).stdout
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.x11
async def test_screenshot_equals_xwd_pixel_for_pixel(tmp_path: Path) -> None:
    with xvfb(640, 480) as display:
        drawn = noise(tmp_path / "noise.png", 640, 480, seed=7)
        set_root_image(display, tmp_path / "noise.png")
        size, audit = await shoot(lambda: X11Capture(display), tmp_path / "shot.png")
        reference = xwd_root(display)
        converted = imagemagick_xwd(display)
    assert size == (640, 480)
    with Image.open(tmp_path / "shot.png") as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (640, 480))
        got = np.asarray(image)
    assert np.array_equal(got, reference)
    assert np.array_equal(got, converted)
    assert np.array_equal(got, drawn)  # the picture is what was drawn, not a black screen
    assert audit.events == [("screenshot_sent", "640x480")]
    assert stat.S_IMODE((tmp_path / "shot.png").stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["noise.png", "shot.png"]


async def test_no_display(tmp_path: Path) -> None:
    with pytest.raises(ScreenshotError, match="no screen to capture"):
        await shoot(None, tmp_path / "shot.png")
    assert os.listdir(tmp_path) == []


async def test_no_display_in_japanese(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ScreenshotError) as refused:
        await shoot(None, str(tmp_path / "shot.png"))
    assert refused.value.key == "screenshot_no_display"
    assert "キャプチャできる画面がありません" in refused.value.message("ja")
    monkeypatch.setenv("ENKAKU_LANG", "ja")
    assert str(refused.value) == refused.value.message("ja")


@pytest.mark.x11
async def test_a_display_that_cannot_be_opened(tmp_path: Path) -> None:
    with xvfb(64, 64) as display:
        pass  # stopped: nobody serves this display any more
    with pytest.raises(ScreenshotError, match="no screen to capture"):
        await shoot(lambda: X11Capture(display), tmp_path / "shot.png")
    assert os.listdir(tmp_path) == []


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    pixels = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@contextlib.asynccontextmanager
async def from_agent() -> AsyncIterator[tuple[SecureChannel, Stream, Stream]]:
    """A screenshot stream whose agent side the test writes itself (a hostile agent)."""
    agent, tech = await channels()
    stream = await tech.open_stream("screenshot", {"grant": 1})
    served = await asyncio.wait_for(agent.incoming.get(), LIMIT)
    try:
        yield tech, stream, served
    finally:
        await tech.close("technician_ended")


async def sent(served: Stream, data: bytes, *, eof: bool = True) -> None:
    with contextlib.suppress(Exception):  # the technician may reset the stream meanwhile
        await served.write(data)
        if eof:
            await served.write_eof()


@pytest.mark.parametrize(
    ("data", "max_bytes", "reason", "message"),
    [
        (b"GIF89a" + bytes(100), 10**6, "not_png", "not a valid PNG"),
        (png(300, 200)[:-200], 10**6, None, "not a valid PNG"),  # cut short, then EOF
        (
            PNG_SIGNATURE
            + chunk(b"IHDR", struct.pack(">IIBBBBB", 1 << 15, 1 << 15, 8, 2, 0, 0, 0)),
            10**6,
            "too_large",
            f"larger than {MAX_PIXELS} pixels",
        ),
        (png(300, 200), 1000, "too_large", "larger than 1000"),
    ],
    ids=["not_png", "truncated", "too_many_pixels", "too_many_bytes"],
)
async def test_bad_screenshots_leave_the_old_file(
    tmp_path: Path, data: bytes, max_bytes: int, reason: str | None, message: str
) -> None:
    path = tmp_path / "shot.png"
    path.write_bytes(b"the previous screenshot")
    async with from_agent() as (_tech, stream, served):
        writing = asyncio.ensure_future(sent(served, data))
        with pytest.raises(ScreenshotError, match=message):
            await asyncio.wait_for(receive(stream, path, max_bytes=max_bytes), LIMIT)
        await asyncio.wait_for(writing, LIMIT)
    assert stream.reset_reason == reason
    assert path.read_bytes() == b"the previous screenshot"
    assert os.listdir(tmp_path) == ["shot.png"]


async def test_a_screenshot_cut_by_the_session_end(tmp_path: Path) -> None:
    async with from_agent() as (tech, stream, served):
        await served.write(png(64, 64)[:100])
        receiving = asyncio.ensure_future(receive(stream, tmp_path / "shot.png"))
        await tech.close("technician_ended")
        with pytest.raises(ScreenshotError, match="cut off"):
            await asyncio.wait_for(receiving, LIMIT)
    assert os.listdir(tmp_path) == []


async def test_a_new_screenshot_replaces_the_old(tmp_path: Path) -> None:
    path = tmp_path / "shot.png"
    path.write_bytes(b"old")
    async with from_agent() as (_tech, stream, served):
        data = png(50, 40)
        writing = asyncio.ensure_future(sent(served, data))
        assert await asyncio.wait_for(receive(stream, path), LIMIT) == (50, 40)
        await writing
    assert path.read_bytes() == data
    assert os.listdir(tmp_path) == ["shot.png"]
