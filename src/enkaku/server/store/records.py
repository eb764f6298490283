"""The service's records (docs/records.md): customers, their contracts, which customer a
machine belongs to, enrolment codes, technicians' roles; every admin change audited in
the same transaction as the change itself.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from enkaku.i18n import register, t

from .models import (
    MAX_ROW_ID,
    AgentLink,
    ApiToken,
    AuditEvent,
    ConsoleSession,
    Contract,
    Customer,
    CustomerContact,
    EnrolmentCode,
    SupportSession,
    Technician,
    row_id,
)

register(
    {
        "store_role_unknown": (
            "unknown role {role!r}: use admin, technician or auditor",
            "ロール {role!r} は存在しません。admin、technician、auditor のいずれかを"
            "指定してください",
        ),
        "store_customer_exists": (
            "a customer named {name!r} already exists",
            "顧客 {name!r} はすでに存在します",
        ),
        "store_customer_unknown": (
            "no customer {customer!r}",
            "顧客 {customer!r} はいません",
        ),
        "store_customer_name_empty": (
            "the customer's name must not be empty",
            "顧客名を入力してください",
        ),
        "store_email_invalid": (
            "{email!r} is not an e-mail address",
            "{email!r} はメールアドレスではありません",
        ),
        "store_contract_unknown": (
            "no contract {code!r}",
            "契約 {code!r} はありません",
        ),
        "store_contract_dates": (
            "the contract ends ({until}) before it starts ({start})",
            "契約の終了日 ({until}) が開始日 ({start}) より前です",
        ),
        "store_allowance_negative": (
            "a monthly allowance must be 1 or more (leave it out for no limit)",
            "月間の上限は 1 以上にしてください (上限なしなら指定しないでください)",
        ),
        "store_enrolment_uses": (
            "an enrolment code is good for 1 or more machines",
            "登録コードで登録できる台数は 1 以上にしてください",
        ),
        "store_enrolment_unknown": (
            "no enrolment code {code_id}",
            "登録コード {code_id} はありません",
        ),
    }
)

ROLES = ("admin", "technician", "auditor")
#: How a machine came to be linked to its customer (AgentLink.linked_via).
LINK_VIA = ("consent", "enrolment", "admin")

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
#: Enrolment codes: Crockford's base 32 (no I, L, O, U), 16 characters = 80 bits, shown
#: in four groups of four.
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_LENGTH = 16


class StoreError(RuntimeError):
    """A request the data does not allow (duplicate name, unknown contract, ...)."""


class RecordsError(StoreError):
    """A change the records do not allow; ``key``/``kwargs`` give the message in both
    languages (i18n.both), for the API's error body."""

    def __init__(self, key: str, **kwargs: object) -> None:
        super().__init__(t(key, **kwargs))
        self.key, self.kwargs = key, kwargs


def new_enrolment_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, _CODE_LENGTH, 4))


def normalize_enrolment_code(code: str) -> str:
    """Upper case without spaces and hyphens; the letters a person may misread as
    digits (O, I, L) read as the digits, as Crockford's base 32 does."""
    plain = re.sub(r"[\s\-]", "", code).upper()
    return plain.translate(str.maketrans("OIL", "011"))


def enrolment_digest(code: str) -> str:
    return hashlib.sha256(normalize_enrolment_code(code).encode()).hexdigest()


def month_start(day: date) -> datetime:
    """The first instant (UTC) of ``day``'s calendar month."""
    return datetime(day.year, day.month, 1, tzinfo=UTC)


def _next_month(day: date) -> datetime:
    if day.month == 12:
        return datetime(day.year + 1, 1, 1, tzinfo=UTC)
    return datetime(day.year, day.month + 1, 1, tzinfo=UTC)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _emails(emails: Sequence[str]) -> list[str]:
    out: list[str] = []
    for raw in emails:
        email = raw.strip()
        if not _EMAIL.fullmatch(email) or len(email) > 254:
            raise RecordsError("store_email_invalid", email=raw)
        if email.lower() not in (e.lower() for e in out):
            out.append(email)
    return out


