"""The audit log's hash chain, and the check that an exported log was not altered.

Each organization's records are numbered 1, 2, 3, … in the order they were written, and
each record holds two hashes: the one before it (``previous_hash``) and its own
(``record_hash``), a SHA-256 of the previous hash and the record's content. Change one
character of an old record, drop a record, or swap two, and every hash after it stops
matching (what a file alone cannot prove is below).

This module needs only Python's standard library, so a customer can check an export
without installing the app:

    python invoiceapp/audit_chain.py audit.jsonl [SEQ:HASH]

The app runs the same check as ``flask --app invoiceapp audit verify audit.jsonl
[--noted SEQ:HASH]``.

The hashes need no key, so a file alone proves only that it is consistent: whoever rewrites
a log can recompute every hash after the change. What ties an export to the real log is a
hash noted earlier: keep the ``seq`` and ``record_hash`` of the last line of each export
(or the head shown by the app), and pass them as SEQ:HASH when checking a later export.
Its record SEQ must carry exactly that hash, and every record after it must follow.

After ``flask audit prune`` removed an organization's oldest records (retention), a whole
export starts with a checkpoint line, ``{"checkpoint": {...}}``: the last removed record's
number and hash, how many were removed, and an HMAC signature. The chain is checked from
that hash on. The signature needs the server's key: ``flask audit verify`` checks it; this
script says it cannot, and still checks every link.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The hash before an organization's first record.
GENESIS = "0" * 64

# What a record's hash covers, in this order. The export writes these fields (and the two
# hashes) on every line, so the check can recompute each hash from the file alone.
HASHED_FIELDS = (
    "seq",
    "organization_id",
    "created_at",
    "actor_id",
    "actor_email",
    "action",
    "resource_id",
    "decision",
    "status",
    "reason",
    "rule",
    "ip_address",
)


# Fields hashed only when a record has them (support access, invoiceapp.support_access),
# after the ones above: records written before they existed keep their hashes.
OPTIONAL_HASHED_FIELDS = ("on_behalf_basis", "support_reason")


# What a checkpoint's signature covers, in this order (invoiceapp.audit_retention signs).
CHECKPOINT_FIELDS = (
    "organization_id",
    "last_seq",
    "last_hash",
    "removed",
    "removed_before",
    "pruned_at",
)


def checkpoint_message(checkpoint: Mapping[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers: its fields as compact JSON."""
    content = ["audit checkpoint", *(checkpoint[name] for name in CHECKPOINT_FIELDS)]
    return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def timestamp(moment: datetime) -> str:
    """The one text form of a record's time, to the microsecond, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(record: Mapping[str, Any], previous_hash: str) -> str:
    """The hash of one record: its fields (HASHED_FIELDS, ``created_at`` as ``timestamp``,
    then OPTIONAL_HASHED_FIELDS when any is set) and the hash of the record before it, as
    compact JSON."""
    content = [previous_hash, *(record[name] for name in HASHED_FIELDS)]
    if any(record.get(name) for name in OPTIONAL_HASHED_FIELDS):
        content += [{name: record.get(name) for name in OPTIONAL_HASHED_FIELDS}]
    canonical = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Noted:
    """A record's number and hash written down earlier: the anchor a later export must hold."""

    seq: int
    record_hash: str


def parse_noted(text: str) -> Noted:
    """``SEQ:HASH`` (as in "42:9f86d0…"); ValueError for anything else."""
    seq, _, digest = text.strip().partition(":")
    if not seq.isdigit() or int(seq) < 1 or not _is_hash(digest):
        raise ValueError("expected SEQ:HASH, a record number and its 64-character record_hash")
    return Noted(int(seq), digest)


