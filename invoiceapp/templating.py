"""What every template can use: the principal, the policy, money formatting."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g
from sqlalchemy.exc import SQLAlchemyError

from .authz.enforce import can_in_template
from .authz.scope import active_organization, my_organizations
from .money import format_money
from .principal import current_principal

MINIMAL_LAYOUT: dict[str, Any] = {
    "principal": None,
    "active_org": None,
    "active_role": None,
    "my_orgs": [],
    "demo_mode": False,
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


def _principal_context() -> dict[str, Any]:
    principal = current_principal()
    organization = active_organization(principal) if principal is not None else None
    return {
        "principal": principal,
        "active_org": organization,
        "active_role": principal.role_in(organization.id) if principal and organization else None,
        "my_orgs": my_organizations(principal) if principal is not None else [],
        "demo_mode": current_app.config["DEMO_MODE"],
    }


def init_templating(app: Flask) -> None:
    app.jinja_env.globals["can"] = can_in_template
    app.jinja_env.filters["money"] = format_money
    app.context_processor(_layout_context)
