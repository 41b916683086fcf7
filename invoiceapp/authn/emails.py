"""Email addresses people type when they sign up or change address (email-validator)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from wtforms import Field, Form
from wtforms.validators import ValidationError

MAX_EMAIL_LENGTH = 254


def normalise_new_email(raw: str) -> str:
    """The one spelling an address is stored under; ValueError with a readable reason.

    Deliverability (DNS) is not checked: the verification mail proves the address.
    The whole address is lower-cased, so uniqueness is case-insensitive.
    """
    text = (raw or "").strip()
    if len(text) > MAX_EMAIL_LENGTH:
        raise ValueError(f"Use an email address of at most {MAX_EMAIL_LENGTH} characters.")
    try:
        # test_environment admits the reserved ".test" domain (RFC 2606), which the demo
        # accounts and the contract's scripted checks use; no real mail goes there.
        result = validate_email(text, check_deliverability=False, test_environment=True)
    except EmailNotValidError as error:
        raise ValueError(f"Enter a valid email address. {error}") from None
    return result.normalized.lower()


def valid_new_email(_form: Form, field: Field) -> None:
    """WTForms validator: checks the address and stores its normal form in ``field.data``."""
    try:
        field.data = normalise_new_email(field.data or "")
    except ValueError as error:
        raise ValidationError(str(error)) from None
