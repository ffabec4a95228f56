"""Scope and second-factor checks for the API.

- ``HasScope("read"|"trade"|"transfer")``: an API key must carry the scope; a session user has every scope, but
  only once their session is OTP-verified if they have enrolled a device (2FA, when enabled, is not optional).
- ``OtpVerifiedIfEnrolled``: the session half of that rule alone (the default permission class uses it too).
Object-level rule (in selectors, not here): a customer reaches only their own objects; any other id is a 404.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django_otp import user_has_device
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.accounts.models import ApiKey

SCOPES: frozenset[str] = frozenset(ApiKey.Scope.values)
OTP_REQUIRED_MESSAGE = "A verified second factor is required: POST /v1/auth/otp/verify."


def session_otp_satisfied(request: Request) -> bool:
    """True unless the request is a session login of a user with a confirmed OTP device not yet verified."""
    if isinstance(request.auth, ApiKey):
        return True
    user: Any = request.user
    if not user or not user.is_authenticated:
        return True
    is_verified = getattr(user, "is_verified", None)
    if is_verified is not None and is_verified():
        return True
    return not user_has_device(user, confirmed=True)


class OtpVerifiedIfEnrolled(BasePermission):
    message = OTP_REQUIRED_MESSAGE

    def has_permission(self, request: Request, view: Any) -> bool:
        return session_otp_satisfied(request)


class _ScopePermission(BasePermission):
    scope: str = ""
    message = "This API key lacks the required scope."

    def has_permission(self, request: Request, view: Any) -> bool:
        user: Any = request.user
        if not user or not user.is_authenticated:
            return False
        if isinstance(request.auth, ApiKey):
            return self.scope in request.auth.scopes
        if not session_otp_satisfied(request):
            self.message = OTP_REQUIRED_MESSAGE
            return False
        return True


@cache
def HasScope(scope: str) -> type[BasePermission]:  # reads as a class at the use site
    """A permission class requiring ``scope``: ``permission_classes = [HasScope("trade")]``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return type(f"HasScope_{scope}", (_ScopePermission,), {"scope": scope})
