"""Status changes and copies: send, mark paid, void, duplicate. Each is its own POST.

The status is an input to the policy (a member edits only drafts; nobody edits a paid
invoice), so it is never a form field. Every route runs the lesson's gates in order:
401 for nobody, 404 for another organization's invoice (the same bytes as a missing
one), 403 when the policy says no (naming the action and what was missing), then the
work, the audit record, and a 303.

Every test runs on SQLite and, when INVOICEAPP_TEST_POSTGRES_URL is set, on PostgreSQL
(a schema built by the real migration, emptied and seeded before each test).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from conftest import Clock
from invoiceapp.db import get_db
from invoiceapp.invoicing import change_status, soft_delete
from invoiceapp.models import AuditEvent, AuditRepeat, Invoice, Organization
from seed import demo_invoice_id
from support import (
    NEW_INVOICE_LOCATION,
    VALID_INVOICE_FORM,
    count_invoices,
    csrf_token_from,
    flashes,
    invoice,
    signed_in_client,
    signed_in_through_the_form,
    user,
)

POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")

ADA, GRACE, LINUS, EVE = "ada@acme.test", "grace@acme.test", "linus@acme.test", "eve@acme.test"
HANK = "hank@globex.test"

# route suffix -> the policy action it asks about
ROUTES = {
    "send": "invoice.send",
    "mark-paid": "invoice.mark_paid",
    "void": "invoice.void",
    "duplicate": "invoice.duplicate",
}
SEND_WARNING = "After sending, only an owner or admin can edit it."


# --- Fixtures: SQLite, and the same tests on PostgreSQL ---------------------------------


@pytest.fixture()
def app(app_on_each_engine: Flask) -> Flask:
    """These tests run on SQLite and again on PostgreSQL (conftest.py)."""
    return app_on_each_engine


def client_for(app: Flask, email: str) -> FlaskClient:
    client = signed_in_client(app, email)
    client.get("/dashboard")  # uses up the "signed in" flash, so error pages compare equal
    return client


def audit_rows(db: Session, **where: Any) -> list[AuditEvent]:
    db.expire_all()
    query = select(AuditEvent).order_by(AuditEvent.id)
    for column, value in where.items():
        query = query.where(getattr(AuditEvent, column) == value)
    return list(db.scalars(query))


def org_id(db: Session, slug: str) -> int:
    found = db.scalar(select(Organization.id).where(Organization.slug == slug))
    assert found is not None
    return found


def snapshot(db: Session, public_id: str) -> tuple[Any, ...]:
    row = invoice(db, public_id)
    return (row.customer, row.amount_minor, row.status, row.updated_at, row.deleted_at)


def show(client: FlaskClient, public_id: str) -> str:
    page = client.get(f"/invoices/{public_id}")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def button(public_id: str, route: str) -> str:
    return f'action="/invoices/{public_id}/{route}"'


# --- Allowed: the work, the audit record, the 303 ---------------------------------------


def test_admin_sends_a_draft_and_it_is_recorded(app: Flask, db: Session) -> None:
    fjord = demo_invoice_id(db, "acme", 7)  # Grace's draft
    grace = client_for(app, GRACE)
    assert button(fjord, "send") in show(grace, fjord)
    assert SEND_WARNING not in show(grace, fjord)  # an admin may edit it after sending too

    response = grace.post(f"/invoices/{fjord}/send")

    assert response.status_code == 303
    assert response.headers["Location"] == f"/invoices/{fjord}"
    assert invoice(db, fjord).status == "sent"
    assert flashes(grace) == ["Invoice #0007 was sent."]  # the number, never the customer
    [row] = audit_rows(db, action="invoice.send")
    assert (row.decision, row.status, row.resource_id) == ("allowed", 303, fjord)
    assert (row.actor_email, row.organization_id) == (GRACE, org_id(db, "acme"))
    assert "admin" in row.reason
    page = show(grace, fjord)
    assert button(fjord, "send") not in page  # sent once; the policy no longer offers it
    assert button(fjord, "mark-paid") in page


def test_member_is_warned_before_sending_own_draft_then_cannot_edit_it(
    app: Flask, db: Session
) -> None:
    draft = demo_invoice_id(db, "acme", 8)  # Linus's own draft
    linus = client_for(app, LINUS)
    page = show(linus, draft)
    assert f'href="/invoices/{draft}/edit"' in page
    assert SEND_WARNING in page
    # The warning comes before the button it warns about, and the button points at it.
    assert page.index(SEND_WARNING) < page.index(button(draft, "send"))
    assert 'aria-describedby="send-warning"' in page

    assert linus.post(f"/invoices/{draft}/send").status_code == 303

    assert invoice(db, draft).status == "sent"
    page = show(linus, draft)
    assert f'href="/invoices/{draft}/edit"' not in page
    assert SEND_WARNING not in page
    refused = linus.post(f"/invoices/{draft}/edit", data=VALID_INVOICE_FORM)
    assert refused.status_code == 403
    assert "may only edit drafts" in refused.get_data(as_text=True)
    # An owner may still edit it: the warning told the truth.
    assert client_for(app, ADA).get(f"/invoices/{draft}/edit").status_code == 200


def test_admin_marks_a_sent_invoice_paid_and_then_nobody_can_edit_it(
    app: Flask, db: Session
) -> None:
    grace = client_for(app, GRACE)
    assert button("inv_7", "mark-paid") in show(grace, "inv_7")

    response = grace.post("/invoices/inv_7/mark-paid")

    assert response.status_code == 303
    assert response.headers["Location"] == "/invoices/inv_7"
    assert invoice(db, "inv_7").status == "paid"
    assert flashes(grace) == ["Invoice #0005 was marked paid."]
    [row] = audit_rows(db, action="invoice.mark_paid")
    assert (row.resource_id, row.actor_email, row.decision) == ("inv_7", GRACE, "allowed")

    for email in (ADA, GRACE):
        client = client_for(app, email)
        page = show(client, "inv_7")
        assert 'href="/invoices/inv_7/edit"' not in page
        assert button("inv_7", "void") in page  # a paid invoice can still be voided
        before = snapshot(db, "inv_7")
        for response in (
            client.get("/invoices/inv_7/edit"),
            client.post("/invoices/inv_7/edit", data=VALID_INVOICE_FORM),
        ):
            assert response.status_code == 403
            body = response.get_data(as_text=True)
            assert "A paid invoice cannot be edited" in body  # the 403 names the state
            assert "invoice.update" in body
            assert "Wayne Enterprises" not in body
        assert snapshot(db, "inv_7") == before


def test_owner_voids_an_invoice_and_nothing_but_a_copy_remains(app: Flask, db: Session) -> None:
    ada = client_for(app, ADA)
    response = ada.post("/invoices/inv_7/void")
    assert response.status_code == 303
    assert invoice(db, "inv_7").status == "void"
    assert flashes(ada) == ["Invoice #0005 was voided."]
    page = show(ada, "inv_7")
    for route in ("send", "mark-paid", "void"):
        assert button("inv_7", route) not in page
    assert 'href="/invoices/inv_7/edit"' not in page
    assert "Delete this invoice" not in page  # a void invoice stays as the record
    edit = ada.post("/invoices/inv_7/edit", data=VALID_INVOICE_FORM)
    assert edit.status_code == 403
    assert "A void invoice cannot be edited" in edit.get_data(as_text=True)


PAID_REFUSAL = (
    "The invoice state rule: a paid invoice cannot be deleted. "
    "Void it instead: a voided invoice stays on the books, marked void."
)
VOID_REFUSAL = (
    "The invoice state rule: a void invoice cannot be deleted. "
    "It stays on the books as the record of what was voided."
)


@pytest.mark.parametrize("email", [ADA, GRACE], ids=["owner", "admin"])
def test_a_paid_invoice_is_voided_not_deleted(app: Flask, db: Session, email: str) -> None:
    paid = demo_invoice_id(db, "acme", 1)  # Initech, paid
    client = client_for(app, email)
    page = show(client, paid)
    assert f'href="/invoices/{paid}/delete"' not in page  # the button the policy hides
    assert button(paid, "void") in page  # and the one it offers instead

    # Even asked directly, the server says no, names the rule and the way out.
    for response in (
        client.get(f"/invoices/{paid}/delete"),
        client.post(f"/invoices/{paid}/delete"),
    ):
        assert response.status_code == 403
        body = response.get_data(as_text=True)
        assert "invoice.delete" in body and PAID_REFUSAL in body
        assert "Initech" not in body  # never the invoice's data
    assert invoice(db, paid).deleted_at is None
    refusals = audit_rows(db, action="invoice.delete")
    # Both refusals are kept: one record in full, the second counted beside it.
    assert [(r.decision, r.status, r.reason) for r in refusals] == [("denied", 403, PAID_REFUSAL)]
    repeat = db.scalar(select(AuditRepeat).where(AuditRepeat.event_id == refusals[0].id))
    assert repeat is not None and repeat.refusals == 2

    # Voiding is the way: it stays in the list, marked void, and still cannot be deleted.
    assert client.post(f"/invoices/{paid}/void").status_code == 303
    refused = client.post(f"/invoices/{paid}/delete")
    assert refused.status_code == 403
    assert VOID_REFUSAL in refused.get_data(as_text=True)
    voided = invoice(db, paid)
    assert (voided.status, voided.deleted_at) == ("void", None)
    assert paid in client.get("/invoices?status=void").get_data(as_text=True)


def test_drafts_and_sent_invoices_are_still_deleted_by_an_admin(app: Flask, db: Session) -> None:
    grace = client_for(app, GRACE)
    draft = demo_invoice_id(db, "acme", 7)
    for public_id in (draft, "inv_7"):  # a draft, and a sent one
        assert f'href="/invoices/{public_id}/delete"' in show(grace, public_id)
        assert grace.post(f"/invoices/{public_id}/delete").status_code == 303
        assert invoice(db, public_id).deleted_at is not None


def test_a_delete_that_lost_the_race_to_mark_paid_deletes_nothing(app: Flask, db: Session) -> None:
    """The policy said yes to a sent invoice; it was paid before the delete was written."""
    with app.app_context():
        request_db = get_db()
        seen = request_db.scalar(select(Invoice).where(Invoice.public_id == "inv_7"))
        assert seen is not None and seen.status == "sent"  # deletable, as far as it knows
        db.execute(update(Invoice).where(Invoice.public_id == "inv_7").values(status="paid"))
        db.commit()
        assert soft_delete(request_db, seen) is False
        request_db.rollback()
    after = invoice(db, "inv_7")
    assert (after.status, after.deleted_at) == ("paid", None)


@pytest.mark.parametrize(
    ("route", "public_id", "message"),
    [
        ("send", "inv_7", "A sent invoice cannot be sent"),
        ("mark-paid", ("acme", 7), "A draft invoice cannot be marked paid"),
        ("mark-paid", ("acme", 1), "A paid invoice cannot be marked paid"),
        ("void", ("acme", 3), "A void invoice cannot be voided"),
    ],
    ids=["send-sent", "pay-draft", "pay-paid", "void-void"],
)
def test_a_transition_from_the_wrong_state_is_403_naming_the_state(
    app: Flask, db: Session, route: str, public_id: Any, message: str
) -> None:
    target = public_id if isinstance(public_id, str) else demo_invoice_id(db, *public_id)
    ada = client_for(app, ADA)
    assert button(target, route) not in show(ada, target)
    before = snapshot(db, target)
    response = ada.post(f"/invoices/{target}/{route}")
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert message in body
    assert ROUTES[route] in body
    assert snapshot(db, target) == before
    [row] = audit_rows(db, action=ROUTES[route])
    assert (row.decision, row.status, row.reason) == ("denied", 403, message)


# --- Refused: 403 naming the action, nothing changed, the refusal recorded --------------


@pytest.mark.parametrize("route", ["mark-paid", "void"])
def test_member_marks_paid_or_voids_gets_403(app: Flask, db: Session, route: str) -> None:
    linus = client_for(app, LINUS)
    assert button("inv_7", route) not in show(linus, "inv_7")  # hidden, and still refused
    before = snapshot(db, "inv_7")

    response = linus.post(f"/invoices/inv_7/{route}")

    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert ROUTES[route] in body
    assert "owner or admin" in body
    assert "Wayne Enterprises" not in body
    assert snapshot(db, "inv_7") == before
    [row] = audit_rows(db, action=ROUTES[route])
    assert (row.decision, row.status, row.actor_email, row.resource_id) == (
        "denied", 403, LINUS, "inv_7")  # fmt: skip


def test_member_marks_own_sent_invoice_paid_gets_403(app: Flask, db: Session) -> None:
    maple = demo_invoice_id(db, "acme", 6)  # Linus's own, sent: authorship is not a role
    response = client_for(app, LINUS).post(f"/invoices/{maple}/mark-paid")
    assert response.status_code == 403
    assert invoice(db, maple).status == "sent"


def test_member_sends_someone_elses_draft_gets_403(app: Flask, db: Session) -> None:
    eves = demo_invoice_id(db, "acme", 9)
    linus = client_for(app, LINUS)
    page = show(linus, eves)
    assert button(eves, "send") not in page
    assert SEND_WARNING not in page
    before = snapshot(db, eves)

    response = linus.post(f"/invoices/{eves}/send")

    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "invoice.send" in body
    assert "may only send invoices they created" in body
    assert "Kastrup" not in body
    assert snapshot(db, eves) == before


def test_globex_member_grace_cannot_send_hanks_draft(app: Flask, db: Session) -> None:
    # Admin in Acme, plain member in Globex: the role of the invoice's organization counts.
    grace = client_for(app, GRACE)
    assert grace.post("/orgs/switch", data={"organization": "globex"}).status_code == 303
    assert grace.post("/invoices/inv_42/send").status_code == 403
    assert invoice(db, "inv_42").status == "draft"


# --- Another organization's invoice: 404, the same bytes as a missing one ---------------


@pytest.mark.parametrize("route", ROUTES)
def test_other_org_invoice_is_404_like_a_missing_one(app: Flask, db: Session, route: str) -> None:
    ada = client_for(app, ADA)  # the owner of Acme is nobody in Globex
    before = snapshot(db, "inv_42")
    invoices_before = count_invoices(db)

    other_org = ada.post(f"/invoices/inv_42/{route}")
    missing = ada.post(f"/invoices/inv_999999/{route}")

    assert other_org.status_code == missing.status_code == 404
    assert other_org.get_data() == missing.get_data()
    assert "Cypress Creek" not in other_org.get_data(as_text=True)
    assert snapshot(db, "inv_42") == before
    assert count_invoices(db) == invoices_before
    # Recorded in the log of the organization the invoice belongs to; the caller learns nothing.
    [row] = audit_rows(db, resource_id="inv_42")
    assert (row.organization_id, row.actor_email, row.status) == (org_id(db, "globex"), ADA, 404)


# --- Nobody signed in: 401 before anything else ------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_anonymous_post_gets_401_and_changes_nothing(
    client: FlaskClient, db: Session, route: str
) -> None:
    before = snapshot(db, "inv_7")
    invoices_before = count_invoices(db)
    response = client.post(f"/invoices/inv_7/{route}")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Session ")
    assert snapshot(db, "inv_7") == before
    assert count_invoices(db) == invoices_before


# --- Duplicate: the organization's flag is a rule input ----------------------------------


def test_duplicate_with_the_flag_off_is_403_naming_the_flag(app: Flask, db: Session) -> None:
    ada = client_for(app, ADA)
    assert button("inv_7", "duplicate") not in show(ada, "inv_7")
    invoices_before = count_invoices(db)

    response = ada.post("/invoices/inv_7/duplicate")

    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "invoice.duplicate" in body
    assert "invoice duplication" in body  # the reason names the flag...
    assert "flag" in body
    assert count_invoices(db) == invoices_before  # ...and nothing was copied
    [row] = audit_rows(db, action="invoice.duplicate")
    assert (row.decision, row.status) == ("denied", 403)
    assert "flag" in row.reason


def switch_duplication_on(db: Session, slug: str) -> None:
    db.execute(
        update(Organization)
        .where(Organization.slug == slug)
        .values(invoice_duplication_enabled=True)
    )
    db.commit()


@pytest.mark.parametrize("email", [ADA, LINUS], ids=["owner", "member"])
def test_duplicate_with_the_flag_on_makes_a_new_draft_with_the_next_number(
    app: Flask, db: Session, clock: Clock, email: str
) -> None:
    clock.now = datetime(2031, 2, 3, 23, 30, tzinfo=UTC)
    switch_duplication_on(db, "acme")
    client = client_for(app, email)
    assert button("inv_7", "duplicate") in show(client, "inv_7")
    original = snapshot(db, "inv_7")
    terms = invoice(db, "inv_7").due_date - invoice(db, "inv_7").issue_date

    response = client.post("/invoices/inv_7/duplicate")

    assert response.status_code == 303
    match = NEW_INVOICE_LOCATION.fullmatch(response.headers["Location"])
    assert match, response.headers["Location"]
    copy = invoice(db, match.group(1))
    assert copy.public_id != "inv_7"
    assert copy.number == 10  # Acme's seed goes up to #0009
    assert copy.status == "draft"  # a copy of a sent invoice is a fresh draft
    assert copy.organization_id == org_id(db, "acme")
    assert copy.created_by_id == user(db, email).id
    assert (copy.customer, copy.amount_minor, copy.currency) == (
        "Wayne Enterprises", 4_800_000, "USD")  # fmt: skip
    assert copy.issue_date == date(2031, 2, 3)  # "today" is the app's clock, in UTC
    assert copy.due_date - copy.issue_date == terms
    assert copy.deleted_at is None and copy.creation_key is None
    assert snapshot(db, "inv_7") == original
    assert flashes(client) == ["Invoice #0005 was copied to a new draft, #0010."]
    [row] = audit_rows(db, action="invoice.duplicate")
    assert (row.decision, row.status, row.resource_id) == ("allowed", 303, "inv_7")
    assert copy.public_id in row.reason
    # The copy is the copier's own draft: even a member may edit it.
    assert client.get(f"/invoices/{copy.public_id}/edit").status_code == 200
    # And numbering goes on from there.
    second = client.post("/invoices/inv_7/duplicate")
    assert invoice(db, second.headers["Location"].rsplit("/", 1)[1]).number == 11


def test_the_flag_of_the_invoices_organization_counts_not_another(app: Flask, db: Session) -> None:
    switch_duplication_on(db, "globex")  # on in Globex, still off in Acme
    grace = client_for(app, GRACE)
    assert grace.post("/invoices/inv_7/duplicate").status_code == 403
    assert grace.post("/invoices/inv_42/duplicate").status_code == 303


# --- Delete is recorded too ---------------------------------------------------------------


def test_owner_delete_is_recorded_and_member_refusal_too(app: Flask, db: Session) -> None:
    assert client_for(app, LINUS).post("/invoices/inv_7/delete").status_code == 403
    assert client_for(app, ADA).post("/invoices/inv_7/delete").status_code == 303
    rows = audit_rows(db, action="invoice.delete")
    assert [(r.actor_email, r.decision, r.status, r.resource_id) for r in rows] == [
        (LINUS, "denied", 403, "inv_7"),
        (ADA, "allowed", 303, "inv_7"),
    ]
    assert {r.organization_id for r in rows} == {org_id(db, "acme")}


# --- Mass assignment: the form has no status, organization, author or number -------------

SMUGGLED = {
    "status": "paid",
    "organization_id": "2",
    "created_by_id": "5",
    "created_by": "5",
    "number": "999",
    "public_id": "inv_smuggled",
    "deleted_at": "2024-01-01",
    "creation_key": "x" * 20,
}


@pytest.mark.parametrize("email", [ADA, LINUS], ids=["owner", "member"])
def test_create_ignores_posted_status_organization_author_and_number(
    app: Flask, db: Session, email: str
) -> None:
    client = client_for(app, email)
    smuggled = {**SMUGGLED, "organization_id": str(org_id(db, "globex"))}
    smuggled["created_by_id"] = smuggled["created_by"] = str(user(db, HANK).id)
    response = client.post("/invoices/new", data={**VALID_INVOICE_FORM, **smuggled})
    assert response.status_code == 303
    match = NEW_INVOICE_LOCATION.fullmatch(response.headers["Location"])
    assert match
    new = invoice(db, match.group(1))
    assert new.status == "draft"  # a member cannot create an invoice "already paid"
    assert new.organization_id == org_id(db, "acme")
    assert new.created_by_id == user(db, email).id
    assert new.number == 10
    assert new.public_id != "inv_smuggled"
    assert new.deleted_at is None


def test_edit_ignores_posted_status_organization_author_and_number(app: Flask, db: Session) -> None:
    draft = demo_invoice_id(db, "acme", 8)  # Linus's draft: he may edit it, not pay it
    before = invoice(db, draft)
    number, organization, author = before.number, before.organization_id, before.created_by_id
    linus = client_for(app, LINUS)
    data = {**VALID_INVOICE_FORM, **SMUGGLED, "customer": "Renamed Roasters"}
    data["organization_id"] = str(org_id(db, "globex"))
    response = linus.post(f"/invoices/{draft}/edit", data=data)
    assert response.status_code == 303
    after = invoice(db, draft)
    assert after.customer == "Renamed Roasters"  # the real fields were saved, nothing else
    assert (after.status, after.number, after.organization_id, after.created_by_id) == (
        "draft", number, organization, author)  # fmt: skip
    assert after.public_id == draft and after.deleted_at is None


def test_the_forms_have_no_status_field(app: Flask, db: Session) -> None:
    ada = client_for(app, ADA)
    for path in ("/invoices/new", "/invoices/inv_7/edit"):
        page = ada.get(path).get_data(as_text=True)
        assert 'name="status"' not in page, path


# --- CSRF and races -----------------------------------------------------------------------


def test_buttons_post_with_csrf_and_a_post_without_a_token_is_400(
    app: Flask, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)  # on, as in production
    ada = signed_in_through_the_form(app, ADA)
    forged = ada.post("/invoices/inv_7/mark-paid")
    assert forged.status_code == 400
    assert invoice(db, "inv_7").status == "sent"

    page = ada.get("/invoices/inv_7").get_data(as_text=True)
    form_start = page.index(button("inv_7", "mark-paid"))
    token = csrf_token_from(page[form_start:])
    response = ada.post("/invoices/inv_7/mark-paid", data={"csrf_token": token})
    assert response.status_code == 303
    assert invoice(db, "inv_7").status == "paid"


def test_a_status_that_changed_meanwhile_is_not_overwritten(app: Flask, db: Session) -> None:
    """The policy said yes to the status this request read; the write checks it still holds."""
    with app.app_context():
        request_db = get_db()
        seen = request_db.scalar(select(Invoice).where(Invoice.public_id == "inv_7"))
        assert seen is not None and seen.status == "sent"  # what the policy would be asked about
        # Meanwhile, someone else voids it.
        db.execute(update(Invoice).where(Invoice.public_id == "inv_7").values(status="void"))
        db.commit()
        assert change_status(request_db, seen, "invoice.mark_paid") is False
        request_db.rollback()
    assert invoice(db, "inv_7").status == "void"


def test_a_new_invoice_form_is_dated_today_by_the_apps_clock(app: Flask, clock: Clock) -> None:
    clock.now = datetime(2031, 2, 3, 23, 30, tzinfo=UTC)
    page = client_for(app, ADA).get("/invoices/new?organization=acme")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'value="2031-02-03"' in html  # issued today
    assert 'value="2031-03-05"' in html  # due in 30 days
