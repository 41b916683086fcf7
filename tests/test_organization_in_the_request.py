"""The organization comes from the request, not from whatever tab switched last (issue 15).

The new-invoice form carries the organization it was rendered for in a hidden field, and
the list's links (filters, pages, export, "New invoice") carry ``?organization=<slug>``.
The server answers for the organization named, after checking it like any other input:
not one of yours, 404 (the same bytes as a slug that never existed); not allowed there,
403 naming the rule. Only a request that names none works in the active organization.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp.models import AuditEvent, Invoice, Membership, Organization, UserSession
from seed import demo_invoice_id
from support import (
    NEW_INVOICE_LOCATION,
    VALID_INVOICE_FORM,
    count_invoices,
    csrf_token_from,
    flashes,
    invoice,
    signed_in_client,
    user,
)
from support import sign_in as sign_in_with_form

GRACE, LINUS = "grace@acme.test", "linus@acme.test"  # Grace: Acme admin, Globex member
HIDDEN_FIELD = re.compile(r'<input type="hidden" name="organization" value="([^"]*)">')
CREATION_KEY = re.compile(r'name="creation_key" type="hidden" value="([^"]+)"')


def browser_for(app: Flask, email: str) -> FlaskClient:
    """A client that signs in through the real form, CSRF token and all."""
    client = app.test_client()
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    sign_in_with_form(client, email, csrf_token=token)
    client.get("/dashboard")  # uses up the "signed in" flash
    return client


def opened_form(client: FlaskClient, path: str = "/invoices/new") -> dict[str, str]:
    """What a browser tab holds after opening the new-invoice form: its hidden fields."""
    page = client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    key = CREATION_KEY.search(html)
    assert key, "no creation key in the form"
    fields = {"csrf_token": csrf_token_from(html), "creation_key": key.group(1)}
    named = HIDDEN_FIELD.findall(html)
    if named:
        [fields["organization"]] = named
    return fields


def switch(client: FlaskClient, slug: str, next_path: str | None = None) -> str:
    """The other tab: the header's switcher. Returns where the switch sends the browser."""
    page = client.get("/dashboard").get_data(as_text=True)
    data = {"organization": slug, "csrf_token": csrf_token_from(page)}
    if next_path is not None:
        data["next"] = next_path
    response = client.post("/orgs/switch", data=data)
    assert response.status_code == 303
    went = response.headers["Location"]
    assert client.get(went).status_code == 200  # lands there, and sees the "Now working" flash
    return went


def org_id(db: Session, slug: str) -> int:
    found = db.scalar(select(Organization.id).where(Organization.slug == slug))
    assert found is not None
    return found


def active_organization_of(db: Session, email: str) -> int | None:
    db.expire_all()
    sessions = db.scalars(select(UserSession).where(UserSession.user_id == user(db, email).id))
    return next(iter(sessions)).active_organization_id


# --- The new-invoice form ---------------------------------------------------------------


def test_a_form_opened_for_acme_creates_in_acme_after_another_tab_switched_to_globex(
    csrf_app: Flask, db: Session
) -> None:
    grace = browser_for(csrf_app, GRACE)
    tab_one = opened_form(grace)  # Acme is active: the form is Acme's
    assert tab_one["organization"] == "acme"
    switch(grace, "globex")  # the second tab
    assert active_organization_of(db, GRACE) == org_id(db, "globex")

    response = grace.post("/invoices/new", data={**VALID_INVOICE_FORM, **tab_one})

    assert response.status_code == 303
    match = NEW_INVOICE_LOCATION.fullmatch(response.headers["Location"])
    assert match
    made = invoice(db, match.group(1))
    assert made.organization_id == org_id(db, "acme")  # where the form said, not Globex
    assert made.number == 10  # Acme's next number (Globex's would be 9)
    assert flashes(grace) == [
        "Invoice #0010 was created.",
        "It was created in Acme Inc, the organization this form was opened for. "
        "Your active organization is still Globex Corporation.",
    ]
    # Nothing switched behind her back: the other tab's choice stands.
    assert active_organization_of(db, GRACE) == org_id(db, "globex")


