"""Audit retention (issue 19 item 4): an organization's setting, removal only by the
operator's ``flask audit prune``, and the signed checkpoint the chain verifies from.

On SQLite and, with INVOICEAPP_TEST_POSTGRES_URL set, on PostgreSQL. The race against
writers on several gunicorn workers is the last test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import flask_login
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from conftest import Clock
from invoiceapp.audit import record_audit
from invoiceapp.audit_chain import verify_lines
from invoiceapp.audit_log import (
    AuditFilters,
    as_json_lines,
    checkpoint_line,
    exported_records,
    starting_checkpoint,
)
from invoiceapp.audit_retention import prune, signature_holds
from invoiceapp.cli import audit_commands
from invoiceapp.db import utcnow
from invoiceapp.models import (
    AuditChain,
    AuditCheckpoint,
    AuditCount,
    AuditEvent,
    Invoice,
    Organization,
    User,
    UserSession,
)
from support import REDIS_SERVER, all_at_once, signed_in_client, signed_in_session

ROOT = Path(__file__).resolve().parent.parent
ADA = "ada@acme.test"


@pytest.fixture()
def app(app_on_each_engine: Flask) -> Flask:
    return app_on_each_engine


def org_id(db: Session, slug: str) -> int:
    return db.scalars(select(Organization.id).where(Organization.slug == slug)).one()


def write(app: Flask, db: Session, slug: str, reason: str) -> None:
    """One record through the app's own writer, as Ada would cause it."""
    with app.test_request_context():
        flask_login.login_user(db.scalars(select(User).where(User.email == ADA)).one())
        record_audit("invoice.void", organization_id=org_id(db, slug), reason=reason)


def keep_days(db: Session, slug: str, days: int | None) -> None:
    db.execute(
        update(Organization).where(Organization.slug == slug).values(audit_retention_days=days)
    )
    db.commit()


def run_prune(app: Flask, *, dry_run: bool = False) -> str:
    """``flask audit prune`` as cron runs it."""
    result = app.test_cli_runner().invoke(
        args=["audit", "prune", *(["--dry-run"] if dry_run else [])]
    )
    assert result.exit_code == 0, result.output
    return result.output


def acme_records(db: Session) -> list[AuditEvent]:
    db.expire_all()
    return list(
        db.scalars(
            select(AuditEvent)
            .where(AuditEvent.organization_id == org_id(db, "acme"))
            .order_by(AuditEvent.chain_seq)
        )
    )


@pytest.fixture()
def old_and_new(app: Flask, db: Session, clock: Clock) -> None:
    """Acme: three records from 100 days ago, then two today. Acme keeps 90 days."""
    clock.advance(days=-100)
    for i in range(3):
        write(app, db, "acme", f"old {i}")
    clock.advance(days=100)
    for i in range(2):
        write(app, db, "acme", f"new {i}")
    keep_days(db, "acme", 90)


