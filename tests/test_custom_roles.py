"""Custom roles (issue 17 item 1): an organization's own roles, from the policy's actions.

The roles page and its writes get their allowed case, their 403, their other-organization
404 (the same bytes as an organization that never existed) and their anonymous case. Then
what a custom role does in the app: the actions it holds answer like the table's admin
cell, the rest are refused, a change applies on the holders' next request, the plan and
the member cap still gate what they gate, and a held role cannot be deleted (409).
The property-based matrix over random custom roles is in test_policy_matrix.py.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from conftest import make_test_app
from invoiceapp.authz.policy import GRANTABLE_ACTIONS, POLICY, can
from invoiceapp.authz.roles import create_role
from invoiceapp.db import get_db, utcnow
from invoiceapp.models import (
    AuditEvent,
    CustomRole,
    Invitation,
    Invoice,
    Membership,
    Organization,
    UserSession,
)
from invoiceapp.principal import Principal
from support import bearer, latest_mail_to, make_token, signed_in_client, user

ADA, GRACE, LINUS = "ada@acme.test", "grace@acme.test", "linus@acme.test"
HANK, MARGE = "hank@globex.test", "marge@globex.test"
BOOKKEEPER = ["invoice.read", "invoice.mark_paid", "invoice.export", "org.read", "member.read"]


def client_of(app: Flask, email: str) -> FlaskClient:
    client = signed_in_client(app, email)
    client.get("/dashboard")  # the "signed in" flash is shown: 404 pages compare by bytes
    return client


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def make_role(client: FlaskClient, slug: str, name: str, actions: list[str]) -> Any:
    return client.post(f"/orgs/{slug}/roles", data={"name": name, "actions": actions})


def role_of(db: Session, email: str) -> str:
    db.expire_all()
    found = db.scalar(select(Membership.role).where(Membership.user_id == user(db, email).id))
    assert found is not None
    return found


def give_role(client: FlaskClient, slug: str, db: Session, email: str, role: str) -> Any:
    return client.post(f"/orgs/{slug}/members/{user(db, email).id}/role", data={"role": role})


def audit(db: Session, action: str) -> list[AuditEvent]:
    db.expire_all()
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture()
def bookkeeper(app: Flask, db: Session) -> FlaskClient:
    """Linus, a plain member of Acme (pro), given the Bookkeeper role by Ada."""
    ada = client_of(app, ADA)
    assert make_role(ada, "acme", "Bookkeeper", BOOKKEEPER).status_code == 303
    assert give_role(ada, "acme", db, LINUS, "bookkeeper").status_code == 303
    return client_of(app, LINUS)


# ---------------------------------------------------------------------------
# The roles page: 200 for the owner, 403, 404, anonymous
# ---------------------------------------------------------------------------


def test_the_roles_page_has_an_empty_state_for_the_owner(app: Flask) -> None:
    response = client_of(app, ADA).get("/orgs/acme/roles")
    assert response.status_code == 200
    assert 'data-testid="no-roles"' in text(response)
    # Owner-only actions are named, never offered as a checkbox.
    assert 'value="org.billing.update"' not in text(response)
    assert 'value="invoice.mark_paid"' in text(response)


def test_owner_creates_a_role_and_it_is_listed_stored_and_audited(app: Flask, db: Session) -> None:
    response = make_role(client_of(app, ADA), "acme", "Bookkeeper", BOOKKEEPER)
    assert response.status_code == 303
    assert response.headers["Location"] == "/orgs/acme/roles"
    role = db.scalar(select(CustomRole).where(CustomRole.key == "bookkeeper"))
    assert role is not None and role.name == "Bookkeeper"
    assert set(role.action_list) == set(BOOKKEEPER)
    [row] = audit(db, "org.roles.create")
    assert (row.resource_id, row.actor_email) == ("role:bookkeeper", ADA)
    page = text(client_of(app, ADA).get("/orgs/acme/roles"))
    assert "Bookkeeper" in page and "<code>invoice.mark_paid</code>" in page


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "", "actions": ["invoice.read"]}, "Enter the role&#39;s name."),
        ({"name": "Admin", "actions": ["invoice.read"]}, "is a built-in role"),
        ({"name": "Bookkeeper", "actions": []}, "Choose at least one action"),
        ({"name": "Biller", "actions": ["org.billing.update"]}, "Only the actions listed"),
        ({"name": "!!!", "actions": ["invoice.read"]}, "at least one letter or digit"),
        ({"name": "x" * 41, "actions": ["invoice.read"]}, "Use at most 40 characters."),
    ],
    ids=["empty name", "built-in name", "no action", "owner-only action", "no letter", "long"],
)
def test_a_role_that_cannot_be_is_422_with_a_clear_message(
    app: Flask, db: Session, form: dict[str, Any], message: str
) -> None:
    response = client_of(app, ADA).post("/orgs/acme/roles", data=form)
    assert response.status_code == 422
    assert message in text(response)
    assert db.scalars(select(CustomRole)).all() == []


def test_a_second_role_with_the_same_name_is_422(app: Flask, db: Session) -> None:
    ada = client_of(app, ADA)
    make_role(ada, "acme", "Bookkeeper", ["invoice.read"])
    response = make_role(ada, "acme", "BOOKKEEPER", ["invoice.read"])
    assert response.status_code == 422
    assert "already has a role with that name" in text(response)


ROLE_ROUTES = [
    ("GET", "/roles", {}),
    ("POST", "/roles", {"name": "Sneaky", "actions": ["invoice.read"]}),
    ("POST", "/roles/bookkeeper", {"name": "Sneaky", "actions": ["invoice.read"]}),
    ("POST", "/roles/bookkeeper/delete", {}),
]
ROUTE_IDS = ["page", "create", "change", "delete"]


@pytest.mark.parametrize(("method", "path", "form"), ROLE_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("email", [GRACE, LINUS], ids=["admin", "member"])
def test_anyone_but_the_owner_gets_403_on_the_roles_routes(
    app: Flask, db: Session, method: str, path: str, form: dict[str, Any], email: str
) -> None:
    make_role(client_of(app, ADA), "acme", "Bookkeeper", ["invoice.read"])
    response = client_of(app, email).open(f"/orgs/acme{path}", method=method, data=form)
    assert response.status_code == 403
    assert "org.roles" in text(response)
    role = db.scalar(select(CustomRole))
    assert role is not None and role.name == "Bookkeeper"


@pytest.mark.parametrize(("method", "path", "form"), ROLE_ROUTES, ids=ROUTE_IDS)
def test_another_organizations_roles_are_404_like_one_that_never_existed(
    app: Flask, method: str, path: str, form: dict[str, Any]
) -> None:
    make_role(client_of(app, ADA), "acme", "Bookkeeper", ["invoice.read"])
    hank = client_of(app, HANK)
    theirs = hank.open(f"/orgs/acme{path}", method=method, data=form)
    missing = hank.open(f"/orgs/no-such-org{path}", method=method, data=form)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_data() == missing.get_data()


def test_a_role_key_that_does_not_exist_is_404_for_the_owner(app: Flask) -> None:
    ada = client_of(app, ADA)
    assert ada.post("/orgs/acme/roles/nobody/delete").status_code == 404
    assert ada.post(f"/orgs/acme/roles/{'y' * 40}/delete").status_code == 404


@pytest.mark.parametrize(("method", "path", "form"), ROLE_ROUTES, ids=ROUTE_IDS)
def test_anonymous_gets_sign_in_for_the_page_and_401_for_writes(
    app: Flask, method: str, path: str, form: dict[str, Any]
) -> None:
    response = app.test_client().open(f"/orgs/acme{path}", method=method, data=form)
    if method == "GET":
        assert response.status_code == 302
        assert response.headers["Location"] == "/sign-in?next=/orgs/acme/roles"
    else:
        assert response.status_code == 401


def test_changing_roles_with_a_stale_session_asks_for_the_password(app: Flask, db: Session) -> None:
    ada = client_of(app, ADA)
    make_role(ada, "acme", "Bookkeeper", ["invoice.read"])
    for row in db.scalars(select(UserSession).where(UserSession.user_id == user(db, ADA).id)):
        row.authenticated_at = utcnow() - timedelta(minutes=11)
    db.commit()
    for path in ("/orgs/acme/roles", "/orgs/acme/roles/bookkeeper/delete"):
        response = ada.post(path, data={"name": "Later", "actions": ["invoice.read"]})
        assert response.status_code == 302
        assert response.headers["Location"] == "/reauthenticate?next=/orgs/acme/roles"
    assert ada.get("/orgs/acme/roles").status_code == 200  # reading needs no fresh password
    assert [role.name for role in db.scalars(select(CustomRole))] == ["Bookkeeper"]


# ---------------------------------------------------------------------------
# What a custom role does
# ---------------------------------------------------------------------------


def test_a_bookkeeper_marks_paid_and_exports_but_may_not_delete_or_invite(
    app: Flask, db: Session, bookkeeper: FlaskClient
) -> None:
    assert role_of(db, LINUS) == "bookkeeper"
    assert bookkeeper.post("/invoices/inv_7/mark-paid").status_code == 303
    assert bookkeeper.get("/invoices/export.csv").status_code == 200  # Acme is pro
    refused = bookkeeper.post("/invoices/inv_7/delete")
    assert refused.status_code == 403
    assert "The Bookkeeper role does not include invoice.delete" in text(refused)
    invite = bookkeeper.post("/orgs/acme/invitations", data={"email": "x@example.com"})
    assert invite.status_code == 403


def test_the_members_page_shows_the_role_with_its_actions_and_offers_it(
    app: Flask, bookkeeper: FlaskClient
) -> None:
    page = text(client_of(app, ADA).get("/orgs/acme/members"))
    assert '<span class="role role-custom">Bookkeeper</span>' in page
    assert "<code>invoice.mark_paid</code>" in page
    assert '<option value="bookkeeper"' in page  # the picker and the invitation form


def test_a_changed_role_applies_on_its_members_next_request(
    app: Flask, db: Session, bookkeeper: FlaskClient
) -> None:
    assert bookkeeper.get("/invoices/export.csv").status_code == 200
    ada = client_of(app, ADA)
    response = ada.post(
        "/orgs/acme/roles/bookkeeper", data={"name": "Reader", "actions": ["invoice.read"]}
    )
    assert response.status_code == 303
    refused = bookkeeper.get("/invoices/export.csv")
    assert refused.status_code == 403
    assert "The Reader role does not include invoice.export" in text(refused)
    [row] = audit(db, "org.roles.update")
    assert row.reason.startswith("changed role bookkeeper: -invoice.export")


def test_deleting_a_role_that_is_held_is_409_naming_the_holders(
    app: Flask, db: Session, bookkeeper: FlaskClient
) -> None:
    ada = client_of(app, ADA)
    ada.post("/orgs/acme/invitations", data={"email": "new@example.com", "role": "bookkeeper"})
    response = ada.post("/orgs/acme/roles/bookkeeper/delete")
    assert response.status_code == 409
    assert "Linus Torvalds" in text(response) and "new@example.com" in text(response)
    assert db.scalar(select(CustomRole)) is not None
    assert audit(db, "org.roles.delete") == []

    give_role(ada, "acme", db, LINUS, "member")
    invitation = db.scalar(select(Invitation).where(Invitation.email == "new@example.com"))
    assert invitation is not None
    ada.post(f"/orgs/acme/invitations/{invitation.public_id}/revoke")
    assert ada.post("/orgs/acme/roles/bookkeeper/delete").status_code == 303
    db.expire_all()
    assert db.scalar(select(CustomRole)) is None
    [row] = audit(db, "org.roles.delete")
    assert row.resource_id == "role:bookkeeper"


def test_a_custom_role_with_export_on_the_free_plan_is_refused_naming_the_plan(
    app: Flask, db: Session
) -> None:
    hank = client_of(app, HANK)  # Globex is on the free plan
    make_role(hank, "globex", "Exporter", ["invoice.read", "invoice.export", "org.read"])
    give_role(hank, "globex", db, MARGE, "exporter")
    response = client_of(app, MARGE).get("/invoices/export.csv")
    assert response.status_code == 403
    assert "pro plan" in text(response)


def test_the_member_cap_still_applies_to_an_invitation_with_a_custom_role(
    app: Flask, db: Session
) -> None:
    hank = client_of(app, HANK)  # Globex: three members, the free plan's cap
    make_role(hank, "globex", "Reader", ["invoice.read"])
    response = hank.post(
        "/orgs/globex/invitations", data={"email": "one@example.com", "role": "reader"}
    )
    assert response.status_code == 409
    assert "The free plan allows 3 members" in text(response)
    assert db.scalars(select(Invitation)).all() == []


def test_a_custom_role_may_not_hand_out_a_role_holding_more_than_it_does(
    app: Flask, db: Session
) -> None:
    ada = client_of(app, ADA)
    make_role(ada, "acme", "Recruiter", ["member.invite", "member.read", "org.read"])
    give_role(ada, "acme", db, LINUS, "recruiter")
    linus = client_of(app, LINUS)
    admin = linus.post("/orgs/acme/invitations", data={"email": "a@example.com", "role": "admin"})
    assert admin.status_code == 403
    assert "may only hand out or manage roles whose actions it holds" in text(admin)
    own = linus.post("/orgs/acme/invitations", data={"email": "r@example.com", "role": "recruiter"})
    assert own.status_code == 303


def test_an_admin_gives_and_takes_back_a_custom_role(app: Flask, db: Session) -> None:
    make_role(client_of(app, ADA), "acme", "Bookkeeper", BOOKKEEPER)
    grace = client_of(app, GRACE)
    assert give_role(grace, "acme", db, LINUS, "bookkeeper").status_code == 303
    assert role_of(db, LINUS) == "bookkeeper"
    assert give_role(grace, "acme", db, LINUS, "member").status_code == 303
    assert role_of(db, LINUS) == "member"


def test_a_role_that_is_not_offered_is_422(app: Flask, db: Session) -> None:
    response = give_role(client_of(app, ADA), "acme", db, LINUS, "nosuchrole")
    assert response.status_code == 422
    assert role_of(db, LINUS) == "member"


# ---------------------------------------------------------------------------
# API and both engines
# ---------------------------------------------------------------------------


def test_the_api_lists_roles_with_their_actions_and_names_roles_in_members(
    app: Flask, db: Session, bookkeeper: FlaskClient
) -> None:
    roles = bookkeeper.get("/api/v1/orgs/acme/roles")
    assert roles.status_code == 200
    by_key = {role["key"]: role for role in roles.get_json()["items"]}
    assert set(by_key) == {"owner", "admin", "member", "bookkeeper"}
    assert by_key["bookkeeper"]["name"] == "Bookkeeper"
    assert by_key["bookkeeper"]["built_in"] is False
    assert set(by_key["bookkeeper"]["actions"]) == set(BOOKKEEPER)
    members = bookkeeper.get("/api/v1/orgs/acme/members").get_json()["items"]
    linus = next(member for member in members if member["email"] == LINUS)
    assert (linus["role"], linus["role_name"]) == ("bookkeeper", "Bookkeeper")
    me = bookkeeper.get("/api/v1/me").get_json()
    assert me["organizations"][0]["role_name"] == "Bookkeeper"


def test_the_roles_api_is_401_anonymous_404_elsewhere_and_403_without_member_read(
    app: Flask, db: Session
) -> None:
    assert app.test_client().get("/api/v1/orgs/acme/roles").status_code == 401
    hank = client_of(app, HANK)
    theirs, missing = hank.get("/api/v1/orgs/acme/roles"), hank.get("/api/v1/orgs/nope/roles")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_data() == missing.get_data()
    ada = client_of(app, ADA)
    make_role(ada, "acme", "Invoicer", ["invoice.read", "invoice.create"])
    give_role(ada, "acme", db, LINUS, "invoicer")
    refused = client_of(app, LINUS).get("/api/v1/orgs/acme/roles")
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"


def test_a_read_token_narrows_a_custom_role_too(app: Flask, db: Session) -> None:
    ada = client_of(app, ADA)
    make_role(ada, "acme", "Bookkeeper", BOOKKEEPER)
    give_role(ada, "acme", db, LINUS, "bookkeeper")
    raw = make_token(app, LINUS, "acme", scope="read")
    api = app.test_client()
    assert api.get("/api/v1/invoices/inv_7", headers=bearer(raw)).status_code == 200
    refused = api.delete("/api/v1/invoices/inv_7", headers=bearer(raw))
    assert refused.status_code == 403


def test_a_custom_role_is_read_with_the_request_on_each_engine(app_on_each_engine: Flask) -> None:
    """The principal's custom roles come from SQL (one statement): on SQLite and PostgreSQL."""
    app = app_on_each_engine
    ada = client_of(app, ADA)
    assert make_role(ada, "acme", "Bookkeeper", BOOKKEEPER).status_code == 303
    with app.app_context():
        linus_id = user(get_db(), LINUS).id
    given = ada.post(f"/orgs/acme/members/{linus_id}/role", data={"role": "bookkeeper"})
    assert given.status_code == 303
    linus = client_of(app, LINUS)
    assert linus.post("/invoices/inv_7/mark-paid").status_code == 303
    assert linus.post("/invoices/inv_7/void").status_code == 403
    assert ada.post("/orgs/acme/roles/bookkeeper/delete").status_code == 409


