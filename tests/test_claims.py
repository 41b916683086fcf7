"""Claiming an address (invoiceapp.authn.claims): whoever reads a mailbox can always take
its address back from an account that never verified it, and until then that account
can make no credential that would outlive the claim.

Eve (eve@acme.test) is the seed's unverified account: here she plays the squatter.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invoiceapp.authn import recovery_codes, totp
from invoiceapp.authn.access_tokens import issue_access_token
from invoiceapp.authn.claims import send_claim_link
from invoiceapp.db import utcnow
from invoiceapp.models import (
    AccountToken,
    Organization,
    Passkey,
    PersonalAccessToken,
    RecoveryCode,
    SecurityEvent,
    TokenScope,
    User,
    UserSession,
)
from support import PASSWORD, ask_for_reset, csrf_token_from, latest_mail_to, signed_in_client
from support import user as user_by_email

EVE = "eve@acme.test"
CLAIMED_PASSWORD = "marble otter quill saffron 58"
INVALID_PAGE = "This link is no longer valid"
CLAIM_SUBJECT = "Claim your email address on InvoiceApp"
SIGN_UP_FORM = {
    "name": "Someone New",
    "email": EVE,
    "password": "lagoon heron juniper fjord 7",
    "organization_name": "Someone's Studio",
}


def claim_path(outbox: Path, email: str = EVE) -> str:
    mail = latest_mail_to(outbox, email)
    assert mail is not None and mail.subject == CLAIM_SUBJECT
    (link,) = [link for link in mail.links if "/claim-address/" in link]
    return link.removeprefix("http://127.0.0.1:5000")


def claim(client: FlaskClient, path: str, new: str = CLAIMED_PASSWORD) -> Any:
    return client.post(path, data={"new_password": new, "confirm_password": new})


def count(db: Session, model: type, *where: Any) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model).where(*where)) or 0


def events(db: Session, kind: str) -> int:
    eve = user_by_email(db, EVE)
    return count(db, SecurityEvent, SecurityEvent.user_id == eve.id, SecurityEvent.kind == kind)


def squatter_sets_up_camp(app: Flask, db: Session) -> tuple[FlaskClient, str]:
    """Eve signed in, with every credential an account can hold: an authenticator app,
    recovery codes, a passkey and an API token (made before the rule that now forbids them
    to unverified accounts). Returns her browser and her raw API token."""
    browser = signed_in_client(app, EVE)
    with app.app_context():
        eve = user_by_email(db, EVE)
        totp.start_enrolment(eve)
        eve.totp_enabled_at = utcnow()
        recovery_codes.replace_codes(db, eve)
        db.add(
            Passkey(
                public_id="pk_squatter", user_id=eve.id, credential_id="squatter-credential",
                public_key=b"not a real key", name="Eve's key",
            )
        )  # fmt: skip
        acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
        assert acme is not None
        _, raw = issue_access_token(
            db, eve, acme, name="script", scope=TokenScope.READ, expires_days=30
        )
        db.commit()
    return browser, raw


# --- the claim link is mailed ---------------------------------------------------------------


def test_sign_up_on_an_unverified_address_mails_a_claim_link_and_answers_alike(
    app: Flask, db: Session, outbox: Path
) -> None:
    client = app.test_client()
    response = client.post("/sign-up", data=SIGN_UP_FORM)
    assert (response.status_code, response.headers["Location"]) == (303, "/sign-in")
    assert count(db, User, User.email == EVE) == 1  # no second account
    mail = latest_mail_to(outbox, EVE)
    assert mail is not None and mail.subject == CLAIM_SUBJECT
    assert "30 minutes" in mail.text
    # Nothing the squatter chose (the account's name) nor the form's content is in it.
    for text in ("Eve", "Mallory", "Someone New", "Studio"):
        assert text not in mail.text and text not in mail.html
    assert user_by_email(db, EVE).email_verified_at is None  # mailing changes nothing


def test_forgot_password_on_an_unverified_address_mails_a_claim_link(
    app: Flask, outbox: Path
) -> None:
    ask_for_reset(app.test_client(), EVE)
    assert claim_path(outbox).startswith("/claim-address/")


def test_opening_a_claim_link_changes_nothing_and_explains_the_claim(
    app: Flask, db: Session, outbox: Path
) -> None:
    """Mail scanners open links: GET shows a page with a button, only the POST acts."""
    ask_for_reset(app.test_client(), EVE)
    path = claim_path(outbox)
    for _ in range(2):
        page = app.test_client().get(path)
        assert page.status_code == 200
        assert page.headers["Cache-Control"] == "no-store"
        html = page.get_data(as_text=True)
        assert 'name="new_password"' in html and "<button" in html
        assert "removes every second factor" in html and "signs everyone out" in html
    assert user_by_email(db, EVE).email_verified_at is None
    assert count(db, AccountToken, AccountToken.used_at.is_not(None)) == 0


# --- the claim -----------------------------------------------------------------------------


def test_a_claim_takes_the_address_back_from_the_squatter(
    app: Flask, db: Session, outbox: Path
) -> None:
    squatter, api_token = squatter_sets_up_camp(app, db)
    assert squatter.get("/dashboard").status_code == 200
    owner = app.test_client()
    ask_for_reset(owner, EVE)
    path = claim_path(outbox)

    response = claim(owner, path)
    assert (response.status_code, response.headers["Location"]) == (303, "/sign-in")

    eve = user_by_email(db, EVE)
    assert eve.email_verified_at is not None  # the mailbox proved itself
    assert eve.totp_secret_encrypted is None and eve.totp_enabled_at is None
    assert count(db, RecoveryCode, RecoveryCode.user_id == eve.id) == 0
    assert count(db, Passkey, Passkey.user_id == eve.id) == 0
    assert count(db, UserSession, UserSession.user_id == eve.id) == 0
    assert count(db, PersonalAccessToken, PersonalAccessToken.user_id == eve.id,
                 PersonalAccessToken.revoked_at.is_(None)) == 0  # fmt: skip
    assert events(db, "address_claimed") == 1
    # The squatter is out, everywhere; the owner's password alone signs in.
    assert squatter.get("/dashboard").status_code == 302
    api = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {api_token}"})
    assert api.status_code == 401
    old = app.test_client().post("/sign-in", data={"email": EVE, "password": PASSWORD})
    assert old.status_code != 303
    new = app.test_client().post("/sign-in", data={"email": EVE, "password": CLAIMED_PASSWORD})
    assert (new.status_code, new.headers["Location"]) == (303, "/dashboard")
    # Spent: the link works once. And the mailbox is told what went.
    assert claim(app.test_client(), path, "other words entirely 1234").status_code == 400
    notice = latest_mail_to(outbox, EVE)
    assert notice is not None and notice.subject == "You claimed your email address on InvoiceApp"
    assert "Eve's key" in notice.text and "authenticator app" in notice.text


def test_a_claim_through_the_real_form_needs_its_csrf_token(csrf_app: Flask, outbox: Path) -> None:
    csrf_app.config["MAIL_OUTBOX_DIR"] = str(outbox)
    with csrf_app.app_context():
        from invoiceapp.db import get_db

        send_claim_link(get_db(), user_by_email(get_db(), EVE))
    client = csrf_app.test_client()
    path = claim_path(outbox)
    assert claim(client, path).status_code == 400  # no token: nothing happens
    token = csrf_token_from(client.get(path).get_data(as_text=True))
    response = client.post(
        path,
        data={"new_password": CLAIMED_PASSWORD, "confirm_password": CLAIMED_PASSWORD,
              "csrf_token": token},
    )  # fmt: skip
    assert response.status_code == 303


def test_a_weak_password_is_a_422_and_leaves_the_link_usable(
    app: Flask, db: Session, outbox: Path
) -> None:
    ask_for_reset(app.test_client(), EVE)
    path = claim_path(outbox)
    response = claim(app.test_client(), path, "short")
    assert response.status_code == 422
    assert "Use at least 15 characters" in response.get_data(as_text=True)
    assert user_by_email(db, EVE).email_verified_at is None
    assert claim(app.test_client(), path).status_code == 303


def test_a_newer_claim_link_kills_the_older_one(app: Flask, outbox: Path) -> None:
    ask_for_reset(app.test_client(), EVE)
    first = claim_path(outbox)
    app.test_client().post("/sign-up", data=SIGN_UP_FORM)
    second = claim_path(outbox)
    assert first != second
    assert INVALID_PAGE in app.test_client().get(first).get_data(as_text=True)
    assert claim(app.test_client(), first).status_code == 400
    assert claim(app.test_client(), second).status_code == 303


def test_a_claim_link_is_void_once_the_address_is_verified(
    app: Flask, db: Session, outbox: Path
) -> None:
    """Verified means the account holder reads that mailbox: there is nobody to claim from."""
    ask_for_reset(app.test_client(), EVE)
    path = claim_path(outbox)
    with app.app_context():
        eve = user_by_email(db, EVE)
        eve.email_verified_at = utcnow()
        db.commit()
    assert claim(app.test_client(), path).status_code == 400
    signed_in = app.test_client().post("/sign-in", data={"email": EVE, "password": PASSWORD})
    assert signed_in.status_code == 303  # the password did not change
    assert events(db, "address_claimed") == 0


def test_a_claim_link_is_no_reset_link_and_a_reset_link_no_claim_link(
    app: Flask, outbox: Path
) -> None:
    ask_for_reset(app.test_client(), EVE)
    token = claim_path(outbox).removeprefix("/claim-address/")
    assert app.test_client().get("/reset-password/" + token).status_code == 400
    ask_for_reset(app.test_client(), "ada@acme.test")
    mail = latest_mail_to(outbox, "ada@acme.test")
    assert mail is not None
    (reset,) = [link for link in mail.links if "/reset-password/" in link]
    reset_token = reset.rsplit("/", 1)[1]
    assert app.test_client().get("/claim-address/" + reset_token).status_code == 400


# --- until verified, no credential that would outlive a claim --------------------------------


def test_an_unverified_account_may_not_enrol_a_second_factor_or_create_tokens(
    app: Flask, db: Session
) -> None:
    eve = signed_in_client(app, EVE)  # just signed in: elevated, so only the rule can refuse
    for response in (
        eve.get("/account/two-factor"),
        eve.post("/account/two-factor", data={"code": "123456"}),
        eve.post("/account/passkeys/options"),
        eve.post("/account/two-factor/recovery-codes"),
        eve.post(
            "/account/tokens",
            data={"name": "script", "organization": "acme", "scope": "read", "expires_days": "30"},
        ),
    ):
        assert response.status_code == 403
        assert re.search(r"verified email address", response.get_data(as_text=True))
    assert count(db, PersonalAccessToken) == 0
    assert user_by_email(db, EVE).totp_secret_encrypted is None
    # The passkeys list needs only a session: it explains instead of refusing.
    listing = eve.get("/account/passkeys")
    assert listing.status_code == 200
    assert "Verify your email address first" in listing.get_data(as_text=True)
    assert 'data-passkey="register"' not in listing.get_data(as_text=True)

    with app.app_context():
        user_by_email(db, EVE).email_verified_at = utcnow()
        db.commit()
    assert eve.get("/account/two-factor").status_code == 200


def test_the_policy_refuses_new_credentials_to_an_unverified_address_and_nothing_else(
    app: Flask, db: Session
) -> None:
    from invoiceapp.authz.policy import NEEDS_VERIFIED_EMAIL, can
    from invoiceapp.principal import Principal

    with app.test_request_context():
        eve = user_by_email(db, EVE)
        me = Principal(user=eve, session=None, roles={})
        for action in NEEDS_VERIFIED_EMAIL:
            decision = can(me, action, eve)
            assert not decision.allowed and decision.missing == "a verified email address"
            assert decision.rule == "verified email"
        assert can(me, "account.password.change", eve).allowed  # still theirs to change
        eve.email_verified_at = utcnow()
        assert all(can(me, action, eve).allowed for action in NEEDS_VERIFIED_EMAIL)
