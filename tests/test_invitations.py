"""Invitations: sent by owners and admins, accepted by the invited address only, once.

End to end through the outbox: the mail's link is the only way a test learns a token,
exactly as an invitee would. Every app here writes its mail to the test's own outbox.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import invoiceapp.views.invitations
from conftest import Clock, make_test_app
from invoiceapp.db import utcnow
from invoiceapp.mail import read_outbox
from invoiceapp.models import AuditEvent, Invitation, Membership, Organization, Plan
from support import PASSWORD, csrf_token_from, latest_mail_to, signed_in_client, user

NEW_EMAIL = "new.person@example.com"
STRONG = "lagoon heron juniper fjord 7"
INVALID = "This invitation is no longer valid"
LINK_PREFIX = "http://127.0.0.1:5000/invitations/"


@pytest.fixture()
def app(database_file: Path) -> Iterator[Flask]:
    """Overrides conftest's app: invitation links live one hour."""
    app = make_test_app(database_file, INVITATION_SECONDS=3600)
    yield app
    app.extensions["db_engine"].dispose()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def client_of(app: Flask, email: str) -> FlaskClient:
    client = signed_in_client(app, email)
    client.get("/dashboard")  # shows the "signed in" flash
    return client


def invite(client: FlaskClient, slug: str, email: str, role: str = "member") -> Any:
    return client.post(f"/orgs/{slug}/invitations", data={"email": email, "role": role})


def invitation_path(outbox: Path, email: str) -> str:
    """The path of the newest invitation link mailed to ``email``."""
    mail = latest_mail_to(outbox, email)
    assert mail is not None, f"no mail to {email}"
    (link,) = [link for link in mail.links if link.startswith(LINK_PREFIX)]
    return link.removeprefix("http://127.0.0.1:5000")


def sign_up(app: Flask, outbox: Path, email: str, *, verify: bool) -> FlaskClient:
    """A brand-new person through the real sign-up form (and verification link)."""
    client = app.test_client()
    response = client.post(
        "/sign-up",
        data={"name": "New Person", "email": email, "password": STRONG, "organization_name": "Np"},
    )
    assert response.status_code == 303
    # Sign-up signs nobody in (a taken address must get the same answer): sign in.
    signed_in = client.post("/sign-in", data={"email": email, "password": STRONG})
    assert signed_in.status_code == 303
    if verify:
        mail = latest_mail_to(outbox, email)
        assert mail is not None
        (link,) = [link for link in mail.links if "/verify-email/" in link]
        # The link's page shows a button; pressing it (a POST) verifies.
        assert client.post(link.removeprefix("http://127.0.0.1:5000")).status_code == 200
    client.get("/dashboard")
    return client


def organization(db: Session, slug: str) -> Organization:
    db.expire_all()
    found = db.scalar(select(Organization).where(Organization.slug == slug))
    assert found is not None
    return found


def role_of(db: Session, email: str, slug: str) -> str | None:
    person = user(db, email)
    return db.scalar(
        select(Membership.role).where(
            Membership.user_id == person.id,
            Membership.organization_id == organization(db, slug).id,
        )
    )


def invitations_to(db: Session, email: str) -> list[Invitation]:
    db.expire_all()
    return list(
        db.scalars(select(Invitation).where(Invitation.email == email).order_by(Invitation.id))
    )


def pending(db: Session, email: str) -> list[Invitation]:
    return [i for i in invitations_to(db, email) if i.pending]


def memberships_of(db: Session, email: str) -> int:
    db.expire_all()
    return (
        db.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.user_id == user(db, email).id)
        )
        or 0
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


# ---------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------


