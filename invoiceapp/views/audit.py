"""The organization's audit log: who was refused what, and which sensitive actions happened.

    organization = organization_in_my_orgs_or_404(slug)  # scope: 404, never 403
    authorize("audit.read", organization)                # policy: owner and admin only

Every query below is limited to that one organization's rows, so a record about
someone outside reaching for this organization's invoice shows up here, and never in
the outsider's own organization's log.
"""

from __future__ import annotations

import math
import re
from urllib.parse import urlencode

from flask import Blueprint, current_app, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ..audit import ALLOWED, DENIED, repeats_of
from ..authn.gate import login_required
from ..authz.enforce import authorize
from ..authz.scope import organization_in_my_orgs_or_404
from ..db import get_db
from ..errors import in_words
from ..models import AuditCount, AuditEvent
from .paging import page_number

bp = Blueprint("audit", __name__, url_prefix="/orgs")

PER_PAGE = 50
DECISIONS = (ALLOWED, DENIED)
# What a filter value may look like; anything else is ignored rather than searched for.
_ACTION = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_EMAIL = re.compile(r"[^\s@]{1,64}@[^\s@]{1,255}")

NEWEST_FIRST = (AuditEvent.created_at.desc(), AuditEvent.id.desc())


@bp.get("/<slug>/audit")
@login_required  # authentication gate: 302 to sign in
def audit_log(slug: str) -> ResponseReturnValue:
    organization = organization_in_my_orgs_or_404(slug)  # scope: 404, never 403
    authorize("audit.read", organization)  # authorization gate: 403 for members

    filters = _filters()
    query = select(AuditEvent).where(AuditEvent.organization_id == organization.id)
    query = _filtered(query, filters)
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
    )


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


def _total(db: Session, organization_id: int, filters: dict[str, str]) -> int:
    """How many records match, from the counts the database keeps (AuditCount): a few
    rows per action, decision and actor, however long the log."""
    counted = select(func.sum(AuditCount.records)).where(
        AuditCount.organization_id == organization_id
    )
    if "action" in filters:
        counted = counted.where(AuditCount.action == filters["action"])
    if "actor" in filters:
        counted = counted.where(AuditCount.actor_email == filters["actor"])
    if "decision" in filters:
        counted = counted.where(AuditCount.decision == filters["decision"])
    return db.scalar(counted) or 0


def _filters() -> dict[str, str]:
    """The filters that were asked for and make sense; unknown or malformed ones are dropped."""
    chosen: dict[str, str] = {}
    action = request.args.get("action", "").strip()
    if _ACTION.fullmatch(action):
        chosen["action"] = action
    # Emails are stored in lower case (invoiceapp.authn.forms.normalise_email).
    actor = request.args.get("actor", "").strip().lower()
    if len(actor) <= 320 and _EMAIL.fullmatch(actor) and actor.isprintable():
        chosen["actor"] = actor
    decision = request.args.get("decision", "")
    if decision in DECISIONS:
        chosen["decision"] = decision
    return chosen


def _filtered(query: Select[AuditEvent], filters: dict[str, str]) -> Select[AuditEvent]:
    if "action" in filters:
        query = query.where(AuditEvent.action == filters["action"])
    if "actor" in filters:
        query = query.where(AuditEvent.actor_email == filters["actor"])
    if "decision" in filters:
        query = query.where(AuditEvent.decision == filters["decision"])
    return query


def _page_url(slug: str, filters: dict[str, str], page: int) -> str:
    """A link to another page that keeps the filters (encoded: emails may hold ``+`` or ``&``)."""
    return url_for("audit.audit_log", slug=slug) + "?" + urlencode({**filters, "page": page})
