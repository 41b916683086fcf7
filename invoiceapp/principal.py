"""The principal: who authentication proved this request is from, plus their roles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import flask_login
from flask import g
from sqlalchemy import select

from .authn.access_tokens import current_access_token
from .authn.sessions import current_session
from .db import get_db
from .models import Membership, PersonalAccessToken, User, UserSession

# Session proofs that include a second factor (UserSession.proof).
TWO_FACTOR_PROOFS = frozenset({"password+totp", "password+recovery_code", "passkey"})


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

    @property
    def organization_ids(self) -> list[int]:
        return list(self.roles)


def current_principal() -> Principal | None:
    """None for an anonymous request. Built once per request."""
    if "principal" in g:
        return g.principal
    principal = None
    user = flask_login.current_user
    if user.is_authenticated:
        token = current_access_token()
        if token is not None:
            principal = _token_principal(user, token)
        else:
            principal = Principal(user=user, session=current_session(), roles=_roles_of(user))
    g.principal = principal
    return principal


def _roles_of(user: User, *, only: int | None = None) -> dict[int, str]:
    """The user's memberships as they are now: a removed member has no role on their next
    request, and a changed role applies at once."""
    query = (
        select(Membership.organization_id, Membership.role)
        .where(Membership.user_id == user.id)
        .order_by(Membership.id)
    )
    if only is not None:
        query = query.where(Membership.organization_id == only)
    return {org_id: role for org_id, role in get_db().execute(query)}


def _token_principal(user: User, token: PersonalAccessToken) -> Principal:
    """A token reaches one organization, with its user's current role there (if any).

    Roles in the user's other organizations are left out, so every scoped lookup and
    every policy question about them fails exactly as for a stranger: 404, not 403.
    """
    return Principal(
        user=user,
        session=None,
        roles=_roles_of(user, only=token.organization_id),
        token_scope=token.scope,
        access_token=token,
    )


def require_principal() -> Principal:
    """For code behind @login_required, where anonymous is already impossible."""
    principal = current_principal()
    if principal is None:  # pragma: no cover - the gate makes this unreachable
        raise RuntimeError("require_principal() outside a @login_required view")
    return principal
