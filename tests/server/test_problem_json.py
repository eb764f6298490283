"""Errors as RFC 9457 problem documents (issue 9): one format for every error of the API,
the deprecated ``error`` member kept, and an OpenAPI document that names every status a
route can return."""

from __future__ import annotations

import ast
import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import BaseModel

import enkaku.server
from enkaku.server.api import framework
from enkaku.server.api.framework import Api, ApiError, Context, error_sites, problem_middleware
from enkaku.technician.client import _error_code, _lang_message

from .conftest import Env

PROBLEM = "application/problem+json"


def assert_problem(body: dict[str, Any], status: int, code: str, path: str) -> None:
    assert body["type"] == f"/api/v1/problems/{code}"
    assert body["status"] == status
    assert body["code"] == code
    assert body["instance"] == path
    assert body["title"] and body["detail"] == body["message"]["en"]
    assert body["message"]["ja"] and body["message"]["ja"] != body["message"]["en"]
    # Deprecated, kept for the CLIs and consoles already deployed.
    assert body["error"] == {"code": code, "message": body["message"]}


class Echo(BaseModel):
    text: str


@pytest.fixture
async def small() -> AsyncIterator[tuple[aiohttp.ClientSession, TestServer]]:
    """A bare application with the framework's routes only: errors on purpose."""
    api = Api()

    @api.route("GET", "/boom", auth=False)
    async def boom(_ctx: Context, _body: None) -> None:
        raise RuntimeError("a bug")

    @api.route("GET", "/slow-down", auth=False)
    async def slow_down(_ctx: Context, _body: None) -> None:
        raise ApiError(429, "rate_limited", headers={"Retry-After": "7"}, seconds=7)

    @api.route("POST", "/echo", auth=False, body=Echo, response=Echo)
    async def echo(_ctx: Context, body: Echo) -> Echo:
        return body

    app = web.Application(middlewares=[problem_middleware()])

    async def authenticate(_request: web.Request, _token: str | None) -> None:
        return None

    api.install(app, authenticate)
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield http, server
    await server.close()


