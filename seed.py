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
from dataclasses import dataclass, field
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

from invoiceapp.authn.passwords import hash_password
from invoiceapp.authn.totp import encrypt_secret
from invoiceapp.config import _development_secret_key, load_config
from invoiceapp.db import Base, ensure_sqlite_directory, make_engine, utcnow
from invoiceapp.invoicing import catch_up_invoice_counters, new_public_id
from invoiceapp.models import (
    AUDIT_TRIGGERS_SQLITE,
    CURRENCIES,
    INVOICE_COUNT_TRIGGERS_SQLITE,
    AuditEvent,
    Invoice,
    InvoiceCount,
    InvoiceStatus,
    Membership,
    Organization,
    Plan,
    Role,
    User,
)

ROOT = Path(__file__).resolve().parent
ALEMBIC_INI = ROOT / "alembic.ini"

DEMO_PASSWORD = "correct-horse-battery-staple"
# Tess's authenticator secret (RFC 6238 TOTP, base32, 160 bits). Demo data only: it is
# published here so anyone can add "InvoiceApp: tess@acme.test" to an authenticator app
# (or run `python -c "import pyotp; print(pyotp.TOTP('<secret>').now())"`) and walk
# through the two-step sign-in. A real secret is random per user and never written down.
DEMO_TOTP_SECRET = "TESSDEMOSECRETNOTFORREALUSE23456"
BATCH_SIZE = 10_000


# --- The demo data (CONTRACT.md section 3) ---------------------------------------------


@dataclass(frozen=True)
class OrgSpec:
    slug: str
    name: str
    plan: Plan


@dataclass(frozen=True)
class UserSpec:
    email: str
    display_name: str
    verified: bool
    roles: dict[str, Role]  # organization slug -> role
    totp_secret: str | None = None  # TOTP enrolled with this (demo) secret


@dataclass(frozen=True)
class InvoiceSpec:
    number: int
    customer: str
    amount_minor: int
    currency: str
    status: InvoiceStatus
    issued_days_ago: int
    payment_terms_days: int
    created_by: str  # email of a member of the organization
    # Only the invoices a lesson refers to by name have a fixed public id; the others get a
    # fresh random one (new_public_id) and a reseed recognises them by (organization, number).
    public_id: str | None = None


ORGANIZATIONS = (
    OrgSpec("acme", "Acme Inc", Plan.PRO),
    OrgSpec("globex", "Globex Corporation", Plan.FREE),
)

USERS = (
    UserSpec("ada@acme.test", "Ada Lovelace", True, {"acme": Role.OWNER}),
    UserSpec("grace@acme.test", "Grace Hopper", True, {"acme": Role.ADMIN, "globex": Role.MEMBER}),
    UserSpec("linus@acme.test", "Linus Torvalds", True, {"acme": Role.MEMBER}),
    UserSpec("eve@acme.test", "Eve Mallory", False, {"acme": Role.MEMBER}),
    UserSpec("hank@globex.test", "Hank Scorpio", True, {"globex": Role.OWNER}),
    UserSpec("marge@globex.test", "Marge Simpson", True, {"globex": Role.MEMBER}),
    UserSpec("tess@acme.test", "Tess Ting", True, {"acme": Role.MEMBER}, DEMO_TOTP_SECRET),
)

