"""The public page /terms: the terms of use in force and any version announced next.

The support company's terms promise that a change is published on the web site at least
a month before it takes effect; this page is that publication. Both languages, every
server-held text escaped, the same Content-Security-Policy as the start page.
"""

from __future__ import annotations

import html

from aiohttp import web

from enkaku.protocol.terms import Terms

from .services import SERVICES
from .terms import terms_today, to_terms

#: As the start page's (home.py): no scripts, no requests, inline styles only.
CSP = "default-src 'none'; style-src 'unsafe-inline'"

_PAGE = """<!doctype html>
<html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Terms of use / 利用規約</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 3rem auto; padding: 0 1rem;
       color: #1d2733; line-height: 1.5; }}
.text {{ white-space: pre-wrap; background: #f6f8fa; border-radius: 4px; padding: .8rem; }}
.muted {{ color: #5b6775; }}
</style></head>
<body>
<h1>利用規約 <span class="muted">Terms of use</span></h1>
{sections}
</body></html>
"""

_NONE = """<p>現在、公開されている利用規約はありません。<br>
No terms of use are published on this server.</p>"""


def _section(terms: Terms, in_force: bool) -> str:
    v, eff, pub = (
        html.escape(x) for x in (terms.version, str(terms.effective), str(terms.published))
    )
    if in_force:
        title = f"現行の規約 第 {v} 版 / In force: version {v}"
        dates = f"{eff} から有効 (公開 {pub}) / in force since {eff} (published {pub})"
    else:
        title = f"改定予定 第 {v} 版 / Upcoming: version {v}"
        dates = f"{eff} から有効になります (公開 {pub}) / takes effect on {eff} (published {pub})"
    ja, en = html.escape(terms.text["ja"]), html.escape(terms.text["en"])
    return (
        f'<section id="v-{v}"><h2>{title}</h2><p class="muted">{dates}</p>'
        f'<h3 lang="ja">日本語</h3><div class="text" lang="ja">{ja}</div>'
        f'<h3 lang="en">English</h3><div class="text" lang="en">{en}</div>'
        "</section>"
    )


async def terms_page(request: web.Request) -> web.Response:
    store = request.app[SERVICES].store
    in_force, upcoming = await store.current_terms(terms_today())
    parts = [_section(to_terms(row), row is in_force) for row in (in_force, upcoming) if row]
    body = _PAGE.format(sections="\n".join(parts) or _NONE)
    resp = web.Response(text=body, content_type="text/html")
    resp.headers["Content-Security-Policy"] = CSP
    return resp
