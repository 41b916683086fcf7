"""Something you have: TOTP enrolment, the two-step sign-in, recovery codes, step-up with a
code, turning it off, and organizations that require two-factor.

Time is the test's ``clock`` (invoiceapp.db.now_source); every code is computed for that
same instant with pyotp.TOTP(secret).at(clock.now), so no test depends on the wall clock.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from conftest import Clock, make_test_app
from invoiceapp.authn.totp import encrypt_secret
from invoiceapp.db import get_db
from invoiceapp.mail import StoredMail
from invoiceapp.models import (
    Invoice,
    Organization,
    RecoveryCode,
    SecurityEvent,
    User,
    UserSession,
)
from support import (
    PASSWORD,
    TESS,
    TESS_SECRET,
    code,
    csrf_token_from,
    enrol,
    give_recovery_codes,
    latest_mail_to,
    password_step,
    signed_in_client,
    signed_in_tess,
    user,
)


def sessions_of(db: Session, email: str) -> list[UserSession]:
    db.expire_all()
    return list(db.scalars(select(UserSession).join(UserSession.user).where(User.email == email)))


def mail_to(outbox: Path, address: str) -> StoredMail:
    found = latest_mail_to(outbox, address)
    assert found is not None, f"no mail to {address}"
    return found


# --- The two-step sign-in -------------------------------------------------------------------


def test_password_alone_is_not_a_sign_in_when_totp_is_enrolled(
    app: Flask, db: Session, clock: Clock
) -> None:
    client = app.test_client()
    password_step(client)

    # Half signed in is not signed in: no session row, every gate answers as for anonymous.
    assert sessions_of(db, TESS) == []
    assert client.get("/dashboard").headers["Location"].startswith("/sign-in")
    assert client.get("/invoices/inv_7").status_code == 302
    assert client.post("/invoices/inv_7/delete").status_code == 401
    assert client.get("/api/v1/me").status_code == 401
    page = client.get("/sign-in/two-factor").get_data(as_text=True)
    assert 'name="code"' in page


def test_the_right_code_signs_in_and_records_the_second_factor(
    app: Flask, db: Session, clock: Clock
) -> None:
    client = app.test_client()
    password_step(client, next="/invoices")
    response = client.post("/sign-in/two-factor", data={"code": code(clock)})

    assert response.status_code == 303
    assert response.headers["Location"] == "/invoices"  # the next of the first step
    [session] = sessions_of(db, TESS)
    assert session.proof == "password+totp"
    assert client.get("/dashboard").status_code == 200
    # The second step is over: going back to it finds nothing pending.
    assert client.get("/sign-in/two-factor").headers["Location"] == "/sign-in"


def test_a_wrong_code_is_401_and_says_nothing_about_the_password(
    app: Flask, db: Session, clock: Clock
) -> None:
    client = app.test_client()
    password_step(client)
    wrong = f"{(int(code(clock)) + 1) % 1_000_000:06d}"
    response = client.post("/sign-in/two-factor", data={"code": wrong})

    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    alert = re.search(r'role="alert">([^<]*)<', response.get_data(as_text=True)).group(1)
    assert alert.startswith("That code did not work") and "password" not in alert
    assert sessions_of(db, TESS) == []
    kinds = db.scalars(select(SecurityEvent.kind).where(SecurityEvent.user_id == user(db, TESS).id))
    assert "two_factor_failed" in list(kinds)
    # The pending step survives one typo: the right code still works.
    assert client.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 303


def test_a_code_works_once_only(app: Flask, db: Session, clock: Clock) -> None:
    first = app.test_client()
    password_step(first)
    used = code(clock)
    assert first.post("/sign-in/two-factor", data={"code": used}).status_code == 303

    # Seen over a shoulder and replayed within the same 30 seconds: refused.
    thief = app.test_client()
    password_step(thief)
    assert thief.post("/sign-in/two-factor", data={"code": used}).status_code == 401
    # So is the previous step's code, although it is inside the ±1 window.
    assert (
        thief.post("/sign-in/two-factor", data={"code": code(clock, steps=-1)}).status_code == 401
    )

    clock.advance(seconds=30)
    assert thief.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 303


@pytest.mark.parametrize(("steps", "status"), [(-2, 401), (-1, 303), (0, 303), (1, 303), (2, 401)])
def test_one_step_of_clock_drift_either_way_is_accepted_two_are_not(
    app: Flask, clock: Clock, steps: int, status: int
) -> None:
    client = app.test_client()
    password_step(client)
    response = client.post("/sign-in/two-factor", data={"code": code(clock, steps=steps)})
    assert response.status_code == status


def test_spaces_in_the_code_are_fine(app: Flask, clock: Clock) -> None:
    client = app.test_client()
    password_step(client)
    typed = code(clock)
    assert (
        client.post("/sign-in/two-factor", data={"code": f" {typed[:3]} {typed[3:]} "}).status_code
        == 303
    )


def test_the_pending_step_expires_after_five_minutes(app: Flask, db: Session, clock: Clock) -> None:
    client = app.test_client()
    password_step(client)
    clock.advance(minutes=5, seconds=1)

    response = client.post("/sign-in/two-factor", data={"code": code(clock)})
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    assert "took too long" in client.get("/sign-in").get_data(as_text=True)
    assert sessions_of(db, TESS) == []
    # The expired note is gone: the form does not come back either.
    assert client.get("/sign-in/two-factor").headers["Location"] == "/sign-in"


def test_just_inside_five_minutes_still_works(app: Flask, clock: Clock) -> None:
    client = app.test_client()
    password_step(client)
    clock.advance(minutes=4, seconds=59)
    assert client.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 303


def test_the_second_step_without_a_right_password_first_goes_back_to_sign_in(
    app: Flask, clock: Clock
) -> None:
    client = app.test_client()
    assert client.get("/sign-in/two-factor").headers["Location"] == "/sign-in"
    response = client.post("/sign-in/two-factor", data={"code": code(clock)})
    assert response.status_code == 303 and response.headers["Location"] == "/sign-in"
    # A wrong password never reaches the second step, for an enrolled account too.
    wrong = client.post("/sign-in", data={"email": TESS, "password": "not her password"})
    assert wrong.status_code == 401


def test_a_password_reset_voids_a_half_finished_sign_in(
    app: Flask, db: Session, clock: Clock
) -> None:
    client = app.test_client()
    password_step(client)
    db.execute(update(User).where(User.email == TESS).values(password_hash="$argon2id$changed"))
    db.commit()
    response = client.post("/sign-in/two-factor", data={"code": code(clock)})
    assert response.headers["Location"] == "/sign-in"


def test_both_steps_through_the_real_forms_with_csrf_on(csrf_app: Flask, clock: Clock) -> None:
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    response = client.post(
        "/sign-in", data={"email": TESS, "password": PASSWORD, "csrf_token": token}
    )
    assert response.headers["Location"] == "/sign-in/two-factor"
    page = client.get("/sign-in/two-factor").get_data(as_text=True)
    assert client.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 400
    data = {"code": code(clock), "csrf_token": csrf_token_from(page)}
    assert client.post("/sign-in/two-factor", data=data).status_code == 303
    assert client.get("/dashboard").status_code == 200


def test_accounts_without_totp_still_sign_in_with_the_password(app: Flask, db: Session) -> None:
    client = app.test_client()
    response = client.post("/sign-in", data={"email": "linus@acme.test", "password": PASSWORD})
    assert response.headers["Location"] == "/dashboard"
    assert [s.proof for s in sessions_of(db, "linus@acme.test")] == ["password"]


# --- Recovery codes ---------------------------------------------------------------------------


def test_a_recovery_code_signs_in_once_and_its_owner_is_told(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    codes = give_recovery_codes(app, db, TESS)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z0-9]{5}-[a-z0-9]{5}", c) for c in codes)

    client = app.test_client()
    password_step(client)
    assert client.post("/sign-in/two-factor", data={"code": codes[0].upper()}).status_code == 303
    [session] = sessions_of(db, TESS)
    assert session.proof == "password+recovery_code"
    notice = mail_to(outbox, TESS)
    assert "recovery code" in notice.subject.lower() and "9 unused" in notice.text

    again = app.test_client()
    password_step(again)
    assert again.post("/sign-in/two-factor", data={"code": codes[0]}).status_code == 401
    assert again.post("/sign-in/two-factor", data={"code": codes[1]}).status_code == 303


def test_recovery_codes_are_stored_only_as_keyed_hashes(app: Flask, db: Session) -> None:
    codes = give_recovery_codes(app, db, TESS)
    hashes = db.scalars(select(RecoveryCode.code_hash)).all()
    assert len(hashes) == 10
    assert not set(codes) & set(hashes)
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)


def test_another_accounts_recovery_code_does_not_work(app: Flask, db: Session) -> None:
    # Ada is not enrolled; give her codes anyway and try one as Tess.
    adas = give_recovery_codes(app, db, "ada@acme.test")
    client = app.test_client()
    password_step(client)
    assert client.post("/sign-in/two-factor", data={"code": adas[0]}).status_code == 401


# --- Enrolment --------------------------------------------------------------------------------


def test_enrolment_shows_uri_and_qr_code_and_keeps_the_secret_encrypted(
    app: Flask, db: Session, database_file: Path, outbox: Path, clock: Clock
) -> None:
    client = signed_in_client(app, "linus@acme.test")
    assert client.post("/account/two-factor/start").status_code == 303  # "Set up"
    html = client.get("/account/two-factor").get_data(as_text=True)
    match = re.search(r'data-testid="totp-uri">(otpauth://totp/InvoiceApp:[^<]+)<', html)
    assert match, "the otpauth:// URI is shown as text"
    uri = match.group(1).replace("&amp;", "&")
    assert "issuer=InvoiceApp" in uri
    assert 'src="data:image/svg+xml;base64,' in html  # a server-rendered QR code
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    # Reloading the page shows the same secret, not a new one each time.
    assert secret in client.get("/account/two-factor").get_data(as_text=True).replace(" ", "")

    linus = user(db, "linus@acme.test")
    assert linus.totp_secret_encrypted is not None and linus.totp_enabled_at is None
    assert secret not in linus.totp_secret_encrypted
    # A wrong code does not switch it on.
    wrong = f"{(int(code(clock, secret)) + 1) % 1_000_000:06d}"
    assert client.post("/account/two-factor", data={"code": wrong}).status_code == 422
    assert user(db, "linus@acme.test").totp_enabled_at is None

    assert client.post("/account/two-factor", data={"code": code(clock, secret)}).status_code == 200
    linus = user(db, "linus@acme.test")
    assert linus.totp_enabled_at is not None
    assert "turned on" in mail_to(outbox, "linus@acme.test").text
    db.close()
    app.extensions["db_engine"].dispose()
    # Nowhere in the database file, in any spelling.
    data = b"".join(p.read_bytes() for p in database_file.parent.glob(database_file.name + "*"))
    assert secret.encode() not in data and secret.lower().encode() not in data

    # From now on Linus's password leads to the second step.
    fresh = app.test_client()
    password_step(fresh, "linus@acme.test")
    clock.advance(seconds=30)
    assert fresh.post("/sign-in/two-factor", data={"code": code(clock, secret)}).status_code == 303


def test_the_secret_is_bound_to_its_user(app: Flask, db: Session, clock: Clock) -> None:
    """A ciphertext copied into another user's row does not decrypt there."""
    tess = user(db, TESS)
    db.execute(
        update(User)
        .where(User.email == "linus@acme.test")
        .values(
            totp_secret_encrypted=tess.totp_secret_encrypted, totp_enabled_at=tess.totp_enabled_at
        )
    )
    db.commit()
    client = app.test_client()
    password_step(client, "linus@acme.test")
    assert client.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 401


