"""Scale: the counts the database keeps, reading the list from its far end, and pages whose
number of SQL statements does not grow with the data.

The invoice counts (invoice_counts) and audit counts (audit_counts) are kept by triggers,
so every kind of write is checked against COUNT(*): pages, the API, status changes,
copies, deletes, the seed's bulk insert and raw SQL, on SQLite (tables from the models)
and on PostgreSQL (tables from the migration) when INVOICEAPP_TEST_POSTGRES_URL is set.
Timing belongs to bench/pages.py, never here.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, insert, literal_column, select, text, update
from sqlalchemy.orm import Session

import seed
from conftest import app_on_postgres
from invoiceapp import db_triggers
from invoiceapp.db import utcnow
from invoiceapp.models import (
    AuditCount,
    AuditEvent,
    Invoice,
    InvoiceCount,
    Organization,
    Share,
    User,
)
from support import NEW_INVOICE_LOCATION, VALID_INVOICE_FORM, signed_in_client

ROOT = Path(__file__).resolve().parent.parent
NEW_INVOICE = {k: v for k, v in VALID_INVOICE_FORM.items() if k != "status"}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_app(request: pytest.FixtureRequest) -> Iterator[Flask]:
    """The seeded app on SQLite (tables from create_all) or PostgreSQL (the migration)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("app")
        return
    with app_on_postgres() as app:
        yield app


@pytest.fixture()
def session(any_app: Flask) -> Iterator[Session]:
    db = any_app.extensions["db_sessionmaker"]()
    yield db
    db.close()


def assert_counts_are_right(db: Session) -> None:
    """invoice_counts and audit_counts say what COUNT(*) says, per organization."""
    db.rollback()  # a fresh snapshot
    live = db.execute(
        select(Invoice.organization_id, Invoice.status, func.count())
        .where(Invoice.deleted_at.is_(None))
        .group_by(Invoice.organization_id, Invoice.status)
    ).all()
    kept = db.execute(
        select(InvoiceCount.organization_id, InvoiceCount.status, InvoiceCount.live_count)
    ).all()
    assert {(o, s): n for o, s, n in kept if n} == {(o, s): n for o, s, n in live}
    assert all(n >= 0 for _, _, n in kept)

    actor = func.coalesce(AuditEvent.actor_email, literal_column("''"))
    records = db.execute(
        select(
            AuditEvent.organization_id, AuditEvent.action, AuditEvent.decision, actor, func.count()
        )
        .where(AuditEvent.organization_id.is_not(None))
        .group_by(AuditEvent.organization_id, AuditEvent.action, AuditEvent.decision, actor)
    ).all()
    counted = db.execute(
        select(
            AuditCount.organization_id,
            AuditCount.action,
            AuditCount.decision,
            AuditCount.actor_email,
            AuditCount.records,
        )
    ).all()
    assert {row[:4]: row[4] for row in counted} == {row[:4]: row[4] for row in records}


def created(response: Any) -> str:
    assert response.status_code == 303, response.status_code
    match = NEW_INVOICE_LOCATION.search(response.headers["Location"])
    assert match
    return match.group(1)


