"""Partner passwords: argon2id hashes (argon2-cffi), made by `dropd passwd`, checked at login."""

import functools

import argon2

_HASHER = argon2.PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return hash_password("dropd-unknown-user")


def verify_unknown_user(password: str) -> None:
    """As slow as a real check, so unknown user names do not answer faster."""
    verify_password(_dummy_hash(), password)
