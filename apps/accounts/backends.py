"""The password authentication backend: Django's ModelBackend behind the brute-force guard.

Every password check (the ``/v1/auth/login`` API and the admin login form) goes through here, so both share the
per-account and per-IP counters. ModelBackend already hashes the given password for unknown users, so an unknown
email costs what a wrong password costs. While locked, authentication fails for every password; so it does
while the counters are unreachable (fail closed).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from apps.accounts import bruteforce
from apps.accounts.audit import client_ip


class GuardedModelBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get("email")
        ip = (client_ip(request) or None) if request is not None else None
        try:
            bruteforce.attempt_check(path=bruteforce.PATH_PASSWORD, account=username, ip=ip)
        except bruteforce.LockedOut:
            # PermissionDenied stops django.contrib.auth.authenticate() from trying other backends.
            raise PermissionDenied(bruteforce.LOCKED_MESSAGE) from None
        except bruteforce.GuardUnavailable:
            # Fail closed without counters (see apps.accounts.bruteforce); the admin form shows a failed login.
            raise PermissionDenied(bruteforce.UNAVAILABLE_MESSAGE) from None
        user = super().authenticate(request, username=username, password=password, **kwargs)
        try:
            if user is None:
                bruteforce.attempt_failed(path=bruteforce.PATH_PASSWORD, account=username, ip=ip)
            else:
                bruteforce.attempt_succeeded(path=bruteforce.PATH_PASSWORD, account=username)
        except bruteforce.GuardUnavailable:
            raise PermissionDenied(bruteforce.UNAVAILABLE_MESSAGE) from None
        return user