def test_counts_follow_every_kind_of_write(any_app: Flask, session: Session) -> None:
    assert_counts_are_right(session)  # the seed's (and the migration's backfill)
    ada = signed_in_client(any_app, "ada@acme.test")
    grace = signed_in_client(any_app, "grace@acme.test")

    # Creates: the form, the API, and another organization.
    first = created(ada.post("/invoices/new", data=VALID_INVOICE_FORM))
    second = created(ada.post("/invoices/new", data=VALID_INVOICE_FORM))
    third = created(ada.post("/invoices/new", data=VALID_INVOICE_FORM))
    api = ada.post("/api/v1/invoices", json=NEW_INVOICE)
    assert api.status_code == 201
    api_id, api_etag = api.get_json()["id"], api.headers["ETag"]
    assert grace.post("/api/v1/invoices?organization=globex", json=NEW_INVOICE).status_code == 201
    assert_counts_are_right(session)

    # Status changes, an edit (no count moves), copies, deletes.
    assert ada.post(f"/invoices/{first}/send").status_code == 303
    assert ada.post(f"/invoices/{first}/mark-paid").status_code == 303
    assert ada.post(f"/invoices/{second}/void").status_code == 303
    edited = ada.post(f"/invoices/{third}/edit", data={**VALID_INVOICE_FORM, "customer": "Edited"})
    assert edited.status_code == 303
    assert_counts_are_right(session)
    session.execute(
        update(Organization)
        .where(Organization.slug == "acme")
        .values(invoice_duplication_enabled=True)
    )
    session.commit()
    assert ada.post(f"/invoices/{first}/duplicate").status_code == 303
    assert ada.post("/invoices/inv_7/duplicate").status_code == 303
    assert ada.post(f"/invoices/{second}/delete").status_code == 403  # void: it stays
    assert ada.post(f"/invoices/{third}/delete").status_code == 303
    assert ada.post("/invoices/inv_7/delete").status_code == 303
    deleted = ada.delete(f"/api/v1/invoices/{api_id}", headers={"If-Match": api_etag})
    assert deleted.status_code == 204
    assert ada.post("/invoices/inv_7/delete").status_code == 404  # gone: nothing moves
    assert_counts_are_right(session)

    # The seed's bulk insert (which sets the counts itself on SQLite).
    seed.add_generated_invoices(session, 40, progress=False)
    assert_counts_are_right(session)

    # Raw SQL, several rows per statement: soft-delete, undelete, change status, move to
    # another organization, hard delete.
    acme, globex = (
        session.scalar(select(Organization.id).where(Organization.slug == slug))
        for slug in ("acme", "globex")
    )
    session.execute(
        update(Invoice)
        .where(Invoice.organization_id == acme, Invoice.status == "draft")
        .values(deleted_at=utcnow())
    )
    session.execute(update(Invoice).where(Invoice.number % 3 == 0).values(deleted_at=None))
    session.execute(update(Invoice).where(Invoice.number % 5 == 0).values(status="void"))
    session.execute(
        text(
            "UPDATE invoices SET organization_id = :to, number = number + 100000 "
            "WHERE organization_id = :from AND number % 7 = 0"
        ),
        {"to": globex, "from": acme},
    )
    session.execute(text("DELETE FROM invoices WHERE number % 11 = 0"))
    session.commit()
    assert_counts_are_right(session)

    # A rolled-back change takes its counts back with it.
    session.execute(update(Invoice).values(status="paid"))
    session.execute(
        insert(AuditEvent).values(
            action="rolled.back", decision="denied", status=403, organization_id=acme, reason=""
        )
    )
    session.rollback()
    assert_counts_are_right(session)


def test_audit_counts_follow_the_log(any_app: Flask, session: Session) -> None:
    linus = signed_in_client(any_app, "linus@acme.test")
    for _ in range(3):
        assert linus.post("/invoices/inv_7/delete").status_code == 403  # recorded, denied
    assert linus.get("/invoices/inv_42").status_code == 404  # recorded in Globex's log
    org_ids = session.scalars(select(Organization.id)).all()
    session.execute(
        insert(AuditEvent),
        [
            {"action": "member.invite", "decision": "allowed", "status": 303, "reason": "",
             "organization_id": org, "actor_email": actor}
            for org in [*org_ids, None] for actor in ("ada@acme.test", None)
        ],
    )  # fmt: skip
    session.commit()
    assert_counts_are_right(session)


def test_the_last_page_lists_the_oldest_invoices_in_order(app: Flask, db: Session) -> None:
    seed.add_generated_invoices(db, 60, progress=False)
    newest_first = db.scalars(
        select(Invoice.public_id)
        .join(Organization)
        .where(Organization.slug == "acme", Invoice.deleted_at.is_(None))
        .order_by(Invoice.created_at.desc(), Invoice.id.desc())
    ).all()
    assert len(newest_first) == 69  # 9 demo invoices and 60 generated: 3 pages of 25
    ada = signed_in_client(app, "ada@acme.test")

    def ids(path: str) -> list[str]:
        body = ada.get(path).get_data(as_text=True)
        return re.findall(r'<a href="/invoices/(inv_[a-z0-9_]+)">', body)

    assert ids("/invoices") == newest_first[:25]
    assert ids("/invoices?page=2") == newest_first[25:50]
    assert ids("/invoices?page=3") == newest_first[50:]  # read from the oldest end
    assert ids("/invoices?page=999") == newest_first[50:]
    # Generated statuses are random: make sure "paid" has more than one page.
    db.execute(
        update(Invoice).where(Invoice.public_id.in_(newest_first[:30])).values(status="paid")
    )
    db.commit()
    paid = db.scalars(
        select(Invoice.public_id)
        .join(Organization)
        .where(Organization.slug == "acme", Invoice.status == "paid", Invoice.deleted_at.is_(None))
        .order_by(Invoice.created_at.desc(), Invoice.id.desc())
    ).all()
    last = (len(paid) - 1) // 25 + 1
    assert ids(f"/invoices?status=paid&page={last}") == paid[(last - 1) * 25 :]
    body = ada.get(f"/invoices?status=paid&page={last}").get_data(as_text=True)
    assert f"Page {last} of {last} · {len(paid)} invoices" in body


