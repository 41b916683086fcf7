"""Every combination the policy can be asked about, against CONTRACT section 7.

role (owner, admin, member, none) × action × plan (free, pro) × flag (on, off) × the
resource in the principal's organization or another one × elevated or not, and for
invoice actions × status (draft, sent, paid, void) × author (own, someone else's), and
for membership actions × the target's role × self or someone else × the new role.

The expectation below is written from the contract's words, independently of
invoiceapp.authz.policy: POLICY is only used to check that this file knows every action
it has. can() is called with plain in-memory objects (no database, no request), and
the elevation step is composed exactly as authorize() does it, so each case ends in one
of three outcomes: allowed, reauth (302 to /reauthenticate) or denied (403).

Pure Python, a few thousand cases in one test: well under a second.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask

from invoiceapp.authn.sessions import is_fresh
from invoiceapp.authz.policy import POLICY, can
from invoiceapp.db import utcnow
from invoiceapp.models import Invoice, Membership, Organization, User
from invoiceapp.principal import Principal

OWNER, ADMIN, MEMBER = "owner", "admin", "member"
ROLES: tuple[str | None, ...] = (OWNER, ADMIN, MEMBER, None)
STATUSES = ("draft", "sent", "paid", "void")
PLANS = ("free", "pro")
FLAGS = (False, True)
ELEVATION = ("fresh session", "stale session", "no session")
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
    "member.read",
    "audit.read",
)
INVITE = "member.invite"
MEMBERSHIP_ACTIONS = ("member.remove", "member.change_role")
CONTRACT_ACTIONS = {*INVOICE_ACTIONS, *ORGANIZATION_ACTIONS, INVITE, *MEMBERSHIP_ACTIONS}


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


def contract(case: Case) -> tuple[bool, bool]:
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
    if action in ("org.billing.read", "audit.read"):
        return manager, False
    if action in ("org.billing.update", "org.transfer_ownership"):
        return role == OWNER, True  # "yes, elevated"
    if action == INVITE:
        # Nobody invites a second owner: ownership moves only by a transfer.
        if case.new_role == OWNER:
            return False, False
        return role in (OWNER, ADMIN), False
    if action in MEMBERSHIP_ACTIONS:
        # Nobody acts on themselves here (that is leaving), the owner changes only by a
        # transfer, and nobody is made owner by a role change.
        if case.target_is_self or case.target_role == OWNER or case.new_role == OWNER:
            return False, False
        return role == OWNER or (role == ADMIN and case.target_role == MEMBER), False
    raise AssertionError(f"the contract has no row for {action}")


def outcome(allowed: bool, needs_fresh: bool, elevated: bool) -> str:
    if not allowed:
        return DENIED
    if needs_fresh and not elevated:
        return REAUTH
    return ALLOWED


# --- In-memory objects: no database, no request ----------------------------------------------

ME, SOMEONE_ELSE = 10, 11
HOME, ELSEWHERE = 1, 2


def organization(organization_id: int, plan: str, flag: bool) -> Organization:
    return Organization(
        id=organization_id,
        slug=f"org{organization_id}",
        name=f"Org {organization_id}",
        plan=plan,
        invoice_duplication_enabled=flag,
    )


def principal(role: str | None, session: Any) -> Principal:
    # Verified: an unverified address has rules of its own (test_claims.py).
    me = User(id=ME, email="me@example.test", display_name="Me", password_hash="x",
              email_verified_at=utcnow())  # fmt: skip
    return Principal(user=me, session=session, roles={HOME: role} if role else {})


def fake_session(kind: str) -> Any:
    if kind == "no session":
        return None
    age = timedelta(seconds=5) if kind == "fresh session" else timedelta(days=1)
    return SimpleNamespace(authenticated_at=utcnow() - age)


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
        for new_role in (OWNER, ADMIN, MEMBER):
            yield org, {"role": new_role}, {"new_role": new_role}
    else:
        targets = [(role, False) for role in (OWNER, ADMIN, MEMBER)]
        if my_role is not None and org.id == HOME:
            targets.append((my_role, True))  # one's own membership has one's own role
        new_roles = (OWNER, ADMIN, MEMBER) if action == "member.change_role" else (None,)
        for (target_role, is_self), new_role in itertools.product(targets, new_roles):
            membership = Membership(
                organization_id=org.id,
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


@pytest.fixture(scope="module")
def app_context() -> Iterator[None]:
    """is_fresh() reads FRESH_AGE_SECONDS from the app's configuration, as authorize() does."""
    app = Flask(__name__)
    app.config["FRESH_AGE_SECONDS"] = 600
    with app.app_context():
        yield


