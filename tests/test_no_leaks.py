"""No page shows one organization's invoices to the other, even when they look alike.

Acme and Globex get the same customers and the same invoice numbers (30 generated
invoices each, plus five twins with identical customer and number), and each side's
people reach for the other side's invoices so that every audit log holds references to
foreign ids too. Then every list page (each status filter, every page), the dashboard's
counts, the CSV export and the audit log are read as every person of each organization,
and not one of them may contain a public id of the other organization.

Runs on SQLite and, with INVOICEAPP_TEST_POSTGRES_URL set, on PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

import seed
from conftest import POSTGRES_URL, app_on_postgres, make_test_app
from invoiceapp.authn.passwords import hash_password
from invoiceapp.db import utcnow
from invoiceapp.invoicing import catch_up_invoice_counters
from invoiceapp.models import Invoice, Organization, SupportGrant, User
from seed import random_public_id
from seeded_rows import keep, put_back, reseed
from support import PASSWORD, latest_mail_to, signed_in_client


@dataclass
class Arranged:
    """The look-alike data (``look_alikes``), built once per engine for the module: a SQLite
    file to copy for each test, or a PostgreSQL app whose rows are put back for each."""

    ids: dict[str, set[str]]
    file: Path | None = None
    app: Flask | None = None
    kept: bool = False  # the PostgreSQL rows were kept (seeded_rows.keep)


# The backend-switching fixtures: SQLite, and PostgreSQL when it is configured.
@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(
                not POSTGRES_URL, reason="INVOICEAPP_TEST_POSTGRES_URL is not set"
            ),
        ),
    ],
)
def arranged(
    request: pytest.FixtureRequest, seeded_database: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Arranged]:
    """Building the look-alikes was most of each test's time, and every test starts from
    the same of them: they are built once per engine and given to each test afresh."""
    if request.param == "sqlite":
        file = tmp_path_factory.mktemp("look-alikes") / "look-alikes.sqlite3"
        shutil.copyfile(seeded_database, file)
        app = make_test_app(file)
        with app.extensions["db_sessionmaker"]() as db:
            ids = build_look_alikes(app, db)
        app.extensions["db_engine"].dispose()
        yield Arranged(ids, file=file)
        return
    with app_on_postgres() as app:
        with app.extensions["db_sessionmaker"]() as db:
            ids = build_look_alikes(app, db)
        yield Arranged(ids, app=app, kept=keep(app, "look_alikes"))


@pytest.fixture()
def app(arranged: Arranged, tmp_path: Path) -> Iterator[Flask]:
    """These tests run on SQLite and again on PostgreSQL, each from the look-alike data."""
    if arranged.file is not None:
        copy = tmp_path / "test.sqlite3"
        shutil.copyfile(arranged.file, copy)
        app = make_test_app(copy)
        yield app
        app.extensions["db_engine"].dispose()
        return
    assert arranged.app is not None
    if arranged.kept:
        put_back(arranged.app, "look_alikes")
    else:  # no rights to copy rows: seed and arrange again
        reseed(arranged.app)
        with arranged.app.extensions["db_sessionmaker"]() as db:
            arranged.ids = build_look_alikes(arranged.app, db)
    yield arranged.app


@pytest.fixture()
def look_alikes(arranged: Arranged, app: Flask) -> dict[str, set[str]]:
    """Both organizations full of invoices that look the same; both audit logs busy."""
    return arranged.ids


PUBLIC_ID = re.compile(r"\binv_[A-Za-z0-9]+\b")
PAGE_OF = re.compile(r"Page \d+ of (\d+)")
STAT = re.compile(r'<span class="stat-number">(\d+)</span> (\w+)</a>')


@dataclass(frozen=True)
class Viewer:
    email: str
    slug: str  # the organization they look at
    reads_audit: bool  # owner or admin there


# Grace is in both organizations (admin in Acme, member in Globex): she looks at each in turn.
VIEWERS = [
    Viewer("ada@acme.test", "acme", True),
    Viewer("grace@acme.test", "acme", True),
    Viewer("linus@acme.test", "acme", False),
    Viewer("eve@acme.test", "acme", False),
    Viewer("hank@globex.test", "globex", True),
    Viewer("marge@globex.test", "globex", False),
    Viewer("grace@acme.test", "globex", False),
]
OTHER = {"acme": "globex", "globex": "acme"}


def org_id(db: Session, slug: str) -> int:
    found = db.scalar(select(Organization.id).where(Organization.slug == slug))
    assert found is not None
    return found


def ids_of(db: Session, slug: str, *, live_only: bool = False) -> set[str]:
    db.expire_all()
    query = select(Invoice.public_id).where(Invoice.organization_id == org_id(db, slug))
    if live_only:
        query = query.where(Invoice.deleted_at.is_(None))
    return set(db.scalars(query))


def ids_in(text: str) -> set[str]:
    return set(PUBLIC_ID.findall(text))


def build_look_alikes(app: Flask, db: Session) -> dict[str, set[str]]:
    """Both organizations full of invoices that look the same; both audit logs busy."""
    seed.add_generated_invoices(db, 30, progress=False)
    # Five twins: the same customer, amount, currency, status and number on both sides.
    today = date.today()
    for slug in ("acme", "globex"):
        now = utcnow()
        db.execute(
            insert(Invoice),
            [
                {
                    "public_id": random_public_id(),
                    "organization_id": org_id(db, slug),
                    "number": 500 + i,
                    "customer": f"Twin Trading {i}",
                    "amount_minor": 10_000 + i,
                    "currency": "EUR",
                    "status": ("draft", "sent", "paid", "void", "sent")[i],
                    "issue_date": today - timedelta(days=i),
                    "due_date": today + timedelta(days=30),
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(5)
            ],
        )
    catch_up_invoice_counters(db)
    # Duplication on, so the buttons (and their forms) appear on pages too.
    db.execute(update(Organization).values(invoice_duplication_enabled=True))
    db.commit()
    ids = {slug: ids_of(db, slug) for slug in ("acme", "globex")}

    # Each side reaches for some of the other side's invoices (404s, recorded in the
    # owner's log with the foreign actor), and does something allowed at home.
    for email, slug in (("linus@acme.test", "acme"), ("marge@globex.test", "globex")):
        client = signed_in_client(app, email)
        for public_id in sorted(ids[OTHER[slug]])[:5]:
            assert client.get(f"/invoices/{public_id}").status_code == 404
            assert client.post(f"/invoices/{public_id}/delete").status_code == 404
        for public_id in sorted(ids[slug])[:3]:
            # Members may not mark invoices paid at all (the role's row says no): 403.
            assert client.post(f"/invoices/{public_id}/mark-paid").status_code == 403
    for email, slug in (("ada@acme.test", "acme"), ("hank@globex.test", "globex")):
        client = signed_in_client(app, email)
        for public_id in sorted(ids[slug])[:3]:
            assert client.post(f"/invoices/{public_id}/duplicate").status_code == 303
        # A paid or void invoice is voided, not deleted: delete one still open.
        db.expire_all()
        still_open = db.scalars(
            select(Invoice.public_id).where(
                Invoice.public_id.in_(sorted(ids[slug])[3:]), Invoice.status.in_(("draft", "sent"))
            )
        )
        assert client.post(f"/invoices/{min(still_open)}/delete").status_code == 303
    return {slug: ids_of(db, slug) for slug in ("acme", "globex")}


def viewer_client(app: Flask, viewer: Viewer) -> FlaskClient:
    client = signed_in_client(app, viewer.email)
    response = client.post("/orgs/switch", data={"organization": viewer.slug})
    assert response.status_code == 303
    return client


def every_page(client: FlaskClient, first: str) -> list[str]:
    """The bodies of ``first`` and every later page (``page=N`` appended)."""
    response = client.get(first)
    assert response.status_code == 200, first
    bodies = [response.get_data(as_text=True)]
    match = PAGE_OF.search(bodies[0])
    pages = int(match.group(1)) if match else 1
    separator = "&" if "?" in first else "?"
    for page in range(2, pages + 1):
        response = client.get(f"{first}{separator}page={page}")
        assert response.status_code == 200
        bodies.append(response.get_data(as_text=True))
    return bodies


@pytest.mark.parametrize("viewer", VIEWERS, ids=lambda v: f"{v.email.split('@')[0]}-in-{v.slug}")
def test_no_page_shows_the_other_organizations_ids(
    app: Flask, db: Session, look_alikes: dict[str, set[str]], viewer: Viewer
) -> None:
    foreign = look_alikes[OTHER[viewer.slug]]
    own_live = ids_of(db, viewer.slug, live_only=True)
    assert len(foreign) > 40 and len(own_live) > 40
    client = viewer_client(app, viewer)
    seen: dict[str, set[str]] = {}

    # Every list page, for each status filter.
    for status in ("", "draft", "sent", "paid", "void"):
        path = f"/invoices?status={status}" if status else "/invoices"
        for number, body in enumerate(every_page(client, path), start=1):
            seen[f"{path} page {number}"] = ids_in(body)
    listed = set().union(*(ids for name, ids in seen.items() if name.startswith("/invoices ")))
    assert listed == own_live  # the pages are not empty: every own invoice is on one of them

    # The dashboard: recent invoices, and counts that are this organization's alone.
    dashboard = client.get("/dashboard").get_data(as_text=True)
    seen["/dashboard"] = ids_in(dashboard)
    db.expire_all()
    own_counts = Counter(
        db.scalars(
            select(Invoice.status).where(
                Invoice.organization_id == org_id(db, viewer.slug), Invoice.deleted_at.is_(None)
            )
        )
    )
    shown = {status: int(count) for count, status in STAT.findall(dashboard)}
    assert shown == {status: own_counts.get(status, 0) for status in shown}
    assert set(shown) == {"draft", "sent", "paid", "void"}

    # The export: pro (Acme) gets a file of its own invoices; free (Globex) a 403.
    export = client.get("/invoices/export.csv")
    assert export.status_code == (200 if viewer.slug == "acme" else 403)
    seen["/invoices/export.csv"] = ids_in(export.get_data(as_text=True))
    if export.status_code == 200:
        assert seen["/invoices/export.csv"] == own_live

    # The audit log, where the other side's attempts on our invoices are recorded.
    audit_path = f"/orgs/{viewer.slug}/audit"
    if viewer.reads_audit:
        bodies = every_page(client, audit_path)
        for number, body in enumerate(bodies, start=1):
            seen[f"{audit_path} page {number}"] = ids_in(body)
        logged = set().union(*(ids_in(body) for body in bodies))
        assert logged & look_alikes[viewer.slug]  # it does hold this organization's records
    else:
        refused = client.get(audit_path)
        assert refused.status_code == 403
        seen[audit_path] = ids_in(refused.get_data(as_text=True))

    # And the other organization's audit log is not even there for them.
    other_audit = client.get(f"/orgs/{OTHER[viewer.slug]}/audit")
    if viewer.email == "grace@acme.test":
        # She belongs to both: an admin of Acme reads its log, a member of Globex may not.
        assert other_audit.status_code == (200 if OTHER[viewer.slug] == "acme" else 403)
    else:
        assert other_audit.status_code == 404
    if viewer.email != "grace@acme.test":
        seen["other audit"] = ids_in(other_audit.get_data(as_text=True))

    leaks = {name: sorted(ids & foreign) for name, ids in seen.items() if ids & foreign}
    assert not leaks, f"{viewer} saw the other organization's invoices: {leaks}"


# --- A guest: someone outside both organizations, with one customer of Acme shared ----------

OUTSIDER = "olive@outside.test"
SHARED_CUSTOMER = "Twin Trading 3"  # Globex has a customer of the very same name


def outsider_with_a_share(app: Flask, db: Session) -> FlaskClient:
    """Olive, a verified account in no organization, accepts a share of Acme's twin."""
    with app.app_context():
        password_hash = hash_password(PASSWORD)
    db.add(User(email=OUTSIDER, display_name="Olive Outside", password_hash=password_hash,
                email_verified_at=utcnow()))  # fmt: skip
    db.commit()
    ada = signed_in_client(app, "ada@acme.test")
    response = ada.post(
        "/orgs/acme/shares",
        data={"email": OUTSIDER, "customer": SHARED_CUSTOMER, "access": "read_mark_paid",
              "expires_days": "30"},
    )  # fmt: skip
    assert response.status_code == 303
    mail = latest_mail_to(app.config["MAIL_OUTBOX_DIR"], OUTSIDER)
    assert mail is not None
    link = next(link for link in mail.links if "/shares/" in link)
    guest = signed_in_client(app, OUTSIDER)
    assert guest.post(urlsplit(link).path).status_code == 303
    return guest


