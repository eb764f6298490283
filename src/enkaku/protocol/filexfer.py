"""File transfer inside a session: stream kinds, their parameters, the few messages
inside the streams, file-name rules and the reasons a transfer is refused.

Wire format (docs/protocol/files.md). Every message is one line of compact UTF-8 JSON
ending in ``\\n`` (at most ``MAX_LINE`` bytes); file bytes are raw.

- ``file_put`` (technician → customer): the agent answers ``{"offset": N}`` (N > 0 when it
  kept a verified part of this very file), the technician sends the bytes
  ``[N, size)`` and EOF, the agent verifies the whole file's SHA-256, renames it into
  place and answers ``{"ok": true, "name": NAME}`` and EOF.
- ``file_get`` (customer → technician): the agent sends
  ``{"name", "size", "sha256", "offset", "mtime"}`` then the bytes ``[offset, size)``
  and EOF. ``offset`` is the one asked for if the technician's ``sha256`` parameter is
  the file's hash, else 0. For a folder it sends ``{"name": "NAME.tar", "archive":
  "tar", "estimate", "offset": 0}``, the tar stream as frames ``length u32 | bytes``, a
  zero length, ``{"size", "sha256", "skipped"}`` and EOF.
- ``browse``: the agent sends one JSON object ``{"path", "entries", "truncated"}``
  and EOF.

Any refusal or failure is a stream RESET whose reason is one of ``REASONS``; ``message``
turns it into the sentence a technician reads. No IO here.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from enkaku.i18n import printable, register, t
from enkaku.protocol.jsonlimits import loads_object

KIND_PUT = "file_put"
KIND_GET = "file_get"
KIND_BROWSE = "browse"
ACTION_PUT = "file_to_customer"
ACTION_GET = "file_from_customer"
ACTION_BROWSE = "browse"

#: Longest message line (the ``file_get`` header carries a 255-byte name, JSON-escaped).
MAX_LINE = 4096
#: Largest ``browse`` answer, and the most entries it lists.
MAX_LISTING = 1 << 20
MAX_ENTRIES = 2000
#: Longest file name, in UTF-8 bytes (ext4, NTFS and APFS all stop at 255).
MAX_NAME_BYTES = 255
#: Longest path parameter (the consent request shows at most 1024 characters).
MAX_PATH = 1024
#: Largest file (far above any disk; only keeps the numbers sane).
MAX_SIZE = 1 << 50
#: Bytes read from disk and handed to the stream at a time.
CHUNK = 256 * 1024

#: Our own hidden temporary files start with this; names starting with it are refused.
TEMP_PREFIX = ".enkaku-"

OsKind = Literal["posix", "windows"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]]
)
_WINDOWS_BAD_CHARS = frozenset('<>:"|?*')

#: What each RESET reason tells the technician (English, Japanese).
_MESSAGES: dict[str, tuple[str, str]] = {
    "name_empty": ("The file name is empty.", "ファイル名が空です。"),
    "name_too_long": (
        "The file name is longer than 255 bytes; rename the file and try again.",
        "ファイル名が 255 バイトを超えています。名前を変更してからやり直してください。",
    ),
    "name_separator": (
        "The file name contains a path separator (/ or \\); give a plain file name.",
        "ファイル名にパス区切り文字 (/ または \\) が含まれています。"
        "ファイル名だけを指定してください。",
    ),
    "name_dots": (
        "The file name may not be '.' or '..'.",
        "ファイル名に '.' や '..' は使えません。",
    ),
    "name_control": (
        "The file name contains control or invisible characters (such as NUL or "
        "direction marks); rename the file and try again.",
        "ファイル名に制御文字や見えない文字 (NUL、書字方向記号など) が含まれています。"
        "名前を変更してからやり直してください。",
    ),
    "name_reserved": (
        "The file name is reserved on the receiving computer (such as CON or NUL on "
        "Windows, or enkaku's own temporary names); rename the file.",
        "ファイル名は受信側のコンピューターで予約されています (Windows の CON や NUL、"
        "enkaku の一時ファイル名など)。名前を変更してください。",
    ),
    "name_bad_char": (
        'The file name contains a character Windows does not allow (< > : " | ? *); '
        "rename the file.",
        'ファイル名に Windows で使えない文字 (< > : " | ? *) が含まれています。'
        "名前を変更してください。",
    ),
    "name_trailing": (
        "The file name ends with a dot or a space, which Windows does not allow; rename the file.",
        "ファイル名がピリオドまたは空白で終わっています。Windows では使えません。"
        "名前を変更してください。",
    ),
    "bad_params": (
        "The transfer request is malformed (a bug in the sending program).",
        "転送要求の形式が正しくありません (送信側プログラムの不具合です)。",
    ),
    "bad_path": (
        "The path must be an absolute path (starting with /).",
        "パスは絶対パス (/ で始まるパス) で指定してください。",
    ),
    "dest_missing": (
        "The destination folder does not exist; choose an existing folder.",
        "保存先フォルダーが存在しません。存在するフォルダーを指定してください。",
    ),
    "dest_not_dir": (
        "The destination is not a folder; choose a folder.",
        "保存先がフォルダーではありません。フォルダーを指定してください。",
    ),
    "dest_symlink": (
        "The destination folder is a symbolic link; give the real folder it points to.",
        "保存先フォルダーはシンボリックリンクです。リンク先の実際のフォルダーを指定してください。",
    ),
    "exists": (
        "A file of that name already exists there; ask again with overwrite to replace it.",
        "同じ名前のファイルがすでに存在します。置き換える場合は上書きを指定してもう一度依頼してください。",
    ),
    "target_not_file": (
        "The name is taken by something that is not a regular file (a folder, a link or "
        "a device); choose another name.",
        "その名前は通常のファイルではないもの (フォルダー、リンク、デバイス) が使用しています。"
        "別の名前にしてください。",
    ),
    "busy": (
        "The same file is already being transferred there; wait for that transfer to end.",
        "同じファイルをすでに転送中です。その転送が終わるまで待ってください。",
    ),
    "disk_full": (
        "There is not enough free space on the receiving disk.",
        "受信側のディスクの空き容量が足りません。",
    ),
    "permission_denied": (
        "Permission denied: the customer's user may not read or write there.",
        "アクセスが拒否されました: お客様のユーザーにはそこを読み書きする権限がありません。",
    ),
    "size_mismatch": (
        "The number of bytes sent differs from the announced size; the file changed "
        "while it was sent. Send it again.",
        "送信されたバイト数が通知されたサイズと異なります。送信中にファイルが変更されました。"
        "もう一度送ってください。",
    ),
    "hash_mismatch": (
        "The received file's SHA-256 does not match the sender's: it was not kept. "
        "The file probably changed during the transfer; send it again.",
        "受信したファイルの SHA-256 が送信側と一致しないため、保存しませんでした。"
        "転送中にファイルが変更された可能性があります。もう一度送ってください。",
    ),
    "io_error": (
        "A disk error stopped the transfer; try again.",
        "ディスクのエラーで転送が止まりました。もう一度試してください。",
    ),
    "not_found": ("No such file or folder.", "そのファイルまたはフォルダーは存在しません。"),
    "is_directory": (
        "Folders cannot be sent as such: make an archive (zip or tar) of the folder and send that.",
        "フォルダーはそのままでは送れません。フォルダーを圧縮ファイル (zip または tar) にして"
        "送ってください。",
    ),
    "not_a_directory": ("That path is not a folder.", "そのパスはフォルダーではありません。"),
    "symlink": (
        "That path is a symbolic link; fetch the file it points to instead.",
        "そのパスはシンボリックリンクです。リンク先のファイルを取得してください。",
    ),
    "not_regular_file": (
        "That path is a device, pipe or socket, not a regular file; it cannot be fetched.",
        "そのパスはデバイス、パイプ、ソケットで、通常のファイルではないため取得できません。",
    ),
    "file_changed": (
        "The customer's file changed while it was being sent; fetch it again.",
        "送信中にお客様のファイルが変更されました。もう一度取得してください。",
    ),
    "resume_mismatch": (
        "The kept partial download does not match; fetch the file again.",
        "保存されていた途中までのダウンロードが一致しません。もう一度取得してください。",
    ),
    "interrupted": (
        "The transfer was interrupted. Start it again: a file resumes where it stopped "
        "(the part already transferred is kept for 24 hours by default).",
        "転送が中断されました。もう一度開始してください。ファイルは中断した所から再開します "
        "(転送済みの部分は既定で 24 時間保存されます)。",
    ),
    "cancelled": ("The transfer was cancelled.", "転送はキャンセルされました。"),
    "consent_required": (
        "The customer has not allowed this transfer.",
        "お客様はこの転送を許可していません。",
    ),
    "unsupported_stream": (
        "The customer's enkaku does not support file transfer; ask them to update it.",
        "お客様の enkaku はファイル転送に対応していません。更新を依頼してください。",
    ),
}

#: Every RESET reason a file stream may carry (plus the registry's two).
REASONS: frozenset[str] = frozenset(_MESSAGES)

register({f"files_err_{reason}": texts for reason, texts in _MESSAGES.items()})
register(
    {
        "files_err_other": (
            "The transfer failed ({reason}).",
            "転送に失敗しました ({reason})。",
        ),
        "files_archive_skipped": (
            "{count} entries of the folder were left out of the archive (unreadable files, "
            "devices, pipes or sockets, or files that shrank while they were read).",
            "フォルダー内の {count} 件をアーカイブに含めませんでした (読めないファイル、"
            "デバイス、パイプ、ソケット、または読み取り中に小さくなったファイル)。",
        ),
    }
)


class Refused(Exception):
    """A transfer is refused or failed; ``reason`` is the RESET reason (one of REASONS)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def message(reason: str, lang: str | None = None) -> str:
    """What a RESET reason means, for the technician, in their language."""
    if reason in REASONS:
        return t(f"files_err_{reason}", lang)
    return t("files_err_other", lang, reason=printable(reason, 64))


