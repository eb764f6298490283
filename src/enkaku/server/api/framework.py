"""A small typed routing layer over aiohttp that also writes the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from enkaku import __version__
from enkaku.i18n import both

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


class ApiError(web.HTTPException):
    """An API failure with a stable code and a message in both languages."""

    def __init__(
        self,
        status: int,
        code: str,
        *,
        message_key: str | None = None,
        headers: dict[str, str] | None = None,
        **fmt: object,
    ) -> None:
        self.status_code = status
        body = {"error": {"code": code, "message": both(message_key or code, **fmt)}}
        super().__init__(
            text=json.dumps(body, ensure_ascii=False),
            content_type="application/json",
            headers=headers,
        )


class ErrorBody(BaseModel):
    code: str
    message: dict[str, str]


class ErrorResponse(BaseModel):
    error: ErrorBody


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
                    raise ApiError(413, "bad_request", detail="body too large")
                try:
                    async with asyncio.timeout(body_timeout):
                        raw = await _read_body(request, MAX_BODY + 1)
                except TimeoutError:
                    raise ApiError(
                        408, "request_timeout", headers={"Connection": "close"}
                    ) from None
                if len(raw) > MAX_BODY:
                    raise ApiError(413, "bad_request", detail="body too large")
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
                status=r.status, text=result.model_dump_json(), content_type="application/json"
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

        err = ref(ErrorResponse)
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
                    "content": {"application/json": {"schema": ref(r.response)}},
                }
            else:
                op["responses"]["204"] = {"description": "No content"}
            op["responses"]["default"] = {
                "description": "Error",
                "content": {"application/json": {"schema": err}},
            }
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
