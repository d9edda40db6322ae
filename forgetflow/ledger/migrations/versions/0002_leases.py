"""The batch lock becomes a lease; batches keep a recovery journal; ``reason`` is wide enough everywhere.

- ``batch_lock``: ``token`` (the lease token), ``owner_process`` (boot id, pid namespace, pid and start time
  of the holder), ``heartbeat_at``, ``expires_at`` (forgetflow/ledger/lease.py). A lock row from before has
  none of them and counts as expiring ``batch.lease_seconds`` after it was taken.
- ``batches.journal``: what recovery needs if the batch dies (tasks/recovery.py).
- ``requests.reason``: VARCHAR(16) → VARCHAR(REASON_MAX_LENGTH). PostgreSQL enforces the length (a longer
  reason failed with a database error there and passed on SQLite); the request model now refuses a reason
  longer than the column. On SQLite the table is copied (batch mode), so both databases declare the same.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

REASON_LENGTH = 32  # forgetflow.ledger.requests.REASON_MAX_LENGTH when this revision was written


def upgrade() -> None:
    op.add_column("batch_lock", sa.Column("token", sa.String(36), nullable=True))
    op.add_column("batch_lock", sa.Column("owner_process", sa.String(160), nullable=True))
    op.add_column("batch_lock", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("batch_lock", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("batches", sa.Column("journal", sa.Text, nullable=True))
    with op.batch_alter_table("requests") as batch:  # SQLite: the table is copied (it cannot alter a type)
        batch.alter_column("reason", type_=sa.String(REASON_LENGTH), existing_type=sa.String(16),
                           existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.alter_column("reason", type_=sa.String(16), existing_type=sa.String(REASON_LENGTH),
                           existing_nullable=False)
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("journal")
    with op.batch_alter_table("batch_lock") as batch:
        for name in ("expires_at", "heartbeat_at", "owner_process", "token"):
            batch.drop_column(name)
