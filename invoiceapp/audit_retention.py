"""Audit retention: removing an organization's oldest audit records, and the signed
checkpoint that lets its chain still verify afterwards.

An organization's owner chooses how long its log keeps records (``audit_retention_days``;
unset keeps them forever). Nothing a request does removes a record: only the operator's
``flask --app invoiceapp audit prune`` does, run from cron. It removes the oldest records,
always from the start of the chain (by number, never leaving a hole), and writes in the
same transaction a checkpoint: the last removed record's number and hash (which the next
record holds as its ``previous_hash``), how many were removed, the cut-off and when. The
checkpoint is signed with HMAC-SHA256 under a key derived from SECRET_KEY, so whoever holds
the key can tell a checkpoint we wrote from one typed into an export to hide a cut.

Getting past the append-only triggers (invoiceapp.db_triggers): each batch's transaction
opens the door for itself alone (PostgreSQL: a transaction-local setting; SQLite: a row in
audit_prune_permits, removed before the commit). An ordinary DELETE still fails.

Safe to run twice (a second run finds nothing old enough) and beside writers: new records
are appended at the chain's head, this removes at its tail, and each batch counts only the
rows its own DELETE … RETURNING removed, so two prunes at once never count one twice.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, case, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from .audit_chain import CHECKPOINT_FIELDS, checkpoint_message, timestamp
from .models import (
    AuditCheckpoint,
    AuditCount,
    AuditEvent,
    AuditPrunePermit,
    AuditRepeat,
    Organization,
)

# The setting's bounds: at least a month (an incident is often found weeks later), at
# most ten years. Unset: keep forever.
MIN_DAYS, MAX_DAYS = 30, 3650
BATCH = 1000

_UPSERT: dict[str, Callable[[Any], sqlite.Insert | postgresql.Insert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}
_KEY_PURPOSE = b"invoiceapp audit checkpoint v1"


# --- Signing -------------------------------------------------------------------------------


def signing_key(secret_key: str | bytes) -> bytes:
    """A key for checkpoints alone, derived from SECRET_KEY (never SECRET_KEY itself, so a
    signature here can never stand for a cookie's or a token's)."""
    secret = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(secret, _KEY_PURPOSE, hashlib.sha256).digest()


def sign(checkpoint: Mapping[str, Any], secret_key: str | bytes) -> str:
    return hmac.new(signing_key(secret_key), checkpoint_message(checkpoint), "sha256").hexdigest()


def signature_holds(checkpoint: Mapping[str, Any], secret_key: str | bytes) -> bool:
    claimed = checkpoint.get("signature")
    return isinstance(claimed, str) and hmac.compare_digest(sign(checkpoint, secret_key), claimed)


def checkpoint_fields(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """The checkpoint as the export writes it (times as audit_chain.timestamp)."""
    fields = {name: getattr(checkpoint, name) for name in CHECKPOINT_FIELDS}
    fields["removed_before"] = timestamp(checkpoint.removed_before)
    fields["pruned_at"] = timestamp(checkpoint.pruned_at)
    return {**fields, "signature": checkpoint.signature}


# --- Pruning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    """What one organization's prune did (or, dry, would do)."""

    slug: str
    days: int
    removed: int
    last_seq: int | None


def prune(
    engine: Engine, now: datetime, secret_key: str | bytes, *, dry_run: bool = False
) -> list[Pruned]:
    """Remove, for every organization with a retention setting, the records older than it."""
    with engine.connect() as connection:
        settings = connection.execute(
            select(Organization.id, Organization.slug, Organization.audit_retention_days)
            .where(Organization.audit_retention_days.is_not(None))
            .order_by(Organization.id)
        ).all()
    reports = []
    for organization_id, slug, setting in settings:
        days = setting or 0  # never None: the query asked for set ones
        cutoff = now - timedelta(days=days)
        if dry_run:
            reports.append(Pruned(slug, days, _would_remove(engine, organization_id, cutoff), None))
            continue
        removed, last_seq = 0, None
        while True:
            with engine.begin() as connection:
                count, seq = _prune_batch(connection, organization_id, cutoff, now, secret_key)
            removed += count
            last_seq = seq if seq is not None else last_seq
            if count == 0:
                break
        reports.append(Pruned(slug, days, removed, last_seq))
    return reports


def _would_remove(engine: Engine, organization_id: int, cutoff: datetime) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(
                select(func.count()).where(
                    AuditEvent.organization_id == organization_id,
                    AuditEvent.created_at < cutoff,
                )
            )
            or 0
        )


