"""Passkeys (WebAuthn): a key pair on the person's device; the server keeps the public half.

Signing in with a passkey proves possession of the device ("something you have") and,
because user verification is required, that its owner unlocked it with a PIN or a
fingerprint ("something you know / are"). That is two factors in one gesture, so a
passkey sign-in counts as a second-factor proof (``UserSession.proof == "passkey"``).
Nothing the server stores is a secret: a leaked table cannot sign anybody in.

Every ceremony starts with a random challenge kept in WebAuthnChallenge: single use,
expiring after WEBAUTHN_CHALLENGE_SECONDS, bound to the user when one is known. The
browser signs it together with the origin it is on, so a phishing site's origin never
verifies. Sign counters must go up (a cloned authenticator shows up as a counter that
goes backwards), except for authenticators that always report 0.

Passkeys are scoped to a domain name (the RP ID); IP addresses are not allowed. The demo
therefore uses RP ID ``localhost``: passkeys work at http://localhost:5000, and
``localhost`` counts as a secure context, so browsers allow WebAuthn without HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.parse_authentication_credential_json import (
    parse_authentication_credential_json,
)
from webauthn.helpers.parse_registration_credential_json import (
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..db import rows_changed, utcnow
from ..models import Passkey, User, WebAuthnChallenge
from .totp import derive_key

REGISTER = "register"
AUTHENTICATE = "authenticate"
MAX_NAME_LENGTH = 100
MAX_CREDENTIAL_JSON = 64 * 1024


class PasskeyRejected(Exception):
    """The ceremony failed. The message is for logs; people get one generic answer."""


@dataclass(frozen=True)
class Relying:
    rp_id: str
    origin: str
    name: str


def relying_party() -> Relying:
    config = current_app.config
    return Relying(config["WEBAUTHN_RP_ID"], config["WEBAUTHN_ORIGIN"], config["WEBAUTHN_RP_NAME"])


def user_handle(user: User) -> bytes:
    """The id the authenticator files the passkey under: stable, opaque, not the email
    (WebAuthn advises against personal data there) and not the row id."""
    key = derive_key(b"invoiceapp webauthn user handle v1")
    return hmac.new(key, f"user:{user.id}".encode(), hashlib.sha256).digest()


def passkeys_of(db: Session, user: User) -> list[Passkey]:
    return list(
        db.scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.created_at))
    )


def _descriptors(passkeys: list[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    descriptors = []
    for passkey in passkeys:
        transports = []
        for name in filter(None, passkey.transports.split(",")):
            try:
                transports.append(AuthenticatorTransport(name))
            except ValueError:
                continue
        descriptors.append(
            PublicKeyCredentialDescriptor(
                id=base64url_to_bytes(passkey.credential_id), transports=transports or None
            )
        )
    return descriptors


def _new_challenge(db: Session, purpose: str, user: User | None) -> bytes:
    """Store a fresh challenge; clear expired ones on the way (nothing else does)."""
    now = utcnow()
    db.execute(delete(WebAuthnChallenge).where(WebAuthnChallenge.expires_at < now))
    challenge = secrets.token_bytes(32)
    db.add(
        WebAuthnChallenge(
            challenge=bytes_to_base64url(challenge),
            purpose=purpose,
            user_id=user.id if user else None,
            created_at=now,
            expires_at=now + timedelta(seconds=current_app.config["WEBAUTHN_CHALLENGE_SECONDS"]),
        )
    )
    return challenge


def _claim_challenge(
    db: Session, client_data_json: bytes, purpose: str, user: User | None
) -> bytes:
    """Mark the challenge the browser signed as used: once, before it expires, for this
    purpose and this user (or, for a sign-in, for nobody in particular)."""
    try:
        challenge = parse_client_data_json(client_data_json).challenge
    except WebAuthnException as error:
        raise PasskeyRejected("unreadable client data") from error
    owner = WebAuthnChallenge.user_id == user.id if user else WebAuthnChallenge.user_id.is_(None)
    claimed = rows_changed(
        db,
        update(WebAuthnChallenge)
        .where(
            WebAuthnChallenge.challenge == bytes_to_base64url(challenge),
            WebAuthnChallenge.purpose == purpose,
            owner,
            WebAuthnChallenge.used_at.is_(None),
            WebAuthnChallenge.expires_at > utcnow(),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False),
    )
    if claimed != 1:
        raise PasskeyRejected("unknown, used or expired challenge")
    return challenge


def _parse_json(raw: str) -> dict[str, Any]:
    if not raw or len(raw) > MAX_CREDENTIAL_JSON:
        raise PasskeyRejected("missing or oversized credential")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as error:
        # RecursionError: a few thousand nested brackets ("[[[[…") fit in the size limit
        # and exhaust the parser's stack; that is malformed input too, not a server error.
        raise PasskeyRejected("credential is not JSON") from error
    if not isinstance(value, dict):
        raise PasskeyRejected("credential is not a JSON object")
    return value


# --- Registration ("Add a passkey") -----------------------------------------------------


def registration_options(db: Session, user: User) -> str:
    """Options for navigator.credentials.create(), as JSON. The caller commits.

    Discoverable ("resident") credentials, so the passkey alone can later name the
    account; user verification required, so it is never just "someone held the device".
    """
    rp = relying_party()
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_id=user_handle(user),
        user_name=user.email,
        user_display_name=user.display_name,
        challenge=_new_challenge(db, REGISTER, user),
        timeout=current_app.config["WEBAUTHN_CHALLENGE_SECONDS"] * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(passkeys_of(db, user)),
    )
    return options_to_json(options)


def clean_name(value: str | None) -> str:
    name = " ".join("".join(c for c in (value or "") if unicodedata.category(c)[0] != "C").split())
    return name[:MAX_NAME_LENGTH] or f"Passkey added {utcnow():%Y-%m-%d}"


def register(db: Session, user: User, credential_json: str, name: str | None) -> Passkey:
    """Verify the browser's answer and keep the public key. The caller commits."""
    raw = _parse_json(credential_json)
    try:
        credential = parse_registration_credential_json(raw)
    except WebAuthnException as error:
        raise PasskeyRejected("malformed registration") from error
    challenge = _claim_challenge(db, credential.response.client_data_json, REGISTER, user)
    rp = relying_party()
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except WebAuthnException as error:
        raise PasskeyRejected(f"registration did not verify: {error}") from error
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)) is not None:
        raise PasskeyRejected("credential already registered")
    transports = credential.response.transports or []
    passkey = Passkey(
        public_id=secrets.token_hex(8),
        user_id=user.id,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=clean_name(name),
        transports=",".join(t.value for t in transports)[:200],
        created_at=utcnow(),
    )
    db.add(passkey)
    return passkey


