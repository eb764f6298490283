"""/api/v1/admin: customers, contracts, enrolment codes and technician accounts
(docs/records.md). Admins change; auditors read; technicians get 403. Every change is
audited with its actor and target ids (never a name or an address)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from enkaku.i18n import register

from ..store.models import row_id
from ..store.records import ROLES, StoreError
from .auth import MIN_PASSWORD
from .framework import ApiError, Context
from .routes import api, services

register(
    {
        "role_forbidden": (
            "Your account's role ({role}) does not allow this; it needs: {allowed}.",
            "このアカウントのロール ({role}) ではこの操作はできません。必要なロール: {allowed}",
        ),
        "admin_not_found": ("{what} {ref} does not exist.", "{what} {ref} は存在しません。"),
        "admin_self": (
            "You cannot disable your own account or take away your own admin role.",
            "自分のアカウントを無効にしたり、自分の管理者ロールを外したりすることはできません。",
        ),
        "admin_refused": ("{detail}", "{detail}"),
    }
)

ADMIN = ("admin",)
READ = ("admin", "auditor")


def _refused(exc: StoreError) -> ApiError:
    """A records error as 409/422 with its own message in both languages."""
    key = getattr(exc, "key", None)
    if key is None:
        return ApiError(409, "admin_refused", detail=str(exc))
    status = 409 if key.endswith(("_exists",)) else 422
    return ApiError(status, key, **exc.kwargs)  # type: ignore[attr-defined]


def _int_param(ctx: Context, name: str, what: str) -> int:
    raw = ctx.request.match_info[name]
    number = row_id(raw)
    if number is None:
        raise ApiError(404, "admin_not_found", what=what, ref=raw[:20])
    return number


# -- customers ---------------------------------------------------------------------------


class CustomerIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    #: Contact addresses (personal data; used for notices such as new terms).
    emails: list[str] = Field(default_factory=list, max_length=20)


class CustomerPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    emails: list[str] | None = Field(default=None, max_length=20)


class CustomerOut(BaseModel):
    id: int
    name: str
    emails: list[str]
    created_at: datetime


class CustomerDetail(CustomerOut):
    contracts: list[str]
    #: The machines (agent IDs) linked to the customer.
    agents: list[str]


class CustomerList(BaseModel):
    customers: list[CustomerOut]


def _customer(row: Any) -> CustomerOut:
    return CustomerOut(id=row.id, name=row.name, emails=row.emails, created_at=row.created_at)


@api.route("GET", "/admin/customers", response=CustomerList, roles=READ)
async def admin_customers(ctx: Context, _body: None) -> CustomerList:
    """Every customer with its contact addresses."""
    rows = await services(ctx).store.records.customers()
    return CustomerList(customers=[_customer(c) for c in rows])


@api.route(
    "POST", "/admin/customers", body=CustomerIn, response=CustomerOut, status=201, roles=ADMIN
)
async def admin_customer_add(ctx: Context, body: CustomerIn) -> CustomerOut:
    """Add a customer."""
    try:
        row = await services(ctx).store.records.create_customer(
            body.name, body.emails, actor=ctx.tech.id
        )
    except StoreError as exc:
        raise _refused(exc) from None
    return _customer(row)


async def _customer_detail(ctx: Context, customer_id: int) -> CustomerDetail:
    records = services(ctx).store.records
    try:
        row = await records.customer(customer_id)
    except StoreError:
        raise ApiError(404, "admin_not_found", what="customer", ref=customer_id) from None
    contracts = await records.contracts(customer_id)
    agents = await records.linked_agents(customer_id)
    return CustomerDetail(
        **_customer(row).model_dump(),
        contracts=[c.code for c in contracts],
        agents=[a.agent_id for a in agents],
    )


@api.route("GET", "/admin/customers/{customer_id}", response=CustomerDetail, roles=READ)
async def admin_customer(ctx: Context, _body: None) -> CustomerDetail:
    """A customer, its contracts and its machines."""
    return await _customer_detail(ctx, _int_param(ctx, "customer_id", "customer"))


@api.route(
    "PATCH", "/admin/customers/{customer_id}", body=CustomerPatch, response=CustomerDetail,
    roles=ADMIN,
)  # fmt: skip
async def admin_customer_edit(ctx: Context, body: CustomerPatch) -> CustomerDetail:
    """Rename a customer or replace its contact addresses."""
    customer_id = _int_param(ctx, "customer_id", "customer")
    records = services(ctx).store.records
    try:
        await records.customer(customer_id)
    except StoreError:
        raise ApiError(404, "admin_not_found", what="customer", ref=customer_id) from None
    try:
        await records.update_customer(
            customer_id, name=body.name, emails=body.emails, actor=ctx.tech.id
        )
    except StoreError as exc:
        raise _refused(exc) from None
    return await _customer_detail(ctx, customer_id)


# -- contracts ---------------------------------------------------------------------------


class ContractIn(BaseModel):
    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    customer_id: int = Field(ge=1, le=2**31 - 1)  # an INTEGER column
    remote_support: bool = True
    valid_from: date | None = None
    valid_until: date | None = None
    monthly_sessions: int | None = Field(default=None, ge=1, le=1_000_000)
    monthly_bytes: int | None = Field(default=None, ge=1, le=2**62)


class ContractPatch(BaseModel):
    remote_support: bool | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    monthly_sessions: int | None = Field(default=None, ge=1, le=1_000_000)
    monthly_bytes: int | None = Field(default=None, ge=1, le=2**62)
    #: Fields to set to null (valid_until: open-ended; monthly_*: no limit).
    clear: list[str] = Field(default_factory=list, max_length=3)


class ContractOut(BaseModel):
    code: str
    customer_id: int
    customer_name: str
    remote_support: bool
    valid_from: date
    valid_until: date | None
    monthly_sessions: int | None
    monthly_bytes: int | None
    #: None if remote support may be given under it today, else why not.
    state: str | None


class ContractOutList(BaseModel):
    contracts: list[ContractOut]


def _contract(ctx: Context, row: Any) -> ContractOut:
    store = services(ctx).store
    return ContractOut(
        code=row.code,
        customer_id=row.customer_id,
        customer_name=row.customer_name,
        remote_support=row.remote_support,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        monthly_sessions=row.monthly_sessions,
        monthly_bytes=row.monthly_bytes,
        state=store.contract_serviceable(row),
    )


@api.route("GET", "/admin/contracts", response=ContractOutList, roles=READ)
async def admin_contracts(ctx: Context, _body: None) -> ContractOutList:
    """Every contract with its customer and whether it is usable today."""
    rows = await services(ctx).store.records.contracts()
    return ContractOutList(contracts=[_contract(ctx, c) for c in rows])


@api.route(
    "POST", "/admin/contracts", body=ContractIn, response=ContractOut, status=201, roles=ADMIN
)
async def admin_contract_add(ctx: Context, body: ContractIn) -> ContractOut:
    """Add a contract to a customer."""
    try:
        row = await services(ctx).store.records.create_contract(
            body.code,
            body.customer_id,
            remote_support=body.remote_support,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            monthly_sessions=body.monthly_sessions,
            monthly_bytes=body.monthly_bytes,
            actor=ctx.tech.id,
        )
    except StoreError as exc:
        if getattr(exc, "key", "") == "store_customer_unknown":
            raise ApiError(404, "admin_not_found", what="customer", ref=body.customer_id) from None
        raise _refused(exc) from None
    return _contract(ctx, row)


@api.route(
    "PATCH", "/admin/contracts/{code}", body=ContractPatch, response=ContractOut, roles=ADMIN
)
async def admin_contract_edit(ctx: Context, body: ContractPatch) -> ContractOut:
    """Change a contract's dates, remote support or allowance."""
    code = ctx.request.match_info["code"]
    clearable = {"valid_until", "monthly_sessions", "monthly_bytes"}
    if not set(body.clear) <= clearable:
        raise ApiError(422, "bad_request", detail=f"clear: only {', '.join(sorted(clearable))}")
    fields: dict[str, object] = {
        k: v for k, v in body.model_dump(exclude={"clear"}).items() if v is not None
    }
    fields.update({k: None for k in body.clear})
    try:
        row = await services(ctx).store.records.update_contract(code, actor=ctx.tech.id, **fields)
    except StoreError as exc:
        if getattr(exc, "key", "") == "store_contract_unknown":
            raise ApiError(404, "admin_not_found", what="contract", ref=code[:64]) from None
        raise _refused(exc) from None
    return _contract(ctx, row)


