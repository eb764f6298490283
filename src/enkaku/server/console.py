"""The web console on the server side: its cookie sign-in (cookie, CSRF, the TLS rule)
and the static pages Vite built, served under /console/ with strict headers.

docs/console-auth.md names every decision made here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import mimetypes
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from .api.framework import ApiError
from .preauth import peer_address
from .services import SERVICES
from .settings import Settings
from .store.models import ConsoleSession, Technician

#: The console sign-in cookie (HttpOnly, SameSite=Strict, Path=/; Secure over TLS).
COOKIE = "enkaku_console"
#: The header every cookie-authenticated request other than GET/HEAD must carry.
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The built console's default place: the package's static files (git-ignored, built by
#: scripts/bootstrap).
DEFAULT_DIR = Path(__file__).parent / "console_static"
#: The console session a request was authenticated with (cookie authentication only).
CONSOLE_SESSION: web.RequestKey[ConsoleSession] = web.RequestKey("console_session", ConsoleSession)

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("image/svg+xml", ".svg")
mimetypes.add_type("application/wasm", ".wasm")


def idle_timeout(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.console_idle_minutes)


def lifetime(settings: Settings) -> timedelta:
    return timedelta(hours=settings.console_lifetime_hours)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def is_https(request: web.Request, settings: Settings) -> bool:
    """Whether the client reached us over TLS: our own listener's, or behind a trusted
    proxy the scheme it reports (X-Forwarded-Proto, last value), else public_url's."""
    if request.secure:
        return True
    if settings.behind_proxy:
        protos = request.headers.getall("X-Forwarded-Proto", [])
        if protos:
            return protos[-1].split(",")[-1].strip().lower() == "https"
        return settings.public_url.startswith("https://")
    return False


def plain_http_refused(request: web.Request, settings: Settings) -> bool:
    """The TLS rule: the console and its sign-in only over TLS, except for a client on
    loopback (the machine the server runs on)."""
    if is_https(request, settings):
        return False
    return not _is_loopback(peer_address(request, settings.behind_proxy))


def csrf_token(cookie: str) -> str:
    """The console session's CSRF token, derived from the cookie value (HMAC-SHA-256):
    nothing more to store, and the page cannot compute it without the server (the cookie
    is HttpOnly), only read it from the sign-in answer or GET /api/v1/auth/console."""
    return hmac.new(cookie.encode(), b"enkaku-console-csrf", hashlib.sha256).hexdigest()


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def own_origins(request: web.Request, settings: Settings) -> set[str]:
    """The origins this server's own pages have: the one the request was made to, and
    public_url's."""
    scheme = "https" if is_https(request, settings) else "http"
    found = {f"{scheme}://{request.host.lower()}"}
    if settings.public_url:
        public = _origin(settings.public_url)
        if public:
            found.add(public)
    return found


def same_origin(request: web.Request, settings: Settings) -> bool:
    """The request carries exactly one Origin header, one of our own (login CSRF and
    cross-site requests refused)."""
    values = request.headers.getall("Origin", [])
    return len(values) == 1 and values[0].strip().lower() in own_origins(request, settings)


def set_cookie(resp: web.StreamResponse, value: str, *, secure: bool) -> None:
    # A browser-session cookie (no Max-Age): closing the browser signs out too; the
    # server ends it after the idle time or the lifetime anyway.
    resp.set_cookie(COOKIE, value, path="/", httponly=True, samesite="Strict", secure=secure)


def clear_cookie(resp: web.StreamResponse, *, secure: bool) -> None:
    resp.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=secure)


async def authenticate_cookie(request: web.Request) -> Technician | None:
    """The technician of the request's console cookie, or None; a cookie-authenticated
    request with a method other than GET/HEAD must carry the session's CSRF token and a
    same-origin Origin header, else 403 ``csrf_failed``."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    svc = request.app[SERVICES]
    if plain_http_refused(request, svc.settings):
        return None
    found = await svc.store.console_session(raw, idle_timeout(svc.settings))
    if found is None:
        return None
    session, tech = found
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not (
            hmac.compare_digest(sent.encode(), csrf_token(raw).encode())
            and same_origin(request, svc.settings)
        ):
            raise ApiError(403, "csrf_failed")
    request[CONSOLE_SESSION] = session
    return tech


# -- the static console ------------------------------------------------------------------


def content_security_policy(request: web.Request, settings: Settings) -> str:
    """No inline script, nothing framed, connections only to this server (its API and
    its relay WebSockets, at the request's host and at public_url's)."""
    connect = ["'self'"]
    for origin in sorted(own_origins(request, settings)):
        ws = "wss" + origin[5:] if origin.startswith("https") else "ws" + origin[4:]
        if ws not in connect:
            connect.append(ws)
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data: blob:; connect-src {' '.join(connect)}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )


def _headers(resp: web.StreamResponse, request: web.Request, settings: Settings) -> None:
    resp.headers["Content-Security-Policy"] = content_security_policy(request, settings)
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"


_PAGE = """<!doctype html>
<html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 3rem auto; padding: 0 1rem;
       color: #1d2733; line-height: 1.5; }}