def local_os_kind() -> OsKind:
    """The naming rules of the machine this runs on."""
    return "windows" if os.name == "nt" else "posix"


def check_name(name: str, os_kind: OsKind) -> str | None:
    """Why ``name`` may not be created as a file in a folder on ``os_kind``
    (a RESET reason), or None when it may. Applied by the receiving side."""
    if not name:
        return "name_empty"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        return "name_control"
    if len(encoded) > MAX_NAME_BYTES:
        return "name_too_long"
    if "/" in name or "\\" in name:
        return "name_separator"
    if name in (".", ".."):
        return "name_dots"
    # Cc: NUL, ESC, DEL, C1; Cf: bidi overrides, zero-width; Zl/Zp: line separators.
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name):
        return "name_control"
    if name.startswith(TEMP_PREFIX):
        return "name_reserved"
    if os_kind == "windows":
        if any(ch in _WINDOWS_BAD_CHARS for ch in name):
            return "name_bad_char"
        if name[-1] in ". ":
            return "name_trailing"
        if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
            return "name_reserved"
    return None


def is_own_temp(name: str) -> bool:
    """Whether a directory entry is one of our hidden temporary files (never listed)."""
    return name.startswith(TEMP_PREFIX)


# -- parameters ---------------------------------------------------------------------


