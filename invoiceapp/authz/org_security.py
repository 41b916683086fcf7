"""An organization's security policy, as inputs to can(): authentication facts becoming
authorization rules.

The owner sets it at /orgs/<slug>/security (invoiceapp.views.org_security). Each setting
narrows what the role table allows, for this organization's data only:

- proof rule       which sign-in proofs reach the data: any; no mailed codes or links; a
                   second factor (the "requires two-factor" rule); passkeys only
- session age      a session signed in longer ago than this is refused here
- elevation        this organization's own, shorter, window for "elevated"
- tokens           who may hold API tokens for it (everyone, owners and admins, nobody),
                   their longest lifetime, and whether tokens may read under a strict
                   proof rule
- invitations      only to addresses at its domains (an allow-list)

A session that falls short is signed in, so it gets a 403 naming the rule and what would
satisfy it, never a 401. An API token's proof is "token": it never counts as a stronger
proof, whatever the session that made it was proven with.

Nothing here builds a Decision: policy.can() asks refusal() and turns the answer into one,
so this module needs nothing from policy.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ..authn.sessions import TWO_FACTOR_PROOFS
from ..db import utcnow
from ..models import PROOF_RULES, Organization
from ..principal import Principal

ANY, NO_MAILED, SECOND_FACTOR, PASSKEY = PROOF_RULES
EVERYONE, MANAGERS, NOBODY = "everyone", "managers", "nobody"
# The proof rules that only a second factor meets.
TWO_FACTOR_RULES = frozenset({SECOND_FACTOR, PASSKEY})
# Proofs that only show someone could read a mailbox (another engineer's sign-in methods).
MAILED_PROOFS = frozenset({"email_code", "magic_link"})
TOKEN_PROOF = "token"

# Each rule's name, as Decision.rule, the trace and the 403 page show it.
TWO_FACTOR_RULE = "organization requires two-factor"
PASSKEY_RULE = "organization requires passkeys"
NO_MAILED_RULE = "organization refuses mailed sign-in codes and links"
SESSION_AGE_RULE = "organization's session age limit"
TOKEN_HOLDERS_RULE = "organization's API token holders"
TOKEN_LIFETIME_RULE = "organization's API token lifetime"
INVITATION_DOMAINS_RULE = "organization's invitation domains"

# What each proof rule is called on the page and in the trace.
PROOF_RULE_LABELS = {
    ANY: "Any sign-in method",
    NO_MAILED: "No sign-in by emailed code or magic link",
    SECOND_FACTOR: "A second factor (authenticator app, recovery code or passkey)",
    PASSKEY: "Passkeys only",
}
TOKEN_CREATOR_LABELS = {
    EVERYONE: "Every member",
    MANAGERS: "Owners and admins only",
    NOBODY: "Nobody: API tokens are off",
}


class TokenTimes(Protocol):
    """What the lifetime rule reads of a token (a PersonalAccessToken)."""

    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Refusal:
    """Why the organization's policy says no, and what would satisfy it."""

    rule: str
    reason: str
    missing: str
    api_reason: str


def proof_rule(organization: Organization) -> str:
    """The proof rule in force. A second factor or passkeys count only while
    requires_two_factor is on, so the settings page's checkbox keeps its meaning."""
    stored = organization.proof_rule or ANY
    if organization.requires_two_factor:
        return PASSKEY if stored == PASSKEY else SECOND_FACTOR
    return NO_MAILED if stored == NO_MAILED else ANY


def meets_proof_rule(rule: str, proof: str) -> bool:
    """Does a session proven with ``proof`` meet ``rule``? A token meets only "any"."""
    if rule == ANY:
        return True
    if proof in (TOKEN_PROOF, "none"):
        return False
    if rule == NO_MAILED:
        return proof not in MAILED_PROOFS
    if rule == SECOND_FACTOR:
        return proof in TWO_FACTOR_PROOFS
    return proof == PASSKEY


def elevation_seconds(organization: Organization | None) -> int | None:
    """The organization's own elevation window, when it set one."""
    if organization is None or not organization.elevation_minutes:
        return None
    return organization.elevation_minutes * 60


