"""The one-file agent for customers: /download/agent and /download/agent/{name}.

The administrator builds the files with `scripts/build-agent` (one shiv zip application
per Python version) and points the server at their folder (`--agent-dir`). Each download
is a copy with one member appended, ``enkaku-agent.json`` (enkaku.agent.preconfig): this
server's URL, the CA of `--agent-ca-file` when its certificate comes from a private CA,
and the enrolment code of a per-customer link (``?code=``). The copy is never written
to disk: the response is the built file up to its central directory, then the new
member and a new central directory made in memory (`appended`), so a per-customer link
costs no more than any other download.
"""

from __future__ import annotations

import asyncio
import html
import io
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from aiohttp import web

from enkaku.agent.preconfig import CONFIG_MEMBER, PreConfig

from .services import SERVICES
from .settings import Settings

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger(__name__)

#: File names scripts/build-agent writes: enkaku-agent-py311.pyz, -py312.pyz, ...
NAME = re.compile(r"enkaku-agent-py3(\d{1,2})\.pyz")
#: An enrolment code as a link may carry it (records issue): short, URL-safe.
CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Bytes of the built file read and sent at a time.
CHUNK = 1024 * 1024


class AgentFiles:
    """The built files in ``agent_dir``."""

    def __init__(self, agent_dir: Path | None) -> None:
        self.agent_dir = agent_dir

    def listing(self) -> list[tuple[str, str, int]]:
        """(file name, "3.11", size in bytes) per built file, oldest Python first."""
        if self.agent_dir is None or not self.agent_dir.is_dir():
            return []
        found = []
        for path in self.agent_dir.iterdir():
            match = NAME.fullmatch(path.name)
            if match and path.is_file():
                found.append((int(match[1]), path.name, path.stat().st_size))
        return [(name, f"3.{minor}", size) for minor, name, size in sorted(found)]


class _Overlay(io.RawIOBase):
    """A zip file as zipfile's append mode sees it, with every write kept in memory.

    Append mode reads the central directory, then writes from its start onwards: the new
    member, the whole central directory again, the end record, and truncates. So the
    appended file is ``base[:cut] + tail``, where ``cut`` is the first write's position,
    and the built file itself is never written.
    """

    def __init__(self, base: BinaryIO, size: int) -> None:
        self.base, self.size = base, size
        self.pos = 0
        self.cut = size
        self.tail = bytearray()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        end = self.cut + len(self.tail)
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: end}[whence] + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int | None = -1) -> bytes:
        end = self.cut + len(self.tail)
        stop = end if size is None or size < 0 else min(end, self.pos + size)
        out = b""
        if self.pos < min(stop, self.cut):
            self.base.seek(self.pos)
            out = self.base.read(min(stop, self.cut) - self.pos)
        if stop > self.cut:
            out += bytes(self.tail[max(self.pos, self.cut) - self.cut : stop - self.cut])
        self.pos += len(out)
        return out

    def write(self, data: ReadableBuffer) -> int:
        if not self.tail and self.cut == self.size:
            self.cut = self.pos  # the first write: everything after it is rewritten
        if self.pos < self.cut:
            raise OSError("zipfile wrote before the central directory")
        offset = self.pos - self.cut
        chunk = bytes(data)
        self.tail[offset : offset + len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def truncate(self, size: int | None = None) -> int:
        end = self.pos if size is None else size
        del self.tail[max(0, end - self.cut) :]
        return end


def appended(base: BinaryIO, size: int, name: str, data: bytes) -> tuple[int, bytes]:
    """(cut, tail) such that ``base[:cut] + tail`` is ``base`` with member ``name`` added."""
    overlay = _Overlay(base, size)
    with zipfile.ZipFile(overlay, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return overlay.cut, bytes(overlay.tail)


AGENT_FILES: web.AppKey[AgentFiles] = web.AppKey("agent_files", AgentFiles)


def setup_downloads(app: web.Application, settings: Settings) -> None:
    """Add the download routes."""
    app[AGENT_FILES] = AgentFiles(settings.agent_dir)
    app.router.add_get("/download/agent", download_page)
    app.router.add_get("/download/agent/{name}", download_file)


def _server_url(request: web.Request) -> str:
    settings = request.app[SERVICES].settings
    return settings.public_url.rstrip("/") or str(request.url.origin())


def _code(request: web.Request) -> str:
    code = request.query.get("code", "")
    if code and not CODE.fullmatch(code):
        raise web.HTTPBadRequest(
            text="The enrolment code in this link is not valid; ask the support company for "
            "a new link.\nこのリンクの登録コードは無効です。サポート会社に新しいリンクを"
            "お尋ねください。\n"
        )
    return code


async def download_file(request: web.Request) -> web.StreamResponse:
    files = request.app[AGENT_FILES]
    name = request.match_info["name"]
    if name not in {entry[0] for entry in files.listing()}:
        raise web.HTTPNotFound(
            text="No such agent file; see /download/agent.\n"
            "そのファイルはありません。/download/agent をご覧ください。\n"
        )
    settings = request.app[SERVICES].settings
    ca_pem = ""
    if settings.agent_ca_file is not None:
        ca_pem = await asyncio.to_thread(settings.agent_ca_file.read_text)
    config = PreConfig(server=_server_url(request), ca_pem=ca_pem, code=_code(request))
    assert files.agent_dir is not None  # listing() is empty without it
    # One open file for the whole response: a rebuild meanwhile cannot mix two builds.
    fh = await asyncio.to_thread(open, files.agent_dir / name, "rb")
    with fh:
        size = os.fstat(fh.fileno()).st_size
        cut, tail = await asyncio.to_thread(appended, fh, size, CONFIG_MEMBER, config.to_json())
        log.info("agent download %s", name)  # not the code: it names a customer
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{name}"',
            }
        )
        resp.content_length = cut + len(tail)
        await resp.prepare(request)
        fh.seek(0)
        left = cut
        while left:
            chunk = await asyncio.to_thread(fh.read, min(left, CHUNK))
            if not chunk:
                raise ConnectionResetError("the agent file shrank while it was sent")
            await resp.write(chunk)
            left -= len(chunk)
        await resp.write(tail)
        await resp.write_eof()
    return resp


