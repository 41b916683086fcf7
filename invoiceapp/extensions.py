"""Bare extension instances, bound to an app in create_app() (no import cycles)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import SQLAlchemyError

login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(get_remote_address)


def outage_safe_key(key: Callable[[], str]) -> Callable[[], str]:
    """For rate-limit keys that read the database (the principal, an account).

    Flask-Limiter takes any error from a key function for its own storage failing: it
    switches every limit to in-memory counting and asks again. A database outage is not
    that, so the key becomes the client's address, the failed transaction is rolled
    back, and the view meets the outage itself: a 503. Found by `make load`.
    """

    @functools.wraps(key)
    def key_or_address() -> str:
        try:
            return key()
        except SQLAlchemyError:
            database = g.get("db")
            if database is not None:
                try:
                    database.rollback()
                except SQLAlchemyError:
                    pass  # the connection is gone; the pool replaces it
            return "database-unavailable:" + (get_remote_address() or "")

    return key_or_address
