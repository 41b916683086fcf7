"""Passwords are kept only as Argon2id hashes (OWASP password storage cheat sheet)."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import Flask, current_app

from .password_policy import normalise_password

# OWASP's minimum Argon2id settings, as equally strong pairs of (memory in KiB, passes).
OWASP_MINIMUMS = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))


def _profile(profile_name: str) -> profiles.Parameters:
    profile = getattr(profiles, profile_name, None)
    if not isinstance(profile, profiles.Parameters):
        raise RuntimeError(f"unknown PASSWORD_HASH_PROFILE {profile_name!r} (see argon2.profiles)")
    return profile


def profile_too_weak(profile_name: str, *, testing: bool) -> str | None:
    """Why this hashing is too cheap for real passwords, or None; the tests alone may use
    CHEAPEST. It says why rather than raising, so config.py (which imports this module)
    decides how a bad setting stops the app."""
    profile = _profile(profile_name)
    if testing:
        return None
    if any(profile.memory_cost >= m and profile.time_cost >= t for m, t in OWASP_MINIMUMS):
        return None
    return (
        f"PASSWORD_HASH_PROFILE {profile_name!r} is below OWASP's Argon2id minimum "
        "(19 MiB and 2 passes, or an equivalent pair); it is allowed only in the tests. "
        "Use RFC_9106_LOW_MEMORY (the default)."
    )


@lru_cache(maxsize=8)
def _hasher_for(profile_name: str) -> PasswordHasher:
    return PasswordHasher.from_parameters(_profile(profile_name))


def hasher() -> PasswordHasher:
    """The hasher for the configured argon2-cffi profile (argon2id in every profile)."""
    return _hasher_for(current_app.config["PASSWORD_HASH_PROFILE"])


@lru_cache(maxsize=8)
def _dummy_hash_for(profile_name: str) -> str:
    return _hasher_for(profile_name).hash("not a password anybody has")


def init_passwords(app: Flask) -> None:
    """Make the dummy hash at start-up, once per process. Made lazily, it made the first
    sign-in with an unknown email in each worker about twice as slow as the rest (one hash
    and one verification): a timing difference that says "no such account"."""
    _dummy_hash_for(app.config["PASSWORD_HASH_PROFILE"])


def hash_password(password: str) -> str:
    # NFKC first, so "ｐａｓｓ" typed on one keyboard and "pass" on another are one password.
    return hasher().hash(normalise_password(password))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True only for the right password. Never raises for a bad stored hash.

    An unknown account (``stored_hash is None``) still pays for one verification,
    so the response time does not tell which emails have accounts.
    """
    password = normalise_password(password)
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
