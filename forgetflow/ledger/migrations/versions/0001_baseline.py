"""Baseline: the ledger as forgetflow created it with ``create_all`` before migrations existed.

A database made that way has these tables and no ``alembic_version``; ``schema.upgrade`` stamps it with this
revision instead of running it. The tables are spelled out here (not imported from ``schema.py``) so that the
baseline stays what it was when the schema moves on.

Revision ID: 0001
Revises: -
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("subject_id", sa.String(128), nullable=True, index=True),
        sa.Column("sample_id", sa.String(128), nullable=True, index=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("batch_id", sa.String(64), nullable=True, index=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("method", sa.String(64), nullable=True),
        sa.Column("requests", sa.Integer, nullable=True),
        sa.Column("forget_samples", sa.Integer, nullable=True),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("promoted", sa.Boolean, nullable=True),
        sa.Column("data_version", sa.Integer, nullable=True),
        sa.Column("decision", sa.String(32), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_table(
        "batch_lock",
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("dataset", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("dvc_md5", sa.String(64), nullable=True),
        sa.Column("parent", sa.Integer, nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("train_samples", sa.Integer, nullable=False),
        sa.Column("erased_total", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "alias_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(32), nullable=False),
        sa.Column("from_version", sa.String(32), nullable=True),
        sa.Column("to_version", sa.String(32), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "receipts",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.String(128), nullable=False, index=True),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("prev_sha256", sa.String(64), nullable=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "quality",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "superseded",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("erased_by_batch", sa.String(64), nullable=False),
        sa.Column("recorded_in", sa.String(64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("superseded", "quality", "receipts", "alias_moves", "dataset_versions", "batch_lock", "batches",
                  "requests"):
        op.drop_table(table)
