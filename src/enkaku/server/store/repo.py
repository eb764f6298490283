"""The server's data access: every query the app makes, in one place."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from enkaku.i18n import t

from .models import Agent, ApiToken, AuditEvent, Contract, SupportSession, Technician

_hasher = PasswordHasher()
# A valid hash of a random password: verified against when the user does not exist so
# that a login for an unknown user costs the same time as one with a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

TOKEN_LIFETIME = timedelta(days=30)


class StoreError(RuntimeError):
    """A request the data does not allow (duplicate name, unknown contract, ...)."""


def _now() -> datetime:
    return datetime.now(UTC)


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class Store:
    """Async repository over the enkaku schema."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    async def close(self) -> None:
        await self.engine.dispose()

    # -- technicians and tokens -------------------------------------------------

    async def create_technician(
        self,
        username: str,
        password: str,
        *,
        display_name: str = "",
        company: str = "",
        role: str = "technician",
    ) -> Technician:
        """Add a technician account (argon2id hash of ``password``)."""
        if role not in ("admin", "technician"):
            raise StoreError(t("store_unknown_role", role=role))
        pw_hash = await asyncio.to_thread(_hasher.hash, password)
        tech = Technician(
            username=username,
            display_name=display_name or username,
            company=company,
            password_hash=pw_hash,
            role=role,
            created_at=self._clock(),
        )
        async with self._sessions() as s:
            s.add(tech)
            try:
                await s.commit()
            except IntegrityError:
                raise StoreError(t("store_technician_exists", user=username)) from None
        return tech

    async def verify_login(self, username: str, password: str) -> Technician | None:
        """The technician if ``password`` is right and the account active, else None."""
        async with self._sessions() as s:
            tech = await s.scalar(select(Technician).where(Technician.username == username))
        pw_hash = tech.password_hash if tech is not None else _DUMMY_HASH
        try:
            await asyncio.to_thread(_hasher.verify, pw_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if tech is None or not tech.active:
            return None
        return tech

    async def issue_token(self, technician_id: int, label: str = "") -> tuple[str, datetime]:
        """A new API token (returned once; only its digest is stored) and its expiry."""
        raw = "ek_" + secrets.token_urlsafe(32)
        now = self._clock()
        async with self._sessions() as s:
            s.add(
                ApiToken(
                    technician_id=technician_id,
                    token_hash=token_digest(raw),
                    label=label[:128],
                    created_at=now,
                    expires_at=now + TOKEN_LIFETIME,
                )
            )
            await s.commit()
        return raw, now + TOKEN_LIFETIME

    async def technician_for_token(self, raw: str) -> Technician | None:
        """Resolve a bearer token to its active technician."""
        now = self._clock()
        async with self._sessions() as s:
            row = (
                await s.execute(
                    select(ApiToken, Technician)
                    .join(Technician, Technician.id == ApiToken.technician_id)
                    .where(ApiToken.token_hash == token_digest(raw))
                )
            ).first()
            if row is None:
                return None
            token, tech = row
            if _aware(token.expires_at) <= now or not tech.active:
                return None
            token.last_used_at = now
            await s.commit()
            return tech

    async def revoke_token(self, raw: str) -> None:
        async with self._sessions() as s:
            tok = await s.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(raw)))
            if tok is not None:
                await s.delete(tok)
                await s.commit()

    # -- agents -----------------------------------------------------------------

    async def agent_for_key(self, public_key_hex: str) -> str:
        """The stable 9-digit ID bound to this device key, assigned on first contact."""
        now = self._clock()
        async with self._sessions() as s:
            agent = await s.scalar(select(Agent).where(Agent.public_key == public_key_hex))
            if agent is not None:
                agent.last_seen_at = now
                await s.commit()
                return agent.id
            for _ in range(20):
                agent_id = str(secrets.randbelow(900_000_000) + 100_000_000)
                s.add(
                    Agent(
                        id=agent_id, public_key=public_key_hex, first_seen_at=now, last_seen_at=now
                    )
                )
                try:
                    await s.commit()
                    return agent_id
                except IntegrityError:
                    await s.rollback()
                    existing = await s.scalar(
                        select(Agent).where(Agent.public_key == public_key_hex)
                    )
                    if existing is not None:  # a concurrent first contact won
                        return existing.id
        raise StoreError("could not allocate an agent ID")

    async def agent_exists(self, agent_id: str) -> bool:
        async with self._sessions() as s:
            return await s.get(Agent, agent_id) is not None

    async def find_agent(self, public_key_hex: str) -> str | None:
        """The ID bound to a known device key (its last_seen_at updated), else None."""
        return await _once_more_if_busy(lambda: self._find_agent(public_key_hex))

    async def _find_agent(self, public_key_hex: str) -> str | None:
        # Two plain statements, no ORM object: every agent (re)connection runs this on
        # the event loop, thousands at once after a network blip.
        async with self._sessions() as s:
            agent_id = await s.scalar(select(Agent.id).where(Agent.public_key == public_key_hex))
            if agent_id is None:
                return None
            await s.execute(
                update(Agent).where(Agent.id == agent_id).values(last_seen_at=self._clock())
            )
            await s.commit()
            return agent_id

    async def touch_agent(self, agent_id: str) -> None:
        """Record that the agent was online until now (it just went offline)."""
        await _once_more_if_busy(lambda: self._touch_agent(agent_id))

    async def _touch_agent(self, agent_id: str) -> None:
        async with self._sessions() as s:
            await s.execute(
                update(Agent).where(Agent.id == agent_id).values(last_seen_at=self._clock())
            )
            await s.commit()

    async def expire_agents(self, offline_for: timedelta, keep: Collection[str] = ()) -> int:
        """Delete agent IDs not seen for ``offline_for`` that no session ever used (so no
        customer's record names them), except those in ``keep`` (online now)."""
        cutoff = self._clock() - offline_for
        async with self._sessions() as s:
            stale = (
                Agent.last_seen_at < cutoff,
                ~exists().where(SupportSession.agent_id == Agent.id),
            )
            ids = [i for i in await s.scalars(select(Agent.id).where(*stale)) if i not in keep]
            deleted = 0
            for start in range(0, len(ids), 500):
                # The conditions again: an agent that came back meanwhile stays.
                res = await s.execute(
                    delete(Agent).where(Agent.id.in_(ids[start : start + 500]), *stale)
                )
                deleted += int(res.rowcount)  # type: ignore[attr-defined]
            await s.commit()
            return deleted

    # -- contracts --------------------------------------------------------------

    async def create_contract(
        self,
        code: str,
        customer_name: str,
        *,
        remote_support: bool = True,
        valid_from: date | None = None,
        valid_until: date | None = None,
    ) -> Contract:
        contract = Contract(
            code=code,
            customer_name=customer_name,
            remote_support=remote_support,
            valid_from=valid_from or self._clock().date(),
            valid_until=valid_until,
        )
        async with self._sessions() as s:
            s.add(contract)
            try:
                await s.commit()
            except IntegrityError:
                raise StoreError(t("store_contract_exists", code=code)) from None
        return contract

    async def list_contracts(self) -> list[Contract]:
        async with self._sessions() as s:
            return list(await s.scalars(select(Contract).order_by(Contract.code)))

    async def contract_by_code(self, code: str) -> Contract | None:
        async with self._sessions() as s:
            return await s.scalar(select(Contract).where(Contract.code == code))

    def contract_serviceable(self, contract: Contract) -> str | None:
        """None if remote support may be given under ``contract`` today, else why not."""
        today = self._clock().date()
        if not contract.remote_support:
            return "contract_excludes_remote_support"
        if contract.valid_from > today or (contract.valid_until and contract.valid_until < today):
            return "contract_not_in_force"
        return None

    # -- sessions ---------------------------------------------------------------

    async def create_session(
        self,
        session_id: str,
        agent_id: str,
        technician_id: int,
        contract_id: int,
        node: str,
    ) -> SupportSession:
        row = SupportSession(
            id=session_id,
            agent_id=agent_id,
            technician_id=technician_id,
            contract_id=contract_id,
            node=node,
            requested_at=self._clock(),
        )
        async with self._sessions() as s:
            s.add(row)
            await s.commit()
        return row

    async def mark_paired(self, session_id: str) -> None:
        async with self._sessions() as s:
            await s.execute(
                update(SupportSession)
                .where(SupportSession.id == session_id)
                .values(paired_at=self._clock())
            )
            await s.commit()

    async def end_session(
        self,
        session_id: str,
        reason: str,
        *,
        bytes_to_agent: int,
        bytes_to_technician: int,
        detail: str | None = None,
        asserted_by: str = "server",
        ended_by_technician_id: int | None = None,
        comment: str | None = None,
    ) -> bool:
        """Record the end once, with who asserted the reason; later calls for the same
        session change nothing."""
        async with self._sessions() as s:
            res = await s.execute(
                update(SupportSession)
                .where(SupportSession.id == session_id, SupportSession.ended_at.is_(None))
                .values(
                    ended_at=self._clock(),
                    end_reason=reason,
                    end_detail=detail,
                    end_asserted_by=asserted_by,
                    ended_by_technician_id=ended_by_technician_id,
                    end_comment=comment,
                    bytes_to_agent=bytes_to_agent,
                    bytes_to_technician=bytes_to_technician,
                )
            )
            await s.commit()
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def get_session(self, session_id: str) -> SupportSession | None:
        async with self._sessions() as s:
            return await s.get(SupportSession, session_id)

    async def end_orphaned_sessions(self, node: str, reason: str = "server_restart") -> int:
        """Close the records of sessions this node was serving when it stopped."""
        async with self._sessions() as s:
            res = await s.execute(
                update(SupportSession)
                .where(SupportSession.node == node, SupportSession.ended_at.is_(None))
                .values(ended_at=self._clock(), end_reason=reason, end_asserted_by="server")
            )
            await s.commit()
            return int(res.rowcount)  # type: ignore[attr-defined]

    async def audit(
        self,
        source: str,
        event: str,
        *,
        session_id: str | None = None,
        agent_id: str | None = None,
        technician_id: int | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one metadata event (never content) to the audit log."""
        async with self._sessions() as s:
            s.add(
                AuditEvent(
                    session_id=session_id,
                    agent_id=agent_id,
                    technician_id=technician_id,
                    at=self._clock(),
                    source=source,
                    event=event[:48],
                    detail=(detail or None) and detail[:1000],
                )
            )
            await s.commit()

    async def audit_events(self, session_id: str) -> list[AuditEvent]:
        async with self._sessions() as s:
            return list(
                await s.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.session_id == session_id)
                    .order_by(AuditEvent.id)
                )
            )


def _aware(dt: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


_T = TypeVar("_T")


def _is_busy(exc: OperationalError) -> bool:
    """SQLite's "database is locked" / "database table is locked" (SQLITE_BUSY, after
    busy_timeout): another connection held the write lock too long."""
    return "is locked" in str(exc.orig)


async def _once_more_if_busy(op: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``op``; if SQLite was busy, once more after a short random pause (the rest
    of the burst usually clears the lock). A second failure is the caller's to report."""
    try:
        return await op()
    except OperationalError as exc:
        if not _is_busy(exc):
            raise
    await asyncio.sleep(0.05 + secrets.randbelow(200) / 1000)
    return await op()
