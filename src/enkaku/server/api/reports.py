"""/api/v1/reports and the privacy endpoints (docs/records.md#reports, docs/privacy.md):
session history, a customer's monthly report (JSON, CSV, printable HTML), one session's
audit trail, and a customer's export and deletion. Admins and auditors read every
report; a technician reads only the trails of her own sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from aiohttp import web
from pydantic import BaseModel, Field, RootModel

from enkaku.i18n import register

from ..reports import Month, monthly_csv, monthly_html
from ..store.models import AuditEvent, row_id
from ..store.records import RecordsError, StoreError
from ..store.reports import MAX_PAGE, SessionFilter, SessionRecord
from .framework import ApiError, Context
from .routes import READ_ALL, api, services

register(
    {
        "report_unknown": ("No {what} {ref}.", "{what} {ref} は存在しません。"),
        "report_bad_name": (
            "{value!r} is not a report: use YYYY-MM.csv or YYYY-MM.html",
            "{value!r} はレポート名ではありません。YYYY-MM.csv か YYYY-MM.html を指定してください",
        ),
    }
)

ADMIN = ("admin",)


class SessionQuery(BaseModel):
    #: The customer's id or exact name.
    customer: str | None = Field(default=None, max_length=200)
    #: The technician's user name or id.
    technician: str | None = Field(default=None, max_length=64)
    #: The contract's code.
    contract: str | None = Field(default=None, max_length=64)
    #: YYYY-MM in the server's time zone (the month a session was requested in).
    month: str | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}$")
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0, le=10**9)


class SessionRow(BaseModel):
    session_id: str
    requested_at: datetime
    paired_at: datetime | None
    ended_at: datetime | None
    #: Seconds from both sides connected to the end (null: never connected, or running).
    duration_seconds: int | None
    technician: str
    customer_id: int
    customer: str
    contract: str
    agent_id: str
    end_reason: str | None
    end_asserted_by: str | None
    #: The account that ended it through the API, if one did.
    ended_by: str | None
    end_comment: str | None
    bytes_to_customer: int
    bytes_from_customer: int


class SessionPage(BaseModel):
    #: The server's time zone (the month filter's); times below are ISO 8601 in it.
    time_zone: str
    total: int
    offset: int
    sessions: list[SessionRow]


class EventRow(BaseModel):
    at: datetime
    #: server, agent, technician or admin.
    source: str
    event: str
    detail: str | None
    technician_id: int | None
    #: A transferred file: its name (clear, or "sha256:" and the name's hash), size and
    #: the SHA-256 of its bytes.
    file_name: str | None
    file_size: int | None
    file_sha256: str | None
    #: What the event means, in English and Japanese.
    meaning: dict[str, str]


class SessionTrail(SessionRow):
    time_zone: str
    events: list[EventRow]


class ReportText(RootModel[str]):
    """A report as text/csv or text/html (the name's suffix says which)."""

    media_types: ClassVar[tuple[str, ...]] = ("text/csv", "text/html")


class CustomerExport(BaseModel):
    """Everything stored about one customer (docs/privacy.md)."""

    customer: dict[str, Any]
    contracts: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    enrolment_codes: list[dict[str, Any]]
    terms_acceptances: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    admin_events: list[dict[str, Any]]


def _local(dt: datetime | None, ctx: Context) -> datetime | None:
    return None if dt is None else dt.astimezone(services(ctx).settings.zone)


def _row(r: SessionRecord, ctx: Context) -> dict[str, Any]:
    return {
        "session_id": r.id,
        "requested_at": _local(r.requested_at, ctx),
        "paired_at": _local(r.paired_at, ctx),
        "ended_at": _local(r.ended_at, ctx),
        "duration_seconds": r.duration,
        "technician": r.technician,
        "customer_id": r.customer_id,
        "customer": r.customer,
        "contract": r.contract,
        "agent_id": r.agent_id,
        "end_reason": r.end_reason,
        "end_asserted_by": r.end_asserted_by,
        "ended_by": r.ended_by,
        "end_comment": r.end_comment,
        "bytes_to_customer": r.bytes_to_agent,
        "bytes_from_customer": r.bytes_to_technician,
    }


def _event(e: AuditEvent, ctx: Context) -> EventRow:
    from ..reports import describe

    en, ja = describe(e)
    return EventRow(
        at=_local(e.at, ctx) or e.at,
        source=e.source,
        event=e.event,
        detail=e.detail,
        technician_id=e.technician_id,
        file_name=e.file_name,
        file_size=e.file_size,
        file_sha256=e.file_sha256,
        meaning={"en": en, "ja": ja},
    )


def _trail(r: SessionRecord, ctx: Context) -> SessionTrail:
    return SessionTrail(
        **_row(r, ctx),
        time_zone=services(ctx).settings.time_zone,
        events=[_event(e, ctx) for e in r.events],
    )


def _month(ctx: Context, value: str) -> Month:
    try:
        return Month.parse(value, services(ctx).settings.zone)
    except ValueError:
        raise ApiError(422, "report_bad_month", value=value[:20]) from None


async def _customer_id(ctx: Context, ref: str) -> int:
    try:
        return (await services(ctx).store.records.customer(ref)).id
    except StoreError:
        raise ApiError(404, "report_unknown", what="customer", ref=ref[:40]) from None


@api.route("GET", "/reports/sessions", response=SessionPage, query=SessionQuery, roles=READ_ALL)
async def report_sessions(ctx: Context, _body: None) -> SessionPage:
    """Session history, filtered by customer, technician, contract and month."""
    q: SessionQuery = ctx.query
    reports = services(ctx).store.reports
    f = SessionFilter(limit=q.limit, offset=q.offset)
    if q.customer is not None:
        f.customer_id = await _customer_id(ctx, q.customer)
    if q.technician is not None:
        tech = await reports.technician_ref(q.technician)
        if tech is None:
            raise ApiError(404, "report_unknown", what="technician", ref=q.technician)
        f.technician_id = tech.id
    if q.contract is not None:
        contract = await reports.contract_ref(q.contract)
        if contract is None:
            raise ApiError(404, "report_unknown", what="contract", ref=q.contract)
        f.contract_id = contract.id
    if q.month is not None:
        month = _month(ctx, q.month)
        f.start, f.end = month.start, month.end
    rows, total = await reports.sessions(f)
    return SessionPage(
        time_zone=services(ctx).settings.time_zone,
        total=total,
        offset=q.offset,
        sessions=[SessionRow(**_row(r, ctx)) for r in rows],
    )


@api.route(
    "GET", "/reports/monthly/{customer_id}/{report}", response=ReportText, roles=READ_ALL
)  # fmt: skip
async def report_monthly(ctx: Context, _body: None) -> web.Response:
    """A customer's month: ``YYYY-MM.csv`` (one row per session) or ``YYYY-MM.html`` (a
    printable page), in the server's time zone."""
    svc = services(ctx)
    raw_id = ctx.request.match_info["customer_id"]
    name = ctx.request.match_info["report"]
    stem, _, suffix = name.rpartition(".")
    if suffix not in ("csv", "html") or not stem:
        raise ApiError(404, "report_bad_name", value=name[:40])
    month = _month(ctx, stem)
    number = row_id(raw_id)
    if number is None:
        raise ApiError(404, "report_unknown", what="customer", ref=raw_id[:20])
    try:
        customer, records = await svc.store.reports.month(number, month.start, month.end)
    except StoreError:
        raise ApiError(404, "report_unknown", what="customer", ref=raw_id) from None
    if suffix == "csv":
        return web.Response(
            text=monthly_csv(records, month.zone),
            content_type="text/csv",
            charset="utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="report-{customer.id}-{month}.csv"'
            },
        )
    page = monthly_html(
        customer,
        month,
        records,
        company=svc.settings.support_name,
        generated=svc.store.reports.now(),
    )
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


