"""Forgot password and reset: the same answer for every address, mail only to a verified
one, and a link that works once, briefly, and signs the account out everywhere.

Every app here writes its mail to the test's own outbox, never into instance/.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from conftest import Clock, make_test_app
from invoiceapp.authn.accounts import set_password
from invoiceapp.authn.tokens import claim_token, issue_token
from invoiceapp.background import wait_for_jobs
from invoiceapp.mail import read_outbox
from invoiceapp.models import AccountToken, SecurityEvent, TokenPurpose, User, UserSession
from support import (
    AUTH_COOKIE,
    NEW_PASSWORD,
    PASSWORD,
    ask_for_reset,
    choose,
    csrf_token_from,
    finished,
    latest_mail_to,
    live_server,
    reset_path,
    sign_in,
    signed_in_client,
)
from support import user as user_by_email

INVALID_PAGE = "This link is no longer valid"
SENT = "If that address belongs to an account, we have sent it a link to choose a new password"


def can_sign_in(app: Flask, email: str, password: str) -> bool:
    response = app.test_client().post("/sign-in", data={"email": email, "password": password})
    return response.status_code == 303


def events(db: Session, email: str, kind: str) -> int:
    db.expire_all()
    found = db.scalar(
        select(func.count())
        .select_from(SecurityEvent)
        .join(User, User.id == SecurityEvent.user_id)
        .where(User.email == email, SecurityEvent.kind == kind)
    )
    return found or 0


def reset_tokens(db: Session) -> int:
    db.expire_all()
    return (
        db.scalar(
            select(func.count())
            .select_from(AccountToken)
            .where(AccountToken.purpose == TokenPurpose.RESET_PASSWORD.value)
        )
        or 0
    )


def without_csrf(html: str) -> str:
    return re.sub(r'name="csrf_token"[^>]*value="[^"]*"', "", html)


# --- forgot password ----------------------------------------------------------------------


def test_forgot_password_page_has_the_email_field(client: FlaskClient) -> None:
    response = client.get("/forgot-password")
    assert response.status_code == 200
    assert 'name="email"' in response.get_data(as_text=True)


def test_forgot_password_answers_alike_for_unknown_unverified_and_verified_addresses(
    csrf_app: Flask, db: Session, outbox: Path
) -> None:
    csrf_app.config["MAIL_OUTBOX_DIR"] = str(outbox)
    answers = []
    for email in ("nobody@acme.test", "eve@acme.test", "ada@acme.test"):
        client = csrf_app.test_client()
        token = csrf_token_from(client.get("/forgot-password").get_data(as_text=True))
        response = finished(
            client.post("/forgot-password", data={"email": email, "csrf_token": token})
        )
        answers.append((response.status_code, without_csrf(response.get_data(as_text=True))))

    assert answers[0] == answers[1] == answers[2]
    status, body = answers[0]
    assert status == 200
    assert SENT in body
    assert "acme.test" not in body  # the address typed is not echoed
    # A reset link to the verified address; the unverified one is offered a claim link.
    assert sorted(mail.to for mail in read_outbox(outbox)) == ["ada@acme.test", "eve@acme.test"]
    mail = latest_mail_to(outbox, "ada@acme.test")
    assert mail is not None and "30 minutes" in mail.text
    assert any("/reset-password/" in link for link in mail.links)
    claim = latest_mail_to(outbox, "eve@acme.test")
    assert claim is not None and not any("/reset-password/" in link for link in claim.links)
    # Events for existing accounts only; a token for each that was mailed.
    assert events(db, "eve@acme.test", "reset_requested") == 1
    assert events(db, "ada@acme.test", "reset_requested") == 1
    tokens = sorted((t.email, t.purpose) for t in db.scalars(select(AccountToken)))
    assert tokens == [("ada@acme.test", "reset_password"), ("eve@acme.test", "claim_address")]


def test_forgot_password_finds_the_account_whatever_the_case_and_spaces(
    client: FlaskClient, outbox: Path
) -> None:
    response = ask_for_reset(client, "  ADA@Acme.TEST ")
    assert response.status_code == 200
    assert latest_mail_to(outbox, "ada@acme.test") is not None


def test_the_answer_is_complete_before_the_address_is_even_looked_up(
    client: FlaskClient, db: Session, outbox: Path
) -> None:
    """Timing is no oracle: the work runs when the server closes the sent response."""
    response = client.post("/forgot-password", data={"email": "ada@acme.test"})
    assert response.status_code == 200 and SENT in response.get_data(as_text=True)
    assert read_outbox(outbox) == []
    assert events(db, "ada@acme.test", "reset_requested") == 0
    response.close()
    assert latest_mail_to(outbox, "ada@acme.test") is not None
    assert events(db, "ada@acme.test", "reset_requested") == 1


def test_a_real_server_sends_the_answer_then_does_the_work(
    database_file: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from invoiceapp.views.account import recovery

    app = make_test_app(database_file, MAIL_OUTBOX_DIR=str(outbox))
    done = threading.Event()
    real_work = recovery.send_recovery_link

    def work_then_signal(address: str) -> None:
        real_work(address)
        done.set()

    monkeypatch.setattr(recovery, "send_recovery_link", work_then_signal)
    with live_server(app) as base:
        body = urllib.parse.urlencode({"email": "ada@acme.test"}).encode()
        with urllib.request.urlopen(base + "/forgot-password", data=body, timeout=10) as answer:
            assert answer.status == 200
            assert SENT in answer.read().decode()
        assert done.wait(timeout=10)
    assert latest_mail_to(outbox, "ada@acme.test") is not None
    app.extensions["db_engine"].dispose()


def test_the_next_request_is_answered_while_the_reset_work_is_still_running(
    database_file: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Work that holds the worker after the answer delays whatever that worker takes next,
    and the delay told a verified account from an unknown address. On the pool it cannot:
    here the work waits for a signal that comes only after the next answer has arrived."""
    from invoiceapp.views.account import recovery

    app = make_test_app(database_file, MAIL_OUTBOX_DIR=str(outbox), BACKGROUND_JOBS="threads")
    release = threading.Event()
    real_work = recovery.send_recovery_link

    def work_when_released(address: str) -> None:
        assert release.wait(timeout=30)
        real_work(address)

    monkeypatch.setattr(recovery, "send_recovery_link", work_when_released)
    with live_server(app, threaded=False) as base:
        body = urllib.parse.urlencode({"email": "ada@acme.test"}).encode()
        with urllib.request.urlopen(base + "/forgot-password", data=body, timeout=10) as answer:
            assert answer.status == 200 and SENT in answer.read().decode()
        # Inline, this would wait for the work, which waits for us: a timeout, not a 200.
        with urllib.request.urlopen(base + "/healthz", timeout=5) as next_answer:
            assert next_answer.status == 200
        assert read_outbox(outbox) == []  # the work has not even started
        release.set()
        assert wait_for_jobs(app)
    assert latest_mail_to(outbox, "ada@acme.test") is not None
    app.extensions["db_engine"].dispose()


