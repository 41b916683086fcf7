"""CSRF through the real forms, and the order of the gates: authentication first."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invoiceapp.models import AuditEvent
from support import PASSWORD, csrf_token_from, invoice, sign_in_through_the_form


def test_anonymous_post_without_csrf_token_gets_401_not_400(csrf_app: Flask) -> None:
    response = csrf_app.test_client().post("/invoices/inv_7/delete")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_sign_in_without_csrf_token_gets_400(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    response = client.post("/sign-in", data={"email": "ada@acme.test", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get_cookie("invoiceapp_sid") is None


def test_owner_delete_without_csrf_token_gets_400_and_nothing_changes(
    csrf_app: Flask, db: Session
) -> None:
    client = csrf_app.test_client()
    sign_in_through_the_form(client, "ada@acme.test")
    response = client.post("/invoices/inv_7/delete")
    assert response.status_code == 400
    assert "did not come from this site" in response.get_data(as_text=True)
    assert invoice(db, "inv_7").deleted_at is None


def test_owner_delete_with_a_forged_token_gets_400(csrf_app: Flask, db: Session) -> None:
    client = csrf_app.test_client()
    sign_in_through_the_form(client, "ada@acme.test")
    response = client.post("/invoices/inv_7/delete", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert invoice(db, "inv_7").deleted_at is None


def test_owner_deletes_through_the_confirmation_form(csrf_app: Flask, db: Session) -> None:
    client = csrf_app.test_client()
    sign_in_through_the_form(client, "ada@acme.test")
    detail = client.get("/invoices/inv_7").get_data(as_text=True)
    assert 'href="/invoices/inv_7/delete"' in detail
    confirm = client.get("/invoices/inv_7/delete").get_data(as_text=True)
    response = client.post("/invoices/inv_7/delete", data={"csrf_token": csrf_token_from(confirm)})
    assert response.status_code == 303
    assert invoice(db, "inv_7").deleted_at is not None


def test_member_with_a_valid_token_still_gets_403(csrf_app: Flask, db: Session) -> None:
    # CSRF proves the form came from this site; it says nothing about permission.
    client = csrf_app.test_client()
    sign_in_through_the_form(client, "linus@acme.test")
    token = csrf_token_from(client.get("/invoices/inv_7").get_data(as_text=True))
    response = client.post("/invoices/inv_7/delete", data={"csrf_token": token})
    assert response.status_code == 403
    assert invoice(db, "inv_7").deleted_at is None


def test_sign_in_issues_a_fresh_csrf_token(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    before = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    client.post(
        "/sign-in", data={"email": "ada@acme.test", "password": PASSWORD, "csrf_token": before}
    )
    response = client.post("/sign-out", data={"csrf_token": before})
    assert response.status_code == 400  # the pre-sign-in token no longer counts


def test_sign_out_through_the_header_form(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    sign_in_through_the_form(client, "ada@acme.test")
    token = csrf_token_from(client.get("/dashboard").get_data(as_text=True))
    assert client.post("/sign-out", data={"csrf_token": token}).status_code == 303
    assert client.get("/dashboard").status_code == 302


def test_forms_carry_csrf_tokens(csrf_app: Flask) -> None:
    client: FlaskClient = csrf_app.test_client()
    sign_in_through_the_form(client, "ada@acme.test")
    for page in ("/invoices/new", "/invoices/inv_7/edit", "/invoices/inv_7/delete", "/sign-out"):
        assert 'name="csrf_token"' in client.get(page).get_data(as_text=True), page


def test_an_anonymous_refusal_is_logged_under_the_route_s_name_not_its_path(
    csrf_app: Flask, db: Session
) -> None:
    """The gate's 401 is one audit record: the endpoint (never the path, which on some
    routes holds a token), no organization, no actor, denied, 401."""
    before = db.scalar(select(func.max(AuditEvent.id))) or 0

    response = csrf_app.test_client().post("/invoices/inv_7/delete")

    assert response.status_code == 401
    logged = db.scalars(select(AuditEvent).where(AuditEvent.id > before)).all()
    assert [(e.action, e.organization_id, e.actor_id, e.decision, e.status, e.reason)
            for e in logged] == [
        ("invoices.delete", None, None, "denied", 401, "No signed-in session")
    ]  # fmt: skip
