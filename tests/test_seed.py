"""seed.py: the demo data of CONTRACT.md section 3, idempotent, with --reset and --invoices.

Every test gets its own SQLite file under tmp_path and the cheapest Argon2id profile.
The PostgreSQL variant of the idempotency test runs when INVOICEAPP_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from invoiceapp import demo_data
from invoiceapp.db import Base, make_engine
from invoiceapp.invoicing import new_public_id
from invoiceapp.models import (
    CURRENCIES,
    Invoice,
    InvoiceStatus,
    Membership,
    Organization,
    User,
)
from support import postgres_schema

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple"
PUBLIC_ID = re.compile(r"^inv_[a-z0-9]{16}$")
FIXED_IDS = {"inv_7", "inv_42"}

# CONTRACT.md section 3, written out again here on purpose: the test is the contract's
# copy, seed.py is the implementation's.
CONTRACT_USERS = {
    # email: (display name, verified, {org slug: role})
    "ada@acme.test": ("Ada Lovelace", True, {"acme": "owner"}),
    "grace@acme.test": ("Grace Hopper", True, {"acme": "admin", "globex": "member"}),
    "linus@acme.test": ("Linus Torvalds", True, {"acme": "member"}),
    "eve@acme.test": ("Eve Mallory", False, {"acme": "member"}),
    "hank@globex.test": ("Hank Scorpio", True, {"globex": "owner"}),
    "marge@globex.test": ("Marge Simpson", True, {"globex": "member"}),
    "tess@acme.test": ("Tess Ting", True, {"acme": "member"}),
}
CONTRACT_ORGANIZATIONS = {"acme": ("Acme Inc", "pro"), "globex": ("Globex Corporation", "free")}


def _load_seed_module() -> ModuleType:
    """seed.py is a script at the repository root (the command); the data is demo_data."""
    if "seed" in sys.modules:
        return sys.modules["seed"]
    spec = importlib.util.spec_from_file_location("seed", ROOT / "seed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["seed"] = module
    spec.loader.exec_module(module)
    return module


seed_script = _load_seed_module()


# --- Fixtures ---------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "seed.sqlite3"


@pytest.fixture
def db_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    """What `.venv/bin/python seed.py` sees: the configuration comes from FLASK_* variables."""
    monkeypatch.setenv("FLASK_DATABASE_URL", db_url)
    monkeypatch.setenv("FLASK_PASSWORD_HASH_PROFILE", "CHEAPEST")
    monkeypatch.setenv("FLASK_TESTING", "true")  # CHEAPEST is refused anywhere else
    return db_url


@pytest.fixture
def app(db_url: str) -> Flask:
    return seed_script.make_app(
        {"DATABASE_URL": db_url, "PASSWORD_HASH_PROFILE": "CHEAPEST", "TESTING": True}
    )


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def seeded_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database that ``seed_script.run`` migrated and seeded, once for the module: the
    migrations and the seed were most of each test's time."""
    path = tmp_path_factory.mktemp("seeded-once") / "seed.sqlite3"
    url = f"sqlite:///{path}"
    seed_script.run(
        seed_script.make_app(
            {"DATABASE_URL": url, "PASSWORD_HASH_PROFILE": "CHEAPEST", "TESTING": True}
        ),
        progress=False,
    )
    return path


@pytest.fixture
def seeded(seeded_once: Path, db_path: Path, engine: Engine) -> Engine:
    """The test's database as ``seed_script.run`` leaves it (a copy of ``seeded_once``)."""
    shutil.copyfile(seeded_once, db_path)
    return engine


def snapshot(engine: Engine) -> dict[str, Any]:
    """Row counts of every table, and the values a reseed must never change."""
    with Session(engine) as db:
        return {
            "counts": {
                table.name: db.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables
            },
            "invoice_public_ids": sorted(db.scalars(select(Invoice.public_id))),
            "password_hashes": dict(db.execute(select(User.email, User.password_hash)).all()),
            "memberships": sorted(
                db.execute(
                    select(User.email, Organization.slug, Membership.role)
                    .join(Membership.user)
                    .join(Membership.organization)
                ).all()
            ),
            "invoices": sorted(
                db.execute(
                    select(
                        Invoice.public_id,
                        Invoice.organization_id,
                        Invoice.number,
                        Invoice.status,
                        Invoice.customer,
                        Invoice.amount_minor,
                    )
                ).all()
            ),
        }


