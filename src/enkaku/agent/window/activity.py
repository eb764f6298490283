"""What the session's services did, as the customer sees it: transfers in progress for the
banner ("Receiving printer.deb: 45 %") and what was done for the end summary (files
received and sent, screenshots taken).

Fed on the Tk thread with the services' ``(kind, info)`` (``services.Activity``). File
names stay on this machine: they are shown here and never sent anywhere.
"""

from __future__ import annotations

from typing import Any

from enkaku.i18n import printable, register, t

from ..consent import human_size

register(
    {
        "window_activity_receiving": (
            "Receiving {name}: {percent} %",
            "受信中 {name}: {percent} %",
        ),
        "window_activity_sending": ("Sending {name}: {percent} %", "送信中 {name}: {percent} %"),
        "window_activity_done": ("What was done:", "行われたこと:"),
        "window_activity_received": (
            "File received: {name} ({size})",
            "受信したファイル: {name} ({size})",
        ),
        "window_activity_sent": ("File sent: {name} ({size})", "送信したファイル: {name} ({size})"),
        "window_activity_screenshot": (
            "Screenshot taken ({width} × {height})",
            "スクリーンショット撮影 ({width} × {height})",
        ),
    }
)

#: Entries kept for the summary (a long session lists its last ones).
DONE_KEPT = 50


class ActivityLog:
    """One session's transfers in progress and what was done (Tk thread only)."""

    def __init__(self) -> None:
        self.live: dict[int, dict[str, Any]] = {}
        self.done: list[tuple[str, dict[str, Any]]] = []

    def add(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "screenshot":
            self._keep("window_activity_screenshot", info)
        elif kind == "transfer":
            state = info.get("state")
            if state in ("start", "progress"):
                self.live[int(info["id"])] = info
                return
            self.live.pop(int(info["id"]), None)
            if state == "done":
                received = info.get("direction") == "receive"
                self._keep("window_activity_received" if received else "window_activity_sent", info)

    def _keep(self, key: str, info: dict[str, Any]) -> None:
        self.done.append((key, info))
        del self.done[:-DONE_KEPT]

    def live_text(self, lang: str) -> str:
        """One line per transfer in progress."""
        lines = []
        for info in self.live.values():
            key = "window_activity_receiving" if info["direction"] == "receive" else (
                "window_activity_sending"
            )  # fmt: skip
            percent = int(info["done"]) * 100 // max(1, int(info["size"]))
            lines.append(t(key, lang, name=printable(str(info["name"]), 80), percent=percent))
        return "\n".join(lines)

    def done_text(self, lang: str) -> str:
        """The summary's list of what was done ("" when nothing was)."""
        if not self.done:
            return ""
        lines = [t("window_activity_done", lang)]
        for key, info in self.done:
            if key == "window_activity_screenshot":
                lines.append("• " + t(key, lang, width=info["width"], height=info["height"]))
            else:
                name, size = printable(str(info["name"]), 80), human_size(int(info["size"]), lang)
                lines.append("• " + t(key, lang, name=name, size=size))
        return "\n".join(lines)
