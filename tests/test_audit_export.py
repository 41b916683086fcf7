"""The audit log for the customer: filters kept in the URL, exports as CSV and JSON Lines,
and a hash chain anyone can check offline (invoiceapp.audit_chain).

Runs on SQLite and, with INVOICEAPP_TEST_POSTGRES_URL set, on PostgreSQL too. The chain
under many simultaneous writers on several gunicorn workers is in test_audit_flood.py.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import flask_login
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import Clock
from invoiceapp.audit import DENIED, record_audit
from invoiceapp.audit_chain import GENESIS, record_hash, verify_lines
from invoiceapp.cli import audit_commands
from invoiceapp.db import utcnow
from invoiceapp.models import AuditChain, AuditEvent, Organization, User
from support import signed_in_client

ROOT = Path(__file__).resolve().parent.parent
ADA, LINUS, HANK = "ada@acme.test", "linus@acme.test", "hank@globex.test"


@pytest.fixture()
def app(app_on_each_engine: Flask) -> Flask:
    return app_on_each_engine


def org_id(db: Session, slug: str) -> int:
    return db.scalars(select(Organization.id).where(Organization.slug == slug)).one()


def write(
    app: Flask, db: Session, email: str | None, slug: str, action: str, **fields: object
) -> None:
    """One record through the app's own writer, as ``email`` would cause it."""
    with app.test_request_context(environ_base={"REMOTE_ADDR": "192.0.2.9"}):
        if email is not None:
            flask_login.login_user(db.scalars(select(User).where(User.email == email)).one())
        record_audit(action, organization_id=org_id(db, slug), **fields)  # type: ignore[arg-type]


@pytest.fixture()
def log(app: Flask, db: Session) -> None:
    """Eight records, Acme's and Globex's interleaved as they would come."""
    for i in range(5):
        write(app, db, ADA if i % 2 else LINUS, "acme", "invoice.void", resource_id=f"inv_{i}",
              reason=f"acme {i}")  # fmt: skip
        if i < 3:
            write(app, db, HANK, "globex", "invoice.delete", resource_id=f"inv_g{i}")


def chain_of(db: Session, slug: str) -> list[AuditEvent]:
    return list(
        db.scalars(
            select(AuditEvent)
            .where(AuditEvent.organization_id == org_id(db, slug))
            .order_by(AuditEvent.chain_seq)
        )
    )


def export(client: FlaskClient, slug: str = "acme", kind: str = "jsonl", query: str = "") -> str:
    response = client.get(f"/orgs/{slug}/audit/export.{kind}{query}")
    assert response.status_code == 200, response.status_code
    assert response.headers["Cache-Control"] == "no-store"
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    # Closed, as a server does once sent: a streamed export holds its read transaction
    # until then, and an open one on PostgreSQL blocks the test schema's DROP.
    response.close()
    return text


# --- The chain -------------------------------------------------------------------------------


def test_each_record_extends_its_own_organizations_chain(
    app: Flask, db: Session, log: None
) -> None:
    acme, globex = chain_of(db, "acme"), chain_of(db, "globex")
    assert [event.chain_seq for event in acme] == [1, 2, 3, 4, 5]
    assert [event.chain_seq for event in globex] == [1, 2, 3]
    for chain in (acme, globex):
        assert chain[0].previous_hash == GENESIS
        for before, after in zip(chain, chain[1:], strict=False):
            assert after.previous_hash == before.record_hash
    heads = {row.organization_key: row for row in db.scalars(select(AuditChain))}
    assert heads[org_id(db, "acme")].last_seq == 5
    assert heads[org_id(db, "acme")].last_hash == acme[-1].record_hash


def test_the_hash_covers_the_content_and_the_record_before(db: Session, log: None) -> None:
    first = chain_of(db, "acme")[0]
    content = {
        "seq": 1, "organization_id": first.organization_id,
        "created_at": first.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor_id": first.actor_id, "actor_email": LINUS, "action": "invoice.void",
        "resource_id": "inv_0", "decision": "allowed", "status": 200, "reason": "acme 0",
        "rule": "", "ip_address": "192.0.2.9",
    }  # fmt: skip
    assert record_hash(content, GENESIS) == first.record_hash
    assert record_hash({**content, "reason": "acme 0!"}, GENESIS) != first.record_hash
    assert record_hash(content, "1" * 64) != first.record_hash


