"""Brute-force protection for every credential path (password login, admin login, API keys, OTP, reset tokens).

Counters live in the cache (Redis): per path, one per account identifier and one per client IP, each in a
fixed window. Reaching a limit sets a lock for the cool-off period; while locked, *every* attempt on that
account (or from that IP) is refused, right credentials included, so a lock-out cannot be probed.
Account identifiers are hashed before they become keys (no emails in Redis).
Settings: ``ACCOUNTS_BRUTE_FORCE`` = {ACCOUNT_LIMIT, IP_LIMIT, WINDOW_SECONDS, LOCKOUT_SECONDS,
BREAKER_FAIL_MAX, BREAKER_RESET_SECONDS}.

When Redis is down. Every counter call goes through a circuit breaker (pybreaker, one per cache location, like
``apps.core.health`` and ``apps.marketdata.cache``): a Redis error or an open breaker is ``GuardUnavailable``,
never a 500 and never a hang once the breaker is open. What happens then is chosen per path:
- FAIL CLOSED for password login, admin login, OTP, password reset and sign-up: ``GuardUnavailable`` is a
  ``ServiceUnavailable`` (503, ``error = "auth_guard_unavailable"``). These paths guard human-chosen secrets
  (passwords, 6-digit codes) that are guessable at speed; answering them without a counter would hand an
  attacker an unthrottled guessing window for as long as Redis stays down (or as long as they can keep it
  down). A person can retry in a minute; a lost account cannot be taken back.
- FAIL OPEN for API keys (``PATH_API_KEY``): the secret is 40 random characters (~238 bits) checked in constant time, so
  the counter is defence in depth, not what makes guessing infeasible; refusing keys would stop every trading
  bot on a Redis blip. A valid key still authenticates and an invalid one still gets 401; the outage is logged.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pybreaker
import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions as drf_exceptions

from apps.core.errors import ServiceUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")

PATH_PASSWORD = "password"  # noqa: S105 - a counter namespace, not a secret
PATH_API_KEY = "apikey"
PATH_OTP = "otp"
PATH_RESET = "reset"
PATH_REGISTER = "register"

LOCKED_MESSAGE = "Too many failed attempts; try again later."
UNAVAILABLE_MESSAGE = "Sign-in is temporarily unavailable; try again shortly."
# Paths that keep working without counters (see the module docstring for why only API keys).
FAIL_OPEN_PATHS = frozenset({PATH_API_KEY})


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


class GuardUnavailable(ServiceUnavailable):
    """The counters cannot be read or written (Redis down, timing out, or the breaker is open): 503."""

    error = "auth_guard_unavailable"
    default_message = UNAVAILABLE_MESSAGE


def _cache_location() -> str:
    location = settings.CACHES["default"].get("LOCATION", "")
    return ",".join(location) if isinstance(location, list | tuple) else str(location)


@functools.cache
def _breaker(location: str) -> pybreaker.CircuitBreaker:
    conf = getattr(settings, "ACCOUNTS_BRUTE_FORCE", {})
    return pybreaker.CircuitBreaker(
        fail_max=int(conf.get("BREAKER_FAIL_MAX", 3)),
        reset_timeout=float(conf.get("BREAKER_RESET_SECONDS", 10)),
        name=f"bruteforce:{location}",
    )


def _guarded(func: Callable[[], T]) -> T:
    """Run one counter operation behind the breaker; any Redis failure becomes ``GuardUnavailable``."""
    try:
        return _breaker(_cache_location()).call(func)
    except pybreaker.CircuitBreakerError as exc:
        raise GuardUnavailable() from exc
    except (redis.RedisError, OSError) as exc:
        raise GuardUnavailable() from exc


def _degrade(path: str, exc: GuardUnavailable) -> None:
    """Fail-open paths log and carry on; every other path refuses (re-raises the 503)."""
    if path not in FAIL_OPEN_PATHS:
        raise exc
    logger.warning("brute-force counters unavailable; %s path continues without them", path, exc_info=exc)


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
    """Raise ``LockedOut`` if the account or the IP is locked on this path (``GuardUnavailable``: see module)."""
    subjects = _subjects(path, account, ip)
    try:
        locks: dict[str, Any] = _guarded(lambda: cache.get_many([f"{key}:lock" for key, _ in subjects]))
    except GuardUnavailable as exc:
        _degrade(path, exc)
        return
    now = time.time()
    for until in locks.values():
        if until is not None and float(until) > now:
            raise LockedOut(max(1, math.ceil(float(until) - now)))


def _count_failure(path: str, account: str | None, ip: str | None) -> None:
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


def attempt_failed(*, path: str, account: str | None, ip: str | None) -> None:
    """Count a failure; lock the account/IP when its counter reaches the limit."""
    try:
        _guarded(lambda: _count_failure(path, account, ip))
    except GuardUnavailable as exc:
        _degrade(path, exc)


def attempt_succeeded(*, path: str, account: str | None) -> None:
    """A correct credential clears the account's failure count (the IP count stays: it spans accounts)."""
    keys = [key for key, _ in _subjects(path, account, None)]
    try:
        _guarded(lambda: cache.delete_many(keys))
    except GuardUnavailable as exc:
        _degrade(path, exc)


def throttled(exc: LockedOut) -> drf_exceptions.Throttled:
    """The DRF form of a lock-out: the core exception handler answers 429 with ``Retry-After``."""
    return drf_exceptions.Throttled(wait=exc.retry_after, detail=LOCKED_MESSAGE)


def drf_attempt_check(*, path: str, account: str | None, ip: str | None) -> None:
    try:
        attempt_check(path=path, account=account, ip=ip)
    except LockedOut as exc:
        raise throttled(exc) from None
