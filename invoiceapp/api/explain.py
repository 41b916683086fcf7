"""GET /api/v1/authz/explain: "why was I refused?", for scripts.

The same explanation the 403 page shows (invoiceapp.authz.explain.why), as JSON. It only
ever tells the caller about their own decision, and it looks the invoice up like every
other handler: another organization's invoice is the same 404 as one that never existed,
so the explainer cannot be used to probe for ids.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from pydantic import BaseModel, Field, JsonValue, field_validator

from ..authn.gate import login_required
from ..authz.explain import why
from ..authz.policy import POLICY, SELF_SERVICE
from ..principal import require_principal
from .blueprint import operation
from .lookups import chosen_organization_or_404, invoice_or_404
from .registry import read_query, respond
from .schemas import SLUG_PATTERN, QueryModel

# The document lists them (the table's actions), so a client can offer a choice.
ACTIONS: list[JsonValue] = [*sorted([*POLICY, *SELF_SERVICE])]


class ExplainQuery(QueryModel):
    action: str = Field(
        description="An action of the policy table, e.g. invoice.delete.",
        json_schema_extra={"enum": ACTIONS},
    )
    invoice: str | None = Field(
        default=None, description="Ask about this invoice (its public id, e.g. inv_7)."
    )
    organization: str | None = Field(
        default=None,
        pattern=SLUG_PATTERN,
        description="Without an invoice: ask about this organization (its slug) instead of "
        "the active one.",
    )

    @field_validator("action")
    @classmethod
    def _known(cls, action: str) -> str:
        if action not in POLICY and action not in SELF_SERVICE:
            raise ValueError("not an action of the policy table (see /api/v1/openapi.json)")
        return action


class ExplanationOut(BaseModel):
    allowed: bool
    action: str
    rule: str | None = Field(description="The entry of the policy table that decided.")
    reason: str
    missing: str | None = Field(description="What the action needed and you lack, if denied.")
    remedy: str = Field(description="What would change the answer, in plain words.")
    status: str = Field(
        description='What a real request would get: "200", "403" or "re-authenticate".'
    )
    inputs: dict[str, Any] = Field(
        description="The decision's inputs: your role, the plan and flags, the invoice's "
        "state, how this request was authenticated, a token's scope."
    )


@operation("GET", "/authz/explain", query=ExplainQuery, response=ExplanationOut, errors=(404,))
@login_required  # authentication gate: 401
def explain_decision() -> Response:
    """Why you may, or may not, do an action: your own decision, with its inputs.

    With invoice, about that invoice; else about the organization (the active one, or
    organization=<slug>); account.* actions are about your own account. An invoice outside
    your organizations (or a token's one organization) is 404, the same as a missing one.
    The answer is 200 either way: "allowed" carries it.
    """
    query = read_query(ExplainQuery)
    resource: object
    if query.action in SELF_SERVICE:
        resource = require_principal().user
    elif query.invoice is not None:
        resource = invoice_or_404(query.invoice)  # scope: 404, never 403
    else:
        resource = chosen_organization_or_404(query.organization)
    return respond(ExplanationOut(**why(query.action, resource).as_json()))