def test_a_refusal_records_the_rule_that_decided_it(app: Flask, db: Session) -> None:
    linus = signed_in_client(app, LINUS)
    assert linus.post("/invoices/inv_7/delete").status_code == 403
    [refusal] = [event for event in chain_of(db, "acme") if event.status == 403]
    assert (refusal.action, refusal.decision, refusal.rule) == ("invoice.delete", DENIED, "no")
    assert refusal.reason == "The member role does not include invoice.delete"
    assert refusal.chain_seq == 1 and refusal.previous_hash == GENESIS


def test_a_whole_export_verifies(app: Flask, db: Session, log: None) -> None:
    text = export(signed_in_client(app, ADA))
    lines = text.splitlines()
    assert len(lines) == 5
    records = [json.loads(line) for line in lines]
    assert [record["seq"] for record in records] == [1, 2, 3, 4, 5]
    assert [record["reason"] for record in records] == [f"acme {i}" for i in range(5)]
    verdict = verify_lines(lines)
    assert verdict.intact and verdict.records == 5
    assert str(verdict) == "OK: 5 records, an unbroken chain from number 1 to number 5"


def test_a_changed_missing_or_moved_record_breaks_the_chain_at_that_line(
    app: Flask, db: Session, log: None
) -> None:
    lines = export(signed_in_client(app, ADA)).splitlines()
    changed = [*lines]
    changed[2] = changed[2].replace('"acme 2"', '"acme 2 (nothing happened)"')
    assert (
        str(verify_lines(changed)) == "BROKEN at line 3: record 3 was changed after it was written"
    )
    missing = lines[:1] + lines[2:]
    assert str(verify_lines(missing)) == "BROKEN at line 2: record number 2 is missing (found 3)"
    # Renumbered to hide the gap: the link to the record before no longer holds.
    renumbered = [lines[0], *(json.dumps({**json.loads(line), "seq": n}) for n, line in
                              zip((2, 3, 4), lines[2:], strict=True))]  # fmt: skip
    assert str(verify_lines(renumbered)) == "BROKEN at line 2: record 2 does not follow record 1"
    assert not verify_lines([lines[1], lines[0]]).intact
    assert str(verify_lines(["not json"])) == "BROKEN at line 1: not a record of an audit export"


def test_a_range_of_days_verifies_from_its_first_record(
    app: Flask, db: Session, clock: Clock, log: None
) -> None:
    lines = export(signed_in_client(app, ADA)).splitlines()
    assert verify_lines(lines[2:]).intact  # the first record's link is taken on trust
    today = utcnow().date().isoformat()
    ranged = export(signed_in_client(app, ADA), query=f"?since={today}&until={today}")
    assert ranged.splitlines() == lines


def test_flask_audit_verify_exits_1_at_the_first_broken_link(
    app: Flask, log: None, tmp_path: Path
) -> None:
    text = export(signed_in_client(app, ADA))
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(text, encoding="utf-8")
    bad.write_text(text.replace('"acme 4"', '"acme four"'), encoding="utf-8")
    runner = CliRunner()
    ok = runner.invoke(audit_commands, ["verify", str(good)])
    assert ok.exit_code == 0 and ok.output.startswith("OK: 5 records")
    broken = runner.invoke(audit_commands, ["verify", str(bad)])
    assert broken.exit_code == 1
    assert broken.output.strip() == "BROKEN at line 5: record 5 was changed after it was written"


def test_the_standalone_check_needs_nothing_but_python(
    app: Flask, log: None, tmp_path: Path
) -> None:
    exported = tmp_path / "audit.jsonl"
    exported.write_text(export(signed_in_client(app, ADA)), encoding="utf-8")
    # -I -S: no site-packages, no environment, no current directory: only the file itself.
    checker = ROOT / "invoiceapp" / "audit_chain.py"
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(checker), str(exported)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 5 records")


# --- Filters, on the page, the API and the exports -------------------------------------------


