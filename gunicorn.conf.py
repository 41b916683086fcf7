"""gunicorn settings used by `make serve` (gunicorn -c gunicorn.conf.py).

Workers come from WEB_CONCURRENCY (default 2); the address from BIND (default
127.0.0.1:8000, behind a TLS-terminating proxy). The app keeps no state in one
process — sessions and CSRF in the database, rate limits in RATELIMIT_STORAGE_URI —
so more than one worker needs shared rate-limit storage (Redis).
"""

from __future__ import annotations

import os

import gunicorn.http.wsgi

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Do not advertise the server software and its version.
gunicorn.http.wsgi.SERVER = "InvoiceApp"


def on_starting(server: object) -> None:
    storage = os.environ.get("FLASK_RATELIMIT_STORAGE_URI", "memory://")
    if workers > 1 and storage.startswith("memory://"):
        raise SystemExit(
            f"gunicorn: {workers} workers with in-memory rate limits would give each worker "
            "its own count (twice the limit or more). Set FLASK_RATELIMIT_STORAGE_URI to a "
            "shared store such as redis://127.0.0.1:6379/0, or WEB_CONCURRENCY=1."
        )
