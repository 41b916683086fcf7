"""Support access, with the customer's consent: the mechanics (no pages, no policy).

A platform support engineer (``users.is_staff``, set only by ``flask staff grant``) asks an
organization for access, with a reason. The organization's owner approves it for a few
hours with a role of their choosing (read-only by default), or denies it; the owner or the
engineer can end it at any moment. While it lasts, the engineer's principal holds that
organization with that role (invoiceapp.principal), and can() refuses the sensitive actions
whatever the role (invoiceapp.authz.policy, SUPPORT_REFUSED).

Two facts stay apart, and both are recorded: who is *authenticated* (the engineer, with
their own session; no customer credential is ever used) and whose *permission* applies
(the owner's consent: "support access granted by Ada", on every audit record made under it).

Every change of state is one conditional UPDATE (``WHERE state = …``), so of two people
ending a grant at the same moment, or two workers noticing its expiry, exactly one wins,
and only the winner writes the audit record and mails the owner: at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, g, has_request_context
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .audit import record_audit
from .db import rows_changed, utcnow
from .mail import link_for, send_mail
from .models import (
    OPEN_SUPPORT_STATES,
    Membership,
    Organization,
    Role,
    SupportGrant,
    SupportState,
    User,
)

# The built-in read-only choice: invoice.read and nothing else (authz.policy reads it).
# Custom role keys are made of lower-case letters, digits and hyphens, never "_".
SUPPORT_READ_ONLY = "read_only"
REASON_MIN, REASON_MAX = 10, 500
MAX_HOURS = 4


@dataclass(frozen=True)
class SupportBasis:
    """One live grant, as the principal, the policy, the banner and the audit read it."""

    grant_id: int
    organization_id: int
    organization_slug: str
    organization_name: str
    role: str
    granted_by: str  # the approving owner's name
    expires_at: datetime
    reason: str

    @property
    def basis(self) -> str:
        """How the audit log and the banner say whose permission applies."""
        return f"support access granted by {self.granted_by}"

    def minutes_left(self, now: datetime | None = None) -> int:
        left = self.expires_at - (now or utcnow())
        return max(0, int(left.total_seconds() + 59) // 60)


class SupportRequestError(ValueError):
    """A request the form must refuse (an open one exists already)."""


# --- Reading: the principal asks this on every request of a staff user ----------------------


def live_support_of(db: Session, user: User) -> list[tuple[SupportBasis, Organization]]:
    """The user's approved grants that have not expired, each with its organization, read
    now: an expired grant stops working on the very next request. Grants found expired are
    ended here (and their owners mailed), once. Non-staff users have none and cost no query."""
    if not user.is_staff:
        return []
    now = utcnow()
    rows = db.execute(
        select(SupportGrant, Organization, User.display_name)
        .join(Organization, Organization.id == SupportGrant.organization_id)
        .outerjoin(User, User.id == SupportGrant.approved_by_id)
        .where(
            SupportGrant.staff_user_id == user.id,
            SupportGrant.state == SupportState.APPROVED.value,
        )
    ).all()
    live: list[tuple[SupportBasis, Organization]] = []
    for grant, organization, approver in rows:
        assert grant.expires_at is not None  # approved grants always have one
        if grant.expires_at <= now:
            expire_grant(db, grant.id, now)
            continue
        live.append(
            (
                SupportBasis(
                    grant_id=grant.id,
                    organization_id=organization.id,
                    organization_slug=organization.slug,
                    organization_name=organization.name,
                    role=grant.role,
                    granted_by=approver or "a former owner",
                    expires_at=grant.expires_at,
                    reason=grant.reason,
                ),
                organization,
            )
        )
    return live


def remember_for_audit(supports: list[SupportBasis]) -> None:
    """Let invoiceapp.audit stamp every record of these organizations with the basis and
    the reason, for the rest of this request."""
    if has_request_context():
        g.support_access = {s.organization_id: (s.basis, s.reason) for s in supports}


# --- Changing state ---------------------------------------------------------------------------


def request_access(
    db: Session, staff: User, organization: Organization, reason: str
) -> SupportGrant:
    """Ask an organization for access. It grants nothing until its owner approves."""
    expire_due(db, organization_id=organization.id)
    grant = SupportGrant(
        organization_id=organization.id,
        staff_user_id=staff.id,
        reason=reason,
        role=SUPPORT_READ_ONLY,
        state=SupportState.REQUESTED.value,
        requested_at=utcnow(),
    )
    db.add(grant)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise SupportRequestError(
            "You already have an open request or grant for this organization."
        ) from None
    record_audit(
        "support.request",
        organization_id=organization.id,
        resource_id=f"support:{grant.id}",
        reason=f"{staff.display_name} asked for support access",
        support_reason=reason,
    )
    return grant


def approve(db: Session, grant: SupportGrant, owner: User, role: str, hours: int) -> bool:
    """Start the access for ``hours``; False if the request was no longer pending."""
    now = utcnow()
    changed = rows_changed(
        db,
        update(SupportGrant)
        .where(SupportGrant.id == grant.id, SupportGrant.state == SupportState.REQUESTED.value)
        .values(
            state=SupportState.APPROVED.value,
            role=role,
            approved_by_id=owner.id,
            approved_at=now,
            expires_at=now + timedelta(hours=hours),
        ),
    )
    db.commit()
    if not changed:
        return False
    db.refresh(grant)
    record_audit(
        "support.approve",
        organization_id=grant.organization_id,
        resource_id=f"support:{grant.id}",
        reason=f"approved as {role} for {hours} hours",
        on_behalf_basis=f"support access granted by {owner.display_name}",
        support_reason=grant.reason,
    )
    _mail_owners(db, grant, "started")
    return True


def deny(db: Session, grant: SupportGrant, owner: User) -> bool:
    changed = rows_changed(
        db,
        update(SupportGrant)
        .where(SupportGrant.id == grant.id, SupportGrant.state == SupportState.REQUESTED.value)
        .values(state=SupportState.DENIED.value, ended_at=utcnow(), ended_by_id=owner.id),
    )
    db.commit()
    if changed:
        record_audit(
            "support.deny",
            organization_id=grant.organization_id,
            resource_id=f"support:{grant.id}",
            reason="the owner denied the request",
            support_reason=grant.reason,
        )
    return bool(changed)


def end(db: Session, grant: SupportGrant, by: User | None, why: str = "") -> bool:
    """End a pending request or a live grant now. ``by`` None: nobody in particular (the
    staff flag was revoked). The one who ends it writes the record and mails: once."""
    was_live = grant.state == SupportState.APPROVED.value
    changed = rows_changed(
        db,
        update(SupportGrant)
        .where(SupportGrant.id == grant.id, SupportGrant.state.in_(OPEN_SUPPORT_STATES))
        .values(
            state=SupportState.ENDED.value,
            ended_at=utcnow(),
            ended_by_id=by.id if by is not None else None,
        ),
    )
    db.commit()
    if not changed:
        return False
    record_audit(
        "support.end",
        organization_id=grant.organization_id,
        resource_id=f"support:{grant.id}",
        reason=why or (f"ended by {by.display_name}" if by is not None else "ended"),
        support_reason=grant.reason,
    )
    if was_live:
        _mail_owners(db, grant, "ended")
    return True


def expire_grant(db: Session, grant_id: int, now: datetime) -> bool:
    """End one grant whose time is up. The conditional UPDATE lets exactly one caller
    (request, owner's page, ``flask support expire``, any worker) record it and mail."""
    changed = rows_changed(
        db,
        update(SupportGrant)
        .where(
            SupportGrant.id == grant_id,
            SupportGrant.state == SupportState.APPROVED.value,
            SupportGrant.expires_at <= now,
        )
        .values(state=SupportState.ENDED.value, ended_at=now, ended_by_id=None),
    )
    db.commit()
    if not changed:
        return False
    grant = db.get(SupportGrant, grant_id)
    assert grant is not None
    record_audit(
        "support.expire",
        organization_id=grant.organization_id,
        resource_id=f"support:{grant.id}",
        reason="the support access expired",
        support_reason=grant.reason,
        as_system=True,
    )
    _mail_owners(db, grant, "ended")
    return True


def expire_due(db: Session, *, organization_id: int | None = None) -> int:
    """End every approved grant past its time (of one organization, or all); how many."""
    now = utcnow()
    query = select(SupportGrant.id).where(
        SupportGrant.state == SupportState.APPROVED.value, SupportGrant.expires_at <= now
    )
    if organization_id is not None:
        query = query.where(SupportGrant.organization_id == organization_id)
    return sum(expire_grant(db, grant_id, now) for grant_id in list(db.scalars(query)))


def open_grants_of(db: Session, staff: User) -> list[SupportGrant]:
    return list(
        db.scalars(
            select(SupportGrant).where(
                SupportGrant.staff_user_id == staff.id,
                SupportGrant.state.in_(OPEN_SUPPORT_STATES),
            )
        )
    )


def _mail_owners(db: Session, grant: SupportGrant, what: str) -> None:
    """Tell the organization's owner that support access started or ended."""
    organization = db.get(Organization, grant.organization_id)
    staff = db.get(User, grant.staff_user_id)
    if organization is None or staff is None:
        return
    owners = db.scalars(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == organization.id, Membership.role == Role.OWNER.value)
    )
    subject = f"Support access to {organization.name} {what}"
    for owner in owners:
        sent = send_mail(
            owner.email,
            subject,
            f"support_access_{what}",
            name=owner.display_name,
            organization=organization.name,
            engineer=staff.display_name,
            engineer_email=staff.email,
            reason=grant.reason,
            role=grant.role,
            expires_at=grant.expires_at,
            ended_at=grant.ended_at,
            support_url=link_for("support.org_page", slug=organization.slug),
        )
        if not sent:
            current_app.logger.warning("support access mail %s was not delivered", what)
