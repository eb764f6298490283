"""Raw encoding (RFC 6143 §7.7.1): every pixel, left to right, top to bottom."""

from __future__ import annotations

from enkaku.protocol.rfb.messages import EncodedRect, EncodeOptions
from enkaku.protocol.rfb.pixelformat import Frame, PixelFormat


class RawEncoder:
    """Stateless Raw encoder."""

    code = 0
    #: One wire rectangle per ``encode()`` call: updates may be streamed in bands
    #: (server.py, ``PendingUpdate.stream``).
    one_rect = True

    def encode(self, frame: Frame, pf: PixelFormat, options: EncodeOptions) -> list[EncodedRect]:
        """Encode the whole of ``frame`` (a BGRX rectangle) as one Raw rectangle."""
        h, w = frame.shape[:2]
        return [
            EncodedRect(
                0, 0, w, h, self.code, pf.pack(pf.values(frame, x_clear=options.x_clear)).tobytes()
            )
        ]
