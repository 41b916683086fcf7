"""What every template can use: the principal, the policy, money formatting.

In demo mode the teaching panels also use invoiceapp.authz.explain (the decision
traces, the gate that answered an error page, the principal's state in the header).
"""

from __future__ import annotations

import re
from collections import ChainMap
from typing import Any

from flask import Flask, current_app, g, request, url_for
from flask_wtf import csrf as flask_wtf_csrf
from jinja2.environment import Template, TemplateModule
from jinja2.runtime import Context
from markupsafe import Markup, escape
from sqlalchemy.exc import SQLAlchemyError

from .authz.enforce import can_in_template
from .authz.explain import explain, explain_each, explain_many, gate_report, principal_state
from .authz.policy import role_name
from .authz.scope import active_organization, my_organizations
from .money import format_money
from .principal import current_principal
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
    if g.get("minimal_layout"):
        return MINIMAL_LAYOUT
    try:
        return _principal_context()
    except SQLAlchemyError:
        # An error page must still render when the database is what failed.
        current_app.logger.exception("layout context unavailable")
        g.db.rollback()
        g.minimal_layout = True
        return MINIMAL_LAYOUT


def _role_name_in(organization_id: int) -> str | None:
    """The signed-in person's role in an organization as people read it (custom: its name)."""
    principal = current_principal()
    return role_name(principal, organization_id) if principal is not None else None


def _principal_context() -> dict[str, Any]:
    principal = current_principal()
    # First: it reads the organizations again if a rollback expired them.
    organizations = my_organizations(principal) if principal is not None else []
    organization = active_organization(principal) if principal is not None else None
    return {
        "principal": principal,
        "active_org": organization,
        "active_role": _role_name_in(organization.id) if organization else None,
        "my_orgs": organizations,
        "demo_mode": current_app.config["DEMO_MODE"],
        "lab_on": lab_is_on(),
    }


def fixed_url(endpoint: str, **values: Any) -> str:
    """url_for() for a link that is the same on every page (the header's links, the
    stylesheet): built once per process and mount point rather than a dozen times a page.

    Only for endpoints and values written in a template, never for request data (the
    cache would grow with it). A URL depends on the app's routes and where the app is
    mounted (SCRIPT_NAME), both fixed for a process; the key has the mount point anyway.
    """
    key = (request.script_root, endpoint, *sorted(values.items()))
    urls: dict[tuple[object, ...], str] = current_app.extensions["fixed_urls"]
    url = urls.get(key)
    if url is None:
        url = urls[key] = url_for(endpoint, **values)
    return url


def csrf_token() -> str:
    """The request's CSRF token, for every form on the page.

    Flask-WTF's generate_csrf() signs the token once per request, but each call still
    reads its settings and the session again; a page with four forms asked it four
    times. The first form of a request asks it, the others reuse the answer.
    """
    token: str | None = g.get("csrf_token_for_forms")
    if token is None:
        token = g.csrf_token_for_forms = flask_wtf_csrf.generate_csrf()
    return token


# Letters of right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, N'Ko…), and a run of
# them with the spaces, digits and marks between: one name or phrase to isolate.
_RTL = "\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff\U0001e800-\U0001efff"
_RTL_RUN = re.compile(f"[{_RTL}](?:[{_RTL}\\s\\d.,'’-]*[{_RTL}])?")


def isolate_rtl(text: str) -> Markup:
    """Escape ``text`` and wrap each right-to-left run in <bdi>, so a Hebrew or Arabic name
    inside an English sentence (a flash message) cannot reorder the words around it."""
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


def init_templating(app: Flask) -> None:
    # Before the first template is loaded: the environment makes templates of this class.
    app.jinja_env.template_class = ImportFriendlyTemplate
    app.extensions["fixed_urls"] = {}
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
