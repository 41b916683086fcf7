"""The audit log: append-only in the database itself, written at every refusal, readable
by an organization's owner and admins at /orgs/<slug>/audit, and only ever its own rows.

The page tests run on SQLite and, with INVOICEAPP_TEST_POSTGRES_URL set, on PostgreSQL
too (the backend-switching ``app`` fixture comes from test_invoice_actions).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import seed
from invoiceapp.db import Base, make_engine, utcnow
from invoiceapp.models import AuditEvent, Invoice, Organization
from support import postgres_schema, signed_in_client


# The backend-switching fixtures: every page test here runs on SQLite and on PostgreSQL.
@pytest.fixture()
def app(app_on_each_engine: Flask) -> Flask:
    """These tests run on SQLite and again on PostgreSQL (conftest.py)."""
    return app_on_each_engine


POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="INVOICEAPP_TEST_POSTGRES_URL is not set"
)

ADA, GRACE, LINUS, EVE = "ada@acme.test", "grace@acme.test", "linus@acme.test", "eve@acme.test"
HANK, MARGE = "hank@globex.test", "marge@globex.test"


# --- Append-only, in the database itself -------------------------------------------------


@contextmanager
def sqlite_by_migration(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'migrated.sqlite3'}"
    seed.migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@contextmanager
def sqlite_app_database(database_file: Path) -> Iterator[Engine]:
    """The file the app runs on in the tests, built by Base.metadata.create_all."""
    engine = make_engine(f"sqlite:///{database_file}")
    yield engine
    engine.dispose()


@contextmanager
def postgres_by_migration() -> Iterator[Engine]:
    assert POSTGRES_URL
    with postgres_schema(POSTGRES_URL) as url:
        seed.migrate(url)
        engine = make_engine(url)
        yield engine
        engine.dispose()


@contextmanager
def postgres_by_create_all() -> Iterator[Engine]:
    assert POSTGRES_URL
    with postgres_schema(POSTGRES_URL) as url:
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        yield engine
        engine.dispose()


def one_record(**changes: Any) -> dict[str, Any]:
    return {
        "created_at": utcnow(),
        "actor_id": 1,
        "actor_email": "linus@acme.test",
        "organization_id": 1,
        "action": "invoice.delete",
        "resource_id": "inv_7",
        "decision": "denied",
        "status": 403,
        "reason": "The member role does not include invoice.delete",
        "ip_address": "127.0.0.1",
        **changes,
    }


@pytest.mark.parametrize(
    "schema",
    [
        "sqlite-migration",
        "sqlite-create_all",
        pytest.param("postgresql-migration", marks=needs_postgres),
        pytest.param("postgresql-create_all", marks=needs_postgres),
    ],
)
def test_audit_records_cannot_be_changed_or_deleted(
    schema: str, tmp_path: Path, database_file: Path
) -> None:
    schemas = {
        "sqlite-migration": lambda: sqlite_by_migration(tmp_path),
        "sqlite-create_all": lambda: sqlite_app_database(database_file),
        "postgresql-migration": postgres_by_migration,
        "postgresql-create_all": postgres_by_create_all,
    }
    with schemas[schema]() as engine:
        with engine.begin() as connection:
            connection.execute(insert(AuditEvent), [one_record(), one_record(status=404)])
        refused = [
            update(AuditEvent).values(decision="allowed"),
            update(AuditEvent).where(AuditEvent.status == 404).values(actor_email=None),
            delete(AuditEvent),
            delete(AuditEvent).where(AuditEvent.status == 404),
            text("UPDATE audit_events SET reason = '' WHERE id = 1"),
            text("DELETE FROM audit_events WHERE id = 1"),
        ]
        for statement in refused:
            with pytest.raises(DBAPIError, match="append-only"):
                with engine.begin() as connection:
                    connection.execute(statement)
        with engine.connect() as connection:
            rows = connection.execute(
                select(AuditEvent.decision, AuditEvent.actor_email, AuditEvent.reason)
            ).all()
        assert rows == [("denied", LINUS, one_record()["reason"])] * 2
        with engine.begin() as connection:  # appending still works
            connection.execute(insert(AuditEvent), one_record(action="invoice.void"))
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(AuditEvent)) == 3


# --- What gets recorded, and in whose log ------------------------------------------------


def org_id(db: Session, slug: str) -> int:
    found = db.scalar(select(Organization.id).where(Organization.slug == slug))
    assert found is not None
    return found


def log_of(db: Session, slug: str) -> list[AuditEvent]:
    db.expire_all()
    return list(
        db.scalars(
            select(AuditEvent)
            .where(AuditEvent.organization_id == org_id(db, slug))
            .order_by(AuditEvent.id)
        )
    )


def client_for(app: Flask, email: str) -> FlaskClient:
    client = signed_in_client(app, email)
    client.get("/dashboard")  # uses up the "signed in" flash, so error pages compare equal
    return client


def test_a_members_refused_delete_is_recorded(app: Flask, db: Session) -> None:
    assert log_of(db, "acme") == []
    assert client_for(app, LINUS).post("/invoices/inv_7/delete").status_code == 403
    [row] = log_of(db, "acme")
    assert (row.action, row.decision, row.status, row.resource_id) == (
        "invoice.delete", "denied", 403, "inv_7")  # fmt: skip
    assert row.actor_email == LINUS
    assert row.reason == "The member role does not include invoice.delete"
    assert row.ip_address == "127.0.0.1"
    assert abs(utcnow() - row.created_at) < timedelta(minutes=1)


def test_reaching_for_another_orgs_invoice_lands_in_that_orgs_log(
    app: Flask,
    db: Session,
) -> None:
    linus = client_for(app, LINUS)
    assert linus.get("/invoices/inv_42").status_code == 404
    assert linus.post("/invoices/inv_42/delete").status_code == 404
    assert linus.get("/invoices/inv_999999").status_code == 404

    globex_log = log_of(db, "globex")
    assert [(r.action, r.resource_id, r.status, r.decision, r.actor_email) for r in globex_log] == [
        ("invoices.show", "inv_42", 404, "denied", LINUS),
        ("invoices.delete", "inv_42", 404, "denied", LINUS),
    ]
    assert log_of(db, "acme") == []  # Linus's own organization learns nothing of it
    # An id that exists nowhere belongs to no organization's log.
    missing = db.scalars(select(AuditEvent).where(AuditEvent.resource_id == "inv_999999")).all()
    assert [row.organization_id for row in missing] == [None]

    # Globex's owner sees who reached for his invoice; Acme's owner does not.
    globex_page = client_for(app, HANK).get("/orgs/globex/audit").get_data(as_text=True)
    assert LINUS in globex_page and "inv_42" in globex_page
    acme_page = client_for(app, ADA).get("/orgs/acme/audit").get_data(as_text=True)
    assert "inv_42" not in acme_page
    assert "inv_999999" not in acme_page and "inv_999999" not in globex_page


# --- Who may read the log ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "slug", "expected"),
    [
        (ADA, "acme", 200),  # owner
        (GRACE, "acme", 200),  # admin
        (HANK, "globex", 200),  # owner
        (LINUS, "acme", 403),  # member
        (EVE, "acme", 403),  # member
        (GRACE, "globex", 403),  # admin in Acme, but a member in Globex
        (MARGE, "globex", 403),  # member
        (HANK, "acme", 404),  # an owner elsewhere is nobody here
        (LINUS, "globex", 404),
        (ADA, "initech", 404),  # no such organization
    ],
)
def test_who_may_read_the_audit_log(
    app: Flask,
    db: Session,
    email: str,
    slug: str,
    expected: int,
) -> None:
    client = client_for(app, email)
    response = client.get(f"/orgs/{slug}/audit")
    assert response.status_code == expected
    body = response.get_data(as_text=True)
    if expected == 200:
        assert "Audit log" in body
    elif expected == 403:
        assert "audit.read" in body and "owner or admin" in body
        assert 'href="/orgs/' + slug + '/audit"' not in client.get(f"/orgs/{slug}").get_data(
            as_text=True
        )  # no link to a page the policy refuses
        [row] = [r for r in log_of(db, slug) if r.action == "audit.read"]
        assert (row.decision, row.status, row.actor_email) == ("denied", 403, email)
    else:
        missing = client.get("/orgs/no-such-org/audit")
        assert missing.status_code == 404
        assert body == missing.get_data(as_text=True)


def test_anonymous_is_sent_to_sign_in(client: FlaskClient) -> None:
    response = client.get("/orgs/acme/audit")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in?next=" + quote("/orgs/acme/audit", safe="/")


def test_an_empty_log_says_so(app: Flask) -> None:
    page = client_for(app, HANK).get("/orgs/globex/audit").get_data(as_text=True)
    assert "Nothing recorded yet" in page
    assert 'data-testid="audit-log"' not in page


# --- Filters and pagination -----------------------------------------------------------------

CELL = re.compile(r'<td(?: class="num")? data-label="(\w+)">(.*?)</td>', re.S)


def listed(response: Any) -> list[dict[str, str]]:
    """The table's rows, each as {column label: cell text without tags}."""
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    rows = []
    for chunk in body.split("<tr>")[2:]:  # the first <tr> is the header
        cells = {label: re.sub(r"<[^>]+>", "", value) for label, value in CELL.findall(chunk)}
        if cells:
            rows.append(cells)
    return rows


