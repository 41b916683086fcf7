"""An account chooses how it signs in (issue 18, item 4), never leaving itself no way in;
and a bearer token never passes for a stronger proof than "token" (item 6)."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from invoiceapp.authn.sign_in_methods import LAST_PASSKEY, NEEDS_PASSKEY
from invoiceapp.mail import read_outbox
from invoiceapp.models import EmailSignIn, Passkey, SecurityEvent
from invoiceapp.views.account.sign_in import SIGN_IN_FAILED
from support import (
    NEW_PASSWORD,
    PASSWORD,
    SoftAuthenticator,
    add_passkey,
    ask_for_reset,
    bearer,
    choose,
    finished,
    latest_mail_to,
    make_token,
    new_authenticator,
    passkey_sign_in,
    proofs,
    reset_path,
    signed_in_client,
    step_up_with_passkey,
    user,
)

LINUS, ADA = "linus@acme.test", "ada@acme.test"
METHODS = "/account/security/sign-in-methods"


def turn(client: FlaskClient, method: str, enabled: str) -> object:
    return client.post(METHODS, data={"method": method, "enabled": enabled})


def passwordless_linus(app: Flask) -> tuple[FlaskClient, SoftAuthenticator]:
    """Linus adds a passkey, confirms with it, and turns password sign-in off."""
    linus = signed_in_client(app, LINUS)
    device = new_authenticator(app)
    add_passkey(linus, device, name="Laptop")
    step_up_with_passkey(linus, device, "/account/security")
    turned = turn(linus, "password", "off")
    assert turned.status_code == 303, turned.get_data(as_text=True)
    return linus, device


def code_in(text: str) -> str:
    found = re.search(r"^(\d{6})$", text, re.MULTILINE)
    assert found, text
    return found.group(1)


def sign_in_page(client: FlaskClient, email: str, password: str) -> tuple[int, str]:
    """The status and the page, without its per-browser CSRF tokens."""
    response = client.post("/sign-in", data={"email": email, "password": password})
    page = re.sub(r'value="[^"]*\.[^"]*\.[^"]*"', "", response.get_data(as_text=True))
    return response.status_code, page


def test_password_sign_in_cannot_be_turned_off_without_a_passkey(app: Flask, db: Session) -> None:
    linus = signed_in_client(app, LINUS)  # fresh: just signed in
    refused = turn(linus, "password", "off")
    assert refused.status_code == 409
    assert NEEDS_PASSKEY in refused.get_data(as_text=True)
    assert user(db, LINUS).password_sign_in is True


def test_a_passwordless_account_refuses_even_the_right_password_with_the_same_message(
    app: Flask, db: Session, outbox: Path
) -> None:
    linus, device = passwordless_linus(app)
    assert user(db, LINUS).password_sign_in is False
    event = db.scalars(
        select(SecurityEvent).where(SecurityEvent.kind == "sign_in_methods_changed")
    ).one()
    assert event.detail == "password sign-in turned off"
    notice = latest_mail_to(outbox, LINUS)
    assert notice is not None and "Password sign-in was turned off" in notice.text

    right = sign_in_page(app.test_client(), LINUS, PASSWORD)
    wrong = sign_in_page(app.test_client(), LINUS, "not the password at all")
    assert right[0] == wrong[0] == 401
    assert SIGN_IN_FAILED in right[1]
    assert right[1].replace(LINUS, "") == wrong[1].replace(LINUS, "")
    # The passkey still signs in, and the old password cannot confirm it's you either.
    assert passkey_sign_in(app.test_client(), device).status_code == 200
    again = linus.post("/reauthenticate", data={"password": PASSWORD, "next": "/account"})
    assert again.status_code == 422


def test_the_last_passkey_cannot_be_removed_while_password_sign_in_is_off(
    app: Flask, db: Session
) -> None:
    linus, _device = passwordless_linus(app)
    public_id = db.scalars(select(Passkey.public_id)).one()
    refused = linus.post(f"/account/passkeys/{public_id}/remove", follow_redirects=True)
    assert LAST_PASSKEY in refused.get_data(as_text=True)
    db.expire_all()
    assert db.scalars(select(Passkey)).all() != []


def test_turning_a_method_off_asks_for_the_second_factor_when_one_is_enrolled(
    app: Flask, db: Session
) -> None:
    linus = signed_in_client(app, LINUS)
    add_passkey(linus, new_authenticator(app))
    # Fresh, but proven with the password only: a stolen session plus the password must
    # not be able to lock the owner out.
    asked = turn(linus, "email", "off")
    assert asked.status_code == 302
    assert asked.headers["Location"] == "/reauthenticate?next=/account/security&factor=second"
    assert user(db, LINUS).email_sign_in is True


def test_a_password_reset_turns_password_sign_in_back_on(
    app: Flask, db: Session, outbox: Path
) -> None:
    """The reset removes every passkey (authn/factors.py), so the new password is the way in."""
    passwordless_linus(app)
    browser = app.test_client()
    ask_for_reset(browser, LINUS)
    assert choose(browser, reset_path(outbox, LINUS)).status_code == 303
    assert user(db, LINUS).password_sign_in is True
    assert sign_in_page(app.test_client(), LINUS, NEW_PASSWORD)[0] == 303


def test_turning_email_sign_in_off_kills_codes_in_flight_and_sends_no_more(
    app: Flask, db: Session, outbox: Path
) -> None:
    asker = app.test_client()
    finished(asker.post("/sign-in/code", data={"email": ADA}))
    code = code_in(read_outbox(outbox)[0].text)

    ada = signed_in_client(app, ADA)
    assert turn(ada, "email", "off").status_code == 303
    assert db.scalars(select(EmailSignIn)).all() == []
    assert asker.post("/sign-in/code/verify", data={"code": code}).status_code == 401
    mails = len(read_outbox(outbox))
    finished(app.test_client().post("/sign-in/link", data={"email": ADA}))
    assert len(read_outbox(outbox)) == mails
    page = ada.get("/account/security").get_data(as_text=True)
    assert "Codes and links by email: off" in page


# ---------------------------------------------------------------------------
# Item 6: a bearer token is proof "token", whatever session made it
# ---------------------------------------------------------------------------


def test_a_token_is_proof_token_even_beside_an_email_code_session(
    app: Flask, db: Session, outbox: Path
) -> None:
    browser = app.test_client()
    finished(browser.post("/sign-in/code", data={"email": ADA}))
    code = code_in(read_outbox(outbox)[0].text)
    assert browser.post("/sign-in/code/verify", data={"code": code}).status_code == 303
    assert proofs(db, ADA) == ["email_code"]
    raw = make_token(app, ADA, "acme")

    with app.test_request_context("/api/v1/me", headers=bearer(raw)):
        from invoiceapp.principal import current_principal

        principal = current_principal()
        assert principal is not None and principal.proof == "token"
        assert not principal.two_factor_proven
    # The cookie and the token together: the token decides, and it says "token".
    me = browser.get("/api/v1/me", headers=bearer(raw)).get_json()
    assert me["authentication"]["method"] == "token"


def test_no_cookieless_request_can_finish_a_code_link_or_passkey_sign_in(
    app: Flask, db: Session, outbox: Path
) -> None:
    """A token is honoured on /api/ only; the sign-in pages never turn it into a session."""
    raw = make_token(app, ADA, "acme")
    api_client = app.test_client(use_cookies=False)
    finished(api_client.post("/sign-in/link", data={"email": ADA}, headers=bearer(raw)))
    finished(api_client.post("/sign-in/code", data={"email": ADA}, headers=bearer(raw)))
    mail = latest_mail_to(outbox, ADA)
    assert mail is not None
    [link] = [link for link in read_outbox(outbox)[1].links if "/sign-in/link/" in link]
    code = code_in(mail.text)

    path = link.removeprefix("http://127.0.0.1:5000")
    assert api_client.post(path, headers=bearer(raw)).status_code == 401
    typed = api_client.post("/sign-in/code/verify", data={"code": code}, headers=bearer(raw))
    assert typed.status_code == 303  # no browser note: back to the sign-in page
    assert api_client.post("/sign-in/passkey", headers=bearer(raw)).status_code == 401
    assert proofs(db, ADA) == []
    # And a session page given only the token is anonymous.
    assert api_client.get("/account/security", headers=bearer(raw)).status_code == 302