def test_a_job_that_fails_on_the_pool_is_logged_by_its_class_only(
    database_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from invoiceapp.background import JobPool

    app = make_test_app(database_file, BACKGROUND_JOBS="threads")
    pool = JobPool(app)

    def broken() -> None:
        raise RuntimeError("token abc123 for ada@acme.test")

    with caplog.at_level(logging.WARNING):
        pool.submit(broken)
        assert pool.wait(timeout=10)
    assert "background job failed: RuntimeError" in caplog.text
    assert "ada@acme.test" not in caplog.text and "abc123" not in caplog.text
    app.extensions["db_engine"].dispose()


def test_a_failure_after_the_answer_is_logged_without_the_address(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from invoiceapp.views.account import recovery

    def broken(address: str) -> None:
        raise RuntimeError(f"database trouble with {address}")

    monkeypatch.setattr(recovery, "send_recovery_link", broken)
    with caplog.at_level(logging.WARNING):
        response = ask_for_reset(client, "ada@acme.test")
    assert response.status_code == 200
    assert "password reset request failed: RuntimeError" in caplog.text
    assert "ada@acme.test" not in caplog.text


@pytest.mark.parametrize(
    "email", ["", "   ", "ada@acme.test\x00", "ada\r\nbcc@acme.test", "x" * 321]
)
def test_forgot_password_with_unusable_input_is_a_422_and_sends_nothing(
    client: FlaskClient, outbox: Path, db: Session, email: str
) -> None:
    response = ask_for_reset(client, email)
    assert response.status_code == 422
    assert 'id="email-error"' in response.get_data(as_text=True)
    assert read_outbox(outbox) == []
    assert reset_tokens(db) == 0


def test_reset_link_is_built_from_base_url_not_the_host_header(
    database_file: Path, outbox: Path
) -> None:
    # Trust the foreign host here, so the request gets through and only BASE_URL is tested.
    app = make_test_app(
        database_file,
        MAIL_OUTBOX_DIR=str(outbox),
        BASE_URL="https://ia.example",
        TRUSTED_HOSTS=["evil.example", "localhost"],
    )
    ask_for_reset(app.test_client(), "ada@acme.test", headers={"Host": "evil.example"})
    mail = latest_mail_to(outbox, "ada@acme.test")
    assert mail is not None
    assert any(link.startswith("https://ia.example/reset-password/") for link in mail.links)
    assert "evil.example" not in mail.text + mail.html
    app.extensions["db_engine"].dispose()


# --- using the link -----------------------------------------------------------------------


def test_reset_link_changes_the_password_once(
    app: Flask, client: FlaskClient, db: Session, outbox: Path
) -> None:
    ask_for_reset(client, "ada@acme.test")
    path = reset_path(outbox)

    form = client.get(path)
    assert form.status_code == 200
    page = form.get_data(as_text=True)
    assert 'name="new_password"' in page and 'name="confirm_password"' in page
    assert form.headers["Cache-Control"] == "no-store"
    assert form.headers["Referrer-Policy"] == "same-origin"

    response = choose(client, path)
    assert response.status_code == 303
    assert response.headers["Location"] == "/sign-in"
    assert not can_sign_in(app, "ada@acme.test", PASSWORD)
    assert can_sign_in(app, "ada@acme.test", NEW_PASSWORD)
    assert events(db, "ada@acme.test", "reset_used") == 1
    assert user_by_email(db, "ada@acme.test").email_verified  # unchanged, not granted

    notice = latest_mail_to(outbox, "ada@acme.test")
    assert notice is not None
    assert notice.subject == "Your InvoiceApp password was changed"
    assert NEW_PASSWORD not in notice.text

    # The second use: the invalid page, and the password stays the one just chosen.
    assert client.get(path).status_code == 400
    again = choose(client, path, new="amber dune ember heron 99")
    assert again.status_code == 400
    assert INVALID_PAGE in again.get_data(as_text=True)
    assert can_sign_in(app, "ada@acme.test", NEW_PASSWORD)
    assert events(db, "ada@acme.test", "reset_used") == 1


def test_reset_signs_the_account_out_everywhere(
    app: Flask, client: FlaskClient, db: Session, outbox: Path
) -> None:
    laptop = signed_in_client(app, "ada@acme.test")
    phone = signed_in_client(app, "ada@acme.test")
    somebody_else = signed_in_client(app, "linus@acme.test")
    ask_for_reset(client, "ada@acme.test")

    assert choose(client, reset_path(outbox)).status_code == 303

    for browser in (laptop, phone):
        response = browser.get("/dashboard")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/sign-in")
    assert somebody_else.get("/dashboard").status_code == 200
    ada = user_by_email(db, "ada@acme.test")
    assert db.scalar(select(func.count()).where(UserSession.user_id == ada.id)) == 0


def test_reset_from_a_browser_signed_in_as_that_user_clears_its_cookie(
    app: Flask, outbox: Path
) -> None:
    browser = signed_in_client(app, "ada@acme.test")
    ask_for_reset(browser, "ada@acme.test")
    response = choose(browser, reset_path(outbox))
    assert response.status_code == 303
    assert browser.get_cookie(AUTH_COOKIE) is None
    assert browser.get("/dashboard").status_code == 302


def test_reset_link_expires_after_reset_token_seconds(
    app: Flask, client: FlaskClient, outbox: Path, clock: Clock
) -> None:
    ask_for_reset(client, "ada@acme.test")
    path = reset_path(outbox)
    clock.advance(seconds=app.config["RESET_TOKEN_SECONDS"] + 1)
    assert client.get(path).status_code == 400
    response = choose(client, path)
    assert response.status_code == 400
    assert INVALID_PAGE in response.get_data(as_text=True)
    assert can_sign_in(app, "ada@acme.test", PASSWORD)


def test_reset_link_still_works_a_moment_before_it_expires(
    app: Flask, client: FlaskClient, outbox: Path, clock: Clock
) -> None:
    ask_for_reset(client, "ada@acme.test")
    clock.advance(seconds=app.config["RESET_TOKEN_SECONDS"] - 5)
    assert choose(client, reset_path(outbox)).status_code == 303
    clock.advance(seconds=10)  # sessions and sign-in use the same clock
    assert can_sign_in(app, "ada@acme.test", NEW_PASSWORD)


def test_a_password_change_elsewhere_kills_a_pending_reset_link(
    app: Flask, client: FlaskClient, db: Session, outbox: Path
) -> None:
    ask_for_reset(client, "ada@acme.test")
    path = reset_path(outbox)
    with app.app_context():
        ada = user_by_email(db, "ada@acme.test")
        set_password(db, ada, "amber dune ember heron 99", keep=None)
        db.commit()
    assert client.get(path).status_code == 400
    assert choose(client, path).status_code == 400
    assert can_sign_in(app, "ada@acme.test", "amber dune ember heron 99")


def test_a_reset_link_for_an_address_the_account_no_longer_has_is_invalid(
    app: Flask, client: FlaskClient, db: Session, outbox: Path
) -> None:
    ask_for_reset(client, "ada@acme.test")
    path = reset_path(outbox)
    ada = user_by_email(db, "ada@acme.test")
    ada.email = "ada.new@example.com"
    db.commit()
    assert client.get(path).status_code == 400
    assert choose(client, path).status_code == 400
    assert can_sign_in(app, "ada.new@example.com", PASSWORD)


def test_using_one_reset_link_kills_the_other_pending_ones(
    app: Flask, client: FlaskClient, outbox: Path
) -> None:
    ask_for_reset(client, "ada@acme.test")
    first = reset_path(outbox)
    ask_for_reset(client, "ada@acme.test")
    second = reset_path(outbox)
    assert first != second
    assert choose(client, second).status_code == 303
    assert choose(client, first, new="amber dune ember heron 99").status_code == 400
    assert can_sign_in(app, "ada@acme.test", NEW_PASSWORD)


@pytest.mark.parametrize(
    ("new", "confirm", "field", "message"),
    [
        ("Sh0rt!pass", None, "new_password", "Use at least 15 characters"),
        ("password12345678", None, "new_password", "too easy to guess"),
        ("ada lovelace fjord kelp", None, "new_password", "Leave your name out"),
        ("ada@acme.test fjord kelp", None, "new_password", "Leave your email address out"),
        ("a" * 257, None, "new_password", "Use at most 256 characters"),
        (NEW_PASSWORD, "glacier kelp mesa indigo 43", "confirm_password", "do not match"),
        ("", "", "new_password", "Choose a new password."),
    ],
)
def test_a_bad_new_password_is_a_422_and_leaves_the_link_usable(
    app: Flask, client: FlaskClient, db: Session, outbox: Path,
    new: str, confirm: str | None, field: str, message: str,
) -> None:  # fmt: skip
    ask_for_reset(client, "ada@acme.test")
    path = reset_path(outbox)
    response = choose(client, path, new=new, confirm=confirm)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    assert error is not None and message in error.group(1)
    assert can_sign_in(app, "ada@acme.test", PASSWORD)
    assert events(db, "ada@acme.test", "reset_used") == 0
    assert choose(client, path).status_code == 303  # the link was not used up


@pytest.mark.parametrize(
    "token", ["abc", "!" * 43, "A" * 43, "x" * 5000, "../x", "%00" * 43, "a/b", "é" * 43]
)
def test_malformed_or_unknown_reset_links_get_the_invalid_page_never_a_500(
    app: Flask, client: FlaskClient, token: str
) -> None:
    page = client.get("/reset-password/" + token)
    assert page.status_code == 400
    assert INVALID_PAGE in page.get_data(as_text=True)
    assert 'href="/forgot-password"' in page.get_data(as_text=True)
    posted = choose(client, "/reset-password/" + token)
    assert posted.status_code == 400
    assert can_sign_in(app, "ada@acme.test", PASSWORD)


def test_a_verification_link_is_no_reset_link(app: Flask, client: FlaskClient, db: Session) -> None:
    with app.app_context():
        raw = issue_token(
            db, user_by_email(db, "ada@acme.test"), TokenPurpose.VERIFY_EMAIL, 600,
            email="ada@acme.test",
        )  # fmt: skip
        db.commit()
    assert client.get("/reset-password/" + raw).status_code == 400
    assert choose(client, "/reset-password/" + raw).status_code == 400
    assert can_sign_in(app, "ada@acme.test", PASSWORD)


def test_reset_through_the_real_form_needs_its_csrf_token(csrf_app: Flask, outbox: Path) -> None:
    csrf_app.config["MAIL_OUTBOX_DIR"] = str(outbox)
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/forgot-password").get_data(as_text=True))
    finished(client.post("/forgot-password", data={"email": "ada@acme.test", "csrf_token": token}))
    path = reset_path(outbox)

    assert choose(client, path).status_code == 400  # no CSRF token: refused, link not used
    page = client.get(path).get_data(as_text=True)
    data = {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    response = client.post(path, data={**data, "csrf_token": csrf_token_from(page)})
    assert response.status_code == 303


# --- limits and races ---------------------------------------------------------------------


def test_forgot_password_is_limited_per_address_asked_about(
    database_file: Path, outbox: Path, db: Session
) -> None:
    app = make_test_app(
        database_file, MAIL_OUTBOX_DIR=str(outbox), RATELIMIT_ENABLED=True,
        FORGOT_PASSWORD_EMAIL_RATE_LIMIT="2 per hour",
    )  # fmt: skip

    def ask(email: str, address: str) -> Any:
        return ask_for_reset(app.test_client(), email, environ_base={"REMOTE_ADDR": address})

    assert ask("ada@acme.test", "198.51.100.1").status_code == 200
    assert ask("ADA@acme.test ", "198.51.100.2").status_code == 200  # the same address
    third = ask("ada@acme.test", "198.51.100.3")
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) > 0
    assert len(read_outbox(outbox)) == 2
    assert events(db, "ada@acme.test", "reset_requested") == 2
    assert reset_tokens(db) == 1  # the second link replaced the first
    # Other addresses are not held up.
    assert ask("linus@acme.test", "198.51.100.3").status_code == 200
    app.extensions["db_engine"].dispose()


def test_forgot_password_is_limited_per_client(
    database_file: Path, outbox: Path, db: Session
) -> None:
    app = make_test_app(
        database_file, MAIL_OUTBOX_DIR=str(outbox), RATELIMIT_ENABLED=True,
        FORGOT_PASSWORD_RATE_LIMIT="2 per hour",
    )  # fmt: skip
    client = app.test_client()
    statuses = [
        ask_for_reset(client, email).status_code
        for email in ("ada@acme.test", "linus@acme.test", "grace@acme.test")
    ]
    assert statuses == [200, 200, 429]
    assert latest_mail_to(outbox, "grace@acme.test") is None
    assert events(db, "grace@acme.test", "reset_requested") == 0
    assert app.test_client().get("/forgot-password").status_code == 200
    app.extensions["db_engine"].dispose()


def test_two_simultaneous_claims_of_one_reset_token_let_exactly_one_through(
    app: Flask, db: Session
) -> None:
    with app.app_context():
        raw = issue_token(
            db, user_by_email(db, "ada@acme.test"), TokenPurpose.RESET_PASSWORD, 600,
            email="ada@acme.test",
        )  # fmt: skip
        db.commit()

    start = threading.Barrier(2)
    outcomes: list[str] = []

    def claim() -> None:
        with app.extensions["db_sessionmaker"]() as session:
            start.wait()
            try:
                claimed = claim_token(session, raw, TokenPurpose.RESET_PASSWORD)
                session.commit()
            except OperationalError:  # SQLite: the other writer holds the lock
                session.rollback()
                claimed = None
            outcomes.append("claimed" if claimed is not None else "refused")

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["claimed", "refused"]
    db.expire_all()
    token = db.scalar(select(AccountToken).where(AccountToken.purpose == "reset_password"))
    assert token is not None and token.used_at is not None


def test_signing_in_during_a_pending_reset_does_not_end_it(
    app: Flask, client: FlaskClient, outbox: Path
) -> None:
    """Remembering the password does not revoke the link; changing it does (see above)."""
    ask_for_reset(client, "ada@acme.test")
    sign_in(app.test_client(), "ada@acme.test")
    assert choose(client, reset_path(outbox)).status_code == 303


# --- a newer link kills the older ones ----------------------------------------------------


def test_a_second_reset_link_kills_the_first(
    app: Flask, client: FlaskClient, db: Session, outbox: Path
) -> None:
    ask_for_reset(client, "ada@acme.test")
    first = reset_path(outbox)
    ask_for_reset(client, "ada@acme.test")
    second = reset_path(outbox)
    assert first != second

    assert INVALID_PAGE in client.get(first).get_data(as_text=True)
    assert choose(client, first).status_code == 400
    assert not can_sign_in(app, "ada@acme.test", NEW_PASSWORD)
    assert reset_tokens(db) == 1  # the older one is gone from the table, not just refused
    assert choose(client, second).status_code == 303
    assert can_sign_in(app, "ada@acme.test", NEW_PASSWORD)


def test_an_older_reset_token_that_escaped_the_cleanup_is_refused_too(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    """Two requests at once can each issue a link before either sees the other's: the
    check at use time is what guarantees that only the newest link ever works."""
    with app.app_context():
        ada = user_by_email(db, "ada@acme.test")
        older = issue_token(db, ada, TokenPurpose.RESET_PASSWORD, 600, email=ada.email)
        newer = issue_token(db, ada, TokenPurpose.RESET_PASSWORD, 600, email=ada.email)
        db.commit()
    assert choose(client, "/reset-password/" + older).status_code == 400
    assert choose(client, "/reset-password/" + newer).status_code == 303


# --- a reset removes every second factor ---------------------------------------------------


def test_a_reset_removes_a_totp_and_recovery_codes_someone_else_enrolled(
    app: Flask, client: FlaskClient, db: Session, outbox: Path
) -> None:
    """Whoever planted an authenticator app must not lock the mailbox owner out after the
    reset: the reset removes TOTP and recovery codes as it removes passkeys."""
    from invoiceapp.authn import recovery_codes
    from invoiceapp.models import RecoveryCode

    with app.app_context():
        recovery_codes.replace_codes(db, user_by_email(db, "tess@acme.test"))
        db.commit()
    ask_for_reset(client, "tess@acme.test")
    path = reset_path(outbox, "tess@acme.test")
    page = client.get(path).get_data(as_text=True)
    assert "authenticator app" in page and "recovery codes" in page

    assert choose(client, path).status_code == 303
    tess = user_by_email(db, "tess@acme.test")
    assert tess.totp_secret_encrypted is None and tess.totp_enabled_at is None
    assert db.scalar(select(func.count()).select_from(RecoveryCode)) == 0
    assert events(db, "tess@acme.test", "two_factor_disabled") == 1
    # The new password alone signs in: no second step is asked for.
    response = app.test_client().post(
        "/sign-in", data={"email": "tess@acme.test", "password": NEW_PASSWORD}
    )
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard"
    notice = latest_mail_to(outbox, "tess@acme.test")
    assert notice is not None and notice.subject == "Your InvoiceApp password was changed"
    assert "authenticator app" in notice.text and "recovery codes" in notice.text
    assert "authenticator app" in notice.html
    assert "http://127.0.0.1:5000/account/two-factor" in notice.links