@dataclass
class Usage:
    """A contract's use in one calendar month."""

    sessions: int
    bytes: int


def contract_serviceable(contract: Contract, today: date) -> str | None:
    """None if remote support may be given under ``contract`` on ``today``, else the
    message key saying why not."""
    if not contract.remote_support:
        return "contract_excludes_remote_support"
    if contract.valid_from > today or (contract.valid_until and contract.valid_until < today):
        return "contract_not_in_force"
    return None


def audit_row(
    now: datetime,
    event: str,
    *,
    actor: int | None,
    target: str | None = None,
    source: str = "admin",
    session_id: str | None = None,
    agent_id: str | None = None,
    detail: str | None = None,
) -> AuditEvent:
    return AuditEvent(
        session_id=session_id,
        agent_id=agent_id,
        technician_id=actor,
        at=now,
        source=source,
        event=event[:48],
        detail=detail,
        target=target,
    )


class Records:
    """Queries and changes of the records; shares the Store's engine and clock."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], datetime]
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    # -- customers ----------------------------------------------------------------

    async def create_customer(
        self, name: str, emails: Sequence[str] = (), *, actor: int | None = None
    ) -> Customer:
        name = name.strip()
        if not name:
            raise RecordsError("store_customer_name_empty")
        addresses = _emails(emails)
        now = self._clock()
        async with self._sessions() as s:
            row = Customer(
                name=name,
                created_at=now,
                contacts=[CustomerContact(email=e) for e in addresses],
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:
                raise RecordsError("store_customer_exists", name=name) from None
            s.add(audit_row(now, "customer_created", actor=actor, target=f"customer:{row.id}"))
            await s.commit()
        return row

    async def customers(self) -> list[Customer]:
        async with self._sessions() as s:
            return list(await s.scalars(select(Customer).order_by(Customer.name)))

    async def customer(self, ref: str | int) -> Customer:
        """A customer by id (an int, or a string of digits that is no customer's name)
        or by exact name; RecordsError if there is none."""
        async with self._sessions() as s:
            row = None
            if isinstance(ref, str):
                row = await s.scalar(select(Customer).where(Customer.name == ref.strip()))
                number = row_id(ref.strip())
                if row is None and number is not None:
                    row = await s.get(Customer, number)
            elif 1 <= ref <= MAX_ROW_ID:
                row = await s.get(Customer, ref)
            if row is None:
                raise RecordsError("store_customer_unknown", customer=str(ref))
            return row

    async def update_customer(
        self,
        customer_id: int,
        *,
        name: str | None = None,
        emails: Sequence[str] | None = None,
        actor: int | None = None,
    ) -> Customer:
        now = self._clock()
        async with self._sessions() as s:
            row = await s.get(Customer, customer_id)
            if row is None:
                raise RecordsError("store_customer_unknown", customer=str(customer_id))
            changed = []
            if name is not None:
                if not name.strip():
                    raise RecordsError("store_customer_name_empty")
                row.name = name.strip()
                changed.append("name")
            if emails is not None:
                # Addresses kept keep their rows: the unit of work inserts before it
                # deletes, so a new row for a kept address would hit the unique key.
                kept = {c.email.lower(): c for c in row.contacts}
                contacts = []
                for email in _emails(emails):
                    contact = kept.pop(email.lower(), None) or CustomerContact(email=email)
                    contact.email = email
                    contacts.append(contact)
                row.contacts = contacts
                changed.append("emails")
            try:
                await s.flush()
            except IntegrityError:
                raise RecordsError("store_customer_exists", name=name) from None
            s.add(
                audit_row(
                    now,
                    "customer_changed",
                    actor=actor,
                    target=f"customer:{row.id}",
                    detail=",".join(changed) or None,
                )
            )
            await s.commit()
            await s.refresh(row)
            return row

    # -- contracts ----------------------------------------------------------------

    async def create_contract(
        self,
        code: str,
        customer_id: int,
        *,
        remote_support: bool = True,
        valid_from: date | None = None,
        valid_until: date | None = None,
        monthly_sessions: int | None = None,
        monthly_bytes: int | None = None,
        actor: int | None = None,
    ) -> Contract:
        now = self._clock()
        start = valid_from or now.date()
        _check_contract(start, valid_until, monthly_sessions, monthly_bytes)
        async with self._sessions() as s:
            customer = await s.get(Customer, customer_id)
            if customer is None:
                raise RecordsError("store_customer_unknown", customer=str(customer_id))
            row = Contract(
                code=code,
                customer=customer,
                remote_support=remote_support,
                valid_from=start,
                valid_until=valid_until,
                monthly_sessions=monthly_sessions,
                monthly_bytes=monthly_bytes,
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:
                raise RecordsError("store_contract_exists", code=code) from None
            s.add(audit_row(now, "contract_created", actor=actor, target=f"contract:{row.id}"))
            await s.commit()
        return row

    async def update_contract(
        self, code: str, *, actor: int | None = None, **fields: object
    ) -> Contract:
        """Change ``fields`` (remote_support, valid_from, valid_until, monthly_sessions,
        monthly_bytes; a None allowance removes the limit) of the contract ``code``."""
        allowed = {
            "remote_support",
            "valid_from",
            "valid_until",
            "monthly_sessions",
            "monthly_bytes",
        }
        assert set(fields) <= allowed, fields
        now = self._clock()
        async with self._sessions() as s:
            row = await s.scalar(select(Contract).where(Contract.code == code))
            if row is None:
                raise RecordsError("store_contract_unknown", code=code)
            for key, value in fields.items():
                setattr(row, key, value)
            _check_contract(
                row.valid_from, row.valid_until, row.monthly_sessions, row.monthly_bytes
            )
            s.add(
                audit_row(
                    now,
                    "contract_changed",
                    actor=actor,
                    target=f"contract:{row.id}",
                    detail=",".join(sorted(fields)) or None,
                )
            )
            await s.commit()
            return row

    async def contracts(self, customer_id: int | None = None) -> list[Contract]:
        q = select(Contract).order_by(Contract.code)
        if customer_id is not None:
            q = q.where(Contract.customer_id == customer_id)
        async with self._sessions() as s:
            return list(await s.scalars(q))

    async def usable_contracts(self, agent_id: str, today: date) -> list[Contract]:
        """The contracts a session with this agent may be billed to on ``today``: those
        of its customer that include remote support and are in force, or, for a machine
        not linked yet, every such contract."""
        link = await self.agent_link(agent_id)
        rows = await self.contracts(link.customer_id if link is not None else None)
        return [c for c in rows if contract_serviceable(c, today) is None]

    async def usage(self, contract_id: int, today: date) -> Usage:
        """Sessions requested under the contract in ``today``'s calendar month (UTC), and
        the bytes they carried both ways."""
        start, end = month_start(today), _next_month(today)
        async with self._sessions() as s:
            count, total = (
                await s.execute(
                    select(
                        func.count(SupportSession.id),
                        func.coalesce(
                            func.sum(
                                SupportSession.bytes_to_agent + SupportSession.bytes_to_technician
                            ),
                            0,
                        ),
                    ).where(
                        SupportSession.contract_id == contract_id,
                        SupportSession.requested_at >= start,
                        SupportSession.requested_at < end,
                    )
                )
            ).one()
        return Usage(int(count), int(total))

    # -- machines -----------------------------------------------------------------

    async def agent_link(self, agent_id: str) -> AgentLink | None:
        async with self._sessions() as s:
            return await s.get(AgentLink, agent_id)

    async def link_on_consent(self, session_id: str) -> AgentLink | None:
        """The customer consented to ``session_id``: if its machine is not linked yet,
        link it to the customer of the contract the session is billed to, and audit it
        (one transaction). The new link, or None if there was nothing to do."""
        now = self._clock()
        async with self._sessions() as s:
            row = (
                await s.execute(
                    select(SupportSession, Contract.customer_id)
                    .join(Contract, Contract.id == SupportSession.contract_id)
                    .where(SupportSession.id == session_id)
                )
            ).first()
            if row is None:
                return None
            session, customer_id = row
            if await s.get(AgentLink, session.agent_id) is not None:
                return None
            link = AgentLink(
                agent_id=session.agent_id,
                customer_id=customer_id,
                linked_at=now,
                linked_via="consent",
                session_id=session_id,
            )
            s.add(link)
            s.add(
                audit_row(
                    now,
                    "agent_linked",
                    actor=session.technician_id,
                    source="server",
                    session_id=session_id,
                    agent_id=session.agent_id,
                    target=f"customer:{customer_id}",
                    detail="consent",
                )
            )
            try:
                await s.commit()
            except IntegrityError:  # linked meanwhile (another session, an enrolment)
                return None
            return link

    async def enrol(self, agent_id: str, code: str) -> tuple[str, AgentLink | None]:
        """An agent presented an enrolment code: ("linked", link), or why not:
        "already_linked" (the link), "invalid", "expired", "used_up"."""
        now = self._clock()
        digest = enrolment_digest(code)
        async with self._sessions() as s:
            existing = await s.get(AgentLink, agent_id)
            if existing is not None:
                return "already_linked", existing
            row = await s.scalar(select(EnrolmentCode).where(EnrolmentCode.code_hash == digest))
            if row is None or row.revoked_at is not None:
                return "invalid", None
            if row.expires_at is not None and _aware(row.expires_at) <= now:
                return "expired", None
            # One conditional UPDATE: two agents cannot both take a code's last use.
            res = await s.execute(
                update(EnrolmentCode)
                .where(
                    EnrolmentCode.id == row.id,
                    (EnrolmentCode.max_uses.is_(None))
                    | (EnrolmentCode.uses < EnrolmentCode.max_uses),
                )
                .values(uses=EnrolmentCode.uses + 1)
            )
            if not res.rowcount:  # type: ignore[attr-defined]
                return "used_up", None
            link = AgentLink(
                agent_id=agent_id,
                customer_id=row.customer_id,
                linked_at=now,
                linked_via="enrolment",
                enrolment_code_id=row.id,
            )
            s.add(link)
            s.add(
                audit_row(
                    now,
                    "agent_enrolled",
                    actor=None,
                    source="agent",
                    agent_id=agent_id,
                    target=f"customer:{row.customer_id}",
                    detail=f"enrolment_code:{row.id}",
                )
            )
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()
                return "already_linked", await self.agent_link(agent_id)
            return "linked", link

    async def linked_agents(self, customer_id: int) -> list[AgentLink]:
        async with self._sessions() as s:
            return list(
                await s.scalars(
                    select(AgentLink)
                    .where(AgentLink.customer_id == customer_id)
                    .order_by(AgentLink.agent_id)
                )
            )

    # -- enrolment codes ------------------------------------------------------------

    async def create_enrolment_code(
        self,
        customer_id: int,
        *,
        max_uses: int | None = 1,
        expires_at: datetime | None = None,
        actor: int | None = None,
    ) -> tuple[str, EnrolmentCode]:
        """A new code (returned once; only its SHA-256 is kept) and its row."""
        if max_uses is not None and max_uses < 1:
            raise RecordsError("store_enrolment_uses")
        now = self._clock()
        raw = new_enrolment_code()
        async with self._sessions() as s:
            if await s.get(Customer, customer_id) is None:
                raise RecordsError("store_customer_unknown", customer=str(customer_id))
            row = EnrolmentCode(
                customer_id=customer_id,
                code_hash=enrolment_digest(raw),
                hint=raw[-4:],
                created_at=now,
                created_by=actor,
                expires_at=expires_at,
                max_uses=max_uses,
                uses=0,
            )
            s.add(row)
            await s.flush()
            s.add(
                audit_row(
                    now,
                    "enrolment_code_created",
                    actor=actor,
                    target=f"enrolment_code:{row.id}",
                    detail=f"customer:{customer_id}",
                )
            )
            await s.commit()
        return raw, row

    async def enrolment_codes(self, customer_id: int | None = None) -> list[EnrolmentCode]:
        q = select(EnrolmentCode).order_by(EnrolmentCode.id)
        if customer_id is not None:
            q = q.where(EnrolmentCode.customer_id == customer_id)
        async with self._sessions() as s:
            return list(await s.scalars(q))

    async def revoke_enrolment_code(self, code_id: int, *, actor: int | None = None) -> None:
        now = self._clock()
        async with self._sessions() as s:
            row = await s.get(EnrolmentCode, code_id)
            if row is None:
                raise RecordsError("store_enrolment_unknown", code_id=code_id)
            if row.revoked_at is None:
                row.revoked_at = now
            s.add(
                audit_row(
                    now,
                    "enrolment_code_revoked",
                    actor=actor,
                    target=f"enrolment_code:{code_id}",
                )
            )
            await s.commit()

    # -- technicians ----------------------------------------------------------------

    async def technicians(self) -> list[Technician]:
        async with self._sessions() as s:
            return list(await s.scalars(select(Technician).order_by(Technician.username)))

    async def set_role(self, technician_id: int, role: str, *, actor: int | None = None) -> None:
        if role not in ROLES:
            raise RecordsError("store_role_unknown", role=role)
        async with self._sessions() as s:
            await s.execute(
                update(Technician).where(Technician.id == technician_id).values(role=role)
            )
            s.add(
                audit_row(
                    self._clock(),
                    "technician_role",
                    actor=actor,
                    target=f"technician:{technician_id}",
                    detail=role,
                )
            )
            await s.commit()

    async def set_disabled(
        self, technician_id: int, disabled: bool, *, actor: int | None = None
    ) -> None:
        """Disable (no sign-in; every API token and console session deleted at once) or
        enable the account."""
        async with self._sessions() as s:
            await s.execute(
                update(Technician).where(Technician.id == technician_id).values(active=not disabled)
            )
            if disabled:
                await s.execute(delete(ApiToken).where(ApiToken.technician_id == technician_id))
                await s.execute(
                    delete(ConsoleSession).where(ConsoleSession.technician_id == technician_id)
                )
            s.add(
                audit_row(
                    self._clock(),
                    "technician_disabled" if disabled else "technician_enabled",
                    actor=actor,
                    target=f"technician:{technician_id}",
                )
            )
            await s.commit()

    async def audit_admin(
        self, event: str, *, actor: int | None, target: str, detail: str | None = None
    ) -> None:
        """Record an admin action done through another repository (technician created,
        password or second factor reset)."""
        async with self._sessions() as s:
            s.add(audit_row(self._clock(), event, actor=actor, target=target, detail=detail))
            await s.commit()

    async def admin_events(self, limit: int = 100) -> list[AuditEvent]:
        async with self._sessions() as s:
            return list(
                await s.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.source == "admin")
                    .order_by(AuditEvent.id.desc())
                    .limit(limit)
                )
            )


def _check_contract(
    start: date,
    until: date | None,
    monthly_sessions: int | None,
    monthly_bytes: int | None,
) -> None:
    if until is not None and until < start:
        raise RecordsError("store_contract_dates", start=start, until=until)
    for limit in (monthly_sessions, monthly_bytes):
        if limit is not None and limit < 1:
            raise RecordsError("store_allowance_negative")
