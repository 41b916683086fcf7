"""Reading one organization's audit log: its filters, and its export as CSV or JSON Lines.

The page (invoiceapp.views.audit) and the API (invoiceapp.api.orgs) filter with the same
AuditFilters, and both exports stream: records are read a thousand at a time, after the
last one sent (the chain's numbers, an index), so a log of any length leaves the server
in constant memory. Nothing here checks who may read: callers scope and authorize first.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from .audit import ALLOWED, DENIED
from .audit_chain import timestamp
from .audit_retention import checkpoint_fields
from .invoicing import csv_safe
from .models import AuditCheckpoint, AuditEvent, AuditRepeat

DECISIONS = (ALLOWED, DENIED)
# Any SELECT over audit_events: whole records (the page, the API) or columns (the export).
SelectT = TypeVar("SelectT", bound=Select)
BATCH = 1000

# What a filter value may look like; anything else is refused (API) or dropped (page).
ACTION_SHAPE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
EMAIL_SHAPE = re.compile(r"[^\s@]{1,64}@[^\s@]{1,255}")
TARGET_SHAPE = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")


@dataclass(frozen=True)
class AuditFilters:
    """Which records to show: by actor (email), action, target (the resource's id or
    slug), outcome (allowed or denied) and a range of days, both ends included (UTC)."""

    action: str | None = None
    actor: str | None = None
    target: str | None = None
    decision: str | None = None
    since: date | None = None
    until: date | None = None

    def applied_to(self, query: SelectT) -> SelectT:
        conditions = []
        if self.action is not None:
            conditions.append(AuditEvent.action == self.action)
        if self.actor is not None:
            conditions.append(AuditEvent.actor_email == self.actor)
        if self.target is not None:
            conditions.append(AuditEvent.resource_id == self.target)
        if self.decision is not None:
            conditions.append(AuditEvent.decision == self.decision)
        if self.since is not None:
            conditions.append(AuditEvent.created_at >= _start_of(self.since))
        if self.until is not None:
            conditions.append(AuditEvent.created_at < _start_of(self.until + timedelta(days=1)))
        return query.where(and_(*conditions)) if conditions else query

    @property
    def counted_ahead(self) -> bool:
        """Whether the kept counts (AuditCount: per action, actor and decision) answer
        "how many match" without reading the records."""
        return self.target is None and self.since is None and self.until is None

    def as_args(self) -> dict[str, str]:
        """The filters as query parameters, to keep them in links (pages, exports)."""
        return {name: str(value) for name, value in asdict(self).items() if value is not None}

    def __bool__(self) -> bool:
        return bool(self.as_args())


def filters_from_args(args: Mapping[str, str]) -> AuditFilters:
    """The page's filters from its query string. A malformed value is dropped, not searched
    for (the form only makes good ones); the API refuses them instead (its schema)."""
    action = args.get("action", "").strip()
    # Emails are stored in lower case (invoiceapp.authn.emails).
    actor = args.get("actor", "").strip().lower()
    target = args.get("target", "").strip()
    decision = args.get("decision", "")
    since, until = _day(args.get("since", "")), _day(args.get("until", ""))
    if since is not None and until is not None and since > until:
        since, until = until, since  # a range typed backwards still means that range
    return AuditFilters(
        action=action if ACTION_SHAPE.fullmatch(action) else None,
        actor=actor if len(actor) <= 320 and EMAIL_SHAPE.fullmatch(actor) else None,
        target=target if TARGET_SHAPE.fullmatch(target) else None,
        decision=decision if decision in DECISIONS else None,
        since=since,
        until=until,
    )


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if len(text) == 10 else None
    except ValueError:
        return None


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- Export ------------------------------------------------------------------------------

# One line (or row) per record, oldest first: the chain's fields (invoiceapp.audit_chain),
# then how many refusals the record stands for (counted after it was written, so outside
# the hash).
EXPORT_FIELDS = (
    "seq", "organization_id", "created_at", "actor_id", "actor_email", "action",
    "resource_id", "decision", "status", "reason", "rule", "ip_address",
    "previous_hash", "record_hash", "times", "on_behalf_basis", "support_reason",
)  # fmt: skip

_COLUMNS = (
    AuditEvent.chain_seq,
    AuditEvent.organization_id,
    AuditEvent.created_at,
    AuditEvent.actor_id,
    AuditEvent.actor_email,
    AuditEvent.action,
    AuditEvent.resource_id,
    AuditEvent.decision,
    AuditEvent.status,
    AuditEvent.reason,
    AuditEvent.rule,
    AuditEvent.ip_address,
    AuditEvent.previous_hash,
    AuditEvent.record_hash,
    AuditRepeat.refusals,
    AuditEvent.on_behalf_basis,
    AuditEvent.support_reason,
)


def exported_records(
    db: Session, organization_id: int, filters: AuditFilters, after: int = 0
) -> Iterator[dict[str, Any]]:
    """The organization's matching records after number ``after``, oldest first, a batch
    at a time.

    The read transaction ends with the last batch (or when the download is cut short and
    the server closes the stream), not when the request's session is torn down: a reader
    left open would hold its locks for as long as the response object lives."""
    try:
        while True:
            query = (
                select(*_COLUMNS)
                .outerjoin(AuditRepeat, AuditRepeat.event_id == AuditEvent.id)
                .where(AuditEvent.organization_id == organization_id, AuditEvent.chain_seq > after)
                .order_by(AuditEvent.chain_seq)
                .limit(BATCH)
            )
            rows = db.execute(filters.applied_to(query)).all()
            for row in rows:
                record = dict(zip(EXPORT_FIELDS, row, strict=True))
                record["created_at"] = timestamp(record["created_at"])
                record["times"] = record["times"] or 1
                yield record
            if len(rows) < BATCH:
                return
            after = rows[-1][0] or 0  # never None: the query asked for chain_seq > after
            db.expunge_all()  # nothing to keep between batches
    finally:
        db.rollback()


def starting_checkpoint(db: Session, organization_id: int) -> dict[str, Any] | None:
    """Where the organization's chain starts, if retention removed its oldest records: the
    whole log's export begins with it, so the chain verifies from there."""
    checkpoint = db.get(AuditCheckpoint, organization_id)
    return checkpoint_fields(checkpoint) if checkpoint is not None else None


def checkpoint_line(checkpoint: dict[str, Any]) -> str:
    """The export's first line after pruning (invoiceapp.audit_chain reads it)."""
    return json.dumps({"checkpoint": checkpoint}, ensure_ascii=False, separators=(",", ":")) + "\n"


def as_json_lines(records: Iterator[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def as_csv(records: Iterator[dict[str, Any]]) -> Iterator[str]:
    """CSV with a header row; text cells guarded against spreadsheet formulas."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    for record in records:
        writer.writerow(
            csv_safe(value) if isinstance(value, str) else ("" if value is None else value)
            for value in record.values()
        )
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
