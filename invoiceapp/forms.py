"""The base of every HTML form: it reads the posted form fields and nothing else.

Flask-WTF would otherwise fill a form from a JSON body (or uploaded files), and
WTForms fields expect strings: ``{"customer": 1}`` became a 500. Pages take form
posts only (invoiceapp.gates refuses other bodies with 415); this is the second line.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_wtf import FlaskForm

_SUBMIT_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class Form(FlaskForm):
    class Meta:
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if formdata is not None and hasattr(formdata, "getlist"):
                return formdata  # given explicitly (tests, re-rendering)
            if formdata is None:
                return None
            # Flask-WTF's "_Auto": the request's form fields, only when one was submitted.
            return request.form if request.method in _SUBMIT_METHODS else None
