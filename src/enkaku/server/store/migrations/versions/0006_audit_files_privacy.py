"""file metadata of audit events, deleted customers, indexes for reports and retention

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        # A transferred file's name (in clear, or "sha256:<hex>" of it: the server's
        # audit_file_names setting), its size and the SHA-256 of its bytes.
        batch_op.add_column(sa.Column("file_name", sa.String(length=1100), nullable=True))
        batch_op.add_column(sa.Column("file_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("file_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_audit_events_at", ["at"])
    with op.batch_alter_table("customers", schema=None) as batch_op:
        # When the customer's personal data was deleted (docs/privacy.md).
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index("ix_sessions_requested_at", ["requested_at"])
        batch_op.create_index("ix_sessions_contract_id", ["contract_id"])


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_contract_id")
        batch_op.drop_index("ix_sessions_requested_at")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_at")
        batch_op.drop_column("file_sha256")
        batch_op.drop_column("file_size")
        batch_op.drop_column("file_name")
