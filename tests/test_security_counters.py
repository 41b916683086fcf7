"""Security counters that slow guessers down without locking the owner out (issue 15).

- After many failed sign-ins, a growing delay comes before the hard limit; a completed
  password reset makes its browser a known device and restarts the account's count.
- Wrong second-step codes lock the account's authenticator codes at 100 in a row, until
  a recovery code or a password reset, and the owner is mailed.

The clock is the app's (invoiceapp.db.utcnow): waiting is moving it, never sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import Clock, make_test_app
from invoiceapp.mail import read_outbox
from invoiceapp.models import SecurityCounter, SecurityEvent
from support import (
    NEW_PASSWORD,
    PASSWORD,
    TESS,
    ask_for_reset,
    choose,
    code,
    give_recovery_codes,
    password_step,
    reset_path,
    user,
)

ADA = "ada@acme.test"


def _attempt(client: FlaskClient, email: str, password: str, address: str = "203.0.113.7") -> int:
    data = {"email": email, "password": password}
    return client.post("/sign-in", data=data, environ_base={"REMOTE_ADDR": address}).status_code


@pytest.fixture()
def limited_app(database_file: Path) -> Iterator[Flask]:
    """The documented account limits, and a per-address limit the tests rotate around."""
    app = make_test_app(
        database_file, RATELIMIT_ENABLED=True, SIGN_IN_ACCOUNT_RATE_LIMIT="20 per hour"
    )
    yield app
    app.extensions["db_engine"].dispose()


def _guess_twenty_times(app: Flask, clock: Clock, email: str = ADA) -> None:
    """A stranger's twenty wrong passwords from rotating addresses, waiting out each delay."""
    stranger = app.test_client()
    for n in range(20):
        assert _attempt(stranger, email, f"guess {n}", f"198.51.100.{n}") == 401
        clock.advance(seconds=61)


# --- Item 10: a reset proves the mailbox ----------------------------------------------------


def test_after_twenty_guesses_the_browser_that_completed_a_reset_signs_in(
    limited_app: Flask, clock: Clock, outbox: Path
) -> None:
    _guess_twenty_times(limited_app, clock)
    owner = limited_app.test_client()  # a new browser: no device cookie yet
    assert _attempt(owner, ADA, PASSWORD, "192.0.2.1") == 429  # the hard limit holds

    ask_for_reset(owner, ADA)
    done = choose(owner, reset_path(outbox))
    assert done.status_code == 303
    assert any("invoiceapp_device=" in c for c in done.headers.getlist("Set-Cookie"))
    assert _attempt(owner, ADA, NEW_PASSWORD, "192.0.2.1") == 303


def test_a_reset_restarts_the_accounts_count_for_every_browser(
    limited_app: Flask, clock: Clock, outbox: Path
) -> None:
    _guess_twenty_times(limited_app, clock)
    owner = limited_app.test_client()
    ask_for_reset(owner, ADA)
    assert choose(owner, reset_path(outbox)).status_code == 303
    # Guesses at the old password say nothing about the new one: a second new browser
    # (a phone, say) signs in too.
    assert _attempt(limited_app.test_client(), ADA, NEW_PASSWORD, "192.0.2.2") == 303


# --- Item 10: a growing delay before the hard limit -----------------------------------------


def test_ten_failures_slow_the_next_attempt_down_without_locking_anyone_out(
    app: Flask, clock: Clock, db: Session
) -> None:
    client = app.test_client()
    for n in range(10):
        assert _attempt(client, ADA, f"guess {n}") == 401
    slowed = client.post("/sign-in", data={"email": ADA, "password": PASSWORD})
    assert slowed.status_code == 429
    assert slowed.headers["Retry-After"] == "1"
    assert "slowed down" in slowed.get_data(as_text=True)
    assert "Please wait 1 second " in slowed.get_data(as_text=True)
    clock.advance(seconds=1)
    assert _attempt(client, ADA, PASSWORD) == 303  # a wait, not a lock-out
    # The right password ends the account's window of failures.
    assert db.scalar(select(func.count()).select_from(SecurityCounter)) == 0


def test_each_failure_past_ten_doubles_the_wait(app: Flask, clock: Clock) -> None:
    client = app.test_client()
    for n in range(10):
        _attempt(client, ADA, f"guess {n}")
    waits = []
    for n in range(8):
        response = client.post("/sign-in", data={"email": ADA, "password": f"later {n}"})
        assert response.status_code == 429
        waits.append(int(response.headers["Retry-After"]))
        clock.advance(seconds=waits[-1])
        assert _attempt(client, ADA, f"after waiting {n}") == 401
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]


def test_the_slow_down_ends_with_its_fifteen_minute_window(app: Flask, clock: Clock) -> None:
    client = app.test_client()
    for n in range(10):
        _attempt(client, ADA, f"guess {n}")
    clock.advance(minutes=15)
    assert _attempt(client, ADA, "a fresh window") == 401
    assert _attempt(client, ADA, PASSWORD) == 303


def test_an_unknown_address_is_slowed_down_alike(app: Flask, clock: Clock) -> None:
    """The delay must not tell which addresses have accounts."""
    client = app.test_client()
    for n in range(10):
        assert _attempt(client, "nobody@example.test", f"guess {n}") == 401
    response = client.post("/sign-in", data={"email": "nobody@example.test", "password": "x"})
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"


