"""Issue 15, items 1 and 2: the email address and the password are recovery credentials,
and a factor planted with a stolen password must not outlive its owner's attention.

1. With a second factor enrolled, changing the email address or the password needs fresh
   proof *with* it (account.email.change, account.password.change). A password sign-in
   of an account whose only second factor is a passkey is a password-only session
   wherever the rule matters (the decision documented in the README).
2. A factor added by a session proven with a password only may be a thief's. The password
   alone never removes it (the thief has the password too, and could strip the owner's own
   new factor that way); the pages and the password-change mail flag it for
   NEW_FACTOR_NOTICE_DAYS and point to the way out: a password reset, which proves the
   mailbox, removes every second factor and ends every session.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from conftest import Clock, make_test_app
from invoiceapp.authz.policy import SELF_SERVICE, Rule
from invoiceapp.models import AccountToken, Organization, Passkey, PersonalAccessToken, TokenPurpose
from support import (
    PASSWORD,
    TESS,
    SoftAuthenticator,
    add_passkey,
    ask_for_reset,
    choose,
    code,
    enrol,
    latest_mail_to,
    new_authenticator,
    passkey_sign_in,
    proofs,
    real_status,
    reset_path,
    signed_in_client,
    signed_in_tess,
    step_up_with_passkey,
    traces_of,
    user,
)

LINUS = "linus@acme.test"
THIEF_ADDRESS = "mallory@evil.example"
NEW_PASSWORD = "quiet orbit lantern meadow 42"
SECOND = "&factor=second"


def email_tokens(db: Session) -> list[AccountToken]:
    db.expire_all()
    return list(
        db.scalars(select(AccountToken).where(AccountToken.purpose == TokenPurpose.CHANGE_EMAIL))
    )


def step_up_with_password(client: FlaskClient, next_path: str) -> None:
    response = client.post("/reauthenticate", data={"password": PASSWORD, "next": next_path})
    assert response.status_code == 303


def change_password(client: FlaskClient) -> object:
    return client.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )


# --- Item 1: email and password changes with a second factor --------------------------------


def test_with_a_passkey_the_email_change_needs_the_passkey_not_just_the_password(
    app: Flask, db: Session, outbox: Path
) -> None:
    """The reviewer's attack: only Linus's password, his second factor a passkey."""
    device = new_authenticator(app)
    add_passkey(signed_in_client(app, LINUS), device)

    thief = signed_in_client(app, LINUS)  # the password: fresh, but password-only
    for response in (
        thief.get("/account/email"),
        thief.post("/account/email", data={"email": THIEF_ADDRESS}),
    ):
        assert response.status_code == 302
        assert response.headers["Location"] == "/reauthenticate?next=/account/email" + SECOND
    assert email_tokens(db) == []
    assert latest_mail_to(outbox, THIEF_ADDRESS) is None
    # The page that asks offers no password-only way through.
    page = thief.get("/reauthenticate?next=/account/email&factor=second").get_data(as_text=True)
    assert 'action="/reauthenticate"' not in page and 'data-passkey="authenticate"' in page

    owner = signed_in_client(app, LINUS)
    step_up_with_passkey(owner, device, "/account/email")
    accepted = owner.post("/account/email", data={"email": "linus@new.example"})
    assert accepted.status_code == 303
    assert [token.email for token in email_tokens(db)] == ["linus@new.example"]


def test_a_stolen_session_and_the_password_cannot_evict_a_totp_user(
    app: Flask, db: Session, clock: Clock, outbox: Path
) -> None:
    """A stolen remember-me session plus the password: email, then password, no longer."""
    stolen = signed_in_tess(app, clock)
    clock.advance(minutes=11)
    step_up_with_password(stolen, "/account")  # fresh now, and password-only again
    assert proofs(db, TESS) == ["password"]
    before = user(db, TESS).password_hash

    email = stolen.post("/account/email", data={"email": THIEF_ADDRESS})
    assert email.headers["Location"] == "/reauthenticate?next=/account/email" + SECOND
    password = change_password(stolen)
    assert password.headers["Location"] == "/reauthenticate?next=/account/password" + SECOND
    assert email_tokens(db) == []
    assert user(db, TESS).password_hash == before
    assert latest_mail_to(outbox, THIEF_ADDRESS) is None

    # With the code as well (the owner), both go through.
    clock.advance(seconds=30)
    step_up = {"password": PASSWORD, "code": code(clock), "next": "/account/password"}
    assert stolen.post("/reauthenticate/code", data=step_up).status_code == 303
    assert change_password(stolen).status_code == 303
    assert user(db, TESS).password_hash != before


def test_a_password_sign_in_of_a_passkey_account_is_password_only_wherever_it_matters(
    app: Flask, db: Session
) -> None:
    """The decision: the password still signs in, as a password-only session."""
    device = new_authenticator(app)
    add_passkey(signed_in_client(app, LINUS), device)
    db.execute(
        update(Organization).where(Organization.slug == "acme").values(requires_two_factor=True)
    )
    db.commit()

    by_password = signed_in_client(app, LINUS)
    assert sorted(proofs(db, LINUS)) == ["password", "password"]
    assert by_password.get("/invoices/inv_7").status_code == 403  # the organization's rule
    for page in ("/account/password", "/account/email"):
        assert by_password.get(page).headers["Location"].endswith(SECOND)
    planting = by_password.post("/account/passkeys/options")
    assert planting.get_json()["error"]["location"].endswith(SECOND)

    by_passkey = app.test_client()
    assert passkey_sign_in(by_passkey, device).status_code == 200
    assert by_passkey.get("/invoices/inv_7").status_code == 200
    assert by_passkey.get("/account/email").status_code == 200


def test_the_policy_table_and_its_printouts_name_the_email_change(app: Flask) -> None:
    strong = Rule.SELF_ELEVATED_STRONG
    assert SELF_SERVICE["account.email.change"] is strong
    assert SELF_SERVICE["account.password.change"] is strong
    assert "account.second_factor.remove_recent" not in SELF_SERVICE  # no password-only removal
    printed = app.test_cli_runner().invoke(args=["policy"]).output
    assert "account.email.change" in printed
    capabilities = signed_in_client(app, LINUS).get("/orgs/acme").get_data(as_text=True)
    assert "account.email.change" in capabilities


def test_the_trace_on_the_account_page_predicts_the_email_change(
    database_file: Path,
) -> None:
    """Demo mode: the account page's trace asks the same table, and the request agrees."""
    demo = make_test_app(database_file, DEMO_MODE=True)
    device = SoftAuthenticator(demo.config["WEBAUTHN_RP_ID"], demo.config["WEBAUTHN_ORIGIN"])
    add_passkey(signed_in_client(demo, LINUS), device)
    by_password = signed_in_client(demo, LINUS)
    traces = traces_of(by_password.get("/account").get_data(as_text=True))
    assert traces["account.email.change"] == "re-authenticate"
    assert real_status(by_password.get("/account/email")) == "re-authenticate"
    step_up_with_passkey(by_password, device, "/account")
    traces = traces_of(by_password.get("/account").get_data(as_text=True))
    assert traces["account.email.change"] == "200"
    assert real_status(by_password.get("/account/email")) == "200"
    demo.extensions["db_engine"].dispose()


