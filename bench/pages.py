#!/usr/bin/env python
"""Do the pages stay flat as an organization grows? (not a test: `make bench`)

Builds two throwaway databases (temp SQLite files; also two throwaway PostgreSQL schemas
when INVOICEAPP_TEST_POSTGRES_URL is set): one at seed size, one with --invoices generated
invoices (seed.py --invoices) and as many audit records added to every organization.
Signed in as ada (owner of Acme) with Flask's test client on each, it times every page
in interleaved pairs (one request at each size, which goes first alternating; CPU time on
SQLite, wall time on PostgreSQL), and prints
per page the median time at each size, the median of the pairs' ratios with the middle
half of them (goal: at most 1.5; pairs are added, up to --max-runs, while the median's
95 % interval still straddles the goal), and the SQL statements one request sends (goal: at
most 8, the same at both sizes; counted with a before_cursor_execute event).

    .venv/bin/python bench/pages.py [--invoices 100000] [--runs 30] [--max-runs 150]

Exit code 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import StatementCounter, paired_ratios, postgres_schema, quartiles, settled
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select, text

import seed
from invoiceapp import create_app
from invoiceapp.db import get_db
from invoiceapp.models import AuditEvent, Invoice, Organization

POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")
MAX_RATIO = 1.5
MAX_STATEMENTS = 8
STATUSES = ("draft", "sent", "paid", "void")

# page label -> path. page=999999 is the highest page number the views accept; they
# clamp it to the last page.
PAGES: list[tuple[str, str]] = [
    ("dashboard", "/dashboard"),
    ("invoices, first page", "/invoices"),
    ("invoices, last page", "/invoices?page=999999"),
    ("invoices, middle page", "/invoices?page=middle"),
    *[(f"invoices, {s}", f"/invoices?status={s}") for s in STATUSES],
    *[(f"invoices, {s}, last page", f"/invoices?status={s}&page=999999") for s in STATUSES],
    ("invoice inv_7", "/invoices/inv_7"),
    # The API lists the same number of items at both sizes (limit=same: as many as the seed
    # has): at seed size a draft list is 3 items, at 100,000 invoices a full page of 25, and
    # each item costs its serialisation (about 30 µs of CPU), not its query. Profiled at
    # 100,000 invoices: the draft list's query walks ix_invoices_org_status_listing and
    # stops after a page (0.06 ms); the full pages are printed for the record.
    ("API list", "/api/v1/invoices?limit=same"),
    ("API list, draft", "/api/v1/invoices?status=draft&limit=same"),
    ("API list, full page", "/api/v1/invoices"),
    ("API list, draft, full page", "/api/v1/invoices?status=draft"),
    ("API list, next page", "/api/v1/invoices?limit=5&cursor=next"),
    ("audit log", "/orgs/acme/audit"),
    ("audit log, last page", "/orgs/acme/audit?page=999999"),
    ("audit log, one action", "/orgs/acme/audit?action=invoice.send"),
    ("audit log, denied", "/orgs/acme/audit?decision=denied&page=999999"),
    ("audit log, one actor", "/orgs/acme/audit?actor=linus@acme.test"),
]


@dataclass
class Sample:
    median_ms: float
    statements: int
    status: int


def build_app(url: str, folder: Path) -> Flask:
    seed.migrate(url)
    app = create_app(
        {
            "SECRET_KEY": "bench-only-secret-key",
            "DATABASE_URL": url,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
            "MAIL_OUTBOX_DIR": str(folder / "outbox"),
            "PASSWORD_HASH_PROFILE": "CHEAPEST",
            "TESTING": True,
            "DEMO_MODE": False,
        }
    )
    with app.app_context():
        seed.seed(get_db())
    # A small log at seed size too, so both sizes show full pages (50 records per page).
    add_audit_records(app, SEED_AUDIT_RECORDS)
    return app


SEED_AUDIT_RECORDS = 120


AUDIT_COLUMNS = (
    "created_at", "actor_email", "organization_id", "action", "decision", "status", "reason",
)  # fmt: skip


def add_audit_records(app: Flask, per_organization: int) -> None:
    """Records spread over the last year: four actions, three actors and anonymous."""
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=365)
    actions = ("invoice.delete", "invoice.send", "invoice.mark_paid", "member.invite")
    actors = ("linus@acme.test", "eve@acme.test", "grace@acme.test", None)
    engine = app.extensions["db_engine"]
    with engine.begin() as connection:
        org_ids = connection.scalars(select(Organization.id)).all()
        rows = [
            (
                start + timedelta(seconds=300 * i + rng.randint(0, 299)),
                rng.choice(actors),
                org_id,
                rng.choice(actions),
                rng.choice(("allowed", "denied")),
                403,
                "bench",
            )
            for org_id in org_ids
            for i in range(per_organization)
        ]
        if engine.dialect.name == "postgresql":
            # COPY: one statement, so the count trigger runs once (as for seed.py's invoices).
            cursor = connection.connection.driver_connection.cursor()
            with (
                cursor,
                cursor.copy(f"COPY audit_events ({', '.join(AUDIT_COLUMNS)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        else:
            connection.execute(
                insert(AuditEvent.__table__),
                [dict(zip(AUDIT_COLUMNS, row, strict=True)) for row in rows],
            )


def grow(app: Flask, invoices: int, audit_records: int) -> None:
    """Add generated invoices (seed.py --invoices) and audit records to every organization."""
    with app.app_context():
        seed.add_generated_invoices(get_db(), invoices, progress=False)
    add_audit_records(app, audit_records)
    engine = app.extensions["db_engine"]
    if engine.dialect.name == "postgresql":
        # What autovacuum does within a minute or so of such a load: planner statistics,
        # and the counters' old row versions (every trigger run updated them) cleared.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))


# Pages with no verdict: printed for the record (offset pagination's middle still skips).
INFORMATIONAL = {"invoices, middle page", "API list, full page", "API list, draft, full page"}


def _middle_page(app: Flask) -> int:
    with app.app_context():
        total = get_db().scalar(
            select(func.count())
            .select_from(Invoice)
            .join(Organization)
            .where(Organization.slug == "acme", Invoice.deleted_at.is_(None))
        )
    return max(1, total // app.config["INVOICES_PER_PAGE"] // 2)


def _same_lengths(seed_size: FlaskClient) -> dict[str, str]:
    """``limit=same`` in an API list: as many items as that list has at seed size."""
    replacements = {}
    for _, path in PAGES:
        if "limit=same" in path:
            whole_list = path.replace("limit=same", "").rstrip("?&")
            count = len(seed_size.get(whole_list).get_json()["items"])
            replacements[path] = path.replace("limit=same", f"limit={count}")
    return replacements


def _resolved(path: str, replacements: dict[str, str]) -> str:
    for placeholder, value in replacements.items():
        path = path.replace(placeholder, value)
    return path


def signed_in_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    response = client.post(
        "/sign-in", data={"email": "ada@acme.test", "password": seed.DEMO_PASSWORD}
    )
    assert response.status_code == 303, response.status_code
    return client


def measure(
    small: Flask, big: Flask, runs: int, max_runs: int
) -> dict[str, tuple[Sample, Sample, list[float]]]:
    """Each page on both databases in pairs (seed size then big, or big then seed size,
    alternating), so that whatever else the machine is doing slows both sides of a pair
    alike; the ratio of each pair is kept. After ``runs`` pairs, more (up to ``max_runs``)
    while the median ratio is still too uncertain to call against the goal."""
    sides = []
    seed_size = signed_in_client(small)
    for app in (small, big):
        client = signed_in_client(app)
        # Five per page, so that even the seed's nine invoices have a second page.
        cursor = client.get("/api/v1/invoices?limit=5").get_json()["next_cursor"]
        replacements = {
            "page=middle": f"page={_middle_page(app)}",
            "cursor=next": f"cursor={cursor}",
            **_same_lengths(seed_size),
        }
        sides.append((client, StatementCounter(app.extensions["db_engine"]), replacements))
    return {
        label: _measure_page(sides, path, runs, max_runs, decide=label not in INFORMATIONAL)
        for label, path in PAGES
    }


def _clock(client: FlaskClient) -> Callable[[], float]:
    """CPU time of this process on SQLite, where the database works inside it: other
    programs on a busy machine cannot inflate it, while they stretch wall time tenfold.
    Wall time on PostgreSQL, whose server does part of the work in another process."""
    engine = client.application.extensions["db_engine"]
    return time.process_time if engine.dialect.name == "sqlite" else time.perf_counter


def _measure_page(
    sides: list[tuple[FlaskClient, StatementCounter, dict[str, str]]],
    path: str,
    runs: int,
    max_runs: int,
    *,
    decide: bool,
) -> tuple[Sample, Sample, list[float]]:
    """One page's pairs: each side's median and statement count, and the pairs' ratios."""
    timings: list[list[float]] = [[], []]
    counts: list[list[int]] = [[], []]
    statuses = [0, 0]
    clock = _clock(sides[0][0])
    for client, _, replacements in sides:
        client.get(_resolved(path, replacements))  # warm caches

    def timed(side: int) -> float:
        client, counter, replacements = sides[side]
        counter.reset()
        start = clock()
        response = client.get(_resolved(path, replacements))
        elapsed = clock() - start
        timings[side].append(elapsed)
        counts[side].append(counter.count)
        statuses[side] = response.status_code
        return elapsed

    ratios = paired_ratios(
        lambda: timed(0),
        lambda: timed(1),
        runs,
        keep_going=lambda r: decide and not settled(r, MAX_RATIO),
        max_rounds=max_runs,
    )
    samples = []
    for side in (0, 1):
        # The usual count: the session's "last seen" touch adds one now and then.
        usual = statistics.mode(counts[side])
        samples.append(Sample(statistics.median(timings[side]) * 1000, usual, statuses[side]))
    return samples[0], samples[1], ratios


