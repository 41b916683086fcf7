"""The principal: who authentication proved this request is from, plus their roles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import flask_login
from flask import g, request
from sqlalchemy import bindparam, select

from .authn.access_tokens import current_access_token, read_with_token
from .authn.sessions import (
    TWO_FACTOR_PROOFS,
    ReadWithSession,
    current_session,
    read_with_session,
)
from .db import get_db
from .models import (
    CustomRole,
    Membership,
    Organization,
    PersonalAccessToken,
    Role,
    User,
    UserSession,
)
from .request_locals import request_g
from .shares import Grant, grants_of
from .support_access import SupportBasis, live_support_of, remember_for_audit

BUILT_IN_ROLES = frozenset(role.value for role in Role)


@dataclass(frozen=True)
class RoleGrant:
    """A custom role as the policy reads it: its key, its name and the actions it holds."""

    key: str
    name: str
    actions: frozenset[str]


@dataclass(frozen=True)
class ViewAs:
    """An owner or admin looking at one organization as one of its members (or one of its
    roles) would see it. Only the role fed to can() there changes, never who is signed in."""

    organization_id: int
    organization_slug: str
    organization_name: str
    role: str  # the member's current role there, or the chosen role (a key)
    member_id: int | None  # None when viewing as a role rather than a person
    member_name: str | None
    role_name: str = ""  # the role as people read it: "admin", or a custom role's name

    @property
    def who(self) -> str:
        """ "Linus Torvalds (member)" or "the Bookkeeper role": how pages and the audit
        say it."""
        role = self.role_name or self.role
        if self.member_name is not None:
            return f"{self.member_name} ({role})"
        return f"the {role} role"


@dataclass(frozen=True)
class Principal:
    user: User
    session: UserSession | None
    # organization id -> role. Roles belong to a membership, never to the user.
    roles: Mapping[int, str]
    # Set when the request came with a personal access token instead of a session: the
    # token's scope ("read" or "write") narrows the roles, and roles hold only its org.
    token_scope: str | None = None
    # The token itself, for /api/v1/me and the rate limits; never read by the policy.
    access_token: PersonalAccessToken | None = None
    # The organizations behind ``roles``, read in the same statement: the header's switcher
    # and the policy's organization rules (plan, flags) need no query of their own.
    organizations: Mapping[int, Organization] = field(default_factory=dict)
    # View-as mode: what is being looked at, and the signed-in person's own principal
    # (their real roles), for the banner, the trace and the checks that keep it honest.
    viewing_as: ViewAs | None = None
    viewer: Principal | None = None
    # Shares accepted from organizations this person may not belong to (invoiceapp.shares):
    # read with the roles, in a browser session only; a token and the API carry none.
    grants: tuple[Grant, ...] = ()
    # organization id -> custom role key -> the role. None until the policy first meets a
    # key that is not a built-in role: then one statement reads them for all of ``roles``,
    # so a request costs at most one query more, however many times it asks can().
    custom_roles: Mapping[int, Mapping[str, RoleGrant]] | None = None
    # Support access (invoiceapp.support_access): organization id -> the live grant that
    # put it in ``roles``. The person is still themselves; the basis is the owner's consent.
    # Browser sessions only: the API and tokens never carry it.
    support: Mapping[int, SupportBasis] = field(default_factory=dict)

    @property
    def proof(self) -> str:
        """How this request's identity was last proven (password, passkey, token…)."""
        if self.session is not None:
            return self.session.proof
        return "token" if self.token_scope else "none"

    @property
    def two_factor_proven(self) -> bool:
        return self.proof in TWO_FACTOR_PROOFS

    def role_in(self, organization_id: int) -> str | None:
        return self.roles.get(organization_id)

    def user_id_in(self, organization_id: int) -> int | None:
        """Whose own invoices and membership count as "yours" in this organization: the
        signed-in user's, or in view-as mode the viewed member's (a role: nobody's)."""
        view = self.viewing_as
        if view is not None and view.organization_id == organization_id:
            return view.member_id
        return self.user.id

    @property
    def organization_ids(self) -> list[int]:
        return list(self.roles)

    def custom_role(self, organization_id: int, key: str) -> RoleGrant | None:
        """The custom role ``key`` of one of the principal's organizations, as it is now."""
        return self.custom_roles_in(organization_id).get(key)

    def custom_roles_in(self, organization_id: int) -> Mapping[str, RoleGrant]:
        """Every custom role of one of the principal's organizations, by key."""
        loaded = self.custom_roles
        if loaded is None:
            loaded = _custom_roles_in(list(self.roles))
            object.__setattr__(self, "custom_roles", loaded)  # a cache: frozen otherwise
        return loaded.get(organization_id, {})


