"""The RFB (VNC) protocol the agent serves on the ``rfb`` stream: RFB 3.8, no IO here."""

from enkaku.protocol.geometry import Rect
from enkaku.protocol.rfb.encodings.copyrect import Copy
from enkaku.protocol.rfb.messages import Encoding
from enkaku.protocol.rfb.pixelformat import NATIVE, PixelFormat
from enkaku.protocol.rfb.server import (
    ClientInitialised,
    Event,
    PendingUpdate,
    RFBServer,
    State,
    UpdateRequest,
)

__all__ = [
    "NATIVE",
    "ClientInitialised",
    "Copy",
    "Encoding",
    "Event",
    "PendingUpdate",
    "PixelFormat",
    "RFBServer",
    "Rect",
    "State",
    "UpdateRequest",
]
