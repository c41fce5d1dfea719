"""Password hashes and signed access tokens (the template uses passlib and PyJWT; the standard
library does the same work here)."""

import base64
import hashlib
import hmac
import json
import os
import time

from . import config

ITERATIONS = 200_000  # PBKDF2-SHA256: slow on purpose, as a password hash must be


def get_password_hash(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    return f"{salt.hex()}${digest.hex()}"


def verify_password(password: str, hashed: str) -> bool:
    salt, digest = hashed.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), ITERATIONS)
    return hmac.compare_digest(candidate.hex(), digest)


def _sign(payload: bytes) -> str:
    return hmac.new(config.SECRET_KEY.encode(), payload, hashlib.sha256).hexdigest()


def create_access_token(subject: int) -> str:
    expires = int(time.time()) + config.ACCESS_TOKEN_EXPIRE_MINUTES * 60
    payload = base64.urlsafe_b64encode(json.dumps({"sub": subject, "exp": expires}).encode())
    return f"{payload.decode()}.{_sign(payload)}"


def subject_of(token: str) -> int | None:
    payload, _, signature = token.partition(".")
    if not hmac.compare_digest(_sign(payload.encode()), signature):
        return None
    claims = json.loads(base64.urlsafe_b64decode(payload))
    return claims["sub"] if claims["exp"] > time.time() else None