@api.route("GET", "/sessions/{session_id}/audit", response=SessionTrail)
async def session_audit(ctx: Context, _body: None) -> SessionTrail:
    """One session's audit trail: every event, metadata only. Admins and auditors read
    every session's; a technician her own."""
    session_id = ctx.request.match_info["session_id"]
    rec = await services(ctx).store.reports.session(session_id[:64])
    if rec is None or (rec.technician_id != ctx.tech.id and ctx.tech.role not in READ_ALL):
        raise ApiError(404, "session_not_found")
    return _trail(rec, ctx)


@api.route(
    "GET", "/admin/customers/{customer_id}/export", response=CustomerExport, roles=READ_ALL
)  # fmt: skip
async def customer_export(ctx: Context, _body: None) -> CustomerExport:
    """Everything stored about one customer, as JSON (docs/privacy.md); audited."""
    raw = ctx.request.match_info["customer_id"]
    number = row_id(raw)
    if number is None:
        raise ApiError(404, "report_unknown", what="customer", ref=raw[:20])
    try:
        data = await services(ctx).store.reports.export_customer(number)
    except StoreError:
        raise ApiError(404, "report_unknown", what="customer", ref=raw) from None
    await services(ctx).store.records.audit_admin(
        "customer_exported", actor=ctx.tech.id, target=f"customer:{raw}"
    )
    return CustomerExport(**data)


@api.route("DELETE", "/admin/customers/{customer_id}", roles=ADMIN)
async def customer_delete(ctx: Context, _body: None) -> None:
    """Delete a customer's personal data: name, contact addresses, machine links and
    enrolment codes; its sessions keep only ids, times, end reasons and volumes
    (docs/privacy.md). Audited with the customer's id only."""
    raw = ctx.request.match_info["customer_id"]
    number = row_id(raw)
    if number is None:
        raise ApiError(404, "report_unknown", what="customer", ref=raw[:20])
    try:
        await services(ctx).store.reports.delete_customer(number, actor=ctx.tech.id)
    except RecordsError as exc:
        if exc.key == "store_customer_session_running":
            raise ApiError(409, "store_customer_session_running", customer=raw) from None
        raise ApiError(404, "report_unknown", what="customer", ref=raw) from None
