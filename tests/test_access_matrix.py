"""Who may do what to inv_7 (Acme, sent, created by Ada): every principal, every action.

One row per (principal, action): the status code, what the body says, what the
detail page offers, and what the database looks like afterwards. Below the
matrix, the policy table itself is checked against CONTRACT section 7.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invoiceapp.authz.policy import POLICY, Rule, can
from invoiceapp.db import make_engine
from invoiceapp.models import Invoice, Membership, Organization, PersonalAccessToken
from invoiceapp.principal import Principal
from seed import demo_invoice_id
from support import (
    PASSWORD,
    add_passkey,
    bearer,
    invoice,
    make_token,
    new_authenticator,
    signed_in_client,
    step_up_with_passkey,
    user,
)

PRINCIPALS: dict[str, str | None] = {
    "anonymous": None,
    "member": "linus@acme.test",
    "admin": "grace@acme.test",
    "owner": "ada@acme.test",
    "globex-owner": "hank@globex.test",  # an owner elsewhere is nobody here
    "globex-member": "marge@globex.test",
}

EDITED = {
    "customer": "Wayne Enterprises (revised)",
    "amount": "51234.56",
    "currency": "USD",
    "status": "paid",  # not a form field: ignored, the status changes only by its own actions
    "issue_date": "2024-03-01",
    "due_date": "2024-03-31",
}

# action -> (method, path)
ACTIONS: dict[str, tuple[str, str]] = {
    "read": ("GET", "/invoices/inv_7"),
    "edit-form": ("GET", "/invoices/inv_7/edit"),
    "edit-save": ("POST", "/invoices/inv_7/edit"),
    "delete-confirm": ("GET", "/invoices/inv_7/delete"),
    "delete-do": ("POST", "/invoices/inv_7/delete"),
}

# The policy action each route asks for, and the control the detail page offers for it.
POLICY_ACTION = {
    "read": "invoice.read",
    "edit-form": "invoice.update",
    "edit-save": "invoice.update",
    "delete-confirm": "invoice.delete",
    "delete-do": "invoice.delete",
}
EDIT_LINK = 'href="/invoices/inv_7/edit"'
DELETE_BUTTON = "Delete this invoice"
CONTROL = {
    "edit-form": EDIT_LINK,
    "edit-save": EDIT_LINK,
    "delete-confirm": DELETE_BUTTON,
    "delete-do": DELETE_BUTTON,
}

ANONYMOUS = {
    "read": 302,
    "edit-form": 302,
    "edit-save": 401,
    "delete-confirm": 302,
    "delete-do": 401,
}
OTHER_ORG = dict.fromkeys(ACTIONS, 404)
MEMBER = {"read": 200, "edit-form": 403, "edit-save": 403, "delete-confirm": 403, "delete-do": 403}
MANAGER = {"read": 200, "edit-form": 200, "edit-save": 303, "delete-confirm": 200, "delete-do": 303}

EXPECTED: dict[str, dict[str, int]] = {
    "anonymous": ANONYMOUS,
    "member": MEMBER,
    "admin": MANAGER,
    "owner": MANAGER,
    "globex-owner": OTHER_ORG,
    "globex-member": OTHER_ORG,
}

MATRIX = [
    pytest.param(who, action, status, id=f"{who}-{action}-{status}")
    for who, row in EXPECTED.items()
    for action, status in row.items()
]


def client_for(app: Flask, who: str) -> FlaskClient:
    email = PRINCIPALS[who]
    if email is None:
        return app.test_client()
    client = signed_in_client(app, email)
    client.get("/dashboard")  # uses up the "signed in" flash, so error pages compare equal
    return client


def send(client: FlaskClient, method: str, path: str) -> Any:
    if method == "GET":
        return client.get(path)
    return client.post(path, data=EDITED if path.endswith("/edit") else {})


def snapshot(db: Session, public_id: str) -> tuple[Any, ...]:
    row = invoice(db, public_id)
    return (row.customer, row.amount_minor, row.currency, row.status, row.issue_date,
            row.due_date, row.updated_at, row.deleted_at)  # fmt: skip


@pytest.mark.parametrize(("who", "action", "expected"), MATRIX)
def test_access_matrix(app: Flask, db: Session, who: str, action: str, expected: int) -> None:
    client = client_for(app, who)
    method, path = ACTIONS[action]
    before = snapshot(db, "inv_7")

    response = send(client, method, path)

    assert response.status_code == expected
    body = response.get_data(as_text=True)
    if expected == 302:
        assert response.headers["Location"] == "/sign-in?next=" + quote(path, safe="/")
    elif expected == 401:
        assert response.headers["WWW-Authenticate"].startswith("Session ")
    elif expected == 404:
        # Another organization's invoice looks exactly like one that never existed.
        missing = send(client, method, path.replace("inv_7", "inv_999999"))
        assert missing.status_code == 404
        assert response.get_data() == missing.get_data()
        assert "Wayne Enterprises" not in body
    elif expected == 403:
        assert POLICY_ACTION[action] in body  # names what was refused...
        assert "owner or admin" in body  # ...and what it would have needed...
        assert "Wayne Enterprises" not in body  # ...but never the invoice's data
        detail = client.get("/invoices/inv_7").get_data(as_text=True)
        assert CONTROL[action] not in detail  # the button was hidden, and the server still said no
    elif expected == 200:
        assert "Wayne Enterprises" in body
        if action in CONTROL:
            assert CONTROL[action] in client.get("/invoices/inv_7").get_data(as_text=True)

    after = snapshot(db, "inv_7")
    if expected != 303:
        assert after == before, "a refused or read-only request changed the invoice"
        return

    if action == "edit-save":
        assert response.headers["Location"] == "/invoices/inv_7"
        saved = invoice(db, "inv_7")
        assert (saved.customer, saved.amount_minor, saved.currency, saved.status) == (
            "Wayne Enterprises (revised)", 5_123_456, "USD", "sent")  # fmt: skip
        assert (saved.issue_date, saved.due_date) == (date(2024, 3, 1), date(2024, 3, 31))
        assert saved.deleted_at is None
    else:
        assert response.headers["Location"] == "/invoices?organization=acme"
        deleted = invoice(db, "inv_7")
        assert deleted.deleted_at is not None  # soft: the row stays
        assert deleted.customer == "Wayne Enterprises"
        assert client.get("/invoices/inv_7").status_code == 404


def test_matrix_covers_every_principal_and_action() -> None:
    assert {(who, action) for who, action, _ in (p.values for p in MATRIX)} == {
        (who, action) for who in PRINCIPALS for action in ACTIONS
    }


# --- The policy table (CONTRACT section 7, invoice rows) ---------------------------------

CONTRACT_INVOICE_ROWS = {
    #  action             owner              admin              member
    "invoice.read":   (Rule.YES,      Rule.YES,      Rule.YES),
    "invoice.create": (Rule.YES,      Rule.YES,      Rule.YES),
    "invoice.update": (Rule.YES,      Rule.YES,      Rule.OWN_DRAFTS),
    "invoice.delete": (Rule.YES,      Rule.YES,      Rule.NO),
    "invoice.send":   (Rule.YES,      Rule.YES,      Rule.OWN_DRAFTS),
    "invoice.mark_paid": (Rule.YES,   Rule.YES,      Rule.NO),
    "invoice.void":   (Rule.YES,      Rule.YES,      Rule.NO),
    "invoice.duplicate": (Rule.FLAG_ON, Rule.FLAG_ON, Rule.FLAG_ON),
    "invoice.export": (Rule.PRO_PLAN, Rule.PRO_PLAN, Rule.PRO_PLAN),
    # CONTRACT section 5: sharing with someone outside the organization, owner and admin.
    "invoice.share":  (Rule.YES,      Rule.YES,      Rule.NO),
}  # fmt: skip


def test_policy_table_invoice_rows_match_the_contract() -> None:
    table = {action: rules for action, rules in POLICY.items() if action.startswith("invoice.")}
    expected = {
        action: {"owner": owner, "admin": admin, "member": member}
        for action, (owner, admin, member) in CONTRACT_INVOICE_ROWS.items()
    }
    assert table == expected


@pytest.fixture(scope="module")
def seeded(seeded_database: Path) -> Iterator[Session]:
    """The seeded template database, read-only: can() decides without writing anything."""
    engine = make_engine(f"sqlite:///{seeded_database}")
    with Session(engine) as session:
        yield session
    engine.dispose()


def principal_for(db: Session, email: str) -> Principal:
    person = user(db, email)
    memberships = db.scalars(
        select(Membership).where(Membership.user_id == person.id).order_by(Membership.id)
    )
    roles = {m.organization_id: m.role for m in memberships}
    return Principal(user=person, session=None, roles=roles)


def resource(db: Session, name: str) -> Invoice | Organization:
    """'inv_7', 'acme#8' (a seeded invoice by organization and number) or 'acme' (the org)."""
    if name.startswith("inv_"):
        return invoice(db, name)
    if "#" in name:
        slug, number = name.split("#")
        return invoice(db, demo_invoice_id(db, slug, int(number)))
    found = db.scalar(select(Organization).where(Organization.slug == name))
    assert found is not None
    return found


ADA, GRACE, LINUS, EVE = "ada@acme.test", "grace@acme.test", "linus@acme.test", "eve@acme.test"
HANK, MARGE = "hank@globex.test", "marge@globex.test"
ACME_ROLES = {"owner": ADA, "admin": GRACE, "member": LINUS, "unverified-member": EVE}
# Grace is an admin in Acme but a plain member in Globex: roles are per organization.
GLOBEX_ROLES = {"owner": HANK, "member": MARGE, "grace-as-member": GRACE}

CAN_CASES = [
    # read and create: every role of the invoice's organization, nobody outside it
    *[(email, "invoice.read", "inv_7", True, f"acme-{role}-reads-inv_7")
      for role, email in ACME_ROLES.items()],
    (HANK, "invoice.read", "inv_7", False, "globex-owner-reads-inv_7"),
    (MARGE, "invoice.read", "inv_42", True, "globex-member-reads-inv_42"),
    (LINUS, "invoice.read", "inv_42", False, "acme-member-reads-inv_42"),
    (LINUS, "invoice.create", "acme", True, "acme-member-creates"),
    (HANK, "invoice.create", "acme", False, "globex-owner-creates-in-acme"),
    # update: owner and admin anything; a member only his own drafts
    (ADA, "invoice.update", "inv_7", True, "owner-updates-sent"),
    (GRACE, "invoice.update", "inv_7", True, "admin-updates-sent"),
    (LINUS, "invoice.update", "acme#8", True, "member-updates-own-draft"),
    (LINUS, "invoice.update", "acme#9", False, "member-updates-another-members-draft"),
    (LINUS, "invoice.update", "acme#7", False, "member-updates-admins-draft"),
    (LINUS, "invoice.update", "acme#6", False, "member-updates-own-sent"),
    (LINUS, "invoice.update", "acme#4", False, "member-updates-own-paid"),
    (LINUS, "invoice.update", "inv_7", False, "member-updates-owners-sent"),
    (MARGE, "invoice.update", "globex#7", True, "globex-member-updates-own-draft"),
    (GRACE, "invoice.update", "inv_42", False, "grace-as-globex-member-updates-owners-draft"),
    (GRACE, "invoice.update", "globex#4", False, "grace-as-globex-member-updates-own-sent"),
    # delete: owner and admin only
    (ADA, "invoice.delete", "inv_7", True, "owner-deletes"),
    (GRACE, "invoice.delete", "inv_7", True, "admin-deletes"),
    (LINUS, "invoice.delete", "inv_7", False, "member-deletes"),
    (LINUS, "invoice.delete", "acme#8", False, "member-deletes-own-draft"),
    (GRACE, "invoice.delete", "inv_42", False, "grace-as-globex-member-deletes"),
    (HANK, "invoice.delete", "inv_42", True, "globex-owner-deletes"),
    (HANK, "invoice.delete", "inv_7", False, "globex-owner-deletes-in-acme"),
    # ...and only drafts and sent invoices: a paid one is voided, a void one stays
    (ADA, "invoice.delete", "acme#1", False, "owner-deletes-paid"),
    (GRACE, "invoice.delete", "acme#3", False, "admin-deletes-void"),
    (GRACE, "invoice.delete", "acme#7", True, "admin-deletes-draft"),
    # export: the plan decides among members; acme is pro, globex is free
    *[(email, "invoice.export", "acme", True, f"acme-pro-{role}-exports")
      for role, email in ACME_ROLES.items()],
    *[(email, "invoice.export", "globex", False, f"globex-free-{role}-exports")
      for role, email in GLOBEX_ROLES.items()],
    (HANK, "invoice.export", "acme", False, "pro-plan-without-membership-exports"),
    # managing members, asked of the organization as a whole (its capabilities page): the
    # owner's role says yes; an admin's answer depends on the member
    (ADA, "member.remove", "acme", True, "owner-removes-in-acme"),
    (ADA, "member.change_role", "acme", True, "owner-changes-roles-in-acme"),
    (GRACE, "member.remove", "acme", False, "admin-removes-someone-in-acme"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("email", "action", "target", "allowed"),
    [pytest.param(*case[:4], id=case[4]) for case in CAN_CASES],
)
def test_policy_decides_on_seeded_objects(
    seeded: Session, email: str, action: str, target: str, allowed: bool
) -> None:
    decision = can(principal_for(seeded, email), action, resource(seeded, target))
    assert decision.allowed is allowed, decision.reason
    assert decision.action == action
    if not allowed:
        assert decision.missing  # every refusal can say what was missing


def test_pro_plan_makes_no_member_an_admin(seeded: Session) -> None:
    linus = principal_for(seeded, LINUS)
    acme = resource(seeded, "acme")
    assert isinstance(acme, Organization) and acme.plan == "pro"
    assert can(linus, "invoice.export", acme).allowed
    delete = can(linus, "invoice.delete", invoice(seeded, "inv_7"))
    assert not delete.allowed
    assert delete.role == "member"
    assert delete.missing == "the owner or admin role"


def test_free_plan_export_refusal_names_the_pro_plan(seeded: Session) -> None:
    decision = can(principal_for(seeded, HANK), "invoice.export", resource(seeded, "globex"))
    assert not decision.allowed
    assert decision.role == "owner"  # even the owner: the plan, not the role, is missing
    assert decision.missing == "the pro plan"


def test_nobody_signed_in_is_refused_everything(seeded: Session) -> None:
    inv_7 = invoice(seeded, "inv_7")
    for action in CONTRACT_INVOICE_ROWS:
        assert not can(None, action, inv_7).allowed


def test_unknown_action_is_a_programming_error_not_a_silent_no(seeded: Session) -> None:
    with pytest.raises(KeyError):
        can(principal_for(seeded, ADA), "invoice.destroy", invoice(seeded, "inv_7"))


# --- Beyond the role: a second factor, and tokens on account pages -----------------------


def test_an_owner_with_a_passkey_transfers_ownership_only_after_proof_with_it(
    app: Flask, db: Session
) -> None:
    """org.transfer_ownership is "elevated with the second factor when enrolled": a fresh
    password is not enough once the owner has a passkey; a step-up with it is."""
    device = new_authenticator(app)
    add_passkey(signed_in_client(app, ADA), device)
    ada = signed_in_client(app, ADA)  # a password sign-in: fresh, but no second factor
    grace = str(user(db, GRACE).id)

    asked = ada.post("/orgs/acme/transfer", data={"user_id": grace})

    assert asked.status_code == 302
    assert asked.headers["Location"] == "/reauthenticate?next=/orgs/acme/transfer&factor=second"
    assert roles_in_acme(db) == {ADA: "owner", GRACE: "admin"}

    step_up_with_passkey(ada, device, "/orgs/acme/transfer")
    done = ada.post("/orgs/acme/transfer", data={"user_id": grace})

    assert done.status_code == 303
    assert roles_in_acme(db) == {ADA: "admin", GRACE: "owner"}


def roles_in_acme(db: Session) -> dict[str, str]:
    db.expire_all()
    acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
    assert acme is not None
    return {
        email: db.scalar(
            select(Membership.role).where(
                Membership.organization_id == acme.id, Membership.user_id == user(db, email).id
            )
        )
        for email in (ADA, GRACE)
    }


def test_an_account_action_through_a_token_is_refused_and_changes_nothing(
    app: Flask, db: Session
) -> None:
    """A token never reaches the account pages (authentication: 401, as anonymous), and
    the policy would refuse it there anyway (test_policy_matrix.py: rule "token scope")."""
    raw = make_token(app, ADA, "acme", "write")
    before = db.scalar(select(func.count()).select_from(PersonalAccessToken))
    client = app.test_client()

    made = client.post(
        "/account/tokens",
        headers=bearer(raw),
        data={"name": "planted", "organization": "acme", "scope": "write", "expires_days": "30"},
    )
    password = client.post(
        "/account/password",
        headers=bearer(raw),
        data={"current_password": PASSWORD, "new_password": "x" * 20, "confirm_password": "x" * 20},
    )

    assert (made.status_code, password.status_code) == (401, 401)
    assert made.headers["WWW-Authenticate"].startswith("Session ")
    assert db.scalar(select(func.count()).select_from(PersonalAccessToken)) == before
    assert client.post("/sign-in", data={"email": ADA, "password": PASSWORD}).status_code == 303


def test_a_refused_edit_says_in_a_sentence_which_rule_refused_it(app: Flask, db: Session) -> None:
    """The 403 page reads the decision's reason out: the state rule for a paid invoice
    ("A paid invoice ...", capitalised, whole), and authorship for a member ("A member ...")."""
    paid = demo_invoice_id(db, "acme", 1)
    someone_elses_draft = demo_invoice_id(db, "acme", 9)
    before = (snapshot(db, paid), snapshot(db, someone_elses_draft))

    by_owner = client_for(app, "owner").post(f"/invoices/{paid}/edit", data=EDITED)
    by_member = client_for(app, "member").get(f"/invoices/{someone_elses_draft}/edit")

    assert (by_owner.status_code, by_member.status_code) == (403, 403)
    assert "A paid invoice cannot be edited" in by_owner.get_data(as_text=True)
    assert "A member may only edit invoices they created" in by_member.get_data(as_text=True)
    db.expire_all()
    assert (snapshot(db, paid), snapshot(db, someone_elses_draft)) == before


def test_the_owner_s_organization_page_lists_member_management_as_allowed(app: Flask) -> None:
    """The capabilities table asks can() about the organization, not one member: the
    one-owner invariants (which need a member) must not turn that into an error page."""
    page = client_for(app, "owner").get("/orgs/acme")

    assert page.status_code == 200
    body = page.get_data(as_text=True)
    for action in ("member.remove", "member.change_role"):
        row = body.split(f"<code>{action}</code>")[1].split("</tr>")[0]
        assert "<td>allowed</td>" in row
        assert f"The owner role includes {action}" in row


def test_an_admin_who_tries_to_remove_the_owner_is_told_admins_manage_plain_members(
    app: Flask, db: Session
) -> None:
    ada = user(db, ADA).id

    response = client_for(app, "admin").post(f"/orgs/acme/members/{ada}/remove")

    assert response.status_code == 403
    assert "An admin may only manage plain members" in response.get_data(as_text=True)
    assert roles_in_acme(db) == {ADA: "owner", GRACE: "admin"}
