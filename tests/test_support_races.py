"""Support access expires once, however many notice it at the same moment (issue 19 item 1).

An expired grant has no request of its own: the engineer's next request, the owner's support
page and ``flask support expire`` may all notice it together, in several gunicorn workers.
One conditional UPDATE (``WHERE state = 'approved' AND expires_at <= now``) decides who ends
it; only that one writes the audit record and mails the owner. Run many times against a
live server with several workers, on SQLite and PostgreSQL (conftest's ``shared_served``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from sqlalchemy import func, select

from invoiceapp.authn.passwords import hash_password
from invoiceapp.db import get_db, utcnow
from invoiceapp.mail import read_outbox
from invoiceapp.models import AuditEvent, Organization, SupportGrant, User
from invoiceapp.support_access import expire_due
from support import PASSWORD, ROUNDS, all_at_once, signed_in_session


def staff_member(app: Flask) -> str:
    """A fresh staff account (its own address, so rounds of other tests never count)."""
    email = f"sam-{secrets.token_hex(4)}@support.test"
    with app.app_context():
        db = get_db()
        db.add(User(email=email, display_name="Sam Support", password_hash=hash_password(PASSWORD),
                    email_verified_at=utcnow(), is_staff=True))  # fmt: skip
        db.commit()
    return email


def expired_grant(app: Flask, email: str) -> int:
    """An approved grant of Acme whose time ran out a second ago."""
    with app.extensions["db_sessionmaker"]() as db:
        staff = db.scalar(select(User).where(User.email == email))
        acme = db.scalar(select(Organization).where(Organization.slug == "acme"))
        ada = db.scalar(select(User).where(User.email == "ada@acme.test"))
        assert staff is not None and acme is not None and ada is not None
        now = utcnow()
        grant = SupportGrant(organization_id=acme.id, staff_user_id=staff.id,
                             reason="Ticket 99: a race", role="read_only", state="approved",
                             requested_at=now - timedelta(hours=2), approved_by_id=ada.id,
                             approved_at=now - timedelta(hours=2),
                             expires_at=now - timedelta(seconds=1))  # fmt: skip
        db.add(grant)
        db.commit()
        return grant.id


def test_an_expired_grant_is_ended_recorded_and_mailed_once(
    shared_served: tuple[str, Flask],
) -> None:
    base, app = shared_served
    email = staff_member(app)
    engineers = [signed_in_session(base, email) for _ in range(2)]
    owner = signed_in_session(base, "ada@acme.test")

    def operator() -> int:
        with app.app_context():
            expire_due(get_db())
        return 200

    rounds = ROUNDS // 3
    for _ in range(rounds):
        grant_id = expired_grant(app, email)
        calls: list[Callable[[], int]] = [
            *(lambda s=s: s.get(base + "/support", timeout=30).status_code for s in engineers * 2),
            lambda: owner.get(base + "/orgs/acme/support", timeout=30).status_code,
            operator,
        ]
        assert all_at_once(calls) == [200] * len(calls)
        with app.extensions["db_sessionmaker"]() as db:
            grant = db.get(SupportGrant, grant_id)
            assert grant is not None and grant.state == "ended" and grant.ended_by_id is None
            records = db.scalar(
                select(func.count()).where(
                    AuditEvent.action == "support.expire",
                    AuditEvent.resource_id == f"support:{grant_id}",
                )
            )
            assert records == 1
    ended = [m for m in read_outbox(app.config["MAIL_OUTBOX_DIR"])
             if email in m.text and "ended" in m.subject]  # fmt: skip
    assert len(ended) == rounds
