"""Forms for proving identity. The email is only a claim until the password verifies."""

from __future__ import annotations

from flask import current_app
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, ValidationError

from ..forms import Form
from .emails import normalise_new_email
from .password_policy import StrongPassword


def normalise_email(value: str | None) -> str:
    """The address as sign-up stored it (normalise_new_email: Unicode normal form, lower
    case), so whoever signed up as "Zoë@Example.test" signs in however they type it.

    A claim is never refused here: what is not a valid address is only trimmed and
    lower-cased, and then simply matches no account.
    """
    text = (value or "").strip()
    try:
        return normalise_new_email(text)
    except ValueError:
        return text.lower()


def _no_control_characters(_form: Form, field: StringField) -> None:
    # No address contains them, and PostgreSQL cannot even compare text holding NUL.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in field.data or ""):
        raise ValidationError("Email addresses cannot contain control characters.")


class WithinPasswordMaxLength:
    """``Length(max=PASSWORD_MAX_LENGTH)``, read from the configuration when a form is built.

    New passwords obey the same setting (password_policy.py): were this a constant, an
    operator who raised the setting would let people choose passwords they cannot type in.
    """

    @property
    def field_flags(self) -> dict[str, int]:
        return {"maxlength": current_app.config["PASSWORD_MAX_LENGTH"]}

    def __call__(self, form: Form, field: PasswordField) -> None:
        Length(max=current_app.config["PASSWORD_MAX_LENGTH"])(form, field)


def current_password(**options: object) -> PasswordField:
    """The account's password, as typed to prove it (sign-in, step-up)."""
    return PasswordField(
        "Password",
        validators=[DataRequired("Enter your password."), WithinPasswordMaxLength()],
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


class CodeForm(Form):
    """The second step: a six-digit code from the app, or a recovery code (CONTRACT §8)."""

    code = StringField(
        "Authentication code",
        validators=[DataRequired("Enter the code from your authenticator app."), Length(max=32)],
        render_kw={
            "autocomplete": "one-time-code",
            "autocapitalize": "none",
            "spellcheck": "false",
            "autofocus": True,
        },
    )
    next = HiddenField()


class PasswordAndCodeForm(CodeForm):
    """Step-up with the second factor: the password *and* a code, as the proof's name
    ("password+totp") says. A code alone is only something you have; with a stolen cookie
    and a phished code it would unlock every sensitive change."""

    # Its own id: the password-only form may be on the same page.
    password = current_password(
        id="code-password", render_kw={"autocomplete": "current-password", "autofocus": True}
    )


class ResetPasswordForm(Form):
    # The account is known from the token; StrongPassword reads these (the form has no
    # email or name fields of its own).
    user_email: str | None = None
    user_name: str | None = None

    new_password = PasswordField(
        "New password",
        validators=[
            InputRequired("Choose a new password."),
            StrongPassword(email_field=None, name_field=None),
        ],
        render_kw={"autocomplete": "new-password", "autofocus": True},
    )
    confirm_password = PasswordField(
        "Type the new password again",
        validators=[
            InputRequired("Type the new password again."),
            EqualTo("new_password", "The two passwords do not match."),
        ],
        render_kw={"autocomplete": "new-password"},
    )