def export(client: FlaskClient, query: str = "") -> str:
    response = client.get(f"/orgs/acme/audit/export.jsonl{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


# --- The triggers: a door for the prune only ------------------------------------------------


def test_an_ordinary_delete_or_update_of_an_audit_record_still_fails(
    app: Flask, db: Session, old_and_new: None
) -> None:
    engine = app.extensions["db_engine"]
    for statement in (
        delete(AuditEvent),
        update(AuditEvent).values(reason="rewritten"),
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(statement)
    assert len(acme_records(db)) == 5


def test_the_prune_door_stays_shut_for_updates_and_for_other_transactions(
    app: Flask, db: Session, old_and_new: None
) -> None:
    """Opened by one transaction, the door is closed for every other one, and an UPDATE
    never passes it, not even inside the prune's own transaction."""
    engine = app.extensions["db_engine"]
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT set_config('invoiceapp.audit_prune', 'on', true)"))
        else:
            connection.execute(text("INSERT INTO audit_prune_permits (id) VALUES (1)"))
        connection.execute(update(AuditEvent).values(reason="rewritten"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(delete(AuditEvent))  # the permit above was rolled back with it
    assert len(acme_records(db)) == 5


# --- Pruning ---------------------------------------------------------------------------------


def test_prune_removes_only_records_older_than_the_retention_and_signs_a_checkpoint(
    app: Flask, db: Session, old_and_new: None
) -> None:
    before = db.scalar(
        select(func.sum(AuditCount.records)).where(AuditCount.organization_id == org_id(db, "acme"))
    )
    output = run_prune(app)
    assert "acme: keeps 90 days; removed 3 records (the chain now starts after number 3)" in output

    records = acme_records(db)
    assert [(r.chain_seq, r.reason) for r in records] == [(4, "new 0"), (5, "new 1")]
    checkpoint = db.get(AuditCheckpoint, org_id(db, "acme"))
    assert checkpoint is not None
    assert (checkpoint.last_seq, checkpoint.last_hash, checkpoint.removed) == (
        3, records[0].previous_hash, 3,
    )  # fmt: skip
    assert checkpoint.removed_before.date() == (utcnow() - timedelta(days=90)).date()
    assert len(checkpoint.signature) == 64
    # The page's totals follow the log.
    after = db.scalar(
        select(func.sum(AuditCount.records)).where(AuditCount.organization_id == org_id(db, "acme"))
    )
    assert after == before - 3
    # Globex keeps forever (the default): untouched.
    assert db.get(AuditCheckpoint, org_id(db, "globex")) is None


def test_keep_forever_is_the_default_and_prune_removes_nothing(
    app: Flask, db: Session, old_and_new: None
) -> None:
    keep_days(db, "acme", None)
    assert "nothing to remove" in run_prune(app)
    assert len(acme_records(db)) == 5
    assert db.scalar(select(func.count()).select_from(AuditCheckpoint)) == 0


def test_a_dry_run_counts_what_would_go_and_removes_nothing(
    app: Flask, db: Session, old_and_new: None
) -> None:
    assert "acme: keeps 90 days; would remove 3 records" in run_prune(app, dry_run=True)
    assert len(acme_records(db)) == 5
    assert db.scalar(select(func.count()).select_from(AuditCheckpoint)) == 0


def test_pruning_twice_removes_nothing_more_and_keeps_the_checkpoint(
    app: Flask, db: Session, old_and_new: None
) -> None:
    run_prune(app)
    first = db.get(AuditCheckpoint, org_id(db, "acme"))
    assert first is not None
    signed = (first.last_seq, first.removed, first.signature)
    assert "removed 0 records" in run_prune(app)
    db.expire_all()
    again = db.get(AuditCheckpoint, org_id(db, "acme"))
    assert again is not None and (again.last_seq, again.removed, again.signature) == signed
    assert len(acme_records(db)) == 2


def test_prune_works_in_batches_and_adds_up_across_runs(
    app: Flask, db: Session, clock: Clock, monkeypatch: pytest.MonkeyPatch, old_and_new: None
) -> None:
    import invoiceapp.audit_retention

    monkeypatch.setattr(invoiceapp.audit_retention, "BATCH", 2)
    run_prune(app)
    checkpoint = db.get(AuditCheckpoint, org_id(db, "acme"))
    assert checkpoint is not None and (checkpoint.last_seq, checkpoint.removed) == (3, 3)
    clock.advance(days=91)  # today's two are now old too
    run_prune(app)
    db.expire_all()
    checkpoint = db.get(AuditCheckpoint, org_id(db, "acme"))
    assert checkpoint is not None and (checkpoint.last_seq, checkpoint.removed) == (5, 5)
    assert acme_records(db) == []
    # The next record still links to the last removed one.
    write(app, db, "acme", "after")
    (record,) = acme_records(db)
    assert (record.chain_seq, record.previous_hash) == (6, checkpoint.last_hash)


# --- The export and its check ----------------------------------------------------------------


def test_the_export_starts_from_the_checkpoint_and_the_chain_verifies_from_there(
    app: Flask, db: Session, old_and_new: None, tmp_path: Path
) -> None:
    run_prune(app)
    text_ = export(signed_in_client(app, ADA))
    lines = text_.splitlines()
    header = json.loads(lines[0])["checkpoint"]
    assert (header["last_seq"], header["removed"]) == (3, 3)
    assert [json.loads(line)["seq"] for line in lines[1:]] == [4, 5]
    secret = app.config["SECRET_KEY"]
    verdict = verify_lines(
        lines, signature_check=lambda checkpoint: signature_holds(checkpoint, secret)
    )
    assert verdict.intact and verdict.signature_holds is True
    assert (verdict.records, verdict.first_seq, verdict.last_seq) == (2, 4, 5)

    exported = tmp_path / "audit.jsonl"
    exported.write_text(text_, encoding="utf-8")
    # flask audit verify has the key: it checks the signature.
    with app.app_context():
        result = CliRunner().invoke(audit_commands, ["verify", str(exported)])
    assert result.exit_code == 0, result.output
    assert "3 records up to number 3 were removed" in result.output
    assert "signature valid" in result.output
    assert "OK: 2 records, an unbroken chain from number 4 to number 5" in result.output
    # The standalone script has no key: it says so, and still checks every link.
    standalone = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "invoiceapp" / "audit_chain.py"), str(exported)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert standalone.returncode == 0, standalone.stderr
    assert "signature not checked: that needs the server's key" in standalone.stdout
    assert "OK: 2 records" in standalone.stdout


def test_a_forged_checkpoint_or_a_cut_after_it_does_not_verify(
    app: Flask, db: Session, old_and_new: None, tmp_path: Path
) -> None:
    run_prune(app)
    lines = export(signed_in_client(app, ADA)).splitlines()
    header = json.loads(lines[0])
    # Someone hides record 4 by claiming the prune went further: the signature says no.
    header["checkpoint"].update(
        last_seq=4, last_hash=json.loads(lines[1])["record_hash"], removed=4
    )
    forged = tmp_path / "forged.jsonl"
    forged.write_text("\n".join([json.dumps(header), lines[2]]) + "\n", encoding="utf-8")
    with app.app_context():
        result = CliRunner().invoke(audit_commands, ["verify", str(forged)])
    assert result.exit_code == 1
    assert "BROKEN at line 1: the checkpoint's signature is not ours" in result.output
    # Without the key only the links are checked: the forged start cannot be told apart,
    # but dropping a record after the real checkpoint can.
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join([lines[0], lines[2]]) + "\n", encoding="utf-8")
    verdict = verify_lines(cut.read_text().splitlines())
    assert not verdict.intact and verdict.problem == "record number 4 is missing (found 5)"


def test_a_filtered_export_has_no_checkpoint_line(
    app: Flask, db: Session, old_and_new: None
) -> None:
    run_prune(app)
    lines = export(signed_in_client(app, ADA), "?decision=allowed").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [4, 5]


# --- Pruning while the app writes, on several gunicorn workers --------------------------------


@pytest.mark.skipif(not REDIS_SERVER, reason="needs redis-server")
def test_prune_while_records_are_being_written_leaves_a_chain_that_verifies(
    served: tuple[str, Flask],
) -> None:
    """Acme members reach for Globex's invoices on several workers (each a 404, each a new
    record in Globex's log) while prune runs again and again with a clock 31 days ahead, so
    it chases the writers right up to the chain's head. Afterwards the checkpoint and the
    records left make one chain: removed + kept = every number handed out, no gap, no fork."""
    base, app = served
    engine = app.extensions["db_engine"]
    secret = app.config["SECRET_KEY"]
    with Session(engine) as db:
        globex = org_id(db, "globex")
        db.execute(
            update(Organization).where(Organization.id == globex).values(audit_retention_days=30)
        )
        db.commit()
        invoices = list(
            db.scalars(select(Invoice.public_id).where(Invoice.organization_id == globex))
        )
    actors = ("ada@acme.test", "linus@acme.test", "eve@acme.test")
    suffixes = ("", "/edit", "/delete")
    # One HTTP session per (actor, page), so each batch below uses each session once.
    sessions = {(a, x): signed_in_session(base, a) for a in actors for x in suffixes}
    batches = [
        [(sessions[actor, suffix], f"/invoices/{invoice}{suffix}")
         for actor in actors for suffix in suffixes]
        for invoice in invoices
    ]  # fmt: skip
    writing = threading.Event()
    writing.set()
    removed = 0

    def writers() -> None:
        try:
            for batch in batches:
                calls = [lambda s=s, p=p: s.get(base + p, allow_redirects=False) for s, p in batch]
                assert {response.status_code for response in all_at_once(calls)} == {404}
        finally:
            writing.clear()

    thread = threading.Thread(target=writers)
    thread.start()
    prunes = 0
    while writing.is_set() or prunes == 0:
        removed += sum(r.removed for r in prune(engine, utcnow() + timedelta(days=31), secret))
        prunes += 1
    thread.join()
    removed += sum(r.removed for r in prune(engine, utcnow() + timedelta(days=31), secret))

    with Session(engine) as db:
        checkpoint = db.get(AuditCheckpoint, globex)
        head = db.get(AuditChain, globex)
        assert checkpoint is not None and head is not None
        counted, last_removed, last_written = checkpoint.removed, checkpoint.last_seq, head.last_seq
        start = starting_checkpoint(db, globex)
        assert start is not None
        records = exported_records(db, globex, AuditFilters(), start["last_seq"])
        lines = [checkpoint_line(start), *as_json_lines(records)]
    verdict = verify_lines(lines, signature_check=lambda c: signature_holds(c, secret))
    assert verdict.intact, str(verdict)
    assert verdict.signature_holds is True
    assert counted == removed > 0
    assert last_removed + verdict.records == last_written >= sum(map(len, batches))
    assert prunes > 1


# --- The owner's setting, the audit page and the API ---------------------------------------


def retention_of(db: Session, slug: str) -> int | None:
    db.expire_all()
    return db.scalars(
        select(Organization.audit_retention_days).where(Organization.slug == slug)
    ).one()


def age_sessions(db: Session, email: str, minutes: int) -> None:
    """The password was entered ``minutes`` ago: past FRESH_AGE_SECONDS, not elevated."""
    user = db.scalars(select(User).where(User.email == email)).one()
    db.execute(
        update(UserSession)
        .where(UserSession.user_id == user.id)
        .values(authenticated_at=utcnow() - timedelta(minutes=minutes))
    )
    db.commit()


def test_the_owner_sets_the_retention_and_the_change_is_audited(app: Flask, db: Session) -> None:
    ada = signed_in_client(app, ADA)
    page = ada.get("/orgs/acme").get_data(as_text=True)
    assert 'data-testid="audit-retention"' in page and "forever" in page
    response = ada.post("/orgs/acme/audit/retention", data={"days": "365"})
    assert response.status_code == 303
    assert retention_of(db, "acme") == 365
    (record,) = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit.retention.update")
    ).all()
    assert record.reason == "audit retention forever -> 365 days"
    assert record.actor_email == ADA
    # Emptying the field keeps records forever again.
    assert ada.post("/orgs/acme/audit/retention", data={"days": ""}).status_code == 303
    assert retention_of(db, "acme") is None
    # The API's organizations show it.
    ada.post("/orgs/acme/audit/retention", data={"days": "30"})
    items = ada.get("/api/v1/orgs").get_json()["items"]
    assert {item["slug"]: item["audit_retention_days"] for item in items} == {"acme": 30}


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("29", "Choose between 30 and 3650 days"),
        ("3651", "Choose between 30 and 3650 days"),
        ("a year", "Enter a whole number of days"),
        ("-5", "Enter a whole number of days"),
    ],
)
def test_a_retention_out_of_range_or_not_a_number_is_refused_with_a_clear_message(
    app: Flask, db: Session, typed: str, problem: str
) -> None:
    response = signed_in_client(app, ADA).post("/orgs/acme/audit/retention", data={"days": typed})
    assert response.status_code == 422
    assert problem in response.get_data(as_text=True)
    assert retention_of(db, "acme") is None