def every_case() -> Iterator[tuple[Case, Principal, str, Any, dict[str, Any], bool]]:
    actions = sorted(CONTRACT_ACTIONS)
    for role, plan, flag, where, elevation in itertools.product(
        ROLES, PLANS, FLAGS, ("same organization", "other organization"), ELEVATION
    ):
        org = organization(HOME if where == "same organization" else ELSEWHERE, plan, flag)
        who = principal(role, fake_session(elevation))
        role_there = role if org.id == HOME else None
        for action in actions:
            for resource, context, fields in resources(action, org, role):
                case = Case(role_there, action, plan, flag, **fields)
                yield case, who, elevation, resource, context, org.id == HOME


# --- The tests ----------------------------------------------------------------------------------


def test_this_file_knows_every_action_of_the_policy() -> None:
    assert {action for action in POLICY if not action.startswith("account.")} == CONTRACT_ACTIONS


def test_every_combination_matches_the_contract(app_context: None) -> None:
    mismatches: list[str] = []
    seen_actions: set[str] = set()
    count = 0
    outcomes: dict[str, int] = {ALLOWED: 0, REAUTH: 0, DENIED: 0}
    for case, who, elevation, resource, context, _home in every_case():
        count += 1
        seen_actions.add(case.action)
        decision = can(who, case.action, resource, **context)
        # authorize(): a refusal is a 403; a yes that needs elevation asks for the password.
        if not decision.allowed:
            actual = DENIED
        elif decision.requires_elevation and not is_fresh(who.session):
            actual = REAUTH
        else:
            actual = ALLOWED
        expected = outcome(*contract(case), elevated=elevation == "fresh session")
        outcomes[actual] += 1
        if actual != expected:
            mismatches.append(f"{case} [{elevation}]: expected {expected}, got {actual} "
                              f"({decision.reason})")  # fmt: skip
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
    assert count > 5_000
    assert all(outcomes.values()), outcomes  # every outcome occurs: the matrix is not vacuous


def test_a_paid_or_void_invoice_is_never_deleted_and_the_refusal_names_the_rule(
    app_context: None,
) -> None:
    """The state row of the table, for every role and session: the way out is named."""
    refusals = 0
    for case, who, _elevation, resource, context, home in every_case():
        if case.action != "invoice.delete" or case.status not in ("paid", "void"):
            continue
        decision = can(who, case.action, resource, **context)
        assert not decision.allowed, case
        if home and case.role in (OWNER, ADMIN):  # the role would allow it: the state decides
            refusals += 1
            assert decision.rule == "invoice state"
            assert decision.reason.startswith("The invoice state rule:")
            if case.status == "paid":
                assert "Void it instead" in decision.reason
    assert refusals > 0


def test_nobody_signed_in_is_refused_everything(app_context: None) -> None:
    for case, _who, _elevation, resource, context, _home in every_case():
        decision = can(None, case.action, resource, **context)
        assert not decision.allowed
        assert decision.missing == "a signed-in user"


# --- The account rows: about a user, not an organization --------------------------------------

# Each account action, and whether its fresh proof must use the second factor (when one is
# set up). The email address and the password are recovery credentials (issue 15): whoever
# changes them owns the account, so they ask for the second factor like the factors do.
ACCOUNT_ACTIONS = {
    "account.password.change": True,
    "account.email.change": True,
    "account.second_factor.change": True,
    "account.two_factor.disable": True,
    "account.two_factor.manage": False,
    # A token outlives the session: a password alone must not mint one (issue 15 review).
    "account.tokens.create": True,
}


def test_every_account_row_is_self_service_with_fresh_proof(app_context: None) -> None:
    assert {action for action in POLICY if action.startswith("account.")} == set(ACCOUNT_ACTIONS)
    for role, (action, strong) in itertools.product(ROLES, ACCOUNT_ACTIONS.items()):
        me = principal(role, fake_session("fresh session"))
        mine = can(me, action, me.user)
        assert mine.allowed and mine.requires_elevation, action
        assert mine.requires_second_factor is strong, action
        someone_else = User(id=SOMEONE_ELSE, email="x@example.test", display_name="X")
        theirs = can(me, action, someone_else)
        assert not theirs.allowed and theirs.missing, action
