"""Recovery codes: ten single-use codes for the day the authenticator app is lost.

Each is ``xxxxx-xxxxx`` (lowercase letters and digits, about 52 bits of randomness),
shown once and stored only as HMAC-SHA256 under a key derived from the same root as the
TOTP encryption key. A keyed hash rather than Argon2: the codes are random, not chosen
by people, so there is no dictionary to slow down, and a lookup by hash stays one query.
A leaked table alone reveals nothing without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..db import rows_changed, utcnow
from ..models import RecoveryCode, User
from .totp import derive_key

COUNT = 10
ALPHABET = string.ascii_lowercase + string.digits
SHAPE = re.compile(r"[a-z0-9]{5}-[a-z0-9]{5}")


def new_code() -> str:
    half = lambda: "".join(secrets.choice(ALPHABET) for _ in range(5))  # noqa: E731
    return f"{half()}-{half()}"


def normalise(value: str | None) -> str | None:
    """``ABCDE-12345``, ``abcde12345`` and ``abcde 12345`` are all the same code."""
    compact = "".join(char for char in (value or "").lower() if char.isalnum())
    if len(compact) != 10:
        return None
    code = f"{compact[:5]}-{compact[5:]}"
    return code if SHAPE.fullmatch(code) else None


def _digest(code: str) -> str:
    key = derive_key(b"invoiceapp recovery codes v1")
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()


def replace_codes(db: Session, user: User) -> list[str]:
    """Ten new codes; every older one stops working. The caller commits and shows them once."""
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [new_code() for _ in range(COUNT)]
    now = utcnow()
    db.add_all(
        RecoveryCode(user_id=user.id, code_hash=_digest(code), created_at=now) for code in codes
    )
    return codes


def remove_codes(db: Session, user: User) -> None:
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def use_code(db: Session, user: User, value: str) -> bool:
    """Consume one unused code of this user. True once per code, even under a race.

    The caller commits.
    """
    code = normalise(value)
    if code is None:
        return False
    used = rows_changed(
        db,
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _digest(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False),
    )
    return used == 1


def remaining(db: Session, user: User) -> int:
    return db.execute(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ).scalar_one()