# ---------------------------------------------------------------------------
# The printouts: the overview's capabilities, the demo trace, flask policy
# ---------------------------------------------------------------------------


def test_the_overview_names_the_custom_role_and_answers_each_action_with_its_rule(
    app: Flask, bookkeeper: FlaskClient
) -> None:
    page = text(bookkeeper.get("/orgs/acme"))
    assert 'data-testid="role-here">Bookkeeper</span>' in page
    assert "The Bookkeeper role includes invoice.mark_paid" in page
    assert "The Bookkeeper role does not include invoice.delete" in page
    assert "The pro plan includes invoice.export for a Bookkeeper" in page


def test_flask_policy_prints_the_custom_role_column(app: Flask) -> None:
    output = app.test_cli_runner().invoke(args=["policy"]).output
    assert "custom role holding it" in output
    transfer = next(line for line in output.splitlines() if line.startswith("org.transfer"))
    assert transfer.rstrip().endswith("never (the owner's)")
    remove = next(line for line in output.splitlines() if line.startswith("member.remove"))
    assert remove.rstrip().endswith("members only")


def test_the_header_and_the_demo_trace_name_the_custom_role(
    app: Flask, db: Session, database_file: Path
) -> None:
    ada = client_of(app, ADA)
    make_role(ada, "acme", "Bookkeeper", BOOKKEEPER)
    give_role(ada, "acme", db, LINUS, "bookkeeper")
    demo = make_test_app(database_file, DEMO_MODE=True)
    page = text(client_of(demo, LINUS).get("/orgs/acme/members"))
    demo.extensions["db_engine"].dispose()
    assert 'title="Your role in Acme Inc">Bookkeeper</span>' in page
    assert "role <strong>Bookkeeper (custom role: invoice.read" in page