_PAGE = """<!doctype html>
<html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>enkaku agent / サポート用プログラム</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 3rem auto; padding: 0 1rem;
       color: #1d2733; line-height: 1.5; }}
code, pre {{ background: #eef2f6; border-radius: 4px; padding: .1rem .3rem; }}
pre {{ padding: .8rem; overflow-x: auto; }}
td {{ padding: .2rem .8rem .2rem 0; }}
.muted {{ color: #5b6775; }}
</style></head>
<body>
<h1>サポート用プログラム <span class="muted">/ Support program</span></h1>
{body}
<p class="muted"><a href="/">enkaku</a></p>
</body></html>
"""

_HOW = """<p>サポート担当者があなたの画面を見て操作できるようにするプログラムです。接続するたびに
あなたの許可が必要で、いつでも終了できます。<br>
This program lets the support technician see and operate your screen. Every connection
needs your permission, and you can end it at any time.</p>
<h2>1. 必要なパッケージ / Packages needed</h2>
<p>Debian / Ubuntu では一度だけ次を実行してください (管理者のパスワードが必要です)。<br>
On Debian or Ubuntu, once (needs the administrator's password):</p>
<pre>sudo apt install python3 python3-tk libsodium23</pre>
<p>GNOME や KDE などの Wayland デスクトップ (Ubuntu と Fedora の標準) では、画面の取得に
GStreamer の PipeWire プラグインも必要です。<br>
On a Wayland desktop such as GNOME or KDE (the default on Ubuntu and Fedora), the screen
is read through GStreamer's PipeWire plugin; install it too:</p>
<pre>sudo apt install gstreamer1.0-pipewire gstreamer1.0-plugins-base   # Debian / Ubuntu
sudo dnf install pipewire-gstreamer gstreamer1-plugins-base        # Fedora</pre>
<p>KDE など GNOME 以外の Wayland デスクトップでは、画面共有ポータルも使います。通常は
デスクトップと一緒に入っていますが、ない場合は次を実行してください。<br>
Other Wayland desktops such as KDE also use the desktop's screen-sharing portal. It is
usually installed with the desktop; if it is missing:</p>
<pre>sudo apt install xdg-desktop-portal xdg-desktop-portal-kde   # KDE: Debian / Ubuntu
sudo dnf install xdg-desktop-portal-kde                      # KDE: Fedora</pre>
<h2>2. ダウンロード / Download</h2>
<p>お使いの Python のバージョンに合ったファイルを選んでください。バージョンは
<code>python3 --version</code> で確認できます (Debian 12: 3.11、Ubuntu 24.04: 3.12)。<br>
Choose the file for your Python version (<code>python3 --version</code> shows it;
Debian 12: 3.11, Ubuntu 24.04: 3.12).</p>
<table>{rows}</table>
<h2>3. 起動 / Start</h2>
<p>ダウンロードしたフォルダーで端末を開き、次を実行してください。表示される ID とパスワードを
サポート担当者に伝えてください。<br>
Open a terminal in the download folder and run the following; read the ID and password it
shows to the technician.</p>
<pre>python3 {example}</pre>
"""

_NOT_BUILT = """<p>このサーバーにはまだダウンロード用のファイルがありません。サポート会社に
お問い合わせください。<br>
This server has no agent files to download yet; please contact the support company.</p>
<p class="muted">Administrator: build them with <code>scripts/build-agent</code> and start the
server with <code>--agent-dir dist/agent</code> (or <code>ENKAKU_AGENT_DIR</code>);
docs/operations.md.<br>
管理者の方へ: <code>scripts/build-agent</code> でファイルを作り、サーバーを
<code>--agent-dir dist/agent</code> (または <code>ENKAKU_AGENT_DIR</code>) 付きで起動して
ください。</p>
"""


async def download_page(request: web.Request) -> web.Response:
    files = request.app[AGENT_FILES].listing()
    code = _code(request)
    query = f"?code={code}" if code else ""  # CODE allows only URL-safe characters
    if files:
        rows = "".join(
            f'<tr><td><a href="/download/agent/{html.escape(name)}{query}">'
            f"{html.escape(name)}</a></td><td>Python {python}</td>"
            f"<td>{size / 1e6:.1f} MB</td></tr>"
            for name, python, size in files
        )
        body = _HOW.format(rows=rows, example=html.escape(files[0][0]))
    else:
        body = _NOT_BUILT
    resp = web.Response(text=_PAGE.format(body=body), content_type="text/html")
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return resp
