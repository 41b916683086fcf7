"""A page's buttons come from one policy evaluation (issue 21 item 1): allowed_actions()
answers, for a set of actions, exactly what can() answers action by action.

The matrix cases are test_policy_matrix.py's own (every role, plan, flag, credential,
security policy, invoice state and author, membership target, custom role and share), each
resource asked about every action the policy has. The page tests check the invoice page's
buttons against can() for every seeded person and invoice.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_policy_matrix import (
    ADMIN,
    CREDENTIALS,
    ELSEWHERE,
    HOME,
    MEMBER,
    custom_principal,
    custom_resources,
    every_case,
    grant,
    organization,
    principal,
    resources,
    security_cases,
    support_principal,
)

from invoiceapp.authz import policy
from invoiceapp.authz.policy import POLICY, SELF_SERVICE, allowed_actions, can
from invoiceapp.authz.scope import invoice_in_my_orgs_or_404
from invoiceapp.models import Invoice, Organization
from invoiceapp.principal import Principal, current_principal
from invoiceapp.views.invoices import INVOICE_BUTTONS
from support import signed_in_client

EVERY_ACTION = tuple(POLICY) + tuple(SELF_SERVICE)
# One action per kind of resource: each case of it is asked about every action.
ONE_PER_RESOURCE = frozenset({"invoice.update", "member.remove", "org.read"})


def one_by_one(who: Principal, resource: object) -> frozenset[str]:
    return frozenset(action for action in EVERY_ACTION if can(who, action, resource))


def test_allowed_actions_answers_what_can_allows_in_every_case_of_the_matrix(
    app_context: None,
) -> None:
    checked, mismatches = 0, []
    cases = itertools.chain(
        # Whether a second factor is enrolled is the matrix's input to its expected answer,
        # not to can(): the enrolled cases would ask can() the same questions again.
        every_case(enrolments=(False,), actions=ONE_PER_RESOURCE),
        security_cases(actions=ONE_PER_RESOURCE),
    )
    for case, who, resource, context, _home in cases:
        if context or case.enrolled:
            continue  # actions asked with a context (whom to invite) are not buttons
        checked += 1
        batch, single = allowed_actions(who, resource, EVERY_ACTION), one_by_one(who, resource)
        if batch != single:
            mismatches.append(f"{case}: {sorted(batch ^ single)}")
    assert not mismatches, f"{len(mismatches)} of {checked} differ:\n" + "\n".join(mismatches[:20])
    assert checked > 10_000


def test_allowed_actions_answers_like_can_for_custom_roles_and_guests(app_context: None) -> None:
    """Custom roles (the admin column for the actions they hold) and guests by a share."""
    org = organization(HOME, "pro", True, "any")
    invoice_actions = frozenset(a for a in POLICY if a.startswith("invoice."))
    holdings = [frozenset(), frozenset({"invoice.update"}), invoice_actions, frozenset(POLICY)]
    mismatches = []
    for mine, credential in itertools.product(holdings, CREDENTIALS):
        who = custom_principal(mine, frozenset({"invoice.read"}), credential)
        for action in sorted(ONE_PER_RESOURCE):
            for resource, context, _fields in custom_resources(action, org):
                if not context and allowed_actions(who, resource, EVERY_ACTION) != one_by_one(
                    who, resource
                ):
                    mismatches.append(f"custom {sorted(mine)} {credential} {action}")
    for role, kind, credential in itertools.product(
        (None, MEMBER, ADMIN), ("read", "read_mark_paid", "expired"), CREDENTIALS
    ):
        base = principal(role, credential)
        guest = Principal(user=base.user, session=base.session, roles=base.roles,
                          token_scope=base.token_scope, grants=grant(kind))  # fmt: skip
        for resource, _context, _fields in resources("invoice.update", org, role):
            if isinstance(resource, Invoice):
                resource.customer = "Shared Customer"
            if allowed_actions(guest, resource, EVERY_ACTION) != one_by_one(guest, resource):
                mismatches.append(f"guest {role} {kind} {credential}")
    assert not mismatches, "\n".join(mismatches[:20])


def test_allowed_actions_answers_like_can_for_a_support_engineer(app_context: None) -> None:
    """Support access refuses actions whatever the role: a support engineer's buttons are
    the same answers, read-only or admin, inside the supported organization and out."""
    mismatches = []
    for role, credential, home in itertools.product(
        ("read_only", MEMBER, ADMIN), CREDENTIALS, (True, False)
    ):
        who = support_principal(role, credential)
        org = organization(HOME if home else ELSEWHERE, "pro", False, "any")
        for action in sorted(ONE_PER_RESOURCE):
            for resource, context, _fields in resources(action, org, MEMBER):
                if not context and allowed_actions(who, resource, EVERY_ACTION) != one_by_one(
                    who, resource
                ):
                    mismatches.append(f"support {role} {credential} {home} {action}")
    assert not mismatches, "\n".join(mismatches[:20])
    admin = support_principal(ADMIN, CREDENTIALS[0])
    buttons = allowed_actions(admin, organization(HOME, "pro", False, "any"), EVERY_ACTION)
    assert "org.billing.read" not in buttons and "member.invite" not in buttons


def test_allowed_actions_for_nobody_is_nothing_and_an_unknown_action_still_raises(
    app_context: None,
) -> None:
    org = organization(HOME, "pro", True, "any")
    assert allowed_actions(None, org, EVERY_ACTION) == frozenset()
    with pytest.raises(KeyError):
        allowed_actions(principal(ADMIN, CREDENTIALS[0]), org, ["invoice.fly"])


BUTTON_LABELS = {
    "invoice.update": ">Edit<",
    "invoice.mark_paid": ">Mark paid<",
    "invoice.void": ">Void<",
    "invoice.duplicate": ">Duplicate<",
    "invoice.delete": ">Delete this invoice<",
}


def _actions_div(html: str) -> str:
    found = re.search(r'<div class="actions">(.*?)</div>', html, re.S)
    assert found, html[:500]
    return found.group(1)


@pytest.mark.parametrize("email", ["ada@acme.test", "grace@acme.test", "linus@acme.test"])
def test_the_invoice_page_shows_exactly_the_buttons_can_allows(
    app: Flask, db: Session, email: str
) -> None:
    client = signed_in_client(app, email)
    acme = db.scalars(select(Organization).where(Organization.slug == "acme")).one()
    public_ids = db.scalars(select(Invoice.public_id).where(Invoice.organization_id == acme.id))
    for public_id in public_ids:
        with client:  # the request's context stays open: ask can() as the page's request
            page = client.get(f"/invoices/{public_id}")
            assert page.status_code == 200
            invoice = invoice_in_my_orgs_or_404(public_id)
            who = current_principal()
            expected = {action for action in INVOICE_BUTTONS if can(who, action, invoice)}
        html = page.get_data(as_text=True)
        actions = _actions_div(html)
        for action, label in BUTTON_LABELS.items():
            assert (label in actions) == (action in expected), (email, invoice.status, action)
        # Send is the button, or the warning's button when sending ends the author's edits.
        offered = ">Send<" in actions or 'aria-describedby="send-warning"' in html
        assert offered == ("invoice.send" in expected), (email, invoice.status)


def test_the_invoice_page_reads_the_policy_inputs_once_for_all_its_buttons(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight can() calls used to read the organization and its security policy eight times;
    the buttons now take one evaluation. Counted where every evaluation starts."""
    client = signed_in_client(app, "ada@acme.test")
    assert client.get("/invoices/inv_7").status_code == 200
    asked: list[Any] = []
    real = policy.org_security.refusal

    def counting(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("reading"))
        return real(*args, **kwargs)

    monkeypatch.setattr(policy.org_security, "refusal", counting)
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200 and ">Edit<" in page.get_data(as_text=True)
    # Reading the invoice (authorize), then the buttons: once for writes. The question
    # "could I still edit it once sent?" is only asked of a draft a member may send.
    assert len(asked) <= 3, asked
