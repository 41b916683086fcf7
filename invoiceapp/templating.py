"""What every template can use: the principal, the policy, money formatting."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g

from .authz.enforce import can_in_template
from .authz.scope import active_organization, my_organizations
from .money import format_money
from .principal import current_principal


def _layout_context() -> dict[str, Any]:
    if g.get("minimal_layout"):
        return {"principal": None, "active_org": None, "active_role": None, "my_orgs": [],
                "demo_mode": False}  # fmt: skip
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