# -- enrolment codes -----------------------------------------------------------------------


class EnrolmentIn(BaseModel):
    customer_id: int = Field(ge=1, le=2**31 - 1)  # an INTEGER column
    #: Machines it may link (None: any number until it expires or is revoked).
    max_uses: int | None = Field(default=1, ge=1, le=100_000)
    expires_at: datetime | None = None


class EnrolmentOut(BaseModel):
    id: int
    customer_id: int
    #: The code's last four characters.
    hint: str
    created_at: datetime
    expires_at: datetime | None
    max_uses: int | None
    uses: int
    revoked_at: datetime | None


class EnrolmentCreated(EnrolmentOut):
    #: The code itself: shown this once, only its hash is kept.
    code: str


class EnrolmentList(BaseModel):
    codes: list[EnrolmentOut]


def _enrolment(row: Any) -> dict[str, Any]:
    return {k: getattr(row, k) for k in EnrolmentOut.model_fields}


@api.route("GET", "/admin/enrolment-codes", response=EnrolmentList, roles=READ)
async def admin_enrolment_codes(ctx: Context, _body: None) -> EnrolmentList:
    """Every enrolment code (never the code itself: its last four characters)."""
    rows = await services(ctx).store.records.enrolment_codes()
    return EnrolmentList(codes=[EnrolmentOut(**_enrolment(r)) for r in rows])