S = InvoiceStatus
DEMO_INVOICES: dict[str, tuple[InvoiceSpec, ...]] = {
    "acme": (
        InvoiceSpec(1, "Initech LLC", 1_250_000, "USD", S.PAID, 150, 30, "ada@acme.test"),
        InvoiceSpec(2, "Zürich Ärzte AG", 840_050, "CHF", S.PAID, 120, 30, "grace@acme.test"),
        InvoiceSpec(3, "Ωmega Labs", 99_900, "EUR", S.VOID, 95, 14, "ada@acme.test"),
        InvoiceSpec(4, "Northwind Traders", 312_475, "GBP", S.PAID, 70, 30, "linus@acme.test"),
        InvoiceSpec(
            5,
            "Wayne Enterprises",
            4_800_000,
            "USD",
            S.SENT,
            21,
            30,
            "ada@acme.test",
            public_id="inv_7",
        ),
        InvoiceSpec(6, "Maple Leaf Logistics", 187_500, "CAD", S.SENT, 12, 30, "linus@acme.test"),
        InvoiceSpec(7, "Fjord Analytics AS", 2_150_000, "NOK", S.DRAFT, 3, 30, "grace@acme.test"),
        # Linus (member) may edit this one: his own draft.
        InvoiceSpec(
            8, "Blue Mountain Coffee Roasters", 64_000, "AUD", S.DRAFT, 1, 14, "linus@acme.test"
        ),
        InvoiceSpec(9, "Kastrup Design ApS", 455_000, "DKK", S.DRAFT, 0, 30, "eve@acme.test"),
    ),
    "globex": (
        InvoiceSpec(
            1, "Springfield Power Plant", 9_999_900, "USD", S.PAID, 200, 30, "hank@globex.test"
        ),
        InvoiceSpec(2, "Kwik-E-Mart", 12_345, "USD", S.PAID, 160, 14, "marge@globex.test"),
        InvoiceSpec(
            3,
            "Cypress Creek Volcano Works",
            25_000_000,
            "USD",
            S.DRAFT,
            2,
            30,
            "hank@globex.test",
            public_id="inv_42",
        ),
        InvoiceSpec(
            4, "Société Générale des Eaux", 780_000, "EUR", S.SENT, 40, 30, "grace@acme.test"
        ),
        InvoiceSpec(5, "Göteborg Hamn AB", 1_520_000, "SEK", S.VOID, 60, 30, "hank@globex.test"),
        InvoiceSpec(6, "Duff Brewing Company", 230_000, "USD", S.SENT, 9, 30, "marge@globex.test"),
        InvoiceSpec(
            7, "Oxford Scientific Ltd", 415_060, "GBP", S.DRAFT, 1, 30, "marge@globex.test"
        ),
        InvoiceSpec(8, "Ωmega Labs", 57_500, "EUR", S.PAID, 35, 14, "grace@acme.test"),
    ),
}
del S

# Customers for generated invoices (--invoices N).
GENERATED_CUSTOMERS = (
    "Initech LLC",
    "Hooli",
    "Pied Piper",
    "Vandelay Industries",
    "Stark & Sons Hardware",
    "Northwind Traders",
    "Contoso Ltd",
    "Fabrikam GmbH",
    "Zürich Ärzte AG",
    "Ωmega Labs",
    "Société Générale des Eaux",
    "Łódź Robotics sp. z o.o.",
    "Göteborg Hamn AB",
    "Fjord Analytics AS",
    "Kastrup Design ApS",
    "Maple Leaf Logistics",
    "東京トレーディング株式会社",
    "Blue Mountain Coffee Roasters",
    "Oxford Scientific Ltd",
    "São Paulo Têxtil Ltda",
)
STATUS_WEIGHTS = {
    InvoiceStatus.DRAFT: 15,
    InvoiceStatus.SENT: 30,
    InvoiceStatus.PAID: 50,
    InvoiceStatus.VOID: 5,
}

# The ids CONTRACT.md section 3 names. No random id starts with one of them, so a page or
# a CSV that must not show inv_7 never shows it inside another id (inv_7k2rar9arjlbzmnw):
# people, the lesson and outside checks look for these ids as text.
CONTRACT_PUBLIC_IDS = ("inv_7", "inv_42", "inv_999999")


def random_public_id() -> str:
    """invoiceapp.invoicing.new_public_id(), skipping the rare id that starts with a
    contract id (about 1 in 35)."""
    while True:
        public_id = new_public_id()
        if not public_id.startswith(CONTRACT_PUBLIC_IDS):
            return public_id


# --- Report -----------------------------------------------------------------------------


