"""The base of every HTML form: it reads the posted form fields and nothing else.

Flask-WTF would otherwise fill a form from a JSON body (or uploaded files), and
WTForms fields expect strings: ``{"customer": 1}`` became a 500. Pages take form
posts only (invoiceapp.gates refuses other bodies with 415); this is the second line.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from flask import request
from flask_wtf import FlaskForm
from wtforms import Field
from wtforms.validators import ValidationError

from .stale_forms import refilling, typed_values

_SUBMIT_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class Form(FlaskForm):
    class Meta:
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if formdata is not None and hasattr(formdata, "getlist"):
                return formdata  # given explicitly (tests, re-rendering)
            if refilling():
                return typed_values(form)  # a stale form's page, drawn again (stale_forms.py)
            if formdata is None:
                return None
            # Flask-WTF's "_Auto": the request's form fields, only when one was submitted.
            return request.form if request.method in _SUBMIT_METHODS else None


def strip(value: object) -> object:
    """Filter: surrounding spaces are never meant (names, amounts, slugs)."""
    return value.strip() if isinstance(value, str) else value


def no_control_characters(_form: object, field: Any) -> None:
    """Validator for names shown on pages and in mail headers: no tabs, line breaks, NUL."""
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in field.data or ""):
        raise ValidationError("Use letters, digits, spaces and punctuation only.")


def add_error(field: Field, message: str) -> None:
    """Show ``message`` under ``field``, after what its validators said.

    A view adds the errors only it can find (a wrong password, a used code). ``errors`` is
    a tuple until the form is validated and a list after; a new list works either way.
    """
    field.errors = [*field.errors, message]