def test_filters_by_target_and_by_days_on_the_page_the_api_and_the_export(
    app: Flask, db: Session, clock: Clock, log: None
) -> None:
    clock.advance(days=3)
    write(app, db, LINUS, "acme", "invoice.void", resource_id="inv_2", reason="later")
    ada = signed_in_client(app, ADA)
    page = ada.get("/orgs/acme/audit?target=inv_2").get_data(as_text=True)
    assert "Page" not in page or "2 records" in page
    assert page.count("<code>inv_2</code>") == 2
    assert 'name="target" value="inv_2"' in page  # kept in the form, and so in the URL

    later = utcnow().date().isoformat()
    api = ada.get(f"/api/v1/orgs/acme/audit?since={later}").get_json()
    assert [item["reason"] for item in api["items"]] == ["later"]
    assert api["items"][0]["seq"] == 6 and len(api["items"][0]["record_hash"]) == 64
    api = ada.get("/api/v1/orgs/acme/audit?target=inv_2&actor=LINUS@acme.test").get_json()
    assert [item["reason"] for item in api["items"]] == ["later", "acme 2"]
    before = (utcnow() - timedelta(days=1)).date().isoformat()
    exported = export(ada, query=f"?until={before}").splitlines()
    assert [json.loads(line)["seq"] for line in exported] == [1, 2, 3, 4, 5]
    # Malformed filters: the API says which; the page ignores them.
    refused = ada.get("/api/v1/orgs/acme/audit?since=yesterday&target=a%20b")
    assert refused.status_code == 422
    assert set(refused.get_json()["error"]["fields"]) >= {"since", "target"}
    assert ada.get("/orgs/acme/audit?since=yesterday").status_code == 200


def test_the_csv_export_keeps_the_filters_and_guards_formulas(
    app: Flask, db: Session, log: None
) -> None:
    write(app, db, LINUS, "acme", "invoice.update", resource_id="inv_9",
          reason="=HYPERLINK(\"http://evil.example\")")  # fmt: skip
    text = export(signed_in_client(app, ADA), kind="csv", query="?action=invoice.update")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["resource_id"] for row in rows] == ["inv_9"]
    assert rows[0]["reason"].startswith("'=")
    assert rows[0]["seq"] == "6" and rows[0]["times"] == "1"


def test_the_page_links_its_exports_with_the_same_filters(app: Flask, log: None) -> None:
    page = signed_in_client(app, ADA).get("/orgs/acme/audit?decision=allowed&target=inv_1")
    body = page.get_data(as_text=True)
    assert 'href="/orgs/acme/audit/export.jsonl?target=inv_1&amp;decision=allowed"' in body
    assert 'href="/orgs/acme/audit/export.csv?target=inv_1&amp;decision=allowed"' in body


# --- Who may export: the same gates as the page ----------------------------------------------


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_the_export_is_403_for_a_member_404_for_an_outsider_and_sign_in_for_nobody(
    app: Flask, log: None, kind: str
) -> None:
    assert signed_in_client(app, LINUS).get(f"/orgs/acme/audit/export.{kind}").status_code == 403
    outsider = signed_in_client(app, HANK).get(f"/orgs/acme/audit/export.{kind}")
    missing = signed_in_client(app, HANK).get(f"/orgs/nowhere/audit/export.{kind}")
    assert outsider.status_code == missing.status_code == 404
    anonymous = app.test_client().get(f"/orgs/acme/audit/export.{kind}")
    assert anonymous.status_code == 302 and "/sign-in" in anonymous.headers["Location"]


def test_an_export_holds_only_its_own_organizations_records(
    app: Flask, db: Session, log: None
) -> None:
    globex = export(signed_in_client(app, HANK), slug="globex").splitlines()
    assert [json.loads(line)["resource_id"] for line in globex] == ["inv_g0", "inv_g1", "inv_g2"]
    assert verify_lines(globex).intact


def test_a_finished_download_leaves_no_transaction_open(app: Flask, db: Session, log: None) -> None:
    """The response object outlives its stream (a test client, a proxy that is slow to
    close): the export's read transaction must end with its last record, or it would hold
    the log's locks (on PostgreSQL a TRUNCATE or a migration then waits for ever)."""
    db.commit()  # the test's own session lets go of its connection
    response = signed_in_client(app, ADA).get("/orgs/acme/audit/export.jsonl")
    assert response.get_data(as_text=True).count("\n") == 5  # read to the end, not closed
    assert app.extensions["db_engine"].pool.checkedout() == 0
