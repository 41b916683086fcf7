"""The audit log: every refusal at an action boundary and every sensitive action.

Records are written on a connection of their own and committed at once, so a refusal
is kept even though the request that caused it changes nothing. The table is
append-only in the database itself (triggers; see invoiceapp.models.AuditEvent).
"""

from __future__ import annotations

from flask import current_app, has_request_context, request
from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from ..db import utcnow
from ..models import AuditEvent
from ..principal import current_principal

ALLOWED, DENIED = "allowed", "denied"


def record_audit(
    action: str,
    *,
    organization_id: int | None,
    resource_id: str | None = None,
    decision: str = ALLOWED,
    status: int = 200,
    reason: str = "",
) -> None:
    """Append one record. A failure to write is logged, never turned into an error page."""
    principal = current_principal() if has_request_context() else None
    row = {
        "created_at": utcnow(),
        "actor_id": principal.user.id if principal else None,
        "actor_email": principal.user.email if principal else None,
        "organization_id": organization_id,
        "action": action[:64],
        "resource_id": (resource_id or "")[:64] or None,
        "decision": decision,
        "status": status,
        "reason": reason[:300],
        "ip_address": request.remote_addr if has_request_context() else None,
    }
    try:
        with current_app.extensions["db_engine"].begin() as connection:
            connection.execute(insert(AuditEvent), row)
    except SQLAlchemyError:
        current_app.logger.exception("could not write the audit record for %s", action)