@dataclass(frozen=True)
class PutParams:
    name: str
    size: int
    sha256: str
    dest: str
    overwrite: bool


@dataclass(frozen=True)
class GetParams:
    path: str
    offset: int
    #: The whole-file hash of the technician's kept part (resume only from a match).
    sha256: str | None


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused("bad_params")
    return value


def _str(value: Any, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise Refused("bad_params")
    return value


def _sha(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise Refused("bad_params")
    return value


def _abs_path(value: Any) -> str:
    path = _str(value, MAX_PATH)
    if not path.startswith("/") or "\x00" in path:
        raise Refused("bad_path")
    return path


def parse_put(params: dict[str, Any]) -> PutParams:
    """The ``file_put`` parameters, type-checked (names are checked by ``check_name``)."""
    overwrite = params.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise Refused("bad_params")
    dest = _str(params.get("dest", ""), MAX_PATH)
    return PutParams(
        name=_str(params.get("name"), 4 * MAX_NAME_BYTES),
        size=_int(params.get("size"), 0, MAX_SIZE),
        sha256=_sha(params.get("sha256")),
        dest=dest if dest == "" else _abs_path(dest),
        overwrite=overwrite,
    )


def parse_get(params: dict[str, Any]) -> GetParams:
    """The ``file_get`` parameters, type-checked."""
    sha = params.get("sha256")
    return GetParams(
        path=_abs_path(params.get("path")),
        offset=_int(params.get("offset", 0), 0, MAX_SIZE),
        sha256=None if sha is None else _sha(sha),
    )


def parse_browse(params: dict[str, Any]) -> str:
    """The ``browse`` path parameter; "" means the customer's home folder."""
    path = _str(params.get("path", ""), MAX_PATH)
    return path if path == "" else _abs_path(path)


# -- messages -----------------------------------------------------------------------


def encode_line(obj: dict[str, Any], limit: int = MAX_LINE) -> bytes:
    """One message: compact JSON and a newline, at most ``limit`` bytes (else ValueError)."""
    line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    if len(line) > limit:
        raise ValueError("message line too long")
    return line


class LineReader:
    """Incremental reader of one message line; the bytes after it are file data."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> tuple[dict[str, Any], bytes] | None:
        """The message and the bytes after it once the line is complete, else None.
        Raises Refused("bad_params") for a line over MAX_LINE or that is not a JSON object."""
        self._buf += data
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > MAX_LINE:
                raise Refused("bad_params")
            return None
        if end + 1 > MAX_LINE:
            raise Refused("bad_params")
        try:
            obj = loads_object(bytes(self._buf[:end]), max_bytes=MAX_LINE)
        except Exception:
            raise Refused("bad_params") from None
        return obj, bytes(self._buf[end + 1 :])


@dataclass(frozen=True)
class GetHeader:
    name: str
    size: int
    sha256: str
    offset: int
    mtime: float

    def encode(self) -> bytes:
        return encode_line(
            {
                "name": self.name,
                "size": self.size,
                "sha256": self.sha256,
                "offset": self.offset,
                "mtime": self.mtime,
            }
        )

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> GetHeader:
        size = _int(obj.get("size"), 0, MAX_SIZE)
        mtime = obj.get("mtime", 0.0)
        if isinstance(mtime, bool) or not isinstance(mtime, (int, float)):
            raise Refused("bad_params")
        return cls(
            name=_str(obj.get("name"), 4 * MAX_NAME_BYTES),
            size=size,
            sha256=_sha(obj.get("sha256")),
            offset=_int(obj.get("offset"), 0, size),
            mtime=float(mtime),
        )


#: Largest chunk of a folder's tar stream.
MAX_FRAME = 1 << 20


def frame(data: bytes) -> bytes:
    """One chunk of a folder's tar stream: ``length u32 | bytes`` (length 0 ends it)."""
    return len(data).to_bytes(4, "big") + data


@dataclass(frozen=True)
class ArchiveHeader:
    """First message of a ``file_get`` of a folder: a tar stream follows."""

    name: str
    #: The regular files' total size, for progress (the tar is a little larger).
    estimate: int

    def encode(self) -> bytes:
        return encode_line(
            {"name": self.name, "archive": "tar", "estimate": self.estimate, "offset": 0}
        )

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ArchiveHeader:
        if obj.get("archive") != "tar":
            raise Refused("bad_params")
        return cls(
            _str(obj.get("name"), 4 * MAX_NAME_BYTES), _int(obj.get("estimate"), 0, MAX_SIZE)
        )


@dataclass(frozen=True)
class Trailer:
    """Last message of a folder's tar stream: what was sent, and entries left out."""

    size: int
    sha256: str
    skipped: int

    def encode(self) -> bytes:
        return frame(b"") + encode_line(
            {"size": self.size, "sha256": self.sha256, "skipped": self.skipped}
        )


class FramedReader:
    """Incremental reader of a folder's tar stream: chunks, then the ``Trailer``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: LineReader | None = None
        self.trailer: Trailer | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """The tar bytes completed by ``data``; ``trailer`` is set once it arrived.
        Raises Refused("bad_params") on a bad frame or anything after the trailer."""
        if self.trailer is not None:
            if data:
                raise Refused("bad_params")
            return []
        self._buf += data
        out: list[bytes] = []
        while self._lines is None:
            if len(self._buf) < 4:
                return out
            n = int.from_bytes(self._buf[:4], "big")
            if n > MAX_FRAME:
                raise Refused("bad_params")
            if n == 0:
                del self._buf[:4]
                self._lines = LineReader()
            elif len(self._buf) < 4 + n:
                return out
            else:
                out.append(bytes(self._buf[4 : 4 + n]))
                del self._buf[: 4 + n]
        got = self._lines.feed(bytes(self._buf))
        self._buf.clear()
        if got is not None:
            obj, rest = got
            if rest:
                raise Refused("bad_params")
            self.trailer = Trailer(
                _int(obj.get("size"), 0, MAX_SIZE),
                _sha(obj.get("sha256")),
                _int(obj.get("skipped"), 0, MAX_SIZE),
            )
        return out


def parse_offset(obj: dict[str, Any], size: int) -> int:
    """The agent's first ``file_put`` message: where to start sending."""
    return _int(obj.get("offset"), 0, size)


def parse_listing(data: bytes) -> tuple[str, list[dict[str, Any]], bool]:
    """A ``browse`` answer: the folder, its entries (checked), whether it was cut short."""
    try:
        obj = loads_object(data, max_bytes=MAX_LISTING)
    except Exception:
        raise Refused("bad_params") from None
    entries = obj.get("entries")
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise Refused("bad_params")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") not in ENTRY_TYPES:
            raise Refused("bad_params")
        mtime = entry.get("mtime")
        if isinstance(mtime, bool) or not isinstance(mtime, (int, float)):
            raise Refused("bad_params")
        out.append(
            {
                "name": _str(entry.get("name"), 4 * MAX_NAME_BYTES),
                "type": entry["type"],
                "size": _int(entry.get("size"), 0, MAX_SIZE),
                "mtime": float(mtime),
            }
        )
    truncated = obj.get("truncated")
    if not isinstance(truncated, bool):
        raise Refused("bad_params")
    return _str(obj.get("path"), MAX_PATH), out, truncated


#: ``browse`` entry types: regular file, folder, symbolic link, anything else.
ENTRY_TYPES = frozenset({"file", "dir", "link", "other"})
