"""Whether a user has "something you have" set up: a TOTP app or a passkey."""

from __future__ import annotations

from sqlalchemy import select

from ..db import get_db
from ..models import Passkey, User


def has_second_factor(user: User) -> bool:
    if user.totp_enabled_at is not None:
        return True
    return (
        get_db().scalar(select(Passkey.id).where(Passkey.user_id == user.id).limit(1)) is not None
    )
