"""authorize(): the policy call at the action boundary. Where the 403 is decided.

Hiding a button is courtesy; this call is the security boundary. Every view that
reads or changes a resource calls it, whatever the template showed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import request, url_for
from werkzeug.exceptions import Forbidden, HTTPException

from ..audit import DENIED, record_audit
from ..authn.second_factor import has_second_factor
from ..authn.sessions import is_fresh
from ..models import Invoice, Membership, Organization
from ..principal import Principal, current_principal
from .policy import Decision, can, organization_of


def organization_id_of(resource: object) -> int | None:
    organization = organization_of(resource)
    return organization.id if organization is not None else None


def resource_label(resource: object) -> str | None:
    """How the audit log names a resource: public ids only, never row ids or content."""
    if isinstance(resource, Invoice):
        return resource.public_id
    if isinstance(resource, Organization):
        return resource.slug
    if isinstance(resource, Membership):
        return f"membership:{resource.user_id}"
    return None


class PermissionDenied(Forbidden):
    """403: the principal is known, and the answer is no. Signing in again won't help."""

    def __init__(self, decision: Decision, resource: object = None) -> None:
        super().__init__(description=decision.reason)
        self.decision = decision
        # What was refused, so the 403 page can explain the decision (authz/explain.py).
        self.resource = resource


class ReauthenticationRequired(HTTPException):
    """The policy allows the action, but only with a password entered in the last minutes.

    An authorization rule asking for fresh authentication: the two hand off here.
    """

    code = 401
    description = "Enter your password again to continue."

    def __init__(self, next_path: str, *, second_factor: bool = False) -> None:
        super().__init__()
        self.next_path = next_path
        # The fresh proof must use the second factor (TOTP or a passkey).
        self.second_factor = second_factor

    @property
    def location(self) -> str:
        """The page that takes the proof, and sends the person back to ``next_path``."""
        query = {"next": self.next_path}
        if self.second_factor:
            query["factor"] = "second"
        # "/" stays readable (?next=/account/password); "?", "&", "=" are still encoded.
        return url_for("authn.reauthenticate_form") + "?" + urlencode(query, safe="/")


def authorize(action: str, resource: object, **context: Any) -> Decision:
    principal = current_principal()
    decision = can(principal, action, resource, **context)
    if not decision.allowed:
        record_audit(
            action,
            organization_id=organization_id_of(resource),
            resource_id=resource_label(resource),
            decision=DENIED,
            status=403,
            reason=decision.reason,
            rule=decision.rule or "policy table",
        )
        raise PermissionDenied(decision, resource)
    step_up = step_up_needed(principal, decision) if principal is not None else None
    if step_up is not None:
        raise ReauthenticationRequired(request.path, second_factor=step_up == SECOND_FACTOR)
    return decision


PASSWORD, SECOND_FACTOR = "password", "second factor"


def step_up_needed(principal: Principal, decision: Decision) -> str | None:
    """The elevation gate, after an allow: None when this session's proof will do, else what
    to ask for ("password", or "second factor" when the rule wants it and one is set up).

    The second factor is asked for up front, so that a password is not taken first only to
    ask again. authorize() raises on it; the demo's trace predicts with it.
    """
    if not decision.requires_elevation:
        return None
    fresh = is_fresh(principal.session, within=decision.fresh_within_seconds)
    if (
        decision.requires_second_factor
        and not (fresh and principal.two_factor_proven)
        and has_second_factor(principal.user)
    ):
        return SECOND_FACTOR
    return None if fresh else PASSWORD


def can_in_template(action: str, resource: object, **context: Any) -> Decision:
    """The same can(), for templates: decides which buttons to show (UX only)."""
    return can(current_principal(), action, resource, **context)
