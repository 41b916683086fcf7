"""Simultaneous refusals against real gunicorn workers still make one record each window.

The first refusal of one actor, for one action, in one organization within the window is
recorded in full; the rest are counted beside it (invoiceapp.audit). When many come
at once, on several worker processes, exactly one of them must write the record and every
one of them must be counted. Each round below sends PARALLEL refusals at the same moment
for a bucket (actor, action) nobody used before, on SQLite and on PostgreSQL.

Before the count existed every refusal was a record: 288 records for 18 rounds of 16, on
each engine. Now: 18 records, each counting its 16.
Needs redis-server (several workers share their rate-limit storage; see gunicorn.conf.py).
The servers are conftest's shared ones (``served``: RACE_WORKERS workers on each engine, the
seeded data put back and Redis emptied before each test); starting gunicorn of its own for
each test was most of this file's time.
"""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from invoiceapp.audit_chain import verify_lines
from invoiceapp.audit_log import AuditFilters, as_json_lines, exported_records
from invoiceapp.models import AuditEvent, AuditRepeat, Invoice, Organization
from support import REDIS_SERVER, Browser, all_at_once, signed_in_browser

PARALLEL = 16
ACTORS = ["ada@acme.test", "linus@acme.test", "eve@acme.test"]
# Globex's pages, each a different action to refuse an Acme member (a 404 from scope).
REACHES = [
    ("/invoices/inv_42", "invoices.show"),
    ("/invoices/inv_42/edit", "invoices.edit"),
    ("/invoices/inv_42/delete", "invoices.confirm_delete"),
    ("/orgs/globex", "orgs.show"),
    ("/orgs/globex/members", "orgs.members"),
    ("/orgs/globex/billing", "orgs.billing"),
]
ROUNDS = len(ACTORS) * len(REACHES)

pytestmark = pytest.mark.skipif(not REDIS_SERVER, reason="needs redis-server")


def _globex_log(app: Flask) -> list[tuple[str, str, int]]:
    """(actor, action, refusals counted) for each record in Globex's log."""
    with app.extensions["db_engine"].connect() as connection:
        globex = connection.scalar(select(Organization.id).where(Organization.slug == "globex"))
        rows = connection.execute(
            select(AuditEvent.actor_email, AuditEvent.action, AuditRepeat.refusals)
            .outerjoin(AuditRepeat, AuditRepeat.event_id == AuditEvent.id)
            .where(AuditEvent.organization_id == globex)
            .order_by(AuditEvent.id)
        ).all()
    return [(actor or "", action, refusals or 1) for actor, action, refusals in rows]


def test_simultaneous_refusals_on_several_workers_make_one_record_with_every_one_counted(
    served: tuple[str, Flask],
) -> None:
    base, app = served
    browsers: dict[str, Browser] = {email: signed_in_browser(base, email) for email in ACTORS}
    for email in ACTORS:
        for path, _ in REACHES:
            browser = browsers[email]
            statuses = all_at_once([lambda b=browser, p=path: b.request(p)[0]] * PARALLEL)
            assert statuses == [404] * PARALLEL, (email, path, statuses)

    log = _globex_log(app)
    expected = [(email, action, PARALLEL) for email in ACTORS for _, action in REACHES]
    # Exactly one record per round, each counting every refusal of its round.
    assert sorted(log) == sorted(expected), (
        f"{len(log)} records for {ROUNDS} rounds of {PARALLEL}, counting {sum(n for *_, n in log)}"
    )


WRITERS = 40


def test_forty_simultaneous_writers_extend_one_chain_without_a_gap_or_a_fork(
    served: tuple[str, Flask],
) -> None:
    """Forty different refusals at the same moment, all into Globex's log, on several
    workers: each gets the next number in the chain and links to the record before it, so
    the whole log still verifies (invoiceapp.audit_chain). Were the last link read before
    it was locked, two writers could both follow it and fork the chain; the chain head is
    moved on by one UPDATE, which takes its lock first."""
    base, app = served
    sessions = app.extensions["db_sessionmaker"]
    with sessions() as db:
        globex = db.scalars(select(Organization.id).where(Organization.slug == "globex")).one()
        invoices = list(
            db.scalars(select(Invoice.public_id).where(Invoice.organization_id == globex))
        )
    browsers = {email: signed_in_browser(base, email) for email in ACTORS}
    reaches = [
        (browsers[email], f"/invoices/{invoice}{suffix}")
        for email in ACTORS
        for invoice in invoices
        for suffix in ("", "/edit")
    ][:WRITERS]
    assert len(reaches) == WRITERS
    statuses = all_at_once([lambda b=b, p=p: b.request(p)[0] for b, p in reaches])
    assert statuses == [404] * WRITERS
    with sessions() as db:
        lines = list(as_json_lines(exported_records(db, globex, AuditFilters())))
    verdict = verify_lines(lines)
    assert verdict.intact, str(verdict)
    assert (verdict.records, verdict.first_seq, verdict.last_seq) == (WRITERS, 1, WRITERS)
