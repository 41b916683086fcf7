"""Sign in with a code or a link sent by email (issue 18, items 1 and 2).

A code or link goes only to a verified address, works once, for ten minutes, and only in
the browser that asked for it; asking answers alike whoever the address belongs to.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import Clock
from invoiceapp.mail import read_outbox
from invoiceapp.models import EmailSignIn
from support import TESS, code, finished, latest_mail_to, proofs, sign_in, user

BASE = "http://127.0.0.1:5000"
ADA = "ada@acme.test"


def ask_for_code(
    client: FlaskClient, email: str = ADA, environ_base: dict[str, str] | None = None, **extra: str
) -> object:
    data = {"email": email, **extra}
    return finished(client.post("/sign-in/code", data=data, environ_base=environ_base or {}))


def ask_for_link(client: FlaskClient, email: str = ADA, **extra: str) -> object:
    return finished(client.post("/sign-in/link", data={"email": email, **extra}))


def mailed_code(outbox: Path, email: str = ADA) -> str:
    mail = latest_mail_to(outbox, email)
    assert mail is not None, f"no mail to {email}"
    found = re.search(r"^(\d{6})$", mail.text, re.MULTILINE)
    assert found, mail.text
    return found.group(1)


def mailed_link(outbox: Path, email: str = ADA) -> str:
    mail = latest_mail_to(outbox, email)
    assert mail is not None, f"no mail to {email}"
    (link,) = [link for link in mail.links if "/sign-in/link/" in link]
    return link.removeprefix(BASE)


def type_code(client: FlaskClient, typed: str) -> object:
    return client.post("/sign-in/code/verify", data={"code": typed})


def pending_rows(db: Session) -> list[EmailSignIn]:
    db.expire_all()
    return list(db.scalars(select(EmailSignIn).order_by(EmailSignIn.id)))


# ---------------------------------------------------------------------------
# Codes
# ---------------------------------------------------------------------------


def test_a_code_by_email_signs_in_and_the_session_records_email_code(
    app: Flask, outbox: Path, db: Session
) -> None:
    browser = app.test_client()
    asked = ask_for_code(browser, next="/invoices")
    assert asked.status_code == 303 and asked.headers["Location"] == "/sign-in/code/verify"
    typed = mailed_code(outbox)
    [row] = pending_rows(db)
    assert typed not in row.secret_hash and len(row.secret_hash) == 64  # stored hashed

    page = browser.get("/sign-in/code/verify")
    assert page.status_code == 200 and 'name="code"' in page.get_data(as_text=True)
    signed_in = type_code(browser, f"{typed[:3]} {typed[3:]}")  # as copied from mail

    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/invoices"
    assert proofs(db, ADA) == ["email_code"]
    assert pending_rows(db)[0].used_at is not None
    security = browser.get("/account/security").get_data(as_text=True)
    assert "a code sent by email" in security


def test_a_code_works_once(app: Flask, outbox: Path, db: Session) -> None:
    browser = app.test_client()
    ask_for_code(browser)
    typed = mailed_code(outbox)
    assert type_code(browser, typed).status_code == 303
    browser.post("/sign-out")
    again = type_code(browser, typed)
    assert again.status_code == 303 and again.headers["Location"] == "/sign-in"
    assert proofs(db, ADA) == []


def test_a_code_expires_after_ten_minutes(
    app: Flask, outbox: Path, db: Session, clock: Clock
) -> None:
    browser = app.test_client()
    ask_for_code(browser)
    typed = mailed_code(outbox)
    clock.advance(minutes=10, seconds=1)
    late = type_code(browser, typed)
    # The browser's note expired with the code: back to the sign-in page, nobody signed in.
    assert late.status_code == 303 and late.headers["Location"] == "/sign-in"
    assert proofs(db, ADA) == []


def test_asking_for_a_code_answers_alike_for_unknown_unverified_and_verified_addresses(
    app: Flask, outbox: Path
) -> None:
    answers = []
    for email in ("nobody@example.org", "eve@acme.test", ADA):
        browser = app.test_client()
        asked = ask_for_code(browser, email)
        page = browser.get("/sign-in/code/verify").get_data(as_text=True)
        answers.append((asked.status_code, asked.headers["Location"], page.replace(email, "X")))
    assert answers[0] == answers[1] == answers[2]
    # Mail only to the verified address.
    assert [mail.to for mail in read_outbox(outbox)] == [ADA]


def test_a_wrong_code_for_an_unknown_address_reads_like_one_for_a_real_account(
    app: Flask, outbox: Path
) -> None:
    answers = []
    for email in ("nobody@example.org", ADA):
        browser = app.test_client()
        ask_for_code(browser, email)
        wrong = type_code(browser, "000000")
        answers.append((wrong.status_code, wrong.get_data(as_text=True).replace(email, "X")))
    assert answers[0][0] == 401
    assert answers[0] == answers[1]


def test_a_code_typed_in_another_browser_finishes_nothing(
    app: Flask, outbox: Path, db: Session
) -> None:
    asker, other = app.test_client(), app.test_client()
    ask_for_code(asker)
    typed = mailed_code(outbox)
    # The other browser never asked: there is nothing for it to finish.
    refused = type_code(other, typed)
    assert refused.status_code == 303 and refused.headers["Location"] == "/sign-in"
    # It asks for the same address itself: its own code is a different one.
    ask_for_code(other)
    assert type_code(other, typed).status_code == 401
    assert proofs(db, ADA) == []
    assert type_code(asker, typed).status_code == 303  # the asker's code still works
    assert proofs(db, ADA) == ["email_code"]


def test_a_code_dies_after_five_wrong_tries(app: Flask, outbox: Path, db: Session) -> None:
    browser = app.test_client()
    ask_for_code(browser)
    typed = mailed_code(outbox)
    wrong = "999999" if typed != "999999" else "111111"
    for _ in range(5):
        assert type_code(browser, wrong).status_code == 401
    assert type_code(browser, typed).status_code == 401  # right, but too late
    assert pending_rows(db)[0].failed_attempts == 5
    assert proofs(db, ADA) == []


def test_wrong_codes_slow_a_stranger_down_but_not_the_owners_known_browser(
    app: Flask, outbox: Path, db: Session
) -> None:
    app.config["SIGN_IN_SLOWDOWN_AFTER"] = 3
    owner = app.test_client()
    sign_in(owner, ADA)  # a known device for Ada from now on
    owner.post("/sign-out")
    stranger = app.test_client()
    ask_for_code(stranger)
    for _ in range(3):
        assert type_code(stranger, "000001").status_code == 401
    slowed = type_code(stranger, "000001")
    assert slowed.status_code == 429 and "Retry-After" in slowed.headers

    ask_for_code(owner)
    assert type_code(owner, mailed_code(outbox)).status_code == 303
    assert proofs(db, ADA) == ["email_code"]


def test_a_code_for_an_account_with_an_authenticator_app_leads_to_the_second_step(
    app: Flask, outbox: Path, db: Session, clock: Clock
) -> None:
    browser = app.test_client()
    ask_for_code(browser, TESS)
    first = type_code(browser, mailed_code(outbox, TESS))
    assert first.status_code == 303 and first.headers["Location"] == "/sign-in/two-factor"
    assert proofs(db, TESS) == []  # no session yet: half a sign-in is no sign-in
    assert browser.get("/dashboard").status_code == 302
    page = browser.get("/sign-in/two-factor").get_data(as_text=True)
    assert "The code from your mailbox was right" in page
    second = browser.post("/sign-in/two-factor", data={"code": code(clock)})
    assert second.status_code == 303
    assert proofs(db, TESS) == ["email_code+totp"]


def test_no_code_is_mailed_when_the_account_turned_email_sign_in_off(
    app: Flask, outbox: Path, db: Session
) -> None:
    user(db, ADA).email_sign_in = False
    db.commit()
    ask_for_code(app.test_client())
    assert read_outbox(outbox) == []


# ---------------------------------------------------------------------------
# Magic links
# ---------------------------------------------------------------------------


def test_opening_a_magic_link_changes_nothing_and_its_button_signs_in(
    app: Flask, outbox: Path, db: Session
) -> None:
    browser = app.test_client()
    asked = ask_for_link(browser, next="/invoices")
    assert asked.status_code == 303
    path = mailed_link(outbox)
    [row] = pending_rows(db)
    assert path.rsplit("/", 1)[1] not in row.secret_hash

    for _ in range(2):  # a scanner, then the reader: GET never spends it
        page = browser.get(path)
        assert page.status_code == 200 and 'method="post"' in page.get_data(as_text=True)
        assert page.headers["Cache-Control"] == "no-store"
    assert pending_rows(db)[0].used_at is None and proofs(db, ADA) == []

    pressed = browser.post(path)
    assert pressed.status_code == 303 and pressed.headers["Location"] == "/invoices"
    assert proofs(db, ADA) == ["magic_link"]
    assert "a link sent by email" in browser.get("/account/security").get_data(as_text=True)


def test_a_magic_link_opened_in_another_browser_signs_nothing_in_and_stays_usable(
    app: Flask, outbox: Path, db: Session
) -> None:
    asker, forwarded_to = app.test_client(), app.test_client()
    ask_for_link(asker)
    path = mailed_link(outbox)

    page = forwarded_to.get(path).get_data(as_text=True)
    assert "only in the browser where you asked for it" in page
    refused = forwarded_to.post(path)
    assert refused.status_code == 401
    assert "signs in only the browser where it was asked for" in refused.get_data(as_text=True)
    assert proofs(db, ADA) == [] and pending_rows(db)[0].used_at is None

    assert asker.post(path).status_code == 303
    assert proofs(db, ADA) == ["magic_link"]


def test_a_magic_link_works_once_and_for_ten_minutes(
    app: Flask, outbox: Path, db: Session, clock: Clock
) -> None:
    browser = app.test_client()
    ask_for_link(browser)
    path = mailed_link(outbox)
    assert browser.post(path).status_code == 303
    browser.post("/sign-out")
    assert browser.post(path).status_code == 400  # used: the dead-link page

    ask_for_link(browser)
    late = mailed_link(outbox)
    clock.advance(minutes=10, seconds=1)
    assert browser.get(late).status_code == 400
    assert browser.post(late).status_code == 400
    assert proofs(db, ADA) == []


# ---------------------------------------------------------------------------
# Rate limits and the decision trace
# ---------------------------------------------------------------------------


def test_asking_for_codes_is_rate_limited_per_address_asked_about(database_file: Path) -> None:
    from conftest import make_test_app

    app = make_test_app(database_file, RATELIMIT_ENABLED=True)
    answers = [
        # A new client address each time: the limit is the address asked about.
        ask_for_code(app.test_client(), environ_base={"REMOTE_ADDR": f"192.0.2.{n}"})
        for n in range(6)
    ]
    assert [a.status_code for a in answers] == [303] * 5 + [429]  # type: ignore[attr-defined]
    assert "Retry-After" in answers[-1].headers  # type: ignore[attr-defined]


def test_the_decision_trace_shows_a_session_proven_by_an_email_code(
    database_file: Path,
) -> None:
    from conftest import make_test_app

    app = make_test_app(database_file, DEMO_MODE=True)
    outbox = database_file.parent / "outbox"
    browser = app.test_client()
    ask_for_code(browser)
    assert type_code(browser, mailed_code(outbox)).status_code == 303
    page = browser.get("/account").get_data(as_text=True)
    assert "not used (email_code)" in page


def test_a_link_mailed_to_an_address_since_replaced_no_longer_signs_in(
    app: Flask, outbox: Path, db: Session
) -> None:
    browser = app.test_client()
    ask_for_link(browser)
    path = mailed_link(outbox)
    user(db, ADA).email = "ada.new@example.org"  # the email change took effect meanwhile
    db.commit()
    assert browser.post(path).status_code == 400
    assert proofs(db, "ada.new@example.org") == []
