"""An attacker's review of the new credential and authorization paths: each test is named
for the attack it replays, and failed before the fix that follows it in the history."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy.orm import Session
from test_email_sign_in import ask_for_code, ask_for_link, mailed_code, mailed_link, type_code

from support import ask_for_reset, choose, proofs, reset_path

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
