"""Membership writes decide on what is true at the moment they write (issue 15, items 5, 6, 18).

A view reads roles and the plan, asks the policy, then writes. Another request may commit
in between. These tests put that other request exactly there, without threads or
timing: authorize() is wrapped so that, once it has answered, a second database session
commits the competing change. The write must then notice (409, nothing written), because
it re-reads under the organization's lock what the policy was told.

The races themselves, run many times against gunicorn, are in test_membership_races.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invoiceapp.db import get_db
from invoiceapp.models import (
    AuditEvent,
    Invitation,
    Membership,
    Organization,
    PersonalAccessToken,
    Plan,
    Role,
)
from invoiceapp.organizations import OwnershipChanged, membership_of, set_role
from invoiceapp.views.orgs import billing, invitations, members, ownership, settings
from support import bearer, make_token, signed_in_client, user

CHANGED = "while you were deciding"


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


def owners(db: Session, slug: str) -> int:
    db.expire_all()
    return (
        db.scalar(
            select(func.count())
            .select_from(Membership)
            .where(
                Membership.organization_id == organization(db, slug).id,
                Membership.role == Role.OWNER.value,
            )
        )
        or 0
    )


def set_role_now(db: Session, email: str, slug: str, role: Role) -> None:
    db.execute(
        update(Membership)
        .where(
            Membership.user_id == user(db, email).id,
            Membership.organization_id == organization(db, slug).id,
        )
        .values(role=role.value)
    )


def transfer_now(db: Session, slug: str, old_owner: str, new_owner: str) -> Callable[[], None]:
    """The competing request: a transfer of ownership, committed."""

    def transfer() -> None:
        set_role_now(db, old_owner, slug, Role.ADMIN)
        set_role_now(db, new_owner, slug, Role.OWNER)
        db.commit()

    return transfer


def after_authorize(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Run ``change`` once, right after the view's first authorize() has said yes."""
    real = members.authorize
    done: list[bool] = []

    def authorize_then_change(*args: Any, **kwargs: Any) -> Any:
        decision = real(*args, **kwargs)
        if not done:
            done.append(True)
            change()
        return decision

    # The organization pages are several modules, each holding its own name for authorize.
    for module in (billing, invitations, members, ownership, settings):
        monkeypatch.setattr(module, "authorize", authorize_then_change)


def client_of(app: Flask, email: str) -> FlaskClient:
    client = signed_in_client(app, email)
    client.get("/dashboard")
    return client


def text(response: Any) -> str:
    return response.get_data(as_text=True)


# ---------------------------------------------------------------------------
# Item 6: every membership write re-checks what it authorized
# ---------------------------------------------------------------------------


