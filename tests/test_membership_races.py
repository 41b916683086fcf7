"""Membership races against real gunicorn workers, on SQLite and on PostgreSQL.

Each scenario runs RACE_RUNS times (INVOICEAPP_RACE_RUNS overrides it), every run in a
fresh organization, with its requests released together into three workers of two
threads each. After every run the invariants must hold:

- a free organization never has more than FREE_PLAN_MEMBER_LIMIT members plus pending
  invitations (issue 15, item 5);
- an organization always has exactly one owner (issue 15, item 6).

Measured on the code before the fix (commit f914cb1), 30 runs per scenario and engine,
runs that broke an invariant, SQLite / PostgreSQL:

    six parallel invitations ................  9/30,  0/30
    parallel acceptances over the cap ....... 30/30,  0/30
    a downgrade racing three invitations .... 12/30, 18/30
    a transfer racing the new owner's leave .  5/30,  0/30
    a transfer racing their removal ......... 12/30,  2/30
    a transfer racing a change of their role  11/30,  4/30

The counts move with the machine's load: two other measurements broke the same rows
(the invitations 1/30 on SQLite in one), and one also broke the leave race on PostgreSQL.
After the fix: 0 of 30 in every row, on both engines, and no 5xx.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import seed
from conftest import POSTGRES_URL, TEST_CONFIG
from invoiceapp import create_app
from invoiceapp.db import get_db, utcnow
from invoiceapp.models import Invitation, Membership, Organization, Plan, Role, User
from invoiceapp.organizations import FREE_PLAN_MEMBER_LIMIT, pending_invitations
from support import PASSWORD, all_at_once, free_port, postgres_schema, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
RACE_RUNS = int(os.environ.get("INVOICEAPP_RACE_RUNS", "8"))
WORKERS, THREADS = 3, 2


# ---------------------------------------------------------------------------
# A live server: gunicorn, several workers, on the engine of the parameter
# ---------------------------------------------------------------------------


@dataclass
class Live:
    base: str
    app: Flask  # the same database, for arranging runs and checking the outcome

    def db(self) -> Session:
        return self.app.extensions["db_sessionmaker"]()


@contextmanager
def gunicorn(database_url: str, folder: Path) -> Iterator[str]:
    """The app under gunicorn, WORKERS processes of THREADS threads; yields its base URL."""
    port = free_port()
    config = folder / "gunicorn_races.conf.py"
    # Its own config file: the project's refuses several workers with in-memory rate
    # limits, and these runs switch rate limits off.
    config.write_text(f"bind = '127.0.0.1:{port}'\nworkers = {WORKERS}\nthreads = {THREADS}\n")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "FLASK_SECRET_KEY": "membership-races-" + "k" * 24,
        "FLASK_DATABASE_URL": database_url,
        "FLASK_TESTING": "true",  # the cheap hash profile is allowed only in tests
        "FLASK_PASSWORD_HASH_PROFILE": "CHEAPEST",
        "FLASK_WTF_CSRF_ENABLED": "false",
        "FLASK_RATELIMIT_ENABLED": "false",
        "FLASK_AUTH_COOKIE_SECURE": "false",  # plain HTTP on loopback
        "FLASK_SESSION_COOKIE_SECURE": "false",
        "FLASK_MAIL_OUTBOX_DIR": str(folder / "outbox"),
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket",
         "-c", str(config), "invoiceapp:create_app()"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/readyz", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest,
    seeded_database: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    """One server per engine for the whole module: every run races in an organization of its
    own, so no test sees another's, and starting gunicorn once instead of per test saves
    most of this file's time."""
    folder = tmp_path_factory.mktemp(f"membership-races-{request.param}")
    if request.param == "sqlite":
        database_file = folder / "races.sqlite3"
        shutil.copyfile(seeded_database, database_file)
        url = f"sqlite:///{database_file}"
        app = create_app({**TEST_CONFIG, "DATABASE_URL": url})
        with gunicorn(url, folder) as base:
            yield Live(base, app)
        app.extensions["db_engine"].dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("set INVOICEAPP_TEST_POSTGRES_URL to run the PostgreSQL variant")
    with postgres_schema(POSTGRES_URL) as url:
        seed.migrate(url)
        app = create_app({**TEST_CONFIG, "DATABASE_URL": url})
        with app.app_context():
            seed.seed(get_db())
        try:
            with gunicorn(url, folder) as base:
                yield Live(base, app)
        finally:
            app.extensions["db_engine"].dispose()


# ---------------------------------------------------------------------------
# Arranging a run, acting over HTTP, checking the outcome in the database
# ---------------------------------------------------------------------------