def test_a_guest_sees_only_what_was_shared(
    app: Flask, db: Session, look_alikes: dict[str, set[str]]
) -> None:
    guest = outsider_with_a_share(app, db)
    db.expire_all()
    shared = set(
        db.scalars(
            select(Invoice.public_id).where(
                Invoice.organization_id == org_id(db, "acme"),
                Invoice.customer == SHARED_CUSTOMER,
                Invoice.deleted_at.is_(None),
            )
        )
    )
    everything = look_alikes["acme"] | look_alikes["globex"]
    assert shared and len(everything - shared) > 80
    seen: dict[str, set[str]] = {}

    # The guest's own list: exactly the shared invoices, not Globex's twin of the customer.
    listed = set().union(*(ids_in(body) for body in every_page(guest, "/shared")))
    assert listed == shared

    # Each shared invoice opens; every other one is the 404 of an id that never existed.
    for public_id in shared:
        assert guest.get(f"/invoices/{public_id}").status_code == 200
    missing = guest.get("/invoices/inv_doesnotexist0000")
    for public_id in sorted(everything - shared):
        hidden = guest.get(f"/invoices/{public_id}")
        assert hidden.status_code == 404
        assert hidden.get_data() == missing.get_data(), public_id

    # Lists, counts, exports and audit logs of both organizations: a stranger's 404.
    for slug in ("acme", "globex"):
        for path in (f"/invoices?organization={slug}", f"/invoices/export.csv?organization={slug}",
                     f"/orgs/{slug}", f"/orgs/{slug}/audit", f"/orgs/{slug}/members",
                     f"/orgs/{slug}/shares", f"/api/v1/invoices?organization={slug}",
                     f"/api/v1/orgs/{slug}/audit"):  # fmt: skip
            response = guest.get(path)
            assert response.status_code == 404, path
            seen[path] = ids_in(response.get_data(as_text=True))
    # With no organization of her own, the plain list and export send her to the dashboard.
    for path in ("/invoices", "/invoices/export.csv"):
        response = guest.get(path)
        assert response.status_code == 303, path
        seen[path] = ids_in(response.get_data(as_text=True))
    dashboard = guest.get("/dashboard").get_data(as_text=True)
    seen["/dashboard"] = ids_in(dashboard)
    assert not STAT.findall(dashboard)  # no organization's counts
    assert 'data-testid="shared-link"' in dashboard
    # The API carries no shares, by cookie or token: the shared invoice is a 404 there too.
    api = guest.get(f"/api/v1/invoices/{min(shared)}")
    assert api.status_code == 404
    seen["api"] = ids_in(api.get_data(as_text=True))

    leaks = {name: sorted(ids) for name, ids in seen.items() if ids}
    assert not leaks, f"the guest saw invoices beyond the share: {leaks}"