def test_an_invitation_with_a_custom_role_names_it_in_the_mail_and_joins_with_it(
    app: Flask, db: Session, database_file: Path
) -> None:
    ada = client_of(app, ADA)
    make_role(ada, "acme", "Bookkeeper", BOOKKEEPER)
    response = ada.post(
        "/orgs/acme/invitations", data={"email": "marge@globex.test", "role": "bookkeeper"}
    )
    assert response.status_code == 303
    mail = latest_mail_to(database_file.parent / "outbox", MARGE)
    assert mail is not None and "as a Bookkeeper" in mail.text
    (link,) = [link.removeprefix("http://127.0.0.1:5000") for link in mail.links
               if "/invitations/" in link]  # fmt: skip
    marge = client_of(app, MARGE)
    assert "You will join as <strong>Bookkeeper</strong>" in text(marge.get(link))
    assert marge.post(link).status_code == 303
    db.expire_all()
    acme_roles = db.scalars(
        select(Membership.role).where(Membership.user_id == user(db, MARGE).id)
    ).all()
    assert "bookkeeper" in acme_roles


# ---------------------------------------------------------------------------
# SQL: random roles stored and read back on both engines; one statement per request
# ---------------------------------------------------------------------------


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=st.frozensets(st.sampled_from(GRANTABLE_ACTIONS), min_size=1))
def test_a_random_role_stored_in_sql_answers_like_the_admin_cell_on_each_engine(
    app_on_each_engine: Flask, actions: frozenset[str]
) -> None:
    """What the database gives back for a role is what can() decides on: each action the
    role holds answers as an admin's does (same rule, same elevation), the rest are no."""
    app = app_on_each_engine
    with app.test_request_context():
        db = get_db()
        acme = db.scalars(select(Organization).where(Organization.slug == "acme")).one()
        role = create_role(db, acme, f"Role {uuid.uuid4().hex[:8]}", sorted(actions))
        db.commit()
        linus = user(db, LINUS)
        custom = Principal(user=linus, session=None, roles={acme.id: role.key})
        admin = Principal(user=linus, session=None, roles={acme.id: "admin"})
        draft = Invoice(organization_id=acme.id, organization=acme, status="draft",
                        created_by_id=linus.id + 1000, number=1, customer="X")  # fmt: skip
        for action in POLICY:
            resource = draft if action.startswith("invoice.") else acme
            got, admins = can(custom, action, resource), can(admin, action, resource)
            if action in actions:
                assert (got.allowed, got.rule, got.requires_elevation) == (
                    admins.allowed, admins.rule, admins.requires_elevation), action  # fmt: skip
            else:
                assert not got.allowed, action
        db.delete(role)
        db.commit()


