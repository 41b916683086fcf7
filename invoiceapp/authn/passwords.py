"""Passwords are kept only as Argon2id hashes (OWASP password storage cheat sheet)."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app

MAX_PASSWORD_LENGTH = 256


@lru_cache(maxsize=8)
def _hasher_for(profile_name: str) -> PasswordHasher:
    profile = getattr(profiles, profile_name, None)
    if profile is None:
        raise RuntimeError(f"unknown PASSWORD_HASH_PROFILE {profile_name!r} (see argon2.profiles)")
    return PasswordHasher.from_parameters(profile)


def hasher() -> PasswordHasher:
    """The hasher for the configured argon2-cffi profile (argon2id in every profile)."""
    return _hasher_for(current_app.config["PASSWORD_HASH_PROFILE"])


@lru_cache(maxsize=8)
def _dummy_hash_for(profile_name: str) -> str:
    return _hasher_for(profile_name).hash("not a password anybody has")


def hash_password(password: str) -> str:
    return hasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True only for the right password. Never raises for a bad stored hash.

    An unknown account (``stored_hash is None``) still pays for one verification,
    so the response time does not tell which emails have accounts.
    """
    if stored_hash is None:
        try:
            hasher().verify(_dummy_hash_for(current_app.config["PASSWORD_HASH_PROFILE"]), password)
        except VerificationError:
            pass
        return False
    try:
        return hasher().verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        # A corrupt or foreign hash in the database is a failed sign-in, not a 500.
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than the configured ones."""
    try:
        return hasher().check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True