def invoices_by_org(engine: Engine) -> dict[str, list[Invoice]]:
    with Session(engine) as db:
        rows = db.execute(
            select(Organization.slug, Invoice).join(Invoice.organization).order_by(Invoice.number)
        ).all()
    result: dict[str, list[Invoice]] = {}
    for slug, invoice in rows:
        result.setdefault(slug, []).append(invoice)
    return result


# --- Idempotency ------------------------------------------------------------------------


def test_seeding_twice_changes_nothing(cli_env: str, engine: Engine, capsys: Any) -> None:
    assert seed_script.main([]) == 0
    first_output = capsys.readouterr().out
    before = snapshot(engine)

    assert seed_script.main([]) == 0
    second_output = capsys.readouterr().out

    assert snapshot(engine) == before
    assert before["counts"] == {
        "organizations": 2,
        "users": 7,
        "memberships": 8,
        "invoices": before["counts"]["invoices"],
        "invoice_counts": 8,  # (organization, status) pairs with invoices
        "sessions": 0,
        "account_tokens": 0,
        "security_events": 0,
        "invitations": 0,
        "shares": 0,
        "audit_events": 0,
        "audit_counts": 0,
        "personal_access_tokens": 0,
        "recovery_codes": 0,
        "passkeys": 0,
        "webauthn_challenges": 0,
        "security_counters": 0,
        "audit_repeats": 0,
        "audit_chains": 0,
        "email_sign_ins": 0,
        "custom_roles": 0,
        "audit_checkpoints": 0,
        "audit_prune_permits": 0,
        "support_grants": 0,
    }
    assert "users: 7 created, 0 already present" in first_output
    assert "users: 0 created, 7 already present" in second_output
    assert "already at 0020_support_access" in second_output
    assert PASSWORD in second_output  # the summary tells the demo password


def test_reseed_keeps_what_the_app_changed_and_never_rehashes_passwords(
    app: Flask, seeded: Engine
) -> None:
    with Session(seeded) as db:
        ada = db.scalars(select(User).where(User.email == "ada@acme.test")).one()
        ada.password_hash = "$argon2id$v=19$m=8,t=1,p=1$changed-in-the-app"
        db.scalars(select(Organization).where(Organization.slug == "globex")).one().plan = "pro"
        db.commit()

    report = seed_script.run(app, progress=False)

    assert not report.changed
    with Session(seeded) as db:
        assert db.scalar(select(User.password_hash).where(User.email == "ada@acme.test")) == (
            "$argon2id$v=19$m=8,t=1,p=1$changed-in-the-app"
        )
        assert db.scalar(select(Organization.plan).where(Organization.slug == "globex")) == "pro"


def test_seed_recreates_only_what_is_missing(app: Flask, seeded: Engine) -> None:
    with Session(seeded) as db:
        db.execute(text("DELETE FROM users WHERE email = 'eve@acme.test'"))
        db.commit()

    report = seed_script.run(app, progress=False)

    assert report.created == {"users": ["eve@acme.test"], "memberships": ["eve@acme.test in acme"]}
    with Session(seeded) as db:
        assert db.scalar(select(func.count()).select_from(User)) == 7


# --- The contract's data ----------------------------------------------------------------


def test_seeded_organizations_match_the_contract(seeded: Engine) -> None:
    with Session(seeded) as db:
        orgs = {o.slug: (o.name, o.plan) for o in db.scalars(select(Organization))}
    assert orgs == CONTRACT_ORGANIZATIONS


def test_seeded_users_roles_and_verified_flags_match_the_contract(seeded: Engine) -> None:
    with Session(seeded) as db:
        users = db.scalars(select(User)).all()
        found = {
            user.email: (
                user.display_name,
                user.email_verified_at is not None,
                {m.organization.slug: m.role for m in user.memberships},
            )
            for user in users
        }
    assert found == CONTRACT_USERS