def test_invitation_end_to_end_new_person_signs_up_verifies_and_accepts(
    app: Flask, db: Session, outbox: Path
) -> None:
    ada = client_of(app, "ada@acme.test")
    response = invite(ada, "acme", NEW_EMAIL, "admin")
    assert response.status_code == 303
    assert response.headers["Location"] == "/orgs/acme/members"
    members_page = text(ada.get("/orgs/acme/members"))
    assert NEW_EMAIL in members_page
    assert "Invitation sent." in members_page

    mail = latest_mail_to(outbox, NEW_EMAIL)
    assert mail is not None
    assert "Ada Lovelace invited you to join Acme Inc on InvoiceApp as an admin" in mail.text
    path = invitation_path(outbox, NEW_EMAIL)
    token = path.removeprefix("/invitations/")
    # Only the token's SHA-256 is stored.
    (stored,) = invitations_to(db, NEW_EMAIL)
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {stored.token_hash, stored.public_id}
    assert stored.role == "admin" and stored.invited_by_id == user(db, "ada@acme.test").id

    # Someone without an account opens the link: sign in (or up) first, then come back.
    anonymous = app.test_client()
    first_visit = anonymous.get(path)
    assert first_visit.status_code == 302
    assert first_visit.headers["Location"] == f"/sign-in?next=/invitations/{token}"

    newcomer = sign_up(app, outbox, NEW_EMAIL, verify=True)
    page = newcomer.get(path)
    assert page.status_code == 200
    body = text(page)
    assert "Join Acme Inc" in body
    assert 'data-testid="invited-role">admin<' in body
    assert "Ada Lovelace" in body
    assert "Accept the invitation" in body
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["Cache-Control"] == "no-store"

    accepted = newcomer.post(path)
    assert accepted.status_code == 303
    assert accepted.headers["Location"] == "/orgs/acme"
    assert role_of(db, NEW_EMAIL, "acme") == "admin"
    (stored,) = invitations_to(db, NEW_EMAIL)
    assert stored.accepted_at is not None
    assert 'data-testid="role-here">admin<' in text(newcomer.get("/orgs/acme"))
    (row,) = audit_rows(db, "member.accept")
    assert row.actor_email == NEW_EMAIL
    assert row.organization_id == organization(db, "acme").id
    assert [r.actor_email for r in audit_rows(db, "member.invite")] == ["ada@acme.test"]


def test_invitee_signing_in_comes_back_to_the_invitation(
    app: Flask, db: Session, outbox: Path
) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", "hank@globex.test")
    path = invitation_path(outbox, "hank@globex.test")
    hank = app.test_client()
    assert hank.get(path).status_code == 302
    response = hank.post(
        "/sign-in",
        data={
            "email": "hank@globex.test",
            "password": "correct-horse-battery-staple",
            "next": path,
        },
    )
    assert response.headers["Location"] == path
    assert hank.post(path).status_code == 303
    assert role_of(db, "hank@globex.test", "acme") == "member"


def test_anonymous_accept_is_401_and_nothing_changes(
    app: Flask, client: FlaskClient, db: Session, outbox: Path
) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL)
    response = client.post(invitation_path(outbox, NEW_EMAIL))
    assert response.status_code == 401
    assert len(pending(db, NEW_EMAIL)) == 1


# ---------------------------------------------------------------------------
# Who may accept
# ---------------------------------------------------------------------------


def test_unverified_invitee_is_refused_until_verified(
    app: Flask, db: Session, outbox: Path
) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL)
    path = invitation_path(outbox, NEW_EMAIL)
    newcomer = sign_up(app, outbox, NEW_EMAIL, verify=False)

    page = newcomer.get(path)
    assert "Verify your email address first" in text(page)
    assert "Accept the invitation" not in text(page)
    refused = newcomer.post(path)
    assert refused.status_code == 403
    assert "Verify your email address first" in text(refused)
    assert memberships_of(db, NEW_EMAIL) == 1  # only the organization sign-up made
    assert role_of(db, NEW_EMAIL, "acme") is None
    assert len(pending(db, NEW_EMAIL)) == 1
    (row,) = audit_rows(db, "member.accept", "denied")
    assert row.reason == "the invited address is not verified yet"