def test_the_audit_log_s_last_page_lists_the_oldest_records_in_order(
    app: Flask, db: Session
) -> None:
    acme = db.scalar(select(Organization.id).where(Organization.slug == "acme"))
    # 60 refusals in 60 windows (repeats within one window would be one record, counted).
    start = utcnow().replace(microsecond=0)
    refusals = [
        {"created_at": start - timedelta(hours=i), "actor_email": "linus@acme.test",
         "organization_id": acme, "action": "invoice.delete", "resource_id": "inv_7",
         "decision": "denied", "status": 403, "reason": "member"}
        for i in range(60)
    ]  # fmt: skip
    db.execute(insert(AuditEvent), refusals)
    db.commit()
    newest_first = db.scalars(
        select(AuditEvent.id)
        .where(AuditEvent.organization_id == acme)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    ).all()
    ada = signed_in_client(app, "ada@acme.test")
    body = ada.get("/orgs/acme/audit?page=2").get_data(as_text=True)
    assert f"Page 2 of 2 · {len(newest_first)} records" in body
    times = re.findall(r'<time datetime="([^"]+)"', body)
    assert len(times) == len(newest_first) - 50
    assert times == sorted(times, reverse=True)


# --- SQL statements per page -------------------------------------------------------------

PAGES = [
    "/dashboard",
    "/invoices",
    "/invoices?page=999999",
    "/invoices?status=draft",
    "/invoices?status=paid&page=999999",
    "/invoices/inv_7",
    "/api/v1/invoices",
    "/orgs/acme/audit",
    "/orgs/acme/audit?page=999999",
    "/orgs/acme/audit?actor=linus@acme.test&decision=denied",
]


def statements_per_page(app: Flask, client: FlaskClient) -> dict[str, int]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    engine = app.extensions["db_engine"]
    event.listen(engine, "before_cursor_execute", count)
    try:
        result = {}
        for path in PAGES:
            client.get(path)  # anything once-only (the session's "last seen") happens here
            seen.clear()
            assert client.get(path).status_code == 200, path
            result[path] = len(seen)
        return result
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_statements_per_page_do_not_grow_with_the_data(app: Flask, db: Session) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    linus = signed_in_client(app, "linus@acme.test")
    for _ in range(3):
        linus.post("/invoices/inv_7/delete")  # a few audit records at seed size
    small = statements_per_page(app, ada)

    seed.add_generated_invoices(db, 3000, progress=False)
    acme = db.scalar(select(Organization.id).where(Organization.slug == "acme"))
    db.execute(
        insert(AuditEvent),
        [
            {"action": "invoice.delete", "decision": "denied", "status": 403, "reason": "",
             "organization_id": acme, "actor_email": "linus@acme.test"}
        ] * 3000,
    )  # fmt: skip
    db.commit()
    large = statements_per_page(app, ada)

    assert large == small
    # The most is the audit log's: who asks (session, user, roles and whether any share:
    # 1), the organization, the page of records, their repeat counts, the total and the
    # actions for the filter (from the kept counts), and the retention checkpoint.
    assert max(large.values()) <= 7, large
    assert large["/invoices/inv_7"] == 2, large  # who asks, and the invoice (scoped)


def hot_path_statements(client: FlaskClient, app: Flask, path: str) -> list[str]:
    """The statements of ``path`` the second time it is asked (the first may write
    "last seen"), whitespace flattened."""
    seen: list[str] = []
    engine = app.extensions["db_engine"]

    def count(*args: Any) -> None:
        seen.append(" ".join(args[2].split()))

    client.get(path)
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return seen


def test_knowing_who_asks_costs_one_statement_and_the_scoped_lookup_one(app: Flask) -> None:
    """The signed-in hot path (bench/throughput.py measures its speed): one statement reads
    the session, its user, the roles with their organizations and whether any share was
    accepted from elsewhere (invoiceapp.shares); then the invoice, scoped. A user who
    holds no share costs no shares statement; the header's switcher and the policy's
    organization rules reuse what the first statement loaded."""
    seen = hot_path_statements(signed_in_client(app, "ada@acme.test"), app, "/invoices/inv_7")
    assert len(seen) == 2, seen
    assert "FROM sessions JOIN users" in seen[0]
    assert "JOIN memberships" in seen[0] and "JOIN organizations" in seen[0]
    assert "EXISTS (SELECT" in seen[0] and "FROM shares" in seen[0]
    assert "FROM invoices" in seen[1] and "public_id" in seen[1]


