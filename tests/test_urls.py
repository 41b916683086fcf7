"""Internal links come from url_for(), so a renamed route fails loudly (BuildError) instead
of leaving a dead link, a redirect to nowhere or a mail that points at a 404.

These tests read the source: a literal internal path in a template's href/action/src, a
Jinja string that starts with "/", or a redirect, mailed link or Location header built
from a literal path in Python. A path shown to the reader as text (teaching prose, the
example requests of the exercises, a documented URL in a message) is not a link and may
stay literal; the few that look like links are in ALLOWED below, each with its reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from flask import Flask, url_for
from werkzeug.routing import BuildError

from invoiceapp.mail import link_for

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
PACKAGE = ROOT / "invoiceapp"

# (file, the literal): why it may stay.
ALLOWED: dict[tuple[str, str], str] = {}

# In a template: an attribute that a browser follows, or a Jinja string literal, that
# starts with one "/" (two would be a scheme-relative URL to another host).
TEMPLATE_LINK = re.compile(
    r"""\b(?:href|action|formaction|src|data-options)\s*=\s*["']/(?!/)"""
    r"""|\{[{%][^}]*?["']/(?!/)[^"']*["']"""
)
# In Python: the calls and headers that send a browser or a mail reader somewhere.
LINK_CALLS = frozenset({"redirect", "absolute_url"})


def _template_files() -> list[Path]:
    return sorted(path for path in TEMPLATES.rglob("*") if path.suffix in (".html", ".txt"))


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def literal_links_in_template(text: str) -> list[str]:
    """Each line that links to a literal internal path."""
    return [line.strip() for line in text.splitlines() if TEMPLATE_LINK.search(line)]


def _starts_with_a_path(node: ast.expr) -> bool:
    """ "/x", f"/x{y}", "/x" + y: an internal path written by hand."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.startswith("/")
    if isinstance(node, ast.JoinedStr) and node.values:
        return _starts_with_a_path(node.values[0])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _starts_with_a_path(node.left)
    return False


def literal_links_in_python(source: str) -> list[str]:
    """redirect("/…"), absolute_url("/…"), {"Location": "/…"}, "/…?" + query, and any
    path with values put in by hand (f"/invoices/{id}")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr) and _starts_with_a_path(node):
            found.append(ast.unparse(node))
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in LINK_CALLS and node.args and _starts_with_a_path(node.args[0]):
                found.append(ast.unparse(node))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "Location"
                    and _starts_with_a_path(value)
                ):
                    found.append(ast.unparse(node))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            if _starts_with_a_path(node.left) and _ends_with_a_question_mark(node.left):
                found.append(ast.unparse(node))
    return found


def _ends_with_a_question_mark(node: ast.expr) -> bool:
    """ "/x?" or f"/x/{y}?": a path about to get a query string glued on."""
    last = node.values[-1] if isinstance(node, ast.JoinedStr) and node.values else node
    return isinstance(last, ast.Constant) and str(last.value).endswith("?")


def _not_allowed(file: str, hits: list[str]) -> list[str]:
    return [hit for hit in hits if (file, hit) not in ALLOWED]


@pytest.mark.parametrize(
    "path", _template_files(), ids=lambda p: p.relative_to(TEMPLATES).as_posix()
)
def test_templates_link_with_url_for_not_literal_paths(path: Path) -> None:
    file = path.relative_to(ROOT).as_posix()
    assert _not_allowed(file, literal_links_in_template(path.read_text())) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_python_redirects_and_mailed_links_use_url_for(path: Path) -> None:
    file = path.relative_to(ROOT).as_posix()
    assert _not_allowed(file, literal_links_in_python(path.read_text())) == []


# The scanners themselves: each finds what it is for, and nothing that is only text.


@pytest.mark.parametrize(
    "line",
    [
        '<a href="/dashboard">Home</a>',
        "<form method=\"post\" action='/invoices/new'>",
        '<a href="/invoices/{{ invoice.public_id }}">',
        '<script src="/static/app.js"></script>',
        '{{ post_button("/sign-out", "Sign out") }}',
        "<a href=\"{{ '/account' if principal else '/' }}\">",
        '<div data-options="/sign-in/passkey/options">',
    ],
)
def test_a_literal_internal_link_in_a_template_is_found(line: str) -> None:
    assert literal_links_in_template(line) == [line]


@pytest.mark.parametrize(
    "line",
    [
        "<a href=\"{{ url_for('pages.dashboard') }}\">Home</a>",
        "<p>Open <code>/invoices/inv_7</code> as Linus.</p>",
        '<a href="https://example.test/page">elsewhere</a>',
        "<a href=\"{{ url_for('invoices.index', organization=org.slug) }}\">All</a>",
    ],
)
def test_url_for_prose_and_outside_links_are_not_flagged(line: str) -> None:
    assert literal_links_in_template(line) == []


@pytest.mark.parametrize(
    "source",
    [
        'redirect("/sign-in", code=303)',
        'redirect(f"/invoices/{invoice.public_id}", code=303)',
        'redirect("/exercises#" + part)',
        'absolute_url("/reset-password/" + raw)',
        'headers = {"Location": f"/api/v1/invoices/{invoice.public_id}"}',
        'return "/reauthenticate?" + urlencode(query)',
        'return f"/orgs/{slug}/audit?" + urlencode(filters)',
        'base = f"/invoices/{resource.public_id}"',
    ],
)
def test_a_literal_internal_link_in_python_is_found(source: str) -> None:
    assert literal_links_in_python(source) != []


@pytest.mark.parametrize(
    "source",
    [
        'redirect(url_for("authn.sign_in_form"), code=303)',
        'absolute_url(url_for("recovery.reset_password_form", token=raw))',
        'url_for("authn.sign_in_form") + "?" + urlencode(query)',
        'request.path.startswith("/api/")',
        'Probe("GET", "/invoices/inv_42", MEMBER)',
    ],
)
def test_url_for_and_paths_that_are_not_links_are_not_flagged(source: str) -> None:
    assert literal_links_in_python(source) == []


def test_a_mailed_link_is_base_url_and_the_routes_path_even_outside_a_request(app: Flask) -> None:
    with app.app_context():  # as in a background job: no request, no Host header
        base = app.config["BASE_URL"].rstrip("/")
        assert link_for("recovery.reset_password_form", token="t0k-3n") == (
            base + "/reset-password/t0k-3n"
        )


def test_a_link_to_a_renamed_route_fails_loudly(app: Flask) -> None:
    with app.test_request_context(), pytest.raises(BuildError):
        url_for("recovery.a_route_that_was_renamed")
    with app.app_context(), pytest.raises(BuildError):
        link_for("recovery.a_route_that_was_renamed")
