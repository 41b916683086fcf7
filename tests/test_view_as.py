"""View as member: an owner or admin sees the organization's pages as a member (or a role)
would, without signing in as them. Only the principal fed to can() changes; the viewer's
session and identity stay; every write is a 403 naming the mode; other organizations stay
404; starting and ending are audited; the API acts as the real user."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp.authz.roles import create_role
from invoiceapp.demo_data import demo_invoice_id
from invoiceapp.models import AuditEvent, Invoice, Membership, Organization, UserSession
from support import NEW_INVOICE, invoice, signed_in_client, user


def view_as(client: FlaskClient, slug: str = "acme", **choice: object) -> object:
    return client.post(f"/orgs/{slug}/view-as", data=choice)


def session_of(db: Session, email: str) -> UserSession:
    db.expire_all()
    row = db.scalar(
        select(UserSession)
        .where(UserSession.user_id == user(db, email).id)
        .order_by(UserSession.id.desc())
    )
    assert row is not None
    return row


def audit_rows(db: Session, action: str) -> list[AuditEvent]:
    db.expire_all()
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture()
def app(app_on_each_engine: Flask) -> Flask:
    """These tests run on SQLite and again on PostgreSQL (conftest.py)."""
    return app_on_each_engine


@pytest.fixture()
def ada(app: Flask) -> FlaskClient:
    client = signed_in_client(app, "ada@acme.test")
    client.get("/dashboard")  # uses up the sign-in's flash message
    return client


def test_an_owner_views_as_a_member_and_the_pages_follow_the_members_role(
    app: Flask, ada: FlaskClient, db: Session
) -> None:
    linus = user(db, "linus@acme.test")
    started = view_as(ada, member=linus.id)
    assert (started.status_code, started.headers["Location"]) == (303, "/dashboard")

    row = session_of(db, "ada@acme.test")
    acme = db.scalar(select(Organization.id).where(Organization.slug == "acme"))
    assert (row.view_as_organization_id, row.view_as_user_id, row.view_as_role) == (
        acme, linus.id, None)  # fmt: skip
    assert row.user_id == user(db, "ada@acme.test").id  # still Ada's own session

    page = ada.get("/invoices/inv_7").get_data(as_text=True)
    assert 'data-testid="view-as-banner"' in page
    assert "Ada Lovelace" in page and "Linus Torvalds (member)" in page
    assert 'data-testid="user-name">Ada Lovelace<' in page  # the header: still Ada
    assert "/invoices/inv_7/delete" not in page  # Linus has no delete button

    refused = ada.get("/orgs/acme/billing")  # a read Linus may not do
    assert refused.status_code == 403
    assert "<dt>Viewing as</dt>" in refused.get_data(as_text=True)

    [started_record] = audit_rows(db, "org.view_as")
    assert (started_record.actor_email, started_record.decision) == ("ada@acme.test", "allowed")
    assert started_record.resource_id == f"membership:{linus.id}"
    assert "Linus Torvalds (member)" in started_record.reason


def test_a_member_view_counts_the_viewed_members_own_drafts(ada: FlaskClient, db: Session) -> None:
    linus_draft = demo_invoice_id(db, "acme", 8)
    grace_draft = demo_invoice_id(db, "acme", 7)
    view_as(ada, member=user(db, "linus@acme.test").id)
    assert ada.get(f"/invoices/{linus_draft}/edit").status_code == 200
    assert ada.get(f"/invoices/{grace_draft}/edit").status_code == 403


def test_every_write_while_viewing_is_a_403_naming_the_view_as_mode(
    ada: FlaskClient, db: Session
) -> None:
    view_as(ada, member=user(db, "linus@acme.test").id)
    before = db.scalar(select(func.count()).select_from(Invoice))

    created = ada.post("/invoices/new", data=NEW_INVOICE)  # Linus may create; not now
    deleted = ada.post("/invoices/inv_7/delete")  # Ada may delete; not now either
    switched = ada.post("/orgs/switch", data={"organization": "acme"})
    for response in (created, deleted, switched):
        assert response.status_code == 403
        page = response.get_data(as_text=True)
        assert "<dt>Rule that decided</dt><dd>view-as mode</dd>" in page
        assert "End view-as mode with the End button" in page

    assert db.scalar(select(func.count()).select_from(Invoice)) == before
    assert invoice(db, "inv_7").deleted_at is None
    refusals = [r for r in audit_rows(db, "POST /invoices/<invoice_id>/delete")]
    assert [(r.decision, r.status) for r in refusals] == [("denied", 403)]


def test_ending_view_as_restores_the_viewer_and_is_audited(ada: FlaskClient, db: Session) -> None:
    view_as(ada, member=user(db, "linus@acme.test").id)
    ended = ada.post("/orgs/acme/view-as/end")
    assert (ended.status_code, ended.headers["Location"]) == (303, "/orgs/acme/members")

    row = session_of(db, "ada@acme.test")
    assert (row.view_as_organization_id, row.view_as_user_id, row.view_as_role) == (
        None, None, None)  # fmt: skip
    assert ada.get("/orgs/acme/billing").status_code == 200
    assert 'data-testid="view-as-banner"' not in ada.get("/dashboard").get_data(as_text=True)
    [record] = audit_rows(db, "org.view_as.end")
    assert record.actor_email == "ada@acme.test"
    assert "Linus Torvalds (member)" in record.reason


def test_signing_out_is_allowed_while_viewing(ada: FlaskClient, db: Session) -> None:
    view_as(ada, member=user(db, "linus@acme.test").id)
    assert ada.post("/sign-out").status_code == 303
    assert ada.get("/dashboard").status_code == 302  # signed out


def test_an_owner_views_as_a_role(ada: FlaskClient, db: Session) -> None:
    assert view_as(ada, role="member").status_code == 303
    row = session_of(db, "ada@acme.test")
    assert (row.view_as_user_id, row.view_as_role) == (None, "member")
    page = ada.get("/dashboard").get_data(as_text=True)
    assert "the member role" in page
    assert ada.get("/orgs/acme/audit").status_code == 403
    # A role is nobody in particular: no draft is "its own".
    assert ada.get(f"/invoices/{demo_invoice_id(db, 'acme', 8)}/edit").status_code == 403


@pytest.mark.parametrize(
    ("choice", "email"),
    [({"member": "ada@acme.test"}, "grace@acme.test"), ({"role": "owner"}, "grace@acme.test")],
)
def test_an_admin_may_not_view_as_anyone_above_their_own_role(
    app: Flask, db: Session, choice: dict[str, str], email: str
) -> None:
    grace = signed_in_client(app, email)
    data = {key: user(db, value).id if key == "member" else value for key, value in choice.items()}
    refused = view_as(grace, **data)
    assert refused.status_code == 403
    page = refused.get_data(as_text=True)
    assert "no more than your own role" in page
    assert session_of(db, email).view_as_organization_id is None
    assert audit_rows(db, "org.view_as")[0].decision == "denied"


def test_an_admin_may_view_as_a_member_or_the_admin_role(app: Flask, db: Session) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    assert view_as(grace, member=user(db, "linus@acme.test").id).status_code == 303
    assert grace.post("/orgs/acme/view-as/end").status_code == 303
    assert view_as(grace, role="admin").status_code == 303


def test_a_member_may_not_view_as_anyone(app: Flask, db: Session) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    refused = view_as(linus, member=user(db, "eve@acme.test").id)
    assert refused.status_code == 403
    assert session_of(db, "linus@acme.test").view_as_organization_id is None


def test_another_orgs_people_and_pages_stay_404(app: Flask, ada: FlaskClient, db: Session) -> None:
    hank = user(db, "hank@globex.test").id
    # Globex is not Ada's: the same 404 as an organization that does not exist.
    elsewhere = view_as(ada, "globex", member=hank)
    missing = view_as(ada, "no-such-org", member=hank)
    assert elsewhere.status_code == missing.status_code == 404
    assert elsewhere.get_data() == missing.get_data()
    # Hank is not in Acme: the same 404 as a user id that does not exist.
    stranger = view_as(ada, member=hank)
    nobody = view_as(ada, member=2_000_000)
    assert stranger.status_code == nobody.status_code == 404
    assert stranger.get_data() == nobody.get_data()

    view_as(ada, member=user(db, "linus@acme.test").id)
    ada.get("/dashboard")  # shows (and uses up) the "view-as started" flash message
    hidden = ada.get("/invoices/inv_42")
    gone = ada.get("/invoices/inv_999999")
    assert hidden.status_code == gone.status_code == 404
    assert hidden.get_data() == gone.get_data()


@pytest.mark.parametrize(
    "choice",
    [{}, {"member": "1", "role": "member"}, {"role": "wizard"}, {"member": "me"}],
    ids=["nothing", "both", "unknown-role", "yourself"],
)
def test_a_choice_that_is_not_one_member_or_one_role_is_422(
    ada: FlaskClient, db: Session, choice: dict[str, str]
) -> None:
    if choice.get("member") == "me":
        choice = {"member": str(user(db, "ada@acme.test").id)}
    response = view_as(ada, **choice)
    assert response.status_code == 422
    assert session_of(db, "ada@acme.test").view_as_organization_id is None


def test_the_api_acts_as_the_real_user_while_viewing(ada: FlaskClient, db: Session) -> None:
    view_as(ada, member=user(db, "linus@acme.test").id)
    body = ada.get("/api/v1/authz/explain?action=invoice.delete&invoice=inv_7").get_json()
    assert (body["allowed"], body["inputs"]["role"], body["inputs"]["viewing_as"]) == (
        True, "owner", None)  # fmt: skip
    assert ada.get("/api/v1/orgs/acme/audit").status_code == 200  # Linus could not


def test_a_demoted_viewer_loses_the_view_on_their_next_request(app: Flask, db: Session) -> None:
    grace = signed_in_client(app, "grace@acme.test")
    view_as(grace, member=user(db, "linus@acme.test").id)
    db.execute(
        update(Membership)
        .where(Membership.user_id == user(db, "grace@acme.test").id,
               Membership.organization_id == select(Organization.id)
               .where(Organization.slug == "acme").scalar_subquery())
        .values(role="member")
    )  # fmt: skip
    db.commit()
    page = grace.get("/dashboard").get_data(as_text=True)
    assert 'data-testid="view-as-banner"' not in page
    assert session_of(db, "grace@acme.test").view_as_organization_id is None
    [record] = audit_rows(db, "org.view_as.end")
    assert "may no longer" in record.reason


@pytest.fixture()
def demo(database_file: Path) -> Iterator[Flask]:
    app = make_test_app(database_file, DEMO_MODE=True)
    yield app
    app.extensions["db_engine"].dispose()


def test_the_trace_shows_both_principals_and_predicts_the_refused_write(
    demo: Flask, database_file: Path
) -> None:
    ada = signed_in_client(demo, "ada@acme.test")
    with demo.app_context():
        from invoiceapp.db import get_db

        linus_id = user(get_db(), "linus@acme.test").id
    view_as(ada, member=linus_id)
    page = ada.get("/invoices/inv_7").get_data(as_text=True)
    assert "<dt>Principal</dt><dd><bdi>Ada Lovelace</bdi></dd>" in page
    assert "<dt>Viewing as</dt><dd><bdi>Linus Torvalds (member)</bdi>" in page
    assert 'data-action="invoice.create" data-status="403"' in page or (
        'data-action="invoice.delete" data-status="403"' in page
    )


def test_the_view_ends_when_the_viewed_member_leaves(ada: FlaskClient, db: Session) -> None:
    linus = user(db, "linus@acme.test")
    view_as(ada, member=linus.id)
    db.execute(delete(Membership).where(Membership.user_id == linus.id))
    db.commit()
    page = ada.get("/dashboard").get_data(as_text=True)
    assert 'data-testid="view-as-banner"' not in page
    assert session_of(db, "ada@acme.test").view_as_organization_id is None
    [record] = audit_rows(db, "org.view_as.end")
    assert "no longer in the organization" in record.reason
    assert ada.get("/orgs/acme/billing").status_code == 200  # Ada as herself again


def test_the_members_page_offers_view_as_only_where_the_policy_allows(
    app: Flask, db: Session
) -> None:
    def offered(email: str) -> tuple[set[str], set[str]]:
        page = signed_in_client(app, email).get("/orgs/acme/members").get_data(as_text=True)
        members = set(re.findall(r'name="member" value="(\d+)"', page))
        roles = set(re.findall(r'name="role" value="(\w+)">\s*<button[^>]*>View as', page))
        return members, roles

    ids = {email: str(user(db, email).id) for email in
           ("ada@acme.test", "grace@acme.test", "linus@acme.test")}  # fmt: skip
    grace_members, grace_roles = offered("grace@acme.test")
    assert ids["linus@acme.test"] in grace_members
    assert ids["ada@acme.test"] not in grace_members and ids["grace@acme.test"] not in grace_members
    assert grace_roles == {"member"}  # not the owner's, and not her own
    assert offered("linus@acme.test") == (set(), set())


# ---------------------------------------------------------------------------
# Custom roles: view as a member holding one, or as one; "not above your own" compares
# the actions each role holds
# ---------------------------------------------------------------------------

BOOKKEEPER = ["invoice.read", "invoice.mark_paid", "invoice.export", "org.read", "member.read"]


def custom_role(db: Session, name: str, actions: list[str], *holders: str) -> str:
    """Add a role to Acme (as the roles page would) and give it to ``holders``."""
    acme = db.scalars(select(Organization).where(Organization.slug == "acme")).one()
    role = create_role(db, acme, name, actions)
    for email in holders:
        db.execute(update(Membership).where(Membership.organization_id == acme.id,
                   Membership.user_id == user(db, email).id).values(role=role.key))  # fmt: skip
    db.commit()
    return role.key


def test_an_owner_views_as_a_member_holding_a_custom_role(ada: FlaskClient, db: Session) -> None:
    custom_role(db, "Bookkeeper", BOOKKEEPER, "linus@acme.test")
    linus = user(db, "linus@acme.test")
    assert view_as(ada, member=linus.id).status_code == 303
    page = ada.get("/invoices/inv_7").get_data(as_text=True)
    assert "Linus Torvalds (Bookkeeper)" in page  # the banner names the role, not its key
    assert "/invoices/inv_7/mark-paid" in page  # the Bookkeeper's button
    assert "/invoices/inv_7/delete" not in page  # not one of its actions
    assert ada.get("/orgs/acme/billing").status_code == 403
    [record] = audit_rows(db, "org.view_as")
    assert record.reason.startswith("started viewing as Linus Torvalds (Bookkeeper)")


def test_an_owner_views_as_a_custom_role_and_the_members_page_offers_it(
    ada: FlaskClient, db: Session
) -> None:
    key = custom_role(db, "Bookkeeper", BOOKKEEPER)
    members_page = ada.get("/orgs/acme/members").get_data(as_text=True)
    assert f'name="role" value="{key}">' in members_page
    assert "View as the Bookkeeper role" in members_page
    assert view_as(ada, role=key).status_code == 303
    assert session_of(db, "ada@acme.test").view_as_role == key
    page = ada.get("/dashboard").get_data(as_text=True)
    assert "the Bookkeeper role" in page
    assert ada.get("/orgs/acme/audit").status_code == 403  # not one of its actions


def test_a_role_key_of_another_organization_or_none_is_422(ada: FlaskClient, db: Session) -> None:
    globex = db.scalars(select(Organization).where(Organization.slug == "globex")).one()
    create_role(db, globex, "Auditor", ["org.read", "audit.read"])
    db.commit()
    assert view_as(ada, role="auditor").status_code == 422
    assert view_as(ada, role="nobody-has-it").status_code == 422
    assert session_of(db, "ada@acme.test").view_as_organization_id is None


def test_a_custom_role_views_only_as_roles_whose_actions_it_holds_too(
    app: Flask, db: Session
) -> None:
    """An "Auditor" that holds org.view_as may look as a narrower role, but not as the
    Bookkeeper (who marks invoices paid) nor as a plain member (who creates invoices)."""
    narrow = custom_role(db, "Reader", ["org.read", "member.read"])
    bookkeeper = custom_role(db, "Bookkeeper", BOOKKEEPER)
    custom_role(db, "Auditor", ["org.read", "member.read", "audit.read", "org.view_as"],
                "grace@acme.test")  # fmt: skip
    grace = signed_in_client(app, "grace@acme.test")
    for above in (bookkeeper, "member"):
        refused = view_as(grace, role=above)
        assert refused.status_code == 403
        assert "no more than your own role" in refused.get_data(as_text=True)
    assert view_as(grace, member=user(db, "linus@acme.test").id).status_code == 403
    assert session_of(db, "grace@acme.test").view_as_organization_id is None
    assert view_as(grace, role=narrow).status_code == 303
    assert session_of(db, "grace@acme.test").view_as_role == narrow