def refusal(principal: Principal, organization: Organization, *, reading: bool) -> Refusal | None:
    """The first setting this request falls short of, or None. ``reading``: the action
    changes nothing (what a token may do when the organization lets tokens read)."""
    if principal.token_scope is not None:
        return _token_refusal(principal, organization, reading=reading)
    return _proof_refusal(principal, organization) or _session_age_refusal(principal, organization)


def _proof_refusal(principal: Principal, organization: Organization) -> Refusal | None:
    rule = proof_rule(organization)
    if meets_proof_rule(rule, principal.proof):
        return None
    name = organization.name
    if rule == SECOND_FACTOR:
        return Refusal(
            TWO_FACTOR_RULE,
            f"{name} requires two-factor authentication, and this session was "
            f"proven with {_proof_words(principal.proof)}. Set up two-factor at "
            "/account/two-factor and sign in with it.",
            "a sign-in with a second factor",
            "two_factor_required",
        )
    if rule == PASSKEY:
        return Refusal(
            PASSKEY_RULE,
            f"{name} accepts only sessions signed in with a passkey, and this one was "
            f"signed in with {_proof_words(principal.proof)}. Sign in with a passkey (add one "
            "under Account, Passkeys, first if you have none).",
            "a sign-in with a passkey",
            "passkey_required",
        )
    return Refusal(
        NO_MAILED_RULE,
        f"{name} does not accept sessions signed in with a code or link sent by email, "
        "since those prove only that someone could read the mailbox. Sign in with your "
        "password or a passkey.",
        "a sign-in with a password or a passkey",
        "stronger_sign_in_required",
    )


def _proof_words(proof: str) -> str:
    return {
        "password": "a password only",
        "password+totp": "a password and an authenticator code",
        "password+recovery_code": "a password and a recovery code",
        "email_code": "a code sent by email",
        "magic_link": "a link sent by email",
    }.get(proof, proof)


def _session_age_refusal(principal: Principal, organization: Organization) -> Refusal | None:
    hours = organization.max_session_hours
    if not hours or principal.session is None:
        return None
    signed_in_at: datetime = principal.session.created_at
    if utcnow() - signed_in_at <= timedelta(hours=hours):
        return None
    return Refusal(
        SESSION_AGE_RULE,
        f"{organization.name} accepts sessions signed in within the last {hours} hours, and "
        "this one is older. Sign out and sign in again.",
        f"a sign-in within the last {hours} hours",
        "session_too_old",
    )


def _token_refusal(
    principal: Principal, organization: Organization, *, reading: bool
) -> Refusal | None:
    """A token is judged as a token: who holds it, how long it lives, and whether the
    organization lets tokens in under its proof rule (read only, if at all)."""
    held = existing_token_refusal(
        organization, principal.role_in(organization.id), principal.access_token
    )
    if held is not None:
        return held
    rule = proof_rule(organization)
    if rule == ANY or (reading and organization.tokens_may_read):
        return None
    return Refusal(
        {SECOND_FACTOR: TWO_FACTOR_RULE, PASSKEY: PASSKEY_RULE}.get(rule, NO_MAILED_RULE),
        f"{organization.name} requires this for its data: {PROOF_RULE_LABELS[rule].lower()}. "
        "An API token is not a sign-in and never counts as one"
        + ("; here tokens may only read." if organization.tokens_may_read else "."),
        "a browser session signed in as the organization requires",
        "two_factor_required" if rule == SECOND_FACTOR else "stronger_sign_in_required",
    )


def existing_token_refusal(
    organization: Organization, role: str | None, token: TokenTimes | None
) -> Refusal | None:
    """Whether a token its holder (with ``role``) made earlier still works here: the rules
    for making one apply to it on every use, so tightening them takes effect at once."""
    holders = _holders_refusal(organization, role)
    if holders is not None:
        return holders
    days = organization.token_max_days
    if token is not None and days and token.expires_at - token.created_at > timedelta(days=days):
        return Refusal(
            TOKEN_LIFETIME_RULE,
            f"{organization.name} allows API tokens that live at most {days} days, and this "
            "one was made to live longer. Revoke it and create a shorter one.",
            f"a token that expires within {days} days of its creation",
            "token_lifetime_too_long",
        )
    return None


