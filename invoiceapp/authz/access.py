"""Access review: who in an organization may do what, and why. can() asked the other way.

can() answers one principal about one action. The review asks every member about every
action on one invoice (or one member about every action of the table). Members who hold
the same role get the same answer, except where a rule looks at who wrote the invoice
("own drafts only"), so can() is asked once per role and authorship, never once per
member: two statements (the members with their roles, the organization's custom roles)
and a few dozen can() calls, however many members there are. The answers are can()'s
own, so the review cannot disagree with what a request would get.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import Invoice, Membership, Organization, User, UserSession
from ..principal import Principal, RoleGrant
from . import org_security
from .policy import PER_RESOURCE_RULES, POLICY, Decision, can, role_name, rule_of
from .roles import grants_of

# What one can do to one invoice (creating and exporting are about the organization).
INVOICE_ACTIONS = (
    "invoice.read",
    "invoice.update",
    "invoice.delete",
    "invoice.send",
    "invoice.mark_paid",
    "invoice.void",
    "invoice.duplicate",
)


def review_session(organization: Organization) -> UserSession:
    """The session the review answers for: one that meets the organization's security
    policy (signed in just now, with a passkey where only passkeys will do, else with a
    second factor). The policy refuses every other session whoever the member is, so the
    review states it once, above the answers (conditions()), instead of in every row."""
    proof = "passkey" if org_security.proof_rule(organization) == org_security.PASSKEY else None
    now = utcnow()
    return UserSession(proof=proof or "password+totp", created_at=now, authenticated_at=now)


def conditions(organization: Organization) -> tuple[str, ...]:
    """The organization's security policy in words, when it asks more than the default:
    what a member's session must meet for the review's answers to hold."""
    flags = org_security.security_policy_flags(organization)
    default = org_security.proof_rule(organization) == org_security.ANY and len(flags) == 1
    return () if default else flags


@dataclass(frozen=True)
class Access:
    """One member, one action: the answer and can()'s reason for it."""

    user_id: int
    name: str
    email: str
    role: str  # as people read it: "admin", "Bookkeeper"
    action: str
    allowed: bool | None  # None: depends on which invoice or member
    needs_fresh_password: bool
    reason: str


@dataclass(frozen=True)
class _Member:
    user_id: int
    name: str
    email: str
    role: str  # the key


def invoice_review(db: Session, organization: Organization, invoice: Invoice) -> list[Access]:
    """Every member × every invoice action, for this invoice."""
    grants = grants_of(db, organization.id)
    # (role, wrote the invoice) -> the answers for every invoice action, asked once.
    answers: dict[tuple[str, bool], tuple[str, list[Decision]]] = {}
    rows = []
    for member in _members(db, organization):
        author = member.user_id == invoice.created_by_id
        if (member.role, author) not in answers:
            writer = member.user_id if author else 0  # 0: nobody's user id
            stand_in = _stand_in(organization, member.role, grants, writer)
            label = role_name(stand_in, organization.id) or member.role
            answers[member.role, author] = (
                label,
                [can(stand_in, action, invoice) for action in INVOICE_ACTIONS],
            )
        label, decisions = answers[member.role, author]
        rows += [_row(member, label, decision) for decision in decisions]
    return rows


def member_review(db: Session, organization: Organization, user_id: int) -> list[Access]:
    """One member × every action of the table, in this organization."""
    grants = grants_of(db, organization.id)
    member = next((m for m in _members(db, organization) if m.user_id == user_id), None)
    if member is None:
        return []
    stand_in = _stand_in(organization, member.role, grants, member.user_id)
    label = role_name(stand_in, organization.id) or member.role
    rows = []
    for action in POLICY:
        rule = rule_of(stand_in, action, organization.id)
        if rule is not None and rule in PER_RESOURCE_RULES:
            rows.append(Access(member.user_id, member.name, member.email, label, action, None,
                               False, f"Depends on which one: {rule.value}"))  # fmt: skip
            continue
        rows.append(_row(member, label, can(stand_in, action, organization)))
    return rows


def _members(db: Session, organization: Organization) -> list[_Member]:
    rows = db.execute(
        select(Membership.user_id, User.display_name, User.email, Membership.role)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == organization.id)
        .order_by(User.display_name, User.id)
    )
    return [_Member(*row) for row in rows]


def _stand_in(
    organization: Organization, role: str, grants: dict[str, RoleGrant], user_id: int
) -> Principal:
    """A principal holding ``role`` here, as can() sees a member: no query of its own."""
    return Principal(
        user=User(id=user_id),
        session=review_session(organization),
        roles={organization.id: role},
        organizations={organization.id: organization},
        custom_roles={organization.id: grants},
    )


def _row(member: _Member, label: str, decision: Decision) -> Access:
    return Access(
        user_id=member.user_id,
        name=member.name,
        email=member.email,
        role=label,
        action=decision.action,
        allowed=decision.allowed,
        needs_fresh_password=decision.allowed and decision.requires_elevation,
        reason=decision.reason,
    )
