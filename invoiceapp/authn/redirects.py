"""Which ``next`` targets a sign-in may send the browser to (OWASP unvalidated redirects)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import url_for

_MAX_NEXT_LENGTH = 2048


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None.

    ``urlsplit(target).netloc == ""`` alone is not enough: browsers read
    ``/\\evil.example`` and ``///evil.example`` as another host, and drop tabs and
    newlines before parsing (``/\\t/evil.example`` becomes ``//evil.example``).
    """
    if not target or len(target) > _MAX_NEXT_LENGTH:
        return None
    if "\\" in target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def next_or_default(target: str | None) -> str:
    """``target`` if it is safe, else the dashboard."""
    return safe_next(target) or url_for("pages.dashboard")
