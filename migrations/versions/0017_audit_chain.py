"""The audit log's hash chain, and the rule behind each refusal.

Revision ID: 0017_audit_chain
Revises: 0015_org_security
Create Date: 2026-12-07

audit_events gains ``rule`` (which entry of the policy refused: the 403 page's words) and
three chain columns: ``chain_seq`` (1, 2, 3, … within one organization), ``previous_hash``
and ``record_hash`` (invoiceapp.audit_chain). audit_chains holds each organization's
newest link; writers take its row lock to append. Existing records are chained here, in
id order, with the same hash the app computes (copied below: migrations never import the
app). The append-only triggers are set aside for that one backfill and restored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0017_audit_chain"
down_revision: str | Sequence[str] | None = "0015_org_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq", "organization_id", "created_at", "actor_id", "actor_email", "action",
    "resource_id", "decision", "status", "reason", "rule", "ip_address",
)  # fmt: skip

SQLITE_TRIGGERS = [
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
]

events = sa.table(
    "audit_events",
    *(sa.column(name) for name in (
        "id", "actor_id", "actor_email", "organization_id", "action", "resource_id",
        "decision", "status", "reason", "rule", "ip_address",
        "chain_seq", "previous_hash", "record_hash",
    )),  # fmt: skip
    sa.column("created_at", sa.DateTime(timezone=True)),
)
chains = sa.table(
    "audit_chains", sa.column("organization_key"), sa.column("last_seq"), sa.column("last_hash")
)


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hash(record: dict[str, Any], previous: str) -> str:
    content = [previous, *(record[name] for name in HASHED_FIELDS)]
    canonical = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _chain_existing_records() -> None:
    bind = op.get_bind()
    heads: dict[int, tuple[int, str]] = {}
    rows = bind.execute(sa.select(events).order_by(events.c.id)).mappings().all()
    for row in rows:
        key = row["organization_id"] or 0
        seq, previous = heads.get(key, (0, GENESIS))
        seq += 1
        content = {**row, "seq": seq, "created_at": _timestamp(row["created_at"]), "rule": ""}
        link = _hash(content, previous)
        bind.execute(
            events.update()
            .where(events.c.id == row["id"])
            .values(chain_seq=seq, previous_hash=previous, record_hash=link)
        )
        heads[key] = (seq, link)
    if heads:
        bind.execute(
            chains.insert(),
            [{"organization_key": k, "last_seq": s, "last_hash": h} for k, (s, h) in heads.items()],
        )


def upgrade() -> None:
    op.add_column(
        "audit_events", sa.Column("rule", sa.String(length=64), server_default="", nullable=False)
    )
    op.add_column("audit_events", sa.Column("chain_seq", sa.Integer(), nullable=True))
    op.add_column("audit_events", sa.Column("previous_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_events", sa.Column("record_hash", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_chains",
        sa.Column("organization_key", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("organization_key", name=op.f("pk_audit_chains")),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    _chain_existing_records()
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change")
    elif dialect == "sqlite":
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    op.create_index(
        "ux_audit_events_chain", "audit_events", ["organization_id", "chain_seq"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_audit_events_chain", table_name="audit_events")
    op.drop_table("audit_chains")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":  # dropping columns copies the table, and the triggers with it
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("record_hash")
        batch.drop_column("previous_hash")
        batch.drop_column("chain_seq")
        batch.drop_column("rule")
    if dialect == "sqlite":
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
