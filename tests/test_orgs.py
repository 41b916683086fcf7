"""Organization pages: create, view, settings, leave, members, roles, ownership, billing.

Each route gets its allowed case, its 403, its other-organization 404 (the same bytes as
an organization that never existed) and its anonymous case. Every app here writes its
mail to the test's own outbox, never into instance/.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import invoiceapp.organizations
from conftest import make_test_app
from invoiceapp.db import utcnow
from invoiceapp.models import AuditEvent, Membership, Organization, Plan, UserSession
from invoiceapp.organizations import RESERVED_SLUGS, unique_slug
from support import PASSWORD, SLUG_SHAPE, csrf_token_from, latest_mail_to, signed_in_client, user


@pytest.fixture()
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture()
def app(database_file: Path, outbox: Path) -> Iterator[Flask]:
    """Overrides conftest's app: mail goes to this test's outbox."""
    app = make_test_app(database_file, MAIL_OUTBOX_DIR=str(outbox))
    yield app
    app.extensions["db_engine"].dispose()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def organization(db: Session, slug: str) -> Organization:
    db.expire_all()
    found = db.scalar(select(Organization).where(Organization.slug == slug))
    assert found is not None
    return found


def role_of(db: Session, email: str, slug: str) -> str | None:
    db.expire_all()
    return db.scalar(
        select(Membership.role).where(
            Membership.user_id == user(db, email).id,
            Membership.organization_id == organization(db, slug).id,
        )
    )


def audit_rows(db: Session, action: str, decision: str = "allowed") -> list[AuditEvent]:
    db.expire_all()
    return list(
        db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.decision == decision)
            .order_by(AuditEvent.id)
        )
    )


def client_of(app: Flask, email: str) -> FlaskClient:
    """Signed in, with the "signed in" flash already shown (404 pages must match bytes)."""
    client = signed_in_client(app, email)
    client.get("/dashboard")
    return client


def sessions_of(db: Session, email: str) -> list[UserSession]:
    db.expire_all()
    return list(db.scalars(select(UserSession).where(UserSession.user_id == user(db, email).id)))


def age_session(db: Session, email: str, minutes: int) -> None:
    """The password was entered ``minutes`` ago: past FRESH_AGE_SECONDS, not elevated."""
    for session in sessions_of(db, email):
        session.authenticated_at = utcnow() - timedelta(minutes=minutes)
    db.commit()


def text(response: Any) -> str:
    return response.get_data(as_text=True)


# Every route of this file's pages with a slug in it: (method, path after /orgs/<slug>, form).
ORG_ROUTES = [
    ("GET", "", {}),
    ("POST", "/settings", {"invoice_duplication": "on"}),
    ("POST", "/leave", {}),
    ("GET", "/members", {}),
    ("POST", "/members/{member}/role", {"role": "admin"}),
    ("POST", "/members/{member}/remove", {}),
    ("POST", "/invitations", {"email": "someone@example.com", "role": "member"}),
    ("POST", "/invitations/0123456789abcdef/revoke", {}),
    ("POST", "/invitations/0123456789abcdef/resend", {}),
    ("GET", "/transfer", {}),
    ("POST", "/transfer", {"user_id": "{member}"}),
    ("GET", "/billing", {}),
    ("POST", "/billing", {"plan": "pro"}),
]


def _fill(template: str, member_id: int) -> str:
    return template.replace("{member}", str(member_id))


# ---------------------------------------------------------------------------
# The gates, route by route: anonymous, other organization
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "suffix", "form"), ORG_ROUTES)
def test_anonymous_gets_sign_in_redirect_or_401(
    client: FlaskClient, db: Session, method: str, suffix: str, form: dict[str, str]
) -> None:
    marge = user(db, "marge@globex.test").id
    path = "/orgs/globex" + _fill(suffix, marge)
    data = {key: _fill(value, marge) for key, value in form.items()}
    response = client.open(path, method=method, data=data)
    if method == "GET":
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/sign-in?next=/orgs/globex")
    else:
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Session ")
    assert organization(db, "globex").plan == Plan.FREE


@pytest.mark.parametrize(("method", "suffix", "form"), ORG_ROUTES)
def test_other_org_is_404_like_a_missing_one(
    app: Flask, db: Session, method: str, suffix: str, form: dict[str, str]
) -> None:
    # Ada owns Acme and may do all of this there; Globex is not hers, so it does not exist.
    client = client_of(app, "ada@acme.test")
    marge = user(db, "marge@globex.test").id
    data = {key: _fill(value, marge) for key, value in form.items()}
    other = client.open("/orgs/globex" + _fill(suffix, marge), method=method, data=data)
    missing = client.open("/orgs/no-such-org" + _fill(suffix, marge), method=method, data=data)
    assert other.status_code == missing.status_code == 404
    assert other.get_data() == missing.get_data()
    assert "Globex" not in text(other)
    assert organization(db, "globex").plan == Plan.FREE
    assert role_of(db, "marge@globex.test", "globex") == "member"


@pytest.mark.parametrize(
    "slug",
    ["ACME", "-acme", "acme_inc", "a" * 65, "x" * 5000, "%00", "ac%20me", "acme.", "e%CC%81"],
)
def test_malformed_or_huge_slugs_are_404(app: Flask, slug: str) -> None:
    client = client_of(app, "ada@acme.test")
    assert client.get(f"/orgs/{slug}").status_code == 404
    assert client.get(f"/orgs/{slug}/members").status_code == 404
    assert client.post(f"/orgs/{slug}/billing", data={"plan": "free"}).status_code == 404


# ---------------------------------------------------------------------------
# Creating an organization
# ---------------------------------------------------------------------------


def test_signed_in_user_creates_org_as_owner_and_works_in_it(app: Flask, db: Session) -> None:
    client = client_of(app, "linus@acme.test")
    assert client.get("/orgs/new").status_code == 200
    response = client.post("/orgs/new", data={"name": "Linux Foundation"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/orgs/linux-foundation"

    created = organization(db, "linux-foundation")
    assert created.name == "Linux Foundation"
    assert created.plan == Plan.FREE
    assert role_of(db, "linus@acme.test", "linux-foundation") == "owner"
    (session,) = sessions_of(db, "linus@acme.test")
    assert session.active_organization_id == created.id
    page = client.get("/orgs/linux-foundation")
    assert page.status_code == 200
    assert 'data-testid="role-here">owner<' in text(page)
    assert "Linux Foundation" in text(client.get("/dashboard"))
    (row,) = audit_rows(db, "org.create")
    assert row.organization_id == created.id
    assert row.actor_email == "linus@acme.test"


def test_taken_slug_gets_a_number(app: Flask, db: Session) -> None:
    client = client_of(app, "ada@acme.test")
    first = client.post("/orgs/new", data={"name": "ACME!"})
    second = client.post("/orgs/new", data={"name": "Acme"})
    assert first.headers["Location"] == "/orgs/acme-2"
    assert second.headers["Location"] == "/orgs/acme-3"
    assert role_of(db, "ada@acme.test", "acme-3") == "owner"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ünïcorn & Co.", "unicorn-co"),
        ("Smørrebrød Straße", "smorrebrod-strasse"),
        ("東京", "org"),
        ("!!!", "org"),
        ("new", "new-2"),
        ("Switch", "switch-2"),
        ("Globex Corporation", "globex-corporation"),
        ("globex", "globex-2"),
    ],
)
def test_unique_slug_is_url_safe_and_free(db: Session, name: str, expected: str) -> None:
    slug = unique_slug(db, name)
    assert slug == expected
    assert SLUG_SHAPE.fullmatch(slug)


def test_unique_slug_of_a_long_name_keeps_the_shape_with_its_suffix(db: Session) -> None:
    long_name = "a" * 64
    db.add(Organization(slug="a" * 64, name=long_name, plan="free"))
    db.commit()
    slug = unique_slug(db, long_name + "-more")
    assert slug == "a" * 62 + "-2"
    assert len(slug) <= 64 and SLUG_SHAPE.fullmatch(slug)
    assert not RESERVED_SLUGS & {slug}


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "Evil\nCorp", "Tab\there", "NUL\x00"])
def test_invalid_org_name_is_422_and_nothing_is_created(app: Flask, db: Session, name: str) -> None:
    client = client_of(app, "linus@acme.test")
    before = len(db.scalars(select(Organization)).all())
    response = client.post("/orgs/new", data={"name": name})
    assert response.status_code == 422
    assert "field-error" in text(response)
    db.expire_all()
    assert len(db.scalars(select(Organization)).all()) == before


def test_create_org_ignores_plan_owner_and_ids_sent_along(app: Flask, db: Session) -> None:
    client = client_of(app, "linus@acme.test")
    acme = organization(db, "acme")
    response = client.post(
        "/orgs/new",
        data={
            "name": "Sneaky",
            "plan": "pro",
            "slug": "acme",
            "organization_id": str(acme.id),
            "owner": str(user(db, "ada@acme.test").id),
            "role": "owner",
            "invoice_duplication_enabled": "on",
        },
    )
    assert response.headers["Location"] == "/orgs/sneaky"
    sneaky = organization(db, "sneaky")
    assert sneaky.plan == Plan.FREE
    assert not sneaky.invoice_duplication_enabled
    assert role_of(db, "linus@acme.test", "sneaky") == "owner"
    assert role_of(db, "ada@acme.test", "sneaky") is None
    assert role_of(db, "linus@acme.test", "acme") == "member"


def test_anonymous_create_org_is_401_and_form_redirects(client: FlaskClient) -> None:
    assert client.get("/orgs/new").headers["Location"] == "/sign-in?next=/orgs/new"
    assert client.post("/orgs/new", data={"name": "X"}).status_code == 401


# ---------------------------------------------------------------------------
# The organization page: role, capabilities, settings
# ---------------------------------------------------------------------------


def test_member_sees_org_plan_role_and_what_the_role_allows(app: Flask) -> None:
    page = client_of(app, "linus@acme.test").get("/orgs/acme")
    assert page.status_code == 200
    body = text(page)
    assert "Acme Inc" in body
    assert 'data-testid="plan">pro<' in body
    assert 'data-testid="role-here">member<' in body
    assert "The member role does not include invoice.delete" in body
    assert "The member role includes invoice.read" in body
    assert "The pro plan includes invoice.export for a member" in body
    assert "Depends on which one: own drafts only" in body
    # No toggle for a member, and no billing or audit link.
    assert 'action="/orgs/acme/settings"' not in body
    assert 'href="/orgs/acme/billing"' not in body
    assert "Leave this organization" in body


def test_same_person_gets_different_answers_in_each_org(app: Flask) -> None:
    grace = client_of(app, "grace@acme.test")
    acme, globex = text(grace.get("/orgs/acme")), text(grace.get("/orgs/globex"))
    assert 'data-testid="role-here">admin<' in acme
    assert "The admin role includes invoice.delete" in acme
    assert 'data-testid="role-here">member<' in globex
    assert "The member role does not include invoice.delete" in globex
    assert "Exporting (invoice.export) is part of the pro plan" in globex


def test_owner_sees_toggle_and_cannot_leave(app: Flask) -> None:
    body = text(client_of(app, "ada@acme.test").get("/orgs/acme"))
    assert 'action="/orgs/acme/settings"' in body
    assert "Leave this organization" not in body
    assert "transfer ownership to another member first" in body
    assert "allowed (fresh password)" in body  # org.billing.update


def test_owner_switches_invoice_duplication_on_and_off(app: Flask, db: Session) -> None:
    client = client_of(app, "ada@acme.test")
    response = client.post("/orgs/acme/settings", data={"invoice_duplication": "on"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/orgs/acme"
    assert organization(db, "acme").invoice_duplication_enabled
    assert "yes, when the organization" not in text(client.get("/orgs/acme"))
    assert "The invoice duplication flag is on" in text(client.get("/orgs/acme"))

    client.post("/orgs/acme/settings", data={})  # an unticked checkbox posts nothing
    assert not organization(db, "acme").invoice_duplication_enabled
    reasons = [row.reason for row in audit_rows(db, "org.settings.update")]
    assert reasons == ["invoice duplication on", "invoice duplication off"]


def test_admin_changes_settings_gets_403_and_flag_stays(app: Flask, db: Session) -> None:
    client = client_of(app, "grace@acme.test")
    response = client.post("/orgs/acme/settings", data={"invoice_duplication": "on"})
    assert response.status_code == 403
    assert "org.settings.update" in text(response)
    assert not organization(db, "acme").invoice_duplication_enabled
    (refusal,) = audit_rows(db, "org.settings.update", "denied")
    assert refusal.status == 403


def test_settings_ignore_plan_and_name_sent_along(app: Flask, db: Session) -> None:
    client = client_of(app, "hank@globex.test")
    client.post(
        "/orgs/globex/settings",
        data={"invoice_duplication": "on", "plan": "pro", "name": "Hacked", "slug": "x"},
    )
    globex = organization(db, "globex")
    assert globex.invoice_duplication_enabled
    assert (globex.plan, globex.name) == (Plan.FREE, "Globex Corporation")


# ---------------------------------------------------------------------------
# Leaving
# ---------------------------------------------------------------------------


def test_member_leaves_and_active_org_is_cleared(app: Flask, db: Session) -> None:
    client = client_of(app, "grace@acme.test")
    client.post("/orgs/switch", data={"organization": "globex"})
    (session,) = sessions_of(db, "grace@acme.test")
    assert session.active_organization_id == organization(db, "globex").id

    response = client.post("/orgs/globex/leave")
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard"
    assert role_of(db, "grace@acme.test", "globex") is None
    (session,) = sessions_of(db, "grace@acme.test")
    assert session.active_organization_id is None
    assert client.get("/orgs/globex").status_code == 404
    assert "Acme Inc" in text(client.get("/dashboard"))
    (row,) = audit_rows(db, "org.leave")
    assert row.organization_id == organization(db, "globex").id


def test_owner_leaves_gets_403_transfer_first(app: Flask, db: Session) -> None:
    response = client_of(app, "ada@acme.test").post("/orgs/acme/leave")
    assert response.status_code == 403
    assert "org.leave" in text(response)
    assert "another owner" in text(response)
    assert role_of(db, "ada@acme.test", "acme") == "owner"


# ---------------------------------------------------------------------------
# Members: list, role changes, removal
# ---------------------------------------------------------------------------


def test_member_sees_members_but_no_buttons(app: Flask) -> None:
    response = client_of(app, "linus@acme.test").get("/orgs/acme/members")
    assert response.status_code == 200
    body = text(response)
    for name in ("Ada Lovelace", "Grace Hopper", "Linus Torvalds", "eve@acme.test"):
        assert name in body
    assert "/remove" not in body
    assert "/role" not in body
    assert "Send invitation" not in body
    assert "Transfer ownership" not in body


def test_admin_sees_buttons_only_for_plain_members(app: Flask, db: Session) -> None:
    body = text(client_of(app, "grace@acme.test").get("/orgs/acme/members"))
    for email in ("linus@acme.test", "eve@acme.test"):
        assert f"/orgs/acme/members/{user(db, email).id}/remove" in body
    for email in ("ada@acme.test", "grace@acme.test"):
        assert f"/orgs/acme/members/{user(db, email).id}/remove" not in body
        assert f"/orgs/acme/members/{user(db, email).id}/role" not in body
    assert "Send invitation" in body
    assert "Transfer ownership" not in body


def test_owner_promotes_member_to_admin(app: Flask, db: Session) -> None:
    linus = user(db, "linus@acme.test").id
    response = client_of(app, "ada@acme.test").post(
        f"/orgs/acme/members/{linus}/role", data={"role": "admin"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/orgs/acme/members"
    assert role_of(db, "linus@acme.test", "acme") == "admin"
    (row,) = audit_rows(db, "member.change_role")
    assert (row.reason, row.resource_id) == ("role member -> admin", f"membership:{linus}")


def test_admin_promotes_plain_member(app: Flask, db: Session) -> None:
    linus = user(db, "linus@acme.test").id
    response = client_of(app, "grace@acme.test").post(
        f"/orgs/acme/members/{linus}/role", data={"role": "admin"}
    )
    assert response.status_code == 303
    assert role_of(db, "linus@acme.test", "acme") == "admin"


@pytest.mark.parametrize(
    ("who", "target", "role"),
    [
        ("grace@acme.test", "ada@acme.test", "member"),  # an admin touching the owner
        ("grace@acme.test", "grace@acme.test", "member"),  # yourself
        ("ada@acme.test", "ada@acme.test", "admin"),  # the owner re-roling themselves
        ("ada@acme.test", "linus@acme.test", "owner"),  # ownership moves only by transfer
        ("grace@acme.test", "linus@acme.test", "owner"),
        ("linus@acme.test", "eve@acme.test", "admin"),  # a member
    ],
)
def test_role_change_refused_by_policy_is_403(
    app: Flask, db: Session, who: str, target: str, role: str
) -> None:
    before = role_of(db, target, "acme")
    response = client_of(app, who).post(
        f"/orgs/acme/members/{user(db, target).id}/role", data={"role": role}
    )
    assert response.status_code == 403
    assert "member.change_role" in text(response)
    assert role_of(db, target, "acme") == before


def test_admin_cannot_change_another_admins_role(app: Flask, db: Session) -> None:
    client_of(app, "ada@acme.test").post(
        f"/orgs/acme/members/{user(db, 'linus@acme.test').id}/role", data={"role": "admin"}
    )
    response = client_of(app, "grace@acme.test").post(
        f"/orgs/acme/members/{user(db, 'linus@acme.test').id}/role", data={"role": "member"}
    )
    assert response.status_code == 403
    assert role_of(db, "linus@acme.test", "acme") == "admin"


@pytest.mark.parametrize("role", ["superuser", "", "ADMIN", "admin ", "x" * 5000])
def test_invalid_role_is_422_and_nothing_changes(app: Flask, db: Session, role: str) -> None:
    linus = user(db, "linus@acme.test").id
    response = client_of(app, "ada@acme.test").post(
        f"/orgs/acme/members/{linus}/role", data={"role": role}
    )
    assert response.status_code == 422
    assert "Choose one of the roles offered" in text(response)
    assert role_of(db, "linus@acme.test", "acme") == "member"


@pytest.mark.parametrize(
    "user_id", ["{hank}", "999999", "2147483648", "99999999999999999999999", "abc", "-1", "1.5"]
)
@pytest.mark.parametrize("action", ["role", "remove"])
def test_user_outside_this_org_or_malformed_id_is_404(
    app: Flask, db: Session, user_id: str, action: str
) -> None:
    hank = user(db, "hank@globex.test").id
    path = f"/orgs/acme/members/{user_id.replace('{hank}', str(hank))}/{action}"
    response = client_of(app, "ada@acme.test").post(path, data={"role": "admin"})
    assert response.status_code == 404
    assert role_of(db, "hank@globex.test", "globex") == "owner"


def test_role_change_ignores_organization_id_sent_along(app: Flask, db: Session) -> None:
    grace = user(db, "grace@acme.test").id
    # Grace is an admin in Acme and a member in Globex; Hank owns Globex.
    client_of(app, "hank@globex.test").post(
        f"/orgs/globex/members/{grace}/role",
        data={"role": "admin", "organization_id": str(organization(db, "acme").id)},
    )
    assert role_of(db, "grace@acme.test", "globex") == "admin"
    assert role_of(db, "grace@acme.test", "acme") == "admin"
    assert role_of(db, "ada@acme.test", "acme") == "owner"


def test_owner_removes_member_who_loses_access_on_the_next_request(app: Flask, db: Session) -> None:
    ada, linus = client_of(app, "ada@acme.test"), client_of(app, "linus@acme.test")
    linus.post("/orgs/switch", data={"organization": "acme"})
    assert linus.get("/invoices/inv_7").status_code == 200

    linus_id = user(db, "linus@acme.test").id
    response = ada.post(f"/orgs/acme/members/{linus_id}/remove")
    assert response.status_code == 303
    assert role_of(db, "linus@acme.test", "acme") is None
    # Every browser of Linus stops working in Acme.
    assert all(s.active_organization_id is None for s in sessions_of(db, "linus@acme.test"))
    # His very next request: the invoice and the organization are gone for him.
    assert linus.get("/invoices/inv_7").status_code == 404
    assert linus.get("/orgs/acme").status_code == 404
    (row,) = audit_rows(db, "member.remove")
    assert (row.resource_id, row.reason) == (f"membership:{linus_id}", "removed a member")


def test_admin_removes_plain_member(app: Flask, db: Session) -> None:
    eve = user(db, "eve@acme.test").id
    assert (
        client_of(app, "grace@acme.test").post(f"/orgs/acme/members/{eve}/remove").status_code
        == 303
    )
    assert role_of(db, "eve@acme.test", "acme") is None


@pytest.mark.parametrize(
    ("who", "target"),
    [
        ("grace@acme.test", "ada@acme.test"),  # an admin cannot remove the owner
        ("grace@acme.test", "grace@acme.test"),  # nor themselves here (leave instead)
        ("ada@acme.test", "ada@acme.test"),  # the owner cannot remove themselves
        ("linus@acme.test", "eve@acme.test"),  # a member removes nobody
    ],
)
def test_removal_refused_by_policy_is_403(app: Flask, db: Session, who: str, target: str) -> None:
    before = role_of(db, target, "acme")
    response = client_of(app, who).post(f"/orgs/acme/members/{user(db, target).id}/remove")
    assert response.status_code == 403
    assert "member.remove" in text(response)
    assert role_of(db, target, "acme") == before
    assert audit_rows(db, "member.remove", "denied")


def test_admin_cannot_remove_another_admin(app: Flask, db: Session) -> None:
    linus = user(db, "linus@acme.test").id
    client_of(app, "ada@acme.test").post(f"/orgs/acme/members/{linus}/role", data={"role": "admin"})
    response = client_of(app, "grace@acme.test").post(f"/orgs/acme/members/{linus}/remove")
    assert response.status_code == 403
    assert "plain members" in text(response) or "owner role" in text(response)
    assert role_of(db, "linus@acme.test", "acme") == "admin"


def test_demoted_admin_loses_power_on_the_very_next_request(app: Flask, db: Session) -> None:
    ada, grace = client_of(app, "ada@acme.test"), client_of(app, "grace@acme.test")
    linus = user(db, "linus@acme.test").id
    assert f"/orgs/acme/members/{linus}/remove" in text(grace.get("/orgs/acme/members"))

    ada.post(f"/orgs/acme/members/{user(db, 'grace@acme.test').id}/role", data={"role": "member"})

    # Same browser, same session, no sign-in in between: the role is read again.
    assert f"/orgs/acme/members/{linus}/remove" not in text(grace.get("/orgs/acme/members"))
    response = grace.post(f"/orgs/acme/members/{linus}/remove")
    assert response.status_code == 403
    assert role_of(db, "linus@acme.test", "acme") == "member"
    assert grace.get("/orgs/acme/billing").status_code == 403


# ---------------------------------------------------------------------------
# Ownership transfer
# ---------------------------------------------------------------------------


def test_owner_transfers_ownership_and_both_are_told(app: Flask, db: Session, outbox: Path) -> None:
    ada = client_of(app, "ada@acme.test")
    body = text(ada.get("/orgs/acme/members"))
    assert 'action="/orgs/acme/transfer"' in body
    grace = user(db, "grace@acme.test").id
    response = ada.post("/orgs/acme/transfer", data={"user_id": str(grace)})
    assert response.status_code == 303
    assert role_of(db, "grace@acme.test", "acme") == "owner"
    assert role_of(db, "ada@acme.test", "acme") == "admin"
    owners = db.scalars(
        select(Membership).where(
            Membership.organization_id == organization(db, "acme").id, Membership.role == "owner"
        )
    ).all()
    assert len(owners) == 1

    to_new = latest_mail_to(outbox, "grace@acme.test")
    to_old = latest_mail_to(outbox, "ada@acme.test")
    assert to_new is not None and to_old is not None
    assert "transferred ownership of Acme Inc to you" in to_new.text
    assert "You are now an admin" in to_old.text
    assert "http://127.0.0.1:5000/orgs/acme" in to_new.links
    (row,) = audit_rows(db, "org.transfer_ownership")
    assert row.resource_id == f"membership:{grace}"
    assert row.actor_email == "ada@acme.test"


def test_transfer_double_submit_second_is_403(app: Flask, db: Session) -> None:
    ada = client_of(app, "ada@acme.test")
    grace, linus = user(db, "grace@acme.test").id, user(db, "linus@acme.test").id
    assert ada.post("/orgs/acme/transfer", data={"user_id": str(grace)}).status_code == 303
    second = ada.post("/orgs/acme/transfer", data={"user_id": str(linus)})
    assert second.status_code == 403
    assert "org.transfer_ownership" in text(second)
    assert role_of(db, "grace@acme.test", "acme") == "owner"
    assert role_of(db, "linus@acme.test", "acme") == "member"


def test_transfer_is_one_transaction_when_the_second_update_fails(
    app: Flask, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_set_role = invoiceapp.organizations.set_role
    calls: list[str] = []

    def failing_second_update(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs["to_role"])
        if len(calls) == 2:
            raise OperationalError(
                "UPDATE memberships", {}, sqlite3.OperationalError("database is locked")
            )
        real_set_role(*args, **kwargs)

    monkeypatch.setattr(invoiceapp.organizations, "set_role", failing_second_update)
    grace = user(db, "grace@acme.test").id
    response = client_of(app, "ada@acme.test").post(
        "/orgs/acme/transfer", data={"user_id": str(grace)}
    )
    assert calls == ["admin", "owner"]  # the first UPDATE ran: Ada was demoted, then rolled back
    assert response.status_code == 503
    assert role_of(db, "ada@acme.test", "acme") == "owner"
    assert role_of(db, "grace@acme.test", "acme") == "admin"
    assert not audit_rows(db, "org.transfer_ownership")


def test_transfer_with_stale_session_goes_to_reauthenticate_and_back(
    app: Flask, db: Session
) -> None:
    ada = client_of(app, "ada@acme.test")
    age_session(db, "ada@acme.test", minutes=11)
    grace = user(db, "grace@acme.test").id
    response = ada.post("/orgs/acme/transfer", data={"user_id": str(grace)})
    assert response.status_code == 302
    assert response.headers["Location"] == "/reauthenticate?next=/orgs/acme/transfer"
    assert role_of(db, "ada@acme.test", "acme") == "owner"
    # After the password, the browser lands on the GET of that path: a confirmation form.
    back = ada.post(
        "/reauthenticate",
        data={"password": "correct-horse-battery-staple", "next": "/orgs/acme/transfer"},
    )
    assert back.headers["Location"] == "/orgs/acme/transfer"
    page = ada.get("/orgs/acme/transfer")
    assert page.status_code == 200
    assert "Grace Hopper" in text(page)


@pytest.mark.parametrize("who", ["grace@acme.test", "linus@acme.test"])
def test_non_owner_transfer_is_403(app: Flask, db: Session, who: str) -> None:
    client = client_of(app, who)
    me = user(db, who).id
    assert client.get("/orgs/acme/transfer").status_code == 403
    response = client.post("/orgs/acme/transfer", data={"user_id": str(me)})
    assert response.status_code == 403
    assert role_of(db, "ada@acme.test", "acme") == "owner"


@pytest.mark.parametrize("target", ["{hank}", "{ada}", "999999", "abc", "", "99999999999999999999"])
def test_transfer_to_someone_not_another_member_is_422(
    app: Flask, db: Session, target: str
) -> None:
    target = target.replace("{hank}", str(user(db, "hank@globex.test").id))
    target = target.replace("{ada}", str(user(db, "ada@acme.test").id))
    response = client_of(app, "ada@acme.test").post("/orgs/acme/transfer", data={"user_id": target})
    assert response.status_code == 422
    assert "field-error" in text(response)
    assert role_of(db, "ada@acme.test", "acme") == "owner"
    assert role_of(db, "hank@globex.test", "globex") == "owner"


# ---------------------------------------------------------------------------
# Billing
# ---------------------------------------------------------------------------


def test_admin_reads_billing_without_a_change_form(app: Flask) -> None:
    response = client_of(app, "grace@acme.test").get("/orgs/acme/billing")
    assert response.status_code == 200
    body = text(response)
    assert 'data-testid="plan">pro<' in body
    assert 'action="/orgs/acme/billing"' not in body
    assert "never changed" in body


def test_member_reads_billing_gets_403(app: Flask) -> None:
    response = client_of(app, "linus@acme.test").get("/orgs/acme/billing")
    assert response.status_code == 403
    assert "org.billing.read" in text(response)


def test_owner_upgrades_and_the_page_shows_who_changed_it(app: Flask, db: Session) -> None:
    hank = client_of(app, "hank@globex.test")
    response = hank.post("/orgs/globex/billing", data={"plan": "pro"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/orgs/globex/billing"
    assert organization(db, "globex").plan == Plan.PRO
    (row,) = audit_rows(db, "org.billing.update")
    assert row.reason == "plan free -> pro"
    assert row.actor_email == "hank@globex.test"
    last = text(hank.get("/orgs/globex/billing"))
    assert "plan free -&gt; pro, by hank@globex.test" in last


def test_downgrade_within_the_cap_is_allowed(app: Flask, db: Session) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post("/orgs/globex/billing", data={"plan": "pro"})
    assert hank.post("/orgs/globex/billing", data={"plan": "free"}).status_code == 303
    assert organization(db, "globex").plan == Plan.FREE
    reasons = [row.reason for row in audit_rows(db, "org.billing.update")]
    assert reasons == ["plan free -> pro", "plan pro -> free"]


def test_downgrade_with_more_than_three_members_is_409(app: Flask, db: Session) -> None:
    # Acme has four members: Ada, Grace, Linus, Eve.
    response = client_of(app, "ada@acme.test").post("/orgs/acme/billing", data={"plan": "free"})
    assert response.status_code == 409
    assert "The free plan allows 3 members" in text(response)
    assert organization(db, "acme").plan == Plan.PRO
    assert not audit_rows(db, "org.billing.update")


def test_pending_invitations_count_against_a_downgrade(app: Flask, db: Session) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post("/orgs/globex/billing", data={"plan": "pro"})
    hank.post("/orgs/globex/invitations", data={"email": "new@example.com", "role": "member"})
    response = hank.post("/orgs/globex/billing", data={"plan": "free"})
    assert response.status_code == 409
    assert organization(db, "globex").plan == Plan.PRO


@pytest.mark.parametrize("plan", ["enterprise", "", "PRO", "x" * 1000])
def test_invalid_plan_is_422(app: Flask, db: Session, plan: str) -> None:
    response = client_of(app, "hank@globex.test").post("/orgs/globex/billing", data={"plan": plan})
    assert response.status_code == 422
    assert "field-error" in text(response)
    assert organization(db, "globex").plan == Plan.FREE


def test_admin_changes_billing_gets_403(app: Flask, db: Session) -> None:
    response = client_of(app, "grace@acme.test").post("/orgs/acme/billing", data={"plan": "free"})
    assert response.status_code == 403
    assert "org.billing.update" in text(response)
    assert organization(db, "acme").plan == Plan.PRO
    (refusal,) = audit_rows(db, "org.billing.update", "denied")
    assert refusal.actor_email == "grace@acme.test"


def test_billing_change_with_stale_session_asks_for_the_password(app: Flask, db: Session) -> None:
    hank = client_of(app, "hank@globex.test")
    age_session(db, "hank@globex.test", minutes=11)
    response = hank.post("/orgs/globex/billing", data={"plan": "pro"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/reauthenticate?next=/orgs/globex/billing"
    assert organization(db, "globex").plan == Plan.FREE


def test_billing_ignores_fields_sent_along(app: Flask, db: Session) -> None:
    client_of(app, "hank@globex.test").post(
        "/orgs/globex/billing",
        data={"plan": "pro", "name": "Hacked", "organization_id": "1", "slug": "acme"},
    )
    assert organization(db, "globex").name == "Globex Corporation"
    assert organization(db, "acme").plan == Plan.PRO
    assert organization(db, "globex").plan == Plan.PRO


def test_audit_rows_name_no_customer_data(app: Flask, db: Session) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post("/orgs/globex/billing", data={"plan": "pro"})
    hank.post("/orgs/globex/settings", data={"invoice_duplication": "on"})
    for row in db.scalars(select(AuditEvent).where(AuditEvent.decision == "allowed")):
        assert "Globex Corporation" not in row.reason
        assert row.created_at <= utcnow()


# ---------------------------------------------------------------------------
# Through the real forms, CSRF on
# ---------------------------------------------------------------------------


@pytest.fixture()
def csrf_app(database_file: Path, outbox: Path) -> Iterator[Flask]:
    """Overrides conftest's csrf_app: CSRF on, mail to this test's outbox."""
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True, MAIL_OUTBOX_DIR=str(outbox))
    yield app
    app.extensions["db_engine"].dispose()


def sign_in_through_the_form(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    token = csrf_token_from(text(client.get("/sign-in")))
    response = client.post(
        "/sign-in", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303
    return client


def test_forms_on_the_pages_work_with_csrf_and_forged_posts_are_400(
    csrf_app: Flask, db: Session
) -> None:
    ada = sign_in_through_the_form(csrf_app, "ada@acme.test")
    linus = user(db, "linus@acme.test").id
    page = text(ada.get("/orgs/acme/members"))
    token = csrf_token_from(page)

    forged = ada.post(f"/orgs/acme/members/{linus}/role", data={"role": "admin"})
    assert forged.status_code == 400
    assert role_of(db, "linus@acme.test", "acme") == "member"

    response = ada.post(
        f"/orgs/acme/members/{linus}/role", data={"role": "admin", "csrf_token": token}
    )
    assert response.status_code == 303
    assert role_of(db, "linus@acme.test", "acme") == "admin"

    overview = text(ada.get("/orgs/acme"))
    settings = ada.post(
        "/orgs/acme/settings",
        data={"invoice_duplication": "on", "csrf_token": csrf_token_from(overview)},
    )
    assert settings.status_code == 303
    assert organization(db, "acme").invoice_duplication_enabled

    new_page = text(ada.get("/orgs/new"))
    created = ada.post(
        "/orgs/new", data={"name": "Analytical Engines", "csrf_token": csrf_token_from(new_page)}
    )
    assert created.headers["Location"] == "/orgs/analytical-engines"
    assert ada.post("/orgs/analytical-engines/leave").status_code == 400
