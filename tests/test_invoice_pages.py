"""The invoice list, switching organizations, odd ids, deleted ids, CSV export, the 500 page."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

import seed as seed_module
from conftest import make_test_app
from invoiceapp.db import utcnow
from invoiceapp.models import Invoice, Membership, Organization, UserSession
from support import invoice, mentions, sign_in, signed_in_client, user

ROW = re.compile(r'<td><a href="/invoices/(inv_[A-Za-z0-9]+)">#(\d{4})</a></td>')


def listed(response: TestResponse) -> list[str]:
    """Invoice numbers in the order the list shows them."""
    assert response.status_code == 200
    return [number for _id, number in ROW.findall(response.get_data(as_text=True))]


def listed_ids(response: TestResponse) -> list[str]:
    return [public_id for public_id, _ in ROW.findall(response.get_data(as_text=True))]


def organization(db: Session, slug: str) -> Organization:
    found = db.scalar(select(Organization).where(Organization.slug == slug))
    assert found is not None
    return found


def live_ids(db: Session, slug: str) -> set[str]:
    db.expire_all()
    return set(
        db.scalars(
            select(Invoice.public_id).where(
                Invoice.organization_id == organization(db, slug).id, Invoice.deleted_at.is_(None)
            )
        )
    )


def fresh(client: FlaskClient) -> FlaskClient:
    client.get("/dashboard")  # uses up the "signed in" flash, so error pages compare equal
    return client


@pytest.fixture()
def ada(app: Flask) -> FlaskClient:
    return fresh(signed_in_client(app, "ada@acme.test"))


# --- The list: pagination, order, filters -----------------------------------------------


@pytest.fixture()
def thirty_newer_invoices(db: Session) -> list[str]:
    """Acme numbers 100..129, each a minute newer than the last, all newer than the seed."""
    acme = organization(db, "acme")
    ada_id = user(db, "ada@acme.test").id
    base = utcnow() + timedelta(days=1)
    for i in range(30):
        db.add(Invoice(
            public_id=f"inv_page{i:02d}", organization_id=acme.id, number=100 + i,
            customer=f"Paged Customer {i}", amount_minor=1000 + i, currency="EUR",
            status="sent", issue_date=date(2024, 1, 1), due_date=date(2024, 1, 31),
            created_by_id=ada_id, created_at=base + timedelta(minutes=i),
            updated_at=base + timedelta(minutes=i),
        ))  # fmt: skip
    db.commit()
    return [f"{100 + i:04d}" for i in range(30)]


SEEDED_ACME_NEWEST_FIRST = [f"{n:04d}" for n in range(9, 0, -1)]


def test_list_shows_25_newest_first(ada: FlaskClient, thirty_newer_invoices: list[str]) -> None:
    response = ada.get("/invoices")
    assert listed(response) == list(reversed(thirty_newer_invoices))[:25]
    body = response.get_data(as_text=True)
    assert "Page 1 of 2 · 39 invoices" in body
    assert 'href="/invoices?organization=acme&amp;page=2" rel="next"' in body
    assert 'rel="prev"' not in body


def test_second_page_holds_the_rest_in_order(
    ada: FlaskClient, thirty_newer_invoices: list[str]
) -> None:
    response = ada.get("/invoices?page=2")
    assert listed(response) == ["0104", "0103", "0102", "0101", "0100", *SEEDED_ACME_NEWEST_FIRST]
    body = response.get_data(as_text=True)
    assert "Page 2 of 2 · 39 invoices" in body
    assert 'href="/invoices?organization=acme&amp;page=1" rel="prev"' in body
    assert 'rel="next"' not in body


@pytest.mark.parametrize("page", ["3", "999999"])
def test_page_beyond_the_last_clamps_to_the_last(
    ada: FlaskClient, thirty_newer_invoices: list[str], page: str
) -> None:
    response = ada.get(f"/invoices?page={page}")
    assert listed(response) == listed(ada.get("/invoices?page=2"))
    assert "Page 2 of 2" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "page",
    [
        pytest.param("abc", id="letters"),
        pytest.param("-1", id="negative"),
        pytest.param("0", id="zero"),
        pytest.param("", id="empty"),
        pytest.param("99999999999", id="huge"),
        pytest.param("1.5", id="fraction"),
        pytest.param("0x2", id="hex"),
        pytest.param("2%00", id="nul"),
        pytest.param("%E2%91%A1", id="circled-two"),  # "②".isdigit() is True, int("②") fails
        pytest.param("%C2%B2", id="superscript-two"),  # "²" likewise
        pytest.param("%D9%A2", id="arabic-indic-two"),  # int("٢") == 2
        pytest.param("2&page=abc", id="repeated"),
    ],
)
def test_garbage_page_number_is_200_not_500(
    ada: FlaskClient, thirty_newer_invoices: list[str], page: str
) -> None:
    response = ada.get(f"/invoices?page={page}")
    assert response.status_code == 200
    assert re.search(r"Page [12] of 2 · 39 invoices", response.get_data(as_text=True))
    assert len(listed(response)) in (25, 14)


def test_walking_every_page_lists_each_invoice_once(ada: FlaskClient, db: Session) -> None:
    seed_module.add_generated_invoices(db, 60, progress=False)
    seen: list[str] = []
    for page in (1, 2, 3):
        ids = listed_ids(ada.get(f"/invoices?page={page}"))
        assert len(ids) == (25 if page < 3 else 69 - 50)
        seen += ids
    assert len(seen) == len(set(seen)) == 69
    assert set(seen) == live_ids(db, "acme")  # and none of Globex's 68


def test_status_filter_shows_only_that_status(ada: FlaskClient) -> None:
    response = ada.get("/invoices?status=paid")
    assert sorted(listed(response)) == ["0001", "0002", "0004"]
    body = response.get_data(as_text=True)
    assert set(re.findall(r'class="badge badge-(\w+)"', body)) == {"paid"}
    assert '<a href="/invoices?organization=acme&amp;status=paid" aria-current="page">' in body


@pytest.mark.parametrize("status", ["archived", "PAID", "' OR '1'='1", "paid%00"])
def test_unknown_status_is_ignored(ada: FlaskClient, status: str) -> None:
    response = ada.get(f"/invoices?status={quote(status)}")
    assert listed(response) == SEEDED_ACME_NEWEST_FIRST
    body = response.get_data(as_text=True)
    assert '<a href="/invoices?organization=acme" aria-current="page">All</a>' in body


def test_status_filter_with_no_matches_shows_empty_state(ada: FlaskClient, db: Session) -> None:
    omega_labs = seed_module.demo_invoice_id(db, "acme", 3)  # the only void one
    # A void invoice is never deleted through the app (it stays as the record), so the
    # row is marked deleted directly, as an old version of the app could have done.
    db.execute(update(Invoice).where(Invoice.public_id == omega_labs).values(deleted_at=utcnow()))
    db.commit()
    response = ada.get("/invoices?status=void")
    assert listed(response) == []
    body = response.get_data(as_text=True)
    assert "No void invoices." in body
    assert '<a href="/invoices?organization=acme">Show all</a>' in body
    assert "<table" not in body


def test_new_organization_shows_no_invoices_yet(app: Flask, db: Session) -> None:
    initech = Organization(slug="initech", name="Initech", plan="free")
    db.add(initech)
    db.flush()
    linus_id = user(db, "linus@acme.test").id
    db.add(Membership(user_id=linus_id, organization_id=initech.id, role="member"))
    db.commit()
    linus = signed_in_client(app, "linus@acme.test")
    assert linus.post("/orgs/switch", data={"organization": "initech"}).status_code == 303
    response = linus.get("/invoices")
    body = response.get_data(as_text=True)
    assert listed(response) == []
    assert "No invoices yet." in body
    assert '<a href="/invoices/new?organization=initech">Create the first one.</a>' in body
    assert "Initech" in body


def test_list_shows_only_the_active_organizations_invoices(app: Flask, db: Session) -> None:
    globex = live_ids(db, "globex")
    acme = live_ids(db, "acme")
    for email in ("ada@acme.test", "linus@acme.test", "grace@acme.test"):
        client = signed_in_client(app, email)
        shown = set(listed_ids(client.get("/invoices")))
        assert shown == acme, email
        assert not mentions(client.get("/invoices").get_data(as_text=True), "inv_42")
        assert not shown & globex
        dashboard = client.get("/dashboard").get_data(as_text=True)
        assert not set(re.findall(r"inv_[a-z0-9]+", dashboard)) & globex


# --- Switching organizations ------------------------------------------------------------


def grace_session(db: Session) -> UserSession:
    db.expire_all()
    found = db.scalar(
        select(UserSession).where(UserSession.user_id == user(db, "grace@acme.test").id)
    )
    assert found is not None
    return found


def test_switching_organization_changes_list_and_role(app: Flask, db: Session) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    before = grace.get("/invoices").get_data(as_text=True)
    assert 'class="role role-admin"' in before
    assert "Export CSV" in before  # Acme is on the pro plan

    response = grace.post("/orgs/switch", data={"organization": "globex"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/invoices"
    assert grace_session(db).active_organization_id == organization(db, "globex").id

    after = grace.get("/invoices")
    body = after.get_data(as_text=True)
    assert set(listed_ids(after)) == live_ids(db, "globex")
    assert mentions(body, "inv_42") and not mentions(body, "inv_7")
    assert 'class="role role-member"' in body
    assert "Now working in Globex Corporation." in body
    assert "Export CSV" not in body  # Globex is on the free plan
    # Roles follow the invoice's organization, not the active one.
    assert "Delete this invoice" in grace.get("/invoices/inv_7").get_data(as_text=True)
    assert "Delete this invoice" not in grace.get("/invoices/inv_42").get_data(as_text=True)


def test_switching_ignores_an_off_site_next(app: Flask) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    for target in ("//evil.example", "https://evil.example/", "/\\evil.example"):
        response = grace.post("/orgs/switch", data={"organization": "acme", "next": target})
        assert response.status_code == 303
        assert response.headers["Location"] == "/invoices"


def test_switching_to_an_organization_you_are_not_in_is_404_and_changes_nothing(
    app: Flask, db: Session
) -> None:
    linus = fresh(signed_in_client(app, "linus@acme.test"))
    linus_id = user(db, "linus@acme.test").id
    active_org = select(UserSession.active_organization_id).where(UserSession.user_id == linus_id)
    active_before = db.scalar(active_org)

    response = linus.post("/orgs/switch", data={"organization": "globex"})
    missing = linus.post("/orgs/switch", data={"organization": "no-such-org"})
    assert response.status_code == missing.status_code == 404
    assert response.get_data() == missing.get_data()  # "not yours" looks like "not there"
    assert "Globex" not in response.get_data(as_text=True)

    db.expire_all()
    assert db.scalar(active_org) == active_before
    assert set(listed_ids(linus.get("/invoices"))) == live_ids(db, "acme")


@pytest.mark.parametrize(
    "slug", ["", "x" * 5000, "GLOBEX", "globex\x00", "' OR 1=1 --", "ünïcödé", "acme/../globex"]
)
def test_switching_to_a_malformed_slug_is_404(app: Flask, slug: str) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    assert grace.post("/orgs/switch", data={"organization": slug}).status_code == 404


# --- Odd ids: 404, never 500 ------------------------------------------------------------

ODD_IDS = [
    pytest.param("inv_' OR 1=1", id="sql-injection"),
    pytest.param("inv_7' --", id="sql-comment"),
    pytest.param("\x00", id="nul"),
    pytest.param("inv_7\x00", id="trailing-nul"),
    pytest.param("inv_7\n", id="trailing-newline"),
    pytest.param("inv_" + "a" * 5000, id="5000-chars"),
    pytest.param("inv_" + "a" * 33, id="33-chars"),
    pytest.param("ünïcödé", id="unicode"),
    pytest.param("inv_ünï", id="unicode-after-prefix"),
    pytest.param("INV_7", id="upper-case"),
    pytest.param("inv_%", id="like-wildcard"),
    pytest.param("inv_*", id="glob"),
    pytest.param("inv_7.json", id="suffix"),
    pytest.param("1", id="row-id-1"),
    pytest.param("123", id="row-id-123"),
    pytest.param("inv_42", id="other-organization"),
    pytest.param("inv_999999", id="never-existed"),
]
REQUESTS = [
    ("GET", "/invoices/{}"),
    ("GET", "/invoices/{}/edit"),
    ("POST", "/invoices/{}/edit"),
    ("POST", "/invoices/{}/delete"),
]


@pytest.fixture()
def canonical_404(ada: FlaskClient) -> bytes:
    response = ada.get("/invoices/inv_999999")
    assert response.status_code == 404
    return response.get_data()


@pytest.mark.parametrize("odd_id", ODD_IDS)
def test_odd_invoice_id_is_404_never_500(
    ada: FlaskClient, db: Session, canonical_404: bytes, odd_id: str
) -> None:
    for method, template in REQUESTS:
        path = template.format(quote(odd_id, safe=""))
        response = ada.open(path, method=method, data={"customer": "Hijack", "amount": "1"})
        assert response.status_code == 404, (method, template)
        assert response.get_data() == canonical_404, (method, template)
    assert invoice(db, "inv_7").deleted_at is None
    assert invoice(db, "inv_42").deleted_at is None


def test_raw_row_id_of_a_real_invoice_is_404(
    ada: FlaskClient, db: Session, canonical_404: bytes
) -> None:
    row_id = invoice(db, "inv_7").id
    for path in (f"/invoices/{row_id}", f"/invoices/{row_id}/edit"):
        response = ada.get(path)
        assert response.status_code == 404
        assert response.get_data() == canonical_404
    assert ada.post(f"/invoices/{row_id}/delete").status_code == 404
    assert invoice(db, "inv_7").deleted_at is None


def test_deleted_invoice_answers_404_everywhere(
    ada: FlaskClient, db: Session, canonical_404: bytes
) -> None:
    assert ada.post("/invoices/inv_7/delete").status_code == 303
    ada.get("/invoices")  # shows (and uses up) the "deleted" flash
    deleted = invoice(db, "inv_7")
    deleted_at, customer = deleted.deleted_at, deleted.customer
    assert deleted_at is not None

    for method, path in [
        ("GET", "/invoices/inv_7"),
        ("GET", "/invoices/inv_7/edit"),
        ("POST", "/invoices/inv_7/edit"),
        ("GET", "/invoices/inv_7/delete"),
        ("POST", "/invoices/inv_7/delete"),
    ]:
        response = ada.open(path, method=method, data={"customer": "Revived", "amount": "1",
                                                       "currency": "EUR", "status": "draft",
                                                       "issue_date": "2024-01-01",
                                                       "due_date": "2024-01-02"})  # fmt: skip
        assert response.status_code == 404, (method, path)
        assert response.get_data() == canonical_404, (method, path)

    after = invoice(db, "inv_7")
    assert (after.deleted_at, after.customer) == (
        deleted_at,
        customer,
    )  # not revived, not re-deleted
    assert not mentions(ada.get("/invoices").get_data(as_text=True), "inv_7")
    assert not mentions(ada.get("/invoices/export.csv").get_data(as_text=True), "inv_7")


# --- CSV export -------------------------------------------------------------------------


def csv_rows(response: TestResponse) -> list[list[str]]:
    # utf-8-sig: the export starts with a byte-order mark for spreadsheets.
    return list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig"))))


def test_pro_plan_owner_exports_csv(ada: FlaskClient, db: Session) -> None:
    response = ada.get("/invoices/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="acme-invoices.csv"'
    header, *rows = csv_rows(response)
    assert header == ["id", "number", "customer", "amount", "currency", "status", "issued", "due"]
    by_id = {row[0]: row for row in rows}
    assert set(by_id) == live_ids(db, "acme")
    assert by_id["inv_7"][1:6] == ["5", "Wayne Enterprises", "48000.00", "USD", "sent"]
    assert "Zürich Ärzte AG" in {row[2] for row in rows}
    assert not mentions(response.get_data(as_text=True), "inv_42")


def test_pro_plan_member_exports_csv_too(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    response = linus.get("/invoices/export.csv")
    assert response.status_code == 200
    assert "inv_7" in response.get_data(as_text=True)


def test_free_plan_owner_export_gets_403_naming_the_pro_plan(app: Flask) -> None:
    hank = signed_in_client(app, "hank@globex.test")
    assert "Export CSV" not in hank.get("/invoices").get_data(as_text=True)
    response = hank.get("/invoices/export.csv")
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "invoice.export" in body
    assert "pro plan" in body
    assert not mentions(body, "inv_42") and "Springfield" not in body


def test_export_follows_the_active_organizations_plan(app: Flask) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    assert grace.get("/invoices/export.csv").status_code == 200
    grace.post("/orgs/switch", data={"organization": "globex"})
    assert grace.get("/invoices/export.csv").status_code == 403


def test_anonymous_export_redirects_to_sign_in(client: FlaskClient) -> None:
    response = client.get("/invoices/export.csv")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in?next=/invoices/export.csv"


@pytest.mark.parametrize(
    "customer",
    [
        pytest.param('=HYPERLINK("http://evil.example","Click")', id="equals"),
        pytest.param("=cmd|' /C calc'!A0", id="dde"),
        pytest.param("+1+1", id="plus"),
        pytest.param("-2+3", id="minus"),
        pytest.param("@SUM(A1:A9)", id="at"),
        pytest.param("\u200b=1+1", id="zero-width-space-first"),
        pytest.param("\ufeff+1", id="byte-order-mark-first"),
    ],
)
def test_formula_customer_is_neutralised_in_csv(
    ada: FlaskClient, db: Session, customer: str
) -> None:
    response = ada.post("/invoices/new", data={
        "customer": customer, "amount": "10.00", "currency": "EUR", "status": "draft",
        "issue_date": "2024-01-01", "due_date": "2024-01-31",
    })  # fmt: skip
    assert response.status_code == 303
    public_id = response.headers["Location"].rsplit("/", 1)[1]
    assert invoice(db, public_id).customer == customer  # stored as typed; only the export changes
    row = next(row for row in csv_rows(ada.get("/invoices/export.csv")) if row[0] == public_id)
    assert row[2] == "'" + customer
    assert row[2][0] not in "=+-@"


# --- The 500 page -----------------------------------------------------------------------

SECRET = "postgres://admin:hunter2@db.internal/prod"


@pytest.fixture()
def exploding_app(database_file: Path) -> Iterator[Flask]:
    app = make_test_app(database_file, PROPAGATE_EXCEPTIONS=False)
    app.testing = False  # as in production: errors become pages, not test failures

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError(f"could not connect to {SECRET}")

    yield app
    app.extensions["db_engine"].dispose()


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_500_page_leaks_nothing(
    exploding_app: Flask, caplog: pytest.LogCaptureFixture, signed_in: bool
) -> None:
    client = exploding_app.test_client()
    if signed_in:
        sign_in(client, "ada@acme.test")
    with caplog.at_level(logging.ERROR):
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "Something went wrong" in body
    for leak in (
        SECRET,
        "hunter2",
        "Traceback",
        "RuntimeError",
        "could not connect",
        'File "',
        ".py",
    ):
        assert leak not in body, leak
    # The detail goes to the log, for the people who run the app.
    assert SECRET in caplog.text


def test_user_without_organizations_is_sent_to_a_dashboard_that_says_why(
    app: Flask, db: Session
) -> None:
    from invoiceapp.models import User

    with app.app_context():
        from invoiceapp.authn.passwords import hash_password

        password_hash = hash_password("a-long-enough-password")
    db.add(
        User(email="loner@example.test", display_name="Lone Ranger", password_hash=password_hash)
    )
    db.commit()
    client = app.test_client()
    sign_in(client, "loner@example.test", "a-long-enough-password")
    for path in ("/invoices", "/invoices/new", "/invoices/export.csv"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["Location"] == "/dashboard"
    assert "not a member of any organization" in client.get("/dashboard").get_data(as_text=True)
    assert client.get("/invoices/inv_7").status_code == 404


def test_database_failure_gives_the_plain_500_page_to_a_signed_in_user(database_file: Path) -> None:
    app = make_test_app(database_file, PROPAGATE_EXCEPTIONS=False)
    client = app.test_client()
    sign_in(client, "ada@acme.test")
    engine = app.extensions["db_engine"]
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE sessions RENAME TO sessions_gone")
    for path in ("/dashboard", "/invoices/inv_7"):
        response = client.get(path)
        assert response.status_code == 500, path
        body = response.get_data(as_text=True)
        assert "Something went wrong" in body
        assert "sessions" not in body and "Traceback" not in body
    # A page that needs no principal still gets its own answer, in the plain layout.
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert "Not found" in missing.get_data(as_text=True)
    engine.dispose()