@api.route(
    "POST", "/admin/enrolment-codes", body=EnrolmentIn, response=EnrolmentCreated, status=201,
    roles=ADMIN,
)  # fmt: skip
async def admin_enrolment_create(ctx: Context, body: EnrolmentIn) -> EnrolmentCreated:
    """Create an enrolment code for a customer (the code is in this answer only)."""
    try:
        raw, row = await services(ctx).store.records.create_enrolment_code(
            body.customer_id, max_uses=body.max_uses, expires_at=body.expires_at, actor=ctx.tech.id
        )
    except StoreError as exc:
        if getattr(exc, "key", "") == "store_customer_unknown":
            raise ApiError(404, "admin_not_found", what="customer", ref=body.customer_id) from None
        raise _refused(exc) from None
    return EnrolmentCreated(code=raw, **_enrolment(row))


@api.route("POST", "/admin/enrolment-codes/{code_id}/revoke", roles=ADMIN)
async def admin_enrolment_revoke(ctx: Context, _body: None) -> None:
    """Revoke an enrolment code: no further machine can use it."""
    code_id = _int_param(ctx, "code_id", "enrolment code")
    try:
        await services(ctx).store.records.revoke_enrolment_code(code_id, actor=ctx.tech.id)
    except StoreError:
        raise ApiError(404, "admin_not_found", what="enrolment code", ref=code_id) from None


# -- technicians -------------------------------------------------------------------------


class TechnicianIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)
    display_name: str = Field(default="", max_length=128)
    company: str = Field(default="", max_length=128)
    role: str = Field(default="technician", pattern="^(admin|technician|auditor)$")


class TechnicianOut(BaseModel):
    id: int
    username: str
    display_name: str
    company: str
    role: str
    disabled: bool
    totp_enrolled: bool
    created_at: datetime


class TechnicianList(BaseModel):
    technicians: list[TechnicianOut]


class RoleIn(BaseModel):
    role: str = Field(pattern="^(admin|technician|auditor)$")


