"""index of sessions by technician and time

Revision ID: 0007
Revises: 0006

A technician's recent sessions (GET /api/v1/sessions) and the session history filtered by
technician read one technician's sessions newest or oldest first. Without this index
SQLite walked the time index and skipped every other technician's rows: at 100,000
sessions a month and 200 technicians, 205 ms for one technician's month against 11 ms
with it (benchmarks/records.py; benchmarks/README.md, Records).
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index("ix_sessions_technician_requested", ["technician_id", "requested_at"])


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_technician_requested")
