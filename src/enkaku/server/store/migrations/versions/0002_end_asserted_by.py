"""who asserted a session's end reason, and the technician's comment

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("end_asserted_by", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("ended_by_technician_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("end_comment", sa.Text(), nullable=True))
    # Rows ended before this revision: the reasons only the server gives were the server's;
    # for the others nobody can tell any more who claimed them (left NULL).
    op.execute(
        "UPDATE sessions SET end_asserted_by = 'server' WHERE end_reason IN "
        "('agent_disconnected', 'technician_disconnected', 'timeout', 'server_restart', "
        "'server_shutdown')"
    )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("end_comment")
        batch_op.drop_column("ended_by_technician_id")
        batch_op.drop_column("end_asserted_by")
