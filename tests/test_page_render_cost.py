"""What rendering the signed-in invoice page costs, and that each saving kept the page
the same (issue 21 item 1; /work/wt/prompts/prof.py and bench/ measure the speed)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask import request as flask_request
from flask_wtf import csrf as flask_wtf_csrf

from support import (
    calls_of,
    keys_chainmaps_are_asked,
    signed_in_client,
    signed_in_through_the_form,
)


def test_every_form_on_the_invoice_page_carries_one_token_computed_once(
    csrf_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four forms (Mark paid, Void, End elevation, Sign out) used to call generate_csrf()
    four times; the page asks once and every form gets that token, which the CSRF check
    still accepts."""
    client = signed_in_through_the_form(csrf_app, "ada@acme.test")
    asked = calls_of(monkeypatch, flask_wtf_csrf, "generate_csrf")
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200
    tokens = re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
    assert len(tokens) == 4 and len(set(tokens)) == 1, tokens
    assert len(asked) == 1

    refused = client.post("/invoices/inv_7/mark-paid", data={"csrf_token": "forged"})
    assert refused.status_code == 400
    assert "badge-sent" in client.get("/invoices/inv_7").text
    marked = client.post("/invoices/inv_7/mark-paid", data={"csrf_token": tokens[-1]})
    assert marked.status_code == 303
    assert "badge-paid" in client.get("/invoices/inv_7").text


def test_the_invoice_page_is_built_from_its_template_the_layout_and_the_macros_only(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header's session state is a macro now, not an include: an include looked a
    template up and built a new context on every page. The state is still there."""
    client = signed_in_client(app, "ada@acme.test")
    looked_up: list[str] = []
    real = app.jinja_env.get_template

    def recording(name: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(app.jinja_env, "get_template", recording)
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200
    assert 'data-testid="session-state"' in page.text and "Elevated — " in page.text
    assert 'name="next" value="/invoices/inv_7"' in page.text  # End elevation comes back here
    assert set(looked_up) == {"invoices/show.html", "base.html", "macros.html"}, looked_up


class _CountingRequest:
    """Stands in for the templates' `request`: counts each attribute read."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.reads.append(name)
        return getattr(flask_request, name)


def test_the_header_reads_the_request_path_once_and_still_marks_the_current_link(
    app: Flask,
) -> None:
    """Each `request.path` in a template goes through Flask's context-local proxy; the
    header compared it with each of its links. It reads it once now."""
    client = signed_in_client(app, "ada@acme.test")
    counting = _CountingRequest()
    # Flask puts `request` in every template's context, for the app and again for the
    # view's blueprint: a last context processor of the blueprint's replaces it.
    app.template_context_processors["invoices"].append(lambda: {"request": counting})
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200
    assert counting.reads.count("path") == 1, counting.reads
    assert re.search(r'href="/invoices"[^>]*aria-current="page">Invoices<', page.text)
    assert not re.search(r'aria-current="page">(Dashboard|Account)<', page.text)
    assert 'name="next" value="/invoices/inv_7"' in page.text


def test_importing_the_macros_uses_the_built_module_without_comparing_globals_in_python(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `{% from "macros.html" import … %}` asked, key by key in Python, whether the
    importing template had globals the macros lack. The same question is asked in C now;
    a template with globals of its own still gets a module built for it, as in Jinja."""
    client = signed_in_client(app, "ada@acme.test")
    compared = keys_chainmaps_are_asked(monkeypatch, "__contains__")
    page = client.get("/invoices/inv_7")
    assert page.status_code == 200 and 'class="badge badge-sent"' in page.text
    assert compared == []

    with app.test_request_context("/"):
        source = '{% from "macros.html" import status_badge %}{{ status_badge("paid") }}'
        plain = app.jinja_env.from_string(source)
        extra = app.jinja_env.from_string(source, globals={"only_here": 1})
        assert plain.render() == extra.render() == '<span class="badge badge-paid">paid</span>'
        macros = app.jinja_env.get_template("macros.html")
        built = macros.module  # the module built once, imports reuse it
        assert macros._get_default_module(plain.new_context()) is built
        assert macros._get_default_module(extra.new_context()) is not built
