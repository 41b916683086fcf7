"""The lesson, replayed one scenario at a time."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from support import invoice, mentions, sign_in, signed_in_client


def test_member_signs_in_and_sees_dashboard_with_their_name(client: FlaskClient) -> None:
    response = sign_in(client, "linus@acme.test")
    assert response.headers["Location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "Linus Torvalds" in page.get_data(as_text=True)
    assert "Acme Inc" in page.get_data(as_text=True)


def test_member_sees_no_delete_button_on_invoice(app: Flask) -> None:
    client = signed_in_client(app, "linus@acme.test")
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200
    assert "Delete this invoice" not in page.get_data(as_text=True)


def test_member_deletes_invoice_gets_403_and_invoice_survives(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "linus@acme.test")
    response = client.post("/invoices/inv_7/delete")
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "invoice.delete" in body
    assert "owner or admin" in body
    assert invoice(db, "inv_7").deleted_at is None
    assert client.get("/invoices/inv_7").status_code == 200


def test_anonymous_post_delete_gets_401_with_www_authenticate(
    client: FlaskClient, db: Session
) -> None:
    response = client.post("/invoices/inv_7/delete")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Session ")
    assert "Basic" not in response.headers["WWW-Authenticate"]
    assert "/sign-in" in response.get_data(as_text=True)
    assert invoice(db, "inv_7").deleted_at is None


def test_anonymous_page_visit_redirects_to_sign_in_with_next(client: FlaskClient) -> None:
    response = client.get("/invoices/inv_7")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sign-in?next=/invoices/inv_7"


def test_other_org_invoice_is_404_like_a_missing_one(app: Flask) -> None:
    client = signed_in_client(app, "linus@acme.test")
    client.get("/dashboard")  # shows (and uses up) the "signed in" flash message
    other_org = client.get("/invoices/inv_42")
    missing = client.get("/invoices/inv_999999")
    assert other_org.status_code == missing.status_code == 404
    assert other_org.get_data() == missing.get_data()
    assert not mentions(other_org.get_data(as_text=True), "inv_42")


def test_other_org_delete_is_404_not_403(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    response = client.post("/invoices/inv_42/delete")
    assert response.status_code == 404
    assert invoice(db, "inv_42").deleted_at is None


def test_owner_deletes_invoice_softly(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    page = client.get("/invoices/inv_7")
    assert "Delete this invoice" in page.get_data(as_text=True)
    response = client.post("/invoices/inv_7/delete")
    assert response.status_code == 303
    assert response.headers["Location"] == "/invoices?organization=acme"  # its own list
    deleted = invoice(db, "inv_7")
    assert deleted.deleted_at is not None  # the row stays: deletes are soft
    assert client.get("/invoices/inv_7").status_code == 404
    assert not mentions(client.get("/invoices").get_data(as_text=True), "inv_7")


def test_same_user_two_roles_in_two_organizations(app: Flask, db: Session) -> None:
    # Grace is an admin in Acme and a plain member in Globex.
    client = signed_in_client(app, "grace@acme.test")
    assert "Delete this invoice" in client.get("/invoices/inv_7").get_data(as_text=True)
    assert "Delete this invoice" not in client.get("/invoices/inv_42").get_data(as_text=True)
    assert client.post("/invoices/inv_42/delete").status_code == 403
    assert invoice(db, "inv_42").deleted_at is None
    assert client.post("/invoices/inv_7/delete").status_code == 303
    assert invoice(db, "inv_7").deleted_at is not None


def test_signed_out_user_is_back_to_401(app: Flask) -> None:
    client = signed_in_client(app, "ada@acme.test")
    assert client.post("/sign-out").status_code == 303
    assert client.post("/invoices/inv_7/delete").status_code == 401


def test_invoice_page_shows_the_role_held_in_that_invoice_s_organization(app: Flask) -> None:
    client = signed_in_client(app, "grace@acme.test")  # active organization: Acme (admin)
    page = client.get("/invoices/inv_42").get_data(as_text=True)
    assert '<dd data-testid="role-here">member</dd>' in page


def test_every_route_is_either_public_or_behind_the_authentication_gate(app: Flask) -> None:
    # Forgetting @login_required on a new view must not go unnoticed.
    public = {
        "static",
        "pages.landing",
        "authn.sign_in_form",
        "authn.sign_in",
        "authn.sign_out_confirm",
        "account.confirm_email_change_form",
        "account.confirm_email_change",
        "authn.sign_out",
        # The second sign-in step and the passkey sign-in come before there is a principal.
        "authn.two_factor_form",
        "authn.two_factor",
        "authn.passkey_options",
        "authn.passkey_sign_in",
        # Sign-in by a code or a link by email (issue 18): before there is a principal too.
        "email_sign_in.request_code",
        "email_sign_in.code_form",
        "email_sign_in.verify_code",
        "email_sign_in.request_link",
        "email_sign_in.link_page",
        "email_sign_in.use_link",
        "health.healthz",
        "health.readyz",
        "dev_mail.outbox",
        "dev_mail.show",
        "signup.sign_up_form",
        "signup.sign_up",
        "signup.verify_email_form",
        "signup.verify_email",
        "recovery.forgot_password_form",
        "recovery.forgot_password",
        "recovery.reset_password_form",
        "recovery.reset_password",
        "claim_address.claim_form",
        "claim_address.claim",
        "api.openapi_json",
        "api.docs",
        # The tour and the demo's switches are for anyone (the switches: demo mode only).
        "tour.tour",
        "demo.lab",
        "demo.reset",
        "demo.reset_form",
        # The exercises are for anyone too (CONTRACT section 5); so is the site's icon.
        "exercises.exercises",
        "exercises.check_sort",
        "exercises.check_status",
        "exercises.check_true_false",
        "exercises.back_to_the_exercise",
        "pages.favicon",
    }
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        gated = getattr(view, "requires_principal", False)
        assert gated != (rule.endpoint in public), f"{rule.rule} ({rule.endpoint})"


def test_demo_mode_explains_each_decision_and_is_off_by_default(app: Flask, database_file) -> None:
    from conftest import make_test_app

    plain = signed_in_client(app, "linus@acme.test").get("/invoices/inv_7").get_data(as_text=True)
    assert "The policy, asked about this invoice" not in plain
    demo_app = make_test_app(database_file, DEMO_MODE=True)
    page = (
        signed_in_client(demo_app, "linus@acme.test").get("/invoices/inv_7").get_data(as_text=True)
    )
    assert "The policy, asked about this invoice" in page
    assert "The member role does not include invoice.delete" in page
    assert "The member role includes invoice.read" in page
    demo_app.extensions["db_engine"].dispose()