code {{ background: #eef2f6; border-radius: 4px; padding: .1rem .3rem; }}
</style></head>
<body>
{body}
</body></html>
"""

_HTTPS_REQUIRED = _PAGE.format(
    title="HTTPS が必要です / HTTPS required",
    body="""<h1 lang="ja">HTTPS で接続してください</h1>
<p lang="ja">技術者コンソールは暗号化された接続 (https://) でのみ使用できます。
アドレスを https:// で始めて開き直してください。このサーバーのコンピューター上 (ループバック)
からのみ http:// を使えます。</p>
<h1 lang="en">Use HTTPS</h1>
<p lang="en">The technician console is served only over an encrypted connection (https://).
Open the address again starting with https://. Plain http:// works only on the server's
own machine (loopback).</p>""",
)

_NOT_BUILT = _PAGE.format(
    title="コンソール未ビルド / Console not built",
    body="""<h1 lang="ja">コンソールがビルドされていません</h1>
<p lang="ja">このサーバーには技術者コンソールのファイルがありません。ソースから実行している場合は
<code>scripts/bootstrap</code> を実行してください (npm ci と Vite ビルドを行います)。</p>
<h1 lang="en">The console is not built</h1>
<p lang="en">This server has no technician console files. Running from source: run
<code>scripts/bootstrap</code> (it runs npm ci and the Vite build).</p>""",
)

_NOT_FOUND = _PAGE.format(
    title="見つかりません / Not found",
    body="""<p lang="ja">このページはありません。<a href="/console/">コンソールへ</a></p>
<p lang="en">No such page. <a href="/console/">To the console</a></p>""",
)

#: Pages that need a signed-in technician; without one the browser goes to the sign-in.
_SIGNED_IN_PAGES = frozenset({"index.html", "session.html"})


def console_dir(settings: Settings) -> Path:
    return settings.console_dir or DEFAULT_DIR


def _page(request: web.Request, settings: Settings, status: int, text: str) -> web.Response:
    resp = web.Response(status=status, text=text, content_type="text/html")
    _headers(resp, request, settings)
    # The error pages are static: nothing to load at all.
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    )
    return resp


def _resolve(root: Path, tail: str) -> Path | None:
    """The file ``tail`` names inside ``root``; None for anything else (a folder, a dot
    file, a way out of root)."""
    if tail in ("", "/"):
        tail = "index.html"
    parts = tail.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p for p in parts):
        return None
    try:
        base = root.resolve(strict=True)
        path = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


async def console_handler(request: web.Request) -> web.StreamResponse:
    """GET /console/{tail}: a file of the built console."""
    svc = request.app[SERVICES]
    settings = svc.settings
    if plain_http_refused(request, settings):
        return _page(request, settings, 403, _HTTPS_REQUIRED)
    root = console_dir(settings)
    if not (root / "index.html").is_file():
        return _page(request, settings, 503, _NOT_BUILT)
    tail = request.match_info.get("tail", "")
    path = _resolve(root, tail)
    if path is None:
        return _page(request, settings, 404, _NOT_FOUND)
    if path.name in _SIGNED_IN_PAGES and path.parent == root.resolve():
        raw = request.cookies.get(COOKIE)
        found = await svc.store.console_session(raw, idle_timeout(settings)) if raw else None
        if found is None:
            redirect = web.HTTPSeeOther("/console/login.html")
            _headers(redirect, request, settings)
            raise redirect
    resp = web.FileResponse(path)
    kind, _ = mimetypes.guess_type(path.name)
    resp.headers["Content-Type"] = kind or "application/octet-stream"
    _headers(resp, request, settings)
    if path.suffix == ".html":
        resp.headers["Cache-Control"] = "no-store"
    elif "assets" in path.relative_to(root.resolve()).parts:
        # Vite names every asset by its content's hash: a changed file has a new name.
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        resp.headers["Cache-Control"] = "no-cache"
    return resp


async def console_redirect(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/console/")


def setup_console(app: web.Application) -> None:
    app.router.add_get("/console", console_redirect)
    app.router.add_get("/console/{tail:.*}", console_handler)