def test_tess_has_totp_with_the_documented_demo_secret_encrypted_under_the_app_key(
    app: Flask, seeded: Engine, db_path: Path
) -> None:
    import pyotp

    from invoiceapp.authn.totp import decrypt_secret

    with Session(seeded) as db:
        tess = db.scalars(select(User).where(User.email == "tess@acme.test")).one()
        others = db.scalars(select(User).where(User.email != "tess@acme.test")).all()
    assert tess.totp_enabled_at is not None
    assert all(user.totp_secret_encrypted is None for user in others)
    with app.app_context():  # the key the demo serves with decrypts it
        assert decrypt_secret(tess.totp_secret_encrypted, tess.id) == seed_script.DEMO_TOTP_SECRET
    assert len(pyotp.TOTP(seed_script.DEMO_TOTP_SECRET).byte_secret()) * 8 >= 128
    seeded.dispose()
    data = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert seed_script.DEMO_TOTP_SECRET.encode() not in data


def test_seed_without_a_secret_key_uses_the_development_key_the_demo_serves_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from invoiceapp.config import _development_secret_key

    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    app = seed_script.make_app({"TESTING": True, "PASSWORD_HASH_PROFILE": "CHEAPEST"})
    assert app.config["SECRET_KEY"] == _development_secret_key(Path(app.instance_path))


def test_fixed_invoices_belong_to_their_organizations(seeded: Engine) -> None:
    with Session(seeded) as db:
        inv_7 = db.scalars(select(Invoice).where(Invoice.public_id == "inv_7")).one()
        inv_42 = db.scalars(select(Invoice).where(Invoice.public_id == "inv_42")).one()
        assert (inv_7.organization.slug, inv_7.status) == ("acme", "sent")
        assert inv_42.organization.slug == "globex"
        assert db.scalar(select(Invoice).where(Invoice.public_id == "inv_999999")) is None


def test_demo_invoices_are_varied_and_valid(seeded: Engine) -> None:
    with Session(seeded) as db:
        invoices = db.scalars(select(Invoice)).all()
        members = set(db.execute(select(Membership.user_id, Membership.organization_id)).all())
        linus_drafts_in_acme = [
            i
            for i in invoices
            if i.organization.slug == "acme"
            and i.status == InvoiceStatus.DRAFT.value
            and i.created_by is not None
            and i.created_by.email == "linus@acme.test"
        ]

    by_org: dict[int, list[Invoice]] = {}
    for invoice in invoices:
        by_org.setdefault(invoice.organization_id, []).append(invoice)
    assert len(by_org) == 2
    for org_invoices in by_org.values():
        assert len(org_invoices) >= 8
        assert {i.status for i in org_invoices} == {s.value for s in InvoiceStatus}
        assert len({i.created_by_id for i in org_invoices}) >= 2
        assert sorted(i.number for i in org_invoices) == list(range(1, len(org_invoices) + 1))

    for invoice in invoices:
        assert (invoice.created_by_id, invoice.organization_id) in members
        assert invoice.currency in CURRENCIES
        assert invoice.amount_minor > 0
        assert invoice.due_date >= invoice.issue_date
        assert invoice.public_id in ("inv_7", "inv_42") or PUBLIC_ID.fullmatch(invoice.public_id)
    assert any(not i.customer.isascii() for i in invoices)
    # "A member edits their own draft" can be demonstrated.
    assert linus_drafts_in_acme


def unfixed_ids(engine: Engine) -> dict[tuple[str, int], str]:
    """(org slug, number) -> public id of every invoice except inv_7 and inv_42."""
    with Session(engine) as db:
        rows = db.execute(
            select(Organization.slug, Invoice.number, Invoice.public_id).join(Invoice.organization)
        ).all()
    return {(slug, number): pid for slug, number, pid in rows if pid not in FIXED_IDS}


def test_demo_public_ids_are_random_per_install(tmp_path: Path) -> None:
    """Two installs share inv_7 and inv_42 and nothing else: ids cannot be guessed."""
    found = []
    for name in ("one", "two"):
        url = f"sqlite:///{tmp_path / name}.sqlite3"
        app = seed_script.make_app(
            {"DATABASE_URL": url, "PASSWORD_HASH_PROFILE": "CHEAPEST", "TESTING": True}
        )
        seed_script.run(app, progress=False)
        engine = make_engine(url)
        try:
            found.append(unfixed_ids(engine))
            with Session(engine) as db:
                assert set(db.scalars(select(Invoice.public_id))) >= FIXED_IDS
        finally:
            engine.dispose()
    one, two = found
    assert one.keys() == two.keys()
    assert len(one) == sum(len(specs) for specs in demo_data.DEMO_INVOICES.values()) - 2
    for ids in (one, two):
        assert all(PUBLIC_ID.fullmatch(public_id) for public_id in ids.values())
        assert len(set(ids.values())) == len(ids)
    assert not set(one.values()) & set(two.values())
    assert not hasattr(demo_data, "demo_public_id")
    assert not hasattr(demo_data, "generated_public_id")


