#!/usr/bin/env python
"""How fast does `seed.py --invoices N` insert? (not a test: `make bench`)

Builds a throwaway database (a temp SQLite file; also a throwaway schema on PostgreSQL
when INVOICEAPP_TEST_POSTGRES_URL is set), seeds the demo data, then times
add_generated_invoices(N) — N invoices for each of the two organizations — and prints
rows per second. The goal is at least 20,000 rows/s on SQLite.

    .venv/bin/python bench/seeding.py [--invoices 100000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import postgres_schema
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import seed
from invoiceapp.db import make_engine
from invoiceapp.models import Invoice

GOAL_ROWS_PER_SECOND = 20_000
POSTGRES_URL = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")


def measure(url: str, n: int) -> tuple[int, float]:
    """(rows inserted, seconds) for add_generated_invoices(n) on a freshly seeded ``url``."""
    app = seed.make_app({"DATABASE_URL": url, "PASSWORD_HASH_PROFILE": "CHEAPEST", "TESTING": True})
    seed.run(app, progress=False)  # migrate + demo data, untimed
    engine = make_engine(url)
    try:
        with Session(engine) as db:
            before = db.scalar(select(func.count()).select_from(Invoice))
            start = time.perf_counter()
            seed.add_generated_invoices(db, n, progress=False)
            elapsed = time.perf_counter() - start
            after = db.scalar(select(func.count()).select_from(Invoice))
    finally:
        engine.dispose()
    return after - before, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000, help="per organization")
    args = parser.parse_args()
    os.environ.setdefault("FLASK_TESTING", "true")  # the cheap hash profile for the demo users

    results: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        results["SQLite"] = measure(f"sqlite:///{Path(folder) / 'bench.sqlite3'}", args.invoices)
    if POSTGRES_URL:
        with postgres_schema(POSTGRES_URL) as url:
            results["PostgreSQL"] = measure(url, args.invoices)

    print(f"seeding: add_generated_invoices({args.invoices:,}) for each of 2 organizations")
    failed = False
    for name, (rows, seconds) in results.items():
        rate = rows / seconds
        # The goal is stated for SQLite, the embedded default; PostgreSQL is reported.
        ok = rate >= GOAL_ROWS_PER_SECOND or name != "SQLite"
        failed |= not ok
        verdict = "ok" if ok else f"BELOW {GOAL_ROWS_PER_SECOND:,}"
        print(f"  {name:11s} {rows:9,d} rows in {seconds:6.2f} s = {rate:9,.0f} rows/s  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
