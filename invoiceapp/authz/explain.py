"""Why a request gets the answer it gets: the demo's teaching panels, computed here.

Nothing here decides anything. ``explain()`` calls the same ``can()`` the views call and
lays its inputs out beside its answer; the status it predicts follows the gate order of
``invoiceapp.gates`` and ``authorize()`` (scope 404, policy 403, elevation), read off the
Decision. tests/test_teaching.py sends the real requests and checks each prediction.

``gate_report()`` does the same for an error page: which of the six gates answered, and
which ones ran before it. Only templates in demo mode call these.

``why()`` is for everyone, demo mode or not: the caller's own decision with its inputs and
what would change it, for every 403 page and for GET /api/v1/authz/explain.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from flask import current_app, g, request

from ..authn.sessions import is_fresh
from ..db import utcnow
from ..models import Invoice, Membership, Organization, User, UserSession
from ..principal import Principal, current_principal
from .enforce import step_up_needed
from .org_security import security_policy_flags
from .policy import (
    PER_RESOURCE_RULES,
    POLICY,
    READ_ONLY_ACTIONS,
    SELF_SERVICE,
    SHARE_RULE,
    SUPPORT_RULE,
    TWO_FACTOR_RULE,
    VIEW_AS_RULE,
    Decision,
    Rule,
    can,
    grant_for,
    organization_of,
    roles_granted,
    rule_of,
)

# What a request would get, in the words the panels use.
STATUS_TEXT = {
    "200": "200 · allowed",
    "401": "401 · sign in first",
    "403": "403 · forbidden",
    "404": "404 · not found",
    "re-authenticate": "re-authenticate · password again",
}


@dataclass(frozen=True)
class Trace:
    """One call of can(principal, action, resource): its inputs, its answer, the status."""

    action: str
    principal: str  # the display name, or "anonymous"
    resource: str  # "invoice inv_7", "organization acme", "membership of Ada Lovelace"…
    organization: str | None  # the resource's organization: roles are per organization
    role: str | None  # the principal's role in that organization
    plan: str | None
    flags: tuple[str, ...]
    signed_in_seconds: int | None  # how long ago this session was started
    proof_age_seconds: int | None  # how long ago a password (or factor) was last entered
    elevated: bool
    elevation_seconds_left: int
    proof: str  # "password", "password+totp", "passkey", "none"…
    two_factor_proven: bool
    decision: Decision
    status: str  # "200", "401", "403", "404" or "re-authenticate"
    # View-as mode: whom the principal is looking as ("Linus Torvalds (member)").
    viewing_as: str | None = None

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def rule(self) -> str | None:
        return self.decision.rule

    @property
    def reason(self) -> str:
        return self.decision.reason

    @property
    def status_text(self) -> str:
        return STATUS_TEXT[self.status]


def explain(action: str, resource: object, **context: Any) -> Trace:
    """The trace of ``can(current principal, action, resource)`` for this request."""
    principal = current_principal()
    return _trace(principal, action, resource, can(principal, action, resource, **context))


def _trace(principal: Principal | None, action: str, resource: object, decision: Decision) -> Trace:
    """Lay out one decision beside its inputs."""
    organization = organization_of(resource)
    auth_session = principal.session if principal is not None else None
    role = (
        _role_label(principal, organization.id)
        if principal is not None and organization is not None
        else None
    )
    return Trace(
        action=action,
        principal=principal.user.display_name if principal is not None else "anonymous",
        resource=_label(resource),
        organization=organization.name if organization is not None else None,
        role=role,
        plan=organization.plan if organization is not None else None,
        flags=_flags(organization),
        signed_in_seconds=_age(auth_session.created_at) if auth_session else None,
        proof_age_seconds=_age(auth_session.authenticated_at) if auth_session else None,
        elevated=is_fresh(auth_session),
        elevation_seconds_left=elevation_seconds_left(auth_session),
        proof=principal.proof if principal is not None else "none",
        two_factor_proven=principal.two_factor_proven if principal is not None else False,
        decision=decision,
        status=_status(principal, decision, organization, resource),
        viewing_as=principal.viewing_as.who
        if principal is not None and principal.viewing_as is not None
        else None,
    )


def _role_label(principal: Principal, organization_id: int) -> str | None:
    """ "admin", or "Bookkeeper (custom role: invoice.read, invoice.export)"."""
    key = principal.role_in(organization_id)
    if key is None or key in POLICY["org.read"]:
        return key
    custom = principal.custom_role(organization_id, key)
    if custom is None:
        return f"{key} (a role that no longer exists)"
    held = ", ".join(action for action in POLICY if action in custom.actions)
    return f"{custom.name} (custom role: {held})"


def explain_many(actions: Iterable[str], resource: object) -> list[Trace]:
    return [explain(action, resource) for action in actions]


def explain_each(actions: Iterable[str], resources: Iterable[object]) -> list[Trace]:
    """Every action on every resource (each member of a list, say)."""
    wanted = list(actions)
    return [explain(action, resource) for resource in resources for action in wanted]


def _status(
    principal: Principal | None,
    decision: Decision,
    organization: Organization | None,
    resource: object = None,
) -> str:
    """The gates after authentication, in their order (see invoiceapp.gates)."""
    if principal is None:
        return "401"
    if organization is not None and principal.role_in(organization.id) is None:
        if grant_for(principal, resource) is None:
            return "404"  # scope answers before the policy is asked (a share: it found it)
    if not decision.allowed:
        return "403"
    if principal.viewing_as is not None and decision.action not in READ_ONLY_ACTIONS:
        return "403"  # view-as mode refuses every write (invoiceapp.authz.view_as)
    # The same step authorize() takes after an allow (invoiceapp.authz.enforce).
    if step_up_needed(principal, decision) is not None:
        return "re-authenticate"
    return "200"


def _label(resource: object) -> str:
    """Public names only, never row ids or an invoice's content."""
    if isinstance(resource, Invoice):
        return f"invoice {resource.public_id}"
    if isinstance(resource, Organization):
        return f"organization {resource.slug}"
    if isinstance(resource, Membership):
        return f"membership of {resource.user.display_name}"
    if isinstance(resource, User):
        return "your account"
    return type(resource).__name__


