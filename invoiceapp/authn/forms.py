"""Forms for proving identity. The email is only a claim until the password verifies."""

from __future__ import annotations

from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from ..forms import Form
from .passwords import MAX_PASSWORD_LENGTH


def normalise_email(value: str | None) -> str:
    """One spelling per address, so the unique constraint is case-insensitive."""
    return (value or "").strip().lower()


def _no_control_characters(_form: Form, field: StringField) -> None:
    # No address contains them, and PostgreSQL cannot even compare text holding NUL.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in field.data or ""):
        raise ValidationError("Email addresses cannot contain control characters.")


def current_password(**options: object) -> PasswordField:
    """The account's password, as typed to prove it (sign-in, step-up)."""
    return PasswordField(
        "Password",
        validators=[DataRequired("Enter your password."), Length(max=MAX_PASSWORD_LENGTH)],
        **options,  # type: ignore[arg-type]
    )


class SignInForm(Form):
    email = StringField(
        "Email",
        filters=[normalise_email],
        validators=[
            DataRequired("Enter your email address."),
            Length(max=320),
            _no_control_characters,
        ],
        render_kw={"autocomplete": "username", "type": "email", "autofocus": True},
    )
    password = current_password(render_kw={"autocomplete": "current-password"})
    remember = BooleanField("Keep me signed in on this device")
    next = HiddenField()


class ReauthenticateForm(Form):
    password = current_password(render_kw={"autocomplete": "current-password", "autofocus": True})
    next = HiddenField()


class EmptyForm(Form):
    """Only a CSRF token: for one-button posts such as sign-out and delete."""