async def fetch(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[aiohttp.ClientResponse, Any]:
    async with http.request(method, url, **kw) as r:
        body = await r.json() if r.content_type == PROBLEM else await r.text()
        return r, body


async def test_unexpected_exception_is_a_500_problem(
    small: tuple[aiohttp.ClientSession, TestServer], caplog: pytest.LogCaptureFixture
) -> None:
    http, server = small
    r, body = await fetch(http, "GET", str(server.make_url("/api/v1/boom")))
    assert r.status == 500 and r.content_type == PROBLEM
    assert_problem(body, 500, "internal_error", "/api/v1/boom")
    assert "a bug" not in str(body)
    assert any("a bug" in (rec.exc_text or "") for rec in caplog.records)


async def test_rate_limit_keeps_retry_after(
    small: tuple[aiohttp.ClientSession, TestServer],
) -> None:
    http, server = small
    r, body = await fetch(http, "GET", str(server.make_url("/api/v1/slow-down")))
    assert r.status == 429 and r.headers["Retry-After"] == "7"
    assert_problem(body, 429, "rate_limited", "/api/v1/slow-down")
    assert "7" in body["message"]["en"] and "7" in body["message"]["ja"]


async def test_validation_and_size_errors(small: tuple[aiohttp.ClientSession, TestServer]) -> None:
    http, server = small
    url = str(server.make_url("/api/v1/echo"))
    r, body = await fetch(http, "POST", url, json={"text": 5})
    assert r.status == 422
    assert_problem(body, 422, "bad_request", "/api/v1/echo")
    assert "text" in body["detail"]
    r, body = await fetch(http, "POST", url, data=b"{" + b" " * (framework.MAX_BODY + 1) + b"}")
    assert r.status == 413
    assert_problem(body, 413, "body_too_large", "/api/v1/echo")


async def test_unknown_route_and_method_under_the_api(env: Env) -> None:
    r, body = await fetch(env.http, "GET", env.url("/api/v1/no-such-thing"))
    assert r.status == 404 and r.content_type == PROBLEM
    assert_problem(body, 404, "not_found", "/api/v1/no-such-thing")
    r, body = await fetch(env.http, "PUT", env.url("/api/v1/health"))
    assert r.status == 405 and "GET" in r.headers["Allow"]
    assert_problem(body, 405, "method_not_allowed", "/api/v1/health")
    assert "GET" in body["message"]["ja"]
    # The security headers of every response are on problems too.
    assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_api_error_of_a_real_route(env: Env) -> None:
    r, body = await fetch(env.http, "GET", env.url("/api/v1/me"))
    assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert_problem(body, 401, "unauthorized", "/api/v1/me")
    token = await env.token()
    sid = "f" * 32
    r, body = await fetch(
        env.http,
        "GET",
        env.url(f"/api/v1/sessions/{sid}"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status == 404
    assert_problem(body, 404, "session_not_found", f"/api/v1/sessions/{sid}")


async def test_problem_type_resolves_to_a_page(env: Env) -> None:
    r, body = await fetch(env.http, "GET", env.url("/api/v1/me"))
    page_url = r.url.join(aiohttp.client.URL(body["type"]))
    async with env.http.get(page_url) as page:
        assert page.status == 200 and page.content_type == "text/html"
        text = await page.text()
    assert "unauthorized" in text and "401" in text
    assert "enkaku login" in text and "ログイン" in text
    r, body = await fetch(env.http, "GET", env.url("/api/v1/problems/no_such_code"))
    assert r.status == 404
    assert_problem(body, 404, "not_found", "/api/v1/problems/no_such_code")


async def test_every_documented_code_has_a_page(env: Env) -> None:
    async with env.http.get(env.url("/api/v1/openapi.json")) as r:
        doc = await r.json()
    codes = set()
    for ops in doc["paths"].values():
        for op in ops.values():
            for status, resp in op["responses"].items():
                if int(status) >= 400:
                    codes |= {c for c in resp["description"].split(", ") if c != "Error"}
    assert {"unauthorized", "session_not_found", "agent_offline"} <= codes
    for code in codes:
        async with env.http.get(env.url(f"/api/v1/problems/{code}")) as page:
            assert page.status == 200, code


def test_the_cli_reads_both_formats() -> None:
    message = {"en": "Gone.", "ja": "ありません。"}
    new = {"code": "x_gone", "message": message}
    old = {"error": {"code": "x_gone", "message": message}}
    for body in (new, old, {**new, "error": old["error"]}):
        assert _error_code(body) == "x_gone"
        assert _lang_message(body, "fallback") in ("Gone.", "ありません。")
    assert _error_code({"status": 500}) is None
    assert _lang_message("not json", "fallback") == "fallback"


# -- the OpenAPI document names every error a route can return -------------------------


def test_openapi_error_responses_are_problems() -> None:
    from enkaku.server.api.routes import api

    importlib.import_module("enkaku.server.app")  # every route module registered
    doc = api.openapi()
    assert "Problem" in doc["components"]["schemas"]
    for route in api.routes:
        op = doc["paths"][api.prefix + route.path][route.method.lower()]
        assert "default" not in op["responses"]
        for status, codes in route.error_codes().items():
            resp = op["responses"][str(status)]
            assert resp["content"] == {
                PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, route.path
            for code in codes:
                assert code in resp["description"]
    login = doc["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert {"401", "422", "429"} <= set(login)
    assert "Retry-After" in login["429"]["headers"]


def test_scan_follows_helpers_through_modules() -> None:
    from enkaku.server.api import routes

    (route,) = [r for r in routes.api.routes if r.method == "POST" and r.path == "/sessions"]
    sites = {(s.status, s.code) for s in error_sites(route.handler)}
    # choose_contract in billing.py, imported by name.
    assert (404, "contract_unknown") in sites
    # raise rate_limited(...): a helper that builds the ApiError.
    assert any(status == 429 for status, _ in sites)


#: ApiErrors built outside any route's reach, on purpose: the framework's own (each
#: declared by _framework_errors or turned into a problem by the middleware), the CSRF
#: check of the console's cookie (framework: 403 csrf_failed on every route with auth)
#: and the WebSocket upgrades' connection cap (not under /api/v1).
NOT_ROUTES = {
    "enkaku.server.api.framework",
    "enkaku.server.console.authenticate_cookie",
    "enkaku.server.preauth.too_many_connections",
}


def _api_error_calls() -> list[tuple[str, str, int]]:
    """Every ``ApiError(...)`` in the server's source: (module, function, line)."""
    root = Path(enkaku.server.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        module = "enkaku." + ".".join(path.relative_to(root.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "ApiError"
            ):
                continue
            up: ast.AST | None = node
            while up is not None and not isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef):
                up = parents.get(up)
            name = up.name if isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef) else "-"
            found.append((module, name, node.lineno))
    return found


def test_every_api_error_is_documented_by_a_route() -> None:
    """An ApiError a route raises where the scan cannot follow (a method, a callback)
    would be an undocumented status: every one in the source must be reached."""
    from enkaku.server.api.routes import api

    importlib.import_module("enkaku.server.app")  # every route module registered
    reached = {s.where for r in api.routes for s in error_sites(r.handler)}
    calls = _api_error_calls()
    assert len(calls) > 40
    missing = [
        f"{module}.{name}:{line}"
        for module, name, line in calls
        if f"{module}:{line}" not in reached
        and module not in NOT_ROUTES
        and f"{module}.{name}" not in NOT_ROUTES
    ]
    assert not missing, f"ApiError not reached by any route's scan: {missing}"


# -- what schemathesis found (tests/server/test_schemathesis.py) ----------------------


async def test_non_ascii_digits_in_an_id_or_limit_are_not_a_server_error(env: Env) -> None:
    """'³'.isdigit() is True and int('³') raises: it was a 500."""
    admin = await env.svc.store.create_technician("boss", "correct horse", role="admin")
    token, _ = await env.svc.store.issue_token(admin.id)
    auth = {"Authorization": f"Bearer {token}"}
    r, body = await fetch(env.http, "GET", env.url("/api/v1/admin/customers/³"), headers=auth)
    assert r.status == 404
    assert body["code"] == "admin_not_found"
    # instance is a URI reference: the path as sent, percent-encoded.
    assert body["instance"] == "/api/v1/admin/customers/%C2%B3"
    r, body = await fetch(env.http, "GET", env.url("/api/v1/sessions?limit=١٢"), headers=auth)
    assert r.status == 422
    assert body["code"] == "bad_request"


def test_a_totp_code_of_non_ascii_digits_is_wrong_not_an_error() -> None:
    """hmac.compare_digest refuses non-ASCII strings: a code typed in Arabic-Indic digits
    raised TypeError (a 500 once the password was right)."""
    from enkaku.server import totp

    assert totp.matching_step(totp.new_secret(), "١٢٣٤٥٦") is None


async def test_response_times_carry_their_offset(env: Env) -> None:
    """SQLite hands back naive datetimes: the API said "2026-11-29T14:52:48" (no offset,
    not an RFC 3339 date-time as the OpenAPI document promises)."""
    admin = await env.svc.store.create_technician("boss", "correct horse", role="admin")
    token, _ = await env.svc.store.issue_token(admin.id)
    await env.svc.store.records.create_customer("Example Ltd")
    async with env.http.get(
        env.url("/api/v1/admin/customers"), headers={"Authorization": f"Bearer {token}"}
    ) as r:
        created = (await r.json())["customers"][0]["created_at"]
    assert created.endswith("Z") or created[-6] in "+-", created


async def test_an_error_whose_message_names_a_code_value(env: Env) -> None:
    """A records error with a ``code`` value (a contract's code) collided with ApiError's
    own ``code`` parameter: TypeError, a 500 instead of the 409."""
    admin = await env.svc.store.create_technician("boss", "correct horse", role="admin")
    token, _ = await env.svc.store.issue_token(admin.id)
    customer = await env.svc.store.records.create_customer("Example Ltd")
    await env.svc.store.create_contract("K-7", customer.id)
    r, body = await fetch(
        env.http,
        "POST",
        env.url("/api/v1/admin/contracts"),
        json={"code": "K-7", "customer_id": customer.id},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status == 409
    assert_problem(body, 409, "store_contract_exists", "/api/v1/admin/contracts")
    assert "K-7" in body["message"]["en"] and "K-7" in body["message"]["ja"]


async def test_an_id_past_the_integer_column_is_refused(env: Env) -> None:
    """A customer_id of 2**64 reached the database: OverflowError on SQLite (a 500)."""
    admin = await env.svc.store.create_technician("boss", "correct horse", role="admin")
    token, _ = await env.svc.store.issue_token(admin.id)
    auth = {"Authorization": f"Bearer {token}"}
    for path, body in (
        ("/api/v1/admin/contracts", {"code": "K-8", "customer_id": 2**64}),
        ("/api/v1/admin/enrolment-codes", {"customer_id": 2**64}),
    ):
        r, problem = await fetch(env.http, "POST", env.url(path), json=body, headers=auth)
        assert r.status == 422, path
        assert problem["code"] == "bad_request" and "customer_id" in problem["detail"]


async def test_non_ascii_digits_in_report_and_privacy_references(env: Env) -> None:
    """The same '³' in the reports' and privacy routes' ids and references."""
    admin = await env.svc.store.create_technician("boss", "correct horse", role="admin")
    token, _ = await env.svc.store.issue_token(admin.id)
    auth = {"Authorization": f"Bearer {token}"}
    for method, path, status in (
        ("GET", "/api/v1/reports/monthly/³/2026-10.csv", 404),
        ("GET", "/api/v1/admin/customers/³/export", 404),
        ("DELETE", "/api/v1/admin/customers/³", 404),
        ("GET", "/api/v1/reports/sessions?technician=³", 404),
        ("GET", "/api/v1/reports/sessions?customer=³", 404),
        # Digits past the INTEGER column (OverflowError on SQLite).
        ("GET", "/api/v1/reports/sessions?customer=" + "9" * 30, 404),
        ("GET", "/api/v1/reports/sessions?technician=" + "9" * 30, 404),
    ):
        r, body = await fetch(env.http, method, env.url(path), headers=auth)
        assert r.status == status, (path, body)
        assert r.content_type == PROBLEM