def browsers(live: Live, email: str, count: int = 1) -> list[requests.Session]:
    """``count`` separate signed-in browsers of ``email`` (fresh: elevated for a while)."""
    signed_in = []
    for _ in range(count):
        browser = requests.Session()
        response = browser.post(
            live.base + "/sign-in",
            data={"email": email, "password": PASSWORD},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 303, response.text[:300]
        signed_in.append(browser)
    return signed_in


def post(live: Live, browser: requests.Session, path: str, **form: str) -> Callable[[], int]:
    """A POST to run later (all at once with others); returns its status code."""

    def send() -> int:
        response = browser.post(live.base + path, data=form, allow_redirects=False, timeout=60)
        return response.status_code

    return send


def user_id(db: Session, email: str) -> int:
    found = db.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


def new_organization(live: Live, plan: Plan, roles: dict[str, Role]) -> str:
    """A fresh organization with these members (email -> role); returns its slug."""
    slug = "race-" + uuid.uuid4().hex[:12]
    with live.db() as db:
        organization = Organization(slug=slug, name="Race Ltd", plan=plan.value)
        db.add(organization)
        db.flush()
        for email, role in roles.items():
            db.add(
                Membership(
                    user_id=user_id(db, email), organization_id=organization.id, role=role.value
                )
            )
        db.commit()
    return slug


def pending_invitation(live: Live, slug: str, email: str) -> str:
    """A pending member invitation written straight into the table; returns its raw token."""
    raw = secrets.token_urlsafe(32)
    with live.db() as db:
        organization = db.scalar(select(Organization).where(Organization.slug == slug))
        assert organization is not None
        db.add(
            Invitation(
                public_id=secrets.token_hex(8),
                organization_id=organization.id,
                email=email,
                role=Role.MEMBER.value,
                token_hash=hashlib.sha256(raw.encode()).hexdigest(),
                created_at=utcnow(),
                expires_at=utcnow() + timedelta(days=1),
            )
        )
        db.commit()
    return raw


@dataclass(frozen=True)
class Outcome:
    plan: str
    members: int
    pending: int
    owners: int

    @property
    def seats(self) -> int:
        return self.members + self.pending


def outcome(live: Live, slug: str) -> Outcome:
    with live.db() as db:
        organization = db.scalar(select(Organization).where(Organization.slug == slug))
        assert organization is not None
        roles = list(
            db.scalars(select(Membership.role).where(Membership.organization_id == organization.id))
        )
        pending = db.scalar(
            select(func.count()).select_from(pending_invitations(organization.id).subquery())
        )
        return Outcome(organization.plan, len(roles), pending or 0, roles.count(Role.OWNER.value))


def run_races(
    live: Live,
    arrange: Callable[[], tuple[str, list[Callable[[], int]]]],
    broken: Callable[[Outcome], bool],
) -> tuple[int, list[list[int]]]:
    """RACE_RUNS times: arrange a fresh organization, send its requests all at once.

    Returns how many runs broke the invariant, and every run's status codes.
    """
    broke, statuses = 0, []
    for _ in range(RACE_RUNS):
        slug, calls = arrange()
        statuses.append(all_at_once(calls))
        if broken(outcome(live, slug)):
            broke += 1
    return broke, statuses


def no_server_errors(statuses: list[list[int]]) -> bool:
    return all(status < 500 for run in statuses for status in run)


def over_the_cap(result: Outcome) -> bool:
    return result.plan == Plan.FREE and result.seats > FREE_PLAN_MEMBER_LIMIT


def not_one_owner(result: Outcome) -> bool:
    return result.owners != 1


# ---------------------------------------------------------------------------
# Item 5: the free plan's member cap
# ---------------------------------------------------------------------------


def test_six_parallel_invitations_to_a_free_organization_stay_within_the_cap(live: Live) -> None:
    ada = browsers(live, "ada@acme.test", 6)

    def arrange() -> tuple[str, list[Callable[[], int]]]:
        slug = new_organization(live, Plan.FREE, {"ada@acme.test": Role.OWNER})
        guests = [f"guest{n}-{uuid.uuid4().hex[:6]}@example.com" for n in range(6)]
        calls = [
            post(live, tab, f"/orgs/{slug}/invitations", email=email, role="member")
            for tab, email in zip(ada, guests, strict=True)
        ]
        return slug, calls

    broke, statuses = run_races(live, arrange, over_the_cap)
    assert broke == 0, f"{broke} of {RACE_RUNS} runs passed the cap: {statuses}"
    # One owner plus two invitations fill the three seats; the other four are told why.
    assert all(sorted(run) == [303] * 2 + [409] * 4 for run in statuses), statuses


def test_parallel_acceptances_never_make_more_members_than_the_cap(live: Live) -> None:
    invitees = ["grace@acme.test", "linus@acme.test", "marge@globex.test", "hank@globex.test"]
    tabs = {email: browsers(live, email)[0] for email in invitees}

    def arrange() -> tuple[str, list[Callable[[], int]]]:
        slug = new_organization(live, Plan.FREE, {"ada@acme.test": Role.OWNER})
        # Four links out at once (as the race above used to leave): only two can be used.
        tokens = {email: pending_invitation(live, slug, email) for email in invitees}
        calls = [post(live, tabs[email], f"/invitations/{tokens[email]}") for email in invitees]
        return slug, calls

    broke, statuses = run_races(live, arrange, lambda r: r.members > FREE_PLAN_MEMBER_LIMIT)
    assert broke == 0, f"{broke} of {RACE_RUNS} runs made too many members: {statuses}"
    assert all(sorted(run) == [303, 303, 409, 409] for run in statuses), statuses


def test_a_downgrade_racing_invitations_never_leaves_free_over_the_cap(live: Live) -> None:
    (ada,) = browsers(live, "ada@acme.test")
    grace = browsers(live, "grace@acme.test", 3)

    def arrange() -> tuple[str, list[Callable[[], int]]]:
        roles = {"ada@acme.test": Role.OWNER, "grace@acme.test": Role.ADMIN}
        slug = new_organization(live, Plan.PRO, roles)
        calls = [post(live, ada, f"/orgs/{slug}/billing", plan="free")] + [
            post(live, tab, f"/orgs/{slug}/invitations", email=f"g{n}@example.com", role="member")
            for n, tab in enumerate(grace)
        ]
        return slug, calls

    broke, statuses = run_races(live, arrange, over_the_cap)
    assert broke == 0, f"{broke} of {RACE_RUNS} runs left free over the cap: {statuses}"
    assert no_server_errors(statuses), statuses


# ---------------------------------------------------------------------------
# Item 6: exactly one owner
# ---------------------------------------------------------------------------


def test_a_transfer_racing_the_new_owners_leave_leaves_exactly_one_owner(live: Live) -> None:
    (ada,) = browsers(live, "ada@acme.test")
    (linus,) = browsers(live, "linus@acme.test")
    with live.db() as db:
        linus_id = user_id(db, "linus@acme.test")

    def arrange() -> tuple[str, list[Callable[[], int]]]:
        roles = {"ada@acme.test": Role.OWNER, "linus@acme.test": Role.ADMIN}
        slug = new_organization(live, Plan.PRO, roles)
        calls = [
            post(live, ada, f"/orgs/{slug}/transfer", user_id=str(linus_id)),
            post(live, linus, f"/orgs/{slug}/leave"),
        ]
        return slug, calls

    broke, statuses = run_races(live, arrange, not_one_owner)
    assert broke == 0, f"{broke} of {RACE_RUNS} runs broke 'one owner': {statuses}"
    assert no_server_errors(statuses), statuses


@pytest.mark.parametrize(
    ("what", "path", "form"),
    [
        ("removal", "/members/{id}/remove", {}),
        ("role change", "/members/{id}/role", {"role": "admin"}),
    ],
)
def test_a_transfer_racing_an_admin_managing_the_new_owner_leaves_exactly_one_owner(
    live: Live, what: str, path: str, form: dict[str, str]
) -> None:
    (ada,) = browsers(live, "ada@acme.test")
    (grace,) = browsers(live, "grace@acme.test")
    with live.db() as db:
        linus_id = user_id(db, "linus@acme.test")

    def arrange() -> tuple[str, list[Callable[[], int]]]:
        roles = {
            "ada@acme.test": Role.OWNER,
            "grace@acme.test": Role.ADMIN,
            "linus@acme.test": Role.MEMBER,
        }
        slug = new_organization(live, Plan.PRO, roles)
        target = f"/orgs/{slug}" + path.format(id=linus_id)
        calls = [
            post(live, ada, f"/orgs/{slug}/transfer", user_id=str(linus_id)),
            post(live, grace, target, **form),
        ]
        return slug, calls

    broke, statuses = run_races(live, arrange, not_one_owner)
    assert broke == 0, f"{what}: {broke} of {RACE_RUNS} runs broke 'one owner': {statuses}"
    assert no_server_errors(statuses), statuses
