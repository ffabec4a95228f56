"""API-key authentication (``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``), filled in by the accounts service."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        return None
