#!/usr/bin/env python
"""What does the audit log's hash chain cost? (not a test: `make bench`)

1. Inserts: WRITERS threads each append RECORDS records at once, through the app's own
   writer (invoiceapp.audit.record_audit: chain head, hash, insert, in one transaction),
   and the same rows as plain inserts without the chain, interleaved in rounds. Twice: all
   writers into one organization's log (they queue on its chain head), and each writer
   into an organization of its own (they should not queue on each other). Prints records
   per second and the chained/plain ratio, the median of the rounds and their spread.
2. Export: 100,000 records in one organization's log, downloaded as JSON Lines through the
   app; prints the time, and the peak Python memory while streaming beside the same for
   10,000 records (constant memory: the two peaks should be alike), then verifies it.

SQLite always; PostgreSQL too when INVOICEAPP_TEST_POSTGRES_URL is set.

    .venv/bin/python bench/audit_chain.py [--writers 40] [--records 25] [--export 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from common import postgres_schema
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

import seed
from invoiceapp import create_app
from invoiceapp.audit import record_audit
from invoiceapp.audit_chain import GENESIS, record_hash, timestamp, verify_lines
from invoiceapp.db import utcnow
from invoiceapp.demo_data import DEMO_PASSWORD
from invoiceapp.models import AuditChain, AuditEvent, Organization

POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")
ROUNDS = 5
# The chain may cost this much more per insert, under contention (chained / plain rate).
GOAL_RATIO = 0.5


def _at_once(writers: int, work: Callable[[int], None]) -> float:
    """Seconds for ``writers`` threads, released together, to each run work(index)."""
    start = threading.Barrier(writers + 1)
    threads = [threading.Thread(target=lambda i=i: (start.wait(), work(i))) for i in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def _row(organization_id: int, i: int) -> dict[str, Any]:
    return {
        "created_at": utcnow(), "actor_id": None, "actor_email": None,
        "organization_id": organization_id, "action": "invoice.read",
        "resource_id": f"inv_{i}", "decision": "allowed", "status": 200,
        "reason": "bench", "rule": "", "ip_address": None,
    }  # fmt: skip


def measure_inserts(app: Any, writers: int, records: int) -> dict[str, list[float]]:
    engine = app.extensions["db_engine"]

    def chained(org_of: Callable[[int], int]) -> Callable[[int], None]:
        def work(index: int) -> None:
            with app.test_request_context():
                for i in range(records):
                    record_audit(
                        "invoice.read", organization_id=org_of(index), resource_id=f"inv_{i}"
                    )

        return work

    def plain(org_of: Callable[[int], int]) -> Callable[[int], None]:
        def work(index: int) -> None:
            for i in range(records):
                with engine.begin() as connection:
                    connection.execute(insert(AuditEvent), _row(org_of(index), i))

        return work

    ratios: dict[str, list[float]] = {"one organization": [], "one organization each": []}
    rates: dict[str, list[float]] = {}
    for _ in range(ROUNDS):
        for label, org_of in (("one organization", lambda _i: 1),
                              ("one organization each", lambda i: 10_000 + i)):  # fmt: skip
            total = writers * records
            slow = total / _at_once(writers, chained(org_of))
            fast = total / _at_once(writers, plain(org_of))
            ratios[label].append(slow / fast)
            rates.setdefault(f"{label}: chained rec/s", []).append(slow)
            rates.setdefault(f"{label}: plain rec/s", []).append(fast)
    return {**rates, **{f"{k}: chained/plain": v for k, v in ratios.items()}}


def fill_log(app: Any, organization_id: int, count: int) -> None:
    """``count`` chained records, written in bulk the way record_audit links them."""
    engine = app.extensions["db_engine"]
    with Session(engine) as db:
        head = db.get(AuditChain, organization_id)
        seq, previous = (head.last_seq, head.last_hash) if head else (0, GENESIS)
        start = utcnow() - timedelta(days=30)
        batch: list[dict[str, Any]] = []
        for i in range(count):
            seq += 1
            row = {**_row(organization_id, i), "created_at": start + timedelta(seconds=i)}
            link = record_hash(
                {**row, "seq": seq, "created_at": timestamp(row["created_at"])}, previous
            )
            batch.append({**row, "chain_seq": seq, "previous_hash": previous, "record_hash": link})
            previous = link
            if len(batch) == 5000:
                db.execute(insert(AuditEvent), batch)
                batch = []
        if batch:
            db.execute(insert(AuditEvent), batch)
        if head is None:
            db.add(AuditChain(organization_key=organization_id, last_seq=seq, last_hash=previous))
        else:
            head.last_seq, head.last_hash = seq, previous
        db.commit()


def measure_export(app: Any, slug: str) -> tuple[int, float, int, bool]:
    """(lines, seconds, peak bytes allocated while streaming, verified) for one export."""
    client = app.test_client()
    signed_in = client.post("/sign-in", data={"email": "ada@acme.test", "password": DEMO_PASSWORD})
    assert signed_in.status_code == 303, signed_in.status_code
    tracemalloc.start()
    began = time.perf_counter()
    response = client.get(f"/orgs/{slug}/audit/export.jsonl", buffered=False)
    lines: list[str] = []
    pending = ""
    for chunk in response.response:
        pending += chunk.decode() if isinstance(chunk, bytes) else chunk
        *complete, pending = pending.split("\n")
        lines.extend(complete)
    elapsed = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The lines are kept above only to verify them afterwards; the peak counts them too,
    # so it is measured again without keeping them.
    tracemalloc.start()
    response = client.get(f"/orgs/{slug}/audit/export.jsonl", buffered=False)
    for _chunk in response.response:
        pass
    _, streaming_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(lines), elapsed, streaming_peak, verify_lines(lines).intact


def run(url: str, writers: int, records: int, export: int) -> bool:
    seeding = seed.make_app({"DATABASE_URL": url, "PASSWORD_HASH_PROFILE": "CHEAPEST"})
    seed.run(seeding, progress=False)
    app = create_app({
        "DATABASE_URL": url, "TESTING": True, "SECRET_KEY": "bench-" + "k" * 32,
        "PASSWORD_HASH_PROFILE": "CHEAPEST", "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False,
        "MAIL_OUTBOX_DIR": tempfile.mkdtemp(prefix="bench-outbox-"),
    })  # fmt: skip
    print(f"  {writers} writers × {records} records, {ROUNDS} interleaved rounds:")
    met = True
    for label, values in measure_inserts(app, writers, records).items():
        median = statistics.median(values)
        spread = f"{min(values):.2f}–{max(values):.2f}"
        print(f"    {label:48} median {median:9.2f}   spread {spread}")
        if label.endswith("chained/plain") and median < GOAL_RATIO:
            met = False
    with Session(app.extensions["db_engine"]) as db:
        acme = db.scalars(select(Organization.id).where(Organization.slug == "acme")).one()
    fill_log(app, acme, export // 10)
    small = measure_export(app, "acme")
    fill_log(app, acme, export - export // 10)
    large = measure_export(app, "acme")
    for lines, seconds, peak, intact in (small, large):
        chain = "verified" if intact else "BROKEN"
        print(f"    export of {lines:7} records: {seconds:6.2f} s, peak Python memory while "
              f"streaming {peak / 1e6:6.2f} MB, chain {chain}")  # fmt: skip
    memory_flat = large[2] < 2 * small[2] + 1e6
    print(f"    memory {'flat' if memory_flat else 'GROWS'} with the log's length")
    return met and memory_flat and small[3] and large[3]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=40)
    parser.add_argument("--records", type=int, default=25)
    parser.add_argument("--export", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("FLASK_TESTING", "true")
    met = True
    with tempfile.TemporaryDirectory() as folder:
        print("SQLite")
        met &= run(
            f"sqlite:///{Path(folder) / 'bench.sqlite3'}", args.writers, args.records, args.export
        )
    if POSTGRES_URL:
        with postgres_schema(POSTGRES_URL) as url:
            print("PostgreSQL")
            met &= run(url, args.writers, args.records, args.export)
    print(
        f"goal: chained/plain ≥ {GOAL_RATIO} under contention; export memory flat:",
        "met" if met else "MISSED",
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
