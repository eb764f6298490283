"""The customer's clipboard: text only, read and written only while the customer allows.

``base`` is the interface the RFB service uses; ``x11`` implements it with X11
selections (CLIPBOARD, PRIMARY) on its own connection and thread, ``gnome`` through
mutter's remote-desktop session, ``wlroots`` through wlr-data-control (wlroots
compositors, KDE's KWin).
"""

from enkaku.agent.clipboard.base import MAX_TEXT_BYTES, Clipboard, ClipboardError

__all__ = ["MAX_TEXT_BYTES", "Clipboard", "ClipboardError"]
