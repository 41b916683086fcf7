"""The fixed cost of every request (issue 21): work Flask, the hooks and the database
session did on each request that this app never needed. Each test fails if its saving
is undone; none measures time (bench/ and the stage measurements do that)."""

from __future__ import annotations

import inspect
from typing import Any

import flask.app
import pytest
from flask import Blueprint, Flask

from invoiceapp.flask_app import InvoiceApp, refuse_async_functions
from support import signed_in_client


def test_no_function_is_inspected_for_async_on_a_request(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask's ensure_sync asked iscoroutinefunction about 17 times per page."""
    asked: list[Any] = []

    def counting(function: Any) -> bool:
        asked.append(function)
        return inspect.iscoroutinefunction(function)

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counting)
    client = signed_in_client(app, "ada@acme.test")
    assert client.get("/invoices/inv_7").status_code == 200
    assert client.get("/no-such-page").status_code == 404
    assert asked == []


def test_an_async_view_is_refused_when_it_is_registered(app: Flask) -> None:
    async def view() -> str:
        return "never"

    with pytest.raises(TypeError, match="async"):
        app.add_url_rule("/async", "async_view", view)
    blueprint = Blueprint("async_blueprint", __name__)
    blueprint.add_url_rule("/async-too", "view", view)
    with pytest.raises(TypeError, match="async"):
        app.register_blueprint(blueprint)


@pytest.mark.parametrize("register", ["before_request", "after_request", "teardown_request",
                                      "teardown_appcontext", "errorhandler"])  # fmt: skip
def test_an_async_hook_is_refused_when_the_app_is_built(register: str) -> None:
    app = InvoiceApp(__name__)

    async def hook(*_args: Any) -> Any:
        return None

    if register == "errorhandler":
        app.register_error_handler(404, hook)
    else:
        getattr(app, register)(hook)
    refuse_async_functions(InvoiceApp(__name__))  # nothing async: nothing refused
    with pytest.raises(TypeError, match="async"):
        refuse_async_functions(app)
