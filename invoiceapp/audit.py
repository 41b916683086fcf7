"""The audit log: every refusal at an action boundary and every sensitive action.

Records are written on a connection of their own and committed at once, so a refusal
is kept even though the request that caused it changes nothing. The table is
append-only in the database itself (triggers; see invoiceapp.models.AuditEvent), and
each organization's records form a hash chain (invoiceapp.audit_chain) extended in the
same transaction as the insert, so an exported log can be checked offline.

Refusals repeat: a script can be refused hundreds of times a minute, and an outsider
who reaches for another organization's invoice writes into *that* organization's log,
which its owner cannot clean. So the first refusal of one actor, for one action on one
resource with one status, in one organization, within AUDIT_REPEAT_WINDOW_SECONDS is
recorded in full, and the ones after it add one to a count beside that record
(invoiceapp.models.AuditRepeat). The evidence stays (who, what, from where, when first and
last, how often); the flood does not: an outsider writes at most one record per window for
each (action, resource) of an organization they can name, and the resources are that
organization's own (an id that exists nowhere is in no organization's log).

This module sits below both authn and authz: the authentication gate records its 401s
here and authorization its 403s and 404s. So the actor is read from Flask-Login, the
user authentication proved, not from the principal (which is built on top of authn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import flask_login
from flask import current_app, g, has_request_context, request
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .audit_chain import GENESIS, record_hash, timestamp
from .db import utcnow
from .models import AuditChain, AuditEvent, AuditRepeat

ALLOWED, DENIED = "allowed", "denied"

# INSERT … ON CONFLICT DO UPDATE, which both supported databases spell the same way.
# Both dialects' INSERT has ON CONFLICT DO UPDATE; the generic one does not.
_UPSERT: dict[str, Callable[[Any], sqlite.Insert | postgresql.Insert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def record_audit(
    action: str,
    *,
    organization_id: int | None,
    resource_id: str | None = None,
    decision: str = ALLOWED,
    status: int = 200,
    reason: str = "",
    rule: str | None = None,
    on_behalf_basis: str | None = None,
    support_reason: str | None = None,
    as_system: bool = False,
) -> None:
    """Append one record (or count a repeated refusal). A failure to write is logged,
    never turned into an error page.

    During support access (invoiceapp.support_access) every record of the supported
    organization names both people: the engineer as actor, and the owner's consent as
    ``on_behalf_basis``, with the engineer's reason. ``as_system``: nobody acted (an expiry
    noticed during someone's request is not that person's doing)."""
    actor = None if as_system else _proven_user()
    basis, why = _support_of(organization_id) if not as_system else (None, None)
    row = {
        "created_at": utcnow(),
        "actor_id": actor.id if actor else None,
        "actor_email": actor.email if actor else None,
        "organization_id": organization_id,
        "action": action[:64],
        "resource_id": (resource_id or "")[:64] or None,
        "decision": decision,
        "status": status,
        "reason": reason[:300],
        "rule": (rule or "")[:64],
        "ip_address": request.remote_addr if has_request_context() else None,
        "on_behalf_basis": (on_behalf_basis or basis or "")[:300] or None,
        "support_reason": (support_reason or why or "")[:500] or None,
    }
    try:
        with current_app.extensions["db_engine"].begin() as connection:
            if decision == DENIED and connection.dialect.name in _UPSERT:
                _record_refusal(connection, row)
            else:
                _append(connection, row)
    except SQLAlchemyError:
        current_app.logger.exception("could not write the audit record for %s", action)


def _support_of(organization_id: int | None) -> tuple[str | None, str | None]:
    """The basis and reason of the support access this request holds in the organization,
    if any (the principal puts them on ``g``; this module reads no principal)."""
    if organization_id is None or not has_request_context():
        return None, None
    return g.get("support_access", {}).get(organization_id, (None, None))


def _proven_user() -> Any:
    """The signed-in user (session or API token), or None: anonymous, or no request."""
    if not has_request_context():
        return None
    user = flask_login.current_user
    return user if user.is_authenticated else None


def _record_refusal(connection: Connection, row: dict[str, Any]) -> None:
    """Count the refusal in its window; only the window's first writes a record.

    The count goes first, in one statement that takes the row lock (PostgreSQL) or the
    write lock (SQLite): of simultaneous refusals exactly one sees ``refusals == 1`` and
    writes the record, and the others wait for it, then count. Nothing is lost or doubled.
    """
    now = row["created_at"]
    upsert = _UPSERT[connection.dialect.name](AuditRepeat).values(
        bucket=_bucket(row), window_start=_window_start(now), refusals=1, last_at=now
    )
    count = upsert.on_conflict_do_update(
        index_elements=[AuditRepeat.bucket, AuditRepeat.window_start],
        set_={"refusals": AuditRepeat.refusals + 1, "last_at": upsert.excluded.last_at},
    ).returning(AuditRepeat.id, AuditRepeat.refusals)
    repeat_id, refusals = connection.execute(count).one()
    if refusals > 1:
        return  # counted beside the record the window's first refusal wrote
    event_id = _append(connection, row)
    connection.execute(
        update(AuditRepeat).where(AuditRepeat.id == repeat_id).values(event_id=event_id)
    )


def _append(connection: Connection, row: dict[str, Any]) -> int:
    """Insert the record as the next link of its organization's chain; return its id.

    The first statement moves the organization's chain head on by one, which takes that
    row's lock (PostgreSQL) or the write lock (SQLite) until the commit: writers to one
    organization's log queue behind each other, writers to other organizations do not. The
    head hands back the hash of the record before, so the new record's hash is computed
    here, inserted, and written back to the head in the same transaction."""
    if connection.dialect.name not in _UPSERT:  # pragma: no cover - both engines have it
        return int(
            connection.execute(insert(AuditEvent).returning(AuditEvent.id), row).scalar_one()
        )
    start = _UPSERT[connection.dialect.name](AuditChain).values(
        organization_key=row["organization_id"] or 0, last_seq=1, last_hash=GENESIS
    )
    step = start.on_conflict_do_update(
        index_elements=[AuditChain.organization_key],
        set_={"last_seq": AuditChain.last_seq + 1},
    ).returning(AuditChain.last_seq, AuditChain.last_hash)
    seq, previous = connection.execute(step).one()
    content = {**row, "seq": seq, "created_at": timestamp(row["created_at"])}
    link = record_hash(content, previous)
    event_id = connection.execute(
        insert(AuditEvent).returning(AuditEvent.id),
        {**row, "chain_seq": seq, "previous_hash": previous, "record_hash": link},
    ).scalar_one()
    connection.execute(
        update(AuditChain)
        .where(AuditChain.organization_key == (row["organization_id"] or 0))
        .values(last_hash=link)
    )
    return int(event_id)


def _bucket(row: dict[str, Any]) -> str:
    """Which refusals count together: the same refusal (action and status) of the same
    thing, by one actor, in one organization. Someone signed in is their account; anyone
    else is their address.

    The resource is part of it so that a harmless refusal cannot hide the target of a later
    one. It is left out when no organization owns the refusal: the id then names nothing
    that exists, and leaving it out keeps guessed ids from writing a record each.
    """
    organization = row["organization_id"]
    actor = f"user {row['actor_id']}" if row["actor_id"] else f"address {row['ip_address']}"
    parts = [f"org {organization if organization is not None else 'none'}", actor]
    parts += [row["action"], str(row["status"])]
    if organization is not None:
        parts.append(row["resource_id"] or "-")
    return " · ".join(parts)[:200]


def _window_start(now: datetime) -> datetime:
    """The start of the fixed window ``now`` falls in (windows start on the epoch)."""
    seconds = int(current_app.config["AUDIT_REPEAT_WINDOW_SECONDS"])
    return datetime.fromtimestamp(int(now.timestamp()) // seconds * seconds, UTC)


@dataclass(frozen=True)
class Repeats:
    """How many refusals one record stands for, and when the last of them came."""

    refusals: int
    last_at: datetime


def repeats_of(db: Session, events: Sequence[AuditEvent]) -> dict[int, Repeats]:
    """For the records shown on a page: those that stand for more than one refusal."""
    ids = [event.id for event in events if event.decision == DENIED]
    if not ids:
        return {}
    rows = db.execute(
        select(AuditRepeat.event_id, AuditRepeat.refusals, AuditRepeat.last_at).where(
            AuditRepeat.event_id.in_(ids), AuditRepeat.refusals > 1
        )
    )
    return {
        event_id: Repeats(refusals, last_at)
        for event_id, refusals, last_at in rows
        if event_id is not None  # never: the query asked for these ids
    }