# --- A support engineer: Acme's owner let them in; Globex never did ----------------------------

ENGINEER = "sam@support.test"


def engineer_with_support(app: Flask, db: Session, role: str) -> FlaskClient:
    """Sam, support staff in no organization, granted ``role`` in Acme by Ada."""
    with app.app_context():
        password_hash = hash_password(PASSWORD)
    db.add(User(email=ENGINEER, display_name="Sam Support", password_hash=password_hash,
                email_verified_at=utcnow()))  # fmt: skip
    db.commit()
    assert app.test_cli_runner().invoke(args=["staff", "grant", ENGINEER]).exit_code == 0
    engineer = signed_in_client(app, ENGINEER)
    asked = engineer.post("/support", data={"organization": "acme",
                                            "reason": "Ticket 42: totals look wrong"})  # fmt: skip
    assert asked.status_code == 303
    grant_id = db.scalar(select(SupportGrant.id))
    ada = signed_in_client(app, "ada@acme.test")
    approved = ada.post(f"/orgs/acme/support/{grant_id}/approve", data={"role": role, "hours": "1"})
    assert approved.status_code == 303
    assert engineer.post("/orgs/switch", data={"organization": "acme"}).status_code == 303
    return engineer


@pytest.mark.parametrize("role", ["read_only", "admin"])
def test_a_support_engineer_sees_only_the_organization_that_let_them_in(
    app: Flask, db: Session, look_alikes: dict[str, set[str]], role: str
) -> None:
    engineer = engineer_with_support(app, db, role)
    own_live = ids_of(db, "acme", live_only=True)
    foreign = look_alikes["globex"]
    seen: dict[str, set[str]] = {}
    for status in ("", "draft", "sent", "paid", "void"):
        path = f"/invoices?status={status}" if status else "/invoices"
        for number, body in enumerate(every_page(engineer, path), start=1):
            seen[f"{path} page {number}"] = ids_in(body)
    listed = set().union(*(ids for name, ids in seen.items() if name.startswith("/invoices")))
    assert listed == own_live
    seen["/dashboard"] = ids_in(engineer.get("/dashboard").get_data(as_text=True))
    audit = engineer.get("/orgs/acme/audit")
    assert audit.status_code == (200 if role == "admin" else 403)
    seen["audit"] = ids_in(audit.get_data(as_text=True))
    # Globex, and the API for both: a stranger's 404.
    for path in ("/invoices?organization=globex", "/orgs/globex", "/orgs/globex/audit",
                 "/api/v1/invoices?organization=acme", "/api/v1/orgs/acme/audit",
                 f"/api/v1/invoices/{min(own_live)}", f"/invoices/{min(foreign)}"):  # fmt: skip
        response = engineer.get(path)
        assert response.status_code == 404, path
        seen[path] = ids_in(response.get_data(as_text=True))
    leaks = {name: sorted(ids & foreign) for name, ids in seen.items() if ids & foreign}
    assert not leaks, f"the support engineer saw Globex's invoices: {leaks}"
