"""This request's ``g``, ``request`` and app, read without Flask's context-local proxies.

``flask.g``, ``flask.request`` and ``flask.current_app`` are proxies: every attribute read
looks up the context, then the object behind it, about 0.6 µs each. A signed-in page read
them about 90 times, most of them in a handful of functions asked several times a page
(the principal, the database session, the CSRF token, the session cookie). Those functions
read the context once through these; everywhere else the proxies are clearer and are used.

Each returns exactly the object the proxy stands for (Flask's own context variables), and
raises LookupError outside a request or app context, where the proxies raise RuntimeError.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.ctx import _AppCtxGlobals
from flask.globals import _cv_app, _cv_request


def request_g() -> _AppCtxGlobals:
    """``flask.g``."""
    return _cv_app.get().g


def this_app() -> Flask:
    """``flask.current_app``."""
    return _cv_app.get().app


def this_request() -> Request:
    """``flask.request``."""
    return _cv_request.get().request
