"""Reading the records for reports, and the privacy operations on them (docs/privacy.md):
session history, a customer's month, one session's audit trail, the export and deletion
of a customer, and the purge of old records (retention)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from enkaku.i18n import register

from .models import (
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
    TermsAcceptance,
)
from .records import RecordsError, audit_row

register(
    {
        "store_customer_session_running": (
            "customer {customer} has a session running: end it first",
            "顧客 {customer} のセッションが実行中です。先に終了してください",
        ),
    }
)

#: The most session records one page of the history returns.
MAX_PAGE = 1000


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass
class SessionRecord:
    """One session as reports show it."""

    id: str
    requested_at: datetime
    paired_at: datetime | None
    ended_at: datetime | None
    technician_id: int
    technician: str
    customer_id: int
    customer: str
    contract: str
    agent_id: str
    end_reason: str | None
    end_asserted_by: str | None
    ended_by: str | None
    end_comment: str | None
    #: Bytes the relay carried to the customer's machine, and from it.
    bytes_to_agent: int
    bytes_to_technician: int
    events: list[AuditEvent] = field(default_factory=list)

    @property
    def duration(self) -> int | None:
        """Seconds from the two sides being connected to the end (None: never connected
        or still running)."""
        if self.paired_at is None or self.ended_at is None:
            return None
        return max(0, int((self.ended_at - self.paired_at).total_seconds()))


@dataclass
class SessionFilter:
    customer_id: int | None = None
    technician_id: int | None = None
    contract_id: int | None = None
    #: requested_at in [start, end)
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 100
    offset: int = 0


@dataclass
class Purged:
    sessions: int
    events: int
    #: Expired API tokens and console sign-ins deleted (they can no longer be used).
    sign_ins: int = 0


class Reports:
    """Read-mostly queries over sessions and audit events; shares the Store's engine."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], datetime]
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    # -- session history -------------------------------------------------------------

    async def sessions(self, f: SessionFilter) -> tuple[list[SessionRecord], int]:
        """One page of the sessions matching ``f``, oldest first, and how many match."""
        tech = aliased(Technician)
        ender = aliased(Technician)
        base = (
            select(SupportSession, Contract, Customer, tech.username, ender.username)
            .join(Contract, Contract.id == SupportSession.contract_id)
            .join(Customer, Customer.id == Contract.customer_id)
            .join(tech, tech.id == SupportSession.technician_id)
            .outerjoin(ender, ender.id == SupportSession.ended_by_technician_id)
        )
        conds = []
        if f.customer_id is not None:
            conds.append(Contract.customer_id == f.customer_id)
        if f.technician_id is not None:
            conds.append(SupportSession.technician_id == f.technician_id)
        if f.contract_id is not None:
            conds.append(SupportSession.contract_id == f.contract_id)
        if f.start is not None:
            conds.append(SupportSession.requested_at >= f.start)
        if f.end is not None:
            conds.append(SupportSession.requested_at < f.end)
        where = and_(*conds) if conds else None
        q = base.order_by(SupportSession.requested_at, SupportSession.id)
        count_q = (
            select(func.count())
            .select_from(SupportSession)
            .join(Contract, Contract.id == SupportSession.contract_id)
        )
        if where is not None:
            q, count_q = q.where(where), count_q.where(where)
        q = q.limit(min(max(f.limit, 1), MAX_PAGE)).offset(max(f.offset, 0))
        async with self._sessions() as s:
            total = int(await s.scalar(count_q) or 0)
            rows = (await s.execute(q)).all()
        return [_record(*row) for row in rows], total

    async def session(self, session_id: str) -> SessionRecord | None:
        """One session with its audit trail (every event, oldest first)."""
        tech = aliased(Technician)
        ender = aliased(Technician)
        q = (
            select(SupportSession, Contract, Customer, tech.username, ender.username)
            .join(Contract, Contract.id == SupportSession.contract_id)
            .join(Customer, Customer.id == Contract.customer_id)
            .join(tech, tech.id == SupportSession.technician_id)
            .outerjoin(ender, ender.id == SupportSession.ended_by_technician_id)
            .where(SupportSession.id == session_id)
        )
        async with self._sessions() as s:
            row = (await s.execute(q)).first()
            if row is None:
                return None
            rec = _record(*row)
            rec.events = list(
                await s.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.session_id == session_id)
                    .order_by(AuditEvent.at, AuditEvent.id)
                )
            )
        return rec

    async def month(
        self, customer_id: int, start: datetime, end: datetime
    ) -> tuple[Customer, list[SessionRecord]]:
        """A customer and its sessions requested in [start, end), each with its events."""
        async with self._sessions() as s:
            customer = await s.get(Customer, customer_id)
        if customer is None:
            raise RecordsError("store_customer_unknown", customer=str(customer_id))
        records: list[SessionRecord] = []
        offset = 0
        while True:
            page, total = await self.sessions(
                SessionFilter(
                    customer_id=customer_id, start=start, end=end, limit=MAX_PAGE, offset=offset
                )
            )
            records += page
            offset += len(page)
            if not page or offset >= total:
                break
        by_id = {r.id: r for r in records}
        ids = list(by_id)
        async with self._sessions() as s:
            for i in range(0, len(ids), 500):
                events = await s.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.session_id.in_(ids[i : i + 500]))
                    .order_by(AuditEvent.at, AuditEvent.id)
                )
                for ev in events:
                    by_id[ev.session_id or ""].events.append(ev)
        return customer, records

    # -- privacy -----------------------------------------------------------------------

    async def export_customer(self, customer_id: int) -> dict[str, Any]:
        """Everything stored about one customer, as JSON-ready values."""
        async with self._sessions() as s:
            customer = await s.get(Customer, customer_id)
            if customer is None:
                raise RecordsError("store_customer_unknown", customer=str(customer_id))
            contracts = list(
                await s.scalars(
                    select(Contract)
                    .where(Contract.customer_id == customer_id)
                    .order_by(Contract.id)
                )
            )
            links = list(
                await s.scalars(
                    select(AgentLink)
                    .where(AgentLink.customer_id == customer_id)
                    .order_by(AgentLink.agent_id)
                )
            )
            codes = list(
                await s.scalars(
                    select(EnrolmentCode)
                    .where(EnrolmentCode.customer_id == customer_id)
                    .order_by(EnrolmentCode.id)
                )
            )
            agent_ids = [link.agent_id for link in links]
            acceptances = list(
                await s.scalars(
                    select(TermsAcceptance)
                    .where(TermsAcceptance.agent_id.in_(agent_ids))
                    .order_by(TermsAcceptance.id)
                )
            )
            target = f"customer:{customer_id}"
            admin_events = list(
                await s.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.target == target)
                    .order_by(AuditEvent.at, AuditEvent.id)
                )
            )
        _, sessions = await self.month(
            customer_id, datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
        )
        return {
            "customer": {
                "id": customer.id,
                "name": customer.name,
                "created_at": _iso(customer.created_at),
                "deleted_at": _iso(customer.deleted_at),
                "contacts": customer.emails,
            },
            "contracts": [
                {
                    "id": c.id,
                    "code": c.code,
                    "remote_support": c.remote_support,
                    "valid_from": c.valid_from.isoformat(),
                    "valid_until": c.valid_until.isoformat() if c.valid_until else None,
                    "monthly_sessions": c.monthly_sessions,
                    "monthly_bytes": c.monthly_bytes,
                }
                for c in contracts
            ],
            "agents": [
                {
                    "agent_id": link.agent_id,
                    "linked_at": _iso(link.linked_at),
                    "linked_via": link.linked_via,
                    "session_id": link.session_id,
                    "enrolment_code_id": link.enrolment_code_id,
                }
                for link in links
            ],
            "enrolment_codes": [
                {
                    "id": c.id,
                    "hint": c.hint,
                    "created_at": _iso(c.created_at),
                    "expires_at": _iso(c.expires_at),
                    "max_uses": c.max_uses,
                    "uses": c.uses,
                    "revoked_at": _iso(c.revoked_at),
                }
                for c in codes
            ],
            "terms_acceptances": [
                {"agent_id": a.agent_id, "version": a.version, "accepted_at": _iso(a.accepted_at)}
                for a in acceptances
            ],
            "sessions": [session_json(r) for r in sessions],
            "admin_events": [event_json(e) for e in admin_events],
        }

    async def delete_customer(self, customer_id: int, *, actor: int | None = None) -> None:
        """Remove a customer's personal data in one transaction: its name (replaced by
        "deleted customer ID"), contact addresses, machine links and enrolment codes;
        its contracts end and lose their codes; its sessions keep only ids, times, end
        reasons and volumes (no comment, no detail), their audit events no file name and
        no contract code.
        One audit event ``customer_deleted`` with the customer's id only."""
        now = self._clock()
        async with self._sessions() as s:
            customer = await s.get(Customer, customer_id)
            if customer is None:
                raise RecordsError("store_customer_unknown", customer=str(customer_id))
            contract_ids = select(Contract.id).where(Contract.customer_id == customer_id)
            session_ids = select(SupportSession.id).where(
                SupportSession.contract_id.in_(contract_ids)
            )
            running = await s.scalar(
                select(func.count())
                .select_from(SupportSession)
                .where(
                    SupportSession.contract_id.in_(contract_ids),
                    SupportSession.ended_at.is_(None),
                )
            )
            if running:
                # Its end would write a comment back into the deleted record.
                raise RecordsError("store_customer_session_running", customer=customer_id)
            await s.execute(
                update(AuditEvent)
                .where(AuditEvent.session_id.in_(session_ids))
                .values(file_name=None)
            )
            # A session request's detail is the contract's code, which often names the
            # customer.
            await s.execute(
                update(AuditEvent)
                .where(
                    AuditEvent.session_id.in_(session_ids),
                    AuditEvent.event == "session_request",
                )
                .values(detail=None)
            )
            await s.execute(
                update(SupportSession)
                .where(SupportSession.contract_id.in_(contract_ids))
                .values(end_comment=None, end_detail=None)
            )
            yesterday = now.date() - timedelta(days=1)
            for contract in await s.scalars(
                select(Contract).where(Contract.customer_id == customer_id)
            ):
                contract.code = f"deleted-{contract.id}"
                contract.remote_support = False
                if contract.valid_until is None or contract.valid_until > yesterday:
                    contract.valid_until = max(yesterday, contract.valid_from)
            await s.execute(
                delete(CustomerContact).where(CustomerContact.customer_id == customer_id)
            )
            await s.execute(delete(AgentLink).where(AgentLink.customer_id == customer_id))
            await s.execute(delete(EnrolmentCode).where(EnrolmentCode.customer_id == customer_id))
            await s.execute(
                update(Customer)
                .where(Customer.id == customer_id)
                .values(name=f"deleted customer {customer_id}", deleted_at=now)
            )
            s.add(audit_row(now, "customer_deleted", actor=actor, target=f"customer:{customer_id}"))
            await s.commit()

    async def purge(self, session_days: int, audit_days: int) -> Purged:
        """Delete the ended sessions that ended more than ``session_days`` days ago (with
        their audit events) and the audit events older than ``audit_days`` days; 0 keeps
        them for ever. A record exactly at the limit stays. Expired API tokens and
        console sign-ins go in any case."""
        now = self._clock()
        sessions = events = 0
        async with self._sessions() as s:
            if session_days > 0:
                cutoff = now - timedelta(days=session_days)
                old = select(SupportSession.id).where(
                    SupportSession.ended_at.is_not(None), SupportSession.ended_at < cutoff
                )
                # A machine linked by a purged session keeps its link, not the session id.
                await s.execute(
                    update(AgentLink).where(AgentLink.session_id.in_(old)).values(session_id=None)
                )
                res = await s.execute(delete(AuditEvent).where(AuditEvent.session_id.in_(old)))
                events += int(res.rowcount)  # type: ignore[attr-defined]
                res = await s.execute(
                    delete(SupportSession).where(
                        SupportSession.ended_at.is_not(None), SupportSession.ended_at < cutoff
                    )
                )
                sessions = int(res.rowcount)  # type: ignore[attr-defined]
            if audit_days > 0:
                cutoff = now - timedelta(days=audit_days)
                res = await s.execute(delete(AuditEvent).where(AuditEvent.at < cutoff))
                events += int(res.rowcount)  # type: ignore[attr-defined]
            res = await s.execute(delete(ApiToken).where(ApiToken.expires_at < now))
            sign_ins = int(res.rowcount)  # type: ignore[attr-defined]
            res = await s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
            sign_ins += int(res.rowcount)  # type: ignore[attr-defined]
            await s.commit()
        return Purged(sessions, events, sign_ins)

    async def technician_ref(self, ref: str) -> Technician | None:
        """A technician by user name, or by id when ``ref`` is digits and no user name."""
        async with self._sessions() as s:
            row = await s.scalar(select(Technician).where(Technician.username == ref))
            if row is None and ref.isascii() and ref.isdigit() and len(ref) < 12:
                row = await s.get(Technician, int(ref))
            return row

    async def contract_ref(self, code: str) -> Contract | None:
        async with self._sessions() as s:
            return await s.scalar(select(Contract).where(Contract.code == code))

    async def all_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table (tests and the privacy checks)."""
        from .models import Base

        out: dict[str, list[dict[str, Any]]] = {}
        async with self._sessions() as s:
            for name, table in Base.metadata.tables.items():
                rows = (await s.execute(select(table))).mappings().all()
                out[name] = [dict(r) for r in rows]
        return out


def _record(
    row: SupportSession, contract: Contract, customer: Customer, tech: str, ender: str | None
) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        requested_at=_aware(row.requested_at) or row.requested_at,
        paired_at=_aware(row.paired_at),
        ended_at=_aware(row.ended_at),
        technician_id=row.technician_id,
        technician=tech,
        customer_id=customer.id,
        customer=customer.name,
        contract=contract.code,
        agent_id=row.agent_id,
        end_reason=row.end_reason,
        end_asserted_by=row.end_asserted_by,
        ended_by=ender,
        end_comment=row.end_comment,
        bytes_to_agent=row.bytes_to_agent or 0,
        bytes_to_technician=row.bytes_to_technician or 0,
    )


def _iso(dt: datetime | date | None) -> str | None:
    if dt is None:
        return None
    if isinstance(dt, datetime):
        return (_aware(dt) or dt).isoformat()
    return dt.isoformat()


def event_json(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": _iso(e.at),
        "source": e.source,
        "event": e.event,
        "technician_id": e.technician_id,
        "agent_id": e.agent_id,
        "session_id": e.session_id,
        "detail": e.detail,
        "target": e.target,
        "file_name": e.file_name,
        "file_size": e.file_size,
        "file_sha256": e.file_sha256,
    }


def session_json(r: SessionRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "requested_at": _iso(r.requested_at),
        "paired_at": _iso(r.paired_at),
        "ended_at": _iso(r.ended_at),
        "duration_seconds": r.duration,
        "technician": r.technician,
        "contract": r.contract,
        "agent_id": r.agent_id,
        "end_reason": r.end_reason,
        "end_asserted_by": r.end_asserted_by,
        "ended_by": r.ended_by,
        "end_comment": r.end_comment,
        "bytes_to_customer": r.bytes_to_agent,
        "bytes_from_customer": r.bytes_to_technician,
        "events": [event_json(e) for e in r.events],
    }


__all__ = [
    "MAX_PAGE",
    "Purged",
    "Reports",
    "SessionFilter",
    "SessionRecord",
    "event_json",
    "session_json",
]