@dataclass
class SeedReport:
    """What one run created, and what it found already there (keys are table names)."""

    created: dict[str, list[str]] = field(default_factory=dict)
    present: dict[str, list[str]] = field(default_factory=dict)
    generated_invoices: dict[str, int] = field(default_factory=dict)
    reset: bool = False
    schema: str = ""

    def add_created(self, kind: str, label: str) -> None:
        self.created.setdefault(kind, []).append(label)

    def add_present(self, kind: str, label: str) -> None:
        self.present.setdefault(kind, []).append(label)

    @property
    def changed(self) -> bool:
        return any(self.created.values()) or any(self.generated_invoices.values()) or self.reset

    def lines(self) -> Iterator[str]:
        if self.schema:
            yield f"schema: {self.schema}"
        if self.reset:
            yield "reset: deleted every row"
        for kind in ("organizations", "users", "memberships", "invoices"):
            created = self.created.get(kind, [])
            present = self.present.get(kind, [])
            yield f"{kind}: {len(created)} created, {len(present)} already present"
        for slug, count in self.generated_invoices.items():
            yield f"generated invoices: {count} added to {slug}"


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


def reset(db: Session) -> None:
    """Delete every row of every table, children first. The schema stays."""
    for table in reversed(Base.metadata.sorted_tables):
        if table.name == AuditEvent.__tablename__:
            _empty_audit_log(db)
        else:
            db.execute(table.delete())
    db.commit()


