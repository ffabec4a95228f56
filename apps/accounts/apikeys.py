"""Key material for API keys: generation and the keyed hash that is checked on every request.

The secret is 40 random characters; the stored ``secret_hash`` is HMAC-SHA256(pepper, key_id + ":" + secret),
hex. A fast keyed hash is right here (Argon2 would cost every API call): the secret has ~238 bits of entropy,
so offline guessing is hopeless, and the pepper lives outside the database (``ACCOUNTS_API_KEY_PEPPER``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from django.conf import settings

KEY_ID_PREFIX = "AK"
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits


def key_id_generate() -> str:
    return KEY_ID_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(18))


def secret_generate() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


def secret_hash(key_id: str, secret: str) -> str:
    pepper = str(settings.ACCOUNTS_API_KEY_PEPPER).encode()
    return hmac.new(pepper, f"{key_id}:{secret}".encode(), hashlib.sha256).hexdigest()


def secret_matches(key_id: str, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(key_id, secret), stored_hash)
