"""The app's own behaviour on PostgreSQL, the deployment target, not only its migration.

Runs only when INVOICEAPP_TEST_POSTGRES_URL is set (.ci/run sets it when it can start a
throwaway server), e.g. postgresql+psycopg://postgres@127.0.0.1:54329/invoiceapp_test.

The module gets a schema of its own, built by the real migration (seed.migrate, i.e.
``alembic upgrade head``) and dropped at the end. Before every test all tables are
truncated (identities restarted) and seed.seed() puts the contract's demo data back, so
each test starts from the same state as the SQLite tests do.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import seed
from conftest import app_on_postgres
from invoiceapp.db import utcnow
from invoiceapp.models import MAX_AMOUNT_MINOR, Invoice, Organization, UserSession
from seeded_rows import reseed
from support import (
    NEW_INVOICE_LOCATION,
    PASSWORD,
    VALID_INVOICE_FORM,
    count_invoices,
    invoice,
    sign_in,
    signed_in_client,
    user,
)

POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="INVOICEAPP_TEST_POSTGRES_URL is not set (e.g. "
    "postgresql+psycopg://postgres@127.0.0.1:54329/invoiceapp_test); .ci/run sets it",
)


# --- Fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_app() -> Iterator[Flask]:
    """The app on a fresh schema that `alembic upgrade head` built; dropped afterwards."""
    with app_on_postgres(seeded=False) as app:
        yield app


@pytest.fixture()
def app(postgres_app: Flask) -> Flask:
    """The same app, its database given the seeded rows again for this test."""
    reseed(postgres_app)
    return postgres_app


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def db(app: Flask) -> Iterator[Session]:
    """A session of the test's own; no app context pushed, so requests keep their own ``g``."""
    session = app.extensions["db_sessionmaker"]()
    yield session
    session.close()


def create_invoice(client: FlaskClient, **changes: str) -> Any:
    return client.post("/invoices/new", data={**VALID_INVOICE_FORM, **changes})


def created_invoice(db: Session, response: Any) -> Invoice:
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    match = NEW_INVOICE_LOCATION.fullmatch(response.headers["Location"])
    assert match, response.headers["Location"]
    return invoice(db, match.group(1))


def valid_invoice_row(db: Session, **changes: Any) -> dict[str, Any]:
    """A row the database accepts: inv_7's organization, the next free number."""
    inv_7 = invoice(db, "inv_7")
    highest = db.scalar(
        select(func.max(Invoice.number)).where(Invoice.organization_id == inv_7.organization_id)
    )
    now = utcnow()
    return {
        "public_id": f"inv_{uuid.uuid4().hex[:16]}",
        "organization_id": inv_7.organization_id,
        "number": highest + 1,
        "customer": "Constraint Probe Ltd",
        "amount_minor": 1_00,
        "currency": "EUR",
        "status": "draft",
        "issue_date": date(2024, 5, 1),
        "due_date": date(2024, 5, 31),
        "created_by_id": inv_7.created_by_id,
        "created_at": now,
        "updated_at": now,
        **changes,
    }


# --- The lesson's scenarios -------------------------------------------------------------
# The SQLite tests, imported unchanged: pytest runs them again here, with this module's
# app, client and db fixtures, so the very same assertions hit PostgreSQL.
from test_authentication import (  # noqa: E402
    test_sign_out_revokes_the_session_and_a_replayed_cookie_is_redirected,
)
from test_lesson_scenarios import (  # noqa: E402
    test_anonymous_post_delete_gets_401_with_www_authenticate,
    test_member_deletes_invoice_gets_403_and_invoice_survives,
    test_member_signs_in_and_sees_dashboard_with_their_name,
    test_other_org_delete_is_404_not_403,
    test_other_org_invoice_is_404_like_a_missing_one,
    test_same_user_two_roles_in_two_organizations,
)

REPLAYED_FROM_SQLITE = (
    test_member_signs_in_and_sees_dashboard_with_their_name,
    test_member_deletes_invoice_gets_403_and_invoice_survives,
    test_anonymous_post_delete_gets_401_with_www_authenticate,
    test_other_org_invoice_is_404_like_a_missing_one,
    test_other_org_delete_is_404_not_403,
    test_same_user_two_roles_in_two_organizations,
    test_sign_out_revokes_the_session_and_a_replayed_cookie_is_redirected,
)


