"""the service's records: customers and their contact addresses, contracts bound to a
customer with an optional monthly allowance, agents linked to a customer, enrolment codes

Revision ID: 0005
Revises: 0004

Existing contracts keep their ids and codes: every distinct customer_name becomes one
customer (exact spelling; the same name on two contracts gives one customer with both),
and the contract points to it. Existing agents stay unlinked: a session billed before
this revision proves nothing about whose machine it was (any technician could bill any
contract), so each is linked by its next consented session (docs/records.md).
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _defer_foreign_keys() -> None:
    """SQLite: the batch copy of ``contracts`` drops the old table, which sessions refer
    to; with the check deferred to the commit the references resolve to the copy. (A
    PRAGMA foreign_keys=OFF is ignored inside the migration's transaction.)"""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA defer_foreign_keys = ON")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "customer_contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "email"),
    )
    op.create_index("ix_customer_contacts_customer_id", "customer_contacts", ["customer_id"])

    bind = op.get_bind()
    bind.execute(
        sa.text(
            "INSERT INTO customers (name, created_at) "
            "SELECT DISTINCT customer_name, :now FROM contracts"
        ).bindparams(sa.bindparam("now", datetime.now(UTC), type_=sa.DateTime(timezone=True))),
    )
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_id", sa.Integer(), nullable=True))
    bind.execute(
        sa.text(
            "UPDATE contracts SET customer_id = "
            "(SELECT customers.id FROM customers WHERE customers.name = contracts.customer_name)"
        )
    )
    _defer_foreign_keys()
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.alter_column("customer_id", existing_type=sa.Integer(), nullable=False)
        batch_op.add_column(sa.Column("monthly_sessions", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("monthly_bytes", sa.BigInteger(), nullable=True))
        batch_op.create_foreign_key(
            "fk_contracts_customer_id", "customers", ["customer_id"], ["id"]
        )
        batch_op.create_index("ix_contracts_customer_id", ["customer_id"])
        batch_op.drop_column("customer_name")

    op.create_table(
        "agent_links",
        sa.Column("agent_id", sa.String(length=9), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_via", sa.String(length=16), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("enrolment_code_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("agent_id"),
    )
    op.create_index("ix_agent_links_customer_id", "agent_links", ["customer_id"])
    op.create_table(
        "enrolment_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    op.create_index("ix_enrolment_codes_customer_id", "enrolment_codes", ["customer_id"])
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target", sa.String(length=48), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("target")
    op.drop_index("ix_enrolment_codes_customer_id", table_name="enrolment_codes")
    op.drop_table("enrolment_codes")
    op.drop_index("ix_agent_links_customer_id", table_name="agent_links")
    op.drop_table("agent_links")

    bind = op.get_bind()
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_name", sa.String(length=200), nullable=True))
    bind.execute(
        sa.text(
            "UPDATE contracts SET customer_name = "
            "(SELECT customers.name FROM customers WHERE customers.id = contracts.customer_id)"
        )
    )
    _defer_foreign_keys()
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.alter_column("customer_name", existing_type=sa.String(200), nullable=False)
        batch_op.drop_index("ix_contracts_customer_id")
        batch_op.drop_constraint("fk_contracts_customer_id", type_="foreignkey")
        batch_op.drop_column("customer_id")
        batch_op.drop_column("monthly_bytes")
        batch_op.drop_column("monthly_sessions")

    op.drop_index("ix_customer_contacts_customer_id", table_name="customer_contacts")
    op.drop_table("customer_contacts")
    op.drop_table("customers")
    # The older schema knows no read-only role: an auditor must not come back as a
    # technician who can open sessions, so the account is kept but disabled.
    bind.execute(
        sa.text("UPDATE technicians SET role = 'technician', active = :off WHERE role = 'auditor'"),
        {"off": False},
    )
