"""The JSON API, /api/v1 (CONTRACT section 6): the pages' lesson, answered in JSON.

A handler reads like a page's view, in the same order:

    @operation("DELETE", "/invoices/<invoice_id>", status=204, errors=(403, 404, 409, 412))
    @login_required                                  # authentication: 401
    def delete_invoice(invoice_id: str) -> Response:
        invoice = invoice_or_404(invoice_id)         # scope: 404, never 403
        decision = authorize("invoice.delete", invoice)  # policy: 403
        ...the work

Where things are:
    blueprint.py      the blueprint, its rate limits (per token, per user) and defaults
    registry.py       @operation: one declaration per route; reading bodies and queries
    schemas.py        pydantic models: they validate requests and write the document
    lookups.py        scope.py's lookups, narrowed to the one organization a token reaches
    preconditions.py  ETag and If-Match: no lost updates
    pagination.py     keyset cursors
    me.py, invoices.py, orgs.py   the handlers
    explain.py        /authz/explain: the caller's own decision, as the 403 page shows it
    openapi.py        /api/v1/openapi.json, written from the registry; /api/v1/docs

It never imports a page's view, and no page imports it. The policy is only ever asked,
through authorize() and can(); nothing here decides who may do what.
"""

from __future__ import annotations

from . import explain, invoices, me, openapi, orgs  # noqa: F401  (each registers its routes)
from .blueprint import bp

__all__ = ["bp"]
