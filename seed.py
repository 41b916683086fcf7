#!/usr/bin/env python
"""Migrate the database to head, then seed the demo data (CONTRACT.md sections 1 and 3).

    .venv/bin/python seed.py                 # migrate + seed; idempotent
    .venv/bin/python seed.py --reset         # delete all rows first, then seed
    .venv/bin/python seed.py --invoices 2000 # also add 2000 generated invoices per organization

The database is ``DATABASE_URL`` from the app configuration (``FLASK_DATABASE_URL``, else
the SQLite file in ``instance/``). Passwords are hashed with the configured Argon2id
profile (``FLASK_PASSWORD_HASH_PROFILE=CHEAPEST`` makes seeding fast in tests).

Re-running never changes what is already there: organizations are found by slug, users by
email, memberships by (user, organization), the two invoices with fixed public ids (inv_7,
inv_42) by public id and every other demo invoice by (organization, number). An existing
user's password hash is never replaced.

Apart from inv_7 and inv_42, invoice public ids are random (invoiceapp.invoicing.new_public_id),
so they differ between installs and after --reset; demo_invoice_id() looks one up.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from flask import Flask
from sqlalchemy import Engine, delete, func, insert, make_url, select, text
from sqlalchemy.orm import Session
from tqdm import tqdm

from invoiceapp.config import _development_secret_key, load_config
from invoiceapp.db import ensure_sqlite_directory, make_engine
from invoiceapp.db_triggers import INVOICE_COUNT_TRIGGERS_SQLITE

# The demo data itself lives in the package (the running demo resets with it, and a
# wheel holds it); this file is the command that migrates, then seeds. Tests, bench/
# and load/ read the demo data through it, so its names stay importable from here.
from invoiceapp.demo_data import (
    DEMO_PASSWORD,
    DEMO_TOTP_SECRET,
    GENERATED_CUSTOMERS,
    ORGANIZATIONS,
    STATUS_WEIGHTS,
    SeedReport,
    demo_invoice_id,
    highest_number,
    random_public_id,
    reset,
    seed,
)
from invoiceapp.invoicing import catch_up_invoice_counters
from invoiceapp.models import (
    CURRENCIES,
    Invoice,
    InvoiceCount,
    Membership,
    Organization,
)

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_TOTP_SECRET",
    "demo_invoice_id",
    "main",
    "make_app",
    "migrate",
    "random_public_id",
    "reset",
    "run",
    "seed",
]

ROOT = Path(__file__).resolve().parent
ALEMBIC_INI = ROOT / "alembic.ini"
BATCH_SIZE = 10_000


# --- Application, database, migrations --------------------------------------------------


def make_app(overrides: dict[str, Any] | None = None) -> Flask:
    """A bare Flask app with the project's configuration: enough for hash_password() and
    for encrypting Tess's TOTP secret.

    Reads the same defaults and FLASK_* variables as create_app(). The secret is encrypted
    with a key derived from FLASK_TOTP_ENCRYPTION_KEY or the secret key, so the seed must
    use the key the app will serve with: FLASK_SECRET_KEY when set, else the development
    key in instance/secret_key, which `make demo` and `flask run --debug` use too.
    """
    app = Flask("invoiceapp", instance_path=str(ROOT / "instance"))
    settings: dict[str, Any] = {}
    if not os.environ.get("FLASK_SECRET_KEY") and "SECRET_KEY" not in (overrides or {}):
        settings["SECRET_KEY"] = _development_secret_key(Path(app.instance_path))
    settings.update(overrides or {})
    load_config(app, settings)
    return app


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig(str(ALEMBIC_INI))
    # Passed as an attribute, not as sqlalchemy.url: ini values are %-interpolated.
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(url: str) -> str:
    """Upgrade the database to head; returns a one-line description."""
    ensure_sqlite_directory(url)
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        command.upgrade(alembic_config(url), "head")
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        return f"already at {after}"
    return f"upgraded {before or 'empty database'} -> {after}"


# --- Generated invoices (--invoices N) --------------------------------------------------

MAX_AGE_DAYS = 730  # generated invoices were issued in the last two years
PAYMENT_TERMS_DAYS = (14, 30, 45)
WORKDAY_SECONDS = 10 * 60 * 60  # created between 08:00 and 18:00 UTC on the issue date
# The columns a generated invoice fills, in the order _GeneratedRows makes them.
GENERATED_COLUMNS = (
    "public_id", "organization_id", "number", "customer", "amount_minor", "currency",
    "status", "issue_date", "due_date", "created_by_id", "created_at", "updated_at",
)  # fmt: skip
_COLUMN_LIST = ", ".join(GENERATED_COLUMNS)


def add_generated_invoices(
    db: Session,
    n: int,
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool | None = None,
    today: date | None = None,
) -> dict[str, int]:
    """Add ``n`` generated invoices to every seeded organization with bulk inserts; commit.

    Numbers continue from each organization's highest number. Returns slug -> count.
    The progress bar goes to stderr, and only when stderr is a terminal (unless forced).

    One transaction, rows made as plain tuples in the form the database driver takes,
    and the fastest bulk path each database has (bench/seeding.py measures it):
    executemany on SQLite, COPY on PostgreSQL. The invoice counts (InvoiceCount) are
    right when this commits: see _bulk_writer.
    """
    if n <= 0:
        return {}
    today = today or date.today()
    slugs = [spec.slug for spec in ORGANIZATIONS]
    orgs = db.execute(
        select(Organization.id, Organization.slug).where(Organization.slug.in_(slugs))
    ).all()
    if progress is None:
        progress = sys.stderr.isatty()
    dialect = db.get_bind().dialect.name
    maker = _GeneratedRows(today, as_text=dialect == "sqlite")

    added: dict[str, int] = {}
    with (
        tqdm(total=n * len(orgs), unit="invoice", disable=not progress, file=sys.stderr) as bar,
        _bulk_writer(db, [org_id for org_id, _ in orgs]) as write,
    ):
        for org_id, slug in orgs:
            bar.set_description(slug)
            members = db.scalars(
                select(Membership.user_id).where(Membership.organization_id == org_id)
            ).all() or [None]
            first_number = highest_number(db, org_id) + 1
            # Oldest first, so higher numbers have later issue dates, as in real books.
            ages_in_days = maker.ages(n)
            for start in range(0, n, batch_size):
                batch = maker.make(
                    org_id, first_number, ages_in_days, start, min(start + batch_size, n), members
                )
                write(batch)
                bar.update(len(batch))
            added[slug] = n
    catch_up_invoice_counters(db)
    if dialect == "postgresql":
        db.execute(text("ANALYZE invoices"))  # fresh statistics for the planner at once
    db.commit()
    return added


class _GeneratedRows:
    """Random invoices as tuples of GENERATED_COLUMNS, cheaply.

    Every date and time a row can have is made once up front, so a row costs a handful
    of list lookups and one random id. For SQLite they are the text SQLAlchemy stores
    (its Date and DateTime formats; UTC): rows go to the driver as they are, with no type
    processing per value. tests/test_scale.py checks that the text matches.
    """

    def __init__(self, today: date, *, as_text: bool) -> None:
        self.rng = random.Random()
        longest_terms = max(PAYMENT_TERMS_DAYS)
        self.offset = longest_terms  # days[age - terms + offset] is a due date
        days = [today - timedelta(days=age) for age in range(-longest_terms, MAX_AGE_DAYS + 1)]
        clock = [timedelta(hours=8, seconds=s) for s in range(WORKDAY_SECONDS + 1)]
        midnights = [datetime.combine(day, time(0, 0), tzinfo=UTC) for day in days]
        self.days: list[Any]
        self.created: Callable[[int, int], Any]
        if as_text:
            self.days = [day.isoformat() for day in days]
            clock_text = [f"{_hms(offset.seconds)}.000000" for offset in clock]
            day_text = self.days
            self.created = lambda day, second: f"{day_text[day]} {clock_text[second]}"
        else:
            self.days = days
            self.created = lambda day, second: midnights[day] + clock[second]
        self.statuses = [s.value for s in STATUS_WEIGHTS]
        self.weights = list(STATUS_WEIGHTS.values())

    def ages(self, n: int) -> list[int]:
        random_ = self.rng.random
        return sorted((int(random_() * (MAX_AGE_DAYS + 1)) for _ in range(n)), reverse=True)

    def make(
        self,
        org_id: int,
        first_number: int,
        ages: list[int],
        start: int,
        stop: int,
        members: Sequence[int | None],
    ) -> list[tuple[Any, ...]]:
        rng, count = self.rng, stop - start
        random_, days, created, offset = rng.random, self.days, self.created, self.offset
        customers = rng.choices(GENERATED_CUSTOMERS, k=count)
        currencies = rng.choices(CURRENCIES, k=count)
        statuses = rng.choices(self.statuses, self.weights, k=count)
        terms = rng.choices(PAYMENT_TERMS_DAYS, k=count)
        authors = rng.choices(members, k=count)
        rows = []
        for j in range(count):
            day = ages[start + j] + offset
            created_at = created(day, int(random_() * (WORKDAY_SECONDS + 1)))
            rows.append(
                (
                    random_public_id(),
                    org_id,
                    first_number + start + j,
                    customers[j],
                    1_000 + int(random_() * 4_999_001),  # 10.00 to 50,000.00
                    currencies[j],
                    statuses[j],
                    days[day],
                    days[day - terms[j]],
                    authors[j],
                    created_at,
                    created_at,
                )
            )
        return rows


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@contextmanager
def _bulk_writer(
    db: Session, org_ids: list[int]
) -> Iterator[Callable[[list[tuple[Any, ...]]], None]]:
    """A function that inserts batches of generated rows, all in the session's transaction.

    SQLite: the invoice-count triggers fire once per row, which would cost about a third
    of the load. So, deliberately, inside one IMMEDIATE transaction (the write lock is
    held from the start; readers keep seeing the old data): drop the triggers, insert,
    recount the organizations' invoices into invoice_counts, create the triggers again.
    SQLite's DDL is transactional, so a failure rolls all of it back, triggers included,
    and nobody can ever write an invoice while they are missing. The page cache is raised
    for the load (the indexes' pages stay in memory) and put back afterwards.

    PostgreSQL: COPY, and the statement-level triggers run once per batch, so the counts
    stay right as it goes. Other databases: executemany of a Core insert.
    """
    connection = db.connection()
    dialect = connection.dialect.name
    table = Invoice.__table__
    if dialect == "postgresql":
        copy_sql = f"COPY invoices ({_COLUMN_LIST}) FROM STDIN"
        driver = connection.connection.driver_connection

        def copy_rows(rows: list[tuple[Any, ...]]) -> None:
            with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)

        yield copy_rows
        return
    if dialect != "sqlite":
        statement = insert(table)
        yield lambda rows: connection.execute(
            statement, [dict(zip(GENERATED_COLUMNS, row, strict=True)) for row in rows]
        )
        return

    driver = connection.connection.driver_connection
    if not driver.in_transaction:
        # pysqlite would begin only at the first INSERT, after the DROP TRIGGERs below
        # had already been committed on their own.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    cache_size = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql("PRAGMA cache_size = -262144")  # 256 MiB, for this load only
    try:
        for trigger in ("invoice_counts_insert", "invoice_counts_update", "invoice_counts_delete"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
        placeholders = ", ".join("?" * len(GENERATED_COLUMNS))
        insert_sql = f"INSERT INTO invoices ({_COLUMN_LIST}) VALUES ({placeholders})"
        yield lambda rows: connection.exec_driver_sql(insert_sql, rows)
        _recount_invoices(db, org_ids)
        for statement in INVOICE_COUNT_TRIGGERS_SQLITE:
            connection.exec_driver_sql(statement)
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {int(cache_size)}")


def _recount_invoices(db: Session, org_ids: list[int]) -> None:
    """Set invoice_counts of these organizations to what COUNT(*) says now."""
    db.execute(delete(InvoiceCount).where(InvoiceCount.organization_id.in_(org_ids)))
    live = (
        select(Invoice.organization_id, Invoice.status, func.count())
        .where(Invoice.organization_id.in_(org_ids), Invoice.deleted_at.is_(None))
        .group_by(Invoice.organization_id, Invoice.status)
    )
    db.execute(insert(InvoiceCount).from_select(["organization_id", "status", "live_count"], live))


# --- Command line -----------------------------------------------------------------------


def run(
    app: Flask, *, reset_first: bool = False, invoices: int = 0, progress: bool | None = None
) -> SeedReport:
    """Migrate, optionally reset, seed, optionally add generated invoices."""
    url = app.config["DATABASE_URL"]
    schema = migrate(url)
    engine = make_engine(url)
    try:
        with app.app_context(), Session(engine, expire_on_commit=False) as db:
            if reset_first:
                reset(db)
            report = seed(db)
            report.schema = schema
            report.reset = reset_first
            report.generated_invoices = add_generated_invoices(db, invoices, progress=progress)
    finally:
        engine.dispose()
    return report


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def _looks_like_production(app: Flask) -> bool:
    """A deployment sets its own secret key; a checkout for the demo or the tests does not."""
    development = bool(app.debug or app.config["DEMO_MODE"] or app.testing)
    return bool(os.environ.get("FLASK_SECRET_KEY")) and not development


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Migrate DATABASE_URL to head, then seed the demo data (idempotent)."
    )
    parser.add_argument(
        "--reset", action="store_true", help="delete all data first, then seed from scratch"
    )
    parser.add_argument(
        "--invoices",
        type=_count,
        default=0,
        metavar="N",
        help="also add N generated invoices to every seeded organization",
    )
    parser.add_argument(
        "--yes-this-is-not-production",
        action="store_true",
        help="seed even though the configuration looks like a deployment (FLASK_SECRET_KEY set)",
    )
    args = parser.parse_args(argv)

    app = make_app()
    if _looks_like_production(app) and not args.yes_this_is_not_production:
        print(
            "seed.py: this looks like a deployment (FLASK_SECRET_KEY is set, and neither "
            "FLASK_DEBUG, FLASK_DEMO_MODE nor FLASK_TESTING): demo accounts with a published "
            "password do not belong there. Add --yes-this-is-not-production if they do.",
            file=sys.stderr,
        )
        return 2
    print(f"database: {make_url(app.config['DATABASE_URL']).render_as_string(hide_password=True)}")
    report = run(app, reset_first=args.reset, invoices=args.invoices)
    for line in report.lines():
        print(line)
    if not report.changed:
        print("nothing to do: the demo data was already there")
    print(f"sign in as any seeded user (e.g. ada@acme.test) with password {DEMO_PASSWORD}")
    print(f"tess@acme.test also needs a TOTP code for the demo secret {DEMO_TOTP_SECRET}")
    if app.config["DEMO_MODE"]:
        print(f"the guided tour: {app.config['BASE_URL']}/tour")
    return 0


if __name__ == "__main__":
    sys.exit(main())