# --- Authentication (sign-in and re-authentication) ----------------------------------------


def authentication_options(db: Session, user: User | None = None) -> str:
    """Options for navigator.credentials.get(), as JSON. The caller commits.

    Without a user (sign-in) the list of credentials is empty: the browser offers the
    discoverable passkeys it has for this site, and the answer names the account. With a
    user (re-authentication) only their passkeys are offered, and only they can answer.
    """
    rp = relying_party()
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=_new_challenge(db, AUTHENTICATE, user),
        timeout=current_app.config["WEBAUTHN_CHALLENGE_SECONDS"] * 1000,
        allow_credentials=_descriptors(passkeys_of(db, user)) if user else [],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options)


def authenticate(db: Session, credential_json: str, user: User | None = None) -> Passkey:
    """Verify a signed challenge; returns the passkey used. The caller commits.

    ``user`` set: the passkey must be theirs (re-authentication). Otherwise any
    registered passkey names its own account (sign-in).
    """
    raw = _parse_json(credential_json)
    try:
        credential = parse_authentication_credential_json(raw)
    except WebAuthnException as error:
        raise PasskeyRejected("malformed assertion") from error
    challenge = _claim_challenge(db, credential.response.client_data_json, AUTHENTICATE, user)
    passkey = db.scalar(
        select(Passkey).where(Passkey.credential_id == bytes_to_base64url(credential.raw_id))
    )
    if passkey is None:
        raise PasskeyRejected("unknown credential (removed, or never registered here)")
    if user is not None and passkey.user_id != user.id:
        raise PasskeyRejected("another account's passkey")
    owner = db.get(User, passkey.user_id)
    assert owner is not None  # the foreign key cascades
    handle = credential.response.user_handle
    if handle is not None and not hmac.compare_digest(handle, user_handle(owner)):
        raise PasskeyRejected("user handle does not match the credential's account")
    rp = relying_party()
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            credential_public_key=passkey.public_key,
            # The library refuses a counter that does not go up, unless both are 0.
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except WebAuthnException as error:
        raise PasskeyRejected(f"assertion did not verify: {error}") from error
    # Compare-and-set: of two requests replaying one assertion, only one moves the counter.
    moved = rows_changed(
        db,
        update(Passkey)
        .where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count)
        .values(sign_count=verified.new_sign_count, last_used_at=utcnow())
        .execution_options(synchronize_session=False),
    )
    if moved != 1:
        raise PasskeyRejected("sign counter changed concurrently")
    passkey.sign_count = verified.new_sign_count
    passkey.last_used_at = utcnow()
    return passkey