def test_a_form_opened_for_the_active_organization_says_nothing_extra(
    csrf_app: Flask, db: Session
) -> None:
    grace = browser_for(csrf_app, GRACE)
    switch(grace, "globex")
    fields = opened_form(grace)
    assert fields["organization"] == "globex"
    response = grace.post("/invoices/new", data={**VALID_INVOICE_FORM, **fields})
    assert response.status_code == 303
    assert flashes(grace) == ["Invoice #0009 was created."]


def test_a_form_naming_another_organization_than_the_active_one_shows_which(
    csrf_app: Flask,
) -> None:
    grace = browser_for(csrf_app, GRACE)  # Acme active
    page = grace.get("/invoices/new?organization=globex").get_data(as_text=True)
    assert HIDDEN_FIELD.findall(page) == ["globex"]
    context = " ".join(re.sub(r"<[^>]+>", "", page.split('data-testid="context-line">')[1]).split())
    assert context.startswith("Globex Corporation · you are member here")
    assert "not your active organization, Acme Inc" in context


def test_a_form_naming_a_non_member_s_organization_is_404_like_one_that_never_existed(
    app: Flask, db: Session
) -> None:
    linus = browser_for(app, LINUS)  # Acme only
    before = count_invoices(db)
    fields = opened_form(linus)
    answers = {
        slug: linus.post(
            "/invoices/new", data={**VALID_INVOICE_FORM, **fields, "organization": slug}
        )
        for slug in ("globex", "no-such-org", "ACME'--", "")
    }
    assert {slug: r.status_code for slug, r in answers.items()} == dict.fromkeys(answers, 404)
    bodies = {r.get_data() for r in answers.values()}
    assert len(bodies) == 1  # byte for byte: a foreign organization looks like none at all
    assert b"Globex" not in bodies.pop()
    assert linus.get("/invoices/new?organization=globex").status_code == 404
    assert linus.get("/invoices?organization=globex").status_code == 404
    assert linus.get("/invoices/export.csv?organization=globex").status_code == 404
    assert count_invoices(db) == before
    db.expire_all()
    reached = db.scalars(
        select(AuditEvent).where(
            AuditEvent.organization_id == org_id(db, "globex"), AuditEvent.status == 404
        )
    ).all()
    assert {(r.actor_email, r.resource_id) for r in reached} == {(LINUS, "globex")}


def test_a_form_naming_an_organization_that_refuses_it_is_403_for_that_organization(
    app: Flask, db: Session
) -> None:
    """The policy is asked about the organization named: Globex requires two-factor."""
    db.execute(
        update(Organization).where(Organization.slug == "globex").values(requires_two_factor=True)
    )
    db.commit()
    grace = browser_for(app, GRACE)  # a password-only session, Acme active (no such rule)
    before = count_invoices(db)
    form = {**VALID_INVOICE_FORM, "organization": "globex"}
    refused = grace.post("/invoices/new", data=form)
    assert refused.status_code == 403
    body = refused.get_data(as_text=True)
    assert "invoice.create" in body and "Globex Corporation requires two-factor" in body
    assert count_invoices(db) == before
    # The same form for Acme, from the same session, is fine.
    assert grace.post("/invoices/new", data={**form, "organization": "acme"}).status_code == 303


def test_a_refused_form_keeps_the_organization_it_was_opened_for(
    csrf_app: Flask, db: Session
) -> None:
    grace = browser_for(csrf_app, GRACE)
    fields = opened_form(grace)  # Acme's
    switch(grace, "globex")
    response = grace.post("/invoices/new", data={**VALID_INVOICE_FORM, **fields, "customer": ""})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert HIDDEN_FIELD.findall(page) == ["acme"]  # fixing the field still creates in Acme
    assert "New invoice <small>Acme Inc</small>" in page


def test_a_post_that_names_no_organization_works_in_the_active_one(app: Flask, db: Session) -> None:
    """Scripts written before the field existed: the API's rule, the active organization."""
    grace = browser_for(app, GRACE)
    switch(grace, "globex")
    response = grace.post("/invoices/new", data=VALID_INVOICE_FORM)
    assert response.status_code == 303
    match = NEW_INVOICE_LOCATION.fullmatch(response.headers["Location"])
    assert match
    assert invoice(db, match.group(1)).organization_id == org_id(db, "globex")


