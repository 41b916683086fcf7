"""The scoped lookups of invoiceapp.authz.scope, narrowed to what this request reaches.

A browser session reaches every organization its user belongs to, exactly like the
pages. A token reaches only its own organization (the principal holds no role anywhere
else), so the user's other organizations must look to it like strangers' ones: 404,
the same answer as for an id that never existed, never a 403 that would confirm it.
"""

from __future__ import annotations

from flask import abort, request

from ..audit import DENIED, record_audit
from ..authz.scope import (
    active_organization,
    invoice_in_my_orgs_or_404,
    organization_in_my_orgs_or_404,
)
from ..models import Invoice, Organization
from ..principal import require_principal


def invoice_or_404(public_id: str) -> Invoice:
    invoice = invoice_in_my_orgs_or_404(public_id)
    _reached_or_404(invoice.organization_id, public_id)
    return invoice


def organization_or_404(slug: str) -> Organization:
    organization = organization_in_my_orgs_or_404(slug)
    _reached_or_404(organization.id, slug)
    return organization


def chosen_organization_or_404(slug: str | None) -> Organization:
    """``?organization=<slug>`` when given, else the active organization (a token's own)."""
    if slug is not None:
        return organization_or_404(slug)
    organization = active_organization(require_principal())
    if organization is None:
        abort(404)  # no membership left that this request reaches
    return organization


def _reached_or_404(organization_id: int, label: str) -> None:
    if require_principal().role_in(organization_id) is not None:
        return
    record_audit(
        request.endpoint or "lookup",
        organization_id=organization_id,
        resource_id=label,
        decision=DENIED,
        status=404,
        reason="Outside the organization this access token is for",
        rule="token's organization",
    )
    abort(404)
