"""The web console's sign-in on the real server app: password + TOTP, recovery codes,
lockout, the cookie and its CSRF token, expiry, logout, password changes; the CLI's
token login with the second factor; the console's static files and their headers."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from enkaku.server import totp
from enkaku.server.app import build_app
from enkaku.server.console import _resolve
from enkaku.server.ratelimit import Limits
from enkaku.server.services import SERVICES, Services
from enkaku.server.settings import Settings
from enkaku.server.store.db import open_engine
from enkaku.server.store.repo import Store

from .conftest import FakeClock

PASSWORD = "correct horse"
API = "/api/v1"


class WallClock:
    """The store's settable wall clock (session expiry)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Console:
    server: TestServer
    http: aiohttp.ClientSession
    clock: FakeClock
    wall: WallClock
    static: Path
    #: Extra headers every request sends (a proxy's X-Forwarded-*).
    via: dict[str, str] = field(default_factory=dict)

    @property
    def svc(self) -> Services:
        return self.server.app[SERVICES]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    @property
    def origin(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        cookie: str | None = None,
        csrf: str | None = None,
        origin: str | None = "",
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        h = dict(self.via)
        if cookie is not None:
            h["Cookie"] = f"enkaku_console={cookie}"
        if csrf is not None:
            h["X-CSRF-Token"] = csrf
        if origin is not None:
            h["Origin"] = origin or self.origin
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        async with self.http.request(
            method, self.url(path), json=json, headers=h, allow_redirects=False
        ) as r:
            body = (
                await r.json()
                if r.content_type in ("application/json", "application/problem+json")
                else await r.text()
            )
            return r.status, body, r

    async def sign_in(
        self, user: str = "tech", password: str = PASSWORD, **extra: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        return await self.call(
            "POST", f"{API}/auth/console", json={"username": user, "password": password, **extra}
        )

    async def token(self, user: str = "tech", **extra: Any) -> str:
        status, body, _ = await self.call(
            "POST", f"{API}/auth/token", json={"username": user, "password": PASSWORD, **extra}
        )
        assert status == 201, body
        return str(body["token"])

    async def enrol(self, user: str = "tech") -> tuple[str, list[str]]:
        """Enrol an authenticator through the API (as the console does): its secret and
        the recovery codes."""
        token = await self.token(user)
        status, body, _ = await self.call(
            "POST", f"{API}/me/totp", json={"password": PASSWORD}, token=token
        )
        assert status == 200, body
        secret = body["secret"]
        status, body, _ = await self.call(
            "POST", f"{API}/me/totp/confirm", json={"code": totp.now_code(secret)}, token=token
        )
        assert status == 200, body
        return secret, body["recovery_codes"]


def fresh_code(secret: str) -> str:
    """A code for the next step (inside the ±1 window, never used before in a test that
    spent the current one)."""
    return totp.code_at(secret, totp.step_of(time.time()) + 1)


def cookie_of(resp: aiohttp.ClientResponse) -> tuple[str, str]:
    """The enkaku_console cookie's value and its whole Set-Cookie line."""
    for line in resp.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(line)
        if "enkaku_console" in jar:
            return jar["enkaku_console"].value, line
    raise AssertionError("no enkaku_console cookie")


def make_static(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>home</title>")
    (root / "login.html").write_text("<!doctype html><title>login</title>")
    (root / "session.html").write_text("<!doctype html><title>session</title>")
    (root / "assets" / "app-1234.js").write_text("console.log('x')")
    (root / ".enkaku-built").write_text("")
    return root


async def start(tmp_path: Path, **settings: Any) -> AsyncIterator[Console]:
    clock, wall = FakeClock(), WallClock()
    static = make_static(tmp_path / "static")
    store = Store(await open_engine(f"sqlite:///{tmp_path}/t.db"), clock=wall)
    app = build_app(
        Settings(
            db_url=f"sqlite:///{tmp_path}/t.db",
            node_id="test-node",
            console_dir=static,
            **settings,
        ),
        store=store,
        clock=clock,
        limits=Limits(clock, clock.sleep),
    )
    server = TestServer(app)
    await server.start_server()
    await store.create_technician("tech", PASSWORD, display_name="Taro", company="ACME")
    await store.create_technician("other", PASSWORD)
    await store.create_technician("boss", PASSWORD, role="admin")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        yield Console(server, http, clock, wall, static)
    await server.close()
    await store.close()


@pytest.fixture
async def con(tmp_path: Path) -> AsyncIterator[Console]:
    async for c in start(tmp_path):
        yield c


# -- TOTP itself --------------------------------------------------------------------------


def test_totp_matches_rfc6238_sha1_vectors() -> None:
    secret = base64.b32encode(b"12345678901234567890").decode()
    # RFC 6238 appendix B (SHA-1), the last 6 of its 8 digits.
    for t, expected in (
        (59, "287082"),
        (1111111109, "081804"),
        (1234567890, "005924"),
        (2000000000, "279037"),
        (20000000000, "353130"),
    ):
        assert totp.now_code(secret, t) == expected


def test_totp_window_is_one_step_each_side() -> None:
    secret = totp.new_secret()
    now = 1_700_000_015.0
    step = totp.step_of(now)
    for delta in (-1, 0, 1):
        assert totp.matching_step(secret, totp.code_at(secret, step + delta), now) == step + delta
    for delta in (-2, 2):
        code = totp.code_at(secret, step + delta)
        if all(code != totp.code_at(secret, step + d) for d in (-1, 0, 1)):
            assert totp.matching_step(secret, code, now) is None
    assert totp.matching_step(secret, "12345", now) is None
    assert totp.matching_step(secret, "abcdef", now) is None


def test_recovery_codes_are_ten_distinct_and_stored_as_digests() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == 10 == len(set(codes))
    digest = totp.recovery_digest(codes[0])
    assert codes[0] not in digest
    assert totp.recovery_digest(codes[0].upper().replace("-", " ")) == digest


# -- enrolment ----------------------------------------------------------------------------


async def test_enrolment_shows_the_secret_as_text_and_qr_code(con: Console) -> None:
    token = await con.token()
    status, body, _ = await con.call(
        "POST", f"{API}/me/totp", json={"password": PASSWORD}, token=token
    )
    assert status == 200, body
    secret = body["secret"]
    assert len(secret) == 32 and secret.isalnum()
    assert body["otpauth_uri"].startswith("otpauth://totp/enkaku%3Atech?secret=" + secret)
    assert body["qr_svg"].startswith("<svg") and "<script" not in body["qr_svg"]
    tech = await con.svc.store.technician_by_name("tech")
    assert tech is not None and tech.totp_secret is None  # not before a code confirms it
    status, body, _ = await con.call(
        "POST", f"{API}/me/totp/confirm", json={"code": "000000"}, token=token
    )
    if status != 200:  # one in a million: 000000 was the right code
        assert (status, body["error"]["code"]) == (422, "totp_wrong")
    status, body, _ = await con.call(
        "POST", f"{API}/me/totp/confirm", json={"code": totp.now_code(secret)}, token=token
    )
    assert status == 200, body
    assert len(body["recovery_codes"]) == 10
    status, me, _ = await con.call("GET", f"{API}/me", token=token)
    assert me["totp_enrolled"] is True
    status, body, _ = await con.call(
        "POST", f"{API}/me/totp", json={"password": PASSWORD}, token=token
    )
    assert (status, body["error"]["code"]) == (409, "totp_already_enrolled")


async def test_enrolment_needs_the_password(con: Console) -> None:
    token = await con.token()
    status, body, _ = await con.call(
        "POST", f"{API}/me/totp", json={"password": "wrong"}, token=token
    )
    assert (status, body["error"]["code"]) == (403, "password_wrong")
    assert body["error"]["message"]["ja"]


# -- console sign-in ----------------------------------------------------------------------


async def test_sign_in_with_password_and_totp_sets_a_strict_cookie(con: Console) -> None:
    secret, _ = await con.enrol()
    status, body, _ = await con.sign_in()
    assert (status, body["error"]["code"]) == (401, "totp_required")
    assert "認証アプリ" in body["error"]["message"]["ja"]
    status, body, resp = await con.sign_in(totp=fresh_code(secret))
    assert status == 200, body
    assert body["technician"]["username"] == "tech" and body["totp_enrolled"] is True
    assert body["recovery_codes_left"] == 10
    value, line = cookie_of(resp)
    attrs = [a.strip().lower() for a in line.split(";")]
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
    assert "secure" not in attrs  # plain HTTP from loopback only
    assert not any(a.startswith(("max-age", "expires")) for a in attrs)
    assert value.startswith("ekc_")
    # Only the digest is stored.
    async with con.svc.store.engine.connect() as conn:
        from sqlalchemy import text

        stored = [r[0] for r in await conn.execute(text("SELECT token_hash FROM console_sessions"))]
    assert len(stored) == 1 and value not in stored[0]
    status, state, _ = await con.call("GET", f"{API}/auth/console", cookie=value)
    assert status == 200 and state["csrf_token"] == body["csrf_token"]
    status, me, _ = await con.call("GET", f"{API}/me", cookie=value)
    assert (status, me["username"]) == (200, "tech")


async def test_wrong_and_replayed_codes_are_refused(con: Console) -> None:
    secret, _ = await con.enrol()
    now = totp.step_of(time.time())
    used = totp.code_at(secret, now + 1)
    wrong = next(
        c
        for c in ("000000", "111111", "222222")
        if c not in {totp.code_at(secret, now + d) for d in (-2, -1, 0, 1, 2)}
    )
    status, body, _ = await con.sign_in(totp=wrong)
    assert (status, body["error"]["code"]) == (401, "totp_wrong")
    status, body, _ = await con.sign_in(totp=used)
    assert status == 200, body
    status, body, _ = await con.sign_in(totp=used)
    assert (status, body["error"]["code"]) == (401, "totp_reused")
    # An earlier step than the last one used is a replay too.
    status, body, _ = await con.sign_in(totp=totp.code_at(secret, now))
    assert (status, body["error"]["code"]) == (401, "totp_reused")
    assert "already used" in body["error"]["message"]["en"]
    assert "すでに使われています" in body["error"]["message"]["ja"]


async def test_a_recovery_code_works_once(con: Console) -> None:
    _, codes = await con.enrol()
    status, body, _ = await con.sign_in(recovery_code=codes[3])
    assert status == 200, body
    assert body["recovery_codes_left"] == 9
    status, body, _ = await con.sign_in(recovery_code=codes[3])
    assert (status, body["error"]["code"]) == (401, "recovery_code_wrong")
    # Typed in the code field, with capitals and spaces: still accepted once.
    status, body, _ = await con.sign_in(totp=codes[4].upper().replace("-", " ")[:16])
    assert status == 200, body


async def test_unknown_user_and_wrong_password_read_the_same(con: Console) -> None:
    await con.enrol()
    a = await con.sign_in(password="wrong password")
    b = await con.sign_in(user="nobody")
    assert a[0] == b[0] == 401
    assert a[1] == b[1]
    assert a[1]["error"]["code"] == "login_failed"


async def test_wrong_codes_count_as_failed_logins_and_lock_out(con: Console) -> None:
    secret, _ = await con.enrol()
    seen = []
    for _ in range(7):
        status, body, _ = await con.sign_in(
            totp="000000" if totp.now_code(secret) != "000000" else "111111"
        )
        seen.append(body["error"]["code"])
    assert set(seen) <= {"totp_wrong", "totp_reused"}
    assert con.clock.slept  # slowed down like any login
    status, body, resp = await con.sign_in(totp=fresh_code(secret))
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert int(resp.headers["Retry-After"]) > 0
    assert resp.headers["Retry-After"] in body["error"]["message"]["en"]
    # The CLI's token login shares the count.
    status, body, _ = await con.call(
        "POST",
        f"{API}/auth/token",
        json={"username": "tech", "password": PASSWORD, "totp": fresh_code(secret)},
    )
    assert status == 429


async def test_a_right_password_without_its_code_does_not_clear_the_count(con: Console) -> None:
    await con.enrol()
    limits = con.svc.limits.login
    for _ in range(3):
        await con.sign_in(totp="999999x")
    before = limits.pair.failures(("tech", "127.0.0.1"))
    status, body, _ = await con.sign_in()
    assert body["error"]["code"] == "totp_required"
    assert limits.pair.failures(("tech", "127.0.0.1")) == before + 1


async def test_the_cli_token_needs_the_second_factor_too(con: Console) -> None:
    secret, _ = await con.enrol()
    status, body, _ = await con.call(
        "POST", f"{API}/auth/token", json={"username": "tech", "password": PASSWORD}
    )
    assert (status, body["error"]["code"]) == (401, "totp_required")
    token = await con.token(totp=fresh_code(secret))
    assert token.startswith("ek_")


# -- CSRF ---------------------------------------------------------------------------------


async def signed_in(con: Console, user: str = "tech") -> tuple[str, str]:
    status, body, resp = await con.sign_in(user=user)
    assert status == 200, body
    return cookie_of(resp)[0], body["csrf_token"]


async def test_unsafe_requests_need_the_csrf_token_and_our_origin(con: Console) -> None:
    cookie, csrf = await signed_in(con)
    req = {"agent_id": "123456789", "contract": "NONE"}
    cases = [
        ({}, "csrf_failed"),
        ({"csrf": "0" * 64}, "csrf_failed"),
        ({"csrf": csrf, "origin": "https://evil.example"}, "csrf_failed"),
        ({"csrf": csrf, "origin": None}, "csrf_failed"),
    ]
    for kw, code in cases:
        status, body, _ = await con.call("POST", f"{API}/sessions", json=req, cookie=cookie, **kw)
        assert (status, body["error"]["code"]) == (403, code), kw
    # With both the request reaches the route (which refuses the unknown contract).
    status, body, _ = await con.call("POST", f"{API}/sessions", json=req, cookie=cookie, csrf=csrf)
    assert (status, body["error"]["code"]) == (404, "contract_unknown")
    # Reads need no token; bearer requests (the CLI) never do.
    assert (await con.call("GET", f"{API}/contracts", cookie=cookie, origin=None))[0] == 200
    token = await con.token()
    status, body, _ = await con.call("POST", f"{API}/sessions", json=req, token=token, origin=None)
    assert body["error"]["code"] == "contract_unknown"


async def test_the_sign_in_itself_needs_our_origin(con: Console) -> None:
    for origin in (None, "https://evil.example", "null"):
        status, body, _ = await con.call(
            "POST",
            f"{API}/auth/console",
            json={"username": "tech", "password": PASSWORD},
            origin=origin,
        )
        assert (status, body["error"]["code"]) == (403, "console_origin"), origin


# -- expiry, logout, password changes -----------------------------------------------------


async def test_logout_revokes_the_session(con: Console) -> None:
    cookie, csrf = await signed_in(con)
    status, _, _ = await con.call("DELETE", f"{API}/auth/console", cookie=cookie)
    assert status == 403  # logout is CSRF-protected too
    status, _, resp = await con.call("DELETE", f"{API}/auth/console", cookie=cookie, csrf=csrf)
    assert status == 204
    line = next(v for v in resp.headers.getall("Set-Cookie") if "enkaku_console" in v)
    assert 'enkaku_console=""' in line and "max-age=0" in line.lower()
    status, body, _ = await con.call("GET", f"{API}/me", cookie=cookie)
    assert (status, body["error"]["code"]) == (401, "unauthorized")


async def test_idle_and_absolute_expiry(con: Console) -> None:
    cookie, _ = await signed_in(con)
    con.wall.now += timedelta(minutes=59)
    assert (await con.call("GET", f"{API}/me", cookie=cookie))[0] == 200
    con.wall.now += timedelta(minutes=59)  # active: the idle time restarts at each request
    assert (await con.call("GET", f"{API}/me", cookie=cookie))[0] == 200
    con.wall.now += timedelta(minutes=61)
    assert (await con.call("GET", f"{API}/me", cookie=cookie))[0] == 401
    cookie, _ = await signed_in(con)
    for _ in range(14):  # busy all day (12 h 50 min): it ended 12 hours after sign-in
        con.wall.now += timedelta(minutes=55)
        await con.call("GET", f"{API}/me", cookie=cookie)
    assert (await con.call("GET", f"{API}/me", cookie=cookie))[0] == 401


async def test_a_password_change_signs_out_the_other_sessions(con: Console) -> None:
    here, csrf = await signed_in(con)
    elsewhere, _ = await signed_in(con)
    token = await con.token()
    body = {"current": PASSWORD, "new": "a new long passphrase"}
    status, answer, _ = await con.call(
        "POST", f"{API}/me/password", json={**body, "current": "wrong"}, cookie=here, csrf=csrf
    )
    assert (status, answer["error"]["code"]) == (403, "password_wrong")
    status, answer, _ = await con.call(
        "POST", f"{API}/me/password", json={**body, "new": "short"}, cookie=here, csrf=csrf
    )
    assert (status, answer["error"]["code"]) == (422, "new_password_too_short")
    status, _, _ = await con.call("POST", f"{API}/me/password", json=body, cookie=here, csrf=csrf)
    assert status == 204
    assert (await con.call("GET", f"{API}/me", cookie=here))[0] == 200
    assert (await con.call("GET", f"{API}/me", cookie=elsewhere))[0] == 401
    assert (await con.call("GET", f"{API}/me", token=token))[0] == 401
    assert (await con.sign_in())[0] == 401
    assert (await con.sign_in(password="a new long passphrase"))[0] == 200


async def test_a_password_change_through_a_token_keeps_that_token(con: Console) -> None:
    console_cookie, _ = await signed_in(con)
    token = await con.token()
    status, _, _ = await con.call(
        "POST",
        f"{API}/me/password",
        json={"current": PASSWORD, "new": "another passphrase"},
        token=token,
    )
    assert status == 204
    assert (await con.call("GET", f"{API}/me", token=token))[0] == 200
    assert (await con.call("GET", f"{API}/me", cookie=console_cookie))[0] == 401


async def test_removing_the_authenticator_needs_password_and_code(con: Console) -> None:
    secret, codes = await con.enrol()
    cookie, csrf = await signed_in_with(con, secret)
    path = f"{API}/me/totp"
    status, body, _ = await con.call(
        "DELETE", path, json={"password": PASSWORD, "code": "x1"}, cookie=cookie, csrf=csrf
    )
    assert (status, body["error"]["code"]) == (403, "totp_wrong")
    status, _, _ = await con.call(
        "DELETE", path, json={"password": PASSWORD, "code": codes[0]}, cookie=cookie, csrf=csrf
    )
    assert status == 204
    status, body, _ = await con.sign_in()
    assert status == 200 and body["totp_enrolled"] is False


async def signed_in_with(con: Console, secret: str) -> tuple[str, str]:
    status, body, resp = await con.sign_in(totp=fresh_code(secret))
    assert status == 200, body
    return cookie_of(resp)[0], body["csrf_token"]


# -- recent sessions ----------------------------------------------------------------------


async def test_recent_sessions_own_or_all_for_admins(con: Console) -> None:
    store = con.svc.store
    contract = await store.create_contract("C-7", "Customer Seven")
    agent = await store.agent_for_key("ab" * 32)
    ids = {}
    for i, user in enumerate(("tech", "other", "tech")):
        tech = await store.technician_by_name(user)
        assert tech is not None
        sid = f"{i:032x}"
        con.wall.now += timedelta(seconds=1)
        await store.create_session(sid, agent, tech.id, contract.id, "test-node")
        await store.end_session(
            sid,
            "malware_found",
            bytes_to_agent=10 * i,
            bytes_to_technician=1000 + i,
            asserted_by="technician",
        )
        ids[sid] = user
    token = await con.token()
    status, body, _ = await con.call("GET", f"{API}/sessions?limit=5", token=token)
    assert status == 200, body
    got = body["sessions"]
    assert [s["session_id"] for s in got] == [f"{2:032x}", f"{0:032x}"]  # newest first, own
    first = got[0]
    assert (first["contract"], first["agent_id"], first["technician"]) == ("C-7", agent, "tech")
    assert (first["end_reason"], first["bytes_to_agent"], first["bytes_to_technician"]) == (
        "malware_found",
        20,
        1002,
    )
    assert first["requested_at"] and first["ended_at"]
    boss = await con.token("boss")
    status, body, _ = await con.call("GET", f"{API}/sessions?limit=2", token=boss)
    assert [s["technician"] for s in body["sessions"]] == ["tech", "other"]
    for bad in ("0", "101", "x"):
        status, body, _ = await con.call("GET", f"{API}/sessions?limit={bad}", token=token)
        assert status == 422


# -- the static console -------------------------------------------------------------------


async def test_console_pages_carry_the_strict_headers(con: Console) -> None:
    status, text, resp = await con.call("GET", "/console/login.html", origin=None)
    assert status == 200 and "login" in text
    csp = resp.headers["Content-Security-Policy"]
    for part in (
        "default-src 'self'",
        "script-src 'self';",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
        "form-action 'self'",
        f"connect-src 'self' ws://{con.server.host}:{con.server.port}",
    ):
        assert part in csp, part
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    status, _, resp = await con.call("GET", "/console/assets/app-1234.js", origin=None)
    assert status == 200 and resp.content_type == "text/javascript"
    assert "immutable" in resp.headers["Cache-Control"]


async def test_console_home_needs_a_sign_in(con: Console) -> None:
    status, _, resp = await con.call("GET", "/console/", origin=None)
    assert (status, resp.headers["Location"]) == (303, "/console/login.html")
    assert "Content-Security-Policy" in resp.headers
    cookie, _ = await signed_in(con)
    status, text, resp = await con.call("GET", "/console/", cookie=cookie, origin=None)
    assert status == 200 and "home" in text
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    status, _, resp = await con.call("GET", "/console", origin=None)
    assert (status, resp.headers["Location"]) == (308, "/console/")


@pytest.mark.parametrize(
    "path",
    [
        "/console/.enkaku-built",
        "/console/assets",
        "/console/nope.html",
        "/console/assets/..%2F..%2Ft.db",
        "/console/%2e%2e/t.db",
    ],
)
async def test_only_the_console_files_are_served(con: Console, path: str) -> None:
    async with con.http.get(URL(con.url("/")).with_path(path, encoded=True)) as r:
        text = await r.text(errors="replace")
        assert r.status == 404 and "SQLite" not in text, path


def test_no_way_out_of_the_console_folder(tmp_path: Path) -> None:
    root = make_static(tmp_path / "static")
    (tmp_path / "secret.txt").write_text("x")
    (root / "link.html").symlink_to(tmp_path / "secret.txt")
    assert _resolve(root, "") == (root / "index.html").resolve()
    assert _resolve(root, "assets/app-1234.js") is not None
    for tail in (
        "../secret.txt",
        "assets/../../secret.txt",
        "link.html",
        ".enkaku-built",
        "assets",
        "assets/",
        "/etc/passwd",
        "a\\..\\b",
    ):
        assert _resolve(root, tail) is None, tail


async def test_a_missing_build_says_to_run_bootstrap(tmp_path: Path) -> None:
    async for con in start(tmp_path):
        for f in sorted(con.static.rglob("*"), reverse=True):
            f.rmdir() if f.is_dir() else f.unlink()
        con.static.rmdir()
        status, text, resp = await con.call("GET", "/console/", origin=None)
        assert status == 503
        assert "scripts/bootstrap" in text and "ビルドされていません" in text
        assert "not built" in text


# -- the TLS rule ---------------------------------------------------------------------------


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[Console]:
    async for c in start(tmp_path, behind_proxy=True, public_url="https://support.example"):
        yield c


async def test_plain_http_from_elsewhere_is_refused(proxied: Console) -> None:
    proxied.via = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"}
    status, text, resp = await proxied.call("GET", "/console/login.html", origin=None)
    assert status == 403
    assert "HTTPS で接続してください" in text and "Use HTTPS" in text
    assert resp.headers["X-Frame-Options"] == "DENY"
    status, body, _ = await proxied.sign_in()
    assert (status, body["error"]["code"]) == (403, "console_https_required")


async def test_https_through_the_proxy_gets_a_secure_cookie(proxied: Console) -> None:
    proxied.via = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    assert (await proxied.call("GET", "/console/login.html", origin=None))[0] == 200
    status, body, _ = await proxied.call(
        "POST",
        f"{API}/auth/console",
        json={"username": "tech", "password": PASSWORD},
        origin="https://support.example",
    )
    assert status == 200, body
    status, body, resp = await proxied.call(
        "POST",
        f"{API}/auth/console",
        json={"username": "tech", "password": PASSWORD},
        origin="http://support.example",  # not our origin: the scheme differs
    )
    assert status == 403
    status, body, resp = await proxied.call(
        "POST",
        f"{API}/auth/console",
        json={"username": "tech", "password": PASSWORD},
        origin="https://support.example",
    )
    _, line = cookie_of(resp)
    assert "secure" in [a.strip().lower() for a in line.split(";")]
    csp = (await proxied.call("GET", "/console/login.html", origin=None))[2].headers[
        "Content-Security-Policy"
    ]
    assert "wss://support.example" in csp


async def test_plain_http_from_loopback_behind_the_proxy_is_allowed(proxied: Console) -> None:
    proxied.via = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"}
    assert (await proxied.call("GET", "/console/login.html", origin=None))[0] == 200


async def test_the_start_page_points_to_the_console(con: Console) -> None:
    status, text, _ = await con.call("GET", "/", origin=None)
    assert status == 200
    assert 'href="/console/"' in text
    assert "技術者コンソール" in text and "technician console" in text


async def test_over_the_servers_own_tls_the_cookie_is_secure(tmp_path: Path) -> None:
    import ssl

    from enkaku.server.app import ssl_context
    from tests.e2e.test_tls import make_pki

    ca, cert, key = make_pki(tmp_path)
    settings = Settings(
        db_url=f"sqlite:///{tmp_path}/t.db",
        node_id="test-node",
        tls_cert=cert,
        tls_key=key,
        console_dir=make_static(tmp_path / "static"),
    )
    app = build_app(settings)
    server = TestServer(app, scheme="https", host="127.0.0.1")
    await server.start_server(ssl=ssl_context(settings))
    try:
        await app[SERVICES].store.create_technician("tech", PASSWORD)
        client_tls = ssl.create_default_context(cafile=str(ca))
        port = server.port
        origin = f"https://127.0.0.1:{port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async with http.post(
                f"{origin}{API}/auth/console",
                json={"username": "tech", "password": PASSWORD},
                headers={"Origin": origin},
                ssl=client_tls,
            ) as r:
                assert r.status == 200, await r.text()
                _, line = cookie_of(r)
            async with http.get(f"{origin}/console/login.html", ssl=client_tls) as r:
                assert r.status == 200
                csp = r.headers["Content-Security-Policy"]
                hsts = r.headers["Strict-Transport-Security"]
    finally:
        await server.close()
    attrs = [a.strip().lower() for a in line.split(";")]
    assert "secure" in attrs and "httponly" in attrs and "samesite=strict" in attrs
    assert f"connect-src 'self' wss://127.0.0.1:{port};" in csp
    assert hsts.startswith("max-age=")


async def test_codes_cannot_be_guessed_through_the_account_settings(con: Console) -> None:
    secret, _ = await con.enrol()
    cookie, csrf = await signed_in_with(con, secret)
    wrong = "000000" if totp.now_code(secret) != "000000" else "111111"
    seen = []
    for _ in range(8):
        status, body, resp = await con.call(
            "DELETE",
            f"{API}/me/totp",
            json={"password": PASSWORD, "code": wrong},
            cookie=cookie,
            csrf=csrf,
        )
        seen.append((status, body["error"]["code"]))
    assert seen[0] == (403, "totp_wrong")
    assert seen[-1] == (429, "rate_limited") and int(resp.headers["Retry-After"]) > 0
    tech = await con.svc.store.technician_by_name("tech")
    assert tech is not None and tech.totp_secret == secret