# --- The list, its links and the export --------------------------------------------------


def test_every_link_of_the_list_names_its_organization(app: Flask) -> None:
    grace = browser_for(app, GRACE)
    page = grace.get("/invoices").get_data(as_text=True)
    links = re.findall(r'href="(/invoices[^"]*)"', page)
    list_links = [link for link in links if not link.startswith("/invoices/inv_")]
    assert "/invoices/export.csv?organization=acme" in list_links
    assert "/invoices/new?organization=acme" in list_links
    assert "/invoices?organization=acme&amp;status=paid" in list_links
    header_link = "/invoices"  # the "Invoices" item of the main navigation: the active one
    assert all("organization=acme" in link for link in list_links if link != header_link)


def test_a_list_opened_for_acme_stays_acme_s_after_a_switch_to_globex(
    app: Flask, db: Session
) -> None:
    grace = browser_for(app, GRACE)
    switch(grace, "globex")
    page = grace.get("/invoices?organization=acme&status=paid").get_data(as_text=True)
    assert "Invoices <small>Acme Inc</small>" in page
    listed = set(re.findall(r'<td><a href="/invoices/(inv_[A-Za-z0-9]+)">', page))
    db.expire_all()
    acme_paid = set(
        db.scalars(
            select(Invoice.public_id).where(
                Invoice.organization_id == org_id(db, "acme"), Invoice.status == "paid"
            )
        )
    )
    assert listed == acme_paid
    assert "not your active organization" in page


def test_the_export_link_exports_the_organization_it_names(app: Flask, db: Session) -> None:
    grace = browser_for(app, GRACE)
    link = "/invoices/export.csv?organization=acme"
    assert f'href="{link}"' in grace.get("/invoices").get_data(as_text=True)
    switch(grace, "globex")  # free plan: Globex itself cannot export
    export = grace.get(link)
    assert export.status_code == 200
    assert export.headers["Content-Disposition"] == 'attachment; filename="acme-invoices.csv"'
    exported = set(re.findall(r'"(inv_[A-Za-z0-9]+)"', export.get_data(as_text=True)))
    db.expire_all()
    acme_live = set(
        db.scalars(
            select(Invoice.public_id).where(
                Invoice.organization_id == org_id(db, "acme"), Invoice.deleted_at.is_(None)
            )
        )
    )
    assert exported == acme_live
    # Naming Globex, or nothing (Globex is active), asks Globex's plan: 403.
    for path in ("/invoices/export.csv?organization=globex", "/invoices/export.csv"):
        refused = grace.get(path)
        assert refused.status_code == 403
        assert "the pro plan" in refused.get_data(as_text=True)


def test_an_invoice_of_another_organization_leads_back_to_its_own_list(
    app: Flask, db: Session
) -> None:
    grace = browser_for(app, GRACE)
    switch(grace, "globex")
    draft = demo_invoice_id(db, "acme", 7)  # Grace's Acme draft
    page = grace.get(f"/invoices/{draft}").get_data(as_text=True)
    assert '<a href="/invoices?organization=acme">← All invoices</a>' in page
    deleted = grace.post(f"/invoices/{draft}/delete")
    assert deleted.status_code == 303
    assert deleted.headers["Location"] == "/invoices?organization=acme"
    listing = grace.get(deleted.headers["Location"]).get_data(as_text=True)
    assert "Invoice #0007 was deleted." in listing
    assert "Invoices <small>Acme Inc</small>" in listing


def test_switching_from_a_page_pinned_to_one_organization_lands_on_the_new_one(
    csrf_app: Flask,
) -> None:
    grace = browser_for(csrf_app, GRACE)
    went = switch(grace, "globex", next_path="/invoices?organization=acme&status=paid&page=2")
    assert went == "/invoices?status=paid&page=2"
    assert "Invoices <small>Globex Corporation</small>" in grace.get(went).get_data(as_text=True)
    assert switch(grace, "acme", next_path="/invoices/inv_7") == "/invoices/inv_7"


