"""View as member: an owner or admin looks at the organization as a member (or a role)
sees it, without signing in as them. Authorization, not authentication, is what changes.

- Starting stores the view on the viewer's own server-side session (three columns); the
  signed-in user, the cookie and the proof stay exactly as they were.
- invoiceapp.principal applies it: the principal fed to can() for that organization has
  the viewed member's role. Pages, buttons, traces and authorize() follow by themselves.
- view_as_gate() runs on every request after CSRF (invoiceapp.gates): it ends a view the
  viewer may no longer hold, and refuses every write with a 403 that names the mode, so
  no view can forget. Only ending the view and signing out are let through.
- The API ignores view-as: a token or cookie request to /api/ acts as the real user.

Starting and ending are audited; so is every write refused in the mode (as any 403).
"""

from __future__ import annotations

from flask import request

from ..audit import DENIED, record_audit
from ..authn.sessions import current_session
from ..db import get_db
from ..models import Membership, Organization, UserSession
from ..principal import Principal, ViewAs, current_principal, forget_principal
from .enforce import PermissionDenied, authorize
from .policy import VIEW_AS_RULE, Decision, can
from .roles import role_title

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# The only writes view-as mode lets through: leaving it, and leaving altogether.
ALLOWED_WHILE_VIEWING = frozenset({"view_as.end", "authn.sign_out"})


def start_view_as(
    organization: Organization, *, member: Membership | None, role: str | None
) -> None:
    """Authorize (403 when refused), store the view on this session and commit; then the
    audit record (written on its own connection, so after the commit)."""
    principal = _real_principal()
    target_role = member.role if member is not None else role
    authorize("org.view_as", organization, role=target_role)
    session = _session_of(principal)
    session.view_as_organization_id = organization.id
    session.view_as_user_id = member.user_id if member is not None else None
    session.view_as_role = None if member is not None else role
    # The pages that work in "the active organization" (the invoice list) show this one.
    session.active_organization_id = organization.id
    get_db().commit()
    forget_principal()
    who = f"membership:{member.user_id}" if member is not None else f"role:{role}"
    called = role_title(get_db(), organization.id, target_role or "")
    name = f"the {called} role" if member is None else f"{member.user.display_name} ({called})"
    record_audit(
        "org.view_as",
        organization_id=organization.id,
        resource_id=who,
        reason=f"started viewing as {name}; nothing can be changed meanwhile",
    )


def end_view_as(principal: Principal, *, reason: str = "ended by the viewer") -> None:
    """Clear the view from this session, commit, and audit it."""
    view = principal.viewing_as
    if view is None:
        return
    who = f"membership:{view.member_id}" if view.member_id is not None else f"role:{view.role}"
    _clear(_session_of(principal), f"{reason} (was viewing as {view.who})", who)


def _clear(session: UserSession, reason: str, who: str | None) -> None:
    organization_id = session.view_as_organization_id
    session.view_as_organization_id = None
    session.view_as_user_id = None
    session.view_as_role = None
    get_db().commit()
    forget_principal()
    record_audit("org.view_as.end", organization_id=organization_id, resource_id=who,
                 reason=reason)  # fmt: skip


def view_as_gate() -> None:
    """Every request: a view that no longer holds ends; a write while viewing is a 403."""
    if request.routing_exception is not None:
        return  # a 404 or 405 follows whoever asks: nothing to look at, no statement spent
    auth_session = current_session()
    if auth_session is None or auth_session.view_as_organization_id is None:
        return  # the usual case, and no statement spent on it
    if request.path.startswith("/api/"):
        return  # the API acts as the real user (invoiceapp.principal)
    principal = current_principal()
    if principal is None:
        return
    if principal.viewing_as is None or principal.viewer is None:
        # The member, or the viewer, has left the organization: nothing left to look at.
        _clear(auth_session, "ended: the member is no longer in the organization", None)
        return
    view = principal.viewing_as
    organization = principal.organizations[view.organization_id]
    if not can(principal.viewer, "org.view_as", organization, role=view.role):
        # Demoted meanwhile, say: the view ends, and this request runs as the real user.
        end_view_as(principal, reason="ended: the viewer may no longer view as this")
        return
    if request.method in UNSAFE_METHODS:
        if request.endpoint not in ALLOWED_WHILE_VIEWING:
            _refuse_write(principal, view, organization)


def _refuse_write(principal: Principal, view: ViewAs, organization: Organization) -> None:
    rule = request.url_rule.rule if request.url_rule is not None else request.method
    decision = Decision(
        False,
        f"{request.method} {rule}",
        f"You are viewing {view.organization_name} as {view.who}. In view-as mode "
        "nothing can be changed, by you or in their name.",
        role=view.role,
        missing="ending view-as mode",
        rule=VIEW_AS_RULE,
        details={"api_reason": "view_as"},
    )
    record_audit(
        decision.action,
        organization_id=organization.id,
        decision=DENIED,
        status=403,
        reason=decision.reason,
    )
    raise PermissionDenied(decision, organization)


def _real_principal() -> Principal:
    principal = current_principal()
    assert principal is not None  # behind @login_required
    return principal.viewer or principal


def _session_of(principal: Principal) -> UserSession:
    session = principal.session
    assert session is not None  # view-as lives on a browser session; tokens have none
    return session
