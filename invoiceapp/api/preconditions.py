"""Lost updates: every write is a compare-and-set against the version it is based on.

GET answers ``ETag: "<version>"``; PATCH and DELETE may send it back in ``If-Match``
(RFC 9110), and a stale one is a 412. Without If-Match (or with ``*``) a write is
unconditional, as CONTRACT section 6 has it (there is no 428), and is based on the
version this request read.

Either way the write is ``UPDATE … WHERE version = <seen>``, so of two writers based on
the same version only one succeeds, however close together they arrive. A loser that
named the version in If-Match gets 412; one that did not gets 409, as the edit form's
stale save does.
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import Conflict, HTTPException, PreconditionFailed

from ..models import Invoice


class StaleVersion(PreconditionFailed):
    description = "The invoice was changed since you read it. GET it again, then retry."


class ChangedMeanwhile(Conflict):
    description = "The invoice was changed by someone else just now. GET it again, then retry."


def etag_of(invoice: Invoice) -> str:
    return f'"{invoice.version}"'


def version_seen(invoice: Invoice) -> int:
    """The version the change is based on: If-Match's (412 if stale), else the one read."""
    if "If-Match" not in request.headers:
        return invoice.version
    if request.if_match.contains(str(invoice.version)):  # strong comparison; "*" matches
        return invoice.version
    raise StaleVersion()


def lost_race() -> HTTPException:
    """The answer when the compare-and-set found a newer version than ``version_seen``."""
    if "If-Match" in request.headers and not request.if_match.star_tag:
        return StaleVersion()
    return ChangedMeanwhile()