def test_the_tour_counts_an_export_by_the_role_in_the_organization_it_named(
    database_file: Path,
) -> None:
    """Grace exports Acme's invoices (admin there) while Globex (member there) is active:
    that is no member exporting, so the plan lesson is not done by it."""
    demo = make_test_app(database_file, DEMO_MODE=True)
    try:
        grace = browser_for(demo, GRACE)
        switch(grace, "globex")
        assert grace.get("/invoices/export.csv?organization=acme").status_code == 200
        assert grace.get("/orgs/globex/billing").status_code == 403  # a member's billing 403
        tour = grace.get("/tour").get_data(as_text=True)
        assert 'data-testid="mark-plan">not yet' in tour
    finally:
        demo.extensions["db_engine"].dispose()


def scope_refusals(db: Session, after: int) -> set[tuple[object, ...]]:
    db.expire_all()
    return {
        (e.action, e.organization_id, e.resource_id, e.decision, e.status, e.reason)
        for e in db.scalars(select(AuditEvent).where(AuditEvent.id > after))
    }


def test_a_hidden_invoice_and_a_missing_one_answer_alike_and_are_logged_apart(
    app: Flask, db: Session
) -> None:
    """Scope's 404: the same page for Globex's invoice and for an id that never existed;
    the log tells them apart, and the hidden one goes to Globex's own log."""
    after = db.scalar(select(func.max(AuditEvent.id))) or 0
    linus = signed_in_client(app, LINUS)
    linus.get("/dashboard")  # uses up the "signed in" flash, so the error pages compare equal

    hidden, missing = linus.get("/invoices/inv_42"), linus.get("/invoices/inv_999999")
    hidden_org, missing_org = linus.get("/orgs/globex"), linus.get("/orgs/nowhere")

    assert [r.status_code for r in (hidden, missing, hidden_org, missing_org)] == [404] * 4
    assert hidden.get_data() == missing.get_data()
    assert hidden_org.get_data() == missing_org.get_data()
    globex = org_id(db, "globex")
    assert scope_refusals(db, after) == {
        ("invoices.show", globex, "inv_42", "denied", 404, "Not in the principal's organizations"),
        ("invoices.show", None, "inv_999999", "denied", 404, "No such invoice"),
        ("orgs.show", globex, "globex", "denied", 404, "Not one of the principal's organizations"),
        ("orgs.show", None, "nowhere", "denied", 404, "No such organization"),
    }


def test_demo_mode_says_a_hidden_invoice_or_organization_is_real_and_a_missing_one_is_not(
    database_file: Path,
) -> None:
    """Demo mode's 404 page explains the hiding, only for what exists elsewhere."""
    app = make_test_app(database_file, DEMO_MODE=True)
    linus = signed_in_client(app, LINUS)
    try:
        pages = {path: linus.get(path) for path in ("/invoices/inv_42", "/invoices/inv_999999",
                                                    "/orgs/globex", "/orgs/nowhere")}  # fmt: skip
    finally:
        app.extensions["db_engine"].dispose()

    assert {path: page.status_code for path, page in pages.items()} == dict.fromkeys(pages, 404)
    said = {path: page.get_data(as_text=True) for path, page in pages.items()}
    assert "This invoice is real" in said["/invoices/inv_42"]
    assert "This organization is real" in said["/orgs/globex"]
    assert " is real: " not in said["/invoices/inv_999999"] + said["/orgs/nowhere"]


def test_after_leaving_the_active_organization_the_list_falls_back_to_the_first_one(
    app: Flask, db: Session
) -> None:
    """The session still points at Globex after Grace is removed from it: /invoices lists
    her first organization's invoices (Acme), not an error and not Globex's."""
    grace = browser_for(app, GRACE)
    switch(grace, "globex")
    assert active_organization_of(db, GRACE) == org_id(db, "globex")
    db.execute(
        delete(Membership).where(
            Membership.user_id == user(db, GRACE).id,
            Membership.organization_id == org_id(db, "globex"),
        )
    )
    db.commit()

    page = grace.get("/invoices")

    assert page.status_code == 200
    assert "Invoices <small>Acme Inc</small>" in page.get_data(as_text=True)
    assert "inv_42" not in page.get_data(as_text=True)
