"""Every combination the policy can be asked about, against CONTRACT section 7.

role (owner, admin, member, none) × action × plan (free, pro) × flag (on, off) × the
resource in the principal's organization or another one × the credential (a fresh or stale
session, proven by a password alone, with a second factor, a passkey, an emailed code or a
magic link; a read or write API token) × a second factor enrolled or not × the
organization's proof rule (any, no mailed codes or links, a second factor — "requires
two-factor" — or passkeys only), and for invoice actions × status (draft, sent, paid, void)
× author (own, someone else's), and for membership actions × the target's role × self or
someone else × the new role; invitations × the invited address's domain. Then the rest of
the organization's security policy, every setting off and on, with every role, action and
credential: session age and elevation window; invitation domains; who may hold API tokens,
their longest lifetime, and whether tokens read under a strict rule (about 143,000 cases in
all). The account actions (self-service) are checked the same way at the end of this file.

The expectation below is written from the contract's words, independently of
invoiceapp.authz.policy: POLICY is only used to check that this file knows every action
it has. can() is called with plain in-memory objects (no database, no request), and
the elevation step is composed exactly as authorize() does it (with "a second factor is
enrolled" as an input instead of a database query), so each case ends in one of three
outcomes: allowed, reauth (302 to /reauthenticate) or denied (403).

Pure Python, tens of thousands of cases in one test: a few seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from invoiceapp.authn.sessions import is_fresh
from invoiceapp.authz.policy import (
    GRANTABLE_ACTIONS,
    NEEDS_VERIFIED_EMAIL,
    POLICY,
    SELF_SERVICE,
    WITHIN_YOUR_ROLE,
    Decision,
    Rule,
    can,
)
from invoiceapp.db import utcnow
from invoiceapp.models import Invoice, Membership, Organization, User
from invoiceapp.principal import Principal, RoleGrant
from invoiceapp.shares import Grant
from invoiceapp.support_access import SupportBasis

OWNER, ADMIN, MEMBER = "owner", "admin", "member"
ROLES: tuple[str | None, ...] = (OWNER, ADMIN, MEMBER, None)
STATUSES = ("draft", "sent", "paid", "void")
PLANS = ("free", "pro")
FLAGS = (False, True)
# How the request was proven: a session (fresh or stale; password alone or with a second
# factor), or a personal access token (no session at all, so never elevated).
FRESH_PASSWORD, STALE_PASSWORD = "fresh password session", "stale password session"
FRESH_TWO_FACTOR, STALE_TWO_FACTOR = "fresh two-factor session", "stale two-factor session"
READ_TOKEN, WRITE_TOKEN = "read token", "write token"
# The other sign-in methods (issue 18): a passkey, and the mailed code and link.
FRESH_PASSKEY, STALE_EMAIL_CODE = "fresh passkey session", "stale email code session"
FRESH_MAGIC_LINK = "fresh magic link session"
CREDENTIALS = (FRESH_PASSWORD, STALE_PASSWORD, FRESH_TWO_FACTOR, STALE_TWO_FACTOR,
               FRESH_PASSKEY, STALE_EMAIL_CODE, FRESH_MAGIC_LINK,
               READ_TOKEN, WRITE_TOKEN)  # fmt: skip
FRESH = frozenset({FRESH_PASSWORD, FRESH_TWO_FACTOR, FRESH_PASSKEY, FRESH_MAGIC_LINK})
TOKENS = frozenset({READ_TOKEN, WRITE_TOKEN})
# How each session credential was proven (UserSession.proof).
PROOF = {FRESH_PASSWORD: "password", STALE_PASSWORD: "password",
         FRESH_TWO_FACTOR: "password+totp", STALE_TWO_FACTOR: "password+totp",
         FRESH_PASSKEY: "passkey", STALE_EMAIL_CODE: "email_code",
         FRESH_MAGIC_LINK: "magic_link"}  # fmt: skip
# The organization's proof rule (its security policy), and the proofs each one accepts,
# from the contract's words: "a second factor, passkeys only, no mailed codes or links".
PROOF_RULES = ("any", "no_mailed", "second_factor", "passkey")
ACCEPTED_PROOFS = {
    "any": frozenset(PROOF.values()),
    "no_mailed": frozenset({"password", "password+totp", "passkey"}),
    "second_factor": frozenset({"password+totp", "passkey"}),
    "passkey": frozenset({"passkey"}),
}
# Fresh sessions were signed in (and last proven) this long ago; stale ones a day ago.
FRESH_AGE, STALE_AGE = timedelta(minutes=3), timedelta(days=1)
ALLOWED, REAUTH, DENIED = "allowed", "reauth", "denied"

# CONTRACT section 7, row by row, plus the three organization pages of section 5 that
# have no row there (org.read, member.read, org.leave). account.password.change is about
# a user, not an organization: the account rows are checked at the end of this file.
INVOICE_ACTIONS = (
    "invoice.read",
    "invoice.update",
    "invoice.delete",
    "invoice.send",
    "invoice.mark_paid",
    "invoice.void",
    "invoice.duplicate",
)
ORGANIZATION_ACTIONS = (
    "invoice.create",
    "invoice.export",
    "org.read",
    "org.leave",
    "org.settings.update",
    "org.billing.read",
    "org.billing.update",
    "org.transfer_ownership",
    "org.security.update",
    "member.read",
    "audit.read",
    "invoice.share",
    "org.roles.read",
    "org.roles.update",
    "audit.retention.update",
    "org.support.manage",
    "org.support.approve",
)
INVITE = "member.invite"
MEMBERSHIP_ACTIONS = ("member.remove", "member.change_role")
# CONTRACT section 5: "view as member", owner and admin; asked with the viewed role.
VIEW_AS = "org.view_as"
CONTRACT_ACTIONS = {*INVOICE_ACTIONS, *ORGANIZATION_ACTIONS, INVITE, *MEMBERSHIP_ACTIONS, VIEW_AS}


# --- The expectation, from the contract's words --------------------------------------------


@dataclass(frozen=True)
class Case:
    role: str | None  # the principal's role in the resource's organization; None: not a member
    action: str
    plan: str
    flag: bool
    status: str | None = None  # invoice actions
    own: bool | None = None  # invoice actions: the principal created it
    target_role: str | None = None  # membership actions: the role of the member acted on
    target_is_self: bool | None = None
    new_role: str | None = None  # member.invite, member.change_role: the role given
    viewed_role: str | None = None  # org.view_as: the role looked at as
    credential: str = FRESH_PASSWORD
    enrolled: bool = False  # the principal has a second factor (TOTP or a passkey)
    # The organization's security policy; "second_factor" is "requires two-factor".
    proof_rule: str = "any"
    max_session_hours: int | None = None
    elevation_minutes: int | None = None
    invitation_domains: str = ""
    invitee_domain: str | None = None  # member.invite: the invited address's domain
    token_creators: str = "everyone"
    token_max_days: int | None = None
    tokens_may_read: bool = False


@dataclass(frozen=True)
class Expected:
    allowed: bool
    needs_fresh: bool = False  # a fresh proof (elevation)
    needs_second_factor: bool = False  # ...that used the second factor, when one is enrolled


# What a read token may do: the actions that change nothing ("read tokens only read").
READING = frozenset({"invoice.read", "invoice.export", "org.read", "member.read",
                     "org.billing.read", "audit.read", "org.roles.read"})  # fmt: skip


def expected(case: Case) -> Expected:
    """The role's answer, then what holds whatever the role: the organization's security
    policy (a 403 for a session whose proof or age falls short, and for a token it does not
    let in) and a read token's scope (a 403 for anything that is not a read)."""
    allowed, needs_fresh = role_answer(case)
    if not allowed:
        return Expected(False)
    if not meets_security_policy(case):
        return Expected(False)
    if case.credential == READ_TOKEN and case.action not in READING:
        return Expected(False)
    # Handing the organization over, and its security policy, are the most sensitive
    # actions there are: with a second factor enrolled, the fresh proof must have used it.
    strong = case.action in ("org.transfer_ownership", "org.security.update")
    # Where only a second factor reaches the data, a fresh proof without it would end the
    # session's access: elevation there uses the second factor too.
    strong = strong or (needs_fresh and case.proof_rule in ("second_factor", "passkey"))
    return Expected(True, needs_fresh, strong)