def _custom_roles_in(organization_ids: list[int]) -> dict[int, dict[str, RoleGrant]]:
    """Every custom role of these organizations, in one statement."""
    found: dict[int, dict[str, RoleGrant]] = {}
    if not organization_ids:
        return found
    rows = get_db().scalars(
        select(CustomRole).where(CustomRole.organization_id.in_(organization_ids))
    )
    for role in rows:
        grant = RoleGrant(role.key, role.name, frozenset(role.actions.split()))
        found.setdefault(role.organization_id, {})[role.key] = grant
    return found


# "Not built yet" on ``g``, as opposed to None (anonymous). current_principal is asked about
# eight times per page (views, policy, templates): one read of ``g`` each, not two.
_NOT_BUILT = object()


def current_principal() -> Principal | None:
    """None for an anonymous request. Built once per request."""
    request_globals = request_g()  # read ~8 times a page: without the proxy (request_locals)
    principal = request_globals.get("principal", _NOT_BUILT)
    if principal is not _NOT_BUILT:
        return principal
    principal = None
    # The user itself, not the current_user proxy: every principal.user.<attribute> the
    # views, the policy and the templates read would otherwise go through Flask-Login's
    # lookup again (a context-local proxy, then g) — about eight times a page.
    user = flask_login.current_user._get_current_object()
    if user.is_authenticated:
        token = current_access_token()
        if token is not None:
            principal = _token_principal(user, token)
        else:
            auth_session = current_session()
            read = read_with_session(user.id)
            roles, organizations = _memberships_of(user, read=read)
            principal = Principal(
                user=user, session=auth_session, roles=roles, organizations=organizations
            )
            if not request.path.startswith("/api/"):  # the API always acts as the real user
                # The session's statement said whether there are any: most users hold none.
                if read is None or read.has_live_share:
                    principal = replace(principal, grants=grants_of(user))
                principal = _with_support(principal)
                principal = _viewing_as(principal) or principal
    request_globals.principal = principal
    return principal


def _with_support(principal: Principal) -> Principal:
    """Scope is "my organizations OR a shared customer OR a supported organization": a live
    support grant adds its organization with the role the owner chose. Read afresh on every
    request (never cached), so an expired or ended grant stops at the next one. Where the
    engineer is a member anyway, the membership is what counts."""
    live = [
        (basis, organization)
        for basis, organization in live_support_of(get_db(), principal.user)
        if basis.organization_id not in principal.roles
    ]
    supports = [basis for basis, _organization in live]
    remember_for_audit(supports)
    if not supports:
        return principal
    organizations = {organization.id: organization for _basis, organization in live}
    return replace(
        principal,
        roles={**principal.roles, **{s.organization_id: s.role for s in supports}},
        organizations={**principal.organizations, **organizations},
        support={s.organization_id: s for s in supports},
    )


def forget_principal() -> None:
    """Build the principal again on its next use (view-as started or ended)."""
    g.pop("principal", None)


