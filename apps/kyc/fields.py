"""Encryption at rest for personal identifiers (tax ids) and identity documents.

``EncryptedTextField`` stores ``MultiFernet`` tokens built from ``settings.FIELD_ENCRYPTION_KEYS`` (url-safe base64
Fernet keys, newest first): the first key encrypts, every key decrypts, so keys rotate by prepending a new one and
re-saving rows (``MultiFernet.rotate``). Keys are read when used, never at import time.

Invariants:
- The database column never holds plaintext; a value that fails to decrypt raises, it is never returned raw.
- Plaintext leaves this module only through the model attribute; everything shown to people goes through
  ``mask_tax_id`` (API, admin, logs, ``__str__``).
- Identity document files are stored as ``encrypt_bytes`` tokens (same keys); ``decrypt_bytes`` is the only way
  back, used by ``apps.kyc.selectors.kyc_document_content`` for compliance staff.
- Equality lookups cannot work on ciphertext (Fernet is randomized): use ``identifier_digest`` for matching.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


def _fernet() -> MultiFernet:
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        raise RuntimeError("settings.FIELD_ENCRYPTION_KEYS is empty")
    return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])


def encrypt_text(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode("ascii")


def decrypt_text(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except InvalidToken as exc:
        raise ValueError("encrypted field could not be decrypted with the configured keys") from exc


def encrypt_bytes(data: bytes) -> bytes:
    """A Fernet token (url-safe base64 ASCII) of ``data``, under the newest key."""
    return _fernet().encrypt(data)


def decrypt_bytes(token: bytes) -> bytes:
    try:
        return _fernet().decrypt(token)
    except InvalidToken as exc:
        raise ValueError("encrypted content could not be decrypted with the configured keys") from exc


def identifier_digest(value: str) -> str:
    """A keyed, deterministic digest of an identifier (for "same person" matching without the plaintext)."""
    canonical = "".join(ch for ch in value if ch.isalnum()).upper()
    key = hashlib.sha256(("tax-id-digest:" + str(settings.FIELD_ENCRYPTION_KEYS[-1])).encode()).digest()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def mask_tax_id(value: str | None) -> str:
    """``123-45-6789`` → ``***-**-6789``; anything shorter than 5 characters is fully masked."""
    if not value:
        return ""
    digits = [ch for ch in value if ch.isalnum()]
    if len(digits) < 5:
        return "*" * len(digits)
    visible = "".join(digits[-4:])
    if len(digits) == 9 and value.replace("-", "").isdigit():
        return f"***-**-{visible}"
    return "*" * (len(digits) - 4) + visible


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A text column holding a Fernet token; the Python value is the plaintext ``str`` (or ``None``)."""

    description = "Text encrypted at rest with MultiFernet"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return None if value is None else ""
        return decrypt_text(str(value))

    def to_python(self, value: Any) -> str | None:
        return value if value is None else str(value)

    def get_prep_value(self, value: Any) -> str | None:
        prepared = super().get_prep_value(value)
        if prepared is None or prepared == "":
            return None if prepared is None else ""
        return encrypt_text(str(prepared))

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name not in {"isnull"}:
            raise TypeError(f"EncryptedTextField supports only isnull lookups, not {lookup_name!r}")
        return super().get_lookup(lookup_name)
