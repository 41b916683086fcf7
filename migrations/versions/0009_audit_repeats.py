"""Audit repeats: repeated refusals in a window are one audit record with a count.

Revision ID: 0009_audit_repeats
Revises: 0008_security_counters
Create Date: 2026-12-07

audit_repeats counts the refusals of one actor, for one action, in one organization,
within one fixed window (invoiceapp.authz.audit). The first refusal of a window is an
audit_events record as before; the ones after it only raise ``refusals`` on the row
that points at that record. audit_events stays append-only; this table is a counter,
and the unique (bucket, window_start) pair is what lets simultaneous refusals agree on
which of them writes the record. No foreign keys, like the log. Nothing to backfill:
every existing record stands for one refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_audit_repeats"
down_revision: str | Sequence[str] | None = "0008_security_counters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_repeats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_repeats")),
        sa.UniqueConstraint(
            "bucket", "window_start", name=op.f("uq_audit_repeats_bucket_window_start")
        ),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_repeats_event_id")),
    )


def downgrade() -> None:
    op.drop_table("audit_repeats")
