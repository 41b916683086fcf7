"""What every template can use: the principal, the policy, money formatting, the
header's links (`links`, `static_url`) and the forms' CSRF token.

Rendering is most of the cost of a signed-in page, so the layout's helpers say what they
save and how it was measured (issue 21; tests/test_template_cost.py keeps each saving).

In demo mode the teaching panels also use invoiceapp.authz.explain (the decision
traces, the gate that answered an error page, the principal's state in the header).
"""

from __future__ import annotations

import re
import time
from collections import ChainMap
from collections.abc import Mapping, MutableMapping
from typing import Any

from flask import Flask, current_app, g, session, url_for
from flask_wtf import csrf as flask_wtf_csrf
from jinja2.environment import Template, TemplateModule
from jinja2.runtime import Context, new_context
from markupsafe import Markup, escape
from sqlalchemy.exc import SQLAlchemyError

from .authz.enforce import can_in_template
from .authz.explain import explain, explain_each, explain_many, gate_report, principal_state
from .authz.policy import role_name
from .authz.scope import active_organization, my_organizations
from .models import Organization
from .money import format_money
from .principal import current_principal
from .request_locals import request_g, this_app, this_request
from .tour import lab_is_on

MINIMAL_LAYOUT: dict[str, Any] = {
    "principal": None,
    "active_org": None,
    "active_role": None,
    "my_orgs": [],
    "demo_mode": False,
    "lab_on": False,
}


def _layout_context() -> dict[str, Any]:
    links, static_url = _fixed_urls()
    # Ours, not Flask-WTF's generate_csrf (its context processor ran first): see csrf_token.
    every_page = {"links": links, "static_url": static_url, "csrf_token": csrf_token}
    if g.get("minimal_layout"):
        return {**MINIMAL_LAYOUT, **every_page}
    try:
        return {**_principal_context(), **every_page}
    except SQLAlchemyError:
        # An error page must still render when the database is what failed.
        current_app.logger.exception("layout context unavailable")
        g.db.rollback()
        g.minimal_layout = True
        return {**MINIMAL_LAYOUT, **every_page}


def _role_name_in(organization_id: int) -> str | None:
    """The signed-in person's role in an organization as people read it (custom: its name)."""
    principal = current_principal()
    return role_name(principal, organization_id) if principal is not None else None


def _principal_context() -> dict[str, Any]:
    principal = current_principal()
    if principal is None:
        organizations: list[Organization] = []
        organization = role = None
    else:
        # First: it reads the organizations again if a rollback expired them.
        organizations = my_organizations(principal)
        organization = active_organization(principal)
        role = role_name(principal, organization.id) if organization else None
    demo_mode = current_app.config["DEMO_MODE"]
    return {
        "principal": principal,
        "active_org": organization,
        "active_role": role,
        "my_orgs": organizations,
        "demo_mode": demo_mode,
        "lab_on": demo_mode and lab_is_on(),  # the lab is the demo's: off outside it
    }


class FixedUrls(dict[str, str]):
    """The URLs of links that are the same on every page (the header's), for one mount
    point: url_for() on first use, then a dict lookup. In templates, `links["pages.dashboard"]`
    is url_for("pages.dashboard") and `static_url["app.css"]` is url_for("static",
    filename="app.css").

    The header asked fixed_url() a dozen times a page, each a Jinja call, two context-local
    reads and a tuple key; reading a dict costs next to nothing (measured: the invoice
    page's render 15-20 µs less).
    Keys are only ever written in templates, never request data (the dict would grow with
    it). A URL depends on the app's routes and where the app is mounted (SCRIPT_NAME),
    both fixed for a process; each mount point has its own dicts anyway.
    """

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint  # "static": the keys are file names

    def __missing__(self, key: str) -> str:
        if self.endpoint is None:
            url = url_for(key)
        else:
            url = url_for(self.endpoint, filename=key)
        self[key] = url
        return url


# Mount points whose links are kept at once (invoiceapp.flask_app.MAX_URL_PATTERNS says why).
MAX_MOUNT_POINTS = 64


def _fixed_urls() -> tuple[FixedUrls, FixedUrls]:
    """This mount point's `links` and `static_url`."""
    root = this_request().script_root  # asked twice a page: without the proxies
    by_mount_point: dict[str, tuple[FixedUrls, FixedUrls]] = this_app().extensions["fixed_urls"]
    urls = by_mount_point.get(root)
    if urls is None:
        if len(by_mount_point) >= MAX_MOUNT_POINTS:
            by_mount_point.clear()  # SCRIPT_NAME may come from a header (see flask_app.py)
        urls = by_mount_point[root] = (FixedUrls(), FixedUrls("static"))
    return urls


def fixed_url(endpoint: str) -> str:
    """`links[endpoint]`, for a macro: macros do not see the page's context."""
    return _fixed_urls()[0][endpoint]


def csrf_token() -> str:
    """The request's CSRF token, for every form on the page.

    Flask-WTF's generate_csrf() signs the token once per request, but each call still
    reads its settings and the session again; a page with four forms asked it four
    times. The first form of a request asks it, the others reuse the answer.
    """
    request_globals = request_g()  # once per form: without the proxy (request_locals)
    token: str | None = request_globals.get("csrf_token_for_forms")
    if token is None:
        token = request_globals.csrf_token_for_forms = _signed_csrf_token()
    return token