def test_leaving_just_after_being_made_owner_is_409_and_the_owner_stays(
    app: Flask, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    grace = client_of(app, "grace@acme.test")  # an admin: allowed to leave
    after_authorize(monkeypatch, transfer_now(db, "acme", "ada@acme.test", "grace@acme.test"))
    response = grace.post("/orgs/acme/leave")
    assert response.status_code == 409
    assert CHANGED in text(response)
    assert role_of(db, "grace@acme.test", "acme") == "owner"
    assert owners(db, "acme") == 1


@pytest.mark.parametrize(
    ("suffix", "form"),
    [("/remove", {}), ("/role", {"role": "admin"})],
    ids=["removal", "role change"],
)
def test_managing_someone_just_made_owner_is_409_and_the_owner_stays(
    app: Flask, db: Session, monkeypatch: pytest.MonkeyPatch, suffix: str, form: dict[str, str]
) -> None:
    grace = client_of(app, "grace@acme.test")  # an admin: may manage plain members
    linus = user(db, "linus@acme.test").id
    after_authorize(monkeypatch, transfer_now(db, "acme", "ada@acme.test", "linus@acme.test"))
    response = grace.post(f"/orgs/acme/members/{linus}{suffix}", data=form)
    assert response.status_code == 409
    assert CHANGED in text(response)
    assert role_of(db, "linus@acme.test", "acme") == "owner"
    assert owners(db, "acme") == 1


def test_an_admin_demoted_meanwhile_removes_nobody(
    app: Flask, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    grace = client_of(app, "grace@acme.test")
    linus = user(db, "linus@acme.test").id

    def demote_grace() -> None:
        set_role_now(db, "grace@acme.test", "acme", Role.MEMBER)
        db.commit()

    after_authorize(monkeypatch, demote_grace)
    response = grace.post(f"/orgs/acme/members/{linus}/remove")
    assert response.status_code == 409
    assert role_of(db, "linus@acme.test", "acme") == "member"
    assert not db.scalars(select(AuditEvent).where(AuditEvent.action == "member.remove")).all()


def test_the_database_refuses_a_second_owner(live_app: Flask) -> None:
    with live_app.extensions["db_sessionmaker"]() as db:
        with pytest.raises(IntegrityError):
            set_role_now(db, "grace@acme.test", "acme", Role.OWNER)
            db.flush()
        db.rollback()
        assert owners(db, "acme") == 1


def test_a_commit_that_would_leave_no_owner_is_refused(live_app: Flask) -> None:
    with live_app.app_context():
        db = get_db()
        acme = organization(db, "acme")
        owner = membership_of(db, acme.id, user(db, "ada@acme.test").id)
        assert owner is not None
        set_role(db, owner, from_role=Role.OWNER.value, to_role=Role.ADMIN.value)
        with pytest.raises(OwnershipChanged):
            db.commit()
        db.rollback()
        assert role_of(db, "ada@acme.test", "acme") == "owner"


# ---------------------------------------------------------------------------
# Item 5: seats are counted against the plan as it is after the lock
# ---------------------------------------------------------------------------


def test_an_invitation_racing_a_downgrade_is_checked_against_the_new_plan(
    app: Flask, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = client_of(app, "ada@acme.test")  # acme is pro, with five members

    def downgrade() -> None:
        organization(db, "acme").plan = Plan.FREE.value
        db.commit()

    after_authorize(monkeypatch, downgrade)
    response = ada.post(
        "/orgs/acme/invitations", data={"email": "late@example.com", "role": "member"}
    )
    assert response.status_code == 409
    assert "The free plan allows 3 members" in text(response)
    assert not db.scalars(select(Invitation).where(Invitation.email == "late@example.com")).all()


# ---------------------------------------------------------------------------
# Item 18: a removed member's API tokens are revoked, and owners and admins see them
# ---------------------------------------------------------------------------


def api_me(app: Flask, raw: str) -> int:
    return app.test_client().get("/api/v1/me", headers=bearer(raw)).status_code


def test_a_removed_members_token_stays_dead_when_they_rejoin(app: Flask, db: Session) -> None:
    raw = make_token(app, "linus@acme.test", "acme")
    assert api_me(app, raw) == 200
    linus = user(db, "linus@acme.test").id
    assert (
        client_of(app, "ada@acme.test").post(f"/orgs/acme/members/{linus}/remove").status_code
        == 303
    )
    assert api_me(app, raw) == 401
    db.add(Membership(user_id=linus, organization_id=organization(db, "acme").id, role="member"))
    db.commit()  # invited back and accepted
    assert api_me(app, raw) == 401
    db.expire_all()
    (token,) = db.scalars(select(PersonalAccessToken).where(PersonalAccessToken.user_id == linus))
    assert token.revoked_at is not None


def test_leaving_revokes_your_tokens_for_that_organization_only(app: Flask, db: Session) -> None:
    in_globex = make_token(app, "grace@acme.test", "globex")
    in_acme = make_token(app, "grace@acme.test", "acme")
    assert client_of(app, "grace@acme.test").post("/orgs/globex/leave").status_code == 303
    assert api_me(app, in_globex) == 401
    assert api_me(app, in_acme) == 200


def test_owner_sees_and_revokes_a_members_token_on_the_members_page(
    app: Flask, db: Session
) -> None:
    raw = make_token(app, "linus@acme.test", "acme", "read")
    ada = client_of(app, "ada@acme.test")
    page = text(ada.get("/orgs/acme/members"))
    db.expire_all()
    token = db.scalar(select(PersonalAccessToken).where(PersonalAccessToken.scope == "read"))
    assert token is not None
    linus = user(db, "linus@acme.test").id
    revoke = f"/orgs/acme/members/{linus}/tokens/{token.public_id}/revoke"
    assert 'data-testid="member-tokens"' in page
    assert revoke in page and "read token" in page
    assert raw not in page and token.token_hash not in page

    response = ada.post(revoke)
    assert response.status_code == 303
    assert api_me(app, raw) == 401
    assert revoke not in text(ada.get("/orgs/acme/members"))
    (row,) = db.scalars(select(AuditEvent).where(AuditEvent.action == "member.token.revoke"))
    assert row.resource_id == f"token:{token.public_id}"


def test_admin_sees_plain_members_tokens_but_may_not_revoke_the_owners(
    app: Flask, db: Session
) -> None:
    linus_raw = make_token(app, "linus@acme.test", "acme")
    ada_raw = make_token(app, "ada@acme.test", "acme")
    db.expire_all()
    ada = user(db, "ada@acme.test").id
    ada_token = db.scalar(select(PersonalAccessToken).where(PersonalAccessToken.user_id == ada))
    assert ada_token is not None
    grace = client_of(app, "grace@acme.test")
    page = text(grace.get("/orgs/acme/members"))
    assert f"/members/{user(db, 'linus@acme.test').id}/tokens/" in page
    assert f"/members/{ada}/tokens/" not in page
    response = grace.post(f"/orgs/acme/members/{ada}/tokens/{ada_token.public_id}/revoke")
    assert response.status_code == 403
    assert "member.remove" in text(response)
    assert api_me(app, ada_raw) == 200 and api_me(app, linus_raw) == 200


def test_member_sees_no_tokens_and_revoking_one_is_403(app: Flask, db: Session) -> None:
    raw = make_token(app, "eve@acme.test", "acme")
    eve = user(db, "eve@acme.test").id
    token = db.scalar(select(PersonalAccessToken).where(PersonalAccessToken.user_id == eve))
    assert token is not None
    linus = client_of(app, "linus@acme.test")
    assert 'data-testid="member-tokens"' not in text(linus.get("/orgs/acme/members"))
    assert (
        linus.post(f"/orgs/acme/members/{eve}/tokens/{token.public_id}/revoke").status_code == 403
    )
    assert api_me(app, raw) == 200


@pytest.mark.parametrize("which", ["someone else's", "unknown", "malformed"])
def test_a_token_id_that_is_not_this_members_is_404(app: Flask, db: Session, which: str) -> None:
    make_token(app, "eve@acme.test", "acme")
    eve = user(db, "eve@acme.test").id
    token = db.scalar(select(PersonalAccessToken).where(PersonalAccessToken.user_id == eve))
    assert token is not None
    public_id = {
        "someone else's": token.public_id,
        "unknown": "pat_0123456789abcdef",
        "malformed": "x" * 300,
    }[which]
    linus = user(db, "linus@acme.test").id
    response = client_of(app, "ada@acme.test").post(
        f"/orgs/acme/members/{linus}/tokens/{public_id}/revoke"
    )
    assert response.status_code == 404
    db.expire_all()
    assert db.get(PersonalAccessToken, token.id).revoked_at is None  # type: ignore[union-attr]