def _oldest_records(connection: Connection, organization_id: int, cutoff: datetime) -> list[int]:
    """The ids of the next batch to remove: the start of the chain, up to the first record
    that is not old enough (times can be a little out of order under concurrency; removing
    strictly from the start keeps the rest of the chain whole)."""
    rows = connection.execute(
        select(AuditEvent.id, AuditEvent.created_at)
        .where(AuditEvent.organization_id == organization_id, AuditEvent.chain_seq.is_not(None))
        .order_by(AuditEvent.chain_seq)
        .limit(BATCH)
    ).all()
    ids = []
    for event_id, created_at in rows:
        if created_at >= cutoff:
            break
        ids.append(event_id)
    return ids


def _prune_batch(
    connection: Connection,
    organization_id: int,
    cutoff: datetime,
    now: datetime,
    secret_key: str | bytes,
) -> tuple[int, int | None]:
    """One transaction: open the door, remove a batch, close it, move the checkpoint on.
    Returns how many records this transaction removed and the checkpoint's number."""
    ids = _oldest_records(connection, organization_id, cutoff)
    if not ids:
        return 0, None
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT set_config('invoiceapp.audit_prune', 'on', true)"))
    else:
        connection.execute(insert(AuditPrunePermit).values(id=1))
    removed = connection.execute(
        delete(AuditEvent)
        .where(AuditEvent.id.in_(ids))
        .returning(
            AuditEvent.id,
            AuditEvent.chain_seq,
            AuditEvent.record_hash,
            AuditEvent.action,
            AuditEvent.decision,
            AuditEvent.actor_email,
        )
    ).all()
    if dialect == "postgresql":
        connection.execute(text("SELECT set_config('invoiceapp.audit_prune', '', true)"))
    else:
        connection.execute(delete(AuditPrunePermit))
    if not removed:
        return 0, None  # another prune took this batch first
    _forget_counts(connection, organization_id, removed)
    connection.execute(delete(AuditRepeat).where(AuditRepeat.event_id.in_([r.id for r in removed])))
    last = max(removed, key=lambda row: row.chain_seq)
    seq = _move_checkpoint(
        connection,
        organization_id,
        {"last_seq": last.chain_seq, "last_hash": last.record_hash, "removed": len(removed)},
        cutoff,
        now,
        secret_key,
    )
    return len(removed), seq


def _forget_counts(connection: Connection, organization_id: int, removed: Sequence[Any]) -> None:
    """Keep audit_counts (the page's totals, kept by an insert trigger) equal to the log.
    Rows are updated in a fixed order, so two prunes never wait on each other in a circle."""
    counts = Counter((row.action, row.decision, row.actor_email or "") for row in removed)
    for (action, decision, actor), n in sorted(counts.items()):
        connection.execute(
            update(AuditCount)
            .where(
                AuditCount.organization_id == organization_id,
                AuditCount.action == action,
                AuditCount.decision == decision,
                AuditCount.actor_email == actor,
            )
            .values(records=AuditCount.records - n)
        )
    connection.execute(
        delete(AuditCount).where(
            AuditCount.organization_id == organization_id, AuditCount.records <= 0
        )
    )


def _move_checkpoint(
    connection: Connection,
    organization_id: int,
    batch: dict[str, Any],
    cutoff: datetime,
    now: datetime,
    secret_key: str | bytes,
) -> int:
    """Insert or advance the organization's checkpoint (never backwards), then sign it."""
    new = _UPSERT[connection.dialect.name](AuditCheckpoint).values(
        organization_id=organization_id,
        removed_before=cutoff,
        pruned_at=now,
        signature="",
        **batch,
    )
    ahead = new.excluded.last_seq > AuditCheckpoint.last_seq
    later = new.excluded.removed_before > AuditCheckpoint.removed_before
    upsert = new.on_conflict_do_update(
        index_elements=[AuditCheckpoint.organization_id],
        set_={
            "last_seq": case((ahead, new.excluded.last_seq), else_=AuditCheckpoint.last_seq),
            "last_hash": case((ahead, new.excluded.last_hash), else_=AuditCheckpoint.last_hash),
            "removed": AuditCheckpoint.removed + new.excluded.removed,
            "removed_before": case(
                (later, new.excluded.removed_before), else_=AuditCheckpoint.removed_before
            ),
            "pruned_at": new.excluded.pruned_at,
        },
    ).returning(*(getattr(AuditCheckpoint, name) for name in CHECKPOINT_FIELDS))
    row = connection.execute(upsert).one()
    fields = dict(zip(CHECKPOINT_FIELDS, row, strict=True))
    fields["removed_before"] = timestamp(fields["removed_before"])
    fields["pruned_at"] = timestamp(fields["pruned_at"])
    connection.execute(
        update(AuditCheckpoint)
        .where(AuditCheckpoint.organization_id == organization_id)
        .values(signature=sign(fields, secret_key))
    )
    return int(fields["last_seq"])
