"""Passwords and token secrets: hashing, constant-time checks, generation.

Passwords are hashed with argon2id (argon2-cffi, its recommended parameters). Token secrets
are long random strings, so a plain SHA-256 of them is enough and is fast to check; they are
compared with `hmac.compare_digest`. A sign-in for an account that does not exist still
verifies a password against a dummy hash, so it costs the same time as one that does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (no such user) it spends the same time and
    answers False."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_public_id() -> str:
    return secrets.token_hex(8)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret_hash: str | None, secret: str) -> bool:
    return hmac.compare_digest(secret_hash or "0" * 64, hash_secret(secret)) and bool(secret_hash)


def generate_password() -> str:
    return secrets.token_urlsafe(18)