def _flags(organization: Organization | None) -> tuple[str, ...]:
    if organization is None:
        return ()
    return (
        "invoice duplication " + ("on" if organization.invoice_duplication_enabled else "off"),
        "requires two-factor " + ("on" if organization.requires_two_factor else "off"),
        *security_policy_flags(organization),
    )


def _age(moment: Any) -> int:
    return max(0, int((utcnow() - moment).total_seconds()))


def elevation_seconds_left(auth_session: UserSession | None) -> int:
    """Seconds until the session stops counting as elevated; 0 when it is not."""
    if auth_session is None or not is_fresh(auth_session):
        return 0
    fresh_for = timedelta(seconds=current_app.config["FRESH_AGE_SECONDS"])
    left = fresh_for - (utcnow() - auth_session.authenticated_at)
    return max(1, math.ceil(left.total_seconds()))


@dataclass(frozen=True)
class Capability:
    """One row of "what your role allows here": the policy's answer and its reason."""

    action: str
    allowed: bool | None  # None: the answer depends on which invoice or member
    reason: str
    needs_fresh_password: bool = False


def capabilities(principal: Principal, organization: Organization) -> list[Capability]:
    """Every action of both tables, answered by can() for this organization where the
    answer does not depend on one invoice, one member or one's own account."""
    rows = []
    for action in POLICY:
        rule = rule_of(principal, action, organization.id)
        if rule in PER_RESOURCE_RULES:
            rows.append(Capability(action, None, f"Depends on which one: {rule.value}"))
            continue
        decision = can(principal, action, organization)
        rows.append(
            Capability(action, decision.allowed, decision.reason, decision.requires_elevation)
        )
    for action, self_rule in SELF_SERVICE.items():
        rows.append(Capability(action, None, f"Depends on your own account: {self_rule.value}"))
    return rows


# ---------------------------------------------------------------------------
# The principal, for the header
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PrincipalState:
    """Anonymous, signed in, or elevated: the three states the lesson names."""

    kind: str  # "anonymous", "signed in" or "elevated"
    name: str | None = None
    seconds_left: int = 0

    @property
    def minutes_left(self) -> int:
        return math.ceil(self.seconds_left / 60)


def principal_state(principal: Principal | None) -> PrincipalState:
    if principal is None:
        return PrincipalState("anonymous")
    left = elevation_seconds_left(principal.session)
    return PrincipalState(
        "elevated" if left else "signed in", principal.user.display_name, seconds_left=left
    )


# ---------------------------------------------------------------------------
# Error pages: which gate answered
# ---------------------------------------------------------------------------

