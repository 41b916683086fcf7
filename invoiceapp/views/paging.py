"""The ``?page=`` number every paginated page reads, in one place."""

from __future__ import annotations

from flask import request


def page_number() -> int:
    """Anything but a plain, sane page number means page 1 ("²" is a digit to Python)."""
    raw = request.args.get("page", "1")
    if raw.isascii() and raw.isdigit() and len(raw) < 7 and int(raw) > 0:
        return int(raw)
    return 1