def test_seeded_unverified_member_is_refused(app: Flask, db: Session, outbox: Path) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post(f"/orgs/globex/members/{user(db, 'marge@globex.test').id}/remove")
    invite(hank, "globex", "eve@acme.test")
    response = client_of(app, "eve@acme.test").post(invitation_path(outbox, "eve@acme.test"))
    assert response.status_code == 403
    assert role_of(db, "eve@acme.test", "globex") is None


def test_wrong_email_invitee_is_refused(app: Flask, db: Session, outbox: Path) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL)
    path = invitation_path(outbox, NEW_EMAIL)
    hank = client_of(app, "hank@globex.test")  # holds a forwarded link, verified, wrong address

    page = hank.get(path)
    assert page.status_code == 200
    assert "This invitation was sent to a different email address" in text(page)
    assert NEW_EMAIL not in text(page)
    assert "Accept the invitation" not in text(page)
    refused = hank.post(path)
    assert refused.status_code == 403
    assert "different email address" in text(refused)
    assert role_of(db, "hank@globex.test", "acme") is None
    assert len(pending(db, NEW_EMAIL)) == 1  # still usable by the right person
    (row,) = audit_rows(db, "member.accept", "denied")
    assert row.actor_email == "hank@globex.test"


# ---------------------------------------------------------------------------
# Unusable links
# ---------------------------------------------------------------------------


def test_expired_link_is_no_longer_valid(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", "hank@globex.test")
    path = invitation_path(outbox, "hank@globex.test")
    clock.advance(seconds=3599)
    hank = client_of(app, "hank@globex.test")
    assert "Accept the invitation" in text(hank.get(path))
    clock.advance(seconds=2)
    for response in (hank.get(path), hank.post(path)):
        assert response.status_code == 404
        assert INVALID in text(response)
    assert role_of(db, "hank@globex.test", "acme") is None


def test_revoked_link_is_no_longer_valid(app: Flask, db: Session, outbox: Path) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post(f"/orgs/globex/members/{user(db, 'marge@globex.test').id}/remove")
    invite(hank, "globex", "linus@acme.test")
    path = invitation_path(outbox, "linus@acme.test")
    (invitation,) = pending(db, "linus@acme.test")
    response = hank.post(f"/orgs/globex/invitations/{invitation.public_id}/revoke")
    assert response.status_code == 303
    assert pending(db, "linus@acme.test") == []

    linus = client_of(app, "linus@acme.test")
    assert INVALID in text(linus.get(path))
    assert linus.post(path).status_code == 404
    assert role_of(db, "linus@acme.test", "globex") is None
    (row,) = audit_rows(db, "member.invite.revoke")
    assert row.resource_id == f"invitation:{invitation.public_id}"


def test_used_link_works_once(app: Flask, db: Session, outbox: Path) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post(f"/orgs/globex/members/{user(db, 'marge@globex.test').id}/remove")
    invite(hank, "globex", "linus@acme.test")
    path = invitation_path(outbox, "linus@acme.test")
    linus = client_of(app, "linus@acme.test")
    assert linus.post(path).status_code == 303
    again = linus.post(path)
    assert again.status_code == 404
    assert INVALID in text(again)
    assert memberships_of(db, "linus@acme.test") == 2
    assert len(audit_rows(db, "member.accept")) == 1


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "A" * 43,  # well formed, never issued
        "A" * 44,
        "A" * 5000,
        "..%2F..%2Fetc%2Fpasswd",
        "a/b/c",
        "%00" * 43,
        "é" * 43,
    ],
)
def test_malformed_or_unknown_token_is_a_clear_page_not_an_error(app: Flask, token: str) -> None:
    client = client_of(app, "linus@acme.test")
    for response in (client.get(f"/invitations/{token}"), client.post(f"/invitations/{token}")):
        assert response.status_code == 404
        assert INVALID in text(response)


