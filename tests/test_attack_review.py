"""An attacker's review of the new credential and authorization paths: each test is named
for the attack it replays, and failed before the fix that follows it in the history."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy.orm import Session
from test_email_sign_in import ask_for_code, ask_for_link, mailed_code, mailed_link, type_code
from test_org_security import acme, owner_with_second_factor, set_policy

from conftest import Clock
from support import ask_for_reset, choose, latest_mail_to, proofs, reset_path

ADA = "ada@acme.test"


def _reset_password_by_mail(app: Flask, outbox: Path) -> None:
    owner = app.test_client()
    ask_for_reset(owner, ADA)
    assert choose(owner, reset_path(outbox)).status_code == 303


def test_a_code_asked_for_before_a_password_reset_no_longer_signs_in(
    app: Flask, outbox: Path, db: Session
) -> None:
    """Someone who could read the mailbox for a while asked for a code in their own
    browser; the owner takes the account back with a password reset. The reset ends every
    session and reset link, and so must it end the sign-in by mail still in flight."""
    intruder = app.test_client()
    ask_for_code(intruder)
    typed = mailed_code(outbox)
    _reset_password_by_mail(app, outbox)

    late = type_code(intruder, typed)
    assert late.status_code == 401
    assert proofs(db, ADA) == []


def test_a_magic_link_asked_for_before_a_password_reset_no_longer_signs_in(
    app: Flask, outbox: Path, db: Session
) -> None:
    intruder = app.test_client()
    ask_for_link(intruder)
    link = mailed_link(outbox)
    _reset_password_by_mail(app, outbox)

    assert intruder.get(link).status_code == 400  # the one page for every dead link
    late = intruder.post(link)
    assert late.status_code == 400
    assert proofs(db, ADA) == []


def test_a_stolen_owner_cookie_past_the_orgs_elevation_window_cannot_untick_two_factor(
    app: Flask, db: Session, clock: Clock, outbox: Path
) -> None:
    """The security page asks for fresh proof with the second factor, within the
    organization's own elevation window, before the proof rule may change. The older
    "requires two-factor" checkbox on the organization's settings turned the same rule off
    with the account's longer window and no second factor, and mailed nobody."""
    set_policy(db, proof_rule="second_factor", requires_two_factor=True, elevation_minutes=5)
    thief = owner_with_second_factor(app, db, clock)  # a copy of Ada's cookie
    clock.advance(minutes=7)  # past Acme's 5 minutes, within the account's 10

    untick = thief.post("/orgs/acme/settings", data={})
    assert untick.status_code == 302
    assert untick.headers["Location"] == "/reauthenticate?next=/orgs/acme&factor=second"
    org = acme(db)
    assert (org.requires_two_factor, org.proof_rule) == (True, "second_factor")


def test_unticking_two_factor_on_the_settings_page_is_mailed_to_the_owner(
    app: Flask, db: Session, clock: Clock, outbox: Path
) -> None:
    set_policy(db, proof_rule="second_factor", requires_two_factor=True)
    ada = owner_with_second_factor(app, db, clock)
    assert ada.post("/orgs/acme/settings", data={}).status_code == 303
    assert acme(db).proof_rule == "any"
    mail = latest_mail_to(outbox, ADA)
    assert mail is not None and "security policy" in mail.subject.lower()