@pytest.fixture()
def busy_log(db: Session) -> list[str]:
    """120 records in Acme's log (oldest first), three in Globex's; returns Acme's ids."""
    acme, globex = org_id(db, "acme"), org_id(db, "globex")
    start = utcnow() - timedelta(days=1)
    actors = [ADA, GRACE, LINUS]
    rows = [
        {
            "created_at": start + timedelta(minutes=i),
            "actor_id": None,
            "actor_email": actors[i % 3],
            "organization_id": acme,
            "action": "invoice.void" if i % 4 == 0 else "invoice.delete",
            "resource_id": f"inv_audit{i:03d}",
            "decision": "allowed" if i % 2 == 0 else "denied",
            "status": 303 if i % 2 == 0 else 403,
            "reason": f"record {i}",
            "ip_address": "192.0.2.7",
        }
        for i in range(120)
    ]
    rows += [
        {**rows[i], "organization_id": globex, "resource_id": f"inv_globex{i}"} for i in range(3)
    ]
    db.execute(insert(AuditEvent), rows)
    db.commit()
    return [f"inv_audit{i:03d}" for i in range(120)]


def ids(response: Any) -> list[str]:
    return [row["Resource"] for row in listed(response)]


def test_fifty_per_page_newest_first(app: Flask, busy_log: list[str]) -> None:
    ada = client_for(app, ADA)
    newest_first = list(reversed(busy_log))
    first = ada.get("/orgs/acme/audit")
    assert ids(first) == newest_first[:50]
    body = first.get_data(as_text=True)
    assert "Page 1 of 3 · 120 records" in body
    assert 'href="/orgs/acme/audit?page=2" rel="next"' in body
    assert ids(ada.get("/orgs/acme/audit?page=2")) == newest_first[50:100]
    assert ids(ada.get("/orgs/acme/audit?page=3")) == newest_first[100:]
    assert ids(ada.get("/orgs/acme/audit?page=99")) == newest_first[100:]  # clamps to the last
    row = listed(first)[0]
    assert (row["Actor"], row["Resource"], row["Reason"], row["IP"]) == (
        LINUS, "inv_audit119", "record 119", "192.0.2.7")  # fmt: skip
    assert (row["Decision"], row["Status"], row["Action"]) == ("denied", "403", "invoice.delete")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["Time"])


