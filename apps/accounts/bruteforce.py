"""Brute-force protection for every credential path (password login, admin login, API keys, OTP, reset tokens).

Counters live in the cache (Redis): per path, one per account identifier and one per client IP, each in a
fixed window. Reaching a limit sets a lock for the cool-off period; while locked, *every* attempt on that
account (or from that IP) is refused, right credentials included, so a lock-out cannot be probed.
Account identifiers are hashed before they become keys (no emails in Redis).
Settings: ``ACCOUNTS_BRUTE_FORCE`` = {ACCOUNT_LIMIT, IP_LIMIT, WINDOW_SECONDS, LOCKOUT_SECONDS}.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions as drf_exceptions

PATH_PASSWORD = "password"  # noqa: S105 - a counter namespace, not a secret
PATH_API_KEY = "apikey"
PATH_OTP = "otp"
PATH_RESET = "reset"
PATH_REGISTER = "register"

LOCKED_MESSAGE = "Too many failed attempts; try again later."


@dataclass(frozen=True)
class Limits:
    account_limit: int
    ip_limit: int
    window_seconds: int
    lockout_seconds: int


def limits() -> Limits:
    conf = getattr(settings, "ACCOUNTS_BRUTE_FORCE", {})
    return Limits(
        account_limit=int(conf.get("ACCOUNT_LIMIT", 5)),
        ip_limit=int(conf.get("IP_LIMIT", 50)),
        window_seconds=int(conf.get("WINDOW_SECONDS", 900)),
        lockout_seconds=int(conf.get("LOCKOUT_SECONDS", 900)),
    )


class LockedOut(Exception):
    """Attempts on this account or from this IP are refused for ``retry_after`` more seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(LOCKED_MESSAGE)


def _subjects(path: str, account: str | None, ip: str | None) -> list[tuple[str, int]]:
    lim = limits()
    subjects: list[tuple[str, int]] = []
    if account:
        digest = hashlib.sha256(account.strip().lower().encode()).hexdigest()[:32]
        subjects.append((f"bf:{path}:acct:{digest}", lim.account_limit))
    if ip:
        subjects.append((f"bf:{path}:ip:{ip}", lim.ip_limit))
    return subjects


def attempt_check(*, path: str, account: str | None, ip: str | None) -> None:
    """Raise ``LockedOut`` if the account or the IP is locked on this path."""
    now = time.time()
    for key, _ in _subjects(path, account, ip):
        until = cache.get(f"{key}:lock")
        if until is not None and float(until) > now:
            raise LockedOut(max(1, math.ceil(float(until) - now)))


def attempt_failed(*, path: str, account: str | None, ip: str | None) -> None:
    """Count a failure; lock the account/IP when its counter reaches the limit."""
    lim = limits()
    for key, limit in _subjects(path, account, ip):
        cache.add(key, 0, timeout=lim.window_seconds)
        try:
            count = cache.incr(key)
        except ValueError:  # the window expired between add and incr
            cache.set(key, 1, timeout=lim.window_seconds)
            count = 1
        if count >= limit:
            cache.set(f"{key}:lock", time.time() + lim.lockout_seconds, timeout=lim.lockout_seconds)
            cache.delete(key)


def attempt_succeeded(*, path: str, account: str | None) -> None:
    """A correct credential clears the account's failure count (the IP count stays: it spans accounts)."""
    for key, _ in _subjects(path, account, None):
        cache.delete(key)


def throttled(exc: LockedOut) -> drf_exceptions.Throttled:
    """The DRF form of a lock-out: the core exception handler answers 429 with ``Retry-After``."""
    return drf_exceptions.Throttled(wait=exc.retry_after, detail=LOCKED_MESSAGE)


def drf_attempt_check(*, path: str, account: str | None, ip: str | None) -> None:
    try:
        attempt_check(path=path, account=account, ip=ip)
    except LockedOut as exc:
        raise throttled(exc) from None