def _holders_refusal(organization: Organization, role: str | None) -> Refusal | None:
    """Tokens for nobody, or for owners and admins only: the same answer at creation and
    on every use, so tightening the rule stops existing tokens at once."""
    holders = organization.token_creators or EVERYONE
    if holders == EVERYONE or (holders == MANAGERS and role in ("owner", "admin")):
        return None
    who = "nobody" if holders == NOBODY else "owners and admins only"
    return Refusal(
        TOKEN_HOLDERS_RULE,
        f"{organization.name} allows API tokens for {who}. Use the site in a browser instead.",
        "a role the organization's API token rule allows",
        "tokens_not_allowed",
    )


def security_policy_flags(organization: Organization) -> tuple[str, ...]:
    """The policy's inputs in words, for the decision trace: the proof rule always, the
    other settings when the owner set them."""
    flags = [f"sign-in proofs: {PROOF_RULE_LABELS[proof_rule(organization)].lower()}"]
    if organization.max_session_hours:
        flags.append(f"sessions signed in at most {organization.max_session_hours} h ago")
    if organization.elevation_minutes:
        flags.append(f"elevation window {organization.elevation_minutes} min")
    if organization.invitation_domains:
        flags.append("invitations only to " + ", ".join(invitation_domains(organization)))
    if (organization.token_creators or EVERYONE) != EVERYONE:
        flags.append(f"API tokens: {TOKEN_CREATOR_LABELS[organization.token_creators].lower()}")
    if organization.token_max_days:
        flags.append(f"API tokens live at most {organization.token_max_days} days")
    if organization.tokens_may_read:
        flags.append("API tokens may read under the proof rule")
    return tuple(flags)


# ---------------------------------------------------------------------------
# Invitation domains and token creation: checked where the form is, and by can()
# ---------------------------------------------------------------------------

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def parse_domains(text: str) -> tuple[list[str], list[str]]:
    """Domains from what the owner typed (spaces, commas or lines between them), and the
    entries that are not domains. "@acme.test" is accepted as "acme.test"."""
    domains, bad = [], []
    for entry in re.split(r"[\s,;]+", text.strip().lower()):
        if not entry:
            continue
        domain = entry.removeprefix("@")
        if _DOMAIN.match(domain):
            if domain not in domains:
                domains.append(domain)
        else:
            bad.append(entry)
    return domains, bad


def invitation_domains(organization: Organization) -> list[str]:
    return (organization.invitation_domains or "").split()


def invitation_domain_refusal(organization: Organization, email: str) -> Refusal | None:
    """An address outside the allow-list (exact domain match: no subdomains, so a
    look-alike "acme.test.evil.example" or "mail.acme.test" is refused)."""
    allowed = invitation_domains(organization)
    if not allowed:
        return None
    domain = email.rsplit("@", 1)[-1].lower()
    if domain in allowed:
        return None
    listed = ", ".join(allowed)
    return Refusal(
        INVITATION_DOMAINS_RULE,
        f"This organization invites only addresses at {listed}.",
        f"an address at {listed}",
        "invitation_domain_not_allowed",
    )


def token_creation_refusal(
    organization: Organization, role: str | None, expires_days: int
) -> Refusal | None:
    """May someone with ``role`` create a token for ``organization`` that lives
    ``expires_days``? The same rules refuse an existing token on every use."""
    holders = _holders_refusal(organization, role)
    if holders is not None:
        return holders
    days = organization.token_max_days
    if days and expires_days > days:
        return Refusal(
            TOKEN_LIFETIME_RULE,
            f"{organization.name} allows API tokens that live at most {days} days.",
            f"at most {days} days",
            "token_lifetime_too_long",
        )
    return None
