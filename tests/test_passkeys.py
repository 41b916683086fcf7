"""Passkeys (WebAuthn) through the JSON ceremonies, with a software authenticator.

SoftAuthenticator does what a security key or a phone does: it makes a P-256 key pair,
answers navigator.credentials.create() with a "none" attestation, and signs challenges
for navigator.credentials.get(). That lets these tests forge exactly the answers an
attacker would (a replayed challenge, a counter going backwards, another origin) without
a browser. One real-browser walk through is in test_passkeys_browser.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from conftest import Clock
from invoiceapp.models import Organization, Passkey, WebAuthnChallenge
from seed import DEMO_TOTP_SECRET
from support import (
    NEW_PASSWORD,
    PASSWORD,
    UP,
    SoftAuthenticator,
    add_passkey,
    ask_for_reset,
    choose,
    latest_mail_to,
    options,
    passkey_sign_in,
    proofs,
    reset_path,
    signed_in_client,
    user,
)


@pytest.fixture()
def authenticator(app: Flask) -> SoftAuthenticator:
    return SoftAuthenticator(app.config["WEBAUTHN_RP_ID"], app.config["WEBAUTHN_ORIGIN"])


# --- Registration -----------------------------------------------------------------------------


def test_registration_asks_for_a_discoverable_user_verified_passkey(app: Flask) -> None:
    client = signed_in_client(app, "linus@acme.test")
    offered = options(client, "/account/passkeys/options")
    assert offered["rp"] == {"name": "InvoiceApp", "id": "localhost"}
    assert offered["authenticatorSelection"]["residentKey"] == "required"
    assert offered["authenticatorSelection"]["userVerification"] == "required"
    # The handle the device files it under is opaque: not the email, not the row id.
    handle = base64url_to_bytes(offered["user"]["id"])
    assert b"linus" not in handle and len(handle) == 32
    assert offered["user"]["name"] == "linus@acme.test"


def test_add_a_passkey_then_sign_in_with_it_alone(
    app: Flask, db: Session, authenticator: SoftAuthenticator
) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    add_passkey(linus, authenticator, name="Work laptop\x00\n")
    page = linus.get("/account/passkeys").get_data(as_text=True)
    assert "Work laptop" in page and "never" in page
    [stored] = db.scalars(select(Passkey)).all()
    assert stored.name == "Work laptop"  # control characters dropped
    assert stored.transports == "internal"

    browser = app.test_client()
    offered = options(browser, "/sign-in/passkey/options")
    assert offered["allowCredentials"] == [] and offered["userVerification"] == "required"
    response = passkey_sign_in(browser, authenticator)
    assert response.status_code == 200
    assert response.get_json() == {"redirect": "/dashboard"}
    assert "passkey" in proofs(db, "linus@acme.test")
    assert browser.get("/dashboard").status_code == 200
    db.expire_all()
    stored = db.scalars(select(Passkey)).one()
    assert stored.last_used_at is not None and stored.sign_count == 2


def test_adding_a_passkey_needs_a_fresh_session(
    app: Flask, clock: Clock, authenticator: SoftAuthenticator
) -> None:
    client = signed_in_client(app, "linus@acme.test")
    clock.advance(minutes=11)
    response = client.post("/account/passkeys/options")
    assert response.status_code == 401
    assert response.get_json()["error"]["reason"] == "reauthentication_required"
    page = client.get("/account/passkeys").get_data(as_text=True)
    assert "/reauthenticate?next=/account/passkeys" in page
    assert 'data-passkey="register"' not in page


def test_with_a_second_factor_enrolled_a_password_cannot_add_a_passkey(
    app: Flask, clock: Clock, authenticator: SoftAuthenticator
) -> None:
    """Review finding: a stolen cookie plus a phished password planted a passkey that
    then counted as the second factor and survived a password reset. Tess has TOTP:
    adding a passkey needs fresh proof with it."""
    tess = app.test_client()
    tess.post("/sign-in", data={"email": "tess@acme.test", "password": PASSWORD})
    tess.post("/sign-in/two-factor", data={"code": pyotp.TOTP(DEMO_TOTP_SECRET).at(clock.now)})
    tess.post("/account/elevation/end")
    tess.post("/reauthenticate", data={"password": PASSWORD, "next": "/account/passkeys"})
    refused = tess.post("/account/passkeys/options")
    assert refused.status_code == 401
    error = refused.get_json()["error"]
    assert error["reason"] == "reauthentication_required"
    # The page's script follows this: the second factor, not a password that would not do.
    assert error["location"] == "/reauthenticate?next=/account/passkeys&factor=second"
    page = tess.get("/account/passkeys").get_data(as_text=True)
    assert "/reauthenticate?next=/account/passkeys&amp;factor=second" in page
    assert 'data-passkey="register"' not in page

    clock.advance(seconds=30)
    step_up = {"password": PASSWORD, "code": pyotp.TOTP(DEMO_TOTP_SECRET).at(clock.now)}
    assert tess.post("/reauthenticate/code", data=step_up).status_code == 303
    add_passkey(tess, authenticator, name="Tess's phone")


def test_adding_and_removing_a_passkey_is_mailed(
    app: Flask, db: Session, outbox: Path, authenticator: SoftAuthenticator
) -> None:
    linus = signed_in_client(app, "linus@acme.test")  # no second factor yet: a password
    add_passkey(linus, authenticator, name="Work laptop")
    added = latest_mail_to(outbox, "linus@acme.test")
    assert added is not None and "Work laptop" in added.text
    assert "was added" in added.subject

    public_id = db.scalars(select(Passkey.public_id)).one()
    linus = app.test_client()
    assert passkey_sign_in(linus, authenticator).status_code == 200
    assert linus.post(f"/account/passkeys/{public_id}/remove").status_code == 303
    removed = latest_mail_to(outbox, "linus@acme.test")
    assert removed is not None and "was removed" in removed.subject


def test_a_registration_answer_for_another_origin_is_refused(
    app: Flask, db: Session, authenticator: SoftAuthenticator
) -> None:
    client = signed_in_client(app, "linus@acme.test")
    authenticator.origin = "http://evil.example"
    credential = authenticator.create(options(client, "/account/passkeys/options"))
    response = client.post("/account/passkeys", data={"credential": json.dumps(credential)})
    assert response.status_code == 400
    assert db.scalars(select(Passkey)).all() == []


def test_anonymous_cannot_register(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/account/passkeys/options").status_code == 401
    assert client.post("/account/passkeys", data={"credential": "{}"}).status_code == 401


# --- Signing in -------------------------------------------------------------------------------


@pytest.fixture()
def linus_has_a_passkey(app: Flask, authenticator: SoftAuthenticator) -> SoftAuthenticator:
    add_passkey(signed_in_client(app, "linus@acme.test"), authenticator)
    return authenticator


def test_a_signed_challenge_works_once(app: Flask, linus_has_a_passkey: SoftAuthenticator) -> None:
    browser = app.test_client()
    assertion = linus_has_a_passkey.get(options(browser, "/sign-in/passkey/options"))
    data = {"credential": json.dumps(assertion)}
    assert browser.post("/sign-in/passkey", data=data).status_code == 200
    replay = app.test_client()
    response = replay.post("/sign-in/passkey", data=data)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert "WWW-Authenticate" in response.headers


def test_a_challenge_expires_after_five_minutes(
    app: Flask, clock: Clock, linus_has_a_passkey: SoftAuthenticator
) -> None:
    browser = app.test_client()
    assertion = linus_has_a_passkey.get(options(browser, "/sign-in/passkey/options"))
    clock.advance(minutes=5, seconds=1)
    response = browser.post("/sign-in/passkey", data={"credential": json.dumps(assertion)})
    assert response.status_code == 401


def test_a_sign_counter_that_goes_backwards_is_refused(
    app: Flask, db: Session, linus_has_a_passkey: SoftAuthenticator
) -> None:
    assert passkey_sign_in(app.test_client(), linus_has_a_passkey, count=7).status_code == 200
    # A clone of the authenticator still counting from where it was copied.
    assert passkey_sign_in(app.test_client(), linus_has_a_passkey, count=5).status_code == 401
    assert passkey_sign_in(app.test_client(), linus_has_a_passkey, count=7).status_code == 401
    assert passkey_sign_in(app.test_client(), linus_has_a_passkey, count=8).status_code == 200


def test_authenticators_that_always_say_zero_are_fine(app: Flask) -> None:
    device = SoftAuthenticator(
        app.config["WEBAUTHN_RP_ID"], app.config["WEBAUTHN_ORIGIN"], counter=None
    )
    add_passkey(signed_in_client(app, "linus@acme.test"), device)
    assert passkey_sign_in(app.test_client(), device).status_code == 200
    assert passkey_sign_in(app.test_client(), device).status_code == 200


def test_user_verification_is_required(app: Flask, linus_has_a_passkey: SoftAuthenticator) -> None:
    """Holding the device is not enough: its owner must unlock it (PIN, fingerprint)."""
    response = passkey_sign_in(app.test_client(), linus_has_a_passkey, flags=UP)
    assert response.status_code == 401


def test_a_phishing_sites_origin_never_verifies(
    app: Flask, linus_has_a_passkey: SoftAuthenticator
) -> None:
    response = passkey_sign_in(
        app.test_client(), linus_has_a_passkey, origin="http://localhost.evil.example"
    )
    assert response.status_code == 401


def test_a_removed_passkey_no_longer_signs_in(
    app: Flask, db: Session, linus_has_a_passkey: SoftAuthenticator
) -> None:
    linus = app.test_client()
    assert passkey_sign_in(linus, linus_has_a_passkey).status_code == 200  # proof: passkey
    public_id = db.scalars(select(Passkey.public_id)).one()
    response = linus.post(f"/account/passkeys/{public_id}/remove")
    assert response.status_code == 303
    assert db.scalars(select(Passkey)).all() == []
    assert passkey_sign_in(app.test_client(), linus_has_a_passkey).status_code == 401


def test_a_password_reset_removes_every_passkey_and_names_them_in_the_notice(
    app: Flask, db: Session, outbox: Path, authenticator: SoftAuthenticator
) -> None:
    """A passkey signs in without the password, so one someone else added would survive
    the reset meant to shut them out; and a reset is the way back for whoever lost their
    only passkey (changing second factors needs one)."""
    add_passkey(signed_in_client(app, "linus@acme.test"), authenticator, name="Unknown key")
    client = app.test_client()
    ask_for_reset(client, "linus@acme.test")
    assert choose(client, reset_path(outbox, "linus@acme.test")).status_code == 303
    assert db.scalars(select(Passkey)).all() == []
    assert passkey_sign_in(app.test_client(), authenticator).status_code == 401
    notice = latest_mail_to(outbox, "linus@acme.test")
    assert notice is not None and notice.subject == "Your InvoiceApp password was changed"
    assert "Unknown key" in notice.text and "Unknown key" in notice.html
    assert "http://127.0.0.1:5000/account/passkeys" in notice.links

    # Signed in again with the new password (no second factor left): a new passkey.
    again = app.test_client()
    again.post("/sign-in", data={"email": "linus@acme.test", "password": NEW_PASSWORD})
    add_passkey(again, SoftAuthenticator(authenticator.rp_id, authenticator.origin))


def test_another_accounts_passkey_is_a_404_to_remove(
    app: Flask, db: Session, linus_has_a_passkey: SoftAuthenticator
) -> None:
    public_id = db.scalars(select(Passkey.public_id)).one()
    ada = signed_in_client(app, "ada@acme.test")
    assert ada.post(f"/account/passkeys/{public_id}/remove").status_code == 404
    assert ada.post("/account/passkeys/nothing-here/remove").status_code == 404
    assert len(db.scalars(select(Passkey)).all()) == 1


def test_garbage_is_a_plain_401(app: Flask) -> None:
    client = app.test_client()
    for credential in ("", "not json", "[]", '{"id": 1}', json.dumps({"id": "x" * 70000})):
        response = client.post("/sign-in/passkey", data={"credential": credential})
        assert response.status_code == 401


def test_expired_challenges_are_cleared_as_new_ones_are_made(
    app: Flask, db: Session, clock: Clock
) -> None:
    client = app.test_client()
    for _ in range(3):
        options(client, "/sign-in/passkey/options")
    clock.advance(minutes=6)
    options(client, "/sign-in/passkey/options")
    db.expire_all()
    assert len(db.scalars(select(WebAuthnChallenge)).all()) == 1


def test_a_passkey_sign_in_satisfies_an_organization_that_requires_two_factor(
    app: Flask, db: Session, linus_has_a_passkey: SoftAuthenticator
) -> None:
    db.execute(
        update(Organization).where(Organization.slug == "acme").values(requires_two_factor=True)
    )
    db.commit()
    assert signed_in_client(app, "linus@acme.test").get("/invoices/inv_7").status_code == 403
    browser = app.test_client()
    assert passkey_sign_in(browser, linus_has_a_passkey).status_code == 200
    assert browser.get("/invoices/inv_7").status_code == 200


# --- Step-up with a passkey -------------------------------------------------------------------


def test_step_up_with_a_passkey(
    app: Flask, db: Session, clock: Clock, linus_has_a_passkey: SoftAuthenticator
) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    clock.advance(minutes=11)
    assert linus.get("/account/password").status_code == 302
    page = linus.get("/reauthenticate?next=/account/password").get_data(as_text=True)
    assert 'data-passkey="authenticate"' in page

    offered = options(linus, "/reauthenticate/passkey/options")
    assert [c["id"] for c in offered["allowCredentials"]] == [
        bytes_to_base64url(linus_has_a_passkey.credential_id)
    ]
    assertion = linus_has_a_passkey.get(offered)
    response = linus.post(
        "/reauthenticate/passkey",
        data={"credential": json.dumps(assertion), "next": "/account/password"},
    )
    assert response.get_json() == {"redirect": "/account/password"}
    # This session now says "passkey"; the fixture's own session is untouched.
    assert sorted(proofs(db, "linus@acme.test")) == ["passkey", "password"]
    assert linus.get("/account/password").status_code == 200


def test_someone_elses_passkey_does_not_step_up_your_session(
    app: Flask, db: Session, clock: Clock, linus_has_a_passkey: SoftAuthenticator
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    clock.advance(minutes=11)
    assertion = linus_has_a_passkey.get(options(ada, "/reauthenticate/passkey/options"))
    response = ada.post("/reauthenticate/passkey", data={"credential": json.dumps(assertion)})
    assert response.status_code == 422
    assert proofs(db, "ada@acme.test") == ["password"]
    # Shaped like the 422 it is: the session is fine, only the proof was wrong.
    assert response.get_json()["error"]["code"] == "validation"
    assert "WWW-Authenticate" not in response.headers
    assert user(db, "ada@acme.test").id != db.scalars(select(Passkey.user_id)).one()


def test_passkeys_page_explains_where_passkeys_work(app: Flask) -> None:
    here = signed_in_client(app, "linus@acme.test").get("/account/passkeys")
    assert 'data-passkey="register"' in here.get_data(as_text=True)
    # The demo is served on 127.0.0.1, where WebAuthn refuses: the page says where to go.
    client = app.test_client()
    ip = "http://127.0.0.1"
    client.post("/sign-in", data={"email": "linus@acme.test", "password": PASSWORD}, base_url=ip)
    elsewhere = client.get("/account/passkeys", base_url=ip).get_data(as_text=True)
    assert "http://localhost:5000/account/passkeys" in elsewhere
    assert 'data-passkey="register"' not in elsewhere