def test_an_admin_or_member_cannot_set_the_retention(app: Flask, db: Session) -> None:
    for email in ("grace@acme.test", "linus@acme.test"):
        client = signed_in_client(app, email)
        assert 'data-testid="audit-retention"' not in client.get("/orgs/acme").get_data(
            as_text=True
        )
        response = client.post("/orgs/acme/audit/retention", data={"days": "30"})
        assert response.status_code == 403
        assert "audit.retention.update" in response.get_data(as_text=True)
    assert retention_of(db, "acme") is None
    # Another organization's setting is a 404, like one that does not exist.
    hank = signed_in_client(app, "hank@globex.test")
    assert hank.post("/orgs/acme/audit/retention", data={"days": "30"}).status_code == 404


def test_a_stale_session_is_sent_to_reauthenticate_before_changing_the_retention(
    app: Flask, db: Session
) -> None:
    ada = signed_in_client(app, ADA)
    age_sessions(db, ADA, minutes=11)
    response = ada.post("/orgs/acme/audit/retention", data={"days": "30"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/reauthenticate?next=/orgs/acme"
    assert retention_of(db, "acme") is None


def test_the_audit_page_says_when_records_were_removed(
    app: Flask, db: Session, old_and_new: None
) -> None:
    ada = signed_in_client(app, ADA)
    assert 'data-testid="retention-checkpoint"' not in ada.get("/orgs/acme/audit").get_data(
        as_text=True
    )
    run_prune(app)
    page = ada.get("/orgs/acme/audit").get_data(as_text=True)
    cutoff = (utcnow() - timedelta(days=90)).date().isoformat()
    today = utcnow().date().isoformat()
    assert f"Records before {cutoff} were removed on {today} under the retention setting" in page