def test_second_invite_to_the_same_address_replaces_the_first(
    app: Flask, db: Session, outbox: Path
) -> None:
    ada = client_of(app, "ada@acme.test")
    invite(ada, "acme", NEW_EMAIL, "member")
    first = invitation_path(outbox, NEW_EMAIL)
    invite(ada, "acme", NEW_EMAIL, "admin")
    second = invitation_path(outbox, NEW_EMAIL)
    assert first != second
    assert [i.role for i in pending(db, NEW_EMAIL)] == ["admin"]
    assert len(invitations_to(db, NEW_EMAIL)) == 2  # the first is kept, revoked

    newcomer = sign_up(app, outbox, NEW_EMAIL, verify=True)
    assert newcomer.post(first).status_code == 404
    assert newcomer.post(second).status_code == 303
    assert role_of(db, NEW_EMAIL, "acme") == "admin"


def test_resend_mails_a_new_link_with_a_new_expiry(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post(f"/orgs/globex/members/{user(db, 'marge@globex.test').id}/remove")
    invite(hank, "globex", "linus@acme.test")
    old_path = invitation_path(outbox, "linus@acme.test")
    (invitation,) = pending(db, "linus@acme.test")
    old_expiry = invitation.expires_at

    clock.advance(minutes=30)
    hank = client_of(app, "hank@globex.test")
    response = hank.post(f"/orgs/globex/invitations/{invitation.public_id}/resend")
    assert response.status_code == 303
    new_path = invitation_path(outbox, "linus@acme.test")
    assert new_path != old_path
    (invitation,) = pending(db, "linus@acme.test")
    assert invitation.expires_at > old_expiry
    assert len(read_outbox(outbox)) == 2

    linus = client_of(app, "linus@acme.test")
    assert linus.post(old_path).status_code == 404
    assert linus.post(new_path).status_code == 303
    assert role_of(db, "linus@acme.test", "globex") == "member"
    assert len(audit_rows(db, "member.invite.resend")) == 1


def test_expired_invitation_can_be_resent(
    app: Flask, db: Session, outbox: Path, clock: Clock
) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL)
    (invitation,) = pending(db, NEW_EMAIL)
    clock.advance(seconds=3601)
    ada = client_of(app, "ada@acme.test")
    assert "(expired)" in text(ada.get("/orgs/acme/members"))
    assert ada.post(f"/orgs/acme/invitations/{invitation.public_id}/resend").status_code == 303
    (invitation,) = pending(db, NEW_EMAIL)
    assert invitation.expires_at > utcnow()


# ---------------------------------------------------------------------------
# Who may invite, revoke and resend
# ---------------------------------------------------------------------------


def test_member_invites_gets_403_and_nothing_is_sent(app: Flask, db: Session, outbox: Path) -> None:
    response = invite(client_of(app, "linus@acme.test"), "acme", NEW_EMAIL)
    assert response.status_code == 403
    assert "member.invite" in text(response)
    assert invitations_to(db, NEW_EMAIL) == []
    assert latest_mail_to(outbox, NEW_EMAIL) is None
    assert audit_rows(db, "member.invite", "denied")


def test_admin_invites_a_member_and_an_admin(app: Flask, db: Session) -> None:
    grace = client_of(app, "grace@acme.test")
    assert invite(grace, "acme", "one@example.com", "member").status_code == 303
    assert invite(grace, "acme", "two@example.com", "admin").status_code == 303
    assert [i.role for i in pending(db, "two@example.com")] == ["admin"]


def test_admin_invites_an_owner_gets_403(app: Flask, db: Session) -> None:
    response = invite(client_of(app, "grace@acme.test"), "acme", NEW_EMAIL, "owner")
    assert response.status_code == 403
    # Not "the owner role": the owner may not invite an owner either. One rule, for all.
    assert "ownership moves only by a transfer" in text(response)
    assert invitations_to(db, NEW_EMAIL) == []