def bench(
    urls: tuple[str, str], folder: Path, invoices: int, audit: int, runs: int, max_runs: int
) -> bool:
    small = build_app(urls[0], folder)
    big = build_app(urls[1], folder)
    start = time.perf_counter()
    grow(big, invoices, audit)
    grown_in = time.perf_counter() - start
    results = measure(small, big, runs, max_runs)
    for app in (small, big):
        app.extensions["db_engine"].dispose()

    sqlite = urls[0].startswith("sqlite")
    clock = "CPU time (SQLite runs in this process)" if sqlite else "wall time"
    print(
        f"  seed size: the demo data and {SEED_AUDIT_RECORDS} audit records per organization;"
        f" big: {invoices:,} invoices and {audit:,} audit records more (added in"
        f" {grown_in:.1f} s). Ratio: the median of {runs} to {max_runs} interleaved pairs"
        f" (more while the goal is in doubt), with the middle half of the pairs in brackets;"
        f" {clock}."
    )
    print(
        f"  {'page':30s} {'seed ms':>8s} {'big ms':>8s} {'ratio':>6s} {'(spread, pairs)':>22s}"
        f" {'SQL':>7s}"
    )
    ok = True
    for label, _ in PAGES:
        a, b, ratios = results[label]
        low, ratio, high = quartiles(ratios)
        problems = []
        if ratio > MAX_RATIO:
            problems.append(f"RATIO > {MAX_RATIO}")
        if b.statements > MAX_STATEMENTS or b.statements != a.statements:
            problems.append(f"STATEMENTS {a.statements} -> {b.statements}")
        if a.status != 200 or b.status != 200:
            problems.append(f"STATUS {a.status}/{b.status}")
        if label in INFORMATIONAL:
            verdict = f"(no goal{': ' + ', '.join(problems).lower() if problems else ''})"
        else:
            ok &= not problems
            verdict = ", ".join(problems) or "ok"
        sql = f"{a.statements}/{b.statements}" if a.statements != b.statements else a.statements
        print(
            f"  {label:30s} {a.median_ms:8.2f} {b.median_ms:8.2f} {ratio:6.2f}"
            f" {f'({low:.2f}–{high:.2f}, {len(ratios)})':>22s} {sql!s:>7s}"
            f"  {verdict}"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000, help="per organization")
    parser.add_argument(
        "--audit-records", type=int, default=None, help="per organization (default: --invoices)"
    )
    parser.add_argument("--runs", type=int, default=30, help="pairs per page, at least")
    parser.add_argument(
        "--max-runs", type=int, default=150, help="pairs per page while the goal is in doubt"
    )
    args = parser.parse_args()
    audit = args.invoices if args.audit_records is None else args.audit_records

    ok = True
    with tempfile.TemporaryDirectory() as folder:
        print("pages on SQLite")
        urls = (
            f"sqlite:///{Path(folder) / 'seed.sqlite3'}",
            f"sqlite:///{Path(folder) / 'big.sqlite3'}",
        )
        ok &= bench(urls, Path(folder), args.invoices, audit, args.runs, args.max_runs)
    if POSTGRES_URL:
        with (
            tempfile.TemporaryDirectory() as folder,
            postgres_schema(POSTGRES_URL) as small,
            postgres_schema(POSTGRES_URL) as big,
        ):
            print("pages on PostgreSQL")
            ok &= bench((small, big), Path(folder), args.invoices, audit, args.runs, args.max_runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