def test_a_guest_with_a_live_share_gets_the_shares_statement_and_the_shared_invoice(
    app: Flask, db: Session
) -> None:
    """The shares statement is skipped only when the session's statement found none: a
    guest holding a live share gets it read (and the shared invoice scoped in)."""
    ada = db.scalar(select(User).where(User.email == "ada@acme.test"))
    guest = db.scalar(select(User).where(User.email == "marge@globex.test"))
    assert ada is not None and guest is not None
    invoice = db.scalar(select(Invoice).where(Invoice.public_id == "inv_7"))
    assert invoice is not None
    now = utcnow()
    db.add(
        Share(public_id="0123456789abcdef", organization_id=invoice.organization_id,
              customer=invoice.customer, email=guest.email, access="read",
              token_hash="0" * 64, shared_by_id=ada.id, guest_id=guest.id, created_at=now,
              accepted_at=now, expires_at=now + timedelta(days=1))
    )  # fmt: skip
    db.commit()
    seen = hot_path_statements(signed_in_client(app, guest.email), app, "/invoices/inv_7")
    assert "FROM sessions JOIN users" in seen[0]
    assert seen[1].startswith("SELECT shares.")  # the grants, with the sharer's name
    assert "FROM invoices" in seen[2] and "invoices.customer" in seen[2]  # shared, scoped in


def test_after_a_rollback_the_header_reads_the_organizations_in_one_statement(
    app: Flask,
) -> None:
    """A stale save rolls back, which expires the organizations the principal loaded;
    the 409 page's header reads them again together, not one statement each."""
    grace = signed_in_client(app, "grace@acme.test")  # two organizations: the switcher
    seen: list[str] = []
    engine = app.extensions["db_engine"]

    def count(*args: Any) -> None:
        seen.append(" ".join(args[2].split()))

    event.listen(engine, "before_cursor_execute", count)
    try:
        stale = grace.post("/invoices/inv_7/edit", data={**NEW_INVOICE, "version": "0"})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert stale.status_code == 409
    assert "Globex Corporation" in stale.get_data(as_text=True)  # the switcher is whole
    reads = [statement for statement in seen if statement.startswith("SELECT organizations.")]
    assert len(reads) == 1, reads


# --- The migration and the models agree ---------------------------------------------------


def test_the_migration_creates_the_same_triggers_as_the_models() -> None:
    """Migrations never import the app, so the statements are copies: keep them equal."""
    path = ROOT / "migrations" / "versions" / "0006_scale.py"
    spec = importlib.util.spec_from_file_location("migration_0006", path)
    assert spec and spec.loader
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.TRIGGERS["sqlite"] == db_triggers.INVOICE_COUNT_TRIGGERS_SQLITE
    assert migration.TRIGGERS["postgresql"] == db_triggers.INVOICE_COUNT_TRIGGERS_POSTGRESQL
    assert migration.AUDIT_TRIGGERS["sqlite"] == db_triggers.AUDIT_COUNT_TRIGGERS_SQLITE
    assert migration.AUDIT_TRIGGERS["postgresql"] == db_triggers.AUDIT_COUNT_TRIGGERS_POSTGRESQL


def test_the_bulk_seed_on_sqlite_stores_what_sqlalchemy_would(app: Flask, db: Session) -> None:
    """seed.py hands SQLite ready-made text for dates and times; it must be the same text
    SQLAlchemy writes, or ordering and comparisons would go wrong."""
    seed.add_generated_invoices(db, 5, progress=False)
    newest = db.scalars(select(Invoice).order_by(Invoice.id.desc()).limit(1)).one()
    raw = db.execute(
        text("SELECT created_at, issue_date, due_date FROM invoices WHERE id = :id"),
        {"id": newest.id},
    ).one()
    dialect = db.get_bind().dialect
    columns = Invoice.__table__.c

    def stored(column: Any, value: Any) -> Any:
        if hasattr(column.type, "process_bind_param"):  # UTCDateTime
            value = column.type.process_bind_param(value, dialect)
        processor = column.type.dialect_impl(dialect).bind_processor(dialect)
        return processor(value) if processor else value

    assert raw.created_at == stored(columns.created_at, newest.created_at)
    assert raw.issue_date == stored(columns.issue_date, newest.issue_date)
    assert raw.due_date == stored(columns.due_date, newest.due_date)
    # The triggers are back after the load, and the counts were set by it.
    names = set(db.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))
    assert {"invoice_counts_insert", "invoice_counts_update", "invoice_counts_delete"} <= names
    assert_counts_are_right(db)
