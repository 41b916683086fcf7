""" "Why was I refused?": every 403 page explains the caller's own decision, outside demo
mode too, and GET /api/v1/authz/explain gives the same explanation as JSON. Both read one
function (invoiceapp.authz.explain.why); neither tells anything about a resource outside
the caller's organizations, which stays a 404 byte for byte like a missing id."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from invoiceapp.authz.roles import create_role
from invoiceapp.models import Invoice, Membership, Organization
from support import bearer, make_token, signed_in_client, user

EXPLAIN = "/api/v1/authz/explain"


def test_a_member_refused_a_delete_sees_why_and_what_would_change_it(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    response = linus.post("/invoices/inv_7/delete")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert 'data-testid="why"' in page
    assert "<dt>Rule that decided</dt><dd>no</dd>" in page
    assert "<dt>Role there</dt><dd><bdi>member</bdi></dd>" in page
    assert "<dt>Plan</dt><dd><bdi>pro</bdi></dd>" in page
    assert "inv_7, sent; someone else created it" in page
    assert "<dt>Signed in with</dt><dd><bdi>password</bdi></dd>" in page
    assert "Ask an owner or admin of Acme Inc for the owner or admin role." in page


def test_the_free_plan_refusal_names_the_plan_and_who_can_change_it(app: Flask) -> None:
    marge = signed_in_client(app, "marge@globex.test")
    response = marge.get("/invoices/export.csv")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "<dt>Rule that decided</dt><dd>plan pro only</dd>" in page
    assert "<dt>Plan</dt><dd><bdi>free</bdi></dd>" in page
    assert "Ask the owner of Globex Corporation to move it to the pro plan" in page


def test_the_two_factor_rule_says_to_sign_in_with_the_second_factor(
    app: Flask, db: Session
) -> None:
    db.execute(update(Organization).where(Organization.slug == "acme").values(
        requires_two_factor=True))  # fmt: skip
    db.commit()
    ada = signed_in_client(app, "ada@acme.test")
    response = ada.get("/invoices/inv_7")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "<dt>Rule that decided</dt><dd>organization requires two-factor</dd>" in page
    assert "<dt>Second factor used</dt><dd><bdi>no</bdi></dd>" in page
    assert "Sign in again with your second factor." in page
    # invoice.read is refused too, so the invoice's state and author are not shown.
    assert "<dt>Invoice</dt>" not in page


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_another_orgs_invoice_is_a_404_byte_identical_to_a_missing_one(
    app: Flask, method: str
) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    linus.get("/dashboard")  # shows (and uses up) the sign-in's flash message
    path = "/invoices/{}" if method == "GET" else "/invoices/{}/delete"
    elsewhere = linus.open(path.format("inv_42"), method=method)
    missing = linus.open(path.format("inv_999999"), method=method)
    assert elsewhere.status_code == missing.status_code == 404
    assert elsewhere.get_data() == missing.get_data()
    assert b"Why?" not in elsewhere.get_data()


def test_explain_api_gives_the_callers_own_decision_with_its_inputs(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    response = linus.get(f"{EXPLAIN}?action=invoice.delete&invoice=inv_7")
    assert response.status_code == 200
    body = response.get_json()
    assert body["allowed"] is False
    assert (body["action"], body["rule"], body["status"]) == ("invoice.delete", "no", "403")
    assert body["reason"] == "The member role does not include invoice.delete"
    assert body["remedy"] == "Ask an owner or admin of Acme Inc for the owner or admin role."
    inputs = body["inputs"]
    assert inputs["user"] == "Linus Torvalds"
    assert inputs["role"] == "member"
    assert inputs["organization"]["plan"] == "pro"
    assert inputs["invoice"] == {"id": "inv_7", "status": "sent", "created_by_you": False}
    assert inputs["proof"] == "password"
    assert inputs["token_scope"] is None and inputs["viewing_as"] is None


def test_explain_api_and_the_403_page_tell_the_same_story(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    body = linus.get(f"{EXPLAIN}?action=invoice.mark_paid&invoice=inv_7").get_json()
    page = linus.post("/invoices/inv_7/mark-paid").get_data(as_text=True)
    assert body["remedy"] in page and body["reason"] in page


def test_explain_api_without_an_invoice_asks_about_the_active_organization(app: Flask) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    body = ada.get(f"{EXPLAIN}?action=invoice.export").get_json()
    assert (body["allowed"], body["status"], body["inputs"]["organization"]["slug"]) == (
        True, "200", "acme")  # fmt: skip
    assert body["remedy"] == "Nothing: you may do this."
    grace = signed_in_client(app, "grace@acme.test")
    body = grace.get(f"{EXPLAIN}?action=invoice.export&organization=globex").get_json()
    assert (body["allowed"], body["rule"]) == (False, "plan pro only")


def test_explain_api_with_a_read_token_names_the_scope(app: Flask) -> None:
    raw = make_token(app, "ada@acme.test", "acme", scope="read")
    client = app.test_client()
    response = client.get(f"{EXPLAIN}?action=invoice.delete&invoice=inv_7", headers=bearer(raw))
    body = response.get_json()
    assert response.status_code == 200
    assert (body["allowed"], body["rule"]) == (False, "token scope")
    assert body["inputs"]["token_scope"] == "read" and body["inputs"]["proof"] == "token"
    assert body["remedy"].startswith("Use a token with the write scope")


def test_explain_api_refuses_an_unknown_action_with_the_validation_error(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    response = linus.get(f"{EXPLAIN}?action=invoice.steal&invoice=inv_7")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation"
    assert list(error["fields"]) == ["action"]
    assert linus.get(EXPLAIN).status_code == 422  # the action is required


@pytest.mark.parametrize("who", ["cookie", "token"])
def test_explain_api_hides_another_orgs_invoice_like_a_missing_one(app: Flask, who: str) -> None:
    if who == "cookie":
        client, headers = signed_in_client(app, "linus@acme.test"), {}
        elsewhere_id = "inv_42"
    else:
        # Grace is in both; her token reaches Globex only, so Acme's inv_7 is a stranger's.
        client, headers = app.test_client(), bearer(make_token(app, "grace@acme.test", "globex"))
        elsewhere_id = "inv_7"
    elsewhere = client.get(f"{EXPLAIN}?action=invoice.read&invoice={elsewhere_id}", headers=headers)
    missing = client.get(f"{EXPLAIN}?action=invoice.read&invoice=inv_999999", headers=headers)
    malformed = client.get(f"{EXPLAIN}?action=invoice.read&invoice=%3Cx%3E", headers=headers)
    assert elsewhere.status_code == missing.status_code == malformed.status_code == 404
    assert elsewhere.get_data() == missing.get_data() == malformed.get_data()


def test_explain_api_hides_another_organization_like_a_missing_one(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    elsewhere = linus.get(f"{EXPLAIN}?action=audit.read&organization=globex")
    missing = linus.get(f"{EXPLAIN}?action=audit.read&organization=no-such-org")
    assert elsewhere.status_code == missing.status_code == 404
    assert elsewhere.get_data() == missing.get_data()


def test_explain_api_says_when_the_answer_depends_on_which_invoice(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    body = linus.get(f"{EXPLAIN}?action=invoice.update").get_json()
    assert (body["allowed"], body["rule"]) == (False, "own drafts only")
    assert body["remedy"] == (
        "The answer depends on which invoice: ask about one in particular.")  # fmt: skip


def test_explain_api_needs_a_principal(app: Flask) -> None:
    response = app.test_client().get(f"{EXPLAIN}?action=invoice.read")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def _acme_role(db: Session, name: str, actions: list[str]) -> str:
    acme = db.scalars(select(Organization).where(Organization.slug == "acme")).one()
    key = create_role(db, acme, name, actions).key
    db.commit()
    return key


def test_the_why_names_the_custom_role_that_would_allow_it(app: Flask, db: Session) -> None:
    """Linus (member) may not mark inv_7 paid. Acme's Bookkeeper role would let him; its
    Reader role would not, so only the Bookkeeper is suggested, on the page and in the API."""
    _acme_role(db, "Reader", ["invoice.read", "org.read"])
    _acme_role(db, "Bookkeeper", ["invoice.read", "invoice.mark_paid", "org.read"])
    linus = signed_in_client(app, "linus@acme.test")
    body = linus.get(f"{EXPLAIN}?action=invoice.mark_paid&invoice=inv_7").get_json()
    assert body["remedy"] == (
        "Ask an owner or admin of Acme Inc for the Bookkeeper role, or for the owner or admin role."
    )
    page = linus.post("/invoices/inv_7/mark-paid")
    assert page.status_code == 403
    assert "for the Bookkeeper role" in page.get_data(as_text=True)
    assert "Reader" not in page.get_data(as_text=True)


def test_a_custom_role_is_not_suggested_where_another_rule_would_still_refuse(
    app: Flask, db: Session
) -> None:
    """A draft cannot be marked paid by anyone (the invoice's state), so the Bookkeeper
    role would not help Linus there, and the remedy does not send him to ask for it."""
    _acme_role(db, "Bookkeeper", ["invoice.read", "invoice.mark_paid", "org.read"])
    acme = db.scalars(select(Organization).where(Organization.slug == "acme")).one()
    draft = db.scalars(
        select(Invoice.public_id).where(Invoice.organization_id == acme.id,
                                        Invoice.status == "draft")
    ).first()  # fmt: skip
    linus = signed_in_client(app, "linus@acme.test")
    body = linus.get(f"{EXPLAIN}?action=invoice.mark_paid&invoice={draft}").get_json()
    assert body["rule"] == "no"
    assert body["remedy"] == "Ask an owner or admin of Acme Inc for the owner or admin role."


def test_a_custom_role_holder_sees_its_name_and_actions_in_the_why(app: Flask, db: Session) -> None:
    key = _acme_role(db, "Bookkeeper", ["invoice.read", "invoice.mark_paid", "org.read"])
    db.execute(update(Membership).where(Membership.user_id == user(db, "linus@acme.test").id)
               .values(role=key))  # fmt: skip
    db.commit()
    linus = signed_in_client(app, "linus@acme.test")
    body = linus.get(f"{EXPLAIN}?action=invoice.delete&invoice=inv_7").get_json()
    assert body["allowed"] is False
    assert body["inputs"]["role"] == (
        "Bookkeeper (custom role: invoice.read, invoice.mark_paid, org.read)"
    )
    assert body["reason"] == "The Bookkeeper role does not include invoice.delete"
