"""The triggers the database runs itself: counts kept by the database, an append-only log.

Four sets, each for SQLite and for PostgreSQL:
- INVOICE_COUNT_TRIGGERS_*  keep invoice_counts equal to the live invoices (InvoiceCount)
- AUDIT_TRIGGERS_*          refuse UPDATE and DELETE on audit_events (AuditEvent)
- AUDIT_PRUNE_TRIGGERS_*    ...except a DELETE by ``flask audit prune`` (retention)
- AUDIT_COUNT_TRIGGERS_*    keep audit_counts equal to the log's records (AuditCount)

The schema in invoiceapp/models.py says what the tables hold; this module says what the
database does on its own when they are written. ``attach_triggers`` (called once, from
models.py) runs these statements whenever ``create_all`` builds the schema (the tests'
databases); a migrated database gets the same statements from migrations 0004 and 0006,
which keep copies (migrations never import the app; tests/test_db_triggers.py and
tests/test_scale.py check that the copies agree and both ways end with the same triggers).
"""

from __future__ import annotations

from sqlalchemy import DDL, FromClause, MetaData, event

# The triggers behind InvoiceCount, shared with migration 0006 by copy (migrations never
# import the app). An invoice counts when deleted_at IS NULL. Additions are upserts (the
# first invoice of a status creates its row); subtractions are plain UPDATEs, so an
# organization being deleted (ON DELETE CASCADE on both tables, in either order) never
# re-creates a row for it.
#
# SQLite has row triggers only: one small statement per written row.
INVOICE_COUNT_TRIGGERS_SQLITE = [
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
]
# PostgreSQL: statement triggers with transition tables, so a bulk insert of 100,000 rows
# runs the function once, not 100,000 times. The net change per (organization, status) is
# applied in a fixed order, so two transactions never lock the same rows in opposite
# orders (no deadlocks); an UPDATE that changes no count (an edit, a version bump) writes
# and locks nothing.
INVOICE_COUNT_TRIGGERS_POSTGRESQL = [
    "CREATE FUNCTION invoice_counts_add(org integer, state varchar, n bigint) "
    "RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
    "UPDATE invoice_counts SET live_count = live_count + n "
    "WHERE organization_id = org AND status = state; "
    "IF NOT FOUND AND n > 0 THEN "
    "INSERT INTO invoice_counts (organization_id, status, live_count) VALUES (org, state, n) "
    "ON CONFLICT (organization_id, status) "
    "DO UPDATE SET live_count = invoice_counts.live_count + EXCLUDED.live_count; "
    "END IF; END $$",
    # A transition table exists only for the events that have it, hence three queries.
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
]


# The statements behind "append-only", shared with migration 0004 by copy (migrations
# never import the app). tests/test_audit.py proves them on SQLite and PostgreSQL.
AUDIT_TRIGGERS_SQLITE = [
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
]
AUDIT_TRIGGERS_POSTGRESQL = [
    "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$",
    "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
]


# Retention (migration 0019 keeps a copy): the append-only rule above, with one door for
# ``flask audit prune`` (invoiceapp.audit_retention). UPDATE stays refused always. DELETE
# passes only inside a transaction that said so itself: on PostgreSQL with
# ``SET LOCAL invoiceapp.audit_prune = 'on'`` (gone at commit or rollback), on SQLite while
# audit_prune_permits holds a row, inserted and deleted again in the same transaction.
# An ordinary DELETE from the app still fails. This guards against bugs and mistakes, not
# against someone who can run any SQL as the app's user (they could drop the trigger).
AUDIT_PRUNE_TRIGGERS_SQLITE = [
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    "WHEN NOT EXISTS (SELECT 1 FROM audit_prune_permits) "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
]
AUDIT_PRUNE_TRIGGERS_POSTGRESQL = [
    "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'DELETE' AND current_setting('invoiceapp.audit_prune', true) = 'on' THEN "
    "RETURN OLD; END IF; "
    "RAISE EXCEPTION 'audit_events is append-only'; END $$",
]


# Shared with migration 0006 by copy, like the others.
AUDIT_COUNT_TRIGGERS_SQLITE = [
    "CREATE TRIGGER audit_counts_insert AFTER INSERT ON audit_events "
    "WHEN NEW.organization_id IS NOT NULL BEGIN "
    "INSERT INTO audit_counts (organization_id, action, decision, actor_email, records) "
    "VALUES (NEW.organization_id, NEW.action, NEW.decision, coalesce(NEW.actor_email, ''), 1) "
    "ON CONFLICT (organization_id, action, decision, actor_email) "
    "DO UPDATE SET records = records + 1; "
    "END",
]
AUDIT_COUNT_TRIGGERS_POSTGRESQL = [
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
]


def _on_create(target: MetaData | FromClause, statements: list[str], dialect: str) -> None:
    for statement in statements:
        event.listen(target, "after_create", DDL(statement).execute_if(dialect=dialect))


def attach_triggers(metadata: MetaData, audit_events: FromClause) -> None:
    """Run the statements above when ``metadata.create_all`` makes the tables.

    The append-only triggers run right after audit_events is created; the count triggers
    after every table exists, since they sit on one table and write another.
    """
    _on_create(audit_events, AUDIT_TRIGGERS_SQLITE, "sqlite")
    _on_create(audit_events, AUDIT_TRIGGERS_POSTGRESQL, "postgresql")
    _on_create(metadata, INVOICE_COUNT_TRIGGERS_SQLITE, "sqlite")
    _on_create(metadata, INVOICE_COUNT_TRIGGERS_POSTGRESQL, "postgresql")
    _on_create(metadata, AUDIT_COUNT_TRIGGERS_SQLITE, "sqlite")
    _on_create(metadata, AUDIT_COUNT_TRIGGERS_POSTGRESQL, "postgresql")
    _on_create(metadata, AUDIT_PRUNE_TRIGGERS_SQLITE, "sqlite")
    _on_create(metadata, AUDIT_PRUNE_TRIGGERS_POSTGRESQL, "postgresql")