def test_a_known_device_is_not_slowed_down_by_a_strangers_guesses(app: Flask, clock: Clock) -> None:
    owner = app.test_client()
    assert _attempt(owner, ADA, PASSWORD) == 303
    owner.post("/sign-out")
    stranger = app.test_client()
    for n in range(12):
        _attempt(stranger, ADA, f"guess {n}", f"198.51.100.{n}")
    assert _attempt(owner, ADA, PASSWORD) == 303


# --- Item 11: second-step codes lock after 100 wrong ones -----------------------------------


def _wrong_code(clock: Clock) -> str:
    """A six-digit code that matches none of the steps accepted right now."""
    accepted = {code(clock, steps=s) for s in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in accepted)


def _type_wrong_codes(client: FlaskClient, clock: Clock, how_many: int) -> None:
    for _ in range(how_many):
        response = client.post("/sign-in/two-factor", data={"code": _wrong_code(clock)})
        assert response.status_code == 401


def _locked_mails(outbox: Path) -> list[str]:
    return [m.subject for m in read_outbox(outbox) if "locked" in m.subject]


def test_a_hundred_wrong_codes_lock_codes_and_the_owner_is_mailed(
    app: Flask, db: Session, clock: Clock, outbox: Path
) -> None:
    assert app.config["TWO_FACTOR_MAX_FAILURES"] == 100
    client = app.test_client()
    password_step(client)
    _type_wrong_codes(client, clock, 99)
    assert user(db, TESS).second_factor_failures == 99
    assert _locked_mails(outbox) == []
    _type_wrong_codes(client, clock, 1)
    assert _locked_mails(outbox) == ["Sign-in codes were locked on your InvoiceApp account"]

    # Now even the right code is refused, unchecked, and the page says what to do.
    clock.advance(seconds=30)
    refused = client.post("/sign-in/two-factor", data={"code": code(clock)})
    assert refused.status_code == 401
    assert "Use one of your recovery codes" in refused.get_data(as_text=True)
    assert user(db, TESS).totp_last_step is None  # the code was never checked
    assert user(db, TESS).second_factor_failures == 100
    assert len(_locked_mails(outbox)) == 1  # one mail, not one per refusal
    locked = select(func.count()).where(SecurityEvent.kind == "two_factor_locked")
    assert db.scalar(locked) == 1


def test_a_recovery_code_unlocks_authenticator_codes(app: Flask, db: Session, clock: Clock) -> None:
    recovery = give_recovery_codes(app, db, TESS)
    client = app.test_client()
    password_step(client)
    _type_wrong_codes(client, clock, 100)
    assert client.post("/sign-in/two-factor", data={"code": recovery[0]}).status_code == 303
    assert user(db, TESS).second_factor_failures == 0

    other = app.test_client()
    password_step(other)
    clock.advance(seconds=30)
    assert other.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 303


def test_a_password_reset_ends_the_code_lock_with_the_app_it_locked(
    app: Flask, db: Session, clock: Clock, outbox: Path
) -> None:
    client = app.test_client()
    password_step(client)
    _type_wrong_codes(client, clock, 100)
    ask_for_reset(client, TESS)
    assert choose(client, reset_path(outbox, TESS)).status_code == 303
    # The reset removes every second factor (invoiceapp.authn.factors) and the count with
    # them: an app set up again later starts from nothing.
    tess = user(db, TESS)
    assert tess.second_factor_failures == 0
    assert tess.totp_secret_encrypted is None
    fresh = app.test_client()
    response = fresh.post("/sign-in", data={"email": TESS, "password": NEW_PASSWORD})
    assert response.headers["Location"] == "/dashboard"


def test_a_right_code_starts_the_count_again(app: Flask, db: Session, clock: Clock) -> None:
    client = app.test_client()
    password_step(client)
    _type_wrong_codes(client, clock, 60)
    assert client.post("/sign-in/two-factor", data={"code": code(clock)}).status_code == 303
    assert user(db, TESS).second_factor_failures == 0


# --- Item 16: a limit counts only the attempts that were checked and failed ---------------


def test_attempts_refused_by_one_limit_leave_no_trace_in_another(database_file: Path) -> None:
    """Each attempt takes its place in every failure limit before it is checked; one that
    another limit refused (429), or that succeeded, gives its places back."""
    app = make_test_app(
        database_file,
        RATELIMIT_ENABLED=True,
        SIGN_IN_RATE_LIMIT="3 per minute",
        SIGN_IN_ACCOUNT_RATE_LIMIT="5 per hour",
    )
    guesser = app.test_client()
    assert [_attempt(guesser, ADA, f"guess {n}") for n in range(3)] == [401] * 3
    # The address is spent: ten more are refused before the password is looked at...
    assert {_attempt(guesser, ADA, f"more {n}") for n in range(10)} == {429}
    # ...so the account's shared count stands at three, not thirteen: two more checks.
    elsewhere = app.test_client()
    statuses = [_attempt(elsewhere, ADA, f"again {n}", f"198.51.100.{n}") for n in range(3)]
    assert statuses == [401, 401, 429]
    app.extensions["db_engine"].dispose()


def test_right_passwords_do_not_use_up_the_addresss_budget(database_file: Path) -> None:
    app = make_test_app(database_file, RATELIMIT_ENABLED=True, SIGN_IN_RATE_LIMIT="2 per minute")
    for _ in range(5):
        assert _attempt(app.test_client(), ADA, PASSWORD) == 303
    client = app.test_client()
    assert [_attempt(client, ADA, f"guess {n}") for n in range(3)] == [401, 401, 429]
    app.extensions["db_engine"].dispose()
