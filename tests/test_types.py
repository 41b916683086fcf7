"""Types are checked: mypy passes on invoiceapp/, and make test runs it before the suite.

Also the two small helpers the type fixes brought: ``rows_changed`` (the row count of a
compare-and-set write) and ``add_error`` (an error only the view can find).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from wtforms import StringField

from invoiceapp.db import rows_changed
from invoiceapp.forms import Form, add_error
from invoiceapp.models import User

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_type_errors_in_invoiceapp() -> None:
    # The settings (files, strictness, per-library exceptions) are pyproject's [tool.mypy].
    checked = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("Success: no issues found")


def make_test_recipe() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest: install\n", 1)[1].split("\n\n", 1)[0]
    return [" ".join(line.split()) for line in recipe.replace("\\\n", " ").splitlines()]


def test_make_test_lints_first_then_runs_the_suite_that_type_checks() -> None:
    """mypy runs once, inside the suite (the test above), not a second time beside it."""
    assert make_test_recipe() == [
        "$(BIN)/python -m ruff check .",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/python -m pytest $(PYTEST_PLUGINS) -n auto"
        " --dist worksteal",
    ]


def test_every_pytest_plugin_installed_is_named_for_make_test() -> None:
    """make test turns plugin auto-loading off and names the plugins: a plugin installed
    later (a new entry point) must be added there, or its fixtures silently go missing."""
    from importlib.metadata import entry_points

    makefile = (ROOT / "Makefile").read_text()
    named = makefile.split("\nPYTEST_PLUGINS = ", 1)[1].split("\n\n", 1)[0]
    wanted = {entry.value for entry in entry_points(group="pytest11")} - {"anyio.pytest_plugin"}
    assert wanted <= set(named.replace("\\", " ").split()), wanted


def test_rows_changed_counts_only_the_rows_a_conditional_update_matched(
    app: Flask, db: Session
) -> None:
    user = db.scalars(select(User).order_by(User.id)).first()
    assert user is not None
    name = user.display_name
    matching = update(User).where(User.id == user.id, User.display_name == name)
    assert rows_changed(db, matching.values(display_name=name + " (renamed)")) == 1
    # The condition no longer holds: a second writer with the same view changes nothing.
    assert rows_changed(db, matching.values(display_name=name + " (again)")) == 0
    db.rollback()


class _NameForm(Form):
    name = StringField("Name")


def test_add_error_works_before_and_after_validation(app: Flask) -> None:
    with app.test_request_context("/", method="POST", data={"name": "x"}):
        form = _NameForm(meta={"csrf": False})
        add_error(form.name, "Before validation, errors is a tuple.")
        assert list(form.name.errors) == ["Before validation, errors is a tuple."]
        form.validate()
        add_error(form.name, "First.")
        add_error(form.name, "Second.")
        assert list(form.name.errors) == ["First.", "Second."]
        assert form.errors == {"name": ["First.", "Second."]}