def meets_security_policy(case: Case) -> bool:
    """The organization's security policy (CONTRACT section 7, issue 18 items 5 and 6)."""
    if case.action == INVITE and case.invitation_domains and case.invitee_domain:
        if case.invitee_domain not in case.invitation_domains.split():
            return False  # invitations only to addresses at its domains
    if case.credential in TOKENS:
        holders = {"everyone": (OWNER, ADMIN, MEMBER), "managers": (OWNER, ADMIN), "nobody": ()}
        if case.role not in holders[case.token_creators]:
            return False
        if case.token_max_days is not None and TOKEN_DAYS > case.token_max_days:
            return False  # existing tokens over the limit stop working here
        # A token is never a stronger proof; the policy may still let tokens read.
        return case.proof_rule == "any" or (case.tokens_may_read and case.action in READING)
    if PROOF[case.credential] not in ACCEPTED_PROOFS[case.proof_rule]:
        return False
    signed_in_ago = FRESH_AGE if case.credential in FRESH else STALE_AGE
    hours = case.max_session_hours
    return hours is None or signed_in_ago <= timedelta(hours=hours)


def role_answer(case: Case) -> tuple[bool, bool]:
    """(allowed, needs a fresh password) as CONTRACT section 7 reads."""
    role, action = case.role, case.action
    manager = role in (OWNER, ADMIN)
    if role is None:
        return False, False  # roles are per organization: outside it, nothing
    if action in ("invoice.read", "invoice.create", "org.read", "member.read"):
        return True, False
    if action == "invoice.update":
        # "yes (drafts and sent; never paid or void)"; a member: "own drafts only"
        if manager:
            return case.status in ("draft", "sent"), False
        return bool(case.own) and case.status == "draft", False
    if action == "invoice.delete":
        # A paid invoice is voided, not deleted; a void one stays as the record (issue 15).
        return manager and case.status in ("draft", "sent"), False
    if action == "invoice.send":
        # Only a draft can be sent; a member only their own.
        return case.status == "draft" and (manager or bool(case.own)), False
    if action == "invoice.mark_paid":
        return manager and case.status == "sent", False
    if action == "invoice.void":
        return manager and case.status != "void", False
    if action == "invoice.duplicate":
        return case.flag, False  # every role, "when the organization's flag is on"
    if action == "invoice.export":
        return case.plan == "pro", False  # every role, "plan pro only"
    if action == "org.leave":
        return role != OWNER, False  # the owner transfers ownership first
    if action == "org.settings.update":
        return role == OWNER, False
    if action in ("org.billing.read", "audit.read", "invoice.share"):
        return manager, False
    if action in ("org.billing.update", "org.transfer_ownership", "org.security.update",
                  "audit.retention.update"):  # fmt: skip
        return role == OWNER, True  # "yes, elevated"
    if action == "org.roles.read":
        return role == OWNER, False  # custom roles: "owner; changes elevated" (section 5)
    if action == "org.roles.update":
        return role == OWNER, True
    # Support access (issue 19): the owner sees and ends it; letting someone in is elevated.
    if action == "org.support.manage":
        return role == OWNER, False
    if action == "org.support.approve":
        return role == OWNER, True
    if action == INVITE:
        # Nobody invites a second owner: ownership moves only by a transfer.
        if case.new_role == OWNER:
            return False, False
        return role in (OWNER, ADMIN), False
    if action == VIEW_AS:
        # Owners and admins, never as a role above their own: an admin not as the owner.
        return role == OWNER or (role == ADMIN and case.viewed_role != OWNER), False
    if action in MEMBERSHIP_ACTIONS:
        # Nobody acts on themselves here (that is leaving), the owner changes only by a
        # transfer, and nobody is made owner by a role change.
        if case.target_is_self or case.target_role == OWNER or case.new_role == OWNER:
            return False, False
        # An admin manages "members only": not another admin, not the owner.
        return role == OWNER or (role == ADMIN and case.target_role not in (OWNER, ADMIN)), False
    raise AssertionError(f"the contract has no row for {action}")


