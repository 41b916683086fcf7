"""Elevation: a policy rule that asks for fresh authentication.

No page of this issue needs it yet (billing and password changes come later), so a
small route in the test app stands in for them; it runs the real authorize().
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp.authn.gate import login_required
from invoiceapp.authz.enforce import authorize
from invoiceapp.authz.scope import organization_in_my_orgs_or_404
from invoiceapp.db import utcnow
from invoiceapp.models import AuditEvent, Organization, UserSession
from support import AUTH_COOKIE, PASSWORD, csrf_token_from, invoice, signed_in_client, user


@pytest.fixture()
def app(database_file: Path) -> Iterator[Flask]:
    app = make_test_app(database_file, FRESH_AGE_SECONDS=600)

    @login_required
    def change_billing(slug: str) -> object:
        authorize("org.billing.update", organization_in_my_orgs_or_404(slug))
        return jsonify(changed=True)

    app.add_url_rule("/orgs/<slug>/billing-probe", view_func=change_billing, methods=["POST"])
    app.add_url_rule(
        "/api/v1/orgs/<slug>/billing-probe", "api_billing", change_billing, methods=["POST"]
    )
    yield app
    app.extensions["db_engine"].dispose()


def age_session(db: Session, email: str, minutes: int) -> None:
    db.expire_all()
    stored = db.scalars(select(UserSession).where(UserSession.user_id == user(db, email).id)).one()
    stored.authenticated_at = utcnow() - timedelta(minutes=minutes)
    db.commit()


def test_owner_with_fresh_session_may_change_billing(app: Flask) -> None:
    client = signed_in_client(app, "ada@acme.test")
    assert client.post("/orgs/acme/billing-probe").get_json() == {"changed": True}


def test_owner_with_stale_session_is_sent_to_reauthenticate(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    age_session(db, "ada@acme.test", minutes=11)
    response = client.post("/orgs/acme/billing-probe")
    assert response.status_code == 302
    assert response.headers["Location"] == "/reauthenticate?next=/orgs/acme/billing-probe"


def test_api_with_stale_session_gets_401_reauthentication_required(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    age_session(db, "ada@acme.test", minutes=11)
    response = client.post("/api/v1/orgs/acme/billing-probe")
    assert response.status_code == 401
    assert response.get_json()["error"]["reason"] == "reauthentication_required"
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert "WWW-Authenticate" in response.headers


def test_admin_is_refused_before_any_password_prompt(app: Flask, db: Session) -> None:
    # Fresh proof cannot buy a permission the role does not have: 403, not a prompt.
    client = signed_in_client(app, "grace@acme.test")
    age_session(db, "grace@acme.test", minutes=11)
    response = client.post("/orgs/acme/billing-probe")
    assert response.status_code == 403
    assert "org.billing.update" in response.get_data(as_text=True)


def test_reauthenticating_makes_the_stale_session_elevated_again(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    age_session(db, "ada@acme.test", minutes=11)
    assert client.post("/orgs/acme/billing-probe").status_code == 302
    response = client.post(
        "/reauthenticate", data={"password": PASSWORD, "next": "/orgs/acme/billing-probe"}
    )
    assert response.headers["Location"] == "/orgs/acme/billing-probe"
    assert client.post("/orgs/acme/billing-probe").get_json() == {"changed": True}


def test_fresh_age_is_configurable(database_file: Path) -> None:
    app = make_test_app(database_file, FRESH_AGE_SECONDS=5)
    from invoiceapp.authn.sessions import is_fresh

    with app.app_context():
        stored = UserSession(authenticated_at=utcnow() - timedelta(seconds=6))
        assert not is_fresh(stored)
        stored.authenticated_at = utcnow() - timedelta(seconds=4)
        assert is_fresh(stored)
    app.extensions["db_engine"].dispose()


def test_reauthenticating_rotates_the_session_token_and_csrf_token(database_file: Path) -> None:
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True)
    client: FlaskClient = app.test_client()
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    client.post(
        "/sign-in", data={"email": "ada@acme.test", "password": PASSWORD, "csrf_token": token}
    )
    before_cookie = client.get_cookie(AUTH_COOKIE).value
    form_page = client.get("/reauthenticate").get_data(as_text=True)
    before_csrf = csrf_token_from(form_page)
    response = client.post(
        "/reauthenticate", data={"password": PASSWORD, "csrf_token": before_csrf}
    )
    assert response.status_code == 303
    assert client.get_cookie(AUTH_COOKIE).value != before_cookie
    # The old CSRF token no longer counts; the session itself still does.
    assert client.post("/sign-out", data={"csrf_token": before_csrf}).status_code == 400
    assert client.get("/dashboard").status_code == 200
    stale = app.test_client()
    stale.set_cookie(AUTH_COOKIE, before_cookie)
    assert stale.get("/dashboard").status_code == 302
    app.extensions["db_engine"].dispose()


def test_a_403_is_logged_under_the_resource_s_public_name(app: Flask, db: Session) -> None:
    """authorize()'s refusal is one audit record in the resource's organization, naming an
    organization by its slug, an invoice by its public id and a member by their user id."""
    before = db.scalar(select(func.max(AuditEvent.id))) or 0
    grace, linus = (
        signed_in_client(app, "grace@acme.test"),
        signed_in_client(app, "linus@acme.test"),
    )
    ada = user(db, "ada@acme.test").id

    refused = [
        grace.post("/orgs/acme/billing-probe"),  # admin: billing is the owner's
        linus.post("/invoices/inv_7/delete"),  # member: never deletes
        grace.post(f"/orgs/acme/members/{ada}/remove"),  # admin: plain members only
    ]

    assert [response.status_code for response in refused] == [403, 403, 403]
    db.expire_all()
    acme = db.scalar(select(Organization.id).where(Organization.slug == "acme"))
    logged = db.scalars(select(AuditEvent).where(AuditEvent.id > before).order_by(AuditEvent.id))
    assert [(e.action, e.organization_id, e.resource_id, e.decision, e.status)
            for e in logged] == [
        ("org.billing.update", acme, "acme", "denied", 403),
        ("invoice.delete", acme, "inv_7", "denied", 403),
        ("member.remove", acme, f"membership:{ada}", "denied", 403),
    ]  # fmt: skip
    assert invoice(db, "inv_7").deleted_at is None
