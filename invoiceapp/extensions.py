"""Bare extension instances, bound to an app in create_app() (no import cycles)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_qualified_name, get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import SQLAlchemyError

from .db import is_database_unavailable
from .request_locals import this_request

T = TypeVar("T")

login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(get_remote_address)


def outage_safe_key(key: Callable[[], str]) -> Callable[[], str]:
    """For rate-limit keys that read the database (the principal, an account).

    Flask-Limiter takes any error from a key function for its own storage failing: it
    switches every limit to in-memory counting and asks again, and the second try meets
    the half-failed transaction (a 500; found by `make load`). When the database is
    unavailable, this rolls back and counts the request in one bucket shared by every
    such request: failing closed, since a per-address key would let someone who can
    provoke errors spread an account's guesses over many addresses. The view then
    meets the outage itself (a 503). Any other error is a bug and still surfaces.
    """

    @functools.wraps(key)
    def key_or_outage_bucket() -> str:
        try:
            return key()
        except SQLAlchemyError as error:
            if not is_database_unavailable(error):
                raise
            current_app.logger.warning(
                "database unavailable in rate-limit key %s: %s", key.__name__, type(error).__name__
            )
            database = g.get("db")
            if database is not None:
                try:
                    database.rollback()
                except SQLAlchemyError:
                    pass  # the connection is gone; the pool replaces it
            return "database-unavailable"

    return key_or_outage_bucket


# ---------------------------------------------------------------------------
# Limits that count only failed attempts, atomically
# ---------------------------------------------------------------------------

# Flask-Limiter's own ``deduct_when`` tests the count before the view and adds to it
# after: a burst of wrong passwords all pass the test before any is counted (about twice
# the budget, found by a burst against several workers). Here every attempt takes its
# place first, with the storage's own atomic increment (Redis INCR, or a lock in
# memory), and gives it back afterwards unless it failed. The check and the count are
# then one step: the eleventh concurrent guess finds ten places taken. The price: attempts
# still in flight hold their places, so only as many right passwords as the budget can be
# checked at the very same instant (they give the places back as soon as they succeed).
_COUNTS_WHEN: dict[str, Callable[[Response], bool]] = {}


def failures_limit(
    limit_value: Callable[[], str],
    *,
    name: str,
    failed: Callable[[Response], bool],
    key_func: Callable[[], str] | None = None,
    shared: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A rate limit on failed attempts only (``failed(response)`` says which), reserved
    before the view runs so that concurrent attempts cannot outrun it.

    ``name`` becomes the limit's scope (shared by every route when ``shared``).
    """
    _COUNTS_WHEN[name] = failed
    if shared:
        return limiter.shared_limit(limit_value, scope=name, key_func=key_func)
    return limiter.limit(limit_value, key_func=key_func, scope=name)


def refund_attempts_that_did_not_fail(response: Response) -> Response:
    """After each request: give back the places of failure limits it did not fail.

    A success, a form error, or a request another limit refused (429) was never a
    guess that was checked, so it leaves no trace in these counts.
    """
    if _has_no_limits():
        return response  # no limit was checked, so none was spent
    for spent in limiter.current_limits:
        name = spent.request_args[-1].rsplit(":", 1)[-1]
        failed = _COUNTS_WHEN.get(name)
        if failed is None or failed(response):
            continue
        try:
            spent.limiter.storage.incr(spent.key, spent.limit.get_expiry(), amount=-1)
        except Exception as error:  # the storage is down: the count stays one too high
            current_app.logger.warning("rate-limit refund failed: %s", type(error).__name__)
    return response


# ---------------------------------------------------------------------------
# Only routes that have limits ask the limiter
# ---------------------------------------------------------------------------


def skip_routes_without_limits(app: Flask) -> None:
    """Before every request Flask-Limiter works out which limits apply, even on the many
    pages that have none (no default or application limits are set here): about 0.2 ms
    of every signed-in page. Whether an endpoint has limits is fixed once the app is
    built, so it is worked out once per endpoint, with the limiter's own rules, and the
    pages without any are let through untouched. Routes with limits are checked as before.

    The limiter's own before-request hook is swapped for one that asks that question
    first: an unlimited page then never enters Flask-Limiter at all (it used to work out
    the request's endpoint, exemptions and filters before reaching the same answer).
    Its after-request hook (rate-limit headers) and teardown (forget the request's
    limits) are skipped on those pages too: with no limit checked there is nothing to
    report or forget (0.008 ms of every such request, measured).
    """
    app.extensions["endpoints_with_limits"] = {}
    hooks = app.before_request_funcs.setdefault(None, [])
    if limiter._check_request_limit in hooks:  # not there when limits are switched off
        hooks[hooks.index(limiter._check_request_limit)] = _check_limits_only_where_there_are_some
    after_and_teardown: list[list[Any]] = [
        app.after_request_funcs.setdefault(None, []),
        app.teardown_request_funcs.setdefault(None, []),
    ]
    for hooks_of_a_kind in after_and_teardown:
        for index, hook in enumerate(hooks_of_a_kind):
            if _is_the_limiters(hook):
                hooks_of_a_kind[index] = _only_where_there_are_limits(hook)


def _is_the_limiters(hook: Callable[..., Any]) -> bool:
    """A hook Flask-Limiter registered: a method of it, or a function given it first."""
    if getattr(hook, "__self__", None) is limiter:
        return True
    return isinstance(hook, functools.partial) and hook.args[:1] == (limiter,)


def _only_where_there_are_limits(hook: Callable[[T], T]) -> Callable[[T], T]:
    @functools.wraps(hook)
    def unless_no_limits(response_or_error: T) -> T:
        if _has_no_limits():
            return response_or_error
        return hook(response_or_error)

    return unless_no_limits


def _check_limits_only_where_there_are_some() -> None:
    """Flask-Limiter's check, for the routes that have limits (sign-in, the API…)."""
    if not _has_no_limits():
        limiter._check_request_limit()


@limiter.request_filter
def _has_no_limits() -> bool:
    # Asked up to four times a request (before, headers, refund, teardown): answered once,
    # kept in the request's own environ (``g`` may outlive a request, in tests).
    environ = this_request().environ  # asked four times: without the proxy (request_locals)
    answer: bool | None = environ.get(_NO_LIMITS_KEY)
    if answer is None:
        answer = environ[_NO_LIMITS_KEY] = _endpoint_has_no_limits()
    return answer


_NO_LIMITS_KEY = "invoiceapp.has_no_rate_limits"


def _endpoint_has_no_limits() -> bool:
    known_endpoints: dict[str, bool] | None = current_app.extensions.get("endpoints_with_limits")
    manager = limiter.limit_manager
    if known_endpoints is None or manager.application_limits or manager.default_limits:
        return False  # such limits would apply to every route
    endpoint = request.endpoint or ""
    known = known_endpoints.get(endpoint)
    if known is None:
        known = known_endpoints[endpoint] = _has_limits(endpoint)
    return not known


def _has_limits(endpoint: str) -> bool:
    manager = limiter.limit_manager
    view = current_app.view_functions.get(endpoint)
    if view is None:
        return True  # unrouted: let the limiter decide as it always has
    blueprint = request.blueprint
    return bool(
        manager.decorated_limits(get_qualified_name(view))
        or manager.has_hints(endpoint)
        or (blueprint and manager.blueprint_limits(current_app, blueprint))
    )
