"""Ids that arrive in a URL path, shape-checked before any query sees them.

One table of shapes and one function, called by every lookup that takes an id from a
path. An id of the wrong shape is answered like an id that does not exist: the same
404, from the same ``abort(404)``, so nobody learns which ids *could* exist. And it never
reaches the database: PostgreSQL refuses a NUL byte in text with an error (a 500), and
a 5,000-character id would be compared in vain against columns of 32.

Mailed tokens (/reset-password/<token> and the like) have shapes of their own in the
modules that check them, and a page of their own for a link that no longer works.
"""

from __future__ import annotations

import re

from flask import abort

# The ids the app hands out (secrets.token_hex(8) and friends), by what they name.
SHAPES: dict[str, re.Pattern[str]] = {
    "invoice": re.compile(r"inv_[A-Za-z0-9]{1,32}"),
    "organization": re.compile(r"[a-z0-9][a-z0-9-]{0,63}"),  # a slug
    "session": re.compile(r"[0-9a-f]{16}"),
    "passkey": re.compile(r"[0-9a-f]{16}"),
    "access_token": re.compile(r"pat_[0-9a-f]{16}"),
    "invitation": re.compile(r"[0-9a-f]{16}"),
    "role": re.compile(r"[a-z0-9][a-z0-9-]{0,15}"),  # a custom role's key (authz/roles.py)
    "mail": re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,199}"),  # a file name in the outbox
}


def is_well_formed(kind: str, value: object) -> bool:
    """Whether ``value`` has the shape of a ``kind`` id (any str the app could have made)."""
    return isinstance(value, str) and SHAPES[kind].fullmatch(value) is not None


def path_id_or_404(kind: str, value: str) -> str:
    """``value`` unchanged when it has the shape of a ``kind`` id; else the usual 404."""
    if not is_well_formed(kind, value):
        abort(404)
    return value
