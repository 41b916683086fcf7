"""Issue 21, item 7: small things found on the way, each with the scenario that found it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp.authn.passwords import _dummy_hash_for
from invoiceapp.models import Invoice, PersonalAccessToken
from invoiceapp.money import AmountError, parse_amount
from support import (
    NEW_INVOICE,
    PASSWORD,
    VALID_INVOICE_FORM,
    bearer,
    csrf_token_from,
    make_token,
    sign_in,
    signed_in_client,
    user,
)

ROOT = Path(__file__).resolve().parent.parent
TOKEN_FORM = {"name": "scanner", "organization": "acme", "scope": "read", "expires_days": "30"}


def live_tokens(db: Session, email: str) -> int:
    db.expire_all()
    owner = user(db, email)
    return (
        db.scalar(
            select(func.count())
            .select_from(PersonalAccessToken)
            .where(
                PersonalAccessToken.user_id == owner.id, PersonalAccessToken.revoked_at.is_(None)
            )
        )
        or 0
    )


# --- API tokens: a cap on live ones, a rate limit on making them --------------------------


def test_a_scanner_cannot_make_more_live_tokens_than_the_cap(database_file: Path) -> None:
    app = make_test_app(database_file, MAX_LIVE_API_TOKENS=3)
    session = app.extensions["db_sessionmaker"]()
    ada = signed_in_client(app, "ada@acme.test")
    for _ in range(3):
        assert ada.post("/account/tokens", data=TOKEN_FORM).status_code == 201
    refused = ada.post("/account/tokens", data=TOKEN_FORM)
    assert refused.status_code == 409
    assert "the most one account may have" in refused.get_data(as_text=True)
    assert 'data-testid="new-token"' not in refused.get_data(as_text=True)
    assert live_tokens(session, "ada@acme.test") == 3
    # Revoking one makes room again.
    revoked = session.scalars(select(PersonalAccessToken)).first()
    assert revoked is not None
    assert ada.post(f"/account/tokens/{revoked.public_id}/revoke").status_code == 303
    assert ada.post("/account/tokens", data=TOKEN_FORM).status_code == 201
    assert live_tokens(session, "ada@acme.test") == 3
    session.close()
    app.extensions["db_engine"].dispose()


def test_making_tokens_is_rate_limited_per_account(database_file: Path) -> None:
    app = make_test_app(
        database_file, RATELIMIT_ENABLED=True, API_TOKEN_CREATE_RATE_LIMIT="2 per hour"
    )
    session = app.extensions["db_sessionmaker"]()
    ada = signed_in_client(app, "ada@acme.test")
    assert ada.post("/account/tokens", data={**TOKEN_FORM, "name": ""}).status_code == 422
    assert ada.post("/account/tokens", data=TOKEN_FORM).status_code == 201
    assert ada.post("/account/tokens", data=TOKEN_FORM).status_code == 201
    limited = ada.post("/account/tokens", data=TOKEN_FORM)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert live_tokens(session, "ada@acme.test") == 2  # the form error did not count
    # Another account has its own count.
    grace = signed_in_client(app, "grace@acme.test")
    assert grace.post("/account/tokens", data=TOKEN_FORM).status_code == 201
    session.close()
    app.extensions["db_engine"].dispose()


# --- HSTS ------------------------------------------------------------------------------------


def test_hsts_covers_subdomains_outside_development(database_file: Path) -> None:
    app = make_test_app(database_file, AUTH_COOKIE_SECURE=True)
    response = app.test_client().get("/", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    app.extensions["db_engine"].dispose()


# --- Amounts with thousands separators -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minor"),
    [("1,000.00", 100000), ("1,234,567.89", 123456789), ("12,345", 1234500), ("999.5", 99950)],
)
def test_amounts_with_thousands_separators_are_read_as_thousands(text: str, minor: int) -> None:
    assert parse_amount(text) == minor


@pytest.mark.parametrize(
    "text", ["1,00", "12,5", "1,0000.00", ",100", "1,,000", "1.000,00", "100,"]
)
def test_a_comma_that_does_not_separate_thousands_is_refused_not_dropped(text: str) -> None:
    with pytest.raises(AmountError, match="a comma may only separate thousands"):
        parse_amount(text)


def test_the_invoice_form_refuses_a_decimal_comma_and_says_why(app: Flask, db: Session) -> None:
    before = db.scalar(select(func.count()).select_from(Invoice))
    ada = signed_in_client(app, "ada@acme.test")
    response = ada.post("/invoices/new", data={**VALID_INVOICE_FORM, "amount": "12,50"})
    assert response.status_code == 422
    assert "comma" in response.get_data(as_text=True)
    assert db.scalar(select(func.count()).select_from(Invoice)) == before
    made = ada.post("/invoices/new", data={**VALID_INVOICE_FORM, "amount": "1,250.00"})
    assert made.status_code == 303
    db.expire_all()
    newest = db.scalars(select(Invoice).order_by(Invoice.id.desc())).first()
    assert newest is not None and newest.amount_minor == 125000


def test_the_api_refuses_a_decimal_comma_and_reads_thousands(app: Flask) -> None:
    raw = make_token(app, "ada@acme.test", "acme", "write")
    client = app.test_client()
    refused = client.post(
        "/api/v1/invoices", json={**NEW_INVOICE, "amount": "12,50"}, headers=bearer(raw)
    )
    assert refused.status_code == 422
    assert "comma" in str(refused.get_json()["error"]["fields"]["amount"])
    made = client.post(
        "/api/v1/invoices", json={**NEW_INVOICE, "amount": "1,250.00"}, headers=bearer(raw)
    )
    assert made.status_code == 201 and made.get_json()["amount"] == "1250.00"


# --- GET /account/two-factor changes nothing ------------------------------------------------


def test_viewing_the_two_factor_page_writes_no_secret_until_set_up_is_pressed(
    csrf_app: Flask, db: Session
) -> None:
    linus = csrf_app.test_client()
    sign_in(linus, "linus@acme.test", csrf_token=csrf_token_from(linus.get("/sign-in").text))
    page = linus.get("/account/two-factor")
    assert page.status_code == 200
    assert 'data-testid="totp-start"' in page.text and "otpauth://" not in page.text
    db.expire_all()
    assert user(db, "linus@acme.test").totp_secret_encrypted is None  # the GET wrote nothing

    started = linus.post(
        "/account/two-factor/start", data={"csrf_token": csrf_token_from(page.text)}
    )
    assert started.status_code == 303 and started.headers["Location"] == "/account/two-factor"
    db.expire_all()
    stored = user(db, "linus@acme.test").totp_secret_encrypted
    assert stored is not None and user(db, "linus@acme.test").totp_enabled_at is None
    setup = linus.get("/account/two-factor").text
    uri = re.search(r'data-testid="totp-uri">(otpauth://totp/[^<]+)<', setup)
    assert uri is not None
    # Reloading shows the same secret and still writes nothing.
    assert uri.group(1) in linus.get("/account/two-factor").text
    db.expire_all()
    assert user(db, "linus@acme.test").totp_secret_encrypted == stored


def test_starting_two_factor_set_up_needs_the_csrf_token(csrf_app: Flask, db: Session) -> None:
    linus = csrf_app.test_client()
    sign_in(linus, "linus@acme.test", csrf_token=csrf_token_from(linus.get("/sign-in").text))
    assert linus.post("/account/two-factor/start").status_code == 400
    db.expire_all()
    assert user(db, "linus@acme.test").totp_secret_encrypted is None


# --- Sign-in reads the email as sign-up stored it --------------------------------------------


def test_sign_in_reads_the_email_the_way_sign_up_stored_it(app: Flask, db: Session) -> None:
    """Sign-up stores the address in email-validator's normal form; sign-in once only
    lower-cased it, so "Zoë" typed as Z-o-e-combining-diaeresis matched no account."""
    decomposed = "Zoe\u0308@Example.test"
    signed_up = app.test_client().post(
        "/sign-up",
        data={"name": "Zoë", "email": decomposed, "password": "tangerine-lighthouse-quietly-hums",
              "organization_name": "Zoë's"},
    )  # fmt: skip
    assert signed_up.status_code == 303
    assert user(db, "zoë@example.test") is not None  # one stored spelling, composed
    for typed in (decomposed, "zoë@example.test", " ZOË@EXAMPLE.TEST "):
        client = app.test_client()
        response = client.post(
            "/sign-in", data={"email": typed, "password": "tangerine-lighthouse-quietly-hums"}
        )
        assert response.status_code == 303, typed
    # A seeded account, its domain typed in full-width letters, as sign-up would store it.
    ada = app.test_client().post(
        "/sign-in", data={"email": "ada@ＡＣＭＥ.test", "password": PASSWORD}
    )
    assert ada.status_code == 303


# --- flask --help without a secret key ------------------------------------------------------


def test_flask_help_without_a_secret_key_lists_the_project_s_commands() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "invoiceapp", "--help"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr
    for command in ("policy", "prune-sessions", "routes"):
        assert f"  {command} " in result.stdout, command


# --- The unknown-email dummy hash, made at start-up -----------------------------------------


def test_the_dummy_hash_for_unknown_emails_is_made_at_start_up(database_file: Path) -> None:
    """Made on the first unknown-email sign-in instead, that one took about twice as long
    as the rest in each worker: a timing tell that the account does not exist."""
    _dummy_hash_for.cache_clear()
    app = make_test_app(database_file)
    made = _dummy_hash_for.cache_info()
    assert made.currsize == 1 and made.misses == 1
    response = app.test_client().post(
        "/sign-in", data={"email": "nobody@acme.test", "password": "not-the-password-at-all"}
    )
    assert response.status_code == 401
    after = _dummy_hash_for.cache_info()
    assert after.misses == made.misses and after.hits > made.hits  # used, not made, here
    app.extensions["db_engine"].dispose()
