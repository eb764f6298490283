"""Tight as noVNC decodes it: the encoder's rectangles through noVNC's own TightDecoder
(the console's vendored copy) under Node, every filter and stream, compared pixel for pixel
outside the JPEG rectangles."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from enkaku.protocol.rfb import PixelFormat
from enkaku.protocol.rfb.encodings import EncodeOptions
from enkaku.protocol.rfb.encodings.tight import TightEncoder
from tests.protocol.rfb.decoders import photo_image, sample_image
from tests.protocol.rfb.test_encoders_content import japanese_text

ROOT = Path(__file__).resolve().parents[3]
NOVNC = ROOT / "console" / "node_modules" / "@novnc" / "novnc"
SCRIPT = Path(__file__).with_name("novnc_tight.mjs")
#: The pixel format noVNC asks for: 32 bpp, depth 24, little-endian, red in the low byte.
NOVNC_PF = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NOVNC / "core" / "decoders" / "tight.js").is_file(),
    reason="node and console/node_modules (scripts/bootstrap) are needed",
)


def blocks_2x2(h: int, w: int) -> np.ndarray:
    """Many colours, each in a 2x2 block: UI-like (repeats neighbours), not a photo."""
    rng = np.random.default_rng(12)
    small = rng.integers(0, 256, (h // 2, w // 2, 4), dtype=np.uint8)
    return np.ascontiguousarray(small.repeat(2, axis=0).repeat(2, axis=1))


def test_novnc_decodes_every_tight_choice() -> None:
    w, h = 400, 260
    screen = np.zeros((h, w, 4), dtype=np.uint8)
    enc = TightEncoder()
    stream = bytearray()
    kinds: set[int] = set()
    lossy = np.zeros((h, w), dtype=bool)

    def send(x: int, y: int, img: np.ndarray, options: EncodeOptions) -> None:
        screen[y : y + img.shape[0], x : x + img.shape[1]] = img
        lossy[y : y + img.shape[0], x : x + img.shape[1]] = False
        for r in enc.encode(img, NOVNC_PF, options):
            stream.extend(struct.pack("!HHHHI", x + r.x, y + r.y, r.w, r.h, len(r.payload)))
            stream.extend(r.payload)
            kinds.add(r.payload[0] >> 4 if r.payload[0] & 0x40 == 0 else r.payload[1] + 0x10)
            if r.lossy:
                lossy[y + r.y : y + r.y + r.h, x + r.x : x + r.x + r.w] = True

    send(0, 0, japanese_text(w, h, (10, 10, 10), (250, 250, 250), 14), EncodeOptions(2, 15))
    send(10, 20, photo_image(150, 180, 3), EncodeOptions(1))  # lossless: gradient
    send(200, 0, sample_image(130, 200, 6), EncodeOptions(9))  # a level change mid-stream
    send(0, 130, blocks_2x2(128, 128), EncodeOptions(2))  # copy filter
    send(150, 140, photo_image(120, 240, 8), EncodeOptions(2, 60))  # JPEG
    send(300, 200, japanese_text(100, 60, (200, 0, 0), (0, 0, 60), 12), EncodeOptions(6, 15))
    # fill (0x8), mono/indexed palette (filter 1 -> 0x11), gradient (0x12), copy (0x0..0x3),
    # JPEG (0x9)
    assert {0x8, 0x9, 0x11, 0x12} <= kinds and kinds & {0, 1, 2, 3}

    proc = subprocess.run(
        ["node", str(SCRIPT), str(NOVNC), str(w), str(h)],
        input=bytes(stream),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    fb = np.frombuffer(proc.stdout[: w * h * 4], dtype=np.uint8).reshape(h, w, 4)
    jpegs = json.loads(proc.stdout[w * h * 4 :].decode())
    assert jpegs, "the photo went as JPEG"
    want = screen[..., 2::-1]  # BGRX -> RGB
    np.testing.assert_array_equal(fb[..., :3][~lossy], want[~lossy])
    assert lossy.any()
