"""The server's start page at "/": what this server is and how to connect to it.

Technicians are pointed to the web console at /console/ (sign-in there); the
command-line way is shown too, in English and Japanese.
"""

from __future__ import annotations

import html

from aiohttp import web

from enkaku import __version__

from .services import SERVICES

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>enkaku</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 3rem auto; padding: 0 1rem;
       color: #1d2733; line-height: 1.5; }}
code, pre {{ background: #eef2f6; border-radius: 4px; padding: .1rem .3rem; }}
pre {{ padding: .8rem; overflow-x: auto; }}
.muted {{ color: #5b6775; }}
</style></head>
<body>
<h1>enkaku <span class="muted">遠隔</span></h1>
<p>Remote support server {version} &middot; {online} agent(s) online /
リモートサポートサーバー {version} &middot; オンラインのエージェント {online} 台</p>
<h2>Connect to a customer / お客様に接続する</h2>
<p><a href="/console/">Open the technician console</a>: sign in with your user name,
password and authenticator code, then connect to the customer's ID in the browser.<br>
<a href="/console/">技術者コンソールを開く</a>: ユーザー名、パスワード、認証アプリのコードで
サインインし、ブラウザーでお客様の ID に接続します。</p>
<p>Or use the enkaku command line; it serves the customer's screen to any VNC viewer.<br>
または enkaku コマンドを使ってください。お客様の画面を任意の VNC ビューアーで表示できます。</p>
<pre>enkaku login --server {server} --user NAME
enkaku connect ID --vnc-listen 127.0.0.1:5901
xtigervncviewer 127.0.0.1::5901</pre>
<h2>For customers / お客様へ</h2>
<p><a href="/download/agent">サポート用プログラムのダウンロード</a>: Debian / Ubuntu で
<code>sudo apt install python3-tk libsodium23</code> を実行してから、ダウンロードしたファイルを
<code>python3 enkaku-agent-py311.pyz</code> で起動してください (Ubuntu 24.04 では py312)。<br>
<a href="/download/agent">Download the support program</a>: install <code>python3-tk</code> and
<code>libsodium23</code>, then run <code>python3 enkaku-agent-py311.pyz</code>.</p>
<p class="muted">API: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a></p>
</body></html>
"""


async def home(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    server = svc.settings.public_url or str(request.url.origin())
    body = _PAGE.format(
        version=html.escape(__version__),
        online=await svc.presence.online_count(),
        server=html.escape(server),
    )
    resp = web.Response(text=body, content_type="text/html")
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return resp
