"""Sharing one customer's invoices with a person outside the organization (issue 17 item 2).

Ada (owner of Acme) shares the invoices of Acme's customer "Maple Leaf Logistics" with Hank,
who belongs to Globex, not to Acme. He accepts by the mailed link and then reads those
invoices, and nothing else of Acme: every other page is the 404 a stranger gets.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp.db import get_db, utcnow
from invoiceapp.models import AuditEvent, Invoice, Organization, Share
from invoiceapp.shares import share_token_hash
from support import latest_mail_to, make_token, signed_in_client

CUSTOMER = "Maple Leaf Logistics"  # one sent Acme invoice
GUEST = "hank@globex.test"


def acme_invoices(db: Session, customer: str | None = None) -> list[Invoice]:
    db.expire_all()
    acme = db.scalar(select(Organization.id).where(Organization.slug == "acme"))
    query = select(Invoice).where(Invoice.organization_id == acme, Invoice.deleted_at.is_(None))
    if customer is not None:
        query = query.where(Invoice.customer == customer)
    return list(db.scalars(query))


def share(
    owner: FlaskClient,
    outbox: Path,
    *,
    email: str = GUEST,
    customer: str = CUSTOMER,
    access: str = "read",
    days: str = "30",
) -> str:
    """Share through the form; returns the mailed link's path."""
    response = owner.post(
        "/orgs/acme/shares",
        data={"email": email, "customer": customer, "access": access, "expires_days": days},
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    mail = latest_mail_to(outbox, email)
    assert mail is not None
    link = next(link for link in mail.links if "/shares/" in link)
    return urlsplit(link).path


def accepted_guest(app: Flask, outbox: Path, access: str = "read") -> FlaskClient:
    path = share(signed_in_client(app, "ada@acme.test"), outbox, access=access)
    guest = signed_in_client(app, GUEST)
    assert guest.post(path).status_code == 303
    return guest


def actions(db: Session, action: str) -> list[AuditEvent]:
    db.expire_all()
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_an_owner_shares_and_the_mail_holds_a_link_stored_only_hashed(
    app: Flask, db: Session, outbox: Path
) -> None:
    path = share(signed_in_client(app, "ada@acme.test"), outbox)
    token = path.removeprefix("/shares/")
    stored = db.scalar(select(Share))
    assert stored is not None
    assert stored.token_hash == share_token_hash(token) and token not in stored.token_hash
    assert (stored.email, stored.customer, stored.access) == (GUEST, CUSTOMER, "read")
    assert stored.accepted_at is None and stored.guest_id is None
    assert [e.decision for e in actions(db, "invoice.share")] == ["allowed"]


def test_opening_the_mailed_link_changes_nothing_until_the_button(
    app: Flask, db: Session, outbox: Path
) -> None:
    path = share(signed_in_client(app, "ada@acme.test"), outbox)
    anonymous = app.test_client().get(path)
    assert anonymous.status_code == 302 and "/sign-in" in anonymous.headers["Location"]
    guest = signed_in_client(app, GUEST)
    page = guest.get(path)
    assert page.status_code == 200 and "Accept the share" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    db.expire_all()
    assert db.scalar(select(Share.accepted_at)) is None
    assert guest.post(path).status_code == 303
    db.expire_all()
    assert db.scalar(select(Share.accepted_at)) is not None
    assert [e.decision for e in actions(db, "invoice.share.accept")] == ["allowed"]
    assert guest.post(path).status_code == 404  # single use


def test_the_link_is_refused_for_another_address_and_the_refusal_is_audited(
    app: Flask, db: Session, outbox: Path
) -> None:
    path = share(signed_in_client(app, "ada@acme.test"), outbox)
    marge = signed_in_client(app, "marge@globex.test")
    refused = marge.post(path)
    assert refused.status_code == 403
    assert "different email address" in refused.get_data(as_text=True)
    db.expire_all()
    assert db.scalar(select(Share.guest_id)) is None
    assert [e.status for e in actions(db, "invoice.share.accept")] == [403]


def test_an_unverified_address_cannot_accept(app: Flask, db: Session, outbox: Path) -> None:
    # Globex's owner shares with Eve, whose address was never verified.
    hank = signed_in_client(app, "hank@globex.test")
    response = hank.post(
        "/orgs/globex/shares",
        data={"email": "eve@acme.test", "customer": "Kwik-E-Mart", "access": "read",
              "expires_days": "7"},
    )  # fmt: skip
    assert response.status_code == 303
    mail = latest_mail_to(outbox, "eve@acme.test")
    assert mail is not None
    path = urlsplit(next(link for link in mail.links if "/shares/" in link)).path
    eve = signed_in_client(app, "eve@acme.test")
    refused = eve.post(path)
    assert refused.status_code == 403
    assert "Verify your email address first" in refused.get_data(as_text=True)
    db.expire_all()
    assert db.scalar(select(Share.accepted_at)) is None


def test_the_guest_reads_the_shared_invoices_and_nothing_else(
    app: Flask, db: Session, outbox: Path
) -> None:
    guest = accepted_guest(app, outbox)
    shared = acme_invoices(db, CUSTOMER)
    others = [i for i in acme_invoices(db) if i.customer != CUSTOMER]
    assert shared and others
    for invoice in shared:
        page = guest.get(f"/invoices/{invoice.public_id}")
        assert page.status_code == 200
        assert "by Ada Lovelace: read only" in page.get_data(as_text=True)
    missing = guest.get("/invoices/inv_doesnotexist0000")
    for invoice in others:
        hidden = guest.get(f"/invoices/{invoice.public_id}")
        assert hidden.status_code == 404
        assert hidden.get_data() == missing.get_data()  # byte-identical to a missing id
    acme_pages = (
        "/invoices?organization=acme",
        "/invoices/export.csv?organization=acme",
        "/orgs/acme",
        "/orgs/acme/members",
        "/orgs/acme/audit",
        "/orgs/acme/shares",
    )
    for path in acme_pages:
        assert guest.get(path).status_code == 404, path
    # His own organization is untouched: he is still Globex's owner there.
    assert guest.get("/orgs/globex/audit").status_code == 200


def test_an_action_beyond_the_share_is_a_403_naming_the_share(
    app: Flask, db: Session, outbox: Path
) -> None:
    guest = accepted_guest(app, outbox, access="read")
    invoice = acme_invoices(db, CUSTOMER)[0]
    assert invoice.status == "sent"
    refused = guest.post(f"/invoices/{invoice.public_id}/mark-paid")
    assert refused.status_code == 403
    body = refused.get_data(as_text=True)
    assert "Your share from Ada Lovelace allows reading only" in body
    for verb in ("void", "send", "duplicate"):
        assert guest.post(f"/invoices/{invoice.public_id}/{verb}").status_code == 403
    refusals = actions(db, "invoice.mark_paid")  # in Acme's log, with the guest as actor
    assert [(e.decision, e.status, e.actor_email) for e in refusals] == [("denied", 403, GUEST)]
    assert guest.get(f"/invoices/{invoice.public_id}/edit").status_code == 403
    db.expire_all()
    assert db.get(Invoice, invoice.id).status == "sent"  # type: ignore[union-attr]


def test_a_read_and_mark_paid_share_marks_paid(app: Flask, db: Session, outbox: Path) -> None:
    guest = accepted_guest(app, outbox, access="read_mark_paid")
    invoice = acme_invoices(db, CUSTOMER)[0]
    page = guest.get(f"/invoices/{invoice.public_id}").get_data(as_text=True)
    assert "Mark paid" in page and "Void" not in page
    assert guest.post(f"/invoices/{invoice.public_id}/mark-paid").status_code == 303
    db.expire_all()
    assert db.get(Invoice, invoice.id).status == "paid"  # type: ignore[union-attr]
    assert guest.post(f"/invoices/{invoice.public_id}/void").status_code == 403


def test_a_revoked_share_stops_at_the_next_request(app: Flask, db: Session, outbox: Path) -> None:
    guest = accepted_guest(app, outbox)
    invoice = acme_invoices(db, CUSTOMER)[0]
    assert guest.get(f"/invoices/{invoice.public_id}").status_code == 200
    public_id = db.scalar(select(Share.public_id))
    ada = signed_in_client(app, "ada@acme.test")
    assert ada.post(f"/orgs/acme/shares/{public_id}/revoke").status_code == 303
    assert guest.get(f"/invoices/{invoice.public_id}").status_code == 404
    assert "Nothing is shared with you" in guest.get("/shared").get_data(as_text=True)
    assert [e.decision for e in actions(db, "invoice.share.revoke")] == ["allowed"]
    assert "revoked" in ada.get("/orgs/acme/shares").get_data(as_text=True)


def test_an_expired_share_stops_at_the_next_request(app: Flask, db: Session, outbox: Path) -> None:
    guest = accepted_guest(app, outbox)
    invoice = acme_invoices(db, CUSTOMER)[0]
    assert guest.get(f"/invoices/{invoice.public_id}").status_code == 200
    # Its end passes (moved rather than waited for: the session would time out first).
    db.execute(update(Share).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert guest.get(f"/invoices/{invoice.public_id}").status_code == 404
    assert "expired" in signed_in_client(app, "ada@acme.test").get("/orgs/acme/shares").get_data(
        as_text=True
    )


def test_the_guests_list_shows_only_what_was_shared(app: Flask, db: Session, outbox: Path) -> None:
    guest = accepted_guest(app, outbox)
    body = guest.get("/shared").get_data(as_text=True)
    for invoice in acme_invoices(db):
        assert (invoice.public_id in body) == (invoice.customer == CUSTOMER)
    assert "Shared with me" in body  # the header links to it


def test_a_member_of_the_organization_gains_nothing_from_a_share(
    app: Flask, db: Session, outbox: Path
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    response = ada.post(
        "/orgs/acme/shares",
        data={"email": "linus@acme.test", "customer": CUSTOMER, "access": "read_mark_paid",
              "expires_days": "30"},
    )  # fmt: skip
    assert response.status_code == 409
    assert "belongs to a member" in response.get_data(as_text=True)
    assert db.scalar(select(Share)) is None


def test_only_owners_and_admins_share(app: Flask, db: Session, outbox: Path) -> None:
    grace = signed_in_client(app, "grace@acme.test")  # admin of Acme
    assert grace.get("/orgs/acme/shares").status_code == 200
    share(grace, outbox)
    linus = signed_in_client(app, "linus@acme.test")  # member
    assert linus.get("/orgs/acme/shares").status_code == 403
    data = {"email": GUEST, "customer": CUSTOMER, "access": "read", "expires_days": "30"}
    assert linus.post("/orgs/acme/shares", data=data).status_code == 403
    public_id = db.scalar(select(Share.public_id))
    assert linus.post(f"/orgs/acme/shares/{public_id}/revoke").status_code == 403
    hank = signed_in_client(app, "hank@globex.test")  # not in Acme at all
    assert hank.get("/orgs/acme/shares").status_code == 404


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not-an-address", ""),
        ("customer", "Nobody Ltd", "Choose one of this organization"),
        ("customer", "Springfield Power Plant", "Choose one of this organization"),  # Globex's
        ("access", "admin", "Not a valid choice"),
        ("expires_days", "0", "from 1 to 365 days"),
        ("expires_days", "400", "from 1 to 365 days"),
        ("expires_days", "soon", ""),
    ],
)
def test_a_bad_share_form_says_what_is_wrong(
    app: Flask, db: Session, field: str, value: str, message: str
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    data = {"email": GUEST, "customer": CUSTOMER, "access": "read", "expires_days": "30"}
    response = ada.post("/orgs/acme/shares", data={**data, field: value})
    assert response.status_code == 422
    assert 'class="field-error"' in response.get_data(as_text=True)
    assert message in response.get_data(as_text=True)
    assert db.scalar(select(Share)) is None


def test_the_sharing_page_has_an_empty_state(app: Flask) -> None:
    page = signed_in_client(app, "ada@acme.test").get("/orgs/acme/shares")
    assert page.status_code == 200 and 'data-testid="no-shares"' in page.get_data(as_text=True)
    nothing = signed_in_client(app, GUEST).get("/shared").get_data(as_text=True)
    assert 'data-testid="nothing-shared"' in nothing


def test_the_api_carries_no_shares_by_cookie_or_token(
    app: Flask, db: Session, outbox: Path
) -> None:
    guest = accepted_guest(app, outbox)
    invoice = acme_invoices(db, CUSTOMER)[0]
    assert guest.get(f"/api/v1/invoices/{invoice.public_id}").status_code == 404
    raw = make_token(app, GUEST, "globex", "read")
    response = app.test_client().get(
        f"/api/v1/invoices/{invoice.public_id}", headers={"Authorization": f"Bearer {raw}"}
    )
    assert response.status_code == 404


def test_the_trace_and_why_name_the_share(app: Flask, db: Session, outbox: Path) -> None:
    guest = accepted_guest(app, outbox)
    invoice = acme_invoices(db, CUSTOMER)[0]
    refused = guest.post(f"/invoices/{invoice.public_id}/void").get_data(as_text=True)
    assert "Your share from Ada Lovelace allows reading only" in refused  # the rule's answer
    assert re.search(r"from Ada Lovelace, read, expires \d{4}-\d\d-\d\d", refused)  # Why?
    assert "Ask whoever shared these invoices with you" in refused  # what would change it


def test_share_expiry_defaults_are_kept(app: Flask, db: Session, outbox: Path) -> None:
    share(signed_in_client(app, "ada@acme.test"), outbox, days="7")
    stored = db.scalar(select(Share))
    assert stored is not None
    assert stored.expires_at - stored.created_at == timedelta(days=7)


def test_the_demo_trace_shows_the_share(database_file: Path, outbox: Path) -> None:
    app = make_test_app(database_file, DEMO_MODE=True)
    guest = accepted_guest(app, outbox)
    with app.app_context():
        public_id = get_db().scalar(select(Invoice.public_id).where(Invoice.customer == CUSTOMER))
    page = guest.get(f"/invoices/{public_id}").get_data(as_text=True)
    assert "Allowed by a share from Ada Lovelace, expires" in page  # invoice.read's row
    assert "Your share from Ada Lovelace allows reading only" in page  # the other rows
    app.extensions["db_engine"].dispose()


def test_sharing_again_replaces_the_earlier_share(app: Flask, db: Session, outbox: Path) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    first = share(ada, outbox, access="read")
    second = share(ada, outbox, access="read_mark_paid")
    guest = signed_in_client(app, GUEST)
    assert guest.post(first).status_code == 404  # the earlier link no longer works
    assert guest.post(second).status_code == 303
    db.expire_all()
    states = sorted((s.access, s.revoked_at is None) for s in db.scalars(select(Share)))
    assert states == [("read", False), ("read_mark_paid", True)]
    reasons = [e.reason for e in actions(db, "invoice.share")]
    assert reasons[-1].endswith("; it replaces the earlier share")


def test_the_guests_list_is_grouped_and_paginated(database_file: Path, outbox: Path) -> None:
    app = make_test_app(database_file, INVOICES_PER_PAGE=1)
    ada = signed_in_client(app, "ada@acme.test")
    paths = [share(ada, outbox, customer=c) for c in (CUSTOMER, "Northwind Traders")]
    hank = signed_in_client(app, GUEST)
    for path in paths:
        assert hank.post(path).status_code == 303
    first = hank.get("/shared").get_data(as_text=True)
    second = hank.get("/shared?page=2").get_data(as_text=True)
    assert "Page 1 of 2 · 2 invoices" in first and "Page 2 of 2" in second
    # Each page heads its invoices with their organization and customer.
    assert "Acme" in first and "Maple Leaf Logistics</bdi></h2>" in first
    assert "Northwind Traders</bdi></h2>" in second
    app.extensions["db_engine"].dispose()
