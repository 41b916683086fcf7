"""gunicorn settings used by `make serve` (gunicorn -c gunicorn.conf.py).

Workers come from WEB_CONCURRENCY (default 2, or 1 while rate limits are on and kept
in memory); the address from BIND (default 127.0.0.1:8000, behind a TLS-terminating
proxy). The app keeps no state in one process (sessions and CSRF in the database,
rate limits in RATELIMIT_STORAGE_URI), so more than one worker needs shared
rate-limit storage (Redis). gunicorn reads this file from the working directory by
itself, so the plain `gunicorn "invoiceapp:create_app()"` of CONTRACT.md uses it too.
"""

from __future__ import annotations

import gc
import json
import os
from typing import Any

import gunicorn.http.wsgi

bind = os.environ.get("BIND", "127.0.0.1:8000")


def _flask_setting(key: str, default: object) -> object:
    """A FLASK_<KEY> variable as the app reads it (Flask's from_prefixed_env: JSON first)."""
    raw = os.environ.get(f"FLASK_{key}")
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return raw


# Unset or empty means Flask-Limiter's default, memory://. Limits switched off
# (FLASK_RATELIMIT_ENABLED=false) count nothing, so any number of workers agree.
_in_memory_limits = bool(_flask_setting("RATELIMIT_ENABLED", True)) and (
    os.environ.get("FLASK_RATELIMIT_STORAGE_URI") or "memory://"
).startswith("memory://")
# One worker unless the limits are shared: a second one would count every limit alone.
workers = int(os.environ.get("WEB_CONCURRENCY", "1" if _in_memory_limits else "2"))
# gunicorn's own defaults, named because the API relies on them: it refuses query strings
# over 2,048 bytes itself (invoiceapp/api/blueprint.py), as JSON, well before gunicorn's
# plain-text 414 for a request line over this; its OpenAPI document names both limits.
limit_request_line = 4094
limit_request_field_size = 8190
# Do not advertise the server software and its version.
gunicorn.http.wsgi.SERVER = "InvoiceApp"


def on_starting(server: Any) -> None:
    # The final count: `-w` and GUNICORN_CMD_ARGS override this file's `workers`.
    count = server.cfg.workers
    if count > 1 and _in_memory_limits:
        raise SystemExit(
            f"gunicorn: {count} workers with in-memory rate limits would give each worker "
            "its own count (twice the limit or more). Set FLASK_RATELIMIT_STORAGE_URI to a "
            "shared store such as redis://127.0.0.1:6379/0, or WEB_CONCURRENCY=1."
        )


def post_fork(server: Any, worker: Any) -> None:
    # With --preload (the tests start their servers so: the app is imported once, not once
    # per worker) the app was built before the fork. Drop any database connection the
    # parent may hold without closing it, so that no two processes ever share one
    # (SQLAlchemy's advice for multiprocessing); each worker opens its own.
    app = getattr(server.app, "callable", None)
    engine = getattr(app, "extensions", {}).get("db_engine")
    if engine is not None:
        engine.dispose(close=False)


def post_worker_init(worker: Any) -> None:
    # Everything built so far (the app, its routes, templates, models and the libraries)
    # lives as long as the worker. Moved out of the garbage collector's sight, the full
    # collections that would walk all ~140,000 of those objects over and over have
    # nothing to walk: in one process, about 0.01 ms a page and a 50 ms pause every few
    # thousand pages (bench/ measures). Objects made by requests are collected as ever.
    gc.freeze()