def test_owner_delete_is_303_and_sets_deleted_at_in_utc(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    before = utcnow()
    response = client.post("/invoices/inv_7/delete")
    assert response.status_code == 303
    assert response.headers["Location"] == "/invoices?organization=acme"
    deleted_at = invoice(db, "inv_7").deleted_at  # the row stays: deletes are soft
    assert deleted_at is not None
    assert deleted_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= deleted_at <= utcnow() + timedelta(seconds=5)
    assert client.get("/invoices/inv_7").status_code == 404


# --- What PostgreSQL is stricter (or different) about -----------------------------------


@pytest.mark.parametrize(
    "customer",
    [
        # emoji (astral, ZWJ sequence, flag), right-to-left scripts, and combining marks
        # that are deliberately not NFC-normalised: all must come back exactly as typed.
        "🧾 Zoë 👩\u200d💻 🇯🇵 שלום עליכם مؤسسة الأمل e\u0301\u0308 n\u0303 ก\u0e34\u0e4a",
        ("Zoë🧾" * 50),  # 200 characters, 350 bytes: varchar(200) counts characters
    ],
    ids=["unicode", "200-characters"],
)
def test_customer_is_stored_and_shown_intact(app: Flask, db: Session, customer: str) -> None:
    assert db.scalar(text("SHOW server_encoding")) == "UTF8", "initdb the server with -E UTF8"
    assert len(customer) <= 200
    client = signed_in_client(app, "ada@acme.test")
    stored = created_invoice(db, create_invoice(client, customer=customer))
    assert stored.customer == customer
    assert db.execute(
        text("SELECT length(customer), octet_length(customer) FROM invoices WHERE id = :id"),
        {"id": stored.id},
    ).one() == (len(customer), len(customer.encode()))
    page = client.get(f"/invoices/{stored.public_id}")
    assert customer in page.get_data(as_text=True)


def test_customer_over_200_characters_is_a_422_form_error(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    before = count_invoices(db)
    response = create_invoice(client, customer="Zoë🧾" * 50 + "x")
    assert response.status_code == 422
    assert "200 characters or fewer" in response.get_data(as_text=True)
    assert count_invoices(db) == before


def test_nul_in_customer_is_a_422_form_error_not_a_500(app: Flask, db: Session) -> None:
    # PostgreSQL refuses NUL in text; the form must stop it before the database does.
    client = signed_in_client(app, "ada@acme.test")
    before = count_invoices(db)
    response = create_invoice(client, customer="Acme\x00Evil")
    assert response.status_code == 422
    assert "control characters" in response.get_data(as_text=True)
    assert count_invoices(db) == before


@pytest.mark.parametrize("email", ["ada@acme.test\x00", "a\x00da@acme.test"])
def test_nul_in_sign_in_email_is_refused_not_a_500(
    client: FlaskClient, db: Session, email: str
) -> None:
    # The email is looked up in the database, where NUL makes psycopg raise DataError.
    response = client.post("/sign-in", data={"email": email, "password": PASSWORD})
    # The form refuses control characters before any lookup: a form error, never a 401.
    assert response.status_code == 422
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(UserSession)) == 0


def test_maximum_amount_is_stored_exactly_as_bigint_minor_units(app: Flask, db: Session) -> None:
    data_type = db.scalar(
        text(
            "SELECT data_type FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = 'invoices' AND column_name = 'amount_minor'"
        )
    )
    assert data_type == "bigint"
    client = signed_in_client(app, "ada@acme.test")
    stored = created_invoice(db, create_invoice(client, amount="1,000,000,000.00"))
    assert stored.amount_minor == MAX_AMOUNT_MINOR == 100_000_000_000  # beyond 32 bits
    nearly = created_invoice(db, create_invoice(client, amount="999999999.99"))
    assert nearly.amount_minor == 99_999_999_999
    assert "1,000,000,000.00 EUR" in client.get(f"/invoices/{stored.public_id}").get_data(
        as_text=True
    )
    assert create_invoice(client, amount="1000000000.01").status_code == 422


@pytest.mark.parametrize(
    "invoice_id",
    [
        "inv_' OR 1=1--",
        "inv_7' OR '1'='1",
        "inv_7;DROP TABLE invoices",
        "inv_" + "a" * 33,  # one character longer than any public id
        "inv_" + "7" * 5_000,
        "inv_７",  # a full-width digit
        "inv_7\x00",
        "INV_7",
    ],
    ids=["or-1-1", "quote", "semicolon", "33-chars", "5000-chars", "fullwidth", "nul", "upper"],
)
def test_malformed_invoice_ids_are_404_like_a_missing_one(
    app: Flask, db: Session, invoice_id: str
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    client.get("/dashboard")  # uses up the "signed in" flash message
    missing = client.get("/invoices/inv_999999")
    path = "/invoices/" + quote(invoice_id, safe="")
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_data() == missing.get_data()
    assert client.post(path + "/delete").status_code == 404
    assert count_invoices(db) > 0
    assert invoice(db, "inv_7").deleted_at is None


def test_timestamps_come_back_timezone_aware_in_utc(app: Flask, db: Session) -> None:
    signed_in_client(app, "ada@acme.test")
    # A connection in a far-off zone (+12:45/+13:45) must still read the same instants.
    db.execute(text("SET LOCAL TIME ZONE 'Pacific/Chatham'"))
    raw = db.scalar(text("SELECT created_at FROM sessions"))
    assert raw.tzinfo is not None and raw.utcoffset() != timedelta(0)  # timestamptz
    session_row = db.scalars(select(UserSession)).one()
    for value in (
        session_row.created_at,
        session_row.last_seen_at,
        invoice(db, "inv_7").created_at,
    ):
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert session_row.created_at == raw
    assert abs(utcnow() - session_row.created_at) < timedelta(minutes=1)
    naive_columns = db.scalars(
        text(
            "SELECT table_name || '.' || column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND data_type = 'timestamp without time zone'"
        )
    ).all()
    assert naive_columns == []


def test_sign_in_email_is_case_insensitive(client: FlaskClient, db: Session) -> None:
    response = sign_in(client, "ADA@ACME.TEST")
    assert response.headers["Location"] == "/dashboard"
    assert "Ada Lovelace" in client.get("/dashboard").get_data(as_text=True)
    # Stored in lower case only, which the database itself insists on.
    with pytest.raises(IntegrityError, match="ck_users_email_lowercase"):
        db.execute(text("UPDATE users SET email = 'Ada@acme.test' WHERE email = 'ada@acme.test'"))
    db.rollback()
    assert user(db, "ada@acme.test").display_name == "Ada Lovelace"


def test_invoice_list_page_one_shows_25_newest_first(app: Flask, db: Session) -> None:
    seed.add_generated_invoices(db, 30, progress=False)
    acme_id = db.scalar(select(Organization.id).where(Organization.slug == "acme"))
    rows = db.execute(
        select(Invoice.public_id, Invoice.created_at, Invoice.id).where(
            Invoice.organization_id == acme_id, Invoice.deleted_at.is_(None)
        )
    ).all()
    assert len(rows) > 30
    newest_first = [
        r.public_id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
    ]

    client = signed_in_client(app, "ada@acme.test")
    page = client.get("/invoices")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    listed = re.findall(r'<td><a href="/invoices/(inv_[a-z0-9]+)">', body)
    assert listed == newest_first[:25]
    assert f"Page 1 of 2 · {len(rows)} invoices" in body

    second = client.get("/invoices?page=2").get_data(as_text=True)
    assert re.findall(r'<td><a href="/invoices/(inv_[a-z0-9]+)">', second) == newest_first[25:]


# --- The database's own guarantees ------------------------------------------------------


def test_duplicate_invoice_number_in_an_organization_raises_integrity_error(db: Session) -> None:
    inv_7 = invoice(db, "inv_7")
    with pytest.raises(IntegrityError, match="uq_invoices_organization_id_number"):
        db.execute(insert(Invoice).values(valid_invoice_row(db, number=inv_7.number)))
    db.rollback()
    db.execute(insert(Invoice).values(valid_invoice_row(db)))  # the next number is fine
    db.commit()


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"amount_minor": 0}, "ck_invoices_amount_range"),
        ({"amount_minor": -1}, "ck_invoices_amount_range"),
        ({"amount_minor": MAX_AMOUNT_MINOR + 1}, "ck_invoices_amount_range"),
        ({"currency": "XXX"}, "ck_invoices_currency"),
        ({"status": "lost"}, "ck_invoices_status"),
        ({"customer": ""}, "ck_invoices_customer_not_empty"),
        ({"due_date": date(2024, 4, 30)}, "ck_invoices_due_after_issue"),
        ({"number": 0}, "ck_invoices_number_positive"),
    ],
    ids=[
        "amount-0",
        "amount-negative",
        "amount-over-max",
        "currency",
        "status",
        "empty-customer",
        "due-before-issue",
        "number-0",
    ],
)
def test_check_constraints_are_enforced_by_the_database(
    db: Session, changes: dict[str, Any], constraint: str
) -> None:
    with pytest.raises(IntegrityError, match=constraint):
        db.execute(insert(Invoice).values(valid_invoice_row(db, **changes)))
    db.rollback()
    db.execute(insert(Invoice).values(valid_invoice_row(db)))  # guards against a vacuous pass
    db.commit()