def test_demo_invoice_id_looks_the_id_up_in_the_database(seeded: Engine) -> None:
    with Session(seeded) as db:
        linus_draft = seed_script.demo_invoice_id(db, "acme", 8)
        assert PUBLIC_ID.fullmatch(linus_draft)
        found = db.scalars(select(Invoice).where(Invoice.public_id == linus_draft)).one()
        assert (found.organization.slug, found.number, found.customer, found.status) == (
            "acme", 8, "Blue Mountain Coffee Roasters", "draft")  # fmt: skip
        assert found.created_by is not None and found.created_by.email == "linus@acme.test"
        assert seed_script.demo_invoice_id(db, "acme", 5) == "inv_7"
        assert seed_script.demo_invoice_id(db, "globex", 3) == "inv_42"
        assert seed_script.demo_invoice_id(db, "globex", 8) != seed_script.demo_invoice_id(
            db, "acme", 8
        )
        for slug, number in (("acme", 10), ("globex", 0), ("initech", 1)):
            with pytest.raises(LookupError):
                seed_script.demo_invoice_id(db, slug, number)

        # A soft-deleted demo invoice still has its id; a removed one has none.
        db.execute(
            text("UPDATE invoices SET deleted_at = created_at WHERE public_id = :id"),
            {"id": linus_draft},
        )
        db.execute(text("DELETE FROM invoices WHERE public_id = 'inv_42'"))
        db.commit()
        assert seed_script.demo_invoice_id(db, "acme", 8) == linus_draft
        with pytest.raises(LookupError):
            seed_script.demo_invoice_id(db, "globex", 3)


