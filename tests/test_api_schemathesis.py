"""Schemathesis against the API in-process: every documented operation, generated input.

The document under test is the one the app serves (built from the same pydantic models
that validate requests), so this checks the code against its own promises: no 5xx, every
status and body as documented, invalid input refused, no operation reachable without
credentials. Requests carry a write token of the owner
of Acme, against a seeded database; examples are bounded to keep the run short.
"""

from __future__ import annotations

import itertools
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from conftest import make_test_app
from invoiceapp.api.schemas import PUBLIC_ID_PATTERN, SLUG_PATTERN
from support import NEW_INVOICE, bearer, make_token


def _served_document() -> dict:
    """The document exactly as GET /api/v1/openapi.json serves it (no database needed)."""
    with tempfile.TemporaryDirectory() as folder:
        app = make_test_app(Path(folder) / "unused.sqlite3")
        document = app.test_client().get("/api/v1/openapi.json").get_json()
        app.extensions["db_engine"].dispose()
    return document


# Answers that valid input may legitimately get here, beyond the 2xx/401/403/404 that
# Schemathesis expects: 412 (the If-Match it made up names another version) and 422
# (rules JSON Schema cannot say: a due date before the issue date, an amount of 0).
# Invalid input may get a 412 too: RFC 9110 (13.2.1) checks If-Match before the body.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "412", "422", "429"]
            },
            "negative_data_rejection": {
                "expected-statuses": [
                    *("400", "401", "403", "404", "405", "406", "409", "412", "413", "415"),
                    *("422", "429"),
                ]
            },
            "missing_required_header": {"expected-statuses": ["400", "401", "403", "422"]},
        },
    }
)


class _CurrentApp:
    """The WSGI app Schemathesis calls: the test run's app, set by the fixture below."""

    app: Flask | None = None

    def __call__(self, environ: dict, start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


current_app = _CurrentApp()
schema = schemathesis.openapi.from_dict(_served_document(), config=CONFIG)
schema.app = current_app  # every request and every re-sent request goes in-process


@pytest.fixture(scope="module")
def api_app(seeded_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One seeded database for the whole run: state accumulates, as it would in production."""
    import shutil

    copy = tmp_path_factory.mktemp("schemathesis") / "api.sqlite3"
    shutil.copyfile(seeded_database, copy)
    app = make_test_app(copy)
    current_app.app = app
    yield app
    current_app.app = None
    app.extensions["db_engine"].dispose()


@pytest.fixture(scope="module")
def write_token(api_app: Flask) -> str:
    return make_token(api_app, "ada@acme.test", "acme", "write", days=1)


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI must not pass or fail by chance
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_keeps_its_documented_promises(
    case: schemathesis.Case, api_app: Flask, write_token: str
) -> None:
    _aim_half_the_cases_at_real_data(case, api_app, write_token)
    case.call_and_validate(headers=bearer(write_token))


_coin = itertools.cycle([True, False])


def _aim_half_the_cases_at_real_data(case: schemathesis.Case, app: Flask, token: str) -> None:
    """Random ids and slugs are almost all 404s. Half the well-formed ones are swapped for
    a real one (a fresh draft, Acme, the current ETag), so the work behind the gates runs
    too. Malformed values are left alone: they are what negative testing sends on purpose.
    """
    parameters = case.path_parameters or {}
    invoice_id = parameters.get("invoice_id")
    if isinstance(invoice_id, str) and re.fullmatch(PUBLIC_ID_PATTERN, invoice_id) and next(_coin):
        created = app.test_client().post(
            "/api/v1/invoices", json=NEW_INVOICE, headers=bearer(token)
        )
        parameters["invoice_id"] = created.get_json()["id"]
        if case.headers and "If-Match" in case.headers and next(_coin):
            case.headers["If-Match"] = created.headers["ETag"]
    slug = parameters.get("slug")
    if isinstance(slug, str) and re.fullmatch(SLUG_PATTERN, slug) and next(_coin):
        parameters["slug"] = "acme"
    chosen = (case.query or {}).get("organization")
    if isinstance(chosen, str) and re.fullmatch(SLUG_PATTERN, chosen) and next(_coin):
        case.query["organization"] = "acme"
