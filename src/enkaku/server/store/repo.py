"""The server's data access: every query the app makes, in one place."""

from __future__ import annotations

import asyncio
import functools
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

from enkaku.i18n import register, t
from enkaku.protocol.terms import MAX_WIRE, VERSION_PATTERN, Terms, one_month_after

from .models import (
    Agent,
    AgentLink,
    ApiToken,
    AuditEvent,
    ConsoleSession,
    Contract,
    RecoveryCode,
    SupportSession,
    Technician,
    TermsAcceptance,
    TermsVersion,
)
from .records import ROLES, Records, StoreError, contract_serviceable
from .reports import Reports

register(
    {
        "terms_bad_version": (
            "Version {version!r} is not usable: 1 to 32 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            "版 {version!r} は使えません: 英数字と '.'、'_'、'-' の 1〜32 文字 (先頭は英数字) に"
            "してください。",
        ),
        "terms_text_missing": (
            "The terms need both an English and a Japanese text.",
            "規約には英語と日本語の両方の本文が必要です。",
        ),
        "terms_text_too_long": (
            "The terms are too long: {size} KiB as sent to the agents, at most {limit} KiB "
            "(a Japanese character counts 6 bytes, an ASCII one 1).",
            "規約が長すぎます: エージェントへの送信時 {size} KiB、上限 {limit} KiB です "
            "(日本語は 1 文字 6 バイト、ASCII は 1 バイトと数えます)。",
        ),
        "terms_effective_past": (
            "The effective date {effective} is before today ({today}).",
            "有効日 {effective} が今日 ({today}) より前です。",
        ),
        "terms_version_exists": (
            "Version {version} is already published; publish the change as a new version.",
            "第 {version} 版はすでに公開されています。変更は新しい版として公開してください。",
        ),
        "terms_notice_too_short": (
            "Refused: a new version must take effect at least one month after it is "
            "published (today {today}: {earliest} or later), not on {effective}.",
            "公開できません: 新しい版の有効日は公開から 1 か月以上後 (今日 {today} なら {earliest} "
            "以降) でなければなりません ({effective} は不可)。",
        ),
        "terms_unknown_version": (
            "No published terms version {version}.",
            "第 {version} 版の規約は公開されていません。",
        ),
    }
)

_hasher = PasswordHasher()


@functools.cache
def dummy_password_hash() -> str:
    """A valid hash of a random password: verified against when the user does not exist
    so that a login for an unknown user costs the same time as one with a wrong password.
    Made once, when first asked for (the server asks on a worker thread as it starts),
    not at import: hashing costs about 0.2 s of CPU, which every admin command would
    otherwise pay."""
    return _hasher.hash(secrets.token_hex(16))


def _verify(pw_hash: str | None, password: str) -> None:
    """Worker thread: argon2's check of ``password`` (against the dummy hash when there
    is no user: the same time either way); raises VerificationError when wrong."""
    _hasher.verify(pw_hash or dummy_password_hash(), password)


TOKEN_LIFETIME = timedelta(days=30)