def test_random_ids_never_start_with_a_contract_id(
    app: Flask, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else "inv_7" would be on the page of an org whose inv_7 is deleted or not there."""
    unlucky = iter(["inv_7k2rar9arjlbzmnw", "inv_42aaaaaaaaaaaaaa", "inv_999999aaaaaaaaaa"])
    calls: list[str] = []

    def new_public_id() -> str:
        calls.append(next(unlucky, None) or f"inv_{len(calls):016d}")
        return calls[-1]

    monkeypatch.setattr(demo_data, "new_public_id", new_public_id)
    seed_script.run(app, progress=False, invoices=20)

    with Session(engine) as db:
        ids = db.scalars(select(Invoice.public_id)).all()
    assert len(calls) == len(ids) - 2 + 3
    for public_id in ids:
        assert public_id in FIXED_IDS or (
            PUBLIC_ID.fullmatch(public_id)
            and not public_id.startswith(demo_data.CONTRACT_PUBLIC_IDS)
        )


# --- Recognising demo invoices on a reseed ----------------------------------------------


def test_reseed_recognises_demo_invoices_by_number_not_by_id(app: Flask, seeded: Engine) -> None:
    """Ids from an older seed (or any other id) do not matter: the number does."""
    with Session(seeded) as db:
        for position, public_id in enumerate(unfixed_ids(seeded).values()):
            db.execute(
                text("UPDATE invoices SET public_id = :new WHERE public_id = :old"),
                {"new": f"inv_old{position:013d}", "old": public_id},
            )
        db.commit()
    before = snapshot(seeded)

    report = seed_script.run(app, progress=False)

    assert not report.changed
    assert snapshot(seeded) == before


def test_soft_deleted_demo_invoice_stays_deleted_after_reseed(app: Flask, seeded: Engine) -> None:
    with Session(seeded) as db:
        eve_draft = seed_script.demo_invoice_id(db, "acme", 9)
        db.execute(text("UPDATE invoices SET deleted_at = created_at WHERE number IN (3, 9)"))
        db.execute(text("UPDATE invoices SET deleted_at = created_at WHERE public_id = 'inv_7'"))
        db.commit()
    before = snapshot(seeded)

    report = seed_script.run(app, progress=False)

    assert not report.changed
    assert snapshot(seeded) == before
    assert eve_draft in report.present["invoices"]


def test_removed_demo_invoice_comes_back_with_a_new_random_id(app: Flask, seeded: Engine) -> None:
    with Session(seeded) as db:
        old_id = seed_script.demo_invoice_id(db, "acme", 8)
        db.execute(text("DELETE FROM invoices WHERE public_id IN (:id, 'inv_42')"), {"id": old_id})
        db.commit()

    report = seed_script.run(app, progress=False)

    with Session(seeded) as db:
        new_id = seed_script.demo_invoice_id(db, "acme", 8)
        assert db.scalar(select(Invoice.number).where(Invoice.public_id == "inv_42")) == 3
    assert PUBLIC_ID.fullmatch(new_id) and new_id != old_id
    assert sorted(report.created["invoices"]) == sorted([new_id, "inv_42"])
    assert not seed_script.run(app, progress=False).changed


def test_numbers_people_already_used_count_as_present_but_inv_7_is_still_created(
    app: Flask, seeded: Engine
) -> None:
    """Acme has invoices #1-#6 of its own and no demo invoices: the seed leaves those alone
    (it cannot tell them from demo invoices), adds demo #7-#9, and inv_7 after them."""
    with Session(seeded) as db:
        acme = db.scalars(select(Organization).where(Organization.slug == "acme")).one()
        ada = db.scalars(select(User).where(User.email == "ada@acme.test")).one()
        db.execute(text("DELETE FROM invoices WHERE organization_id = :id"), {"id": acme.id})
        today = date.today()
        for number in range(1, 7):
            db.add(
                Invoice(
                    public_id=new_public_id(),
                    organization=acme,
                    number=number,
                    customer=f"Own customer {number}",
                    amount_minor=100 * number,
                    currency="EUR",
                    status="draft",
                    issue_date=today,
                    due_date=today,
                    created_by=ada,
                )
            )
        db.commit()
    own = {n: pid for (slug, n), pid in unfixed_ids(seeded).items() if slug == "acme"}

    report = seed_script.run(app, progress=False)

    after = invoices_by_org(seeded)["acme"]
    assert [(i.number, i.customer) for i in after] == [
        *[(n, f"Own customer {n}") for n in range(1, 7)],
        (7, "Fjord Analytics AS"),
        (8, "Blue Mountain Coffee Roasters"),
        (9, "Kastrup Design ApS"),
        (10, "Wayne Enterprises"),
    ]
    assert [i.public_id for i in after[:6]] == [own[n] for n in range(1, 7)]
    assert (after[-1].public_id, after[-1].status) == ("inv_7", "sent")
    assert len(report.created["invoices"]) == 4

    before = snapshot(seeded)
    assert not seed_script.run(app, progress=False).changed
    assert snapshot(seeded) == before


# --- Passwords --------------------------------------------------------------------------


def test_passwords_are_argon2id_hashes_and_the_plaintext_is_nowhere_in_the_database(
    seeded: Engine, db_path: Path
) -> None:
    with Session(seeded) as db:
        hashes = db.scalars(select(User.password_hash)).all()
    assert len(hashes) == 7
    assert len(set(hashes)) == 7  # salted: equal passwords, different hashes
    for stored in hashes:
        assert stored.startswith("$argon2id$")
        assert PasswordHasher().verify(stored, PASSWORD)

    seeded.dispose()  # everything is on disk, no journal left behind
    data = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert PASSWORD.encode() not in data


# --- --reset and --invoices -------------------------------------------------------------


def without_public_ids(invoices: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(tuple(row[1:]) for row in invoices)


def test_reset_gives_back_the_same_fixed_public_ids(
    cli_env: str, engine: Engine, capsys: Any
) -> None:
    assert seed_script.main([]) == 0
    seeded_once = snapshot(engine)
    ids_once = unfixed_ids(engine)
    assert seed_script.main(["--invoices", "5"]) == 0
    with Session(engine) as db:
        db.execute(text("UPDATE invoices SET status = 'void' WHERE public_id = 'inv_7'"))
        db.commit()

    assert seed_script.main(["--reset"]) == 0

    after_reset = snapshot(engine)
    assert after_reset["counts"] == seeded_once["counts"]
    assert without_public_ids(after_reset["invoices"]) == without_public_ids(
        seeded_once["invoices"]
    )
    assert after_reset["memberships"] == seeded_once["memberships"]
    # The fixed ids come back, on the same invoices (inv_7 is "sent" again) ...
    with Session(engine) as db:
        inv_7 = db.scalars(select(Invoice).where(Invoice.public_id == "inv_7")).one()
        inv_42 = db.scalars(select(Invoice).where(Invoice.public_id == "inv_42")).one()
        assert (inv_7.organization.slug, inv_7.number, inv_7.status) == ("acme", 5, "sent")
        assert (inv_42.organization.slug, inv_42.number) == ("globex", 3)
    # ... and every other invoice has a fresh random id.
    ids_after = unfixed_ids(engine)
    assert ids_after.keys() == ids_once.keys()
    assert all(PUBLIC_ID.fullmatch(public_id) for public_id in ids_after.values())
    assert not set(ids_after.values()) & set(ids_once.values())
    assert "reset: deleted every row" in capsys.readouterr().out


def test_invoices_option_adds_n_consecutive_unique_numbers_to_every_organization(
    cli_env: str, engine: Engine, capsys: Any
) -> None:
    assert seed_script.main([]) == 0
    before = invoices_by_org(engine)

    assert seed_script.main(["--invoices", "50"]) == 0
    assert seed_script.main(["--invoices", "50"]) == 0  # numbering continues, no clashes

    captured = capsys.readouterr()
    assert "generated invoices: 50 added to acme" in captured.out
    assert "%|" not in captured.err  # no progress bar when stderr is not a terminal
    after = invoices_by_org(engine)
    assert set(after) == {"acme", "globex"}
    public_ids = [i.public_id for invoices in after.values() for i in invoices]
    assert len(public_ids) == len(set(public_ids))
    for slug, invoices in after.items():
        old_max = max(i.number for i in before[slug])
        new = invoices[len(before[slug]) :]
        assert len(invoices) == len(before[slug]) + 100
        assert [i.number for i in new] == list(range(old_max + 1, old_max + 101))
        for invoice in new:
            assert PUBLIC_ID.fullmatch(invoice.public_id)
            assert invoice.due_date >= invoice.issue_date
            assert invoice.created_by_id is not None


def test_add_generated_invoices_uses_batches(app: Flask, seeded: Engine) -> None:
    with Session(seeded) as db:
        added = seed_script.add_generated_invoices(db, 25, batch_size=10, progress=False)
        total = db.scalar(select(func.count()).select_from(Invoice))
    assert added == {"acme": 25, "globex": 25}
    assert total == len(invoices_by_org(seeded)["acme"]) + len(invoices_by_org(seeded)["globex"])


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = os.environ.get("INVOICEAPP_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set INVOICEAPP_TEST_POSTGRES_URL to run the PostgreSQL variant")
    with postgres_schema(base) as url:
        yield url


def test_seeding_postgresql_twice_changes_nothing(postgres_url: str) -> None:
    app = seed_script.make_app(
        {"DATABASE_URL": postgres_url, "PASSWORD_HASH_PROFILE": "CHEAPEST", "TESTING": True}
    )
    engine = make_engine(postgres_url)
    try:
        seed_script.run(app, progress=False, invoices=20)
        before = snapshot(engine)
        report = seed_script.run(app, progress=False)
        assert not report.changed
        assert snapshot(engine) == before
        with Session(engine) as db:
            inv_7 = db.scalars(select(Invoice).where(Invoice.public_id == "inv_7")).one()
            assert (inv_7.organization.slug, inv_7.status) == ("acme", "sent")
    finally:
        engine.dispose()


def test_seed_refuses_a_deployment_configuration_without_the_explicit_flag(
    monkeypatch: pytest.MonkeyPatch, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLASK_DATABASE_URL", db_url)
    monkeypatch.setenv("FLASK_SECRET_KEY", "k" * 32)
    for name in ("FLASK_TESTING", "FLASK_DEBUG", "FLASK_DEMO_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert seed_script.main(["--reset"]) == 2
    assert "--yes-this-is-not-production" in capsys.readouterr().err
    assert not Path(db_url.removeprefix("sqlite:///")).exists()  # nothing touched
