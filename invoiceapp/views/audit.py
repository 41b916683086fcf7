"""The organization's audit log: who was refused what, and which sensitive actions happened.

    organization = organization_in_my_orgs_or_404(slug)  # scope: 404, never 403
    authorize("audit.read", organization)                # policy: owner and admin only

Every query below is limited to that one organization's rows, so a record about
someone outside reaching for this organization's invoice shows up here, and never in
the outsider's own organization's log.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    current_app,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ..audit import repeats_of
from ..audit_log import (
    DECISIONS,
    AuditFilters,
    as_csv,
    as_json_lines,
    exported_records,
    filters_from_args,
)
from ..authn.gate import login_required
from ..authz.enforce import authorize
from ..authz.scope import organization_in_my_orgs_or_404
from ..db import get_db
from ..errors import in_words
from ..models import AuditCount, AuditEvent, Organization
from .paging import page_number

bp = Blueprint("audit", __name__, url_prefix="/orgs")

PER_PAGE = 50

NEWEST_FIRST = (AuditEvent.created_at.desc(), AuditEvent.id.desc())


def _readable_log(slug: str) -> Organization:
    organization = organization_in_my_orgs_or_404(slug)  # scope: 404, never 403
    authorize("audit.read", organization)  # authorization gate: 403 for members
    return organization


@bp.get("/<slug>/audit")
@login_required  # authentication gate: 302 to sign in
def audit_log(slug: str) -> ResponseReturnValue:
    organization = _readable_log(slug)
    filters = filters_from_args(request.args)
    query = filters.applied_to(
        select(AuditEvent).where(AuditEvent.organization_id == organization.id)
    )
    db = get_db()
    total = _total(db, organization.id, filters)
    pages = max(1, math.ceil(total / PER_PAGE))
    page = min(page_number(), pages)
    events = _page_of(db, query, total, (page - 1) * PER_PAGE)
    # From the counts too: every action the log holds, without reading the log.
    known_actions = db.scalars(
        select(AuditCount.action)
        .where(AuditCount.organization_id == organization.id)
        .distinct()
        .order_by(AuditCount.action)
    ).all()
    return render_template(
        "orgs/audit.html",
        organization=organization,
        events=events,
        repeats=repeats_of(db, events),  # refusals repeated in one window: one row, a count
        window=in_words(current_app.config["AUDIT_REPEAT_WINDOW_SECONDS"]),
        filters=filters,
        known_actions=known_actions,
        decisions=DECISIONS,
        page=page,
        pages=pages,
        total=total,
        page_url=lambda number: _page_url(slug, filters, number),
        export_url=lambda kind: _export_url(kind, slug, filters),
    )


@bp.get("/<slug>/audit/export.jsonl")
@login_required
def export_jsonl(slug: str) -> ResponseReturnValue:
    """JSON Lines, oldest first: the format ``flask audit verify`` checks."""
    organization = _readable_log(slug)
    return _download(organization, "jsonl", "application/jsonl", as_json_lines)


@bp.get("/<slug>/audit/export.csv")
@login_required
def export_csv(slug: str) -> ResponseReturnValue:
    """CSV for spreadsheets, oldest first (cells that would run as formulas are guarded,
    so the hashes of such records do not recompute from the CSV: verify the JSON Lines)."""
    organization = _readable_log(slug)
    return _download(organization, "csv", "text/csv", as_csv)


def _download(
    organization: Organization,
    extension: str,
    mimetype: str,
    render: Callable[[Iterator[dict[str, Any]]], Iterator[str]],
) -> Response:
    filters = filters_from_args(request.args)
    db = get_db()
    lines: Iterator[str] = render(exported_records(db, organization.id, filters))
    response = Response(stream_with_context(lines), mimetype=mimetype)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="audit-{organization.slug}.{extension}"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


OLDEST_FIRST = (AuditEvent.created_at.asc(), AuditEvent.id.asc())


def _page_of(db: Session, query: Select[AuditEvent], total: int, start: int) -> list[AuditEvent]:
    """Records ``start`` to ``start + PER_PAGE``, newest first, read from the nearer end:
    the last page costs what the first does (ix_audit_events_org_created either way)."""
    stop = min(start + PER_PAGE, total)
    if stop <= start:
        return []
    if start <= total - stop:
        return list(db.scalars(query.order_by(*NEWEST_FIRST).limit(stop - start).offset(start)))
    oldest_first = query.order_by(*OLDEST_FIRST).limit(stop - start).offset(total - stop)
    return list(db.scalars(oldest_first))[::-1]


def _total(db: Session, organization_id: int, filters: AuditFilters) -> int:
    """How many records match. For the action, actor and outcome filters, from the counts
    the database keeps (AuditCount: a few rows per action, decision and actor, however long
    the log); a target or a range of days counts the matching records themselves."""
    if not filters.counted_ahead:
        matching = filters.applied_to(
            select(func.count()).where(AuditEvent.organization_id == organization_id)
        )
        return db.scalar(matching) or 0
    counted = select(func.sum(AuditCount.records)).where(
        AuditCount.organization_id == organization_id
    )
    if filters.action is not None:
        counted = counted.where(AuditCount.action == filters.action)
    if filters.actor is not None:
        counted = counted.where(AuditCount.actor_email == filters.actor)
    if filters.decision is not None:
        counted = counted.where(AuditCount.decision == filters.decision)
    return db.scalar(counted) or 0


def _export_url(kind: str, slug: str, filters: AuditFilters) -> str:
    """The export in ``kind`` (jsonl or csv), with the page's filters."""
    arguments: dict[str, Any] = {"slug": slug, **filters.as_args()}
    return url_for(f"audit.export_{kind}", **arguments)


def _page_url(slug: str, filters: AuditFilters, page: int) -> str:
    """A link to another page that keeps the filters (encoded: emails may hold ``+`` or ``&``)."""
    return (
        url_for("audit.audit_log", slug=slug) + "?" + urlencode({**filters.as_args(), "page": page})
    )
