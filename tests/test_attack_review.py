"""An attacker's review of the new credential and authorization paths: each test is named
for the attack it replays, and failed before the fix that follows it in the history."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from test_account_pages import confirm_path, mail_to
from test_email_sign_in import ask_for_code, ask_for_link, mailed_code, mailed_link, type_code
from test_org_security import acme, owner_with_second_factor, set_policy

from conftest import Clock
from invoiceapp.audit import record_audit
from invoiceapp.audit_chain import GENESIS, parse_noted, record_hash, verify_lines
from invoiceapp.cli import audit_commands
from support import (
    ask_for_reset,
    choose,
    finished,
    latest_mail_to,
    proofs,
    reset_path,
    signed_in_client,
)

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


# --- The audit export's checker: crafted files it must not accept ----------------------------


def _rechained(records: list[dict[str, object]], start: str) -> list[str]:
    """What a forger does: recompute every hash from ``start`` on (no key is needed)."""
    lines, previous = [], start
    for record in records:
        link = record_hash(record, previous)
        lines.append(json.dumps({**record, "previous_hash": previous, "record_hash": link}))
        previous = link
    return lines


def _acme_export(app: Flask, db: Session) -> list[str]:
    for reason in ("first", "second", "third"):
        with app.test_request_context():
            record_audit("invoice.void", organization_id=acme(db).id, reason=reason)
    owner = signed_in_client(app, ADA)
    exported = finished(owner.get("/orgs/acme/audit/export.jsonl"))  # closed: no open read
    lines = exported.get_data(as_text=True).splitlines()
    assert verify_lines(lines).intact
    return lines


def test_a_log_rewritten_with_recomputed_hashes_fails_against_a_hash_noted_earlier(
    app: Flask, db: Session, tmp_path: Path
) -> None:
    lines = _acme_export(app, db)
    last = json.loads(lines[-1])
    noted = f"{last['seq']}:{last['record_hash']}"
    records = [json.loads(line) for line in lines]
    records[1]["reason"] = "nothing to see here"
    forged = _rechained(records, GENESIS)
    assert verify_lines(forged).intact  # a file alone cannot tell: the hashes need no key

    verdict = verify_lines(forged, parse_noted(noted))
    assert not verdict.intact
    assert verdict.problem == (
        f"record {last['seq']} is not the one noted earlier (its hash differs)"
    )
    # Cut short before the noted record: also refused.
    assert not verify_lines(lines[:-1], parse_noted(noted)).intact
    assert verify_lines(lines, parse_noted(noted)).intact

    exported = tmp_path / "forged.jsonl"
    exported.write_text("\n".join(forged) + "\n", encoding="utf-8")
    refused = CliRunner().invoke(audit_commands, ["verify", str(exported), "--noted", noted])
    assert refused.exit_code == 1 and refused.output.startswith("BROKEN at line 3")


def test_a_forged_record_one_that_does_not_start_the_chain_is_refused(
    app: Flask, db: Session
) -> None:
    """Record 1 follows nothing: its previous hash is the genesis one, never taken on trust."""
    records = [json.loads(line) for line in _acme_export(app, db)]
    forged = _rechained(records, "f" * 64)
    assert str(verify_lines(forged)) == "BROKEN at line 1: record 1 does not start the chain"


def test_a_field_given_twice_is_refused(app: Flask, db: Session) -> None:
    """Python keeps the last of two "reason" fields, a spreadsheet or jq may show the first:
    the checker must not vouch for a line that reads two ways."""
    lines = _acme_export(app, db)
    first = json.loads(lines[0])
    doubled = '{"reason":"something else",' + lines[0][1:]
    assert json.loads(doubled)["reason"] == first["reason"]  # what Python (and the hash) read
    assert str(verify_lines([doubled, *lines[1:]])) == (
        "BROKEN at line 1: not a record of an audit export"
    )


def test_another_organizations_records_rechained_into_an_export_are_refused(
    app: Flask, db: Session
) -> None:
    records = [json.loads(line) for line in _acme_export(app, db)]
    records[2]["organization_id"] = int(str(records[2]["organization_id"])) + 1
    forged = _rechained(records, GENESIS)
    assert str(verify_lines(forged)) == (
        "BROKEN at line 3: record 3 belongs to another organization's log"
    )


def _move_address(owner: FlaskClient, outbox: Path, new: str) -> None:
    assert owner.post("/account/email", data={"email": new}).status_code == 303
    pressed = owner.post(confirm_path(mail_to(outbox, new)))
    assert pressed.status_code == 200


def test_a_code_asked_for_before_the_address_moved_away_and_back_no_longer_signs_in(
    app: Flask, outbox: Path, db: Session
) -> None:
    """Codes and links in flight belong to the address they were mailed to: moving the
    account to another address ends them, and moving it back does not bring them back."""
    intruder = app.test_client()
    ask_for_code(intruder)
    typed = mailed_code(outbox)
    owner = signed_in_client(app, ADA)
    _move_address(owner, outbox, "ada@analytical.example")
    _move_address(owner, outbox, ADA)

    late = type_code(intruder, typed)
    assert late.status_code == 401
    assert "email_code" not in proofs(db, ADA)