# How long a signed CSRF token is shown again instead of signed anew. Signing costs about
# 75 µs of CPU in a request (a serializer built, a key derived, JSON, zlib, two HMACs):
# the biggest single cost of rendering a page with a form. A token signed 40 s ago is as
# good as a new one: Flask-WTF checks only the signature, the session's raw token and the
# age against WTF_CSRF_TIME_LIMIT. Reusing it makes the form expire up to this much
# earlier, so never by more than a sixtieth of the time limit (30 s of the default 30 min).
CSRF_REUSE_SECONDS = 60
CSRF_CACHE_SIZE = 1024  # signed tokens kept per process; one per recently seen session


def _signed_csrf_token() -> str:
    """The token Flask-WTF's generate_csrf() would give, signed at most
    CSRF_REUSE_SECONDS ago.

    Kept per process, keyed by the signing key and the session's raw token. The raw token
    is the session's own random secret, so a signed token is only ever shown again to the
    session it was signed for (or a copy of its cookie, which already holds the secret);
    a new session, a sign-in (it clears the session) or a new secret key signs anew.
    """
    config = current_app.config
    field = config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    if field in g:  # a FlaskForm of this request already asked Flask-WTF
        return str(g.get(field))
    secret = config.get("WTF_CSRF_SECRET_KEY", current_app.secret_key)
    limit = config.get("WTF_CSRF_TIME_LIMIT", 3600)
    reuse_for = CSRF_REUSE_SECONDS if limit is None else min(CSRF_REUSE_SECONDS, limit // 60)
    signed: dict[tuple[object, str], tuple[str, float]] = current_app.extensions["csrf_signed"]
    raw = session.get(field)
    now = time.time()
    if isinstance(raw, str):
        kept = signed.get((secret, raw))
        if kept is not None and now - kept[1] < reuse_for:
            setattr(g, field, kept[0])  # as generate_csrf() does: later forms get the same
            return kept[0]
    token: str = flask_wtf_csrf.generate_csrf()  # signs; makes the raw token if there is none
    if reuse_for > 0:
        if len(signed) >= CSRF_CACHE_SIZE:
            signed.clear()  # sessions come and go: start again rather than track ages
        signed[(secret, session[field])] = (token, now)
    return token


# Letters of right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, N'Ko…), and a run of
# them with the spaces, digits and marks between: one name or phrase to isolate.
_RTL = "\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff\U0001e800-\U0001efff"
_RTL_RUN = re.compile(f"[{_RTL}](?:[{_RTL}\\s\\d.,'’-]*[{_RTL}])?")


def isolate_rtl(text: str) -> Markup:
    """Escape ``text`` and wrap each right-to-left run in <bdi>, so a Hebrew or Arabic name
    inside an English sentence (a flash message) cannot reorder the words around it."""
    if _RTL_RUN.search(text) is None:
        return escape(text)  # most messages: nothing to isolate, one pass over the text
    out, last = [], 0
    for match in _RTL_RUN.finditer(text):
        out.append(escape(text[last : match.start()]))
        out.append(Markup("<bdi>%s</bdi>") % match.group(0))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


class ImportFriendlyTemplate(Template):
    """A Jinja template whose `{% from "macros.html" import … %}` costs a set operation.

    On every import Jinja checks whether the importing template has globals the imported
    one lacks (then it must build the module again), by subtracting one ChainMap's keys
    from a set in Python: about 14 µs, twice a page. The same check done in C answers the
    same, and the cached module is used as before.
    """

    def _get_default_module(self, ctx: Context | None = None) -> TemplateModule:
        own = self.globals.maps if isinstance(self.globals, ChainMap) else [self.globals]
        if ctx is not None and not ctx.globals_keys.difference(*own):
            ctx = None  # nothing new to see: the cached module will do
        return super()._get_default_module(ctx)

    def new_context(
        self,
        vars: dict[str, Any] | None = None,
        shared: bool = False,
        locals: Mapping[str, Any] | None = None,
    ) -> Context:
        """The context of one render, as Jinja makes it, from the environment's globals
        themselves when the template has none of its own (every file template).

        Jinja copies a template's globals into each new context. They are a ChainMap (the
        template's own over the environment's), and copying a ChainMap goes key by key in
        Python: 10 µs a render for our 25 globals, against a fraction of one for a dict.
        """
        globals: MutableMapping[str, Any] = self.globals
        if isinstance(globals, ChainMap) and len(globals.maps) == 2 and not globals.maps[0]:
            globals = globals.maps[1]  # the environment's globals, read as they are now
        return new_context(self.environment, self.name, self.blocks, vars, shared, globals, locals)


def init_templating(app: Flask) -> None:
    # Before the first template is loaded: the environment makes templates of this class.
    app.jinja_env.template_class = ImportFriendlyTemplate
    # The app's templates are a fixed set: keep each compiled one in a plain dict (what
    # Jinja's cache_size=-1 makes) instead of its 400-entry LRU, whose every lookup takes
    # a lock and moves the name in a deque. A page looks up four (the page, base.html,
    # macros.html twice): about 10 µs a page.
    app.jinja_env.cache = {}
    app.extensions["fixed_urls"] = {}
    app.extensions["csrf_signed"] = {}
    app.jinja_env.globals["fixed_url"] = fixed_url
    app.jinja_env.globals["csrf_token"] = csrf_token  # replaces Flask-WTF's generate_csrf
    app.jinja_env.globals["can"] = can_in_template
    app.jinja_env.globals["role_name_in"] = _role_name_in
    app.jinja_env.globals["explain"] = explain
    app.jinja_env.globals["explain_many"] = explain_many
    app.jinja_env.globals["explain_each"] = explain_each
    app.jinja_env.globals["gate_report"] = gate_report
    app.jinja_env.globals["principal_state"] = principal_state
    app.jinja_env.filters["money"] = format_money
    app.jinja_env.filters["isolate_rtl"] = isolate_rtl
    app.context_processor(_layout_context)
