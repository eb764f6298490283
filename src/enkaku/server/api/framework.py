"""A small typed routing layer over aiohttp that also writes the OpenAPI document."""

from __future__ import annotations

import ast
import asyncio
import html
import inspect
import json
import logging
import re
import textwrap
import types
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from enkaku import __version__
from enkaku.i18n import CATALOG, both, register

from ..store.models import Technician

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024

# RFC 7235 §2.1: credentials = auth-scheme [ 1*SP token68 ]; the scheme is
# case-insensitive. RFC 6750 §2.1: the bearer token is a token68.
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)


def bearer_token(request: web.Request) -> str | None:
    """The bearer token of the Authorization header, or None: parsed here only, once
    per request, so authentication and logout see the same token."""
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return None
    match = _BEARER.fullmatch(values[0].strip(" \t"))
    return match.group(1) if match else None


async def _read_body(request: web.Request, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body (``read(n)`` alone may return less)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await request.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


#: Where every problem type's page lives: ``/api/v1/problems/<code>`` (docs/records.md,
#: "Errors"). A relative URI reference, resolved against the request's URL.
PROBLEMS_PATH = "/api/v1/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

register(
    {
        "method_not_allowed": (
            "This method is not allowed here; allowed: {allowed}.",
            "このメソッドはここでは使えません。使えるメソッド: {allowed}",
        ),
        "body_too_large": (
            "The request body is larger than {limit} bytes.",
            "リクエストの本文が {limit} バイトを超えています。",
        ),
        "internal_error": (
            "The server failed to handle this request; the error is logged.",
            "サーバーがこのリクエストを処理できませんでした。エラーは記録されています。",
        ),
        "http_error": (
            "The request failed (HTTP {status_}).",
            "リクエストは失敗しました (HTTP {status_})。",
        ),
    }
)


def problem_title(code: str) -> str:
    """The problem type's short summary, the same for every occurrence: the code in words."""
    words = code.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def problem(
    status: int, code: str, message: dict[str, str], instance: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem details object; ``error`` repeats code and message in the
    format of protocol version 1 (deprecated, kept for the CLIs and consoles deployed)."""
    body: dict[str, Any] = {
        "type": PROBLEMS_PATH + code,
        "title": problem_title(code),
        "status": status,
        "detail": message["en"],
    }
    if instance is not None:
        body["instance"] = instance
    body["code"] = code
    body["message"] = message
    body["error"] = {"code": code, "message": message}
    return body


class ApiError(web.HTTPException):
    """An API failure with a stable code and a message in both languages; its body is an
    ``application/problem+json`` document (``problem``)."""

    def __init__(
        self,
        status: int,
        code: str,
        /,
        *,
        message_key: str | None = None,
        headers: dict[str, str] | None = None,
        **fmt: object,
    ) -> None:
        self.status_code = status
        self.code = code
        self.message = both(message_key or code, **fmt)
        super().__init__(
            text=json.dumps(problem(status, code, self.message), ensure_ascii=False),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=headers,
        )

    def for_request(self, path: str) -> None:
        """Name the request's path as the occurrence (``instance``)."""
        self.text = json.dumps(
            problem(self.status, self.code, self.message, path), ensure_ascii=False
        )


class ErrorBody(BaseModel):
    code: str
    message: dict[str, str]


class ErrorResponse(BaseModel):
    error: ErrorBody


class Problem(BaseModel):
    """RFC 9457 problem details, with enkaku's ``code`` and ``message`` members."""

    #: ``/api/v1/problems/<code>``: a page explaining the code.
    type: str
    #: The code in words, the same for every occurrence.
    title: str
    status: int
    #: This occurrence's message in English (``message`` has both languages).
    detail: str
    #: The path of the request that failed, percent-encoded as sent.
    instance: str | None = None
    code: str
    message: dict[str, str]
    #: Deprecated: code and message in the format of protocol version 1; removed in a
    #: later protocol version.
    error: ErrorBody


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def _as_problem(exc: web.HTTPException) -> ApiError:
    """aiohttp's own error (an unknown route, a wrong method, a body over the limit) as a
    problem with the same status and headers."""
    status = exc.status
    code = _HTTP_CODES.get(status, "http_error")
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    if code == "method_not_allowed":
        return ApiError(status, code, headers=headers, allowed=headers.get("Allow", "") or "-")
    if code == "body_too_large":
        return ApiError(status, code, headers=headers, limit=MAX_BODY)
    return ApiError(status, code, headers=headers, status_=status)


def problem_middleware(prefix: str = "/api/v1") -> Any:
    """Every error as a problem: an ApiError anywhere gets its ``instance``; under
    ``prefix``, aiohttp's own errors (404, 405, 413, ...) and unexpected exceptions (500,
    logged) become problems too."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        ours = request.path == prefix or request.path.startswith(prefix + "/")
        try:
            return await handler(request)
        except ApiError as exc:
            exc.for_request(request.rel_url.raw_path)
            raise
        except web.HTTPException as exc:
            if not ours or exc.status < 400:
                raise
            err = _as_problem(exc)
            err.for_request(request.rel_url.raw_path)
            raise err from None
        except Exception:
            if not ours:
                raise
            log.exception("unhandled error in %s %s", request.method, request.path)
            err = ApiError(500, "internal_error")
            err.for_request(request.rel_url.raw_path)
            raise err from None

    return middleware


# -- which errors a route can return (for its OpenAPI responses) -----------------------


@dataclass(frozen=True)
class ErrorSite:
    """One ``ApiError(status, code, ...)`` in the source."""

    status: int
    #: None where the code is not a literal (rate_limited passes the limiter's code).
    code: str | None
    #: ``module:line``.
    where: str


def _literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def _resolve(node: ast.expr, scope: dict[str, Any]) -> Any:
    """The object a called name (``f``, ``module.f``) refers to, else None."""
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, scope)
        if isinstance(base, types.ModuleType):
            return getattr(base, node.attr, None)
    return None


def _status_options(node: ast.expr | None, tree: ast.AST) -> list[ast.expr | None]:
    """The expressions a status argument can take: a literal, either side of
    ``409 if ... else 422``, or what a local name is assigned (``status = ...``)."""
    if isinstance(node, ast.IfExp):
        return [*_status_options(node.body, tree), *_status_options(node.orelse, tree)]
    if isinstance(node, ast.Name):
        values = [
            a.value
            for a in ast.walk(tree)
            if isinstance(a, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == node.id for t in a.targets)
        ]
        return [o for v in values for o in _status_options(v, tree)] or [node]
    return [node]


def error_sites(fn: Callable[..., Any], _seen: set[Any] | None = None) -> Iterator[ErrorSite]:
    """Every ApiError that ``fn`` constructs, directly or through the enkaku functions it
    calls by name (followed through modules). Methods are not followed: the test in
    tests/server/test_problem_json.py fails when an ApiError is built somewhere no route
    reaches this way."""
    seen = _seen if _seen is not None else set()
    fn = inspect.unwrap(fn)
    if fn in seen or not inspect.isfunction(fn):
        return
    seen.add(fn)
    if not (fn.__module__ or "").startswith("enkaku."):
        return
    try:
        lines, first_line = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return
    scope = dict(fn.__globals__)
    if fn.__closure__:
        scope.update(
            zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__), strict=True)
        )
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _resolve(node.func, scope)
        if target is ApiError:
            first = node.args[0] if node.args else None
            statuses = [_literal(o) for o in _status_options(first, tree)]
            code = _literal(node.args[1]) if len(node.args) > 1 else None
            where = f"{fn.__module__}:{first_line + node.lineno - 1}"
            if not all(isinstance(s, int) for s in statuses):
                raise TypeError(f"{where}: ApiError needs a literal status")
            for status in statuses:
                yield ErrorSite(status, code if isinstance(code, str) else None, where)
        elif inspect.isfunction(target):
            yield from error_sites(target, seen)


#: The framework's own errors: (status, code) by what the route declares.
def _framework_errors(r: Route) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    if r.auth:
        # No or a wrong token or cookie; a cookie without its CSRF token (console.py).
        out += [(401, "unauthorized"), (403, "csrf_failed")]
    if r.roles is not None:
        out.append((403, "role_forbidden"))
    if r.query is not None or r.body is not None:
        out.append((422, "bad_request"))
    if r.body is not None:
        out += [(413, "body_too_large"), (408, "request_timeout")]
    return out


def aware(value: Any) -> Any:
    """``value`` with every naive datetime in it made UTC: the store keeps UTC and SQLite
    hands its times back without an offset, which is not an RFC 3339 date-time."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    if isinstance(value, BaseModel):
        return value.model_copy(
            update={name: aware(getattr(value, name)) for name in type(value).model_fields}
        )
    if isinstance(value, list):
        return [aware(v) for v in value]
    if isinstance(value, dict):
        return {k: aware(v) for k, v in value.items()}
    return value


@dataclass
class Context:
    request: web.Request
    technician: Technician | None
    #: The bearer token the request was authenticated with (see bearer_token).
    token: str | None = None
    #: The validated query parameters (Route.query), or None.
    query: Any = None

    @property
    def tech(self) -> Technician:
        assert self.technician is not None
        return self.technician


#: A handler returns its response model, None (204), or a ready response (one that sets
#: or clears a cookie).
Handler = Callable[[Context, Any], Awaitable[BaseModel | web.StreamResponse | None]]
#: Resolves a request to its technician: by its bearer token (already parsed), or with
#: None by the console's cookie (which also checks CSRF; only on routes that need auth).
Authenticator = Callable[[web.Request, str | None], Awaitable[Technician | None]]


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    auth: bool
    summary: str
    status: int
    #: The query string's parameters, validated like a body (None: no parameters).
    query: type[BaseModel] | None = None
    #: The roles that may call it (None: every signed-in account); others get 403.
    roles: tuple[str, ...] | None = None
    #: Errors the source scan cannot see (error_sites), as (status, code).
    errors: tuple[tuple[int, str], ...] = ()

    def error_codes(self) -> dict[int, list[str]]:
        """Every error status the route can return, with its codes: the framework's,
        the ones its handler's source builds (error_sites) and the declared ones."""
        found: dict[int, set[str]] = {}
        pairs = [(s.status, s.code or "") for s in error_sites(self.handler)]
        for status, code in [*_framework_errors(self), *pairs, *self.errors]:
            found.setdefault(status, set())
            if code:
                found[status].add(code)
        return {status: sorted(codes) for status, codes in sorted(found.items())}


class Api:
    def __init__(self, prefix: str = "/api/v1") -> None:
        self.prefix = prefix
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        auth: bool = True,
        summary: str = "",
        status: int = 200,
        query: type[BaseModel] | None = None,
        roles: tuple[str, ...] | None = None,
        errors: tuple[tuple[int, str], ...] = (),
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.routes.append(
                Route(
                    method,
                    path,
                    fn,
                    body,
                    response,
                    auth,
                    summary or (fn.__doc__ or "").strip(),
                    status,
                    query,
                    roles,
                    errors,
                )
            )
            return fn

        return deco

    def install(
        self, app: web.Application, authenticate: Authenticator, *, body_timeout: float = 30.0
    ) -> None:
        """Add every route to ``app``; a body must arrive within ``body_timeout`` s."""
        for r in self.routes:
            app.router.add_route(
                r.method, self.prefix + r.path, self._wrap(r, authenticate, body_timeout)
            )
        doc = self.openapi()

        async def openapi_json(_request: web.Request) -> web.Response:
            return web.json_response(doc)

        app.router.add_get(self.prefix + "/openapi.json", openapi_json)
        pages = self.problem_types()

        async def problem_page(request: web.Request) -> web.Response:
            code = request.match_info["code"]
            if code not in pages:
                raise ApiError(404, "not_found")
            return web.Response(
                text=_problem_html(code, pages[code]), content_type="text/html", charset="utf-8"
            )

        app.router.add_get(self.prefix + "/problems/{code}", problem_page)

    def problem_types(self) -> dict[str, list[int]]:
        """Every problem code the API can return, with its statuses."""
        types_: dict[str, set[int]] = {
            "not_found": {404},
            "method_not_allowed": {405},
            "body_too_large": {413},
            "internal_error": {500},
            "http_error": set(),
        }
        for r in self.routes:
            for status, codes in r.error_codes().items():
                for code in codes:
                    types_.setdefault(code, set()).add(status)
        return {code: sorted(statuses) for code, statuses in sorted(types_.items())}

    def _wrap(
        self, r: Route, authenticate: Authenticator, body_timeout: float
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            token = bearer_token(request)
            tech = await authenticate(request, token) if token is not None or r.auth else None
            if r.auth and tech is None:
                raise ApiError(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
            if r.roles is not None and (tech is None or tech.role not in r.roles):
                raise ApiError(
                    403,
                    "role_forbidden",
                    role=tech.role if tech is not None else "-",
                    allowed=", ".join(r.roles),
                )
            query = None
            if r.query is not None:
                try:
                    query = r.query.model_validate(dict(request.query))
                except ValidationError as exc:
                    err = exc.errors()[0]
                    where = ".".join(map(str, err["loc"])) or "query"
                    raise ApiError(422, "bad_request", detail=f"{where}: {err['msg']}") from None
            body = None
            if r.body is not None:
                if request.content_length is not None and request.content_length > MAX_BODY:
                    raise ApiError(413, "body_too_large", limit=MAX_BODY)
                try:
                    async with asyncio.timeout(body_timeout):
                        raw = await _read_body(request, MAX_BODY + 1)
                except TimeoutError:
                    raise ApiError(
                        408, "request_timeout", headers={"Connection": "close"}
                    ) from None
                if len(raw) > MAX_BODY:
                    raise ApiError(413, "body_too_large", limit=MAX_BODY)
                try:
                    body = r.body.model_validate_json(raw or b"{}")
                except ValidationError as exc:
                    err = exc.errors()[0]
                    where = ".".join(map(str, err["loc"])) or "body"
                    raise ApiError(422, "bad_request", detail=f"{where}: {err['msg']}") from None
            result = await r.handler(Context(request, tech, token, query), body)
            if result is None:
                return web.Response(status=204)
            if isinstance(result, web.StreamResponse):
                return result
            return web.Response(
                status=r.status,
                text=aware(result).model_dump_json(),
                content_type="application/json",
            )

        return handler

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every route."""
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {}

        def ref(model: type[BaseModel]) -> dict[str, str]:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[model.__name__] = schema
            return {"$ref": f"#/components/schemas/{model.__name__}"}

        problem_ref = ref(Problem)
        for r in self.routes:
            op: dict[str, Any] = {
                "summary": r.summary,
                "operationId": r.handler.__name__,
                "responses": {},
            }
            params = [seg[1:-1] for seg in r.path.split("/") if seg.startswith("{")]
            parameters: list[dict[str, Any]] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
            if r.query is not None:
                qschema = r.query.model_json_schema()
                for name, prop in qschema.get("properties", {}).items():
                    parameters.append(
                        {
                            "name": name,
                            "in": "query",
                            "required": name in qschema.get("required", []),
                            "schema": prop,
                        }
                    )
            if parameters:
                op["parameters"] = parameters
            if r.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref(r.body)}},
                }
            if r.response is not None:
                op["responses"][str(r.status)] = {
                    "description": "OK",
                    # A model may name its own media types (api/reports.py: CSV, HTML).
                    "content": {
                        m: {"schema": ref(r.response)}
                        for m in getattr(r.response, "media_types", ("application/json",))
                    },
                }
            else:
                op["responses"]["204"] = {"description": "No content"}
            for status, codes in r.error_codes().items():
                response: dict[str, Any] = {
                    "description": ", ".join(codes) or "Error",
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": problem_ref}},
                }
                if status in (429, 503):
                    response["headers"] = {
                        "Retry-After": {
                            "description": "Seconds to wait before trying again.",
                            "schema": {"type": "integer"},
                        }
                    }
                op["responses"][str(status)] = response
            if r.auth:
                op["security"] = [{"bearer": []}]
            if r.roles is not None:
                op["x-roles"] = list(r.roles)
            paths.setdefault(self.prefix + r.path, {})[r.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {"title": "enkaku server API", "version": __version__},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }


def _problem_html(code: str, statuses: list[int]) -> str:
    """The page a problem's ``type`` points at: its title, statuses and message texts."""
    en, ja = CATALOG.get(code, ("", ""))
    rows = "".join(
        f"<tr><th>{label}</th><td>{html.escape(text)}</td></tr>"
        for label, text in (("English", en), ("日本語", ja))
        if text
    )
    status = ", ".join(str(s) for s in statuses) or "4xx/5xx"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(problem_title(code))}</title></head><body>"
        f"<h1>{html.escape(problem_title(code))}</h1>"
        f"<p>Problem code <code>{html.escape(code)}</code>, HTTP {status}. "
        "Format: docs/records.md, Errors.</p>"
        f"<table>{rows}</table></body></html>"
    )