# --- Item 2: a factor planted with a stolen password ----------------------------------------


def test_a_totp_planted_with_a_stolen_password_is_flagged_and_a_reset_removes_it(
    app: Flask, db: Session, clock: Clock, outbox: Path
) -> None:
    owner = signed_in_client(app, LINUS)
    thief = signed_in_client(app, LINUS)
    enrol(thief, clock)  # the thief's authenticator app
    assert user(db, LINUS).totp_added_with == "password"

    # The password alone does not turn it off: the thief could do the same to the owner.
    clock.advance(minutes=11)
    step_up_with_password(owner, "/account/two-factor")
    refused = owner.post("/account/two-factor/disable")
    assert refused.headers["Location"] == "/reauthenticate?next=/account/two-factor" + SECOND
    page = owner.get("/account/two-factor").get_data(as_text=True)
    assert 'data-testid="added-without-second-factor"' in page and "/forgot-password" in page
    assert user(db, LINUS).totp_enabled_at is not None

    # The mailbox is what the thief lacks: a reset removes the app and ends their session.
    ask_for_reset(app.test_client(), LINUS)
    assert choose(app.test_client(), reset_path(outbox, LINUS)).status_code == 303
    linus = user(db, LINUS)
    assert linus.totp_enabled_at is None and linus.totp_secret_encrypted is None
    assert thief.get("/dashboard").status_code == 302


def test_a_thief_with_the_password_cannot_strip_the_owners_new_passkey(
    app: Flask, db: Session, clock: Clock
) -> None:
    """The owner's very first passkey is also "added by a password-only session"."""
    device = new_authenticator(app)
    add_passkey(signed_in_client(app, LINUS), device, name="Linus's laptop")
    passkey = db.scalars(select(Passkey)).one()
    assert passkey.added_with == "password"

    clock.advance(minutes=11)
    thief = signed_in_client(app, LINUS)  # the password, nothing else
    remove = f"/account/passkeys/{passkey.public_id}/remove"
    assert thief.post(remove).headers["Location"].endswith(SECOND)
    step_up_with_password(thief, "/account/passkeys")
    assert (
        thief.post(remove).headers["Location"] == "/reauthenticate?next=/account/passkeys" + SECOND
    )
    assert (
        thief.post("/account/email", data={"email": THIEF_ADDRESS})
        .headers["Location"]
        .endswith(SECOND)
    )
    db.expire_all()
    assert len(db.scalars(select(Passkey)).all()) == 1
    assert email_tokens(db) == []
    assert passkey_sign_in(app.test_client(), device).status_code == 200