class PasswordIn(BaseModel):
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)


def _technician(row: Any) -> TechnicianOut:
    return TechnicianOut(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        company=row.company,
        role=row.role,
        disabled=not row.active,
        totp_enrolled=row.totp_enrolled,
        created_at=row.created_at,
    )


async def _target(ctx: Context) -> int:
    technician_id = _int_param(ctx, "technician_id", "technician")
    if await services(ctx).store.technician_by_id(technician_id) is None:
        raise ApiError(404, "admin_not_found", what="technician", ref=technician_id)
    return technician_id


@api.route("GET", "/admin/technicians", response=TechnicianList, roles=READ)
async def admin_technicians(ctx: Context, _body: None) -> TechnicianList:
    """Every technician account with its role and state."""
    rows = await services(ctx).store.records.technicians()
    return TechnicianList(technicians=[_technician(r) for r in rows])


@api.route(
    "POST", "/admin/technicians", body=TechnicianIn, response=TechnicianOut, status=201,
    roles=ADMIN,
)  # fmt: skip
async def admin_technician_add(ctx: Context, body: TechnicianIn) -> TechnicianOut:
    """Add a technician account."""
    store = services(ctx).store
    try:
        row = await store.create_technician(
            body.username,
            body.password,
            display_name=body.display_name,
            company=body.company,
            role=body.role,
        )
    except StoreError:  # the only refusal left once the body is valid: the name is taken
        raise ApiError(409, "store_technician_exists", user=body.username) from None
    await store.records.audit_admin(
        "technician_created", actor=ctx.tech.id, target=f"technician:{row.id}", detail=body.role
    )
    return _technician(row)


@api.route("POST", "/admin/technicians/{technician_id}/disable", roles=ADMIN)
async def admin_technician_disable(ctx: Context, _body: None) -> None:
    """Disable an account: no sign-in; its tokens and console sessions end at once."""
    technician_id = await _target(ctx)
    if technician_id == ctx.tech.id:
        raise ApiError(409, "admin_self")
    await services(ctx).store.records.set_disabled(technician_id, True, actor=ctx.tech.id)


@api.route("POST", "/admin/technicians/{technician_id}/enable", roles=ADMIN)
async def admin_technician_enable(ctx: Context, _body: None) -> None:
    """Enable a disabled account again (it signs in anew)."""
    technician_id = await _target(ctx)
    await services(ctx).store.records.set_disabled(technician_id, False, actor=ctx.tech.id)


@api.route("PUT", "/admin/technicians/{technician_id}/role", body=RoleIn, roles=ADMIN)
async def admin_technician_role(ctx: Context, body: RoleIn) -> None:
    """Change an account's role (admin, technician, auditor)."""
    technician_id = await _target(ctx)
    if technician_id == ctx.tech.id and body.role != "admin":
        raise ApiError(409, "admin_self")
    assert body.role in ROLES
    await services(ctx).store.records.set_role(technician_id, body.role, actor=ctx.tech.id)


@api.route(
    "POST", "/admin/technicians/{technician_id}/reset-password", body=PasswordIn, roles=ADMIN
)
async def admin_technician_reset_password(ctx: Context, body: PasswordIn) -> None:
    """Replace an account's password and sign it out everywhere."""
    technician_id = await _target(ctx)
    store = services(ctx).store
    await store.set_password(technician_id, body.password)
    await store.records.audit_admin(
        "password_reset", actor=ctx.tech.id, target=f"technician:{technician_id}"
    )


@api.route("POST", "/admin/technicians/{technician_id}/reset-totp", roles=ADMIN)
async def admin_technician_reset_totp(ctx: Context, _body: None) -> None:
    """Remove an account's second factor and sign it out of the console."""
    technician_id = await _target(ctx)
    store = services(ctx).store
    await store.disable_totp(technician_id)
    await store.revoke_console_sessions(technician_id)
    await store.records.audit_admin(
        "totp_reset", actor=ctx.tech.id, target=f"technician:{technician_id}"
    )
