"""Access review (issue 17 item 4): /orgs/<slug>/access?invoice=<id> or ?member=<user id>.

The review asks can() once per role (and authorship), never once per member; these tests
check its answers against can() asked for every member one by one, its 403/404/401, the
CSV, and that its statements do not grow with the number of members.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from invoiceapp.authz.access import INVOICE_ACTIONS, conditions, invoice_review, review_session
from invoiceapp.authz.policy import POLICY, can
from invoiceapp.db import get_db, utcnow
from invoiceapp.models import Membership, Organization, User
from invoiceapp.principal import Principal
from support import invoice, signed_in_client, user

ADA, GRACE, LINUS, HANK = "ada@acme.test", "grace@acme.test", "linus@acme.test", "hank@globex.test"


def client_of(app: Flask, email: str) -> FlaskClient:
    client = signed_in_client(app, email)
    client.get("/dashboard")
    return client


def csv_rows(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


def acme(db: Session) -> Organization:
    return db.scalars(select(Organization).where(Organization.slug == "acme")).one()


def test_the_invoice_review_agrees_with_can_asked_for_each_member(app: Flask, db: Session) -> None:
    response = client_of(app, ADA).get("/orgs/acme/access?invoice=inv_7&format=csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = csv_rows(response)
    organization, inv_7 = acme(db), invoice(db, "inv_7")
    members = db.execute(
        select(Membership.role, User).join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == organization.id)
    ).all()  # fmt: skip
    assert len(rows) == len(members) * len(INVOICE_ACTIONS)
    with app.test_request_context():
        for role, person in members:
            one = Principal(user=person, session=review_session(organization),
                            roles={organization.id: role})  # fmt: skip
            for action in INVOICE_ACTIONS:
                decision = can(one, action, inv_7)
                [row] = [r for r in rows if r["email"] == person.email and r["action"] == action]
                want = "yes" if decision.allowed else "no"
                assert row["answer"] == want, (person.email, action)
                assert row["why"] == decision.reason
    grace = {r["action"]: r["answer"] for r in rows if r["email"] == GRACE}
    linus = {r["action"]: r["answer"] for r in rows if r["email"] == LINUS}
    assert grace["invoice.mark_paid"] == "yes" and linus["invoice.mark_paid"] == "no"


def test_the_member_review_lists_every_action_of_the_table(app: Flask, db: Session) -> None:
    linus = user(db, LINUS)
    page = client_of(app, GRACE).get(f"/orgs/acme/access?member={linus.id}")
    assert page.status_code == 200
    assert "Access to member Linus Torvalds" in page.get_data(as_text=True)
    rows = csv_rows(client_of(app, GRACE).get(f"/orgs/acme/access?member={linus.id}&format=csv"))
    answers = {row["action"]: row["answer"] for row in rows}
    assert list(answers) == [action for action in POLICY]
    assert answers["invoice.read"] == "yes"
    assert answers["invoice.delete"] == "no"
    assert answers["invoice.update"] == "depends"  # own drafts only: which invoice?
    assert answers["invoice.export"] == "yes"  # Acme is pro


def test_the_review_page_has_an_empty_state(app: Flask) -> None:
    page = client_of(app, ADA).get("/orgs/acme/access")
    assert page.status_code == 200
    assert 'data-testid="access-empty"' in page.get_data(as_text=True)


@pytest.mark.parametrize("query", ["", "?invoice=inv_7", "?member=1"])
def test_a_plain_member_gets_403(app: Flask, query: str) -> None:
    assert client_of(app, LINUS).get(f"/orgs/acme/access{query}").status_code == 403


def test_another_organization_is_404_like_one_that_never_existed(app: Flask) -> None:
    hank = client_of(app, HANK)
    theirs, missing = hank.get("/orgs/acme/access"), hank.get("/orgs/nowhere/access")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_data() == missing.get_data()


def test_another_organizations_invoice_or_person_is_404_like_a_missing_one(
    app: Flask, db: Session
) -> None:
    ada = client_of(app, ADA)
    other, missing = ada.get("/orgs/acme/access?invoice=inv_42"), ada.get(
        "/orgs/acme/access?invoice=inv_999999")  # fmt: skip
    assert other.status_code == missing.status_code == 404
    assert other.get_data() == missing.get_data()
    hank = user(db, HANK).id
    assert ada.get(f"/orgs/acme/access?member={hank}").status_code == 404
    assert ada.get("/orgs/acme/access?member=abc").status_code == 404


def test_anonymous_is_sent_to_sign_in(app: Flask) -> None:
    response = app.test_client().get("/orgs/acme/access?invoice=inv_7")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=/orgs/acme/access")


def _statements(app: Flask, client: FlaskClient, path: str) -> int:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = app.extensions["db_engine"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return len(seen)


def test_the_review_costs_the_same_statements_at_a_thousand_members(
    app: Flask, db: Session
) -> None:
    ada = client_of(app, ADA)
    path = "/orgs/acme/access?invoice=inv_7&format=csv"
    few = _statements(app, ada, path)
    before = len(csv_rows(ada.get(path)))
    organization_id, now = acme(db).id, utcnow()
    db.execute(insert(User), [
        {"email": f"p{n}@bulk.test", "display_name": f"Person {n}", "password_hash": "x",
         "created_at": now} for n in range(1000)
    ])  # fmt: skip
    ids = db.scalars(select(User.id).where(User.email.like("%@bulk.test"))).all()
    db.execute(insert(Membership), [
        {"user_id": user_id, "organization_id": organization_id, "role": "member",
         "created_at": now} for user_id in ids
    ])  # fmt: skip
    db.commit()
    assert _statements(app, ada, path) == few
    rows = csv_rows(client_of(app, ADA).get(path))
    assert len(rows) == before + 1000 * len(INVOICE_ACTIONS)


# ---------------------------------------------------------------------------
# The organization's security policy: stated once, and applied like any request
# ---------------------------------------------------------------------------


def test_the_review_states_the_security_policy_and_answers_for_a_session_that_meets_it(
    app: Flask, db: Session
) -> None:
    """A session age limit and "no mailed codes or links": Ada (fresh, password) meets
    both, so she sees the page; each member's answers are their role's, and the policy is
    said once above them rather than turning every row into a no."""
    organization = acme(db)
    organization.proof_rule, organization.max_session_hours = "no_mailed", 8
    db.commit()
    ada = client_of(app, ADA)
    response = ada.get("/orgs/acme/access?invoice=inv_7")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-testid="access-conditions"' in page
    assert "no sign-in by emailed code or magic link" in page
    assert "sessions signed in at most 8 h ago" in page
    rows = csv_rows(ada.get("/orgs/acme/access?invoice=inv_7&format=csv"))
    [linus_reads] = [r for r in rows if r["email"] == LINUS and r["action"] == "invoice.read"]
    assert linus_reads["answer"] == "yes"


def test_under_passkeys_only_the_review_answers_for_a_passkey_session(
    app: Flask, db: Session
) -> None:
    organization = acme(db)
    organization.requires_two_factor, organization.proof_rule = True, "passkey"
    db.commit()
    with app.test_request_context():
        rows = invoice_review(get_db(), acme(get_db()), invoice(get_db(), "inv_7"))
        assert review_session(acme(get_db())).proof == "passkey"
        stated = conditions(acme(get_db()))
    reads = {row.email: row.allowed for row in rows if row.action == "invoice.read"}
    assert reads[LINUS] is True and reads[ADA] is True
    assert stated[0] == "sign-in proofs: passkeys only"


def test_a_default_security_policy_adds_no_conditions(app: Flask, db: Session) -> None:
    page = client_of(app, ADA).get("/orgs/acme/access?invoice=inv_7").get_data(as_text=True)
    assert 'data-testid="access-conditions"' not in page
