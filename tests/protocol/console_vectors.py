"""Recorded bytes and tables the web console's service clients are tested against.

The console's TypeScript clients (console/src/services/) speak the same stream formats
as ``enkaku.technician``. This module produces, from the Python modules themselves, the
bytes an agent sends and the answers of the Python helpers (name checks, byte sizes,
the report's JSON export), and the label tables of the system information report:

- ``console/test/services/vectors.json`` (read by the Vitest tests),
- ``console/src/services/sysinfo-labels.json`` and ``messages.json`` (shipped in the
  console: the report's labels, and the technician's error messages of the services).

``test_console_vectors.py`` fails when either file differs from what this module makes
now; regenerate them with ``.venv/bin/python -m tests.protocol.console_vectors``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "console" / "test" / "services" / "vectors.json"
LABELS = ROOT / "console" / "src" / "services" / "sysinfo-labels.json"
MESSAGES = ROOT / "console" / "src" / "services" / "messages.json"
#: The catalog keys the console's service clients show (Python's own wording).
MESSAGE_PREFIXES = ("files_err_", "typetext_err_", "screenshot_", "sysinfo_fetch_")
MESSAGE_KEYS = ("terminal_root", "terminal_refused", "terminal_no_status")

#: Names checked by both check_name implementations, with each OS's rules.
NAMES = [
    "report.pdf",
    "",
    "a/b",
    "a\\b",
    ".",
    "..",
    "x" * 255,
    "x" * 256,
    "あ" * 85,
    "あ" * 86,
    "bad\x00name",
    "esc\x1b",
    "del\x7f",
    "c1\x85",
    "rtl\u202efdp.exe",
    "zero\u200bwidth",
    "line\u2028sep",
    ".enkaku-0123.part",
    "CON",
    "con.txt",
    "COM1.log",
    "lpt9",
    "COM¹",
    "CONIN$",
    "a<b",
    'quote"d',
    "pipe|",
    "ask?",
    "star*",
    "colon:",
    "ends.",
    "ends ",
    "日本語のファイル名.txt",
    "emoji 😀.png",
]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def terminal_vectors() -> dict[str, Any]:
    from enkaku.protocol import terminal as wire

    hello = wire.Hello(user="山田", uid=1000, root=False, shell="/bin/bash")
    return {
        "hello": _b64(bytes(hello)),
        "hello_fields": {"user": "山田", "uid": 1000, "root": False, "shell": "/bin/bash"},
        "data": _b64(wire.frame(wire.FrameType.DATA, b"ls -l\r")),
        # 64 KiB + 3 bytes typed at once: two DATA frames (too long to record whole).
        "data_two_sha256": hashlib.sha256(wire.data_frames(b"y" * (wire.MAX_DATA + 3))).hexdigest(),
        "resize": _b64(wire.resize_frame(132, 43)),
        "exit_0": _b64(wire.exit_frame(0)),
        "exit_129": _b64(wire.exit_frame(129)),
        "exit_negative": _b64(wire.exit_frame(-2)),
    }


def files_vectors() -> dict[str, Any]:
    from enkaku.agent.sysinfo.findings import human_bytes
    from enkaku.protocol import filexfer as fx

    sha = "ab" * 32
    listing = {
        "path": "/home/山田",
        "entries": [
            {"name": "文書", "type": "dir", "size": 0, "mtime": 1764400000.5},
            {"name": "a.txt", "type": "file", "size": 12, "mtime": 1764400001.25},
        ],
        "truncated": False,
    }
    return {
        "offset_line": _b64(fx.encode_line({"offset": 5})),
        "ok_line": _b64(fx.encode_line({"ok": True, "name": "報告 (1).txt"})),
        "get_header": _b64(
            fx.GetHeader(name="ログ.txt", size=10, sha256=sha, offset=4, mtime=1.5).encode()
        ),
        "archive_header": _b64(fx.ArchiveHeader(name="dir.tar", estimate=2048).encode()),
        "frame": _b64(fx.frame(b"tar-bytes")),
        "trailer": _b64(fx.Trailer(size=9, sha256=sha, skipped=2).encode()),
        "listing": _b64(fx.encode_line(listing, fx.MAX_LISTING)),
        "listing_parsed": {
            "path": listing["path"],
            "entries": listing["entries"],
            "truncated": False,
        },
        "names": [
            {
                "name": name,
                "posix": fx.check_name(name, "posix"),
                "windows": fx.check_name(name, "windows"),
            }
            for name in NAMES
        ],
        "human_bytes": [
            [n, human_bytes(n)] for n in (0, 1023, 1024, 1536, 10 << 20, 5 << 40, 3 << 50)
        ],
    }


def screenshot_vectors() -> dict[str, Any]:
    from enkaku.agent.services.screenshot import encode_png

    rng = np.random.default_rng(8)
    frame = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)  # B, G, R, X
    png = encode_png(frame)
    rgb = frame[:, :, 2::-1]
    return {"png": _b64(png), "width": 5, "height": 7, "rgb": _b64(rgb.tobytes())}


def sysinfo_vectors() -> dict[str, Any]:
    from enkaku.agent.sysinfo.report import to_json

    report: dict[str, Any] = {
        "format": "enkaku.system_info/1",
        "collected_at": "2026-11-29T11:17:00+00:00",
        "duration_s": 0.73,
        "sections": {
            "memory": {"ok": True, "data": {"total": 8589934592, "available": 429496729}},
            "services": {"ok": False, "why": {"en": "no systemd", "ja": "systemd なし"}},
        },
        "findings": [
            {
                "id": "memory_low",
                "severity": "critical",
                "title": {"en": "Memory is low", "ja": "メモリ不足"},
                "explanation": {"en": "Close programs.", "ja": "プログラムを閉じてください。"},
                "evidence": {"available": 429496729, "percent": 4.9},
            }
        ],
    }
    return {"report": report, "json": to_json(report)}


def type_text_vectors() -> dict[str, Any]:
    from enkaku.agent.services import typetext

    return {"done_line": _b64(typetext.done_line(7)), "max_chars": typetext.MAX_CHARS}


def vectors() -> dict[str, Any]:
    return {
        "_comment": "Generated by tests/protocol/console_vectors.py from the Python modules.",
        "terminal": terminal_vectors(),
        "files": files_vectors(),
        "screenshot": screenshot_vectors(),
        "sysinfo": sysinfo_vectors(),
        "type_text": type_text_vectors(),
    }


def labels() -> dict[str, Any]:
    from enkaku.agent.sysinfo import labels as lab
    from enkaku.agent.sysinfo.collect import GROUPS
    from enkaku.i18n import CATALOG

    strings = {
        key.removeprefix("sysinfo_"): list(CATALOG[key])
        for key in (
            "sysinfo_title",
            "sysinfo_findings",
            "sysinfo_no_findings",
            "sysinfo_collected",
            "sysinfo_evidence",
            "sysinfo_severity_critical",
            "sysinfo_severity_warning",
            "sysinfo_severity_info",
            "sysinfo_yes",
            "sysinfo_no",
            "sysinfo_none",
            "sysinfo_unavailable",
        )
    }
    return {
        "_comment": "Generated by tests/protocol/console_vectors.py from "
        "src/enkaku/agent/sysinfo/labels.py and report.py: [English, Japanese].",
        "group_sections": {g: list(names) for g, names in GROUPS.items()},
        "groups": {k: list(v) for k, v in lab.GROUPS.items()},
        "sections": {k: list(v) for k, v in lab.SECTIONS.items()},
        "fields": {k: list(v) for k, v in lab.FIELDS.items()},
        "byte_fields": sorted(lab.BYTE_FIELDS),
        "strings": strings,
    }


def messages() -> dict[str, Any]:
    import enkaku.technician.files
    import enkaku.technician.screenshot
    import enkaku.technician.sysinfo
    import enkaku.technician.terminal
    import enkaku.technician.typetext  # noqa: F401  (each registers its messages)
    from enkaku.i18n import CATALOG

    keys = [k for k in CATALOG if k.startswith(MESSAGE_PREFIXES) or k in MESSAGE_KEYS]
    return {
        "_comment": "Generated by tests/protocol/console_vectors.py from enkaku.i18n's "
        "catalog: [English, Japanese].",
        **{k: list(CATALOG[k]) for k in sorted(keys)},
    }


def render(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"


def main() -> int:
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    VECTORS.write_text(render(vectors()), encoding="utf-8")
    LABELS.write_text(render(labels()), encoding="utf-8")
    MESSAGES.write_text(render(messages()), encoding="utf-8")
    print("wrote", *(p.relative_to(ROOT) for p in (VECTORS, LABELS, MESSAGES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