def outcome(want: Expected, credential: str, enrolled: bool, window: int | None = None) -> str:
    """What the request gets, from the expectation and how the request was proven;
    ``window``: the organization's own elevation window in minutes."""
    if not want.allowed:
        return DENIED
    fresh = credential in FRESH  # a token is never fresh
    if window is not None and FRESH_AGE > timedelta(minutes=window):
        fresh = False
    if want.needs_fresh and not fresh:
        return REAUTH
    two_factor = PROOF.get(credential) in ("password+totp", "passkey")
    if want.needs_second_factor and enrolled and not (fresh and two_factor):
        return REAUTH
    return ALLOWED


def actual(who: Principal, decision: Decision, enrolled: bool) -> str:
    """authorize(): a refusal is a 403; a yes that needs elevation asks for fresh proof,
    with the second factor when the rule says so and one is enrolled."""
    if not decision.allowed:
        return DENIED
    fresh = is_fresh(who.session, within=decision.fresh_within_seconds)
    if decision.requires_elevation and not fresh:
        return REAUTH
    if decision.requires_second_factor and enrolled and not (fresh and who.two_factor_proven):
        return REAUTH
    return ALLOWED


# --- In-memory objects: no database, no request ----------------------------------------------

ME, SOMEONE_ELSE = 10, 11
HOME, ELSEWHERE = 1, 2


def organization(
    organization_id: int, plan: str, flag: bool, proof_rule: str = "any", **security: Any
) -> Organization:
    """``security``: the other columns of the security policy, as a Case names them."""
    return Organization(
        id=organization_id,
        slug=f"org{organization_id}",
        name=f"Org {organization_id}",
        plan=plan,
        invoice_duplication_enabled=flag,
        # The settings page's checkbox is the proof rule "a second factor" (or stronger).
        requires_two_factor=proof_rule in ("second_factor", "passkey"),
        proof_rule=proof_rule,
        **security,
    )


# Every token in the matrix was made to live this many days.
TOKEN_DAYS = 30


def principal(role: str | None, credential: str, *, verified: bool = True) -> Principal:
    # Verified unless asked: an unverified address has rules of its own (test_claims.py).
    me = User(id=ME, email="me@example.test", display_name="Me", password_hash="x",
              email_verified_at=utcnow() if verified else None)  # fmt: skip
    roles = {HOME: role} if role else {}
    if credential in TOKENS:
        scope = "read" if credential == READ_TOKEN else "write"
        made = utcnow() - timedelta(days=1)
        token: Any = SimpleNamespace(created_at=made, expires_at=made + timedelta(days=TOKEN_DAYS))
        return Principal(user=me, session=None, roles=roles, token_scope=scope,
                         access_token=token)  # fmt: skip
    return Principal(user=me, session=fake_session(credential), roles=roles)


def fake_session(credential: str) -> Any:
    """Signed in and last proven FRESH_AGE or STALE_AGE ago."""
    signed_in = utcnow() - (FRESH_AGE if credential in FRESH else STALE_AGE)
    return SimpleNamespace(created_at=signed_in, authenticated_at=signed_in,
                           proof=PROOF[credential])  # fmt: skip