GATES: tuple[tuple[str, str, str], ...] = (
    ("authentication", "Authentication", "Who is this?"),
    ("csrf", "CSRF", "Did this form come from this site?"),
    ("scope", "Scope", "Is it in one of your organizations?"),
    ("authorization", "Authorization", "May you do this action to this?"),
    ("elevation", "Elevation", "Was your password entered in the last few minutes?"),
    ("rate_limit", "Rate limit", "Too many attempts?"),
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class GateStep:
    key: str
    name: str
    question: str
    state: str  # "passed", "not needed", "answered", "not reached", "does not apply"

    @property
    def answered(self) -> bool:
        return self.state == "answered"

    @property
    def label(self) -> str:
        """The state in words, as the error page lists it."""
        if self.state == "not needed":
            if self.key == "authentication":
                return "not needed: this page is open to anyone"
            return "not needed: reading a page changes nothing"
        if self.state == "answered":
            return "← answered here"
        return self.state


@dataclass(frozen=True)
class GateReport:
    answered: str | None  # the key of the gate that answered; None when none did
    why: str
    steps: tuple[GateStep, ...]
    # "invoice" or "organization": the 404 hides something that exists elsewhere.
    hidden_elsewhere: str | None = None


def gate_report(status: int | str, decision: Decision | None = None) -> GateReport | None:
    """Which gate answered this request (``status`` "re-authenticate" or "sign-in" for the
    two pages a redirect leads to). None when no gate was involved (a 500, a 413…)."""
    principal = current_principal()
    if status == 404 and request.url_rule is None:
        steps = tuple(
            GateStep(key, name, question, "does not apply") for key, name, question in GATES
        )
        return GateReport(None, "No page has this address, so none of the gates was asked.", steps)
    answered, why = _answer(status, decision, principal)
    if answered is None:
        return None
    hidden = g.get("hidden_elsewhere") if answered == "scope" else None
    return GateReport(answered, why, _steps(answered, principal), hidden)


def _answer(
    status: int | str, decision: Decision | None, principal: Principal | None
) -> tuple[str | None, str]:
    if status in (401, "sign-in"):
        return "authentication", (
            "Nobody is signed in on this request, so the first gate answered and nothing "
            "after it ran. Signing in fixes this: that is what a 401 means."
        )
    if status == 400 and request.method not in SAFE_METHODS and not g.get("csrf_valid"):
        return "csrf", (
            "The form arrived without a valid CSRF token, so it may have been sent by "
            "another site riding on your cookie. It was refused before anything changed."
        )
    if status == 404:
        return "scope", (
            "The lookup searches only your organizations' records, and found nothing. "
            "The policy was never asked."
        )
    if status == 403:
        why = "You are signed in and the record is yours to see, but the policy said no"
        return "authorization", why + (f": {decision.reason}." if decision is not None else ".")
    if status == "re-authenticate":
        return "elevation", (
            "The policy allows this action, but only with proof from the last few "
            f"minutes ({current_app.config['FRESH_AGE_SECONDS'] // 60} min). Your session "
            "is older than that, so it asks for your password again and then carries on."
        )
    if status == 429:
        return "rate_limit", (
            "There were too many attempts in a short time. The limit protects accounts "
            "from password guessing; it lifts by itself."
        )
    return None, ""


def _steps(answered: str | None, principal: Principal | None) -> tuple[GateStep, ...]:
    keys = [key for key, _name, _question in GATES]
    position = keys.index(answered) if answered else len(keys)
    steps = []
    for index, (key, name, question) in enumerate(GATES):
        if index == position:
            state = "answered"
        elif answered == "rate_limit" and key in ("scope", "authorization", "elevation"):
            state = "does not apply"  # sign-in forms have no resource to scope
        elif index > position:
            state = "not reached"
        elif key == "authentication" and principal is None:
            state = "not needed"
        elif key == "csrf" and request.method in SAFE_METHODS and answered != "elevation":
            state = "not needed"
        else:
            state = "passed"
        steps.append(GateStep(key, name, question, state))
    return tuple(steps)


# ---------------------------------------------------------------------------
# "Why?": the caller's own decision, on every 403 page and at /api/v1/authz/explain
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Why:
    """One decision about the caller, told to the caller: the rule, its inputs, and what
    would change the answer. The 403 page and the API's explain endpoint both read this,
    so a person and a script are told the same thing.

    It holds only what the caller already knows or may see: their own role and session,
    and the organization and invoice they reached (scope answered 404 for anything else
    before this is ever built)."""

    trace: Trace
    inputs: dict[str, Any]
    remedy: str

    @property
    def decision(self) -> Decision:
        return self.trace.decision

    def as_json(self) -> dict[str, Any]:
        """The API's body (CONTRACT section 6)."""
        return {
            "allowed": self.decision.allowed,
            "action": self.decision.action,
            "rule": self.decision.rule,
            "reason": self.decision.reason,
            "missing": self.decision.missing,
            "remedy": self.remedy,
            "status": self.trace.status,
            "inputs": self.inputs,
        }

    @property
    def rows(self) -> list[tuple[str, str]]:
        """The inputs in words, for the 403 page: (label, value)."""
        i = self.inputs
        rows = [("You are", i["user"])]
        if i["viewing_as"] is not None:
            rows.append(("Viewing as", _viewed_in_words(i["viewing_as"])))
        if i["organization"] is not None:
            rows.append(("Organization", i["organization"]["name"]))
            rows.append(("Role there", i["role"] or "none"))
            rows.append(("Plan", i["organization"]["plan"]))
            rows.append(("Flags", ", ".join(self.trace.flags)))
        if i["invoice"] is not None:
            invoice = i["invoice"]
            yours = "you created it" if invoice["created_by_you"] else "someone else created it"
            rows.append(("Invoice", f"{invoice['id']}, {invoice['status']}; {yours}"))
        rows.append(("Signed in with", i["proof"]))
        rows.append(("Second factor used", "yes" if i["two_factor_proven"] else "no"))
        rows.append(("Elevated (password entered recently)", "yes" if i["elevated"] else "no"))
        if i["token_scope"] is not None:
            rows.append(("Access token scope", i["token_scope"]))
        if i.get("share") is not None:
            share = i["share"]
            rows.append(("Share", f"from {share['shared_by']}, {share['access']}, "
                                  f"expires {share['expires']}"))  # fmt: skip
        if i.get("support") is not None:
            support = i["support"]
            words = f"granted by {support['granted_by']}, as {support['role']}"
            rows.append(("Support access", f"{words}, ends {support['expires']}"))
        return rows


def why(action: str, resource: object, decision: Decision | None = None, **context: Any) -> Why:
    """The current principal's decision about ``action`` on ``resource``, explained.

    ``decision`` is the one authorize() already made (the 403 page); without it, can() is
    asked now (the API). Either way the same can(), so the explanation cannot drift."""
    principal = current_principal()
    if decision is None:
        decision = can(principal, action, resource, **context)
    trace = _trace(principal, action, resource, decision)
    organization = organization_of(resource)
    return Why(
        trace=trace,
        inputs=_inputs(principal, trace, organization, resource),
        remedy=_remedy(principal, trace, organization, resource),
    )


def _inputs(
    principal: Principal | None,
    trace: Trace,
    organization: Organization | None,
    resource: object,
) -> dict[str, Any]:
    """Every input of the decision that is about the caller or what they reached."""
    invoice = resource if isinstance(resource, Invoice) else None
    if invoice is not None and not can(principal, "invoice.read", invoice):
        invoice = None  # its state and author are shown only to those who may read it
    return {
        "user": trace.principal,
        "viewing_as": _viewed(principal) if principal is not None else None,
        "organization": {
            "slug": organization.slug,
            "name": organization.name,
            "plan": organization.plan,
            "flags": {
                "invoice_duplication": organization.invoice_duplication_enabled,
                "requires_two_factor": organization.requires_two_factor,
            },
        }
        if organization is not None
        else None,
        "role": trace.role,
        "invoice": {
            "id": invoice.public_id,
            "status": invoice.status,
            "created_by_you": principal is not None
            and invoice.created_by_id == principal.user_id_in(invoice.organization_id),
        }
        if invoice is not None
        else None,
        "proof": trace.proof,
        "two_factor_proven": trace.two_factor_proven,
        "elevated": trace.elevated,
        "elevation_seconds_left": trace.elevation_seconds_left,
        "token_scope": principal.token_scope if principal is not None else None,
        "share": _share(principal, resource, trace.role),
        "support": _support(principal, organization),
    }


def _support(
    principal: Principal | None, organization: Organization | None
) -> dict[str, Any] | None:
    """The support grant that put the organization in the principal's scope, if one did."""
    if principal is None or organization is None:
        return None
    support = principal.support.get(organization.id)
    if support is None:
        return None
    until = support.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return {"granted_by": support.granted_by, "role": support.role, "expires": until}


def _share(
    principal: Principal | None, resource: object, role: str | None
) -> dict[str, Any] | None:
    """The share that answered for someone without a role here (invoiceapp.shares)."""
    grant = grant_for(principal, resource) if principal is not None and role is None else None
    if grant is None:
        return None
    until = grant.expires_at.strftime("%Y-%m-%d")
    return {"shared_by": grant.shared_by, "access": grant.access, "expires": until}


def _viewed(principal: Principal) -> dict[str, Any] | None:
    """Both principals in view-as mode: whom you look as, and your own role there."""
    view = principal.viewing_as
    if view is None or principal.viewer is None:
        return None
    return {
        "organization": view.organization_slug,
        "member": view.member_name,
        "role": view.role,
        "your_role": principal.viewer.role_in(view.organization_id),
        "who": view.who,
    }


def _viewed_in_words(viewed: dict[str, Any]) -> str:
    own = f"; your own role there: {viewed['your_role']}" if viewed["your_role"] else ""
    return f"{viewed['who']} in {viewed['organization']}{own}"


def _roles_in_words(action: str) -> str:
    """ "an owner or admin": whoever the table lets do ``action`` (read, never spelled)."""
    roles = roles_granted(action)
    return " or ".join(roles) if roles else "someone allowed"


def _remedy(
    principal: Principal | None,
    trace: Trace,
    organization: Organization | None,
    resource: object,
) -> str:
    """What would change the answer, in words a person can act on."""
    decision = trace.decision
    org = organization.name if organization is not None else "the organization"
    if decision.allowed:
        if trace.status == "re-authenticate":
            if decision.requires_second_factor:
                return "Enter your password again, with your second factor if you have one."
            return "Enter your password again: this action needs a recent sign-in."
        return "Nothing: you may do this."
    rule = decision.rule or ""
    remedies = {
        VIEW_AS_RULE: "End view-as mode with the End button in the banner to act as yourself.",
        "token scope": "Use a token with the write scope, or do it signed in in a browser.",
        "verified email": "Verify your email address with the link we mailed you.",
        "invoice state": "No role changes this: it depends on the invoice's state.",
        "one owner": "No role changes this: ownership moves only by a transfer.",
        "not yourself": "No role changes this: someone else has to do it for you.",
        SHARE_RULE: "Ask whoever shared these invoices with you for a share that allows it.",
        SUPPORT_RULE: f"Support access never reaches billing, ownership, settings, security, "
        f"roles, members, view-as, shares or tokens, whatever role the owner chose; ask the "
        f"owner of {org} to do it themselves. Reading more needs the owner to approve a new "
        "request with a broader role.",
        Rule.TRANSFER_FIRST.value: "Transfer ownership to another member first, then leave.",
        Rule.PRO_PLAN.value: f"Ask the {_roles_in_words('org.billing.update')} of {org} to "
        "move it to the pro plan on its billing page.",
        Rule.FLAG_ON.value: f"Ask the {_roles_in_words('org.settings.update')} of {org} to "
        "switch invoice duplication on in its settings.",
        TWO_FACTOR_RULE: "Sign in again with your second factor. If you have none yet, set "
        "one up under Account, then sign out and back in with it.",
    }
    if rule in remedies:
        return remedies[rule]
    if decision.missing in ("a specific invoice", "a specific member"):
        which = decision.missing.rsplit(" ", 1)[-1]
        return f"The answer depends on which {which}: ask about one in particular."
    managers = _roles_in_words("member.change_role")
    if rule == Rule.NO.value:
        helping = _custom_roles_that_would_allow(principal, decision.action, resource)
        if helping:
            return (f"Ask {_a(managers)} of {org} for the {' or '.join(helping)} role, or "
                    f"for {decision.missing}.")  # fmt: skip
        return f"Ask {_a(managers)} of {org} for {decision.missing}."
    if decision.missing:
        return f"It needs {decision.missing}. Ask {_a(managers)} of {org} if you need it done."
    return "Nothing you can change from here."


def _custom_roles_that_would_allow(
    principal: Principal | None, action: str, resource: object, most: int = 2
) -> list[str]:
    """The organization's own roles under which this very request would be allowed, the
    narrowest first. can() itself is asked, as if the caller held each one (same session,
    plan and security policy), so a role is named only where it would really help; the
    roles are already loaded with the principal, so this costs no statement."""
    organization = organization_of(resource)
    if principal is None or organization is None:
        return []
    held = principal.role_in(organization.id)
    candidates = sorted(
        principal.custom_roles_in(organization.id).values(),
        key=lambda grant: (len(grant.actions), grant.name),
    )
    names = []
    for grant in candidates:
        if action not in grant.actions or grant.key == held:
            continue
        holder = replace(principal, roles={**principal.roles, organization.id: grant.key})
        if can(holder, action, resource).allowed:
            names.append(grant.name)
    return names[:most]


def _a(words: str) -> str:
    return ("an " if words[:1] in "aeiou" else "a ") + words
