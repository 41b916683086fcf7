"""Organizations, their members and their audit logs, as JSON.

organization = organization_or_404(slug)   # scope: 404, never 403
authorize("audit.read", organization)      # policy: 403 for members
...one page of rows, from that organization only
"""

from __future__ import annotations

from typing import Literal, cast

from flask import Response
from sqlalchemy import select
from sqlalchemy.orm import contains_eager

from ..audit import repeats_of
from ..audit_log import AuditFilters
from ..authn.gate import login_required
from ..authz.enforce import authorize
from ..authz.policy import POLICY, actions_held, can
from ..authz.roles import custom_roles_of
from ..db import get_db
from ..models import AuditEvent, Membership, Organization, Role, User
from ..principal import Principal, require_principal
from .blueprint import operation
from .lookups import organization_or_404
from .me import memberships_reached
from .pagination import keyset_page
from .registry import read_query, respond
from .schemas import (
    AuditEventOut,
    AuditPage,
    AuditQuery,
    MemberOut,
    MemberPage,
    OrganizationList,
    PageQuery,
    RoleList,
    RoleOut,
)

Decision = Literal["allowed", "denied"]


@operation("GET", "/orgs", response=OrganizationList)
@login_required  # authentication gate: 401
def list_organizations() -> Response:
    """Your organizations and your role in each (a token: only its own).

    Each row is asked of the policy (org.read), like a page deciding which links to show:
    an organization that refuses this request (say, it requires two-factor) is left out.
    """
    principal = require_principal()
    mine = memberships_reached(principal)
    slugs = {row.slug for row in mine}
    readable = {
        organization.slug
        for organization in get_db().scalars(
            select(Organization).where(Organization.slug.in_(slugs))
        )
        if can(principal, "org.read", organization)
    }
    return respond(OrganizationList(items=[row for row in mine if row.slug in readable]))


@operation("GET", "/orgs/<slug>/members", query=PageQuery, response=MemberPage, errors=(403, 404))
@login_required
def list_members(slug: str) -> Response:
    """The organization's members and their roles, longest-standing first."""
    query = read_query(PageQuery)
    organization = organization_or_404(slug)  # scope: 404, never 403
    authorize("member.read", organization)  # policy: 403
    members = (
        select(Membership)
        .join(User, User.id == Membership.user_id)
        .options(contains_eager(Membership.user))
        .where(Membership.organization_id == organization.id)
    )
    page, next_cursor = keyset_page(
        members,
        kind="members",
        created_at=Membership.created_at,
        tie=User.email,  # unique, and already visible to whoever reads the list
        position=lambda membership: (membership.created_at, membership.user.email),
        tie_type=str,
        limit=query.limit,
        cursor=query.cursor,
        newest_first=False,
    )
    names = {role.key: role.name for role in custom_roles_of(get_db(), organization.id)}
    items = [
        MemberOut(
            name=membership.user.display_name,
            email=membership.user.email,
            role=membership.role,
            role_name=names.get(membership.role, membership.role),
            joined_at=membership.created_at,
        )
        for membership in page
    ]
    return respond(MemberPage(items=items, next_cursor=next_cursor))


@operation("GET", "/orgs/<slug>/roles", response=RoleList, errors=(403, 404))
@login_required
def list_roles(slug: str) -> Response:
    """The roles members here may hold: the three built-in ones, then the organization's
    own, each with the actions it holds. Whoever may read the members may read this."""
    organization = organization_or_404(slug)  # scope: 404, never 403
    authorize("member.read", organization)  # policy: 403
    principal = require_principal()
    items = [
        RoleOut(key=role.value, name=role.value, built_in=True,
                actions=_held(principal, organization, role.value))
        for role in Role
    ] + [
        RoleOut(key=role.key, name=role.name, built_in=False,
                actions=_held(principal, organization, role.key))
        for role in custom_roles_of(get_db(), organization.id)
    ]  # fmt: skip
    return respond(RoleList(items=items))


def _held(principal: Principal, organization: Organization, key: str) -> list[str]:
    """The actions a role holds, in the policy table's order."""
    held = actions_held(principal, organization.id, key) or frozenset()
    return [action for action in POLICY if action in held]


@operation("GET", "/orgs/<slug>/audit", query=AuditQuery, response=AuditPage, errors=(403, 404))
@login_required
def list_audit_events(slug: str) -> Response:
    """The organization's audit log, newest first (owners and admins).

    Filter as on the page: ?actor=, ?action=, ?target=, ?decision=allowed|denied, and
    ?since= / ?until= (days, UTC, both included).
    """
    query = read_query(AuditQuery)
    organization = organization_or_404(slug)  # scope: 404, never 403
    authorize("audit.read", organization)  # policy: 403 for members
    filters = AuditFilters(
        action=query.action,
        actor=query.actor.lower() if query.actor else None,
        target=query.target,
        decision=query.decision,
        since=query.since,
        until=query.until,
    )
    events = filters.applied_to(
        select(AuditEvent).where(AuditEvent.organization_id == organization.id)
    )
    page, next_cursor = keyset_page(
        events,
        kind="audit",
        created_at=AuditEvent.created_at,
        tie=AuditEvent.id,
        position=lambda event: (event.created_at, event.id),
        tie_type=int,
        limit=query.limit,
        cursor=query.cursor,
    )
    repeats = repeats_of(get_db(), page)
    items = [
        AuditEventOut(
            created_at=event.created_at,
            actor_email=event.actor_email,
            action=event.action,
            resource_id=event.resource_id,
            decision=cast(Decision, event.decision),  # audit.py writes no other
            status=event.status,
            reason=event.reason,
            rule=event.rule,
            ip_address=event.ip_address,
            seq=event.chain_seq,
            record_hash=event.record_hash,
            count=repeats[event.id].refusals if event.id in repeats else 1,
            last_at=repeats[event.id].last_at if event.id in repeats else None,
            on_behalf_basis=event.on_behalf_basis,
            support_reason=event.support_reason,
        )
        for event in page
    ]
    return respond(AuditPage(items=items, next_cursor=next_cursor))