def test_enrolment_needs_a_fresh_session(app: Flask, clock: Clock) -> None:
    client = signed_in_client(app, "linus@acme.test")
    clock.advance(minutes=11)
    response = client.get("/account/two-factor")
    assert response.status_code == 302
    assert response.headers["Location"] == "/reauthenticate?next=/account/two-factor"
    assert client.post("/account/two-factor", data={"code": "123456"}).status_code == 302


def test_new_recovery_codes_replace_the_old_ones(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    client = signed_in_client(app, "linus@acme.test")
    secret, old = enrol(client, clock)
    # Enrolled in a password-only session: new codes need the new factor first.
    asked = client.post("/account/two-factor/recovery-codes")
    assert asked.headers["Location"] == "/reauthenticate?next=/account/two-factor&factor=second"
    clock.advance(seconds=30)
    step_up = {"password": PASSWORD, "code": code(clock, secret), "next": "/account/two-factor"}
    assert client.post("/reauthenticate/code", data=step_up).status_code == 303
    page = client.post("/account/two-factor/recovery-codes")
    new = re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", page.get_data(as_text=True))
    assert len(new) == 10 and not set(old) & set(new)
    assert db.scalar(select(func.count()).select_from(RecoveryCode)) == 10
    assert "New recovery codes were made" in mail_to(outbox, "linus@acme.test").text

    other = app.test_client()
    password_step(other, "linus@acme.test")
    assert other.post("/sign-in/two-factor", data={"code": old[0]}).status_code == 401
    assert other.post("/sign-in/two-factor", data={"code": new[0]}).status_code == 303


# --- Step-up (re-authentication) with a second factor ---------------------------------------


def test_step_up_with_a_totp_code(app: Flask, db: Session, clock: Clock) -> None:
    client = signed_in_tess(app, clock)
    clock.advance(minutes=11)
    # A password change wants the second factor (account.password.change): asked up front.
    assert client.get("/account/password").headers["Location"] == (
        "/reauthenticate?next=/account/password&factor=second"
    )
    page = client.get("/reauthenticate?next=/account/password").get_data(as_text=True)
    assert 'action="/reauthenticate/code"' in page and 'name="password"' in page

    wrong = client.post(
        "/reauthenticate/code",
        data={"password": PASSWORD, "code": "000000", "next": "/account/password"},
    )
    assert wrong.status_code == 422
    response = client.post(
        "/reauthenticate/code",
        data={"password": PASSWORD, "code": code(clock), "next": "/account/password"},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/account/password"
    [session] = sessions_of(db, TESS)
    assert session.proof == "password+totp"
    assert session.authenticated_at == clock.now
    assert client.get("/account/password").status_code == 200


def test_a_code_alone_is_not_a_step_up_the_password_comes_with_it(
    app: Flask, db: Session, clock: Clock
) -> None:
    """A stolen cookie plus a phished code must not elevate the session (review finding):
    the step-up that records "password+totp" asks for both, and a wrong password never
    spends the code."""
    client = signed_in_tess(app, clock)
    clock.advance(minutes=11)
    clock.advance(seconds=30)
    only_code = client.post(
        "/reauthenticate/code", data={"code": code(clock), "next": "/account/email"}
    )
    assert only_code.status_code == 422
    wrong_password = client.post(
        "/reauthenticate/code",
        data={"password": "not the password", "code": code(clock), "next": "/account/email"},
    )
    assert wrong_password.status_code == 422
    assert "did not work together" in wrong_password.get_data(as_text=True)
    assert client.get("/account/email").status_code == 302  # still not elevated
    both = client.post(
        "/reauthenticate/code",
        data={"password": PASSWORD, "code": code(clock), "next": "/account/email"},
    )
    assert both.status_code == 303  # the same code still works: it was never spent
    assert client.get("/account/email").status_code == 200


def test_a_secret_still_being_enrolled_is_no_second_factor(
    app: Flask, db: Session, clock: Clock
) -> None:
    """Review finding: the set-up page shows a new secret to anyone with a fresh password,
    and a code from it was accepted as step-up, giving a "password+totp" session: past an
    organization's two-factor rule, or on to replacing a passkey-only user's passkey."""
    require_two_factor(db, "acme")
    linus = signed_in_client(app, "linus@acme.test")  # no second factor at all
    linus.post("/account/two-factor/start")
    html = linus.get("/account/two-factor").get_data(as_text=True)
    uri = re.search(r'data-testid="totp-uri">([^<]+)<', html).group(1).replace("&amp;", "&")
    pending = parse_qs(urlsplit(uri).query)["secret"][0]
    step_up = {"password": PASSWORD, "code": code(clock, pending), "next": "/invoices"}
    assert linus.post("/reauthenticate/code", data=step_up).status_code == 422
    assert sessions_of(db, "linus@acme.test")[0].proof == "password"
    assert linus.get("/invoices").status_code == 403


def test_a_password_only_step_up_cannot_mint_recovery_codes(
    app: Flask, db: Session, clock: Clock
) -> None:
    """Review finding: new recovery codes after a password step-up, then one of them as
    "the second factor", turned TOTP off with a cookie and a password alone."""
    client = signed_in_tess(app, clock)
    client.post("/account/elevation/end")
    client.post("/reauthenticate", data={"password": PASSWORD, "next": "/account/two-factor"})
    codes_before = db.scalars(select(RecoveryCode.id)).all()
    response = client.post("/account/two-factor/recovery-codes")
    assert response.headers["Location"].endswith("&factor=second")
    db.expire_all()
    assert db.scalars(select(RecoveryCode.id)).all() == codes_before  # nothing minted
    assert client.post("/account/two-factor/disable").headers["Location"].endswith("&factor=second")
    assert user(db, TESS).totp_enabled_at is not None


def test_turning_totp_off_needs_a_fresh_second_factor_not_just_the_password(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    client = signed_in_tess(app, clock)
    clock.advance(minutes=11)
    second = "/reauthenticate?next=/account/two-factor&factor=second"
    assert client.post("/account/two-factor/disable").headers["Location"] == second

    # The password is fresh proof, but not of the second factor.
    client.post("/reauthenticate", data={"password": PASSWORD, "next": "/account/two-factor"})
    assert sessions_of(db, TESS)[0].proof == "password"
    assert client.post("/account/two-factor/disable").headers["Location"] == second
    page = client.get(second).get_data(as_text=True)
    # Only the form that proves the second factor: the password with a code.
    assert 'action="/reauthenticate"' not in page and 'name="code"' in page
    assert user(db, TESS).totp_enabled_at is not None

    clock.advance(seconds=30)
    client.post(
        "/reauthenticate/code",
        data={"password": PASSWORD, "code": code(clock), "next": "/account/two-factor"},
    )
    response = client.post("/account/two-factor/disable")
    assert response.status_code == 303
    tess = user(db, TESS)
    assert tess.totp_enabled_at is None and tess.totp_secret_encrypted is None
    assert "turned off" in mail_to(outbox, TESS).text

    again = app.test_client()
    response = again.post("/sign-in", data={"email": TESS, "password": PASSWORD})
    assert response.headers["Location"] == "/dashboard"


def test_a_password_step_up_makes_the_session_password_only_again(
    app: Flask, db: Session, clock: Clock
) -> None:
    client = signed_in_tess(app, clock)
    assert sessions_of(db, TESS)[0].proof == "password+totp"
    client.post("/reauthenticate", data={"password": PASSWORD})
    assert sessions_of(db, TESS)[0].proof == "password"


# --- An organization that requires two-factor ---------------------------------------------


def require_two_factor(db: Session, slug: str) -> None:
    db.execute(
        update(Organization).where(Organization.slug == slug).values(requires_two_factor=True)
    )
    db.commit()


def test_the_rule_refuses_password_sessions_in_that_organization_only(
    app: Flask, db: Session, clock: Clock
) -> None:
    require_two_factor(db, "acme")
    grace = signed_in_client(app, "grace@acme.test")  # admin in acme, member in globex

    refused = grace.get("/invoices/inv_7")
    assert refused.status_code == 403
    assert "requires two-factor" in refused.get_data(as_text=True)
    assert grace.post("/invoices/inv_7/delete").status_code == 403
    # The same person, the same session, another organization: unaffected.
    assert grace.get("/invoices/inv_42").status_code == 200

    # Tess proved a second factor at sign-in: acme lets her in.
    tess = signed_in_tess(app, clock)
    assert tess.get("/invoices/inv_7").status_code == 200


def test_the_dashboard_of_such_an_organization_shows_the_rule_not_its_invoices(
    app: Flask, db: Session, clock: Clock
) -> None:
    acme_customers = set(
        db.scalars(select(Invoice.customer).join(Organization).where(Organization.slug == "acme"))
    )
    require_two_factor(db, "acme")
    grace = signed_in_client(app, "grace@acme.test")  # acme is her active organization

    page = grace.get("/dashboard")
    assert page.status_code == 200  # where sign-in lands: the page stays, the data goes
    body = page.get_data(as_text=True)
    assert 'data-testid="dashboard-refused"' in body
    assert "requires two-factor" in body
    assert '<a class="button" href="/account/two-factor">' in body
    assert not [customer for customer in acme_customers if customer in body]
    assert 'class="stat-number"' not in body

    # In globex, which has no such rule, the same session sees its dashboard.
    grace.post("/orgs/switch", data={"organization": "globex"})
    body = grace.get("/dashboard").get_data(as_text=True)
    assert 'data-testid="dashboard-refused"' not in body
    assert 'class="stat-number"' in body

    # With a second factor proven at sign-in, acme's invoices are back.
    tess = signed_in_tess(app, clock)
    body = tess.get("/dashboard").get_data(as_text=True)
    assert 'data-testid="dashboard-refused"' not in body
    assert [customer for customer in acme_customers if customer in body]


# Routes whose argument is a one-time token or a file: nothing of an organization's there.
NOT_ORGANIZATION_PAGES = {"token", "mail_id", "filename"}
# Fixed documents whose examples borrow the seed's customer names.
FIXED_DOCUMENTS = {"/api/v1/docs", "/api/v1/openapi.json"}


@pytest.mark.parametrize("demo_mode", [False, True], ids=["plain", "demo"])
def test_no_page_shows_such_an_organization_s_invoices_to_a_password_only_session(
    database_file: Path, demo_mode: bool
) -> None:
    """Every GET route, walked from the URL map: a page added later that forgets to ask
    the policy fails here, as the dashboard did."""
    app = make_test_app(database_file, DEMO_MODE=demo_mode)
    with app.app_context():
        db = get_db()
        acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
        assert acme is not None
        hidden = {
            text
            for public_id, customer in db.execute(
                select(Invoice.public_id, Invoice.customer).where(
                    Invoice.organization_id == acme.id
                )
            )
            for text in (public_id, customer)
        } - {"inv_7"}  # the one id the walk itself asks for (and the lesson names)
        acme.requires_two_factor = True
        db.commit()
    grace = signed_in_client(app, "grace@acme.test")  # admin in acme, by password only
    values = {"invoice_id": "inv_7", "slug": "acme", "part": "status"}
    visited = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments & NOT_ORGANIZATION_PAGES:
            continue
        path = rule.build(values, append_unknown=False)[1]  # type: ignore[index]
        if path in FIXED_DOCUMENTS:
            continue
        body = grace.get(path).get_data(as_text=True)
        shown = sorted(text for text in hidden if text in body)
        assert not shown, f"{path} shows {shown}"
        visited.append(path)
    assert {"/dashboard", "/invoices", "/invoices/inv_7", "/orgs/acme/audit"} <= set(visited)
    assert "/api/v1/invoices/inv_7" in visited and "/invoices/export.csv" in visited


def test_the_owner_switches_the_rule_on_only_with_their_own_second_factor(
    app: Flask, db: Session, clock: Clock
) -> None:
    ada = signed_in_client(app, "ada@acme.test")
    settings = {"requires_two_factor": "on"}

    # No second factor of her own: refused, with the reason beside the checkbox.
    refused = ada.post("/orgs/acme/settings", data=settings)
    assert refused.status_code == 422
    assert "Set up two-factor sign-in for your own account first" in refused.get_data(as_text=True)
    assert not db.scalar(
        select(Organization.requires_two_factor).where(Organization.slug == "acme")
    )

    secret, _codes = enrol(ada, clock)
    # Enrolled, but this session was proven with the password: confirm with the code first.
    response = ada.post("/orgs/acme/settings", data=settings)
    assert response.headers["Location"] == "/reauthenticate?next=/orgs/acme&factor=second"
    clock.advance(seconds=30)
    ada.post(
        "/reauthenticate/code",
        data={"password": PASSWORD, "code": code(clock, secret), "next": "/orgs/acme"},
    )
    assert ada.post("/orgs/acme/settings", data=settings).status_code == 303
    db.expire_all()
    assert db.scalar(select(Organization.requires_two_factor).where(Organization.slug == "acme"))
    assert 'data-testid="requires-two-factor">on<' in ada.get("/orgs/acme").get_data(as_text=True)

    # Grace's password-only session now gets 403 in acme, and still works in globex.
    grace = signed_in_client(app, "grace@acme.test")
    assert grace.get("/invoices/inv_7").status_code == 403
    assert grace.get("/invoices/inv_42").status_code == 200


def test_switching_the_rule_either_way_needs_a_fresh_session(
    app: Flask, db: Session, clock: Clock
) -> None:
    with app.app_context():
        ada = user(db, "ada@acme.test")
        ada.totp_secret_encrypted = encrypt_secret(TESS_SECRET, ada.id)
        ada.totp_enabled_at = clock.now
        db.commit()
    require_two_factor(db, "acme")
    client = app.test_client()
    password_step(client, "ada@acme.test")
    client.post("/sign-in/two-factor", data={"code": code(clock)})
    clock.advance(minutes=11)

    # The other flag alone is an ordinary setting: no re-authentication.
    keep_rule = {"requires_two_factor": "on", "invoice_duplication": "on"}
    assert client.post("/orgs/acme/settings", data=keep_rule).status_code == 303
    # Switching the rule off is not: a stale session confirms first, with the second factor
    # (it is the security policy's proof rule, and /orgs/acme/security asks the same).
    response = client.post("/orgs/acme/settings", data={})
    assert response.headers["Location"] == "/reauthenticate?next=/orgs/acme&factor=second"
    db.expire_all()
    assert db.scalar(select(Organization.requires_two_factor).where(Organization.slug == "acme"))


def test_members_and_admins_cannot_switch_the_rule(app: Flask, db: Session, clock: Clock) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    assert grace.post("/orgs/acme/settings", data={"requires_two_factor": "on"}).status_code == 403
    tess = signed_in_tess(app, clock)
    assert tess.post("/orgs/acme/settings", data={"requires_two_factor": "on"}).status_code == 403


def test_only_the_owner_sees_the_switch(app: Flask) -> None:
    ada = signed_in_client(app, "ada@acme.test").get("/orgs/acme").get_data(as_text=True)
    grace = signed_in_client(app, "grace@acme.test").get("/orgs/acme").get_data(as_text=True)
    assert 'name="requires_two_factor"' in ada
    assert 'name="requires_two_factor"' not in grace


# --- Rate limits --------------------------------------------------------------------------


def test_wrong_codes_are_limited_per_account_and_the_owners_browser_keeps_its_own_count(
    database_file: Path, clock: Clock
) -> None:
    app = make_test_app(
        database_file, RATELIMIT_ENABLED=True, TWO_FACTOR_ACCOUNT_RATE_LIMIT="3 per hour"
    )
    # Tess's own browser signed in before: it holds a device cookie for her account.
    owner = app.test_client()
    password_step(owner)
    assert owner.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 303
    owner.post("/sign-out")

    # Someone with her password guesses codes from ever-new addresses and browsers.
    statuses = []
    for attempt in range(4):
        thief = app.test_client()
        address = {"REMOTE_ADDR": f"198.51.100.{attempt + 1}"}
        thief.post("/sign-in", data={"email": TESS, "password": PASSWORD}, environ_base=address)
        response = thief.post("/sign-in/two-factor", data={"code": "000000"}, environ_base=address)
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429]

    clock.advance(seconds=30)
    password_step(owner)
    assert owner.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 303
    app.extensions["db_engine"].dispose()


# --- The page itself: starting over, and what someone with an app sees ----------------------


def shown_secret(client: FlaskClient) -> str:
    html = client.get("/account/two-factor").get_data(as_text=True)
    if 'data-testid="totp-start"' in html:  # not started yet: press "Set up"
        client.post("/account/two-factor/start")
        html = client.get("/account/two-factor").get_data(as_text=True)
    uri = re.search(r'data-testid="totp-uri">([^<]+)<', html).group(1).replace("&amp;", "&")
    return parse_qs(urlsplit(uri).query)["secret"][0]


def test_starting_enrolment_over_shows_a_new_secret_and_the_old_one_no_longer_confirms(
    app: Flask, db: Session, clock: Clock
) -> None:
    client = signed_in_client(app, "linus@acme.test")
    first = shown_secret(client)

    restarted = client.post("/account/two-factor/restart")

    assert restarted.status_code == 303
    assert restarted.headers["Location"] == "/account/two-factor"
    second = shown_secret(client)
    assert second != first
    # Whatever holds the first secret was the wrong place: its codes switch nothing on.
    wrong_place = client.post("/account/two-factor", data={"code": code(clock, first)})
    assert wrong_place.status_code == 422
    assert user(db, "linus@acme.test").totp_enabled_at is None
    assert client.post("/account/two-factor", data={"code": code(clock, second)}).status_code == 200
    assert user(db, "linus@acme.test").totp_enabled_at is not None


def test_starting_over_leaves_an_app_that_is_already_on_alone(
    app: Flask, db: Session, clock: Clock
) -> None:
    tess = signed_in_tess(app, clock)
    before = user(db, TESS).totp_secret_encrypted

    restarted = tess.post("/account/two-factor/restart")

    assert restarted.status_code == 303
    assert restarted.headers["Location"] == "/account/two-factor"
    db.expire_all()
    assert user(db, TESS).totp_secret_encrypted == before
    assert user(db, TESS).totp_enabled_at is not None


def test_the_two_factor_page_of_someone_with_an_app_manages_it_and_shows_no_secret(
    app: Flask, clock: Clock
) -> None:
    page = signed_in_tess(app, clock).get("/account/two-factor")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="totp-status">On since' in html
    assert 'action="/account/two-factor/recovery-codes"' in html
    assert 'action="/account/two-factor/disable"' in html
    assert "Turn off two-factor sign-in" in html
    # Enrolment is over: no secret, no QR code, nothing to scan again.
    assert 'data-testid="totp-uri"' not in html
    assert "otpauth://" not in html
    assert TESS_SECRET not in html.replace(" ", "")
