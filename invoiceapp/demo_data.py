"""The demo data (CONTRACT.md section 3): who is in which organization, with which invoices.

A module of the package, so that what seeds a fresh database (seed.py) and what puts
the demo back while it runs ("Reset the demo", invoiceapp.views.demo) are the same code,
and a wheel holds it.

Re-running seed() never changes what is already there: organizations are found by slug,
users by email, memberships by (user, organization), the two invoices with fixed public
ids (inv_7, inv_42) by public id and every other demo invoice by (organization, number).
An existing user's password hash is never replaced.

Apart from inv_7 and inv_42, invoice public ids are random (invoiceapp.invoicing.new_public_id),
so they differ between installs and after a reset; demo_invoice_id() looks one up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from .authn.passwords import hash_password
from .authn.totp import encrypt_secret
from .db import Base, utcnow
from .db_triggers import AUDIT_TRIGGERS_SQLITE
from .invoicing import catch_up_invoice_counters, new_public_id
from .models import (
    AuditEvent,
    Invoice,
    InvoiceStatus,
    Membership,
    Organization,
    Plan,
    Role,
    User,
)

DEMO_PASSWORD = "correct-horse-battery-staple"
# Tess's authenticator secret (RFC 6238 TOTP, base32, 160 bits). Demo data only: it is
# published here so anyone can add "InvoiceApp: tess@acme.test" to an authenticator app
# (or run `python -c "import pyotp; print(pyotp.TOTP('<secret>').now())"`) and walk
# through the two-step sign-in. A real secret is random per user and never written down.
DEMO_TOTP_SECRET = "TESSDEMOSECRETNOTFORREALUSE23456"


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


# --- Reset ------------------------------------------------------------------------------


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
    now = utcnow()
    today = today or now.date()
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
            number = highest_number(db, org.id) + 1
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


def highest_number(db: Session, organization_id: int) -> int:
    return db.execute(
        select(func.coalesce(func.max(Invoice.number), 0)).where(
            Invoice.organization_id == organization_id
        )
    ).scalar_one()


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
