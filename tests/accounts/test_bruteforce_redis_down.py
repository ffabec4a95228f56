"""Credential paths with Redis down (the cache at a dead port): never a 500.

Login, admin login, OTP, password reset and sign-up FAIL CLOSED (503 ``auth_guard_unavailable``: no guessing
window without counters); API keys FAIL OPEN (a valid key authenticates, an invalid one gets 401), so trading
bots survive a Redis blip. The breaker opens after ``BREAKER_FAIL_MAX`` failures and is keyed by the cache
location, so the live cache of the other tests is never affected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pybreaker
import pytest
import redis
from django.contrib.auth import SESSION_KEY
from django.test import Client, override_settings
from rest_framework.test import APIClient

from apps.accounts import bruteforce
from tests.accounts.factories import PASSWORD, api_key, customer, key_headers, make_user, totp_device

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": DEAD_REDIS,
        "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
    }
}
LIMITS = {"ACCOUNT_LIMIT": 5, "IP_LIMIT": 8, "WINDOW_SECONDS": 60, "LOCKOUT_SECONDS": 300,
          "BREAKER_FAIL_MAX": 2, "BREAKER_RESET_SECONDS": 60}  # fmt: skip


@pytest.fixture
def redis_down() -> Iterator[None]:
    bruteforce._breaker.cache_clear()
    with override_settings(CACHES=DEAD_CACHES, REDIS_URL=DEAD_REDIS, ACCOUNTS_BRUTE_FORCE=LIMITS):
        yield
    bruteforce._breaker.cache_clear()


def _unavailable(response: Any) -> None:
    assert response.status_code == 503
    assert response.json() == {
        "code": 50310000, "message": bruteforce.UNAVAILABLE_MESSAGE, "error": "auth_guard_unavailable",
    }  # fmt: skip


def test_login_fails_closed_even_for_the_right_password(api: APIClient, redis_down: None) -> None:
    user = customer()
    _unavailable(api.post("/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json"))
    assert "sessionid" not in api.cookies


@pytest.mark.parametrize(
    ("url", "body"),
    [
        pytest.param("/v1/auth/register", {"email": "new@example.com", "password": PASSWORD}, id="register"),
        pytest.param("/v1/auth/password/reset", {"email": "who@example.com"}, id="reset-request"),
        pytest.param(
            "/v1/auth/password/reset/confirm",
            {"uid": "abc", "token": "t", "new_password": PASSWORD},
            id="reset-confirm",
        ),
    ],
)
def test_anonymous_credential_paths_fail_closed(
    api: APIClient, redis_down: None, url: str, body: dict[str, str]
) -> None:
    from apps.accounts.models import User

    _unavailable(api.post(url, body, format="json"))
    assert User.objects.filter(email="new@example.com").exists() is False


def test_otp_verification_fails_closed(api: APIClient, redis_down: None) -> None:
    user = customer()
    totp_device(user)
    api.force_login(user)
    _unavailable(api.post("/v1/auth/otp/verify", {"token": "000000"}, format="json"))


def test_admin_login_fails_closed_without_a_500(redis_down: None) -> None:
    staff = make_user(is_staff=True, is_superuser=True)
    client = Client()
    response = client.post("/admin/login/", {"username": staff.email, "password": PASSWORD})
    assert response.status_code == 200  # the form again, with its error: not logged in, not a 500
    assert SESSION_KEY not in client.session


def test_api_key_authentication_fails_open(api: APIClient, redis_down: None) -> None:
    user = customer()
    key, secret = api_key(user)
    for _ in range(4):  # beyond BREAKER_FAIL_MAX: works with the breaker closed, then open
        assert api.get("/v1/api-keys", headers=key_headers(key, secret)).status_code == 200
    wrong = api.get("/v1/api-keys", headers=key_headers(key, "x" * 40))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized"
    assert bruteforce._breaker(DEAD_REDIS).current_state == pybreaker.STATE_OPEN


def test_breaker_opens_and_then_answers_without_touching_redis(redis_down: None) -> None:
    breaker = bruteforce._breaker(DEAD_REDIS)
    causes = []
    for _ in range(LIMITS["BREAKER_FAIL_MAX"]):
        with pytest.raises(bruteforce.GuardUnavailable) as failed:
            bruteforce.attempt_check(path=bruteforce.PATH_PASSWORD, account="a@example.com", ip=None)
        causes.append(type(failed.value.__cause__))
    # The first failure is Redis's own error; the one that reaches fail_max trips the breaker.
    assert causes == [redis.exceptions.ConnectionError, pybreaker.CircuitBreakerError]
    assert breaker.current_state == pybreaker.STATE_OPEN
    with pytest.raises(bruteforce.GuardUnavailable) as fast:
        bruteforce.attempt_failed(path=bruteforce.PATH_OTP, account="a@example.com", ip="10.0.0.1")
    assert isinstance(fast.value.__cause__, pybreaker.CircuitBreakerError)
    # Fail-open path: no exception at all, on every operation.
    bruteforce.attempt_check(path=bruteforce.PATH_API_KEY, account="AK1", ip="10.0.0.1")
    bruteforce.attempt_failed(path=bruteforce.PATH_API_KEY, account="AK1", ip="10.0.0.1")
    bruteforce.attempt_succeeded(path=bruteforce.PATH_API_KEY, account="AK1")


def test_live_cache_is_unaffected_by_the_dead_ones_breaker() -> None:
    bruteforce._breaker.cache_clear()
    with override_settings(CACHES=DEAD_CACHES, ACCOUNTS_BRUTE_FORCE=LIMITS):
        for _ in range(3):
            with pytest.raises(bruteforce.GuardUnavailable):
                bruteforce.attempt_check(path=bruteforce.PATH_PASSWORD, account="a@example.com", ip=None)
        assert bruteforce._breaker(DEAD_REDIS).current_state == pybreaker.STATE_OPEN
    bruteforce.attempt_failed(path=bruteforce.PATH_PASSWORD, account="a@example.com", ip=None)  # live: counts
    bruteforce.attempt_check(path=bruteforce.PATH_PASSWORD, account="a@example.com", ip=None)  # no raise
    bruteforce._breaker.cache_clear()