def test_a_request_reads_custom_roles_once_however_often_it_asks_can(
    app: Flask, bookkeeper: FlaskClient
) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = app.extensions["db_engine"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = bookkeeper.get("/invoices")  # a can() per invoice and per button
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200
    assert sum("FROM custom_roles" in statement for statement in statements) == 1


# ---------------------------------------------------------------------------
# A role deleted between the check and the write
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("handing_out", ["role change", "invitation"])
def test_a_role_deleted_while_being_handed_out_is_409_and_nobody_holds_it(
    app: Flask, db: Session, monkeypatch: pytest.MonkeyPatch, handing_out: str
) -> None:
    """The delete commits after the view checked the form, just before it takes the
    organization's lock; inside the lock the view finds the role gone and changes nothing."""
    import invoiceapp.views.orgs.invitations as invitation_views
    import invoiceapp.views.orgs.members as member_views

    ada = client_of(app, ADA)
    make_role(ada, "acme", "Bookkeeper", BOOKKEEPER)
    module = member_views if handing_out == "role change" else invitation_views
    real = module.lock_and_recheck

    def delete_then_lock(*args: Any, **kwargs: Any) -> Any:
        db.execute(delete(CustomRole))
        db.commit()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "lock_and_recheck", delete_then_lock)
    if handing_out == "role change":
        response = give_role(ada, "acme", db, LINUS, "bookkeeper")
    else:
        response = ada.post(
            "/orgs/acme/invitations", data={"email": "new@example.com", "role": "bookkeeper"}
        )
    assert response.status_code == 409
    assert "while you were deciding" in text(response)
    assert role_of(db, LINUS) == "member"
    assert db.scalars(select(Invitation)).all() == []
