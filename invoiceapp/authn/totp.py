"""TOTP (RFC 6238): "something you have", proven by a code from an authenticator app.

The app and the server share a random secret; both derive a six-digit code from it and
the current 30-second time step. The secret is the factor itself, so it is kept
encrypted at rest (AES-GCM, with a key derived from TOTP_ENCRYPTION_KEY or SECRET_KEY)
and bound to its user: a ciphertext copied into another user's row does not decrypt.

A code is accepted one step early or late (clock drift) and once only: the accepted
step is stored, and a compare-and-set refuses any step at or before it, so a code seen
over someone's shoulder cannot be replayed, not even by two requests racing.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
from datetime import datetime

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from pyotp.exceptions import OTPVerificationError
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from ..db import rows_changed, utcnow
from ..models import User

ISSUER = "InvoiceApp"
# One step either side of now: phones whose clocks drift by up to 30 seconds still work.
VALID_WINDOW = 1
CODE = re.compile(r"\d{6}")
_CIPHERTEXT_VERSION = "v1"


class SecretUnreadable(Exception):
    """The stored secret does not decrypt: the key changed (see TOTP_ENCRYPTION_KEY)."""


def second_factor_key_material() -> bytes:
    """The root of the keys that protect second factors at rest.

    TOTP_ENCRYPTION_KEY when set, so SECRET_KEY can be rotated (signing everybody out)
    without making every enrolled authenticator and recovery code useless.
    """
    key = current_app.config.get("TOTP_ENCRYPTION_KEY") or current_app.config["SECRET_KEY"]
    return key.encode() if isinstance(key, str) else bytes(key)


def derive_key(purpose: bytes) -> bytes:
    """A 256-bit key for one purpose (HKDF, RFC 5869): one root, unrelated keys."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        second_factor_key_material()
    )


def new_secret() -> str:
    """160 random bits in base32, the length RFC 4226 recommends."""
    return pyotp.random_base32(32)


def _associated_data(user_id: int) -> bytes:
    return f"invoiceapp totp secret of user {user_id}".encode()


def encrypt_secret(secret: str, user_id: int) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(derive_key(b"invoiceapp totp secret v1")).encrypt(
        nonce, secret.encode(), _associated_data(user_id)
    )
    return f"{_CIPHERTEXT_VERSION}:" + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt_secret(stored: str, user_id: int) -> str:
    version, _, payload = stored.partition(":")
    if version != _CIPHERTEXT_VERSION:
        raise SecretUnreadable("unknown ciphertext version")
    try:
        raw = base64.urlsafe_b64decode(payload.encode())
        plain = AESGCM(derive_key(b"invoiceapp totp secret v1")).decrypt(
            raw[:12], raw[12:], _associated_data(user_id)
        )
    except (InvalidTag, ValueError) as error:
        raise SecretUnreadable("the TOTP secret does not decrypt with this key") from error
    return plain.decode()


def secret_of(user: User) -> str | None:
    if user.totp_secret_encrypted is None:
        return None
    return decrypt_secret(user.totp_secret_encrypted, user.id)


def start_enrolment(user: User) -> str:
    """Give the user a new secret, not yet enabled. The caller commits."""
    secret = new_secret()
    user.totp_secret_encrypted = encrypt_secret(secret, user.id)
    user.totp_enabled_at = None
    user.totp_last_step = None
    user.totp_added_with = None  # the next app records its own proof
    return secret


def disable(user: User) -> None:
    """Forget the secret: the authenticator app's codes mean nothing from now on."""
    user.totp_secret_encrypted = None
    user.totp_enabled_at = None
    user.totp_last_step = None


def provisioning_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code (Key URI Format)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_code_data_uri(uri: str) -> str:
    """The URI as a QR code: an SVG rendered on the server, as a data: URI for <img>.

    No script draws it and no third party sees the secret; segno's SVG carries no
    inline style, and the CSP allows ``img-src data:``.
    """
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=5, border=4, xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def normalise_code(value: str | None) -> str:
    """People type "123 456"; authenticator apps show it that way."""
    return "".join((value or "").split())


def matching_step(secret: str, code: str, now: datetime | None = None) -> int | None:
    """The time step ``code`` belongs to, within one step of now; None if it matches none."""
    code = normalise_code(code)
    if not CODE.fullmatch(code):
        return None
    try:
        return pyotp.TOTP(secret).verify_and_get_timecode(
            code, for_time=now or utcnow(), valid_window=VALID_WINDOW
        )
    except OTPVerificationError:
        return None


def claim_step(db: Session, user: User, step: int) -> bool:
    """Record ``step`` as used, only if it is later than every step used before.

    One UPDATE … WHERE: of two requests carrying the same code, one wins.
    """
    moved = rows_changed(
        db,
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False),
    )
    if moved != 1:
        return False
    user.totp_last_step = step
    return True


def verify_code(db: Session, user: User, code: str, now: datetime | None = None) -> bool:
    """True once for a right, unused code of the user's secret (enrolled or being enrolled).

    The caller commits (the used step is part of its transaction).
    """
    try:
        secret = secret_of(user)
    except SecretUnreadable:
        current_app.logger.warning("TOTP secret of a user does not decrypt; was the key changed?")
        return False
    if secret is None:
        return False
    step = matching_step(secret, code, now)
    return step is not None and claim_step(db, user, step)
