"""Sign-in defences that keep the owner in and the guesser out, and the lesson's four
bug sentences, each a test that fails if the bug came back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import Clock, make_test_app
from invoiceapp.models import SecurityEvent, UserSession
from support import PASSWORD, invoice, sign_in, signed_in_client, user


@pytest.fixture()
def limited_app(database_file: Path) -> Iterator[Flask]:
    app = make_test_app(
        database_file,
        RATELIMIT_ENABLED=True,
        SIGN_IN_RATE_LIMIT="10 per minute",
        SIGN_IN_ACCOUNT_RATE_LIMIT="5 per hour",
    )
    yield app
    app.extensions["db_engine"].dispose()


def _attempt(client: FlaskClient, email: str, password: str, address: str = "203.0.113.7") -> int:
    data = {"email": email, "password": password}
    return client.post("/sign-in", data=data, environ_base={"REMOTE_ADDR": address}).status_code


# --- No lock-out by strangers (OWASP device cookies) ---------------------------------------


def test_a_stranger_guessing_cannot_lock_the_owner_out(limited_app: Flask) -> None:
    owner = limited_app.test_client()
    assert _attempt(owner, "ada@acme.test", PASSWORD, "192.0.2.1") == 303  # device cookie now
    owner.post("/sign-out")

    attacker = limited_app.test_client()
    guesses = [
        _attempt(attacker, "ada@acme.test", f"guess {n}", f"198.51.100.{n}") for n in range(7)
    ]
    assert guesses[:5] == [401] * 5 and set(guesses[5:]) == {429}
    # The attacker is held back even with the right password...
    assert _attempt(attacker, "ada@acme.test", PASSWORD, "198.51.100.99") == 429
    # ...while the owner's browser, known to the account, still signs in.
    assert _attempt(owner, "ada@acme.test", PASSWORD, "192.0.2.1") == 303


def test_a_known_device_that_guesses_is_limited_too(limited_app: Flask) -> None:
    device = limited_app.test_client()
    assert _attempt(device, "ada@acme.test", PASSWORD) == 303
    device.post("/sign-out")
    statuses = [_attempt(device, "ada@acme.test", f"guess {n}") for n in range(6)]
    assert statuses == [401] * 5 + [429]


def test_a_device_cookie_for_another_account_gives_no_trust(limited_app: Flask) -> None:
    browser = limited_app.test_client()
    assert _attempt(browser, "linus@acme.test", PASSWORD) == 303
    browser.post("/sign-out")
    stranger = limited_app.test_client()
    for n in range(5):
        assert _attempt(stranger, "ada@acme.test", f"guess {n}", f"198.51.100.{n}") == 401
    # Linus's device cookie says nothing about Ada's account.
    assert _attempt(browser, "ada@acme.test", PASSWORD) == 429


def test_a_forged_device_cookie_gives_no_trust(limited_app: Flask) -> None:
    stranger = limited_app.test_client()
    for n in range(5):
        _attempt(stranger, "ada@acme.test", f"guess {n}", f"198.51.100.{n}")
    forger = limited_app.test_client()
    forger.set_cookie("invoiceapp_device", "eyJhY2NvdW50IjoiYWRhIn0.forged-signature")
    assert _attempt(forger, "ada@acme.test", PASSWORD) == 429


# --- A classroom behind one address ---------------------------------------------------------


def test_a_classroom_behind_one_address_all_sign_in(database_file: Path) -> None:
    app = make_test_app(database_file, RATELIMIT_ENABLED=True, SIGN_IN_RATE_LIMIT="3 per minute")
    seeded = ["ada", "grace", "linus", "eve", "hank", "marge"]
    for name in seeded * 2:  # twelve sign-ins from one address, all successful
        assert (
            _attempt(
                app.test_client(),
                f"{name}@{'globex' if name in ('hank', 'marge') else 'acme'}.test",
                PASSWORD,
            )
            == 303
        )
    app.extensions["db_engine"].dispose()


def test_failures_from_one_address_are_limited_and_the_429_page_says_when(
    database_file: Path,
) -> None:
    app = make_test_app(database_file, RATELIMIT_ENABLED=True, SIGN_IN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    emails = ["nobody1@example.test", "nobody2@example.test", "nobody3@example.test"]
    assert [_attempt(client, email, "wrong") for email in emails] == [401, 401, 401]
    response = client.post(
        "/sign-in",
        data={"email": "x@example.test", "password": "y"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert response.status_code == 429
    seconds = int(response.headers["Retry-After"])
    assert 0 < seconds <= 60
    body = response.get_data(as_text=True)
    assert "please wait" in body and ("seconds" in body or "a minute" in body)
    app.extensions["db_engine"].dispose()


def test_429_wording_for_long_waits() -> None:
    from invoiceapp.errors import in_words

    assert in_words(30) == "about 30 seconds"
    assert in_words(50) == "a minute"
    assert in_words(125) == "about 2 minutes"
    assert in_words(3500) == "about an hour"
    assert in_words(3 * 3600) == "about 3 hours"


# --- A stale tab's sign-out ------------------------------------------------------------------


def test_stale_tab_sign_out_lands_on_the_landing_page_saying_signed_out(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    response = client.post("/sign-out", data={"csrf_token": "from-a-long-gone-session"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert "You have signed out" in client.get("/").get_data(as_text=True)


def test_sign_out_with_a_live_session_still_needs_the_csrf_token(
    csrf_app: Flask, db: Session
) -> None:
    client = csrf_app.test_client()
    from support import csrf_token_from

    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    data = {"email": "ada@acme.test", "password": PASSWORD, "csrf_token": token}
    assert client.post("/sign-in", data=data).status_code == 303
    assert client.post("/sign-out").status_code == 400  # a forged cross-site sign-out
    assert db.scalar(select(func.count()).select_from(UserSession)) == 1


# --- Security events are written by sign-in and re-authentication ---------------------------


def test_sign_ins_and_elevation_are_recorded_without_secrets(app: Flask, db: Session) -> None:
    client = app.test_client()
    assert _attempt(client, "ada@acme.test", "wrong password here") == 401
    sign_in(client, "ada@acme.test")
    client.post("/reauthenticate", data={"password": PASSWORD, "next": "/dashboard"})
    ada = user(db, "ada@acme.test")
    rows = db.execute(
        select(SecurityEvent.kind, SecurityEvent.ip_address, SecurityEvent.detail)
        .where(SecurityEvent.user_id == ada.id)
        .order_by(SecurityEvent.id)
    ).all()
    assert [kind for kind, _, _ in rows] == [
        "sign_in_failed",
        "sign_in_succeeded",
        "elevation_granted",
    ]
    assert all(ip == "203.0.113.7" or ip == "127.0.0.1" for _, ip, _ in rows)
    everything = " ".join(
        str(value) for row in db.execute(select(SecurityEvent)).all() for value in row
    )
    assert PASSWORD not in everything and "wrong password here" not in everything


# --- The four bug sentences ---------------------------------------------------------------


def test_bug_they_are_signed_in_so_they_can_edit(app: Flask, db: Session) -> None:
    """Signed in is not allowed: Linus is authenticated, and still may not edit Ada's invoice."""
    linus = signed_in_client(app, "linus@acme.test")
    before = invoice(db, "inv_7").customer
    response = linus.post("/invoices/inv_7/edit", data={"customer": "Hijacked"})
    assert response.status_code == 403
    assert "invoice.update" in response.get_data(as_text=True)
    assert invoice(db, "inv_7").customer == before


