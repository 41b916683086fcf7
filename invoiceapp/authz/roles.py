"""Custom roles as data: an organization's own roles, stored and looked up.

Which actions a custom role may hold, and how can() answers one, is in policy.py
(GRANTABLE_ACTIONS, custom_rule): the one place that says who may do what. This module
only keeps the rows: names and keys, the actions checked against that table, and who
holds a role, so that deleting a role that is still held can be refused (409) by name.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import CustomRole, Invitation, Membership, Organization, Role, User
from ..principal import RoleGrant
from .policy import GRANTABLE_ACTIONS

MAX_NAME_LENGTH = 40
KEY_LENGTH = 16  # the width of the role columns of memberships and invitations
BUILT_IN_ROLES = frozenset(role.value for role in Role)


class RoleInUse(Exception):
    """The role is still held: by these members, and by invitations to these addresses."""

    def __init__(self, members: list[str], invitations: list[str]) -> None:
        super().__init__("role in use")
        self.members = members
        self.invitations = invitations


@dataclass(frozen=True)
class RoleChange:
    """What an edit changed, for the audit log's reason."""

    old_name: str
    added: list[str]
    removed: list[str]

    def __str__(self) -> str:
        parts = [f"+{action}" for action in self.added] + [f"-{action}" for action in self.removed]
        return " ".join(parts) or "no action changed"


def custom_roles_of(db: Session, organization_id: int) -> list[CustomRole]:
    """The organization's custom roles, by name."""
    return list(
        db.scalars(
            select(CustomRole)
            .where(CustomRole.organization_id == organization_id)
            .order_by(CustomRole.name, CustomRole.id)
        )
    )


def grants_of(db: Session, organization_id: int) -> dict[str, RoleGrant]:
    """The organization's custom roles as the policy reads them, by key: one statement."""
    return {
        role.key: RoleGrant(role.key, role.name, frozenset(role.action_list))
        for role in custom_roles_of(db, organization_id)
    }


def custom_role_or_none(db: Session, organization_id: int, key: str) -> CustomRole | None:
    if len(key) > KEY_LENGTH:
        return None
    return db.scalar(
        select(CustomRole).where(
            CustomRole.organization_id == organization_id, CustomRole.key == key
        )
    )


def role_title(db: Session, organization_id: int, key: str) -> str:
    """A role key as people read it: "admin", or a custom role's name."""
    custom = None if key in BUILT_IN_ROLES else custom_role_or_none(db, organization_id, key)
    return custom.name if custom is not None else key


def name_problem(db: Session, organization_id: int, name: str, *, except_key: str = "") -> str:
    """Why ``name`` cannot name a role here, in words; "" when it can."""
    folded = name.casefold()
    if folded in BUILT_IN_ROLES:
        return f"“{name}” is a built-in role. Choose another name."
    if not _slug(name):
        return "Use at least one letter or digit in the name."
    for role in custom_roles_of(db, organization_id):
        if role.key != except_key and role.name.casefold() == folded:
            return "This organization already has a role with that name."
    return ""


def actions_problem(actions: list[str]) -> str:
    """Why these actions cannot make a role; "" when they can."""
    if not actions:
        return "Choose at least one action for the role."
    if any(action not in GRANTABLE_ACTIONS for action in actions):
        return "Only the actions listed can be given to a custom role."
    return ""


def create_role(
    db: Session, organization: Organization, name: str, actions: list[str]
) -> CustomRole:
    """Add a role (caller commits). Its key comes from the name and never changes after."""
    taken = {role.key for role in custom_roles_of(db, organization.id)} | BUILT_IN_ROLES
    role = CustomRole(
        organization_id=organization.id,
        key=_free_key(_slug(name), taken),
        name=name,
        actions=_stored(actions),
    )
    db.add(role)
    db.flush()
    return role


def update_role(db: Session, role: CustomRole, name: str, actions: list[str]) -> RoleChange:
    """Rename a role and set its actions (caller commits). Its holders get the new actions
    on their next request: the principal reads roles afresh for every request."""
    before = set(role.action_list)
    change = RoleChange(role.name, sorted(set(actions) - before), sorted(before - set(actions)))
    role.name = name
    role.actions = _stored(actions)
    role.updated_at = utcnow()
    db.flush()
    return change


def delete_role(db: Session, role: CustomRole) -> None:
    """Delete a role nobody holds (caller commits and has locked the organization, so that
    no role change or invitation can hand it out meanwhile). RoleInUse names the holders."""
    members = list(
        db.scalars(
            select(User.display_name)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == role.organization_id, Membership.role == role.key)
            .order_by(User.display_name)
        )
    )
    # Expired invitations still count: they can be sent again with the same role.
    invitations = list(
        db.scalars(
            select(Invitation.email)
            .where(
                Invitation.organization_id == role.organization_id,
                Invitation.role == role.key,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .order_by(Invitation.email)
        )
    )
    if members or invitations:
        raise RoleInUse(members, invitations)
    db.delete(role)
    db.flush()


def _stored(actions: list[str]) -> str:
    """Actions in the table's order, once each."""
    wanted = set(actions)
    return " ".join(action for action in GRANTABLE_ACTIONS if action in wanted)


def _slug(name: str) -> str:
    """ "Bookkeeper (EU)" -> "bookkeeper-eu": lower-case ASCII letters, digits and hyphens."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:KEY_LENGTH].strip("-")


def _free_key(base: str, taken: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``… when a role already has it."""
    if base not in taken:
        return base
    number = 2
    while True:
        suffix = f"-{number}"
        key = base[: KEY_LENGTH - len(suffix)].rstrip("-") + suffix
        if key not in taken:
            return key
        number += 1