def test_nobody_invites_a_second_owner(app: Flask, db: Session) -> None:
    # One owner per organization: ownership moves by transfer, never by invitation.
    response = invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL, "owner")
    assert response.status_code == 403
    assert "ownership moves only by a transfer" in text(response)
    assert invitations_to(db, NEW_EMAIL) == []


@pytest.mark.parametrize("role", ["superuser", "", "x" * 1000])
def test_owner_invites_with_a_role_a_form_cannot_give_gets_422(
    app: Flask, db: Session, role: str
) -> None:
    # One owner per organization: ownership moves by transfer, never by invitation.
    response = invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL, role)
    assert response.status_code == 422
    assert "Not a valid choice" in text(response)
    assert invitations_to(db, NEW_EMAIL) == []


@pytest.mark.parametrize(
    "email", ["", "not-an-address", "a@b", "x" * 250 + "@example.com", "two@@example.com"]
)
def test_invalid_email_is_422(app: Flask, db: Session, email: str) -> None:
    response = invite(client_of(app, "ada@acme.test"), "acme", email)
    assert response.status_code == 422
    assert "field-error" in text(response)
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Invitation)) == 0


def test_inviting_an_existing_member_is_409(app: Flask, db: Session) -> None:
    response = invite(client_of(app, "ada@acme.test"), "acme", "  Linus@ACME.test ")
    assert response.status_code == 409
    assert "already belongs to a member" in text(response)
    assert invitations_to(db, "linus@acme.test") == []


def test_invite_ignores_organization_id_and_invited_by_sent_along(app: Flask, db: Session) -> None:
    client_of(app, "grace@acme.test").post(
        "/orgs/acme/invitations",
        data={
            "email": NEW_EMAIL,
            "role": "member",
            "organization_id": str(organization(db, "globex").id),
            "invited_by_id": str(user(db, "hank@globex.test").id),
            "expires_at": "2999-01-01",
        },
    )
    (invitation,) = pending(db, NEW_EMAIL)
    assert invitation.organization_id == organization(db, "acme").id
    assert invitation.invited_by_id == user(db, "grace@acme.test").id
    assert (invitation.expires_at - invitation.created_at).total_seconds() == 3600


def test_other_org_invitation_routes_are_404(app: Flask, db: Session) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL)
    (invitation,) = pending(db, NEW_EMAIL)
    hank = client_of(app, "hank@globex.test")
    for action in ("revoke", "resend"):
        # Acme's invitation, reached through Globex or through Acme: not Hank's either way.
        through_globex = hank.post(f"/orgs/globex/invitations/{invitation.public_id}/{action}")
        through_acme = hank.post(f"/orgs/acme/invitations/{invitation.public_id}/{action}")
        missing = hank.post(f"/orgs/no-such-org/invitations/{invitation.public_id}/{action}")
        assert through_globex.status_code == through_acme.status_code == missing.status_code == 404
        assert through_acme.get_data() == missing.get_data()
    assert len(pending(db, NEW_EMAIL)) == 1


@pytest.mark.parametrize("public_id", ["0123456789abcdef", "ZZZ", "x" * 2000, "0123456789ABCDEF"])
def test_unknown_or_malformed_invitation_id_is_404(app: Flask, public_id: str) -> None:
    ada = client_of(app, "ada@acme.test")
    assert ada.post(f"/orgs/acme/invitations/{public_id}/revoke").status_code == 404
    assert ada.post(f"/orgs/acme/invitations/{public_id}/resend").status_code == 404


def test_member_cannot_revoke_or_resend(app: Flask, db: Session) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL)
    (invitation,) = pending(db, NEW_EMAIL)
    linus = client_of(app, "linus@acme.test")
    assert NEW_EMAIL not in text(linus.get("/orgs/acme/members"))
    for action in ("revoke", "resend"):
        response = linus.post(f"/orgs/acme/invitations/{invitation.public_id}/{action}")
        assert response.status_code == 403
    assert len(pending(db, NEW_EMAIL)) == 1