@pytest.mark.parametrize(
    "page", ["abc", "-1", "0", "", "1.5", "99999999999", "%C2%B2", "%D9%A2", "2%00", "0x2"]
)
def test_a_junk_page_number_is_page_one(
    app: Flask,
    busy_log: list[str],
    page: str,
) -> None:
    response = client_for(app, ADA).get(f"/orgs/acme/audit?page={page}")
    assert response.status_code == 200
    assert ids(response) == list(reversed(busy_log))[:50]


def test_filters_by_action_actor_and_decision(
    app: Flask,
    busy_log: list[str],
) -> None:
    ada = client_for(app, ADA)
    everything = [f"inv_audit{i:03d}" for i in reversed(range(120))]

    def expect(predicate: Any) -> list[str]:
        return [r for r in everything if predicate(int(r[-3:]))][:50]

    assert ids(ada.get("/orgs/acme/audit?decision=denied")) == expect(lambda i: i % 2 == 1)
    assert ids(ada.get("/orgs/acme/audit?decision=allowed")) == expect(lambda i: i % 2 == 0)
    assert ids(ada.get("/orgs/acme/audit?action=invoice.void")) == expect(lambda i: i % 4 == 0)
    # Emails are stored in lower case, so the filter is case-insensitive.
    assert ids(ada.get("/orgs/acme/audit?actor=LINUS@acme.test")) == expect(lambda i: i % 3 == 2)
    combined = ada.get("/orgs/acme/audit?actor=ada@acme.test&decision=allowed&action=invoice.void")
    assert ids(combined) == expect(lambda i: i % 3 == 0 and i % 4 == 0)
    # Unknown or malformed values are ignored, not searched for and not an error.
    for junk in ("decision=maybe", "decision=ALLOWED", "action=%27%20OR%201%3D1", "actor=nobody"):
        response = ada.get(f"/orgs/acme/audit?{junk}")
        assert ids(response) == everything[:50], junk
    # A well-formed filter that matches nothing is an empty state, not the whole log.
    nobody = ada.get("/orgs/acme/audit?actor=nobody@example.com").get_data(as_text=True)
    assert "No records match these filters" in nobody