class TermsRefused(StoreError):
    """A terms version that may not be published; ``key``/``kwargs`` give the message in
    both languages (i18n.both) for the admin CLI."""

    def __init__(self, key: str, **kwargs: object) -> None:
        super().__init__(t(key, **kwargs))
        self.key, self.kwargs = key, kwargs


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
        #: Customers, contracts, machines' customers, enrolment codes, roles.
        self.records = Records(self._sessions, clock)
        #: Session history, monthly reports, audit trails, export, deletion, retention.
        self.reports = Reports(self._sessions, clock)

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
        if role not in ROLES:
            raise StoreError(t("store_role_unknown", role=role))
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
        try:
            await asyncio.to_thread(_verify, tech.password_hash if tech else None, password)
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

    async def technician_by_name(self, username: str) -> Technician | None:
        async with self._sessions() as s:
            return await s.scalar(select(Technician).where(Technician.username == username))

    async def technician_by_id(self, technician_id: int) -> Technician | None:
        async with self._sessions() as s:
            return await s.get(Technician, technician_id)

    async def verify_password(self, technician_id: int, password: str) -> bool:
        """Whether ``password`` is this technician's (argon2 check)."""
        tech = await self.technician_by_id(technician_id)
        try:
            await asyncio.to_thread(_verify, tech.password_hash if tech else None, password)
        except (VerificationError, InvalidHashError):
            return False
        return tech is not None

    async def set_password(
        self,
        technician_id: int,
        password: str,
        *,
        keep_console_session: int | None = None,
        keep_token: str | None = None,
    ) -> None:
        """Store a new password hash and sign the account out everywhere (console
        sessions and API tokens) except the console session or token ``keep_*``."""
        pw_hash = await asyncio.to_thread(_hasher.hash, password)
        async with self._sessions() as s:
            await s.execute(
                update(Technician)
                .where(Technician.id == technician_id)
                .values(password_hash=pw_hash)
            )
            await s.execute(
                delete(ConsoleSession).where(
                    ConsoleSession.technician_id == technician_id,
                    ConsoleSession.id != (keep_console_session or -1),
                )
            )
            await s.execute(
                delete(ApiToken).where(
                    ApiToken.technician_id == technician_id,
                    ApiToken.token_hash != (token_digest(keep_token) if keep_token else ""),
                )
            )
            await s.commit()

    # -- second factor ----------------------------------------------------------

    async def begin_totp(self, technician_id: int, secret: str) -> None:
        """Keep ``secret`` as the one being enrolled (replacing an earlier attempt)."""
        async with self._sessions() as s:
            await s.execute(
                update(Technician).where(Technician.id == technician_id).values(totp_pending=secret)
            )
            await s.commit()

    async def confirm_totp(self, technician_id: int, step: int, recovery: list[str]) -> bool:
        """Make the pending secret the account's, with ``step`` used and new recovery
        codes (their digests); False if nothing was pending or enrolment already done."""
        now = self._clock()
        async with self._sessions() as s:
            tech = await s.get(Technician, technician_id)
            if tech is None or tech.totp_pending is None or tech.totp_secret is not None:
                return False
            tech.totp_secret, tech.totp_pending, tech.totp_last_step = tech.totp_pending, None, step
            await s.execute(delete(RecoveryCode).where(RecoveryCode.technician_id == technician_id))
            s.add_all(
                RecoveryCode(technician_id=technician_id, code_hash=h, created_at=now)
                for h in recovery
            )
            await s.commit()
            return True

    async def use_totp_step(self, technician_id: int, step: int) -> bool:
        """Mark ``step`` used; False if it or a later step already was (a replay).
        One conditional UPDATE: two requests with the same code cannot both pass."""
        async with self._sessions() as s:
            res = await s.execute(
                update(Technician)
                .where(
                    Technician.id == technician_id,
                    (Technician.totp_last_step.is_(None)) | (Technician.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
            await s.commit()
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def use_recovery_code(self, technician_id: int, digest: str) -> bool:
        """Spend the unused recovery code with this digest; False if there is none."""
        async with self._sessions() as s:
            res = await s.execute(
                update(RecoveryCode)
                .where(
                    RecoveryCode.technician_id == technician_id,
                    RecoveryCode.code_hash == digest,
                    RecoveryCode.used_at.is_(None),
                )
                .values(used_at=self._clock())
            )
            await s.commit()
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def replace_recovery_codes(self, technician_id: int, digests: list[str]) -> None:
        now = self._clock()
        async with self._sessions() as s:
            await s.execute(delete(RecoveryCode).where(RecoveryCode.technician_id == technician_id))
            s.add_all(
                RecoveryCode(technician_id=technician_id, code_hash=h, created_at=now)
                for h in digests
            )
            await s.commit()

    async def recovery_codes_left(self, technician_id: int) -> int:
        async with self._sessions() as s:
            rows = await s.scalars(
                select(RecoveryCode.id).where(
                    RecoveryCode.technician_id == technician_id, RecoveryCode.used_at.is_(None)
                )
            )
            return len(list(rows))

    async def disable_totp(self, technician_id: int) -> None:
        """Remove the second factor (secret, pending enrolment, recovery codes)."""
        async with self._sessions() as s:
            await s.execute(
                update(Technician)
                .where(Technician.id == technician_id)
                .values(totp_secret=None, totp_pending=None, totp_last_step=None)
            )
            await s.execute(delete(RecoveryCode).where(RecoveryCode.technician_id == technician_id))
            await s.commit()

    # -- console sessions -------------------------------------------------------

    async def create_console_session(
        self, technician_id: int, lifetime: timedelta
    ) -> tuple[str, ConsoleSession]:
        """A new console sign-in: the cookie value (returned once; only its digest is
        stored) and the row."""
        raw = "ekc_" + secrets.token_urlsafe(32)
        now = self._clock()
        row = ConsoleSession(
            technician_id=technician_id,
            token_hash=token_digest(raw),
            created_at=now,
            last_used_at=now,
            expires_at=now + lifetime,
        )
        async with self._sessions() as s:
            s.add(row)
            await s.commit()
        return raw, row

    async def console_session(
        self, raw: str, idle: timedelta
    ) -> tuple[ConsoleSession, Technician] | None:
        """The live console session for a cookie value and its active technician, its
        last use moved to now; None (and the row deleted) once idle or past its end."""
        now = self._clock()
        async with self._sessions() as s:
            row = (
                await s.execute(
                    select(ConsoleSession, Technician)
                    .join(Technician, Technician.id == ConsoleSession.technician_id)
                    .where(ConsoleSession.token_hash == token_digest(raw))
                )
            ).first()
            if row is None:
                return None
            cs, tech = row
            if _aware(cs.expires_at) <= now or _aware(cs.last_used_at) + idle <= now:
                await s.delete(cs)
                await s.commit()
                return None
            if not tech.active:
                return None
            if now - _aware(cs.last_used_at) >= timedelta(seconds=30):  # fewer writes
                cs.last_used_at = now
                await s.commit()
            return cs, tech

    async def revoke_console_session(self, session_id: int) -> None:
        async with self._sessions() as s:
            await s.execute(delete(ConsoleSession).where(ConsoleSession.id == session_id))
            await s.commit()

    async def revoke_console_sessions(self, technician_id: int) -> int:
        """Sign the technician out of every console session; how many there were."""
        async with self._sessions() as s:
            res = await s.execute(
                delete(ConsoleSession).where(ConsoleSession.technician_id == technician_id)
            )
            await s.commit()
            return int(res.rowcount)  # type: ignore[attr-defined]

    async def revoke_tokens(self, technician_id: int) -> int:
        """Revoke every API token of the technician; how many there were."""
        async with self._sessions() as s:
            res = await s.execute(delete(ApiToken).where(ApiToken.technician_id == technician_id))
            await s.commit()
            return int(res.rowcount)  # type: ignore[attr-defined]

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
                # A machine linked to a customer (by an enrolment code) keeps its ID.
                ~exists().where(AgentLink.agent_id == Agent.id),
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
        customer: str | int,
        *,
        remote_support: bool = True,
        valid_from: date | None = None,
        valid_until: date | None = None,
        monthly_sessions: int | None = None,
        monthly_bytes: int | None = None,
        actor: int | None = None,
    ) -> Contract:
        """A contract of ``customer`` (its id, or its name: a customer of that name is
        created if there is none, as `enkaku contract add --customer` always did)."""
        if isinstance(customer, str):
            try:
                customer_id = (await self.records.customer(customer)).id
            except StoreError:
                customer_id = (await self.records.create_customer(customer, actor=actor)).id
        else:
            customer_id = customer
        return await self.records.create_contract(
            code,
            customer_id,
            remote_support=remote_support,
            valid_from=valid_from,
            valid_until=valid_until,
            monthly_sessions=monthly_sessions,
            monthly_bytes=monthly_bytes,
            actor=actor,
        )

    async def list_contracts(self) -> list[Contract]:
        return await self.records.contracts()

    async def contract_by_code(self, code: str) -> Contract | None:
        async with self._sessions() as s:
            return await s.scalar(select(Contract).where(Contract.code == code))

    def today(self) -> date:
        """The store clock's day (UTC): contracts are valid by it, allowances counted
        by its calendar month."""
        return self._clock().date()

    def contract_serviceable(self, contract: Contract) -> str | None:
        """None if remote support may be given under ``contract`` today, else why not."""
        return contract_serviceable(contract, self._clock().date())

    # -- terms of use -----------------------------------------------------------

    async def publish_terms(
        self, version: str, effective: date, text_en: str, text_ja: str, *, today: date
    ) -> TermsVersion:
        """Publish a version on ``today`` (the terms clock, server/terms.py). The first
        version may take effect at once; every later one no sooner than one month after
        ``today`` (the support company's terms, Art. 10). Raises TermsRefused."""
        if not VERSION_PATTERN.fullmatch(version):
            raise TermsRefused("terms_bad_version", version=version)
        if not text_en.strip() or not text_ja.strip():
            raise TermsRefused("terms_text_missing")
        size = Terms(version, today, effective, {"en": text_en, "ja": text_ja}).wire_size()
        if size > MAX_WIRE:
            raise TermsRefused("terms_text_too_long", size=size // 1024, limit=MAX_WIRE // 1024)
        if effective < today:
            raise TermsRefused("terms_effective_past", effective=effective, today=today)
        async with self._sessions() as s:
            if await s.scalar(select(TermsVersion.id).where(TermsVersion.version == version)):
                raise TermsRefused("terms_version_exists", version=version)
            earlier = await s.scalar(select(TermsVersion.id).limit(1))
            earliest = one_month_after(today)
            if earlier is not None and effective < earliest:
                raise TermsRefused(
                    "terms_notice_too_short", effective=effective, today=today, earliest=earliest
                )
            row = TermsVersion(
                version=version,
                published=today,
                effective=effective,
                text_en=text_en,
                text_ja=text_ja,
            )
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:  # a concurrent publish of the same version
                raise TermsRefused("terms_version_exists", version=version) from None
        return row

    async def list_terms(self) -> list[TermsVersion]:
        """Every published version, by effective date."""
        async with self._sessions() as s:
            return list(
                await s.scalars(
                    select(TermsVersion).order_by(TermsVersion.effective, TermsVersion.id)
                )
            )

    async def current_terms(self, today: date) -> tuple[TermsVersion | None, TermsVersion | None]:
        """The version in force on ``today`` (the latest effective one) and the next one
        announced but not yet in force; None where there is none."""
        async with self._sessions() as s:
            in_force = await s.scalar(
                select(TermsVersion)
                .where(TermsVersion.effective <= today)
                .order_by(TermsVersion.effective.desc(), TermsVersion.id.desc())
                .limit(1)
            )
            upcoming = await s.scalar(
                select(TermsVersion)
                .where(TermsVersion.effective > today)
                .order_by(TermsVersion.effective, TermsVersion.id)
                .limit(1)
            )
            return in_force, upcoming

    async def accept_terms(self, agent_id: str, version: str) -> None:
        """Record that the agent accepted ``version`` now (once: a repeat keeps the first
        time)."""
        async with self._sessions() as s:
            s.add(TermsAcceptance(agent_id=agent_id, version=version, accepted_at=self._clock()))
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()
                if not await self.has_accepted(agent_id, version):
                    raise StoreError(t("terms_unknown_version", version=version)) from None

    async def has_accepted(self, agent_id: str, version: str) -> bool:
        async with self._sessions() as s:
            found = await s.scalar(
                select(TermsAcceptance.id).where(
                    TermsAcceptance.agent_id == agent_id, TermsAcceptance.version == version
                )
            )
            return found is not None

    async def terms_acceptances(self, agent_id: str) -> list[TermsAcceptance]:
        async with self._sessions() as s:
            return list(
                await s.scalars(
                    select(TermsAcceptance)
                    .where(TermsAcceptance.agent_id == agent_id)
                    .order_by(TermsAcceptance.id)
                )
            )

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
        audit: tuple[str, int] | None = None,
    ) -> bool:
        """Record the end once, with who asserted the reason; later calls for the same
        session change nothing. With ``audit`` (the session's agent ID and technician),
        its ``session_end`` audit event commits in the same transaction."""
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
            if audit is not None:
                s.add(
                    AuditEvent(
                        session_id=session_id,
                        agent_id=audit[0],
                        technician_id=audit[1],
                        at=self._clock(),
                        source="server",
                        event="session_end",
                        detail=f"{reason} (by {asserted_by})",
                    )
                )
            await s.commit()
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def get_session(self, session_id: str) -> SupportSession | None:
        async with self._sessions() as s:
            return await s.get(SupportSession, session_id)

    async def recent_sessions(
        self, technician_id: int | None, limit: int
    ) -> list[tuple[SupportSession, str, str]]:
        """The newest session records (of one technician, or all when None), each with
        its contract code and the technician's user name."""
        q = (
            select(SupportSession, Contract.code, Technician.username)
            .join(Contract, Contract.id == SupportSession.contract_id)
            .join(Technician, Technician.id == SupportSession.technician_id)
            .order_by(SupportSession.requested_at.desc(), SupportSession.id)
            .limit(limit)
        )
        if technician_id is not None:
            q = q.where(SupportSession.technician_id == technician_id)
        async with self._sessions() as s:
            return [(row, code, user) for row, code, user in (await s.execute(q)).all()]

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
        file_name: str | None = None,
        file_size: int | None = None,
        file_sha256: str | None = None,
    ) -> None:
        """Append one metadata event (never content) to the audit log; a file transfer's
        name (as the audit_file_names setting keeps it), size and SHA-256."""
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
                    file_name=file_name,
                    file_size=file_size,
                    file_sha256=file_sha256,
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
