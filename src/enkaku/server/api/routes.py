"""The /api/v1 endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import date, datetime

from pydantic import BaseModel, Field

from enkaku import __version__
from enkaku.i18n import register
from enkaku.protocol.control import END_REASONS, POLICY_REASONS

from ..preauth import peer_address
from ..ratelimit import RateLimited
from ..services import SERVICES, Services
from ..terms import terms_today
from .billing import Notice, allowance_notice, choose_contract
from .framework import Api, ApiError, Context

api = Api()

register(
    {
        "not_token_session": (
            "This request is not authenticated with an API token; sign out of the console "
            "with DELETE /api/v1/auth/console.",
            "このリクエストは API トークンで認証されていません。コンソールからのサインアウトは "
            "DELETE /api/v1/auth/console で行ってください。",
        ),
    }
)

AGENT_ID_PATTERN = r"^\d{9}$"
#: Roles that read every technician's session records.
READ_ALL = ("admin", "auditor")
#: How long ending for a reason of the terms waits for the agent's consent report.
CONSENT_REPORT_WAIT = 5.0


def services(ctx: Context) -> Services:
    return ctx.request.app[SERVICES]


class Health(BaseModel):
    status: str
    version: str
    agents_online: int


class TechnicianInfo(BaseModel):
    username: str
    display_name: str
    company: str
    role: str
    #: Whether the account has a second factor (TOTP).
    totp_enrolled: bool = False


class ContractInfo(BaseModel):
    code: str
    customer_id: int
    customer_name: str
    remote_support: bool
    valid_from: date
    valid_until: date | None
    #: Sessions and bytes (both ways) a calendar month includes; None: no limit.
    monthly_sessions: int | None = None
    monthly_bytes: int | None = None


class ContractQuery(BaseModel):
    #: Only the contracts a session with this agent may be billed to today.
    agent_id: str | None = Field(default=None, pattern=AGENT_ID_PATTERN)


class ContractList(BaseModel):
    contracts: list[ContractInfo]


class AgentStatus(BaseModel):
    agent_id: str
    online: bool


class SessionRequest(BaseModel):
    agent_id: str = Field(pattern=AGENT_ID_PATTERN)
    contract: str | None = Field(default=None, max_length=64)


class SessionCreated(BaseModel):
    session_id: str
    agent_id: str
    contract: str
    relay_url: str
    relay_token: str
    #: Set when the contract is past its monthly allowance (the session goes ahead).
    warning: Notice | None = None


class SessionInfo(BaseModel):
    session_id: str
    agent_id: str
    contract_id: int
    requested_at: datetime
    paired_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    #: technician, agent or server: who asserted end_reason.
    end_asserted_by: str | None
    #: The account that ended it through the API (its technician or an admin).
    ended_by_technician_id: int | None
    end_comment: str | None
    bytes_to_agent: int
    bytes_to_technician: int


class EndRequest(BaseModel):
    reason: str = Field(default="technician_ended")
    #: What the technician found; required with a policy reason (control.POLICY_REASONS).
    comment: str | None = Field(default=None, max_length=1000)


#: Reasons a technician may record through the API (control.REASON_ROLES, technician).
API_END_REASONS = ("technician_ended", *sorted(POLICY_REASONS))


def client_address(ctx: Context) -> str:
    """The client's address; behind a trusted proxy, the entry the proxy appended to the
    last X-Forwarded-For line (preauth.peer_address, the one place that reads it)."""
    return peer_address(ctx.request, services(ctx).settings.behind_proxy)


def rate_limited(exc: RateLimited) -> ApiError:
    """HTTP 429 stating the real wait, in Retry-After and in the message."""
    return ApiError(429, exc.code, headers={"Retry-After": str(exc.seconds)}, seconds=exc.seconds)


def tech_info(t: object) -> TechnicianInfo:
    return TechnicianInfo.model_validate(t, from_attributes=True)


@api.route("GET", "/health", response=Health, auth=False)
async def health(ctx: Context, _body: None) -> Health:
    """Liveness and version."""
    return Health(
        status="ok", version=__version__, agents_online=await services(ctx).presence.online_count()
    )


@api.route("DELETE", "/auth/token")
async def logout(ctx: Context, _body: None) -> None:
    """Revoke the token used for this request (the CLI's logout; the console signs out
    with DELETE /auth/console)."""
    if ctx.token is None:  # authenticated by the console's cookie: no token to revoke
        raise ApiError(409, "not_token_session")
    await services(ctx).store.revoke_token(ctx.token)


@api.route("GET", "/me", response=TechnicianInfo)
async def me(ctx: Context, _body: None) -> TechnicianInfo:
    """The logged-in technician."""
    return tech_info(ctx.tech)


@api.route("GET", "/contracts", response=ContractList, query=ContractQuery)
async def contracts(ctx: Context, _body: None) -> ContractList:
    """Every contract; with agent_id, only those a session with that agent may be billed
    to today (its customer's, with remote support, in force)."""
    store = services(ctx).store
    q: ContractQuery = ctx.query
    if q.agent_id is not None:
        rows = await store.records.usable_contracts(q.agent_id, store.today())
    else:
        rows = await store.list_contracts()
    return ContractList(
        contracts=[ContractInfo.model_validate(c, from_attributes=True) for c in rows]
    )


@api.route("GET", "/agents/{agent_id}", response=AgentStatus)
async def agent_status(ctx: Context, _body: None) -> AgentStatus:
    """Whether an agent ID is online now."""
    agent_id = ctx.request.match_info["agent_id"]
    return AgentStatus(agent_id=agent_id, online=await services(ctx).presence.is_online(agent_id))


#: The roles that may open and end sessions (an auditor only reads).
SESSION_ROLES = ("admin", "technician")


@api.route(
    "POST",
    "/sessions",
    body=SessionRequest,
    response=SessionCreated,
    status=201,
    roles=SESSION_ROLES,
)
async def create_session(ctx: Context, body: SessionRequest) -> SessionCreated:
    """Ask an online agent for a session, billed to a contract."""
    svc = services(ctx)
    tech = ctx.tech
    try:
        wait = svc.limits.sessions.check(tech.id, body.agent_id)
    except RateLimited as exc:
        raise rate_limited(exc) from None
    pending = svc.relay.pending_for(tech.id)
    if pending >= svc.settings.max_pending_sessions:
        raise ApiError(
            429,
            "too_many_pending",
            headers={"Retry-After": str(max(1, int(svc.settings.pairing_timeout)))},
            count=pending,
        )
    await svc.limits.pause(wait)  # exponential slow-down after spent guesses
    today = svc.store.today()
    contract, _linked = await choose_contract(svc, body.agent_id, body.contract, today)
    if not await svc.presence.is_online(body.agent_id):
        raise ApiError(404, "agent_offline", agent_id=body.agent_id)
    in_force, _ = await svc.store.current_terms(terms_today())
    if in_force is not None and not await svc.store.has_accepted(body.agent_id, in_force.version):
        raise ApiError(409, "terms_not_accepted", version=in_force.version)
    warning = await allowance_notice(svc, contract, today)
    session_id = secrets.token_hex(16)
    await svc.store.create_session(
        session_id, body.agent_id, tech.id, contract.id, svc.settings.node
    )
    tokens = svc.relay.create(session_id, body.agent_id, tech.id)
    relay_path = f"/ws/relay/{session_id}"
    # Without a configured public URL the technician reaches the relay the way it reached
    # the API, and the agent the way it reached its control connection (relay_path).
    public = svc.settings.public_url.rstrip("/")
    if public:
        relay_url = "ws" + public[4:] + relay_path
    else:
        origin = ctx.request.url.origin()
        relay_url = (
            str(origin.with_scheme("wss" if origin.scheme == "https" else "ws")) + relay_path
        )
    delivered = await svc.presence.send(
        body.agent_id,
        {
            "type": "session_request",
            "session_id": session_id,
            "relay_url": ("ws" + public[4:] + relay_path) if public else None,
            "relay_path": relay_path,
            "relay_token": tokens["agent"],
            "technician": {"name": tech.display_name, "company": tech.company},
            "implicit_consent": svc.settings.implicit_consent,
        },
    )
    if not delivered:
        await svc.relay.end(session_id, "agent_disconnected", "agent went offline")
        raise ApiError(404, "agent_offline", agent_id=body.agent_id)
    await svc.store.audit(
        "server",
        "session_request",
        session_id=session_id,
        agent_id=body.agent_id,
        technician_id=tech.id,
        detail=contract.code,
    )
    return SessionCreated(
        session_id=session_id,
        agent_id=body.agent_id,
        contract=contract.code,
        relay_url=relay_url,
        relay_token=tokens["technician"],
        warning=warning,
    )


async def _own_session(ctx: Context) -> str:
    svc = services(ctx)
    session_id = ctx.request.match_info["session_id"]
    row = await svc.store.get_session(session_id)
    # Admins and auditors see every session's record; a technician only her own.
    if row is None or (row.technician_id != ctx.tech.id and ctx.tech.role not in READ_ALL):
        raise ApiError(404, "session_not_found")
    return session_id


@api.route("GET", "/sessions/{session_id}", response=SessionInfo)
async def get_session(ctx: Context, _body: None) -> SessionInfo:
    """A session's record: times, end reason, bytes in each direction."""
    row = await services(ctx).store.get_session(await _own_session(ctx))
    if row is None:
        raise ApiError(404, "session_not_found")
    fields = {k: getattr(row, k) for k in SessionInfo.model_fields if k != "session_id"}
    return SessionInfo(session_id=row.id, **fields)


@api.route("POST", "/sessions/{session_id}/end", body=EndRequest, roles=SESSION_ROLES)
async def end_session(ctx: Context, body: EndRequest) -> None:
    """End a session now, with a recorded reason (a policy reason needs a comment)."""
    svc = services(ctx)
    session_id = await _own_session(ctx)
    reason, tech = body.reason, ctx.tech
    comment = (body.comment or "").strip() or None
    if reason not in END_REASONS:
        raise ApiError(422, "bad_request", detail=f"reason must be one of {', '.join(END_REASONS)}")
    if reason not in API_END_REASONS:
        raise ApiError(
            403, "end_reason_not_yours", reason=reason, allowed=", ".join(API_END_REASONS)
        )
    live = svc.relay.sessions.get(session_id)
    if reason in POLICY_REASONS:
        if live is not None and live.technician_id != tech.id:
            raise ApiError(403, "end_reason_own_session", reason=reason)
        if comment is None:
            raise ApiError(422, "end_comment_required", reason=reason)
        if live is not None and not live.consent_granted:
            # The page learns the customer's answer over the E2E channel, the server over
            # the agent's link: a request sent the moment the page saw it may arrive
            # first. Wait briefly for the agent's report rather than refuse it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.consent_answered.wait(), CONSENT_REPORT_WAIT)
            if not live.consent_granted:
                raise ApiError(403, "end_reason_needs_consent", reason=reason)
    ended = await svc.relay.end(
        session_id,
        reason,
        "ended through the API",
        by="technician",
        technician_id=tech.id,
        comment=comment,
    )
    if not ended:
        row = await svc.store.get_session(session_id)
        raise ApiError(
            409, "session_already_ended", reason=(row.end_reason if row else None) or "-"
        )