def test_admin_revokes_a_member_invitation(app: Flask, db: Session) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL)
    (invitation,) = pending(db, NEW_EMAIL)
    response = client_of(app, "grace@acme.test").post(
        f"/orgs/acme/invitations/{invitation.public_id}/revoke"
    )
    assert response.status_code == 303
    assert pending(db, NEW_EMAIL) == []


def test_accepted_invitation_cannot_be_revoked_or_resent(
    app: Flask, db: Session, outbox: Path
) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post(f"/orgs/globex/members/{user(db, 'marge@globex.test').id}/remove")
    invite(hank, "globex", "linus@acme.test")
    (invitation,) = pending(db, "linus@acme.test")
    client_of(app, "linus@acme.test").post(invitation_path(outbox, "linus@acme.test"))
    for action in ("revoke", "resend"):
        response = hank.post(f"/orgs/globex/invitations/{invitation.public_id}/{action}")
        assert response.status_code == 404
    assert role_of(db, "linus@acme.test", "globex") == "member"


def test_anonymous_invite_revoke_resend_are_401(client: FlaskClient, db: Session) -> None:
    assert invite(client, "acme", NEW_EMAIL).status_code == 401
    assert client.post("/orgs/acme/invitations/0123456789abcdef/revoke").status_code == 401
    assert client.post("/orgs/acme/invitations/0123456789abcdef/resend").status_code == 401
    assert invitations_to(db, NEW_EMAIL) == []


# ---------------------------------------------------------------------------
# The free plan's member cap
# ---------------------------------------------------------------------------


def test_free_plan_with_three_members_refuses_an_invitation_with_409(
    app: Flask, db: Session, outbox: Path
) -> None:
    # Globex (free): Hank, Marge and Grace.
    response = invite(client_of(app, "hank@globex.test"), "globex", NEW_EMAIL)
    assert response.status_code == 409
    assert "The free plan allows 3 members, pending invitations included" in text(response)
    assert 'value="new.person@example.com"' in text(response)  # the form is kept
    assert invitations_to(db, NEW_EMAIL) == []
    assert latest_mail_to(outbox, NEW_EMAIL) is None


def test_pending_invitations_count_toward_the_cap(app: Flask, db: Session) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post(f"/orgs/globex/members/{user(db, 'marge@globex.test').id}/remove")
    assert invite(hank, "globex", "one@example.com").status_code == 303
    assert invite(hank, "globex", "two@example.com").status_code == 409
    # Re-inviting the same address replaces its invitation: no extra seat needed.
    assert invite(hank, "globex", "one@example.com", "admin").status_code == 303
    assert [i.role for i in pending(db, "one@example.com")] == ["admin"]


def test_pro_plan_has_no_cap(app: Flask, db: Session) -> None:
    ada = client_of(app, "ada@acme.test")  # Acme (pro) already has four members
    for number in range(3):
        assert invite(ada, "acme", f"p{number}@example.com").status_code == 303


def test_accept_rechecks_the_cap(app: Flask, db: Session, outbox: Path) -> None:
    hank = client_of(app, "hank@globex.test")
    hank.post(f"/orgs/globex/members/{user(db, 'marge@globex.test').id}/remove")
    invite(hank, "globex", "linus@acme.test")
    # Meanwhile the organization filled up another way (here: directly in the database).
    db.add(
        Membership(
            user_id=user(db, "ada@acme.test").id,
            organization_id=organization(db, "globex").id,
            role="member",
        )
    )
    db.commit()
    response = client_of(app, "linus@acme.test").post(invitation_path(outbox, "linus@acme.test"))
    assert response.status_code == 409
    assert "This organization is full" in text(response)
    assert role_of(db, "linus@acme.test", "globex") is None
    assert len(pending(db, "linus@acme.test")) == 1
    assert organization(db, "globex").plan == Plan.FREE


# ---------------------------------------------------------------------------
# Races
# ---------------------------------------------------------------------------


