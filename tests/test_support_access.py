"""Support access, with consent (issue 19 item 1).

Sam is platform support staff (``flask staff grant``). He asks Acme for access; Ada, Acme's
owner, approves it (elevated) for a few hours with a role she chooses; he then sees Acme as
that role, with a banner, as himself. Sensitive actions are refused whatever the role (403
naming the support-access rule), the API never sees Acme for him, and every audit record
made meanwhile names both him and Ada's consent, and verifies in the chain.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from invoiceapp.authn.passwords import hash_password
from invoiceapp.db import utcnow
from invoiceapp.mail import read_outbox
from invoiceapp.models import (
    AuditEvent,
    CustomRole,
    Invoice,
    Membership,
    Organization,
    PersonalAccessToken,
    SupportGrant,
    User,
    UserSession,
)
from support import PASSWORD, bearer, make_token, signed_in_client

SAM = "sam@support.test"
# The 403 page's "Why?": the rule that decided, in the same words as the audit record.
SUPPORT_RULE_SHOWN = "<dt>Rule that decided</dt><dd>support access</dd>"
REASON = "Ticket 4711: the invoice list shows a wrong total"


@pytest.fixture()
def app(app_on_each_engine: Flask) -> Flask:
    """These tests run on SQLite and again on PostgreSQL (conftest.py). The PostgreSQL app
    is shared between tests, so its outbox starts empty here: mails are counted per test."""
    for mail in Path(app_on_each_engine.config["MAIL_OUTBOX_DIR"]).glob("*.eml"):
        mail.unlink()
    return app_on_each_engine


@pytest.fixture()
def sam(app: Flask, db: Session) -> User:
    """A verified account in no organization, made staff from the command line."""
    with app.app_context():
        password_hash = hash_password(PASSWORD)
    user = User(email=SAM, display_name="Sam Support", password_hash=password_hash,
                email_verified_at=utcnow())  # fmt: skip
    db.add(user)
    db.commit()
    result = app.test_cli_runner().invoke(args=["staff", "grant", SAM])
    assert result.exit_code == 0, result.output
    db.refresh(user)
    assert user.is_staff
    return user


def acme_invoice(db: Session) -> Invoice:
    acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
    assert acme is not None
    found = db.scalar(
        select(Invoice).where(
            Invoice.organization_id == acme.id,
            Invoice.deleted_at.is_(None),
            Invoice.status.in_(("draft", "sent")),
        )
    )
    assert found is not None
    return found


def ask(client: FlaskClient, slug: str = "acme", reason: str = REASON) -> int:
    response = client.post("/support", data={"organization": slug, "reason": reason})
    return response.status_code


def latest_grant(db: Session) -> SupportGrant:
    db.expire_all()
    grant = db.scalar(select(SupportGrant).order_by(SupportGrant.id.desc()))
    assert grant is not None
    return grant


def approved(
    app: Flask, db: Session, sam: User, role: str = "read_only", hours: int = 2
) -> FlaskClient:
    engineer = signed_in_client(app, SAM)
    assert ask(engineer) == 303
    grant = latest_grant(db)
    ada = signed_in_client(app, "ada@acme.test")
    response = ada.post(f"/orgs/acme/support/{grant.id}/approve",
                        data={"role": role, "hours": str(hours)})  # fmt: skip
    assert response.status_code == 303
    assert latest_grant(db).state == "approved"
    assert engineer.post("/orgs/switch", data={"organization": "acme"}).status_code == 303
    return engineer


def mails_to(app: Flask, address: str, subject_part: str) -> int:
    return sum(
        1
        for mail in read_outbox(app.config["MAIL_OUTBOX_DIR"])
        if address in mail.to and subject_part in mail.subject
    )


def test_the_whole_flow_from_request_to_end(app: Flask, db: Session, sam: User) -> None:
    engineer = signed_in_client(app, SAM)
    invoice = acme_invoice(db)
    # Before approval the request grants nothing: Acme's invoice is a stranger's 404.
    assert ask(engineer) == 303
    assert engineer.get(f"/invoices/{invoice.public_id}").status_code == 404
    grant = latest_grant(db)
    assert grant.state == "requested" and grant.role == "read_only"

    ada = signed_in_client(app, "ada@acme.test")
    page = ada.get("/orgs/acme/support")
    assert page.status_code == 200
    assert "Sam Support" in page.get_data(as_text=True) and REASON in page.get_data(as_text=True)
    # Approving is elevated: a stale session is sent to confirm it is her first.
    db.execute(update(UserSession).values(authenticated_at=utcnow() - timedelta(hours=1)))
    db.commit()
    stale = ada.post(f"/orgs/acme/support/{grant.id}/approve", data={"hours": "2"})
    assert stale.status_code in (302, 303) and "/reauthenticate" in stale.headers["Location"]
    assert latest_grant(db).state == "requested"
    ada = signed_in_client(app, "ada@acme.test")
    assert (
        ada.post(f"/orgs/acme/support/{grant.id}/approve", data={"hours": "2"}).status_code == 303
    )
    assert latest_grant(db).state == "approved"

    # Sam switches to Acme like any member would, and sees the banner with the time left.
    assert engineer.post("/orgs/switch", data={"organization": "acme"}).status_code == 303
    shown = engineer.get(f"/invoices/{invoice.public_id}")
    assert shown.status_code == 200
    body = shown.get_data(as_text=True)
    assert 'data-testid="support-banner"' in body
    assert "granted by <bdi>Ada" in body and "120 minutes left" in body
    assert engineer.get("/invoices").status_code == 200

    # Delete and billing: refused whatever the role, naming the support-access rule.
    refused = engineer.post(f"/invoices/{invoice.public_id}/delete")
    assert refused.status_code == 403
    assert SUPPORT_RULE_SHOWN in refused.get_data(as_text=True)
    assert engineer.get("/orgs/acme/billing").status_code == 403
    db.expire_all()
    assert db.get(Invoice, invoice.id).deleted_at is None  # type: ignore[union-attr]

    # Sam ends it himself; his very next request finds Acme gone.
    assert engineer.post(f"/support/{grant.id}/end").status_code == 303
    assert latest_grant(db).state == "ended" and latest_grant(db).ended_by_id == sam.id
    assert engineer.get(f"/invoices/{invoice.public_id}").status_code == 404
    assert 'data-testid="support-banner"' not in engineer.get("/support").get_data(as_text=True)


def test_a_non_staff_user_gets_403_at_support_naming_the_rule(app: Flask) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    for response in (
        linus.get("/support"),
        linus.post("/support", data={"organization": "acme", "reason": REASON}),
    ):
        assert response.status_code == 403
        assert "staff only" in response.get_data(as_text=True)
    assert app.test_client().get("/support").status_code in (302, 401)


def test_no_page_can_set_is_staff(app: Flask, db: Session) -> None:
    linus = signed_in_client(app, "linus@acme.test")
    for path in ("/account", "/account/email", "/sign-up", "/orgs/acme/members"):
        linus.post(path, data={"is_staff": "1", "is_staff_": "true", "display_name": "Linus"})
    db.expire_all()
    assert not any(db.scalars(select(User.is_staff)))
    # The flag only comes from the command line, and its revocation ends live access too.


def test_an_unknown_slug_and_a_short_reason_are_form_errors(
    app: Flask, db: Session, sam: User
) -> None:
    engineer = signed_in_client(app, SAM)
    response = engineer.post("/support", data={"organization": "no-such-org", "reason": REASON})
    assert response.status_code == 422
    assert "no organization with that slug" in response.get_data(as_text=True)
    response = engineer.post("/support", data={"organization": "acme", "reason": "pls"})
    assert response.status_code == 422
    assert db.scalar(select(SupportGrant)) is None
    # One open request per organization: a second is a form error too.
    assert ask(engineer) == 303
    assert ask(engineer) == 422


def test_asking_needs_an_elevated_session(app: Flask, db: Session, sam: User) -> None:
    engineer = signed_in_client(app, SAM)
    db.execute(update(UserSession).values(authenticated_at=utcnow() - timedelta(hours=1)))
    db.commit()
    response = engineer.post("/support", data={"organization": "acme", "reason": REASON})
    assert response.status_code in (302, 303) and "/reauthenticate" in response.headers["Location"]
    assert db.scalar(select(SupportGrant)) is None


def test_expiry_ends_access_on_the_very_next_request(app: Flask, db: Session, sam: User) -> None:
    engineer = approved(app, db, sam)
    invoice = acme_invoice(db)
    assert engineer.get(f"/invoices/{invoice.public_id}").status_code == 200
    db.execute(update(SupportGrant).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert engineer.get(f"/invoices/{invoice.public_id}").status_code == 404
    grant = latest_grant(db)
    assert grant.state == "ended" and grant.ended_by_id is None
    # Noticed once: the "ended" mail went out once, and the command finds nothing left.
    assert mails_to(app, "ada@acme.test", "ended") == 1
    assert engineer.get("/support").status_code == 200
    result = app.test_cli_runner().invoke(args=["support", "expire"])
    assert "ended 0 expired" in result.output
    assert mails_to(app, "ada@acme.test", "ended") == 1
    db.expire_all()
    expired = db.scalars(select(AuditEvent).where(AuditEvent.action == "support.expire")).all()
    assert len(expired) == 1 and expired[0].actor_id is None


def test_flask_support_expire_ends_and_mails_once(app: Flask, db: Session, sam: User) -> None:
    approved(app, db, sam)
    db.execute(update(SupportGrant).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    runner = app.test_cli_runner()
    assert "ended 1 expired" in runner.invoke(args=["support", "expire"]).output
    assert "ended 0 expired" in runner.invoke(args=["support", "expire"]).output
    assert mails_to(app, "ada@acme.test", "started") == 1
    assert mails_to(app, "ada@acme.test", "ended") == 1


def test_the_owner_denies_a_request(app: Flask, db: Session, sam: User) -> None:
    engineer = signed_in_client(app, SAM)
    assert ask(engineer) == 303
    grant = latest_grant(db)
    ada = signed_in_client(app, "ada@acme.test")
    assert ada.post(f"/orgs/acme/support/{grant.id}/deny").status_code == 303
    assert latest_grant(db).state == "denied"
    # A denied request cannot be approved afterwards, and grants nothing.
    ada.post(f"/orgs/acme/support/{grant.id}/approve", data={"hours": "1"})
    assert latest_grant(db).state == "denied"
    assert engineer.post("/orgs/switch", data={"organization": "acme"}).status_code == 404
    assert mails_to(app, "ada@acme.test", "started") == 0


def test_the_owner_ends_it_at_any_moment_without_elevation(
    app: Flask, db: Session, sam: User
) -> None:
    engineer = approved(app, db, sam)
    ada = signed_in_client(app, "ada@acme.test")
    db.execute(update(UserSession).values(authenticated_at=utcnow() - timedelta(hours=1)))
    db.commit()
    grant = latest_grant(db)
    assert ada.post(f"/orgs/acme/support/{grant.id}/end").status_code == 303
    grant = latest_grant(db)
    ada_id = db.scalar(select(User.id).where(User.email == "ada@acme.test"))
    assert grant.state == "ended" and grant.ended_by_id == ada_id
    assert engineer.get(f"/invoices/{acme_invoice(db).public_id}").status_code == 404
    assert mails_to(app, "ada@acme.test", "started") == 1
    assert mails_to(app, "ada@acme.test", "ended") == 1


def test_only_the_owner_manages_support_access(app: Flask, db: Session, sam: User) -> None:
    engineer = signed_in_client(app, SAM)
    assert ask(engineer) == 303
    grant = latest_grant(db)
    grace = signed_in_client(app, "grace@acme.test")  # an admin of Acme
    assert grace.get("/orgs/acme/support").status_code == 403
    assert (
        grace.post(f"/orgs/acme/support/{grant.id}/approve", data={"hours": "1"}).status_code == 403
    )
    hank = signed_in_client(app, "hank@globex.test")  # another organization's owner
    assert hank.get("/orgs/acme/support").status_code == 404
    assert (
        hank.post(f"/orgs/globex/support/{grant.id}/approve", data={"hours": "1"}).status_code
        == 404
    )
    assert latest_grant(db).state == "requested"


def test_an_admin_grant_still_refuses_every_sensitive_action(
    app: Flask, db: Session, sam: User
) -> None:
    engineer = approved(app, db, sam, role="admin")
    invoice = acme_invoice(db)
    # What the admin role allows, support access allows: editing, the audit log.
    assert engineer.get(f"/invoices/{invoice.public_id}/edit").status_code == 200
    assert engineer.get("/orgs/acme/audit").status_code == 200
    refused = {
        "billing": engineer.get("/orgs/acme/billing"),
        "billing update": engineer.post("/orgs/acme/billing", data={"plan": "free"}),
        "transfer": engineer.post("/orgs/acme/transfer", data={"new_owner": "1"}),
        "settings": engineer.post("/orgs/acme/settings", data={"name": "Pwned"}),
        "security": engineer.get("/orgs/acme/security"),
        "roles": engineer.get("/orgs/acme/roles"),
        "invite": engineer.post("/orgs/acme/invitations",
                                data={"email": "x@example.test", "role": "admin"}),
        "view-as": engineer.post("/orgs/acme/view-as", data={"role": "member"}),
        "shares": engineer.get("/orgs/acme/shares"),
        "retention": engineer.post("/orgs/acme/audit/retention", data={"days": "30"}),
        "support page": engineer.get("/orgs/acme/support"),
        "token": engineer.post("/account/tokens", data={"name": "t", "organization": "acme",
                                                        "scope": "read", "expires_days": "7"}),
    }  # fmt: skip
    for what, response in refused.items():
        assert response.status_code == 403, what
        assert SUPPORT_RULE_SHOWN in response.get_data(as_text=True), what
        assert "<dt>Support access</dt><dd><bdi>granted by Ada Lovelace, as admin" in (
            response.get_data(as_text=True)
        ), what
    # A customer's API token: not even an admin grant can revoke (or see past its name) one.
    make_token(app, "linus@acme.test", "acme")
    token = db.scalar(select(PersonalAccessToken).order_by(PersonalAccessToken.id.desc()))
    assert token is not None
    revoke = engineer.post(f"/orgs/acme/members/{token.user_id}/tokens/{token.public_id}/revoke")
    assert revoke.status_code == 403 and SUPPORT_RULE_SHOWN in revoke.get_data(as_text=True)
    db.expire_all()
    assert db.get(PersonalAccessToken, token.id).revoked_at is None  # type: ignore[union-attr]
    acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
    assert acme is not None and acme.name != "Pwned"
    # The customer's own account pages are the engineer's own: Ada's are unreachable.
    account = engineer.get("/account").get_data(as_text=True)
    assert SAM in account and "ada@acme.test" not in account


def test_the_api_never_sees_the_supported_organization(app: Flask, db: Session, sam: User) -> None:
    engineer = approved(app, db, sam, role="admin")
    invoice = acme_invoice(db)
    # By cookie.
    assert engineer.get(f"/api/v1/invoices/{invoice.public_id}").status_code == 404
    orgs = engineer.get("/api/v1/orgs")
    assert orgs.status_code == 200 and "acme" not in orgs.get_data(as_text=True)
    assert engineer.get("/api/v1/invoices?organization=acme").status_code == 404
    # By token: Sam can make none for Acme; one for any organization could not reach it.
    with app.app_context():
        assert db.scalar(select(User).where(User.email == SAM)) is not None
    tokens = engineer.get("/account/tokens").get_data(as_text=True)
    assert 'value="acme"' not in tokens


def test_the_api_with_a_staff_token_is_404_for_the_supported_org(
    app: Flask, db: Session, sam: User
) -> None:
    # Sam also belongs to Globex as a member, so he can hold a token at all.
    globex = db.scalar(select(Organization).where(Organization.slug == "globex"))
    assert globex is not None
    db.add(Membership(user_id=sam.id, organization_id=globex.id, role="member"))
    db.commit()
    approved(app, db, sam, role="admin")
    raw = make_token(app, SAM, "globex")
    invoice = acme_invoice(db)
    client = app.test_client()
    assert (
        client.get(f"/api/v1/invoices/{invoice.public_id}", headers=bearer(raw)).status_code == 404
    )
    listed = client.get("/api/v1/orgs", headers=bearer(raw)).get_data(as_text=True)
    assert "acme" not in listed


def test_audit_records_carry_both_identities_and_verify(
    app: Flask, db: Session, sam: User, tmp_path: Path
) -> None:
    engineer = approved(app, db, sam, role="admin")
    invoice = acme_invoice(db)
    assert engineer.get(f"/invoices/{invoice.public_id}").status_code == 200
    assert engineer.post(f"/invoices/{invoice.public_id}/void").status_code in (303, 200)
    assert engineer.get("/orgs/acme/billing").status_code == 403
    db.expire_all()
    during = db.scalars(
        select(AuditEvent).where(AuditEvent.actor_id == sam.id,
                                 AuditEvent.action.in_(("invoice.void", "org.billing.read")))
    ).all()  # fmt: skip
    assert {e.decision for e in during} == {"allowed", "denied"}
    for event in during:
        assert event.actor_email == SAM
        assert event.on_behalf_basis == "support access granted by Ada Lovelace"
        assert event.support_reason == REASON
    # The owner's page shows both; the export carries both and verifies in the chain.
    ada = signed_in_client(app, "ada@acme.test")
    page = ada.get("/orgs/acme/audit").get_data(as_text=True)
    assert "support access granted by Ada Lovelace" in page
    export = ada.get("/orgs/acme/audit/export.jsonl")
    assert export.status_code == 200
    text = export.get_data(as_text=True)
    export.close()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    marked = [line for line in lines if line.get("on_behalf_basis")]
    assert marked and all(line["support_reason"] == REASON for line in marked)
    path = tmp_path / "audit.jsonl"
    path.write_text(text, encoding="utf-8")
    verified = app.test_cli_runner().invoke(args=["audit", "verify", str(path)])
    assert verified.exit_code == 0 and "OK" in verified.output, verified.output
    # Changing the basis of one record breaks the chain.
    tampered = text.replace("granted by Ada Lovelace", "granted by Nobody", 1)
    path.write_text(tampered, encoding="utf-8")
    broken = app.test_cli_runner().invoke(args=["audit", "verify", str(path)])
    assert broken.exit_code == 1 and "BROKEN" in broken.output
    csv = ada.get("/orgs/acme/audit/export.csv")
    assert "support access granted by Ada Lovelace" in csv.get_data(as_text=True)
    csv.close()
    # The owner's API shows them too (the API refuses support access, not its records).
    listed = ada.get(f"/api/v1/orgs/acme/audit?actor={SAM}").get_json()
    assert any(item["on_behalf_basis"] == "support access granted by Ada Lovelace"
               and item["support_reason"] == REASON for item in listed["items"])  # fmt: skip
    # Request, approve: in the organization's log.
    actions = set(db.scalars(select(AuditEvent.action).where(AuditEvent.action.like("support.%"))))
    assert {"support.request", "support.approve"} <= actions


def test_revoking_the_staff_flag_ends_live_grants(app: Flask, db: Session, sam: User) -> None:
    engineer = approved(app, db, sam)
    result = app.test_cli_runner().invoke(args=["staff", "revoke", SAM])
    assert result.exit_code == 0 and "1 open requests or grants ended" in result.output
    assert latest_grant(db).state == "ended"
    assert engineer.get(f"/invoices/{acme_invoice(db).public_id}").status_code == 404
    assert engineer.get("/support").status_code == 403
    listed = app.test_cli_runner().invoke(args=["staff", "list"]).output
    assert SAM not in listed
    actions = set(db.scalars(select(AuditEvent.action).where(AuditEvent.action.like("staff.%"))))
    assert actions == {"staff.grant", "staff.revoke"}


def test_the_owner_chooses_a_role_and_at_most_four_hours(
    app: Flask, db: Session, sam: User
) -> None:
    engineer = signed_in_client(app, SAM)
    assert ask(engineer) == 303
    grant = latest_grant(db)
    ada = signed_in_client(app, "ada@acme.test")
    path = f"/orgs/acme/support/{grant.id}/approve"
    for form in ({"role": "owner", "hours": "1"}, {"role": "no-such-role", "hours": "1"},
                 {"role": "member", "hours": "5"}, {"role": "member", "hours": "0"},
                 {"role": "member", "hours": "two"}):  # fmt: skip
        assert ada.post(path, data=form).status_code == 422, form
    assert latest_grant(db).state == "requested"
    # One of Acme's own roles: the engineer gets exactly its actions, still minus the refused.
    acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
    assert acme is not None
    db.add(CustomRole(organization_id=acme.id, key="bookkeeper", name="Bookkeeper",
                      actions="invoice.read invoice.export member.invite"))  # fmt: skip
    db.commit()
    assert ada.post(path, data={"role": "bookkeeper", "hours": "4"}).status_code == 303
    grant = latest_grant(db)
    assert grant.role == "bookkeeper" and grant.expires_at is not None
    assert (
        timedelta(hours=3, minutes=59) < grant.expires_at - grant.approved_at <= timedelta(hours=4)
    )  # type: ignore[operator]
    invoice = acme_invoice(db)
    assert engineer.get(f"/invoices/{invoice.public_id}").status_code == 200
    assert engineer.get(f"/invoices/{invoice.public_id}/edit").status_code == 403
    invite = engineer.post(
        "/orgs/acme/invitations", data={"email": "x@example.test", "role": "member"}
    )
    assert invite.status_code == 403 and SUPPORT_RULE_SHOWN in invite.get_data(as_text=True)
    assert "Bookkeeper" in engineer.get("/invoices").get_data(as_text=True)


def test_a_staff_member_of_the_organization_keeps_their_own_role(
    app: Flask, db: Session, sam: User
) -> None:
    """Membership counts where there is one: a grant adds nothing, and takes nothing away."""
    acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
    assert acme is not None
    db.add(Membership(user_id=sam.id, organization_id=acme.id, role="admin"))
    db.commit()
    engineer = signed_in_client(app, SAM)
    assert ask(engineer) == 303
    grant = latest_grant(db)
    ada = signed_in_client(app, "ada@acme.test")
    assert (
        ada.post(f"/orgs/acme/support/{grant.id}/approve", data={"hours": "1"}).status_code == 303
    )
    page = engineer.get("/orgs/acme/billing")
    assert page.status_code == 200  # his admin role's answer, not support access's
    assert 'data-testid="support-banner"' not in page.get_data(as_text=True)


def test_the_staff_flag_needs_a_verified_address(app: Flask, db: Session) -> None:
    """Whoever signed up first with an address may not own it: no staff flag until verified."""
    with app.app_context():
        password_hash = hash_password(PASSWORD)
    db.add(User(email="squat@support.test", display_name="Squatter", password_hash=password_hash))
    db.commit()
    result = app.test_cli_runner().invoke(args=["staff", "grant", "squat@support.test"])
    assert result.exit_code != 0 and "not verified" in result.output
    db.expire_all()
    assert not db.scalar(select(User.is_staff).where(User.email == "squat@support.test"))
