"""Authentication: the email is a claim, the password is the proof, the session carries it."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import argon2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from invoiceapp.db import utcnow
from invoiceapp.models import User, UserSession
from support import AUTH_COOKIE, PASSWORD, sign_in, signed_in_client, user


def auth_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(AUTH_COOKIE)
    return cookie.value if cookie else None


def sessions_of(db: Session, email: str) -> list[UserSession]:
    db.expire_all()
    return list(db.scalars(select(UserSession).where(UserSession.user_id == user(db, email).id)))


# --- the proof -------------------------------------------------------------------------


def test_wrong_password_and_unknown_email_get_the_same_answer(client: FlaskClient) -> None:
    wrong_password = client.post(
        "/sign-in", data={"email": "ada@acme.test", "password": "nope-nope-nope"}
    )
    unknown_email = client.post(
        "/sign-in", data={"email": "nobody@acme.test", "password": "nope-nope-nope"}
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    # The pages differ only in the email echoed back into the form.
    assert wrong_password.get_data(as_text=True).replace(
        "ada@acme.test", "X"
    ) == unknown_email.get_data(as_text=True).replace("nobody@acme.test", "X")
    assert "That email and password do not match an account." in wrong_password.get_data(
        as_text=True
    )
    assert auth_cookie(client) is None


def test_unknown_email_still_pays_for_one_hash_verification(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = argon2.PasswordHasher.verify

    def counting_verify(self: argon2.PasswordHasher, hash: str, password: str) -> bool:
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting_verify)
    client.post("/sign-in", data={"email": "nobody@acme.test", "password": "whatever-it-is"})
    client.post("/sign-in", data={"email": "ada@acme.test", "password": "whatever-it-is"})
    assert len(calls) == 2
    assert all(stored.startswith("$argon2id$") for stored in calls)


def test_email_is_matched_case_insensitively(client: FlaskClient) -> None:
    response = sign_in(client, "  Ada@ACME.test ")
    assert response.headers["Location"] == "/dashboard"


def test_unverified_email_can_still_sign_in_with_the_right_password(client: FlaskClient) -> None:
    sign_in(client, "eve@acme.test")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Eve Mallory" in page
    assert "not verified" in page


def test_passwords_are_stored_only_as_argon2id_hashes(db: Session, database_file: Path) -> None:
    hashes = db.scalars(select(User.password_hash)).all()
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    assert PASSWORD.encode() not in database_file.read_bytes()


def test_sign_in_rehashes_when_hash_parameters_change(app: Flask, db: Session) -> None:
    before = user(db, "ada@acme.test").password_hash  # seeded with the cheap test profile
    app.config["PASSWORD_HASH_PROFILE"] = "RFC_9106_LOW_MEMORY"
    sign_in(app.test_client(), "ada@acme.test")
    after = user(db, "ada@acme.test").password_hash
    assert after != before
    assert after.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    # and the new hash still verifies
    sign_in(app.test_client(), "ada@acme.test")


@pytest.mark.parametrize(
    "stored",
    [
        "not-a-hash",
        "",
        "$2b$12$KIXQJZ0J3vQe2yZ0f6hC6e8lZl1xv3yqJ0Q9v1x0lYk8o5u4oYQ1W",
        "$argon2id$v=19$broken",
    ],
    ids=["garbage", "empty", "bcrypt", "truncated-argon2"],
)
def test_corrupt_or_foreign_hash_is_a_plain_sign_in_failure(
    client: FlaskClient, db: Session, stored: str
) -> None:
    ada = user(db, "ada@acme.test")
    ada.password_hash = stored
    db.commit()
    response = client.post("/sign-in", data={"email": "ada@acme.test", "password": PASSWORD})
    assert response.status_code == 401
    assert "That email and password do not match an account." in response.get_data(as_text=True)


def test_empty_fields_are_form_errors_not_failures(client: FlaskClient) -> None:
    response = client.post("/sign-in", data={"email": "", "password": ""})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Enter your email address." in body
    assert "Enter your password." in body


# --- where the browser goes next --------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "///evil.example",
        "////evil.example/path",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        " //evil.example",
        "",
    ],
)
def test_unsafe_next_falls_back_to_dashboard(client: FlaskClient, target: str) -> None:
    response = sign_in(client, "ada@acme.test", next=target)
    assert response.headers["Location"] == "/dashboard"


@pytest.mark.parametrize("target", ["/invoices/inv_7", "/invoices?status=paid&page=2"])
def test_same_site_next_is_honoured(client: FlaskClient, target: str) -> None:
    response = sign_in(client, "ada@acme.test", next=target)
    assert response.headers["Location"] == target


def test_sign_in_form_carries_next_from_the_gate_redirect(client: FlaskClient) -> None:
    redirect_to = client.get("/invoices?status=paid").headers["Location"]
    assert redirect_to == "/sign-in?next=/invoices%3Fstatus%3Dpaid"
    page = client.get(redirect_to).get_data(as_text=True)
    assert 'value="/invoices?status=paid"' in page


def test_signed_in_visit_to_sign_in_goes_to_dashboard(client: FlaskClient) -> None:
    sign_in(client, "ada@acme.test")
    response = client.get("/sign-in")
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard"


# --- server-side sessions ------------------------------------------------------------------


def test_session_token_is_stored_only_as_its_hash(client: FlaskClient, db: Session) -> None:
    sign_in(client, "ada@acme.test")
    token = auth_cookie(client)
    assert token
    [stored] = sessions_of(db, "ada@acme.test")
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (stored.token_hash, stored.public_id)


def test_sign_out_revokes_the_session_and_a_replayed_cookie_is_redirected(
    app: Flask, db: Session
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    stolen = auth_cookie(client)
    assert client.post("/sign-out").headers["Location"] == "/"
    assert sessions_of(db, "ada@acme.test") == []

    thief = app.test_client()
    thief.set_cookie(AUTH_COOKIE, stolen)
    response = thief.get("/dashboard")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in")
    assert thief.post("/invoices/inv_7/delete").status_code == 401


def test_sign_in_rotates_the_session_id_no_fixation(app: Flask, db: Session) -> None:
    client = app.test_client()
    client.set_cookie(AUTH_COOKIE, "planted-by-an-attacker")
    sign_in(client, "ada@acme.test")
    first = auth_cookie(client)
    assert first and first != "planted-by-an-attacker"
    sign_in(client, "linus@acme.test")
    second = auth_cookie(client)
    assert second != first
    assert sessions_of(db, "ada@acme.test") == []  # the old session went with the rotation
    assert len(sessions_of(db, "linus@acme.test")) == 1


def test_session_cookie_is_httponly_samesite_lax(client: FlaskClient) -> None:
    response = sign_in(client, "ada@acme.test")
    header = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith(AUTH_COOKIE + "=")
    )
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Expires" not in header  # no "remember me": the cookie ends with the browser


def test_remember_me_makes_the_cookie_persistent(client: FlaskClient, db: Session) -> None:
    response = sign_in(client, "ada@acme.test", remember="y")
    header = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith(AUTH_COOKIE + "=")
    )
    assert "Expires" in header
    assert sessions_of(db, "ada@acme.test")[0].remember is True


def test_cookies_are_secure_and_host_only_outside_development(database_file: Path) -> None:
    from invoiceapp import create_app

    app = create_app(
        {
            "SECRET_KEY": "k" * 32,
            "DATABASE_URL": f"sqlite:///{database_file}",
            "WTF_CSRF_ENABLED": False,  # this test is about the cookie, not the form
            "BASE_URL": "https://invoices.example",
            "MAIL_BACKEND": "smtp",  # a deployment sends its mail
        }
    )
    assert app.config["AUTH_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-invoiceapp_flash"
    assert app.config["SESSION_COOKIE_SECURE"] is True
    client = app.test_client()
    response = client.post(
        "/sign-in",
        data={"email": "ada@acme.test", "password": PASSWORD},
        base_url="https://invoices.example",
    )
    header = next(h for h in response.headers.getlist("Set-Cookie") if "sid=" in h)
    assert header.startswith("__Host-invoiceapp_sid=")
    assert "Secure" in header and "Path=/" in header and "Domain" not in header
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    app.extensions["db_engine"].dispose()


@pytest.mark.parametrize(
    "column, age",
    [("last_seen_at", timedelta(hours=3)), ("created_at", timedelta(hours=13))],
    ids=["idle-timeout", "absolute-timeout"],
)
def test_expired_session_counts_as_signed_out(
    app: Flask, db: Session, column: str, age: timedelta
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    [stored] = sessions_of(db, "ada@acme.test")
    setattr(stored, column, utcnow() - age)
    db.commit()
    response = client.get("/dashboard")
    assert response.status_code == 302
    assert sessions_of(db, "ada@acme.test") == []


def test_sessions_record_ip_user_agent_and_times(app: Flask, db: Session) -> None:
    client = app.test_client()
    client.post(
        "/sign-in",
        data={"email": "ada@acme.test", "password": PASSWORD},
        headers={"User-Agent": "TestBrowser/1.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    [stored] = sessions_of(db, "ada@acme.test")
    assert stored.user_agent == "TestBrowser/1.0"
    assert stored.ip_address == "203.0.113.9"
    assert stored.created_at == stored.authenticated_at


def test_get_sign_out_only_asks_and_keeps_the_session(app: Flask, db: Session) -> None:
    client = signed_in_client(app, "ada@acme.test")
    page = client.get("/sign-out")
    assert page.status_code == 200
    assert 'action="/sign-out"' in page.get_data(as_text=True)
    assert len(sessions_of(db, "ada@acme.test")) == 1


# --- elevation ---------------------------------------------------------------------------


def test_reauthenticate_with_right_password_refreshes_proof_and_returns_to_next(
    app: Flask, db: Session
) -> None:
    client = signed_in_client(app, "ada@acme.test")
    [stored] = sessions_of(db, "ada@acme.test")
    stored.authenticated_at = utcnow() - timedelta(hours=1)
    db.commit()
    wrong = client.post("/reauthenticate", data={"password": "not-it-at-all", "next": "/invoices"})
    assert wrong.status_code == 422
    assert sessions_of(db, "ada@acme.test")[0].authenticated_at < utcnow() - timedelta(minutes=59)
    right = client.post("/reauthenticate", data={"password": PASSWORD, "next": "/invoices"})
    assert right.status_code == 303
    assert right.headers["Location"] == "/invoices"
    assert sessions_of(db, "ada@acme.test")[0].authenticated_at > utcnow() - timedelta(minutes=1)


def test_anonymous_reauthenticate_post_gets_401(client: FlaskClient) -> None:
    assert client.post("/reauthenticate", data={"password": PASSWORD}).status_code == 401


# --- rate limit --------------------------------------------------------------------------


def test_repeated_sign_in_attempts_get_429_with_retry_after(database_file: Path) -> None:
    from conftest import make_test_app

    app = make_test_app(database_file, RATELIMIT_ENABLED=True)
    client = app.test_client()
    statuses = [
        client.post(
            "/sign-in", data={"email": "ada@acme.test", "password": "guess-" + str(n)}
        ).status_code
        for n in range(11)
    ]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    last = client.post("/sign-in", data={"email": "ada@acme.test", "password": PASSWORD})
    assert last.status_code == 429
    assert int(last.headers["Retry-After"]) > 0
    app.extensions["db_engine"].dispose()


def test_failed_attempts_on_one_account_from_many_addresses_get_429(database_file: Path) -> None:
    from conftest import make_test_app

    app = make_test_app(
        database_file, RATELIMIT_ENABLED=True, SIGN_IN_ACCOUNT_RATE_LIMIT="3 per hour"
    )
    client = app.test_client()

    def attempt(password: str, address: str, email: str = "ada@acme.test") -> int:
        data = {"email": email, "password": password}
        return client.post("/sign-in", data=data, environ_base={"REMOTE_ADDR": address}).status_code

    # Successful sign-ins do not count against the account; failures do.
    assert attempt(PASSWORD, "198.51.100.1") == 303
    assert [attempt("wrong-guess", f"198.51.100.{n}") for n in range(2, 6)] == [401, 401, 401, 429]
    assert attempt(PASSWORD, "198.51.100.9") == 429  # the account is cooling down
    assert attempt(PASSWORD, "198.51.100.9", email="linus@acme.test") == 303  # others are not
    app.extensions["db_engine"].dispose()


def test_client_address_comes_from_the_trusted_proxy_only_when_configured(
    database_file: Path,
) -> None:
    from conftest import make_test_app

    def recorded_address(**config: object) -> str | None:
        app = make_test_app(database_file, **config)
        client = app.test_client()
        client.post(
            "/sign-in",
            data={"email": "linus@acme.test", "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.50"},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},
        )
        db = app.extensions["db_sessionmaker"]()
        address = db.scalars(select(UserSession.ip_address).order_by(UserSession.id.desc())).first()
        db.close()
        app.extensions["db_engine"].dispose()
        return address

    assert recorded_address() == "10.0.0.2"  # a client cannot claim another address
    assert recorded_address(TRUSTED_PROXY_HOPS=1) == "203.0.113.50"


def test_an_operator_who_raises_the_maximum_lets_people_sign_in_with_a_long_password(
    app: Flask,
) -> None:
    """PASSWORD_MAX_LENGTH limits new passwords and the sign-in form alike: a password
    the account page accepted is one the sign-in page accepts too."""
    app.config["PASSWORD_MAX_LENGTH"] = 400
    words = "amber basalt cobalt dune ember fjord glacier heron indigo juniper kelp".split()
    long_password = " ".join(f"{words[n % len(words)]}{n}" for n in range(40))[:300]
    client = signed_in_client(app, "ada@acme.test")
    changed = client.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": long_password,
            "confirm_password": long_password,
        },
    )
    assert changed.status_code == 303

    page = app.test_client().get("/sign-in").get_data(as_text=True)
    assert 'maxlength="400"' in page
    sign_in(app.test_client(), "ada@acme.test", long_password)