def test_accept_when_already_a_member_makes_no_second_membership(
    app: Flask, db: Session, outbox: Path
) -> None:
    ada = client_of(app, "ada@acme.test")
    invite(ada, "acme", NEW_EMAIL)
    path = invitation_path(outbox, NEW_EMAIL)
    newcomer = sign_up(app, outbox, NEW_EMAIL, verify=True)
    # Joined a moment ago some other way.
    db.add(
        Membership(
            user_id=user(db, NEW_EMAIL).id,
            organization_id=organization(db, "acme").id,
            role="member",
        )
    )
    db.commit()
    response = newcomer.post(path)
    assert response.status_code == 303
    assert role_of(db, NEW_EMAIL, "acme") == "member"
    assert memberships_of(db, NEW_EMAIL) == 2  # their own organization, and Acme once
    assert pending(db, NEW_EMAIL) == []


def test_simultaneous_accept_is_caught_by_the_unique_membership(
    app: Flask, db: Session, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", NEW_EMAIL)
    path = invitation_path(outbox, NEW_EMAIL)
    newcomer = sign_up(app, outbox, NEW_EMAIL, verify=True)
    db.add(
        Membership(
            user_id=user(db, NEW_EMAIL).id,
            organization_id=organization(db, "acme").id,
            role="admin",
        )
    )
    db.commit()
    # The other request's membership is not visible yet when this one looks.
    monkeypatch.setattr(invoiceapp.views.invitations, "membership_of", lambda *a, **k: None)
    response = newcomer.post(path)
    assert response.status_code == 303
    assert response.headers["Location"] == "/orgs/acme"
    assert role_of(db, NEW_EMAIL, "acme") == "admin"
    assert memberships_of(db, NEW_EMAIL) == 2
    assert audit_rows(db, "member.accept") == []


# ---------------------------------------------------------------------------
# Through the real forms, CSRF on
# ---------------------------------------------------------------------------


def test_invite_and_accept_through_the_real_forms_with_csrf(
    database_file: Path, outbox: Path, db: Session
) -> None:
    app = make_test_app(database_file, WTF_CSRF_ENABLED=True, MAIL_OUTBOX_DIR=str(outbox))
    try:

        def signed_in(email: str) -> FlaskClient:
            client = app.test_client()
            token = csrf_token_from(text(client.get("/sign-in")))
            data = {"email": email, "password": PASSWORD, "csrf_token": token}
            assert client.post("/sign-in", data=data).status_code == 303
            return client

        ada = signed_in("ada@acme.test")
        form = {"email": "hank@globex.test", "role": "member"}
        assert ada.post("/orgs/acme/invitations", data=form).status_code == 400
        token = csrf_token_from(text(ada.get("/orgs/acme/members")))
        response = ada.post("/orgs/acme/invitations", data={**form, "csrf_token": token})
        assert response.status_code == 303

        path = invitation_path(outbox, "hank@globex.test")
        hank = signed_in("hank@globex.test")
        assert hank.post(path).status_code == 400  # a forged accept changes nothing
        assert role_of(db, "hank@globex.test", "acme") is None
        page = text(hank.get(path))
        assert hank.post(path, data={"csrf_token": csrf_token_from(page)}).status_code == 303
        assert role_of(db, "hank@globex.test", "acme") == "member"
    finally:
        app.extensions["db_engine"].dispose()


def test_an_owner_invitation_made_outside_the_forms_is_never_accepted(
    app: Flask, db: Session, outbox: Path
) -> None:
    invite(client_of(app, "ada@acme.test"), "acme", "hank@globex.test")
    (invitation,) = pending(db, "hank@globex.test")
    invitation.role = "owner"  # the table allows it; no form or policy path does
    db.commit()
    hank = client_of(app, "hank@globex.test")
    assert hank.post(invitation_path(outbox, "hank@globex.test")).status_code == 404
    assert role_of(db, "hank@globex.test", "acme") is None
    assert role_of(db, "ada@acme.test", "acme") == "owner"