def _is_hash(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


@dataclass(frozen=True)
class Verdict:
    """What the check found: how many records held, and the first broken link if any."""

    records: int
    first_seq: int | None
    last_seq: int | None
    broken_at_line: int | None = None
    problem: str = ""
    # The export's checkpoint line, if it starts after pruned records.
    checkpoint: Mapping[str, Any] | None = None
    # True or False once the signature was checked; None: no key to check it with.
    signature_holds: bool | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at_line is None

    def __str__(self) -> str:
        if not self.intact:
            return (
                self._about_checkpoint() + f"BROKEN at line {self.broken_at_line}: {self.problem}"
            )
        if not self.records:
            return self._about_checkpoint() + "OK: the file holds no records"
        return self._about_checkpoint() + (
            f"OK: {self.records} records, an unbroken chain from number {self.first_seq} "
            f"to number {self.last_seq}"
        )

    def _about_checkpoint(self) -> str:
        if self.checkpoint is None:
            return ""
        point = self.checkpoint
        signed = {
            None: "signature not checked: that needs the server's key (flask audit verify)",
            True: "signature valid",
            False: "signature INVALID",
        }[self.signature_holds]
        return (
            f"Checkpoint: {point['removed']} records up to number {point['last_seq']} were "
            f"removed under the retention setting (those before {point['removed_before']}, "
            f"on {point['pruned_at']}); {signed}.\n"
        )


def verify_lines(
    lines: Iterable[str],
    noted: Noted | None = None,
    *,
    signature_check: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Verdict:
    """Check an export in JSON Lines, oldest first, as ``/orgs/<slug>/audit/export.jsonl``
    writes it. Stops at the first broken link: everything after it is suspect anyway.

    The first record may follow a gap (an export from a date on, or records removed by
    retention): its ``previous_hash`` is then taken on trust, and every link after it is
    checked; record 1 itself must start the chain. An export filtered by actor, action or
    outcome has gaps by design and does not verify; export the whole log (or a range of
    days) to check it. With ``noted``, the file must hold that record with that hash.

    A first line that is a checkpoint (records removed by retention) fixes where the chain
    starts: the next record must follow its number and hash. ``signature_check``, given
    the server's key, says whether the checkpoint's signature holds; a bad one is a break."""
    count = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    checkpoint: Mapping[str, Any] | None = None
    signed: bool | None = None
    organization: object = _ANY_ORG
    number = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if number == 1 and line.lstrip().startswith('{"checkpoint"'):
            checkpoint = _checkpoint(line)
            if checkpoint is None:
                return Verdict(0, None, None, number, "the checkpoint line is malformed")
            if signature_check is not None:
                signed = signature_check(checkpoint)
                if not signed:
                    return Verdict(0, None, None, number, "the checkpoint's signature is not ours",
                                   checkpoint, signed)  # fmt: skip
            last_seq, last_hash = checkpoint["last_seq"], checkpoint["last_hash"]
            organization = checkpoint["organization_id"]
            continue
        problem = _problem(line, last_seq, last_hash, organization)
        if isinstance(problem, str):
            return Verdict(count, first_seq, last_seq, number, problem, checkpoint, signed)
        count += 1
        last_seq, last_hash, organization = problem
        first_seq = last_seq if first_seq is None else first_seq
        if noted is not None and last_seq == noted.seq and last_hash != noted.record_hash:
            why = f"record {last_seq} is not the one noted earlier (its hash differs)"
            return Verdict(count, first_seq, last_seq, number, why, checkpoint, signed)
    if noted is not None and (first_seq is None or not first_seq <= noted.seq <= (last_seq or 0)):
        why = f"the file does not hold record {noted.seq}, noted earlier"
        return Verdict(count, first_seq, last_seq, number + 1, why, checkpoint, signed)
    return Verdict(count, first_seq, last_seq, None, "", checkpoint, signed)


def _checkpoint(line: str) -> Mapping[str, Any] | None:
    """The checkpoint of a checkpoint line, if it has every field it must."""
    try:
        checkpoint = json.loads(line)["checkpoint"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(checkpoint, dict) or any(n not in checkpoint for n in CHECKPOINT_FIELDS):
        return None
    if not isinstance(checkpoint["last_seq"], int) or not isinstance(checkpoint["last_hash"], str):
        return None
    return checkpoint


_ANY_ORG = object()  # before the first record: any organization may come


def _no_repeated_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A field given twice would be read one way here and the other way by other tools."""
    record = dict(pairs)
    if len(record) != len(pairs):
        raise ValueError("a field appears twice")
    return record


def _problem(
    line: str, last_seq: int | None, last_hash: str | None, organization: object
) -> str | tuple[int, str, object]:
    """What is wrong with one line, in words; or, if nothing, its number, hash and
    organization."""
    try:
        record = json.loads(line, object_pairs_hook=_no_repeated_fields)
        seq, previous, claimed = record["seq"], record["previous_hash"], record["record_hash"]
        missing = [name for name in HASHED_FIELDS if name not in record]
    except (ValueError, KeyError, TypeError):
        return "not a record of an audit export"
    if type(seq) is not int or seq < 1 or not _is_hash(previous) or not _is_hash(claimed):
        return "not a record of an audit export"
    if missing:
        return f"the record lacks {', '.join(missing)}"
    if organization is not _ANY_ORG and record["organization_id"] != organization:
        return f"record {seq} belongs to another organization's log"
    if last_seq is not None and seq != last_seq + 1:
        return f"record number {last_seq + 1} is missing (found {seq})"
    if last_hash is not None and previous != last_hash:
        return f"record {seq} does not follow record {last_seq}"
    if seq == 1 and previous != GENESIS:
        return "record 1 does not start the chain"
    if record_hash(record, previous) != claimed:
        return f"record {seq} was changed after it was written"
    return seq, claimed, record["organization_id"]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python audit_chain.py EXPORT.jsonl [SEQ:HASH]", file=sys.stderr)
        return 2
    try:
        noted = parse_noted(argv[2]) if len(argv) == 3 else None
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as export:
        verdict = verify_lines(export, noted=noted)
    print(verdict)
    return 0 if verdict.intact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
