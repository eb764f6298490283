"""Database tables. Changes go through an Alembic migration in migrations/versions/."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: The largest id an INTEGER primary key holds on every supported database (PostgreSQL's
#: is 32-bit): a reference beyond it names no row, and must not reach a query.
MAX_ROW_ID = 2**31 - 1


def row_id(raw: str) -> int | None:
    """The id a path or command-line reference names, or None when it cannot name a row:
    only ASCII digits ('³'.isdigit() is True), from 1 to MAX_ROW_ID."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ROW_ID else None


class Base(DeclarativeBase):
    pass


class Technician(Base):
    __tablename__ = "technicians"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    company: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    #: admin, technician or auditor (read-only; ROLES in repo.py).
    role: Mapped[str] = mapped_column(String(16), default="technician")
    #: Base32 TOTP secret once enrolment was confirmed (None: no second factor).
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: False: the account is disabled (no sign-in; its tokens and console sessions stop
    #: working at once).
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The secret being enrolled, until a code from it is confirmed (0004).
    totp_pending: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The last 30-second step a TOTP code was accepted for: each code works once.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    @property
    def totp_enrolled(self) -> bool:
        return self.totp_secret is not None


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    technician_id: Mapped[int] = mapped_column(ForeignKey("technicians.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RecoveryCode(Base):
    """One of a technician's single-use recovery codes (SHA-256 of the normalized code)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    technician_id: Mapped[int] = mapped_column(
        ForeignKey("technicians.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ConsoleSession(Base):
    """A web console sign-in: the cookie's SHA-256 digest, its idle and absolute expiry."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    technician_id: Mapped[int] = mapped_column(
        ForeignKey("technicians.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The absolute end, whatever the activity.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(9), primary_key=True)  # the 9-digit ID
    public_key: Mapped[str] = mapped_column(String(64), unique=True)  # Ed25519, hex
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Customer(Base):
    """A customer of the support company (0005)."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: When its personal data was deleted (0006; docs/privacy.md): the name is then
    #: "deleted customer ID" and it has no contact, link or enrolment code left.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    contacts: Mapped[list[CustomerContact]] = relationship(
        lazy="selectin", order_by="CustomerContact.id", cascade="all, delete-orphan"
    )

    @property
    def emails(self) -> list[str]:
        return [c.email for c in self.contacts]


class CustomerContact(Base):
    """One contact e-mail address of a customer (personal data)."""

    __tablename__ = "customer_contacts"
    __table_args__ = (UniqueConstraint("customer_id", "email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254))


class Contract(Base):
    """A maintenance contract of one customer."""

    __tablename__ = "contracts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", name="fk_contracts_customer_id"), index=True
    )
    remote_support: Mapped[bool] = mapped_column(Boolean, default=True)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    #: Sessions per calendar month the contract includes (None: no limit); past it the
    #: technician is warned, never refused.
    monthly_sessions: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Bytes (both directions) per calendar month the contract includes (None: no limit).
    monthly_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    customer: Mapped[Customer] = relationship(lazy="joined", innerjoin=True)

    @property
    def customer_name(self) -> str:
        return self.customer.name


class AgentLink(Base):
    """The customer a machine (agent ID) belongs to: at most one row per agent, none
    while the machine is not linked yet (0005)."""

    __tablename__ = "agent_links"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: How: "consent" (a consented session billed to one of the customer's contracts),
    #: "enrolment" (an enrolment code in the agent's hello) or "admin".
    linked_via: Mapped[str] = mapped_column(String(16))
    #: The session (via consent) or enrolment code (via enrolment) that linked it.
    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    enrolment_code_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class EnrolmentCode(Base):
    """A code an admin created for a customer; an agent that presents it is linked to
    that customer. Only its SHA-256 is stored (0005)."""

    __tablename__ = "enrolment_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The code's last four characters, to tell codes apart in a list.
    hint: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: How many agents may use it (None: any number until it expires or is revoked).
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SupportSession(Base):
    __tablename__ = "sessions"
    #: One technician's sessions by time (0007; benchmarks/records.py measured it).
    __table_args__ = (Index("ix_sessions_technician_requested", "technician_id", "requested_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # 128-bit hex
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    technician_id: Mapped[int] = mapped_column(ForeignKey("technicians.id"))
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), index=True)
    node: Mapped[str] = mapped_column(String(128), default="")
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    paired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    end_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Who asserted the end reason: technician, agent or server (control.REASON_ROLES).
    end_asserted_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: The technician account that ended it through the API (own technician or an admin).
    ended_by_technician_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The technician's comment; required with a policy reason (control.POLICY_REASONS).
    end_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    bytes_to_agent: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_to_technician: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditEvent(Base):
    """Metadata an endpoint reported about a session (never content)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    agent_id: Mapped[str | None] = mapped_column(String(9), nullable=True)
    technician_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(16))  # server | agent | technician
    event: Mapped[str] = mapped_column(String(48))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: What an admin action acted on, as "kind:id" (customer:3, technician:7, ...;
    #: 0005); the actor is technician_id. Never a name or an address.
    target: Mapped[str | None] = mapped_column(String(48), nullable=True)
    #: A transferred file (0006): its name in clear or "sha256:<hex>" of the name (the
    #: server's audit_file_names setting; docs/privacy.md), its size, the SHA-256 of
    #: its bytes. Never the bytes.
    file_name: Mapped[str | None] = mapped_column(String(1100), nullable=True)
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    file_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class TermsVersion(Base):
    """One published version of the terms of use (protocol/terms.py; 0003_terms)."""

    __tablename__ = "terms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    #: The server's day (terms clock) it was published, and the day it takes effect.
    published: Mapped[date] = mapped_column(Date)
    effective: Mapped[date] = mapped_column(Date)
    text_en: Mapped[str] = mapped_column(Text)
    text_ja: Mapped[str] = mapped_column(Text)


class TermsAcceptance(Base):
    """An agent (one machine: its device key) accepted a version, at a time."""

    __tablename__ = "terms_acceptances"
    __table_args__ = (UniqueConstraint("agent_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(ForeignKey("terms.version"))
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
