"""Who is asking, and how they proved it: the API's view of authentication.

Nothing here is decided by the policy: /me describes the principal, it does not act.
"""

from __future__ import annotations

from flask import Response
from flask_wtf.csrf import generate_csrf
from sqlalchemy import select

from ..authn.gate import login_required
from ..authn.sessions import is_fresh
from ..authz.policy import role_name
from ..authz.scope import active_organization
from ..db import get_db
from ..models import Organization, TokenScope
from ..principal import Principal, require_principal
from .blueprint import operation
from .registry import respond
from .schemas import AuthenticationOut, MembershipOut, MeOut, TokenOut, UserOut


@operation("GET", "/me", response=MeOut)
@login_required  # authentication gate: 401
def me() -> Response:
    """Who you are, where you can act, and how this request was authenticated.

    For a session, also the CSRF token that POST, PATCH and DELETE must send as
    X-CSRFToken. For a token, its scope and organization; its organizations list holds
    at most that one organization (none, once you are removed from it).
    """
    principal = require_principal()
    user = principal.user
    token = principal.access_token
    active = active_organization(principal)
    return respond(
        MeOut(
            user=UserOut(
                name=user.display_name, email=user.email, email_verified=user.email_verified
            ),
            organizations=memberships_reached(principal),
            active_organization=active.slug if active is not None else None,
            authentication=AuthenticationOut(
                method="token" if token is not None else "session",
                token=TokenOut(
                    id=token.public_id,
                    name=token.name,
                    scope=TokenScope(token.scope),
                    organization=token.organization.slug,
                    created_at=token.created_at,
                    expires_at=token.expires_at,
                )
                if token is not None
                else None,
                elevated=token is None and is_fresh(principal.session),
            ),
            csrf_token=generate_csrf() if token is None else None,
        )
    )


def memberships_reached(principal: Principal) -> list[MembershipOut]:
    """The organizations this request can act in, with the role in each, oldest first."""
    organizations = get_db().scalars(
        select(Organization).where(Organization.id.in_(principal.organization_ids))
    )
    by_id = {organization.id: organization for organization in organizations}
    return [
        MembershipOut(
            slug=by_id[org_id].slug,
            name=by_id[org_id].name,
            plan=by_id[org_id].plan,
            role=role,
            role_name=role_name(principal, org_id) or role,
            audit_retention_days=by_id[org_id].audit_retention_days,
        )
        for org_id, role in principal.roles.items()
        if org_id in by_id
    ]