def test_bug_their_email_is_in_the_database_so_they_are_authenticated(
    database_file: Path, tmp_path: Path, db: Session
) -> None:
    """A known email proves nothing: no session without the password, and no reset link
    to an address nobody has proven they own."""
    from invoiceapp.mail import read_outbox

    outbox = tmp_path / "outbox"
    app = make_test_app(database_file, MAIL_OUTBOX_DIR=str(outbox))
    client = app.test_client()
    assert _attempt(client, "eve@acme.test", "") == 422
    assert _attempt(client, "eve@acme.test", "I know her email") == 401
    assert client.get("/dashboard").status_code == 302
    assert db.scalar(select(func.count()).select_from(UserSession)) == 0
    # Eve's email is unverified: asking for a reset sends nothing anywhere.
    assert client.post("/forgot-password", data={"email": "eve@acme.test"}).status_code == 200
    assert read_outbox(outbox) == []
    app.extensions["db_engine"].dispose()


def test_bug_they_paid_so_they_are_authorized(app: Flask, db: Session) -> None:
    """Acme pays for pro. The plan lets Linus export; it does not make him an admin."""
    linus = signed_in_client(app, "linus@acme.test")
    assert linus.get("/invoices/export.csv").status_code == 200
    assert linus.post("/invoices/inv_7/delete").status_code == 403
    assert invoice(db, "inv_7").deleted_at is None


