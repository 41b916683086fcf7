"""Lost updates: a write must name the version it was based on (RFC 9110 If-Match).

GET answers ``ETag: "<version>"``; PATCH and DELETE must send it back in ``If-Match``.
No If-Match at all is a 428: a client that never looked cannot overwrite blind.
A stale one is a 412, and nothing is written. ``If-Match: *`` is the explicit "any
version", for a client that means to overwrite.

The check before the write is a courtesy; the write itself is a compare-and-set
(``UPDATE … WHERE version = <seen>``), so two writers holding the same ETag can never
both succeed, however close together they arrive.
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import PreconditionFailed, PreconditionRequired

from ..models import Invoice


class VersionRequired(PreconditionRequired):
    description = (
        'Send If-Match with the ETag of the invoice you read (If-Match: "3"), '
        "so that nobody's change is lost."
    )


class StaleVersion(PreconditionFailed):
    description = "The invoice was changed since you read it. GET it again, then retry."


def etag_of(invoice: Invoice) -> str:
    return f'"{invoice.version}"'


def version_seen(invoice: Invoice) -> int:
    """The version the client based its change on: 428 without If-Match, 412 if stale."""
    if "If-Match" not in request.headers:
        raise VersionRequired()
    if request.if_match.contains(str(invoice.version)):  # strong comparison; "*" matches
        return invoice.version
    raise StaleVersion()
