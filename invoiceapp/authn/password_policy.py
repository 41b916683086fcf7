"""Which new passwords are accepted (NIST SP 800-63B rev. 4, OWASP authentication cheat sheet).

Length is what makes a password hard to guess, so the rules are: long enough, not absurdly
long, not easy to guess (zxcvbn), and not built from the user's own email or name.
There are no composition rules ("one digit, one symbol"): they make passwords harder to
remember and barely harder to guess. Any Unicode is allowed, spaces and emoji included.

Only new passwords are checked here (sign-up, reset, change). Signing in never is: a
password chosen under older rules still signs in.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import Field
from wtforms.validators import ValidationError
from zxcvbn import zxcvbn
from zxcvbn.matching import L33T_TABLE, enumerate_l33t_subs, relevant_l33t_subtable

# zxcvbn's time grows faster than linearly with length (0.3 to 0.7 s for 256 ordinary
# characters), and a strong head cannot be made weak by its tail: it scores the head only.
_ZXCVBN_MAX_INPUT = 100
# It also tries every reading of look-alike symbols ("@" as a, "1" as i or l, ...) over the
# whole input, and the readings multiply with each different symbol: 100 of them took over
# 10 s here (dwolfhub/zxcvbn-python#70; zxcvbn 4.5's own 72-character limit still allows
# 4 s). So the head is shortened until readings x length² stays under this budget, which
# keeps the worst case near 0.2 s. Passwords this full of symbols are strong anyway.
_ZXCVBN_BUDGET = 200_000
_ZXCVBN_MIN_INPUT = 16
_LOOKALIKES = frozenset(symbol for symbols in L33T_TABLE.values() for symbol in symbols)
# zxcvbn keeps the user inputs in a module-level dict for the duration of a call, so two
# threads checking two users' passwords at once could see each other's inputs.
_zxcvbn_lock = threading.Lock()

_NAME_WORD = re.compile(r"[^\W\d_]{3,}")  # runs of 3+ letters, in any script
_MIN_LOCAL_PART = 4  # shorter local parts ("ada") match too many innocent passwords


def normalise_password(password: str) -> str:
    """NFKC, so the same password typed on another keyboard or device still matches.

    NIST SP 800-63B asks for one normalisation before hashing and before verifying;
    fullwidth "ｐａｓｓ" and "pass", or a precomposed "é" and "e" + accent, become one.
    """
    return unicodedata.normalize("NFKC", password)


def _fold(text: str) -> str:
    return normalise_password(text).casefold()


def _contains_email(folded_password: str, email: str) -> bool:
    address = _fold(email.strip())
    if not address:
        return False
    local_part = address.rpartition("@")[0] if "@" in address else address
    if address in folded_password:
        return True
    return len(local_part) >= _MIN_LOCAL_PART and local_part in folded_password


def _contains_name(folded_password: str, name: str) -> bool:
    return any(word in folded_password for word in _NAME_WORD.findall(_fold(name)))


@lru_cache(maxsize=512)
def _readings(lookalikes: str) -> int:
    """How many look-alike readings zxcvbn will try for a password holding these symbols."""
    return len(enumerate_l33t_subs(relevant_l33t_subtable(lookalikes, L33T_TABLE)))


def _zxcvbn_input(password: str) -> str:
    """The start of ``password`` that zxcvbn can score in a fraction of a second."""
    head = password[:_ZXCVBN_MAX_INPUT]
    while len(head) > _ZXCVBN_MIN_INPUT:
        lookalikes = "".join(sorted(_LOOKALIKES.intersection(head)))
        if _readings(lookalikes) * len(head) ** 2 <= _ZXCVBN_BUDGET:
            break
        head = head[: len(head) * 3 // 4]
    return head


def _strength(password: str, email: str, name: str) -> Mapping[str, Any]:
    head = _zxcvbn_input(password)
    with _zxcvbn_lock:
        # max_length: zxcvbn 4.5 refuses more than 72 characters unless told otherwise.
        return zxcvbn(head, user_inputs=[email, name, "invoiceapp"], max_length=len(head))


def _too_easy_message(feedback: dict[str, Any]) -> str:
    warning = (feedback.get("warning") or "").strip()
    if warning:
        return f"This password is too easy to guess: {warning[0].lower()}{warning[1:]}"
    suggestions = feedback.get("suggestions") or []
    hint = f" {suggestions[0]}" if suggestions else " Try a few more uncommon words."
    return "This password is too easy to guess." + hint


def password_problems(password: str, *, email: str = "", name: str = "") -> list[str]:
    """Every reason ``password`` may not be used as a new password; empty when it is fine.

    Limits come from the app's configuration (PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_STRENGTH), so an app context is needed.
    """
    config = current_app.config
    min_length = config["PASSWORD_MIN_LENGTH"]
    max_length = config["PASSWORD_MAX_LENGTH"]
    normalised = normalise_password(password)
    problems: list[str] = []

    if any(unicodedata.category(char) == "Cc" for char in normalised):
        problems.append("Passwords cannot contain control characters such as tabs or line breaks.")
    # Long passwords are refused, never cut short: a silently truncated password is not
    # the one the user chose. The typed length counts too, because the sign-in form
    # limits what is typed, and normalising can make a password shorter.
    length = len(normalised)
    if length > max_length or len(password) > max_length:
        problems.append(
            f"Use at most {max_length} characters (this one has {max(length, len(password))}). "
            "Nothing is cut off, so please pick a shorter passphrase."
        )
    elif length < min_length:
        problems.append(
            f"Use at least {min_length} characters. "
            "Longer passphrases of several words are easy to remember."
        )

    folded = normalised.casefold()
    if _contains_email(folded, email):
        problems.append("Leave your email address out of your password: it is easy to guess.")
    if _contains_name(folded, name):
        problems.append("Leave your name out of your password: it is easy to guess.")

    # Strength is only worth measuring, and only worth a message, once the rest is fine.
    if not problems:
        result = _strength(normalised, email, name)
        if result["score"] < config["PASSWORD_MIN_STRENGTH"]:
            problems.append(_too_easy_message(result["feedback"]))
    return problems


class StrongPassword:
    """WTForms validator: the field must be acceptable as a new password.

    The user's email and name come from ``form.user_email`` / ``form.user_name`` when the
    view set them (change password: the user is known), else from the form's own fields
    named ``email_field`` / ``name_field`` (sign-up). Pass None to skip a field.
    """

    def __init__(self, email_field: str | None = "email", name_field: str | None = "name") -> None:
        self.email_field = email_field
        self.name_field = name_field

    @staticmethod
    def _other_value(form: FlaskForm, attribute: str, field_name: str | None) -> str:
        known = getattr(form, attribute, None)
        if known is not None:
            return str(known)
        if field_name and field_name in form:
            return str(form[field_name].data or "")
        return ""

    def __call__(self, form: FlaskForm, field: Field) -> None:
        problems = password_problems(
            field.data or "",
            email=self._other_value(form, "user_email", self.email_field),
            name=self._other_value(form, "user_name", self.name_field),
        )
        if problems:
            raise ValidationError(" ".join(problems))