def test_pages_keep_the_filters(app: Flask, busy_log: list[str]) -> None:
    ada = client_for(app, ADA)
    first = ada.get("/orgs/acme/audit?decision=allowed&actor=").get_data(as_text=True)
    assert "Page 1 of 2 · 60 records" in first
    assert 'href="/orgs/acme/audit?decision=allowed&amp;page=2" rel="next"' in first
    second = ada.get("/orgs/acme/audit?decision=allowed&page=2")
    assert ids(second) == [f"inv_audit{i:03d}" for i in reversed(range(0, 120, 2))][50:]


def test_the_log_shows_only_its_own_organizations_rows(
    app: Flask,
    busy_log: list[str],
) -> None:
    acme = client_for(app, ADA)
    seen = {id for page in (1, 2, 3) for id in ids(acme.get(f"/orgs/acme/audit?page={page}"))}
    assert seen == set(busy_log)
    globex = ids(client_for(app, HANK).get("/orgs/globex/audit"))
    assert globex == ["inv_globex2", "inv_globex1", "inv_globex0"]
    # Grace is in both: each organization's page shows that organization's records only.
    grace = client_for(app, GRACE)
    assert "inv_globex" not in grace.get("/orgs/acme/audit").get_data(as_text=True)


# --- Repeated refusals: one record with a count, so nobody can flood a log ----------------


def repeats_of(db: Session, row: AuditEvent) -> int:
    """How many refusals ``row`` stands for (1 when it was never repeated)."""
    from invoiceapp.models import AuditRepeat

    db.expire_all()
    found = db.scalar(select(AuditRepeat.refusals).where(AuditRepeat.event_id == row.id))
    return found or 1


def test_an_outsiders_repeated_refusals_are_one_record_with_a_count(
    app: Flask, db: Session
) -> None:
    """The review's flood: a member of Acme reaching for Globex's invoice again and again
    used to add a record each time to a log Globex's owner cannot clean."""
    linus = client_for(app, LINUS)
    for _ in range(60):
        assert linus.post("/invoices/inv_42/delete").status_code == 404
    [row] = log_of(db, "globex")
    assert (row.action, row.resource_id, row.status, row.actor_email) == (
        "invoices.delete", "inv_42", 404, LINUS)  # fmt: skip
    assert repeats_of(db, row) == 60

    # The owner sees the one record and the count, on the page and in the API.
    hank = client_for(app, HANK)
    [shown] = listed(hank.get("/orgs/globex/audit"))
    assert (shown["Actor"], shown["Action"], shown["Times"].split(",")[0]) == (
        LINUS, "invoices.delete", "60")  # fmt: skip
    api = hank.get("/api/v1/orgs/globex/audit").get_json()
    [item] = api["items"]
    assert (item["count"], item["action"], item["actor_email"]) == (60, "invoices.delete", LINUS)
    assert item["last_at"] is not None