def test_a_passkey_planted_with_a_stolen_password_is_flagged_and_a_reset_removes_it(
    app: Flask, db: Session, clock: Clock, outbox: Path
) -> None:
    owner = signed_in_client(app, LINUS)
    device = new_authenticator(app)
    add_passkey(signed_in_client(app, LINUS), device, name="Not Linus's")
    planted = db.scalars(select(Passkey)).one()

    clock.advance(minutes=11)
    assert owner.get("/account/password").headers["Location"].endswith(SECOND)
    asked = owner.get("/reauthenticate?next=/account/password&factor=second")
    assert 'data-testid="way-out"' in asked.get_data(as_text=True)
    listed = owner.get("/account/passkeys").get_data(as_text=True)
    assert 'data-testid="added-without-second-factor"' in listed

    step_up_with_password(owner, "/account/passkeys")
    assert (
        owner.post(f"/account/passkeys/{planted.public_id}/remove")
        .headers["Location"]
        .endswith(SECOND)
    )
    ask_for_reset(app.test_client(), LINUS)
    assert choose(app.test_client(), reset_path(outbox, LINUS)).status_code == 303
    db.expire_all()
    assert db.scalars(select(Passkey)).all() == []
    assert passkey_sign_in(app.test_client(), device).status_code == 401


def test_a_factor_added_with_a_second_factor_still_needs_one_to_remove(
    app: Flask, db: Session, clock: Clock
) -> None:
    tess = signed_in_tess(app, clock)  # password and code: a full sign-in
    add_passkey(tess, new_authenticator(app), name="Tess's phone")
    passkey = db.scalars(select(Passkey)).one()
    assert passkey.added_with == "password+totp"

    clock.advance(minutes=11)
    step_up_with_password(tess, "/account/passkeys")  # a password alone
    refused = tess.post(f"/account/passkeys/{passkey.public_id}/remove")
    assert refused.headers["Location"] == "/reauthenticate?next=/account/passkeys" + SECOND
    # The seeded authenticator app predates the record of how factors were added: vouched.
    assert user(db, TESS).totp_added_with is None
    assert tess.post("/account/two-factor/disable").headers["Location"].endswith(SECOND)
    assert user(db, TESS).totp_enabled_at is not None
    assert len(db.scalars(select(Passkey)).all()) == 1


def test_a_week_later_a_factor_added_with_the_password_is_no_longer_flagged(
    app: Flask, db: Session, clock: Clock
) -> None:
    add_passkey(signed_in_client(app, LINUS), new_authenticator(app))
    owner = signed_in_client(app, LINUS)
    flag = 'data-testid="added-without-second-factor"'
    assert flag in owner.get("/account/passkeys").get_data(as_text=True)
    clock.advance(days=7, seconds=1)
    assert flag not in owner.get("/account/passkeys").get_data(as_text=True)


def test_the_password_change_mail_names_factors_added_lately_with_the_password_only(
    app: Flask, db: Session, outbox: Path
) -> None:
    device = new_authenticator(app)
    add_passkey(signed_in_client(app, LINUS), device, name="Unknown key")
    owner = signed_in_client(app, LINUS)
    step_up_with_passkey(owner, device, "/account/password")
    assert change_password(owner).status_code == 303
    notice = latest_mail_to(outbox, LINUS)
    assert notice is not None and notice.subject == "Your InvoiceApp password was changed"
    assert "Unknown key" in notice.text and "Unknown key" in notice.html
    assert "A password reset does" in notice.text
    assert "http://127.0.0.1:5000/forgot-password" in notice.links


def test_a_password_only_session_of_a_passkey_account_cannot_mint_an_api_token(
    app: Flask, db: Session, clock: Clock
) -> None:
    """A token outlives the session and works without the passkey: with a factor set up,
    making one needs fresh proof with it (account.tokens.create), as the review showed."""
    device = new_authenticator(app)
    add_passkey(signed_in_client(app, LINUS), device)
    clock.advance(minutes=11)
    thief = signed_in_client(app, LINUS)
    step_up_with_password(thief, "/account/tokens")
    form = {"name": "mine now", "organization": "acme", "scope": "write", "expires_days": "90"}
    refused = thief.post("/account/tokens", data=form)
    assert refused.headers["Location"] == "/reauthenticate?next=/account/tokens" + SECOND
    page = thief.get("/account/tokens").get_data(as_text=True)
    assert 'action="/account/tokens"' not in page  # the proof it needs, not a form to lose
    assert db.scalars(select(PersonalAccessToken)).all() == []

    step_up_with_passkey(thief, device, "/account/tokens")  # the owner, with the passkey
    assert thief.post("/account/tokens", data=form).status_code == 201
    assert len(db.scalars(select(PersonalAccessToken)).all()) == 1
