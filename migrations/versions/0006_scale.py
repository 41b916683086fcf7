"""Scale: per-organization invoice and audit counts kept by triggers; indexes for the lists.

Revision ID: 0006_scale
Revises: 0005_api_and_two_factor
Create Date: 2026-11-28

invoice_counts holds, per organization and status, how many invoices are live (not
deleted). Triggers on invoices keep it right on every INSERT, UPDATE and DELETE, so the
dashboard and the list's page count read a few rows instead of counting invoices. The
statements are copies of INVOICE_COUNT_TRIGGERS_* in invoiceapp/models.py (migrations
never import the app). The triggers come first and the backfill second: on PostgreSQL,
creating a trigger locks invoices against writes until this transaction commits, so no
invoice written meanwhile can be missed or counted twice.

A later migration that rebuilds invoices with batch_alter_table on SQLite (copy and
rename) drops its triggers: it must create them again.

audit_counts does the same for the audit log, per action, decision and actor (the log
is append-only, so only INSERT has a trigger): its page count, under any filter, and its
action filter's choices no longer read every record.

The listing indexes end in (created_at, id), the lists' order, so the first and the last
page are both read straight from one end of an index. They are partial (WHERE deleted_at
IS NULL): PostgreSQL does not take "deleted_at IS NULL" as an equality, so an index with
deleted_at as a column could not hand it the rows in order.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_scale"
down_revision: str | Sequence[str] | None = "0005_api_and_two_factor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER invoice_counts_insert AFTER INSERT ON invoices "
        "WHEN NEW.deleted_at IS NULL BEGIN "
        "INSERT INTO invoice_counts (organization_id, status, live_count) "
        "VALUES (NEW.organization_id, NEW.status, 1) "
        "ON CONFLICT (organization_id, status) DO UPDATE SET live_count = live_count + 1; "
        "END",
        "CREATE TRIGGER invoice_counts_delete AFTER DELETE ON invoices "
        "WHEN OLD.deleted_at IS NULL BEGIN "
        "UPDATE invoice_counts SET live_count = live_count - 1 "
        "WHERE organization_id = OLD.organization_id AND status = OLD.status; "
        "END",
        "CREATE TRIGGER invoice_counts_update "
        "AFTER UPDATE OF organization_id, status, deleted_at ON invoices "
        "WHEN (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL) "
        "OR OLD.status IS NOT NEW.status OR OLD.organization_id IS NOT NEW.organization_id "
        "BEGIN "
        "UPDATE invoice_counts SET live_count = live_count - 1 "
        "WHERE OLD.deleted_at IS NULL "
        "AND organization_id = OLD.organization_id AND status = OLD.status; "
        "INSERT INTO invoice_counts (organization_id, status, live_count) "
        "SELECT NEW.organization_id, NEW.status, 1 WHERE NEW.deleted_at IS NULL "
        "ON CONFLICT (organization_id, status) DO UPDATE SET live_count = live_count + 1; "
        "END",
    ],
    "postgresql": [
        "CREATE FUNCTION invoice_counts_add(org integer, state varchar, n bigint) "
        "RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE invoice_counts SET live_count = live_count + n "
        "WHERE organization_id = org AND status = state; "
        "IF NOT FOUND AND n > 0 THEN "
        "INSERT INTO invoice_counts (organization_id, status, live_count) VALUES (org, state, n) "
        "ON CONFLICT (organization_id, status) "
        "DO UPDATE SET live_count = invoice_counts.live_count + EXCLUDED.live_count; "
        "END IF; END $$",
        "CREATE FUNCTION invoice_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "DECLARE change record; BEGIN "
        "IF TG_OP = 'INSERT' THEN "
        "FOR change IN SELECT organization_id, status, count(*) AS n FROM new_rows "
        "WHERE deleted_at IS NULL GROUP BY organization_id, status "
        "ORDER BY organization_id, status LOOP "
        "PERFORM invoice_counts_add(change.organization_id, change.status, change.n); "
        "END LOOP; "
        "ELSIF TG_OP = 'DELETE' THEN "
        "FOR change IN SELECT organization_id, status, -count(*) AS n FROM old_rows "
        "WHERE deleted_at IS NULL GROUP BY organization_id, status "
        "ORDER BY organization_id, status LOOP "
        "PERFORM invoice_counts_add(change.organization_id, change.status, change.n); "
        "END LOOP; "
        "ELSE "
        "FOR change IN SELECT organization_id, status, sum(n) AS n FROM ("
        "SELECT organization_id, status, -1 AS n FROM old_rows WHERE deleted_at IS NULL "
        "UNION ALL "
        "SELECT organization_id, status, 1 AS n FROM new_rows WHERE deleted_at IS NULL"
        ") AS moves GROUP BY organization_id, status HAVING sum(n) <> 0 "
        "ORDER BY organization_id, status LOOP "
        "PERFORM invoice_counts_add(change.organization_id, change.status, change.n); "
        "END LOOP; "
        "END IF; "
        "RETURN NULL; END $$",
        "CREATE TRIGGER invoice_counts_insert AFTER INSERT ON invoices "
        "REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION invoice_counts_apply()",
        "CREATE TRIGGER invoice_counts_update AFTER UPDATE ON invoices "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION invoice_counts_apply()",
        "CREATE TRIGGER invoice_counts_delete AFTER DELETE ON invoices "
        "REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION invoice_counts_apply()",
    ],
}

AUDIT_TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER audit_counts_insert AFTER INSERT ON audit_events "
        "WHEN NEW.organization_id IS NOT NULL BEGIN "
        "INSERT INTO audit_counts (organization_id, action, decision, actor_email, records) "
        "VALUES (NEW.organization_id, NEW.action, NEW.decision, coalesce(NEW.actor_email, ''), 1) "
        "ON CONFLICT (organization_id, action, decision, actor_email) "
        "DO UPDATE SET records = records + 1; "
        "END",
    ],
    "postgresql": [
        "CREATE FUNCTION audit_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "DECLARE change record; BEGIN "
        "FOR change IN SELECT organization_id, action, decision, "
        "coalesce(actor_email, '') AS actor, count(*) AS n FROM new_rows "
        "WHERE organization_id IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 LOOP "
        "INSERT INTO audit_counts (organization_id, action, decision, actor_email, records) "
        "VALUES (change.organization_id, change.action, change.decision, change.actor, change.n) "
        "ON CONFLICT (organization_id, action, decision, actor_email) "
        "DO UPDATE SET records = audit_counts.records + EXCLUDED.records; "
        "END LOOP; "
        "RETURN NULL; END $$",
        "CREATE TRIGGER audit_counts_insert AFTER INSERT ON audit_events "
        "REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_counts_apply()",
    ],
}

BACKFILL = [
    "INSERT INTO invoice_counts (organization_id, status, live_count) "
    "SELECT organization_id, status, count(*) FROM invoices WHERE deleted_at IS NULL "
    "GROUP BY organization_id, status",
    "INSERT INTO audit_counts (organization_id, action, decision, actor_email, records) "
    "SELECT organization_id, action, decision, coalesce(actor_email, ''), count(*) "
    "FROM audit_events WHERE organization_id IS NOT NULL "
    "GROUP BY organization_id, action, decision, coalesce(actor_email, '')",
]


def upgrade() -> None:
    op.create_table(
        "invoice_counts",
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("live_count", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'sent', 'paid', 'void')", name=op.f("ck_invoice_counts_status")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_invoice_counts_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "status", name=op.f("pk_invoice_counts")),
    )
    op.create_table(
        "audit_counts",
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("actor_email", sa.String(length=320), nullable=False),
        sa.Column("records", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "action", "decision", "actor_email", name=op.f("pk_audit_counts")
        ),
    )
    dialect = op.get_bind().dialect.name
    for statement in TRIGGERS.get(dialect, []) + AUDIT_TRIGGERS.get(dialect, []):
        op.execute(statement)
    for statement in BACKFILL:
        op.execute(statement)

    op.drop_index("ix_invoices_org_listing", table_name="invoices")
    live = sa.text("deleted_at IS NULL")
    op.create_index(
        "ix_invoices_org_listing",
        "invoices",
        ["organization_id", "created_at", "id"],
        sqlite_where=live,
        postgresql_where=live,
    )
    op.create_index(
        "ix_invoices_org_status_listing",
        "invoices",
        ["organization_id", "status", "created_at", "id"],
        sqlite_where=live,
        postgresql_where=live,
    )
    op.drop_index("ix_audit_events_org_created", table_name="audit_events")
    op.create_index(
        "ix_audit_events_org_created", "audit_events", ["organization_id", "created_at", "id"]
    )
    op.create_index(
        "ix_audit_events_org_action",
        "audit_events",
        ["organization_id", "action", "created_at", "id"],
    )
    op.create_index(
        "ix_audit_events_org_actor",
        "audit_events",
        ["organization_id", "actor_email", "created_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_audit_events_org_actor", table_name="audit_events")
    op.drop_index("ix_audit_events_org_action", table_name="audit_events")
    op.drop_index("ix_audit_events_org_created", table_name="audit_events")
    op.create_index(
        "ix_audit_events_org_created", "audit_events", ["organization_id", "created_at"]
    )
    op.drop_index("ix_invoices_org_status_listing", table_name="invoices")
    op.drop_index("ix_invoices_org_listing", table_name="invoices")
    op.create_index(
        "ix_invoices_org_listing", "invoices", ["organization_id", "deleted_at", "created_at"]
    )

    dialect = op.get_bind().dialect.name
    for trigger in ("invoice_counts_insert", "invoice_counts_update", "invoice_counts_delete"):
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON invoices")
        elif dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_counts_insert ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_counts_apply()")
        op.execute("DROP FUNCTION IF EXISTS invoice_counts_apply()")
        op.execute("DROP FUNCTION IF EXISTS invoice_counts_add(integer, varchar, bigint)")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_counts_insert")
    op.drop_table("audit_counts")
    op.drop_table("invoice_counts")
