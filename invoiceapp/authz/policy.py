"""The policy table (CONTRACT section 7) and the one function that reads it.

Views call it through authorize() before acting; templates call the same can()
to decide which buttons to show. The plan is one input, never the whole answer:
every rule starts from the principal's role in the resource's organization.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..db import utcnow
from ..models import (
    Invoice,
    InvoiceStatus,
    Membership,
    Organization,
    Plan,
    Role,
    TokenScope,
    User,
)
from ..principal import Principal, RoleGrant
from ..shares import Grant
from ..support_access import SUPPORT_READ_ONLY
from . import org_security
from .org_security import TWO_FACTOR_RULE as TWO_FACTOR_RULE  # its name on the 403 page


class Rule(enum.StrEnum):
    YES = "yes"
    NO = "no"
    OWN_DRAFTS = "own drafts only"
    PRO_PLAN = "plan pro only"
    MEMBERS_ONLY = "members only"
    ELEVATED = "yes, elevated"
    # The most sensitive actions: fresh proof that used the second factor, when enrolled.
    ELEVATED_STRONG = "yes, elevated with the second factor when enrolled"
    # Self-service (the SELF_SERVICE table below): the account holder, in a browser session.
    SELF_ELEVATED = "self, elevated"
    SELF_ELEVATED_STRONG = "self, elevated with the second factor when enrolled"
    SELF_VERIFIED_ELEVATED = "self, verified email, elevated"
    SELF_VERIFIED_ELEVATED_STRONG = (
        "self, verified email, elevated with the second factor when enrolled"
    )
    FLAG_ON = "yes, when the organization's flag is on"
    TRANSFER_FIRST = "no, transfer ownership first"


OWNER, ADMIN, MEMBER = Role.OWNER.value, Role.ADMIN.value, Role.MEMBER.value
R = Rule

POLICY: dict[str, dict[str, Rule]] = {
    #  action                      owner            admin            member
    "invoice.read":             {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.YES},
    "invoice.create":           {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.YES},
    "invoice.update":           {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.OWN_DRAFTS},
    "invoice.delete":           {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.NO},
    "invoice.send":             {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.OWN_DRAFTS},
    "invoice.mark_paid":        {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.NO},
    "invoice.void":             {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.NO},
    "invoice.duplicate":        {OWNER: R.FLAG_ON,  ADMIN: R.FLAG_ON, MEMBER: R.FLAG_ON},
    "invoice.export":           {OWNER: R.PRO_PLAN, ADMIN: R.PRO_PLAN, MEMBER: R.PRO_PLAN},
    "org.read":                 {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.YES},
    "org.leave":                {OWNER: R.TRANSFER_FIRST, ADMIN: R.YES, MEMBER: R.YES},
    "org.settings.update":      {OWNER: R.YES,      ADMIN: R.NO,      MEMBER: R.NO},
    "member.read":              {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.YES},
    "member.invite":            {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.NO},
    "member.remove":            {OWNER: R.YES,      ADMIN: R.MEMBERS_ONLY, MEMBER: R.NO},
    "member.change_role":       {OWNER: R.YES,      ADMIN: R.MEMBERS_ONLY, MEMBER: R.NO},
    "org.billing.read":         {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.NO},
    "org.billing.update":       {OWNER: R.ELEVATED, ADMIN: R.NO,      MEMBER: R.NO},
    "org.transfer_ownership":   {OWNER: R.ELEVATED_STRONG, ADMIN: R.NO, MEMBER: R.NO},
    "org.security.update":      {OWNER: R.ELEVATED_STRONG, ADMIN: R.NO, MEMBER: R.NO},
    "audit.read":               {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.NO},
    # How long the audit log keeps records: shortening it is how evidence would be lost.
    "audit.retention.update":   {OWNER: R.ELEVATED, ADMIN: R.NO,      MEMBER: R.NO},
    # Look at the organization as a member or a role sees it; never one above your own.
    "org.view_as":              {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.NO},
    # Share one customer's invoices with a person outside the organization (SHARE_ACCESS).
    "invoice.share":            {OWNER: R.YES,      ADMIN: R.YES,     MEMBER: R.NO},
    "org.roles.read":           {OWNER: R.YES,      ADMIN: R.NO,      MEMBER: R.NO},
    "org.roles.update":         {OWNER: R.ELEVATED, ADMIN: R.NO,      MEMBER: R.NO},
    # Support access (invoiceapp.support_access): seeing requests and ending access is the
    # owner's, at any moment; letting someone in (approve, deny) needs fresh proof.
    "org.support.manage":       {OWNER: R.YES,      ADMIN: R.NO,      MEMBER: R.NO},
    "org.support.approve":      {OWNER: R.ELEVATED, ADMIN: R.NO,      MEMBER: R.NO},
}  # fmt: skip

# What a share grants its guest, who holds no role here, on the invoices of the one
# customer it names (invoiceapp.shares). Everything else stays a 404 for them, as for a
# stranger: the scope (authz/scope.py) finds no other invoice, list or page of theirs.
SHARE_ACCESS: dict[str, frozenset[str]] = {
    "read":           frozenset({"invoice.read"}),
    "read_mark_paid": frozenset({"invoice.read", "invoice.mark_paid"}),
}  # fmt: skip
SHARE_ACCESS_WORDS = {"read": "reading only", "read_mark_paid": "reading and marking paid only"}

# Custom roles: an owner defines them per organization (invoiceapp.authz.roles), each a
# name and some actions of the table above. A custom role holding an action gets the rule
# the table gives a role that is not the owner: the admin column ("members only" included).
# Every action it does not hold is a no. Whatever the admin column refuses belongs to the
# owner (billing changes, transfer, settings, the roles themselves): never grantable.
CUSTOM_ROLE_COLUMN = ADMIN
GRANTABLE_ACTIONS: tuple[str, ...] = tuple(
    action for action, rules in POLICY.items() if rules[CUSTOM_ROLE_COLUMN] is not Rule.NO
)

# Support access: what a support engineer may never do, whatever role the owner chose for
# them. Everything only the owner may do (the actions no custom role may hold: billing
# changes, transfer, settings, security policy, custom roles, retention, support itself),
# and besides: reading billing, the members (invite, remove, change role), view-as, shares,
# and leaving (they never joined). Their account actions are their own account's; the
# customer's tokens, second factors and passwords are not theirs to reach, and API tokens
# for the organization cannot be made (invoiceapp.views.account.tokens asks the same set).
SUPPORT_RULE = "support access"
SUPPORT_REFUSED = frozenset(
    action for action in POLICY if action not in GRANTABLE_ACTIONS
) | frozenset(
    {"org.billing.read", "member.invite", "member.remove", "member.change_role",
     "org.view_as", "invoice.share", "org.leave"}
)  # fmt: skip
# The built-in read-only choice of a support grant: reading invoices, nothing else. Not
# even the audit log: it holds the customer's people's addresses and IP addresses, which
# a support ticket rarely needs; an owner who wants it there chooses the admin role.
SUPPORT_READ_ONLY_ACTIONS = frozenset({"invoice.read"})

# One's own account: no organization, so no role column. Each cell is exactly what can()
# enforces: the account holder only (never someone else's account, never through an API
# token), with fresh proof, and where it says so a verified email and the second factor.
SELF_SERVICE: dict[str, Rule] = {
    # The password and the email address are recovery credentials: whoever changes them
    # owns the account. With a second factor enrolled, a stolen session (or a password
    # sign-in) plus the password must not be enough, so both ask for the second factor.
    "account.password.change":      R.SELF_ELEVATED_STRONG,
    "account.email.change":         R.SELF_ELEVATED_STRONG,
    # New credentials need a verified address: an account that never proved its address
    # may be a squatter's, and the mailbox owner's claim (invoiceapp.authn.claims) must
    # find nothing of theirs that could still sign in afterwards, or was made in their name.
    "account.two_factor.manage":    R.SELF_VERIFIED_ELEVATED,
    # A token is a new credential that outlives sessions: made only with fresh proof, and
    # with the second factor once one is set up (else a password alone mints lasting access).
    "account.tokens.create":        R.SELF_VERIFIED_ELEVATED_STRONG,
    # Adding a passkey, new recovery codes, removing a passkey, a TOTP app beside a passkey:
    # with a second factor enrolled, a stolen session plus a phished password must not be
    # able to plant one of their own (or mint codes that count as one).
    "account.second_factor.change": R.SELF_VERIFIED_ELEVATED_STRONG,
    "account.two_factor.disable":   R.SELF_ELEVATED_STRONG,
    # Which proofs sign in (password off once a passkey exists, email codes and links off):
    # turning a way in off is how a thief locks the owner out, so it asks what the others do.
    "account.sign_in_methods.change": R.SELF_ELEVATED_STRONG,
}  # fmt: skip

# What each self-service rule asks for besides fresh proof: (a verified email, the second
# factor when one is enrolled). The only place those cells are interpreted.
_SELF_RULE_NEEDS: dict[Rule, tuple[bool, bool]] = {
    Rule.SELF_ELEVATED: (False, False),
    Rule.SELF_ELEVATED_STRONG: (False, True),
    Rule.SELF_VERIFIED_ELEVATED: (True, False),
    Rule.SELF_VERIFIED_ELEVATED_STRONG: (True, True),
}

# Self-service actions that make a new credential, which an unverified address may not:
# read off the table's cells, not listed a second time.
NEEDS_VERIFIED_EMAIL = frozenset(
    action for action, rule in SELF_SERVICE.items() if _SELF_RULE_NEEDS[rule][0]
)

# Rules whose answer needs one particular invoice or member, not just the organization.
PER_RESOURCE_RULES = frozenset({Rule.OWN_DRAFTS, Rule.MEMBERS_ONLY})

# What a personal access token with the "read" scope may do. Everything else needs
# "write" — and the user's role as well: a scope narrows a role, never widens it.
READ_ONLY_ACTIONS = frozenset(
    {
        "invoice.read",
        "invoice.export",
        "org.read",
        "member.read",
        "org.billing.read",
        "audit.read",
        "org.roles.read",
    }
)

# The invoice's state is a rule input too: which states each invoice action starts from.
# A paid or void invoice is no longer editable by anyone; it can only be voided.
# Nor deleted: a paid invoice is voided instead, and a void one stays as the record
# (were it deletable, "void, then delete" would erase a paid invoice in two clicks).
INVOICE_STATES: dict[str, frozenset[str]] = {
    "invoice.update": frozenset({InvoiceStatus.DRAFT, InvoiceStatus.SENT}),
    "invoice.delete": frozenset({InvoiceStatus.DRAFT, InvoiceStatus.SENT}),
    "invoice.send": frozenset({InvoiceStatus.DRAFT}),
    "invoice.mark_paid": frozenset({InvoiceStatus.SENT}),
    "invoice.void": frozenset({InvoiceStatus.DRAFT, InvoiceStatus.SENT, InvoiceStatus.PAID}),
}


@dataclass(frozen=True)
class Decision:
    """An answer with its reason, so a 403 can say what was missing."""

    allowed: bool
    action: str
    reason: str
    role: str | None = None
    # What would have been needed, in words ("the owner or admin role").
    missing: str | None = None
    requires_elevation: bool = False
    # Elevation must have used the second factor, if the user has one enrolled.
    requires_second_factor: bool = False
    # The organization's own elevation window, when shorter than FRESH_AGE_SECONDS.
    fresh_within_seconds: int | None = None
    # Which entry of the table decided ("members only", "invoice state", …).
    rule: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.allowed


def roles_granted(action: str) -> list[str]:
    """Roles for which the table says anything but a plain no."""
    return [role for role, rule in POLICY[action].items() if rule is not Rule.NO]


# The same, in words, for each action's refusals ("owner or admin"): worked out once from
# the table rather than on every can(), where only a refusal reads it.
ROLES_NEEDED = {action: " or ".join(roles_granted(action)) for action in POLICY}


def organization_of(resource: object) -> Organization | None:
    """The organization a resource belongs to; None for one's own account. The one place
    that knows: the role, the plan, the flags and the two-factor rule are all read off it."""
    if isinstance(resource, Organization):
        return resource
    if isinstance(resource, Invoice | Membership):
        return resource.organization
    return None


def can(principal: Principal | None, action: str, resource: object, **context: Any) -> Decision:
    """May ``principal`` do ``action`` to ``resource``? Evaluated fresh on every call."""
    if action not in POLICY and action not in SELF_SERVICE:
        raise KeyError(f"unknown action {action!r}; the policy table is in {__name__}")
    if principal is None:
        return Decision(False, action, "Nobody is signed in", missing="a signed-in user")

    if action in SELF_SERVICE:
        return _narrowed(principal, _self_service(principal, action, resource))

    organization = organization_of(resource)
    role = principal.role_in(organization.id) if organization is not None else None
    needed = ROLES_NEEDED[action]
    grant = grant_for(principal, resource) if role is None else None  # members: the role
    if grant is not None and isinstance(resource, Invoice):
        return _narrowed(principal, _granted(principal, action, resource, grant))
    if organization is None or role is None:
        return Decision(
            False, action, "You are not a member of this organization", missing=f"the {needed} role"
        )

    support = principal.support.get(organization.id)
    if support is not None:  # support access: refused whatever the role, or read-only
        refused = _support_refusal(action, role, support.granted_by)
        if refused is not None:
            return refused
        if role == SUPPORT_READ_ONLY:
            allowed = Decision(True, action, f"Read-only support access granted by "
                               f"{support.granted_by}", role=role, rule=SUPPORT_RULE)  # fmt: skip
            return _narrowed(principal, _security_policy(principal, organization, allowed, context))

    # A built-in role reads its own column; a custom role (stored per organization, loaded
    # once per request) reads the admin column for the actions it holds, and is a no else.
    custom = None if role in POLICY[action] else principal.custom_role(organization.id, role)
    if custom is not None:
        rule, called = custom_rule(custom, action), custom.name
    elif role in POLICY[action]:
        rule, called = POLICY[action][role], role
    else:  # a custom role deleted meanwhile (a 409 prevents it while anyone holds it)
        return Decision(
            False, action, "Your role in this organization no longer exists", role=role,
            missing=f"the {needed} role", rule="unknown role",
        )  # fmt: skip
    question = _Question(principal, action, resource, called, rule, needed)
    decision = _ROLE_RULES[rule](question)
    if decision.allowed:
        decision = _invariants(principal, action, resource, role, decision, context)
    if decision.allowed and organization is not None:
        decision = _security_policy(principal, organization, decision, context)
    return _narrowed(principal, decision)


def _support_refusal(action: str, role: str, granted_by: str) -> Decision | None:
    """Support access refuses SUPPORT_REFUSED whatever the role, and the read-only choice
    everything but SUPPORT_READ_ONLY_ACTIONS."""
    if action in SUPPORT_REFUSED:
        reason = f"Support access never includes {action}, whatever the role"
    elif role == SUPPORT_READ_ONLY and action not in SUPPORT_READ_ONLY_ACTIONS:
        reason = "Read-only support access allows reading invoices only"
    else:
        return None
    return Decision(False, action, f"{reason} (granted by {granted_by})", role=role,
                    missing="one of the organization's own members", rule=SUPPORT_RULE)  # fmt: skip


def support_token_refusal(principal: Principal, organization_slug: str) -> Decision | None:
    """An API token is never made for an organization reached by support access: the API
    refuses support access entirely, and a token would outlive the grant."""
    for support in principal.support.values():
        if support.organization_slug == organization_slug:
            return Decision(False, "account.tokens.create", "Support access never includes API "
                            f"tokens for the organization (granted by {support.granted_by})",
                            missing="one of the organization's own members",
                            rule=SUPPORT_RULE)  # fmt: skip
    return None


def allowed_actions(
    principal: Principal | None, resource: object, actions: Iterable[str]
) -> frozenset[str]:
    """The ones of ``actions`` that can() allows: one evaluation for a page's buttons.

    Every answer starts from the same inputs (the resource's organization, the role there,
    the organization's security policy), so they are read once here rather than once per
    button. Each action then meets the same rule and invariants as in can(). A guest by a
    share, one's own account or a stranger is simply asked of can() action by action.
    Buttons only: the action itself still asks can() through authorize() when it arrives.
    """
    actions = tuple(actions)
    organization = organization_of(resource)
    role = None
    if principal is not None and organization is not None:
        role = principal.role_in(organization.id)
    if principal is None or organization is None or role is None:
        return frozenset(action for action in actions if can(principal, action, resource))
    if organization.id in principal.support:  # support access: rare, and can() words it
        return frozenset(action for action in actions if can(principal, action, resource))
    refusals: dict[bool, org_security.Refusal | None] = {}  # reading or not: the policy's say
    allowed = set()
    for action in actions:
        if action not in POLICY:  # one's own account, or unknown (can() raises KeyError)
            if can(principal, action, resource):
                allowed.add(action)
            continue
        custom = None if role in POLICY[action] else principal.custom_role(organization.id, role)
        if custom is not None:
            rule, called = custom_rule(custom, action), custom.name
        elif role in POLICY[action]:
            rule, called = POLICY[action][role], role
        else:
            continue  # a custom role deleted meanwhile: can() says no
        if rule in (Rule.NO, Rule.TRANSFER_FIRST):
            continue  # refusals whatever the resource: no need to word them
        question = _Question(principal, action, resource, called, rule, needed="")
        decision = _ROLE_RULES[rule](question)
        if decision.allowed:
            decision = _invariants(principal, action, resource, role, decision, {})
        if not decision.allowed:
            continue
        reading = action in READ_ONLY_ACTIONS
        if reading not in refusals:
            refusals[reading] = org_security.refusal(principal, organization, reading=reading)
        if refusals[reading] is None and _narrowed(principal, decision).allowed:
            allowed.add(action)
    return frozenset(allowed)


SHARE_RULE = "share"


def grant_for(principal: Principal, resource: object) -> Grant | None:
    """The live share that covers this invoice for someone without a role there, if any.
    A token carries no shares (it is a member's credential for one organization)."""
    if not isinstance(resource, Invoice) or principal.token_scope is not None:
        return None
    now = utcnow()
    for grant in principal.grants:
        if grant.live(now) and grant.covers(resource.organization_id, resource.customer):
            return grant
    return None


def _granted(principal: Principal, action: str, invoice: Invoice, grant: Grant) -> Decision:
    """A guest's answer: the share's access, then the rules that hold for everyone (the
    invoice's state, the organization's two-factor rule)."""
    until = grant.expires_at.strftime("%Y-%m-%d")
    details = {"share": grant.share_id, "shared_by": grant.shared_by, "expires": until}
    if action not in SHARE_ACCESS[grant.access]:
        return Decision(
            False,
            action,
            f"Your share from {grant.shared_by} allows {SHARE_ACCESS_WORDS[grant.access]}",
            missing=f"a share that allows {action}, or membership of the organization",
            rule=SHARE_RULE,
            details=details,
        )
    allowed = Decision(
        True,
        action,
        f"Allowed by a share from {grant.shared_by}, expires {until}",
        rule=SHARE_RULE,
        details=details,
    )
    if action in INVOICE_STATES and invoice.status not in INVOICE_STATES[action]:
        return Decision(False, action, _state_refusal(action, invoice.status),
                        missing="nothing a share can give", rule="invoice state")  # fmt: skip
    return _security_policy(principal, invoice.organization, allowed, {})


# Looking at an organization as another member sees it changes nothing (authz/view_as.py).
VIEW_AS_RULE = "view-as mode"


def custom_rule(custom: RoleGrant, action: str) -> Rule:
    """The table's rule for a custom role: the admin column's where it holds the action."""
    if action in custom.actions and action in GRANTABLE_ACTIONS:
        return POLICY[action][CUSTOM_ROLE_COLUMN]
    return Rule.NO


def rule_of(principal: Principal, action: str, organization_id: int) -> Rule | None:
    """The table's cell for the principal's role here (a custom role's, read as above);
    None outside the organization or for a role that no longer exists."""
    role = principal.role_in(organization_id)
    if role is None:
        return None
    if role in POLICY[action]:
        return POLICY[action][role]
    custom = principal.custom_role(organization_id, role)
    return custom_rule(custom, action) if custom is not None else None


def actions_held(principal: Principal, organization_id: int, role: str) -> frozenset[str] | None:
    """The actions a role holds in an organization (any rule but a plain no); None for a
    key that names no role there."""
    if role in POLICY["org.read"]:
        return frozenset(action for action, rules in POLICY.items() if rules[role] is not R.NO)
    custom = principal.custom_role(organization_id, role)
    if custom is None:
        return None
    return frozenset(custom.actions & set(GRANTABLE_ACTIONS))


def role_name(principal: Principal, organization_id: int) -> str | None:
    """The principal's role in an organization as people read it ("admin", "Bookkeeper")."""
    role = principal.role_in(organization_id)
    if role is None or role in POLICY["org.read"]:
        return role
    if role == SUPPORT_READ_ONLY and organization_id in principal.support:
        return "read-only support"
    custom = principal.custom_role(organization_id, role)
    return custom.name if custom is not None else role


def _security_policy(
    principal: Principal, organization: Organization, decision: Decision, context: dict[str, Any]
) -> Decision:
    """The organization's security policy (authz/org_security.py) narrows an allow: how the
    session was proven and how old it is, tokens, invitation domains; and it may shorten
    the elevation window. "Requires two-factor" is its proof rule "a second factor"."""
    refusal = org_security.refusal(
        principal, organization, reading=decision.action in READ_ONLY_ACTIONS
    )
    email = context.get("email")
    if refusal is None and decision.action == "member.invite" and email:
        refusal = org_security.invitation_domain_refusal(organization, str(email))
    if refusal is not None:
        return Decision(False, decision.action, refusal.reason, role=decision.role,
                        missing=refusal.missing, rule=refusal.rule,
                        details={"api_reason": refusal.api_reason})  # fmt: skip
    if decision.requires_elevation:
        # Confirming with a password alone would make the session password-only, which a
        # rule wanting a second factor then refuses: so the fresh proof must use it too.
        return replace(
            decision,
            fresh_within_seconds=org_security.elevation_seconds(organization),
            requires_second_factor=decision.requires_second_factor
            or org_security.proof_rule(organization) in org_security.TWO_FACTOR_RULES,
        )
    return decision


def _narrowed(principal: Principal, decision: Decision) -> Decision:
    """A read-scoped token may only read, whatever its user's role allows."""
    if not decision.allowed or principal.token_scope in (None, TokenScope.WRITE):
        return decision
    if decision.action in READ_ONLY_ACTIONS:
        return decision
    return Decision(
        False,
        decision.action,
        f"This token's scope is read; {decision.action} needs a token with the write scope",
        role=decision.role,
        missing="a token with the write scope",
        rule="token scope",
        details={"api_reason": "insufficient_scope"},
    )


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


@dataclass(frozen=True)
class _Question:
    """One call of can(), as a role rule sees it."""

    principal: Principal
    action: str
    resource: object
    role: str
    rule: Rule
    needed: str  # the roles the table grants the action to, in words

    def allow(self, reason: str, **extra: Any) -> Decision:
        return Decision(True, self.action, reason, role=self.role, rule=self.rule.value, **extra)

    def deny(self, reason: str, missing: str) -> Decision:
        return Decision(False, self.action, reason, role=self.role, missing=missing,
                        rule=self.rule.value)  # fmt: skip

    @property
    def someone(self) -> str:
        """ "An admin", "A member": the role as the subject of a sentence."""
        return _a(self.role).capitalize()


def _yes(q: _Question) -> Decision:
    return q.allow(f"The {q.role} role includes {q.action}")


def _elevated(q: _Question) -> Decision:
    return q.allow(
        f"The {q.role} role includes {q.action} after a fresh password check",
        requires_elevation=True,
    )


def _elevated_strong(q: _Question) -> Decision:
    return q.allow(
        f"The {q.role} role includes {q.action} after a fresh check that uses the second "
        "factor, when one is set up",
        requires_elevation=True,
        requires_second_factor=True,
    )


def _no(q: _Question) -> Decision:
    return q.deny(f"The {q.role} role does not include {q.action}", f"the {q.needed} role")


def _transfer_first(q: _Question) -> Decision:
    return q.deny(
        "The owner cannot leave; transfer ownership to another member first", "another owner"
    )


def _own_drafts(q: _Question) -> Decision:
    invoice = q.resource
    if not isinstance(invoice, Invoice):
        return q.deny(f"For {_a(q.role)} this depends on the invoice", "a specific invoice")
    if invoice.created_by_id != q.principal.user_id_in(invoice.organization_id):
        return q.deny(
            f"{q.someone} may only {_verb(q.action)} invoices they created",
            "authorship of this draft, or the owner or admin role",
        )
    if invoice.status != InvoiceStatus.DRAFT:
        return q.deny(f"{q.someone} may only {_verb(q.action)} drafts", "the owner or admin role")
    return q.allow(f"Members may {_verb(q.action)} their own drafts")


def _pro_plan(q: _Question) -> Decision:
    organization = organization_of(q.resource)
    if organization is None or organization.plan != Plan.PRO:
        return q.deny(f"Exporting ({q.action}) is part of the pro plan", "the pro plan")
    return q.allow(f"The pro plan includes {q.action} for {_a(q.role)}")


def _flag_on(q: _Question) -> Decision:
    organization = organization_of(q.resource)
    if organization is None or not organization.invoice_duplication_enabled:
        return q.deny(
            "The organization's flag “invoice duplication” is off",
            "the invoice duplication flag switched on by the owner",
        )
    return q.allow(f"The invoice duplication flag is on, and {_a(q.role)} may create invoices")


def _members_only(q: _Question) -> Decision:
    # Whom nobody may make an owner is an invariant (_invariants), not this rule's business.
    # "Plain members": the member role or a custom role, never an admin or the owner.
    if not isinstance(q.resource, Membership):
        return q.deny(f"For {_a(q.role)} this depends on the member", "a specific member")
    if q.resource.role in (OWNER, ADMIN):
        return q.deny(f"{q.someone} may only manage plain members", "the owner role")
    return q.allow(f"{q.someone} may manage plain members")


# Each rule of the role table, and the function that answers it. A rule without an entry
# here fails at import (below), not at the first request that meets it.
_ROLE_RULES: dict[Rule, Callable[[_Question], Decision]] = {
    Rule.YES: _yes,
    Rule.NO: _no,
    Rule.ELEVATED: _elevated,
    Rule.ELEVATED_STRONG: _elevated_strong,
    Rule.TRANSFER_FIRST: _transfer_first,
    Rule.OWN_DRAFTS: _own_drafts,
    Rule.PRO_PLAN: _pro_plan,
    Rule.FLAG_ON: _flag_on,
    Rule.MEMBERS_ONLY: _members_only,
}
assert {rule for rules in POLICY.values() for rule in rules.values()} <= set(_ROLE_RULES)


def _invariants(
    principal: Principal,
    action: str,
    resource: object,
    role: str,
    allowed: Decision,
    context: dict[str, Any],
) -> Decision:
    """Rules that hold whatever the role: invoice states, and one owner per organization."""

    def deny(reason: str, rule: str) -> Decision:
        return Decision(False, action, reason, role=role, missing="nothing a role can give",
                        rule=rule)  # fmt: skip

    if isinstance(resource, Invoice) and action in INVOICE_STATES:
        if resource.status not in INVOICE_STATES[action]:
            return deny(_state_refusal(action, resource.status), "invoice state")
    if action == "member.invite" and context.get("role") == OWNER:
        return deny(
            "An organization has one owner; ownership moves only by a transfer", "one owner"
        )
    if isinstance(resource, Membership) and action in ("member.remove", "member.change_role"):
        if resource.user_id == principal.user_id_in(resource.organization_id):
            return deny("Nobody can remove or re-role themselves here", "not yourself")
        if resource.role == OWNER:
            return deny("The owner changes only by an ownership transfer", "one owner")
        if action == "member.change_role" and context.get("role") == OWNER:
            return deny("Ownership moves only by a transfer", "one owner")
    if action == "org.view_as" and not holds_no_more_than(
        principal, organization_of(resource), context.get("role"), role
    ):
        return deny(
            "You may view as a member or role whose permissions are within your own, so "
            "that looking never shows what you may not see",
            "no more than your own role",
        )
    return _within_your_role(principal, action, resource, role, allowed, context)


# The rule's name when a role would hand out (or manage) more than it holds itself.
WITHIN_YOUR_ROLE = "within your own role"


def _within_your_role(
    principal: Principal,
    action: str,
    resource: object,
    role: str,
    allowed: Decision,
    context: dict[str, Any],
) -> Decision:
    """Nobody hands out, or manages, a role holding actions their own role does not.

    The owner holds every action and an admin every one a custom role may, so this never
    refuses them; it stops a custom role with member.invite from inviting an admin.
    """
    if action not in ("member.invite", "member.remove", "member.change_role"):
        return allowed
    organization = organization_of(resource)
    if organization is None:
        return allowed
    mine = actions_held(principal, organization.id, role) or frozenset()
    theirs = [context.get("role")] if action != "member.remove" else []
    if isinstance(resource, Membership):
        theirs.append(resource.role)
    for other in theirs:
        # A key that names no role here is the form's to refuse (422), not the policy's.
        held = actions_held(principal, organization.id, other) if other else None
        if held is not None and not held <= mine:
            return Decision(
                False, action,
                f"The {allowed.role} role may only hand out or manage roles whose actions it "
                "holds itself", role=allowed.role, missing="a role holding all of theirs",
                rule=WITHIN_YOUR_ROLE,
            )  # fmt: skip
    return allowed


def holds_no_more_than(
    principal: Principal, organization: Organization | None, role: str | None, own_role: str
) -> bool:
    """Every action ``role`` holds in the organization, ``own_role`` holds too: built-in
    roles by the table's columns, custom roles by their actions (None: the question is
    about no role in particular). A key that names no role there is never within."""
    if role is None:
        return True
    if organization is None:
        return False
    theirs = actions_held(principal, organization.id, role)
    mine = actions_held(principal, organization.id, own_role) or frozenset()
    return theirs is not None and theirs <= mine


# Every role the table has a column for.
ROLES = tuple(dict.fromkeys(role for rules in POLICY.values() for role in rules))


_VERBS = {"invoice.update": "edit", "invoice.send": "send"}
_PAST = {
    "invoice.update": "edited",
    "invoice.delete": "deleted",
    "invoice.send": "sent",
    "invoice.mark_paid": "marked paid",
    "invoice.void": "voided",
}


# What to do instead, or why not, where an invoice's state refuses an action.
_INSTEAD: dict[tuple[str, str], str] = {
    ("invoice.delete", InvoiceStatus.PAID): "Void it instead: a voided invoice stays on the "
    "books, marked void.",
    ("invoice.delete", InvoiceStatus.VOID): "It stays on the books as the record of what was "
    "voided.",
}


def _state_refusal(action: str, status: str) -> str:
    """Why an invoice's state refuses ``action``, and the way out when there is one."""
    refusal = f"{_a(status)} invoice cannot be {_past(action)}"
    instead = _INSTEAD.get((action, status))
    if instead is None:
        return refusal[0].upper() + refusal[1:]
    return f"The invoice state rule: {refusal}. {instead}"


def _verb(action: str) -> str:
    return _VERBS.get(action, action)


def _past(action: str) -> str:
    return _PAST.get(action, action)


def _self_service(principal: Principal, action: str, resource: object) -> Decision:
    """The SELF_SERVICE cell for ``action``, enforced as written."""
    rule = SELF_SERVICE[action]
    verified_email, second_factor = _SELF_RULE_NEEDS[rule]
    if not (isinstance(resource, User) and resource.id == principal.user.id):
        return Decision(
            False, action, "Only the account holder may do this", missing="being this user"
        )
    if verified_email and not principal.user.email_verified:
        return Decision(
            False, action, "Verify your email address first",
            missing="a verified email address", rule="verified email",
        )  # fmt: skip
    if principal.token_scope is not None:
        return Decision(
            False, action, "Account settings are not available to API tokens",
            missing="a signed-in browser session", rule="token scope",
            details={"api_reason": "insufficient_scope"},
        )  # fmt: skip
    return Decision(
        True,
        action,
        "People may change their own account after a fresh check"
        + (" that uses their second factor" if second_factor else ""),
        rule=rule.value,
        requires_elevation=True,
        requires_second_factor=second_factor,
    )
