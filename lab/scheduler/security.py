"""HS256 access tokens (the real backend uses python-jose; the token format is the same)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from .errors import InvalidTokenError, JWTError, triggered


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: str, secret: str) -> str:
    return _b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())


def create_access_token(subject: str, secret: str, minutes: int = 30) -> str:
    if triggered("authentication"):
        raise JWTError("Unable to encode token: Expecting a string- or bytes-formatted key.")
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": subject, "exp": int(time.time()) + minutes * 60}).encode())
    return f"{header}.{payload}.{_sign(header + '.' + payload, secret)}"


def decode_access_token(token: str, secret: str) -> dict:
    if triggered("authentication"):
        raise JWTError("Signature verification failed.")
    try:
        header, payload, signature = token.split(".")
    except ValueError:
        raise InvalidTokenError("Not enough segments") from None
    if not hmac.compare_digest(signature, _sign(header + "." + payload, secret)):
        raise InvalidTokenError("Signature verification failed.")
    claims = json.loads(_unb64(payload))
    if claims.get("exp", 0) < time.time():
        raise InvalidTokenError("Signature has expired.")
    return claims
