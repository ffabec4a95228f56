"""API-key authentication, Alpaca style: headers ``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY``.

On success ``request.user`` is the key's owner and ``request.auth`` the ``ApiKey`` (its ``scopes`` are checked by
``apps.accounts.permissions.HasScope``). Every failure (unknown key, wrong secret, revoked, expired, inactive
owner) gets the same message after the same work, and counts towards the brute-force limits of the key id and
the client IP; a locked key id or IP answers 429 with ``Retry-After``.
With Redis down the counters fail OPEN on this path only (``apps.accounts.bruteforce``): a valid key still
authenticates and an invalid one still gets 401, so trading bots survive a Redis blip.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import exceptions as drf_exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps.accounts import apikeys, bruteforce, selectors
from apps.accounts.audit import client_ip
from apps.accounts.models import ApiKey

KEY_HEADER = "APCA-API-KEY-ID"
SECRET_HEADER = "APCA-API-SECRET-KEY"  # noqa: S105 - a header name
INVALID_MESSAGE = "Invalid API key credentials."
# last_used_at is a hint for humans; writing it on every request would turn reads into writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        key_id = request.headers.get(KEY_HEADER)
        secret = request.headers.get(SECRET_HEADER)
        if key_id is None and secret is None:
            return None  # not an API-key request; the next authenticator may try
        ip = client_ip(request) or None
        bruteforce.drf_attempt_check(path=bruteforce.PATH_API_KEY, account=key_id, ip=ip)
        api_key = self._valid_key(key_id or "", secret or "")
        if api_key is None:
            bruteforce.attempt_failed(path=bruteforce.PATH_API_KEY, account=key_id, ip=ip)
            raise drf_exceptions.AuthenticationFailed(INVALID_MESSAGE)
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
        return api_key.owner, api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes unauthenticated requests 401 (not 403), as Alpaca answers.
        return KEY_HEADER

    @staticmethod
    def _valid_key(key_id: str, secret: str) -> ApiKey | None:
        api_key = None
        if 0 < len(key_id) <= 32:
            # The owner and their brokerage account come in the same query: nearly every API-key request needs it.
            api_key = selectors.api_key_with_owner(key_id)
        # Hash even when the key is unknown so a miss costs what a hit costs.
        stored = api_key.secret_hash if api_key is not None else apikeys.secret_hash("unknown", "unknown")
        matches = apikeys.secret_matches(key_id, secret, stored)
        if api_key is None or not matches:
            return None
        if api_key.revoked_at is not None:
            return None
        if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
            return None
        if not api_key.owner.is_active:
            return None
        return api_key


# OpenAPI (drf-spectacular): describe the key pair, so the schema states which operations need it.
from drf_spectacular.extensions import OpenApiAuthenticationExtension  # noqa: E402


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "apps.accounts.authentication.ApiKeyAuthentication"
    name = ["ApiKeyId", "ApiSecretKey"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "apiKey", "in": "header", "name": KEY_HEADER},
            {"type": "apiKey", "in": "header", "name": SECRET_HEADER},
        ]