def _empty_audit_log(db: Session) -> None:
    """The audit log refuses DELETE (triggers); a reset is the one sanctioned way round."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        db.execute(text("TRUNCATE audit_events"))  # row triggers do not fire on TRUNCATE
        return
    if dialect == "sqlite":
        db.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        db.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
        db.execute(text("DELETE FROM audit_events"))
        for statement in AUDIT_TRIGGERS_SQLITE:
            db.execute(text(statement))
        return
    db.execute(text("DELETE FROM audit_events"))


# --- Seeding ----------------------------------------------------------------------------


def seed(
    db: Session,
    *,
    password_hasher: Callable[[str], str] | None = None,
    today: date | None = None,
) -> SeedReport:
    """Create whatever of the demo data is missing; commit. Needs an app context for the
    default password hasher (invoiceapp.authn.passwords.hash_password)."""
    hasher = password_hasher or hash_password
    today = today or date.today()
    now = utcnow()
    report = SeedReport()

    orgs: dict[str, Organization] = {}
    for org_spec in ORGANIZATIONS:
        org = db.scalar(select(Organization).where(Organization.slug == org_spec.slug))
        if org is None:
            org = Organization(slug=org_spec.slug, name=org_spec.name, plan=org_spec.plan.value)
            db.add(org)
            report.add_created("organizations", org_spec.slug)
        else:
            report.add_present("organizations", org_spec.slug)
        orgs[org_spec.slug] = org

    users: dict[str, User] = {}
    for user_spec in USERS:
        user = db.scalar(select(User).where(User.email == user_spec.email))
        if user is None:
            user = User(
                email=user_spec.email,
                display_name=user_spec.display_name,
                password_hash=hasher(DEMO_PASSWORD),
                email_verified_at=now if user_spec.verified else None,
            )
            db.add(user)
            report.add_created("users", user_spec.email)
            if user_spec.totp_secret is not None:
                db.flush()  # the encrypted secret is bound to the user's id
                user.totp_secret_encrypted = encrypt_secret(user_spec.totp_secret, user.id)
                user.totp_enabled_at = now
        else:
            report.add_present("users", user_spec.email)
        users[user_spec.email] = user
    db.flush()

    for user_spec in USERS:
        user = users[user_spec.email]
        for slug, role in user_spec.roles.items():
            org = orgs[slug]
            label = f"{user_spec.email} in {slug}"
            membership = db.scalar(
                select(Membership).where(
                    Membership.user_id == user.id, Membership.organization_id == org.id
                )
            )
            if membership is None:
                db.add(Membership(user=user, organization=org, role=role.value))
                report.add_created("memberships", label)
            else:
                report.add_present("memberships", label)
    db.flush()

    # Demo invoices. Only inv_7 and inv_42 have fixed public ids (CONTRACT.md section 3);
    # the others get fresh random ids, so a reseed cannot find them by id. It recognises
    # them by their demo number instead: if the organization has an invoice with that
    # number, live or soft-deleted, the demo invoice counts as present (a deleted one stays
    # deleted).
    #
    # Numbers already taken by people's own invoices (the app was used in an organization
    # that has no demo invoices yet): nothing marks a row as seed data, so the seed cannot
    # tell somebody's #0003 from the demo's #0003. It counts the number as present and
    # leaves it alone: it never duplicates, renumbers or overwrites what people made, and
    # it stays idempotent. The fixed-id invoices keep their old behaviour, because lessons
    # need them by name: they are found by public id, and when their demo number is taken
    # they are still created, under the next free number (highest + 1). They are placed
    # after the others, so they cannot take a later demo invoice's number.
    for slug, specs in DEMO_INVOICES.items():
        org = orgs[slug]
        displaced: list[InvoiceSpec] = []
        for invoice_spec in specs:
            if invoice_spec.public_id is not None:
                present = db.scalar(
                    select(Invoice.public_id).where(Invoice.public_id == invoice_spec.public_id)
                )
            else:
                present = _public_id_of_number(db, org.id, invoice_spec.number)
            if present is not None:
                report.add_present("invoices", present)
            elif invoice_spec.public_id is not None and not _number_is_free(
                db, org.id, invoice_spec.number
            ):
                displaced.append(invoice_spec)
            else:
                _add_demo_invoice(db, org, invoice_spec, invoice_spec.number, users, today, report)
        for invoice_spec in displaced:
            number = _max_number(db, org.id) + 1
            _add_demo_invoice(db, org, invoice_spec, number, users, today, report)

    catch_up_invoice_counters(db)
    db.commit()
    return report


def _add_demo_invoice(
    db: Session,
    org: Organization,
    spec: InvoiceSpec,
    number: int,
    users: dict[str, User],
    today: date,
    report: SeedReport,
) -> None:
    public_id = spec.public_id or random_public_id()
    issue_date = today - timedelta(days=spec.issued_days_ago)
    created_at = datetime.combine(issue_date, time(9, 0), tzinfo=UTC)
    created_at += timedelta(minutes=7 * spec.number)
    db.add(
        Invoice(
            public_id=public_id,
            organization=org,
            number=number,
            customer=spec.customer,
            amount_minor=spec.amount_minor,
            currency=spec.currency,
            status=spec.status.value,
            issue_date=issue_date,
            due_date=issue_date + timedelta(days=spec.payment_terms_days),
            created_by=users[spec.created_by],
            created_at=created_at,
            updated_at=created_at,
        )
    )
    db.flush()
    report.add_created("invoices", public_id)


def _public_id_of_number(db: Session, organization_id: int, number: int) -> str | None:
    """The invoice with this number in this organization, live or soft-deleted."""
    return db.scalar(
        select(Invoice.public_id).where(
            Invoice.organization_id == organization_id, Invoice.number == number
        )
    )


def _number_is_free(db: Session, organization_id: int, number: int) -> bool:
    return _public_id_of_number(db, organization_id, number) is None


def _max_number(db: Session, organization_id: int) -> int:
    return db.scalar(
        select(func.coalesce(func.max(Invoice.number), 0)).where(
            Invoice.organization_id == organization_id
        )
    )


def demo_invoice_id(db: Session, slug: str, number: int) -> str:
    """The public id of demo invoice ``number`` of organization ``slug`` (DEMO_INVOICES).

    Demo ids are random per install (and per --reset), so tests and scripts look them up:
    ``demo_invoice_id(db, "acme", 8)`` is Linus's draft. For inv_7 and inv_42 this is their
    fixed id. Soft-deleted invoices count. Raises LookupError if there is no such demo
    invoice, or it has not been seeded.
    """
    spec = next((s for s in DEMO_INVOICES.get(slug, ()) if s.number == number), None)
    if spec is None:
        raise LookupError(f"{slug} has no demo invoice #{number}")
    if spec.public_id is not None:
        found = db.scalar(select(Invoice.public_id).where(Invoice.public_id == spec.public_id))
    else:
        found = db.scalar(
            select(Invoice.public_id)
            .join(Invoice.organization)
            .where(Organization.slug == slug, Invoice.number == number)
        )
    if found is None:
        raise LookupError(f"demo invoice #{number} of {slug} is not in the database")
    return found


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
            first_number = _max_number(db, org_id) + 1
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