def resources(
    action: str, org: Organization, my_role: str | None
) -> Iterator[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """(resource, context for can(), the Case fields it stands for) for ``action``."""
    if action in INVOICE_ACTIONS:
        for status, own in itertools.product(STATUSES, (True, False)):
            invoice = Invoice(
                organization_id=org.id,
                organization=org,
                status=status,
                created_by_id=ME if own else SOMEONE_ELSE,
                number=1,
                customer="Look-alike Ltd",
            )
            yield invoice, {}, {"status": status, "own": own}
    elif action in ORGANIZATION_ACTIONS:
        yield org, {}, {}
    elif action == INVITE:
        for new_role, domain in itertools.product((OWNER, ADMIN, MEMBER), INVITEE_DOMAINS):
            context = {"role": new_role, "email": f"new@{domain}"}
            yield org, context, {"new_role": new_role, "invitee_domain": domain}
    elif action == VIEW_AS:
        for viewed_role in (OWNER, ADMIN, MEMBER):
            yield org, {"role": viewed_role}, {"viewed_role": viewed_role}
    else:
        targets = [(role, False) for role in (OWNER, ADMIN, MEMBER)]
        if my_role is not None and org.id == HOME:
            targets.append((my_role, True))  # one's own membership has one's own role
        new_roles = (OWNER, ADMIN, MEMBER) if action == "member.change_role" else (None,)
        for (target_role, is_self), new_role in itertools.product(targets, new_roles):
            membership = Membership(
                organization_id=org.id,
                organization=org,
                user_id=ME if is_self else SOMEONE_ELSE,
                role=target_role,
            )
            context = {"role": new_role} if new_role else {}
            yield (
                membership,
                context,
                {
                    "target_role": target_role,
                    "target_is_self": is_self,
                    "new_role": new_role,
                },
            )


INVITEE_DOMAINS = ("home.test", "elsewhere.test")


def every_case(
    credentials: tuple[str, ...] = CREDENTIALS,
    enrolments: tuple[bool, ...] = (False, True),
    actions: Iterable[str] = CONTRACT_ACTIONS,
) -> Iterator[tuple[Case, Principal, Any, dict[str, Any], bool]]:
    """Roles, plans, flags, credentials and the organization's proof rule. The proof rule
    answers after the role table, so each stricter rule is met with plan pro and the flag on
    (where the table says yes most often), and "any" with all four combinations. ``actions``
    narrows the cases to those actions (test_page_buttons.py asks about three)."""
    organizations = [(plan, flag, "any") for plan, flag in itertools.product(PLANS, FLAGS)]
    organizations += [("pro", True, rule) for rule in PROOF_RULES[1:]]
    for role, (plan, flag, rule), where, credential, enrolled in itertools.product(
        ROLES,
        organizations,
        ("same organization", "other organization"),
        credentials,
        enrolments,
    ):
        org_id = HOME if where == "same organization" else ELSEWHERE
        org = organization(org_id, plan, flag, rule)
        who = principal(role, credential)
        role_there = role if org.id == HOME else None
        for action in sorted(actions):
            for resource, context, fields in resources(action, org, role):
                case = Case(role_there, action, plan, flag, **fields, credential=credential,
                            enrolled=enrolled, proof_rule=rule)  # fmt: skip
                yield case, who, resource, context, org.id == HOME


# The rest of the security policy, each setting off and on: session age and elevation
# window for sessions; holders, lifetime and reading under a strict rule for tokens;
# invitation domains for everyone. Plan pro and the flag on, so the role table says yes
# as often as it can; the proof rules are combined with everything above.
SESSION_SETTINGS = {"max_session_hours": (None, 8), "elevation_minutes": (None, 2),
                    "invitation_domains": ("", "home.test")}  # fmt: skip
TOKEN_SETTINGS = {"proof_rule": ("any", "passkey"),
                  "token_creators": ("everyone", "managers", "nobody"),
                  "token_max_days": (None, 7), "tokens_may_read": (False, True)}  # fmt: skip


def security_cases(
    actions: Iterable[str] = CONTRACT_ACTIONS,
) -> Iterator[tuple[Case, Principal, Any, dict[str, Any], bool]]:
    sessions = [c for c in CREDENTIALS if c not in TOKENS]
    for credentials, policy_settings in (
        (sessions, SESSION_SETTINGS),
        (sorted(TOKENS), TOKEN_SETTINGS),
    ):
        names = list(policy_settings)
        # A token is never elevated, so whether a second factor is enrolled changes nothing.
        enrolments = (False,) if policy_settings is TOKEN_SETTINGS else (False, True)
        for role, credential, enrolled, values in itertools.product(
            ROLES, credentials, enrolments, itertools.product(*policy_settings.values())
        ):
            chosen = dict(zip(names, values, strict=True))
            org = organization(HOME, "pro", True, **chosen)
            who = principal(role, credential)
            for action in sorted(actions):
                for resource, context, fields in resources(action, org, role):
                    case = Case(role, action, "pro", True, **fields, credential=credential,
                                enrolled=enrolled, **chosen)  # fmt: skip
                    yield case, who, resource, context, True


# --- The tests ----------------------------------------------------------------------------------


def test_this_file_knows_every_action_of_the_policy() -> None:
    assert {action for action in POLICY if not action.startswith("account.")} == CONTRACT_ACTIONS


def test_every_combination_matches_the_contract(app_context: None) -> None:
    mismatches: list[str] = []
    seen_actions: set[str] = set()
    count = 0
    outcomes: dict[str, int] = {ALLOWED: 0, REAUTH: 0, DENIED: 0}
    for case, who, resource, context, _home in itertools.chain(every_case(), security_cases()):
        count += 1
        seen_actions.add(case.action)
        decision = can(who, case.action, resource, **context)
        got = actual(who, decision, case.enrolled)
        want = outcome(expected(case), case.credential, case.enrolled, case.elevation_minutes)
        outcomes[got] += 1
        if got != want:
            mismatches.append(f"{case}: expected {want}, got {got} ({decision.reason})")
        # Whatever the answer, it explains itself.
        assert decision.action == case.action
        assert decision.reason
        if not decision.allowed:
            assert decision.missing, case
            assert "Look-alike" not in decision.reason  # never the resource's data
    assert not mismatches, f"{len(mismatches)} of {count} cases differ:\n" + "\n".join(
        mismatches[:40]
    )
    assert seen_actions == CONTRACT_ACTIONS
    assert count > 60_000
    print(f"{count} cases: {outcomes}")  # the matrix's size, for the closing note
    assert all(outcomes.values()), outcomes  # every outcome occurs: the matrix is not vacuous


def test_a_paid_or_void_invoice_is_never_deleted_and_the_refusal_names_the_rule(
    app_context: None,
) -> None:
    """The state row of the table, for every role and session: the way out is named."""
    refusals = 0
    cases = every_case(enrolments=(False,), actions={"invoice.delete"})
    for case, who, resource, context, home in cases:
        if case.status not in ("paid", "void"):
            continue
        decision = can(who, case.action, resource, **context)
        assert not decision.allowed, case
        if home and case.role in (OWNER, ADMIN) and meets_security_policy(case):
            # the role would allow it: the state decides
            refusals += 1
            assert decision.rule == "invoice state"
            assert decision.reason.startswith("The invoice state rule:")
            if case.status == "paid":
                assert "Void it instead" in decision.reason
    assert refusals > 0


def test_nobody_signed_in_is_refused_everything(app_context: None) -> None:
    # No principal at all: how one would have been proven changes nothing.
    for case, _who, resource, context, _home in every_case((FRESH_PASSWORD,), (False,)):
        decision = can(None, case.action, resource, **context)
        assert not decision.allowed
        assert decision.missing == "a signed-in user"


# --- Self-service: one's own account, about a user, not an organization ----------------------

# Each account action: (needs a verified email, its fresh proof must use the second factor
# when one is set up). The email address and the password are recovery credentials (issue
# 15): whoever changes them owns the account, so they ask for the second factor like the
# factors do. A new credential (a token, a factor) needs a verified address (issue 16).
ACCOUNT_ACTIONS = {
    "account.password.change": (False, True),
    "account.email.change": (False, True),
    "account.second_factor.change": (True, True),
    "account.two_factor.disable": (False, True),
    "account.two_factor.manage": (True, False),
    # A token outlives the session: a password alone must not mint one (issue 15 review).
    "account.tokens.create": (True, True),
    # Turning a way in off (issue 18): a thief with a session must not lock the owner out.
    "account.sign_in_methods.change": (False, True),
}
ACCOUNTS = ("mine", "mine, unverified", "someone else's")


def account_expected(action: str, account: str, credential: str) -> Expected:
    """Only the account holder, never through an API token, after fresh proof."""
    needs_verified, strong = ACCOUNT_ACTIONS[action]
    if account == "someone else's" or credential in (READ_TOKEN, WRITE_TOKEN):
        return Expected(False)
    if needs_verified and account == "mine, unverified":
        return Expected(False)
    return Expected(True, needs_fresh=True, needs_second_factor=strong)


def test_this_file_knows_every_self_service_action() -> None:
    assert set(SELF_SERVICE) == set(ACCOUNT_ACTIONS)
    assert not set(SELF_SERVICE) & set(POLICY)  # one table per action


def test_every_self_service_case_matches_the_contract(app_context: None) -> None:
    """role × account action × whose account × credential × second factor enrolled."""
    mismatches: list[str] = []
    outcomes: dict[str, int] = {ALLOWED: 0, REAUTH: 0, DENIED: 0}
    for role, action, account, credential, enrolled in itertools.product(
        ROLES, ACCOUNT_ACTIONS, ACCOUNTS, CREDENTIALS, (False, True)
    ):
        me = principal(role, credential, verified=account != "mine, unverified")
        target = me.user if account != "someone else's" else User(
            id=SOMEONE_ELSE, email="x@example.test", display_name="X")  # fmt: skip
        decision = can(me, action, target)
        got = actual(me, decision, enrolled)
        want = outcome(account_expected(action, account, credential), credential, enrolled)
        outcomes[got] += 1
        if got != want:
            mismatches.append(f"{role} {action} on {account} account, {credential}, "
                              f"enrolled={enrolled}: expected {want}, got {got}")  # fmt: skip
        assert decision.action == action and decision.reason
        if not decision.allowed:
            assert decision.missing
    assert not mismatches, "\n".join(mismatches[:40])
    assert all(outcomes.values()), outcomes


def test_another_users_account_is_refused_and_says_why(app_context: None) -> None:
    me = principal(MEMBER, FRESH_TWO_FACTOR)
    someone_else = User(id=SOMEONE_ELSE, email="x@example.test", display_name="X")
    for action in ACCOUNT_ACTIONS:
        decision = can(me, action, someone_else)
        assert not decision.allowed
        assert decision.reason == "Only the account holder may do this"
        assert decision.missing == "being this user"


def test_an_account_action_through_a_token_is_refused_as_out_of_scope(
    app_context: None,
) -> None:
    for credential, action in itertools.product((READ_TOKEN, WRITE_TOKEN), ACCOUNT_ACTIONS):
        me = principal(OWNER, credential)
        decision = can(me, action, me.user)
        assert not decision.allowed
        assert decision.rule == "token scope"
        assert decision.missing == "a signed-in browser session"
        assert decision.details["api_reason"] == "insufficient_scope"


def test_the_owner_acting_on_their_own_membership_is_told_it_is_themselves(
    app_context: None,
) -> None:
    """The owner's role allows member.remove and member.change_role, so the refusal that
    answers is "not yourself" (leaving is org.leave), not the one-owner rule behind it."""
    home = organization(HOME, "free", False)
    mine = Membership(organization_id=HOME, organization=home, user_id=ME, role=OWNER)
    me = principal(OWNER, FRESH_PASSWORD)
    for action, context in (("member.remove", {}), ("member.change_role", {"role": ADMIN})):
        decision = can(me, action, mine, **context)
        assert not decision.allowed
        assert decision.rule == "not yourself"
        assert decision.reason == "Nobody can remove or re-role themselves here"


# --- Shares: a grant is one more input -----------------------------------------------------

# A share grants a person outside the organization invoice.read (and, with read_mark_paid,
# invoice.mark_paid) on one customer's invoices, until it expires or is revoked (CONTRACT
# section 7). Nothing else: no organization action, no other customer, no API token.
GRANTS = (None, "read", "read_mark_paid", "expired", "revoked")
SHARED, NOT_SHARED = "Shared Customer", "Look-alike Ltd"


def grant(kind: str | None) -> tuple[Grant, ...]:
    if kind is None:
        return ()
    now = utcnow()
    expired = kind == "expired"
    return (
        Grant(
            share_id="0123456789abcdef",
            organization_id=HOME,
            customer=SHARED,
            access="read" if kind in ("read", "expired", "revoked") else kind,
            shared_by="Ada",
            expires_at=now - timedelta(seconds=1) if expired else now + timedelta(days=3),
            revoked_at=now if kind == "revoked" else None,
        ),
    )


def grant_expected(kind: str | None, action: str, customer: str, status: str | None,
                   credential: str, two_factor: bool) -> bool:  # fmt: skip
    """A guest (no role in the organization) answers from the share alone."""
    if (
        kind not in ("read", "read_mark_paid")
        or customer != SHARED
        or credential in (READ_TOKEN, WRITE_TOKEN)
    ):
        return False
    allowed = action == "invoice.read" or (
        kind == "read_mark_paid" and action == "invoice.mark_paid" and status == "sent"
    )
    if two_factor and PROOF[credential] not in ACCEPTED_PROOFS["second_factor"]:
        return False  # the organization's two-factor rule holds for guests too
    return allowed


def test_every_grant_case_matches_the_contract(app_context: None) -> None:
    mismatches: list[str] = []
    count = 0
    for role, kind, credential, two_factor, customer in itertools.product(
        (None, MEMBER, ADMIN), GRANTS, CREDENTIALS, (False, True), (SHARED, NOT_SHARED)
    ):
        org = organization(HOME, "pro", True, "second_factor" if two_factor else "any")
        base = principal(role, credential)
        who = Principal(user=base.user, session=base.session, roles=base.roles,
                        token_scope=base.token_scope, grants=grant(kind))  # fmt: skip
        for action in sorted(CONTRACT_ACTIONS):
            for resource, context, fields in resources(action, org, role):
                if isinstance(resource, Invoice):
                    resource.customer = customer
                decision = can(who, action, resource, **context)
                count += 1
                if role is not None:
                    # A member gains nothing from a share: exactly their role's answer.
                    plain = can(base, action, resource, **context)
                    if (decision.allowed, decision.reason) != (plain.allowed, plain.reason):
                        mismatches.append(f"{role} {kind} {action}: the share changed it")
                    continue
                want = grant_expected(kind, action, customer, fields.get("status"),
                                      credential, two_factor)  # fmt: skip
                if decision.allowed != want:
                    mismatches.append(
                        f"{kind} {credential} 2fa={two_factor} {customer} {action} {fields}: "
                        f"expected {want}, got {decision.allowed} ({decision.reason})"
                    )
                if decision.rule == "share" and not decision.allowed:
                    assert "Your share from Ada allows" in decision.reason
                assert "Look-alike" not in decision.reason and "Shared Customer" not in (
                    decision.reason
                )
    assert not mismatches, f"{len(mismatches)} of {count} differ:\n" + "\n".join(mismatches[:40])
    assert count > 20_000


def test_a_guests_refusal_beyond_the_share_names_it(app_context: None) -> None:
    org = organization(HOME, "pro", True)
    base = principal(None, FRESH_PASSWORD)
    who = Principal(user=base.user, session=base.session, roles={}, grants=grant("read"))
    invoice = Invoice(organization_id=HOME, organization=org, status="sent",
                      created_by_id=SOMEONE_ELSE, number=1, customer=SHARED)  # fmt: skip
    refused = can(who, "invoice.mark_paid", invoice)
    assert not refused.allowed and refused.reason == "Your share from Ada allows reading only"
    allowed = can(who, "invoice.read", invoice)
    assert allowed.allowed and allowed.reason.startswith("Allowed by a share from Ada, expires ")


def test_a_decision_cannot_be_flipped_after_can_made_it(app_context: None) -> None:
    """A Decision is frozen: code between can() and the action cannot turn a no into a yes."""
    decision = can(
        principal(MEMBER, FRESH_PASSWORD), "org.settings.update", organization(HOME, "pro", True)
    )
    assert not decision.allowed
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.allowed = True  # type: ignore[misc]
    assert not decision


def test_an_account_answer_says_whether_the_fresh_check_must_use_the_second_factor(
    app_context: None,
) -> None:
    me = principal(MEMBER, FRESH_TWO_FACTOR)
    for action, (_verified, strong) in ACCOUNT_ACTIONS.items():
        decision = can(me, action, me.user)
        assert decision.allowed and decision.requires_second_factor is strong
        assert decision.reason == "People may change their own account after a fresh check" + (
            " that uses their second factor" if strong else ""
        )


@pytest.mark.parametrize("rule", [rule for rule in Rule if rule.value.startswith("self")])
def test_a_self_service_rule_enforces_its_words_in_whichever_cell_it_is_put(
    app_context: None, monkeypatch: pytest.MonkeyPatch, rule: Rule
) -> None:
    """Every self-service rule, even one no cell uses today, means what it says: "verified
    email" refuses an unverified address, "second factor" asks for it, nothing else does."""
    monkeypatch.setitem(SELF_SERVICE, "account.password.change", rule)
    verified, unverified = (principal(MEMBER, FRESH_PASSWORD, verified=v) for v in (True, False))

    mine = can(verified, "account.password.change", verified.user)
    unproven = can(unverified, "account.password.change", unverified.user)

    assert mine.allowed and mine.requires_elevation
    assert mine.requires_second_factor is ("second factor" in rule.value)
    assert unproven.allowed is ("verified email" not in rule.value)


def test_the_actions_said_to_need_a_verified_email_are_the_contract_s() -> None:
    """NEEDS_VERIFIED_EMAIL (what the claims code checks an unverified account against) is
    read off the table's cells: it must name the contract's actions, not the second factor's."""
    assert {action for action, (verified, _) in ACCOUNT_ACTIONS.items() if verified} == (
        NEEDS_VERIFIED_EMAIL
    )


# --- Custom roles: random ones, property-based ---------------------------------------------

# CONTRACT section 7: a custom role holds actions of the table, never the owner-only ones
# (billing changes, transfer, settings and security policy, the roles themselves). Written
# out, not derived. Viewing as a member is an admin's action, so a custom role may hold it.
GRANTABLE = frozenset(CONTRACT_ACTIONS) - {
    "org.billing.update",
    "org.transfer_ownership",
    "org.settings.update",
    "org.security.update",
    "org.roles.read",
    "org.roles.update",
    "audit.retention.update",
    "org.support.manage",
    "org.support.approve",
}
# What each built-in role holds (any cell but a plain no), for "within your own role".
MEMBER_HOLDS = frozenset({"invoice.read", "invoice.create", "invoice.update", "invoice.send",
                          "invoice.duplicate", "invoice.export", "org.read", "org.leave",
                          "member.read"})  # fmt: skip
CUSTOM, OTHER_CUSTOM = "bookkeeper", "other"


def holds(role: str, mine: frozenset[str], other: frozenset[str]) -> frozenset[str]:
    return {OWNER: frozenset(CONTRACT_ACTIONS), ADMIN: GRANTABLE, MEMBER: MEMBER_HOLDS,
            CUSTOM: mine, OTHER_CUSTOM: other}[role]  # fmt: skip


def custom_expected(case: Case, mine: frozenset[str], other: frozenset[str]) -> Expected:
    """A custom role holding the action answers as the table's non-owner (admin) cell,
    and hands out or manages only roles within its own; every other action is a no."""
    if case.role is None or case.action not in mine:
        return Expected(False)
    handed = [case.new_role] if case.new_role else []
    handed += [case.viewed_role] if case.viewed_role else []  # view as: not above your own
    managed = [case.target_role] if case.target_role else []
    if any(not holds(role, mine, other) <= mine for role in handed + managed):
        if case.target_role != OWNER and case.new_role != OWNER and not case.target_is_self:
            return Expected(False)
    return expected(replace(case, role=ADMIN))


def custom_principal(mine: frozenset[str], other: frozenset[str], credential: str) -> Principal:
    base = principal(CUSTOM, credential)
    grants = {CUSTOM: RoleGrant(CUSTOM, "Bookkeeper", mine),
              OTHER_CUSTOM: RoleGrant(OTHER_CUSTOM, "Other", other)}  # fmt: skip
    return replace(base, custom_roles={HOME: grants})


def custom_resources(
    action: str, org: Organization
) -> Iterator[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """resources(), plus members holding a custom role and custom roles handed out."""
    yield from resources(action, org, CUSTOM)
    if action == INVITE:
        yield org, {"role": OTHER_CUSTOM}, {"new_role": OTHER_CUSTOM}
    if action == VIEW_AS:
        yield org, {"role": OTHER_CUSTOM}, {"viewed_role": OTHER_CUSTOM}
    if action in MEMBERSHIP_ACTIONS:
        new_roles = (MEMBER, ADMIN, OTHER_CUSTOM) if action == "member.change_role" else (None,)
        for target, new_role in itertools.product((OTHER_CUSTOM, MEMBER), new_roles):
            membership = Membership(organization_id=org.id, organization=org,
                                    user_id=SOMEONE_ELSE, role=target)  # fmt: skip
            context = {"role": new_role} if new_role else {}
            fields = {"target_role": target, "target_is_self": False, "new_role": new_role}
            yield membership, context, fields


actions_of_a_role = st.frozensets(st.sampled_from(sorted(GRANTABLE)))


@settings(max_examples=150, deadline=None)
@given(
    mine=actions_of_a_role,
    other=actions_of_a_role,
    plan=st.sampled_from(PLANS),
    flag=st.booleans(),
    credential=st.sampled_from(CREDENTIALS),
    enrolled=st.booleans(),
    proof_rule=st.sampled_from(PROOF_RULES),  # the security policy: an input of its own
    home=st.booleans(),
)
def test_a_random_custom_role_answers_like_the_table_for_its_actions_and_no_to_the_rest(
    mine: frozenset[str],
    other: frozenset[str],
    plan: str,
    flag: bool,
    credential: str,
    enrolled: bool,
    proof_rule: str,
    home: bool,
) -> None:
    app = Flask(__name__)
    app.config["FRESH_AGE_SECONDS"] = 600
    org = organization(HOME if home else ELSEWHERE, plan, flag, proof_rule)
    who = custom_principal(mine, other, credential)
    mismatches = []
    with app.app_context():
        for action in sorted(CONTRACT_ACTIONS):
            for resource, context, fields in custom_resources(action, org):
                case = Case(CUSTOM if home else None, action, plan, flag, **fields,
                            credential=credential, enrolled=enrolled,
                            proof_rule=proof_rule)  # fmt: skip
                decision = can(who, action, resource, **context)
                got = actual(who, decision, enrolled)
                want = outcome(custom_expected(case, mine, other), credential, enrolled)
                if got != want:
                    mismatches.append(f"{sorted(mine)} {case}: want {want}, got {got} "
                                      f"({decision.reason})")  # fmt: skip
                if decision.allowed and home:
                    assert "Bookkeeper" in decision.reason or decision.rule != "yes", decision
    assert not mismatches, "\n".join(mismatches[:20])


def test_the_table_says_which_actions_a_custom_role_may_hold() -> None:
    assert set(GRANTABLE_ACTIONS) == GRANTABLE


def test_a_custom_role_with_export_on_the_free_plan_is_refused_naming_the_plan(
    app_context: None,
) -> None:
    who = custom_principal(frozenset({"invoice.export"}), frozenset(), FRESH_PASSWORD)
    decision = can(who, "invoice.export", organization(HOME, "free", False))
    assert not decision.allowed
    assert decision.missing == "the pro plan"
    assert decision.rule == "plan pro only"


def test_a_custom_role_may_not_invite_an_admin_or_a_role_holding_more_than_it(
    app_context: None,
) -> None:
    who = custom_principal(frozenset({"member.invite", "invoice.read"}),
                           frozenset({"invoice.read"}), FRESH_PASSWORD)  # fmt: skip
    home = organization(HOME, "pro", False)
    assert can(who, "member.invite", home, role=OTHER_CUSTOM).allowed
    refused = can(who, "member.invite", home, role=ADMIN)
    assert not refused.allowed
    assert refused.rule == WITHIN_YOUR_ROLE
    assert "Bookkeeper" in refused.reason


# --- Support access: a support principal, for every action × role --------------------------

# Issue 19 item 1, written from the lead's words, not from SUPPORT_REFUSED: whatever role the
# owner chose, a support engineer never reads or changes billing, transfers, changes
# settings or the security policy, custom roles, members, views as, shares, retention, or
# support access itself; and never "leaves" an organization they never joined.
REFUSED_TO_SUPPORT = frozenset({
    "org.billing.read", "org.billing.update", "org.transfer_ownership", "org.settings.update",
    "org.security.update", "org.roles.read", "org.roles.update", "member.invite",
    "member.remove", "member.change_role", "org.view_as", "invoice.share",
    "audit.retention.update", "org.support.manage", "org.support.approve", "org.leave",
})  # fmt: skip
READ_ONLY_SUPPORT = "read_only"
SESSIONS = tuple(c for c in CREDENTIALS if c not in TOKENS)


def support_principal(role: str, credential: str) -> Principal:
    """Someone in no organization, holding a live support grant for HOME as ``role``."""
    base = principal(None, credential)
    until = utcnow() + timedelta(hours=2)
    basis = SupportBasis(grant_id=1, organization_id=HOME, organization_slug="org1",
                         organization_name="Org 1", role=role, granted_by="Ada",
                         expires_at=until, reason="Ticket 1: a test")  # fmt: skip
    return replace(base, roles={HOME: role}, support={HOME: basis})


def test_a_support_principal_answers_like_its_role_minus_the_refused_actions(
    app_context: None,
) -> None:
    mismatches: list[str] = []
    count = 0
    organizations = [(plan, flag, "any") for plan, flag in itertools.product(PLANS, FLAGS)]
    organizations += [("pro", True, rule) for rule in PROOF_RULES[1:]]
    for support_role, (plan, flag, rule), home, credential, enrolled in itertools.product(
        (READ_ONLY_SUPPORT, MEMBER, ADMIN), organizations, (True, False), SESSIONS, (False, True)
    ):
        org = organization(HOME if home else ELSEWHERE, plan, flag, rule)
        who = support_principal(support_role, credential)
        # The read-only choice is compared with a member's answer, then narrowed further.
        like = MEMBER if support_role == READ_ONLY_SUPPORT else support_role
        for action in sorted(CONTRACT_ACTIONS):
            for resource, context, fields in resources(action, org, like):
                case = Case(like if home else None, action, plan, flag, **fields,
                            credential=credential, enrolled=enrolled, proof_rule=rule)  # fmt: skip
                want = outcome(expected(case), credential, enrolled)
                if home and action in REFUSED_TO_SUPPORT:
                    want = DENIED
                if home and support_role == READ_ONLY_SUPPORT and action != "invoice.read":
                    want = DENIED
                decision = can(who, action, resource, **context)
                got = actual(who, decision, enrolled)
                count += 1
                if got != want:
                    mismatches.append(f"support {support_role} {case}: expected {want}, got "
                                      f"{got} ({decision.reason})")  # fmt: skip
                refused_by_support = home and (
                    action in REFUSED_TO_SUPPORT
                    or (support_role == READ_ONLY_SUPPORT and action != "invoice.read")
                )
                if refused_by_support:
                    assert decision.rule == "support access", (action, decision)
                    assert "granted by Ada" in decision.reason
    assert not mismatches, f"{len(mismatches)} of {count} differ:\n" + "\n".join(mismatches[:40])
    assert count > 40_000
    print(f"{count} support cases")
