"""Audit retention: an organization's setting, signed checkpoints, and a door in the
append-only triggers for ``flask audit prune``.

Revision ID: 0019_audit_retention
Revises: 0018_shares
Create Date: 2026-12-07

organizations gains ``audit_retention_days`` (NULL: keep forever). audit_checkpoints holds,
per organization, where its chain starts after pruning (invoiceapp.audit_retention).
audit_prune_permits is SQLite's permission slip: its delete trigger now refuses unless the
pruning transaction put a row there. On PostgreSQL the trigger function lets a DELETE
through only when the transaction set ``invoiceapp.audit_prune`` to 'on'. UPDATE stays
refused on both. The statements are copies of invoiceapp.db_triggers (migrations never
import the app; tests/test_db_triggers.py checks the copies).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_audit_retention"
down_revision: str | Sequence[str] | None = "0018_shares"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS audit_events_no_delete",
        "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
        "WHEN NOT EXISTS (SELECT 1 FROM audit_prune_permits) "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP = 'DELETE' AND current_setting('invoiceapp.audit_prune', true) = 'on' THEN "
        "RETURN OLD; END IF; "
        "RAISE EXCEPTION 'audit_events is append-only'; END $$",
    ],
}
# What 0004 made, for the way down.
PREVIOUS_TRIGGERS = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS audit_events_no_delete",
        "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$",
    ],
}


def upgrade() -> None:
    op.add_column("organizations", sa.Column("audit_retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "audit_checkpoints",
        sa.Column("organization_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("removed_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_audit_checkpoints")),
    )
    op.create_table(
        "audit_prune_permits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_prune_permits")),
    )
    for statement in TRIGGERS.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    for statement in PREVIOUS_TRIGGERS.get(op.get_bind().dialect.name, []):
        op.execute(statement)
    op.drop_table("audit_prune_permits")
    op.drop_table("audit_checkpoints")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("audit_retention_days")