def test_anonymous_refusals_from_one_address_are_one_record_with_a_count(
    app: Flask, db: Session
) -> None:
    anonymous = app.test_client()
    for _ in range(25):
        assert anonymous.post("/invoices/inv_42/delete").status_code == 401
    rows = db.scalars(select(AuditEvent).where(AuditEvent.status == 401)).all()
    assert [(r.action, r.actor_email, r.ip_address) for r in rows] == [
        ("invoices.delete", None, "127.0.0.1")
    ]
    assert repeats_of(db, rows[0]) == 25


def test_each_actor_action_and_window_keeps_a_record_of_its_own(
    app: Flask, db: Session, clock: Any
) -> None:
    """Different people, different actions, and the same one again after the window are
    separate evidence; only the same refusal within one window is counted."""
    linus, eve = client_for(app, LINUS), client_for(app, EVE)
    for _ in range(3):
        linus.get("/invoices/inv_42")
        linus.post("/invoices/inv_42/delete")
        eve.get("/invoices/inv_42")
    clock.advance(seconds=app.config["AUDIT_REPEAT_WINDOW_SECONDS"])
    linus.get("/invoices/inv_42")
    rows = log_of(db, "globex")
    assert [(r.actor_email, r.action, repeats_of(db, r)) for r in rows] == [
        (LINUS, "invoices.show", 3),
        (LINUS, "invoices.delete", 3),
        (EVE, "invoices.show", 3),
        (LINUS, "invoices.show", 1),  # a new window: a new record
    ]
    # Sensitive actions that were allowed are never folded into a count.
    from invoiceapp.audit import record_audit

    with app.test_request_context():
        for _ in range(2):
            record_audit("org.billing.update", organization_id=org_id(db, "acme"), status=303)
    allowed = [r for r in log_of(db, "acme") if r.action == "org.billing.update"]
    assert [(r.decision, repeats_of(db, r)) for r in allowed] == [("allowed", 1)] * 2


def test_a_harmless_refusal_does_not_hide_the_target_of_a_later_one(
    app: Flask, db: Session
) -> None:
    """The second review: Linus refused deleting some draft, then refused deleting inv_7,
    left one record naming the draft with a count of 2; inv_7 appeared nowhere in Ada's
    log. A repeat is now only the same refusal (action, status) of the same thing."""
    acme = org_id(db, "acme")
    decoy = db.scalar(
        select(Invoice.public_id).where(
            Invoice.organization_id == acme,
            Invoice.public_id != "inv_7",
        )
    )
    linus = client_for(app, LINUS)
    assert linus.post(f"/invoices/{decoy}/delete").status_code == 403
    assert linus.post("/invoices/inv_7/delete").status_code == 403
    assert linus.post("/invoices/inv_7/delete").status_code == 403
    refused = [r for r in log_of(db, "acme") if r.action == "invoice.delete"]
    assert [(r.resource_id, r.status, repeats_of(db, r)) for r in refused] == [
        (decoy, 403, 1),
        ("inv_7", 403, 2),
    ]
    ada = client_for(app, ADA)
    shown = [row for row in listed(ada.get("/orgs/acme/audit")) if "inv_7" in str(row)]
    assert len(shown) == 1 and shown[0]["Times"].split(",")[0] == "2"


def test_guessed_ids_that_exist_nowhere_stay_one_record_per_window(app: Flask, db: Session) -> None:
    """The flood bound with the resource in the bucket: an id that exists in no
    organization is in nobody's log, and guessing a thousand of them is still one record
    (the resource only tells refusals apart inside an organization, where it exists)."""
    linus = client_for(app, LINUS)
    for number in range(30):
        assert linus.get(f"/invoices/inv_guess{number:04d}").status_code == 404
    rows = db.scalars(
        select(AuditEvent).where(AuditEvent.status == 404, AuditEvent.organization_id.is_(None))
    ).all()
    assert [(r.action, r.resource_id) for r in rows] == [("invoices.show", "inv_guess0000")]
    assert repeats_of(db, rows[0]) == 30