def _viewing_as(real: Principal) -> Principal | None:
    """View-as mode: the same person and session, with the viewed member's role (or the
    chosen role) in the one organization being looked at. The one place it is applied,
    so pages, buttons, traces and authorize() all see it.

    None when the session is not viewing, or the view no longer holds: the viewer or the
    member has left the organization. (Whether the viewer may still look is the policy's
    question, asked on every request by invoiceapp.authz.view_as.)"""
    session = real.session
    if session is None or session.view_as_organization_id is None:
        return None
    organization = real.organizations.get(session.view_as_organization_id)
    if organization is None:
        return None  # the viewer is no longer a member there
    member: User | None = None
    role = session.view_as_role
    if session.view_as_user_id is not None:
        member = get_db().get(User, session.view_as_user_id)
        viewed_roles, _ = _memberships_of(member, only=organization.id) if member else ({}, {})
        role = viewed_roles.get(organization.id)
    if role is None:
        return None  # the member has left, or was deleted
    view = ViewAs(
        organization_id=organization.id,
        organization_slug=organization.slug,
        organization_name=organization.name,
        role=role,
        member_id=member.id if member is not None else None,
        member_name=member.display_name if member is not None else None,
        role_name=_role_name(real, organization.id, role),
    )
    return replace(real, roles={**real.roles, organization.id: role}, viewing_as=view, viewer=real)


def _role_name(principal: Principal, organization_id: int, role: str) -> str:
    """A built-in role's key, or a custom role's name (read with the principal's custom
    roles, so only in view-as mode of a custom role does this cost a statement)."""
    if role in BUILT_IN_ROLES:
        return role
    custom = principal.custom_role(organization_id, role)
    return custom.name if custom is not None else role


# A user's roles with their organizations, in the order they joined; built once with bound
# parameters, since it runs on every signed-in request (see bench/throughput.py).
_MEMBERSHIPS = (
    select(Membership.role, Organization)
    .join(Organization, Organization.id == Membership.organization_id)
    .where(Membership.user_id == bindparam("user_id"))
    .order_by(Membership.id)
)
_MEMBERSHIP_IN_ONE = _MEMBERSHIPS.where(Membership.organization_id == bindparam("organization_id"))


def _memberships_of(
    user: User, *, only: int | None = None, read: ReadWithSession | None = None
) -> tuple[dict[int, str], dict[int, Organization]]:
    """The user's memberships as they are now: a removed member has no role on their next
    request, and a changed role applies at once. One statement gives the roles and their
    organizations, so the header and the policy's organization rules need no other; for a
    browser session it is the session's own statement (``read``), so none at all."""
    rows: Iterable[tuple[str, Organization]]
    if read is not None and only is None:
        rows = read.memberships
    elif only is None:
        rows = get_db().execute(_MEMBERSHIPS, {"user_id": user.id})
    else:
        rows = get_db().execute(_MEMBERSHIP_IN_ONE, {"user_id": user.id, "organization_id": only})
    roles: dict[int, str] = {}
    organizations: dict[int, Organization] = {}
    for role, organization in rows:
        roles[organization.id] = role
        organizations[organization.id] = organization
    return roles, organizations


def _token_principal(user: User, token: PersonalAccessToken) -> Principal:
    """A token reaches one organization, with its user's current role there (if any).

    Roles in the user's other organizations are left out, so every scoped lookup and
    every policy question about them fails exactly as for a stranger: 404, not 403.
    """
    read = read_with_token(user.id)
    if read is None:
        roles, organizations = _memberships_of(user, only=token.organization_id)
    elif read.role is None:  # no longer a member there: the token reaches nothing
        roles, organizations = {}, {}
    else:  # the token's own statement read the role: no statement of its own
        roles = {read.organization.id: read.role}
        organizations = {read.organization.id: read.organization}
    return Principal(
        user=user,
        session=None,
        roles=roles,
        token_scope=token.scope,
        access_token=token,
        organizations=organizations,
    )


def require_principal() -> Principal:
    """For code behind @login_required, where anonymous is already impossible."""
    principal = current_principal()
    if principal is None:  # pragma: no cover - the gate makes this unreachable
        raise RuntimeError("require_principal() outside a @login_required view")
    return principal