def test_bug_once_authenticated_the_session_can_do_anything_for_30_days(
    app: Flask, db: Session, clock: Clock
) -> None:
    """Even "keep me signed in" is not a 30-day pass: sensitive actions need a fresh
    password after FRESH_AGE_SECONDS, idle sessions end, and every session ends at last."""
    client = app.test_client()
    sign_in(client, "ada@acme.test", remember="y")
    clock.advance(seconds=app.config["FRESH_AGE_SECONDS"] + 1)
    assert client.get("/dashboard").status_code == 200  # still signed in...
    response = client.get("/account/password")  # ...but no longer elevated
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/reauthenticate?next=")

    # Used every day, the remembered session still ends at its absolute lifetime.
    for _ in range(29):
        clock.advance(days=1)
        assert client.get("/dashboard").status_code == 200
    clock.advance(days=1, seconds=1)
    assert client.get("/dashboard").status_code == 302
    assert db.scalar(select(func.count()).select_from(UserSession)) == 0


def test_default_session_ends_after_thirty_idle_minutes(app: Flask, clock: Clock) -> None:
    assert app.config["SESSION_IDLE_SECONDS"] == 30 * 60
    assert app.config["SESSION_ABSOLUTE_SECONDS"] == 8 * 60 * 60
    client = signed_in_client(app, "linus@acme.test")
    clock.advance(minutes=29)
    assert client.get("/dashboard").status_code == 200
    clock.advance(minutes=31)
    assert client.get("/dashboard").status_code == 302


def test_sessions_that_stay_active_still_end_after_eight_hours(app: Flask, clock: Clock) -> None:
    client = signed_in_client(app, "linus@acme.test")
    for _ in range(16):
        clock.advance(minutes=29)
        assert client.get("/dashboard").status_code == 200
    clock.advance(minutes=30)
    assert client.get("/dashboard").status_code == 302


# --- The sign-in page as a lesson (demo mode) ---------------------------------------------


def test_demo_sign_in_page_lists_accounts_and_fills_only_the_email(database_file: Path) -> None:
    app = make_test_app(database_file, DEMO_MODE=True)
    client = app.test_client()
    page = client.get("/sign-in").get_data(as_text=True)
    assert "The <strong>email</strong> is a claim" in page
    assert "admin of <bdi>Acme Inc</bdi>, member of <bdi>Globex Corporation</bdi>" in page
    assert "/sign-in?email=linus%40acme.test" in page
    filled = client.get("/sign-in?email=linus@acme.test").get_data(as_text=True)
    assert 'value="linus@acme.test"' in filled
    # Filling the claim proves nothing: no session until the password is typed.
    assert client.get("/dashboard").status_code == 302
    app.extensions["db_engine"].dispose()


def test_plain_sign_in_page_has_no_demo_accounts(app: Flask) -> None:
    page = app.test_client().get("/sign-in").get_data(as_text=True)
    assert "demo-accounts" not in page and "<script" not in page.split("<title>")[1][:40]
