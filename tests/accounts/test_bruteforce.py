"""Brute-force protection on every credential path: lock-out with 429 + Retry-After, per account and per IP."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts import bruteforce
from tests.accounts.factories import PASSWORD, api_key, customer, key_headers, make_user, totp_device

pytestmark = pytest.mark.django_db

LIMIT = 5


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.ACCOUNTS_BRUTE_FORCE = {
        "ACCOUNT_LIMIT": LIMIT,
        "IP_LIMIT": 8,
        "WINDOW_SECONDS": 60,
        "LOCKOUT_SECONDS": 300,
    }


def test_login_locks_the_account_even_for_the_right_password(api: APIClient) -> None:
    user = customer()
    for _ in range(LIMIT):
        response = api.post(
            "/v1/auth/login", {"email": user.email, "password": "wrong pass 0000"}, format="json"
        )
        assert response.status_code == 401
    locked = api.post("/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json")
    assert locked.status_code == 429
    assert 1 <= int(locked["Retry-After"]) <= 301
    assert "sessionid" not in api.cookies


def test_unknown_emails_lock_like_known_ones(api: APIClient) -> None:
    for _ in range(LIMIT):
        api.post("/v1/auth/login", {"email": "ghost@example.com", "password": "x" * 12}, format="json")
    response = api.post("/v1/auth/login", {"email": "ghost@example.com", "password": "x" * 12}, format="json")
    assert response.status_code == 429


def test_ip_limit_spans_accounts(api: APIClient) -> None:
    for n in range(8):
        api.post("/v1/auth/login", {"email": f"spray{n}@example.com", "password": "x" * 12}, format="json")
    user = customer()
    response = api.post("/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json")
    assert response.status_code == 429


def test_other_ips_are_not_locked_by_ip_counter() -> None:
    attacker = APIClient(REMOTE_ADDR="10.0.0.1")
    for n in range(8):
        attacker.post(
            "/v1/auth/login", {"email": f"spray{n}@example.com", "password": "x" * 12}, format="json"
        )
    user = customer()
    victim = APIClient(REMOTE_ADDR="10.0.0.2")
    assert (
        victim.post("/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json").status_code
        == 200
    )


def test_success_resets_the_account_counter(api: APIClient) -> None:
    user = customer()
    for _ in range(LIMIT - 1):
        api.post("/v1/auth/login", {"email": user.email, "password": "wrong pass 0000"}, format="json")
    assert (
        api.post("/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json").status_code
        == 200
    )
    assert (
        api.post(
            "/v1/auth/login", {"email": user.email, "password": "wrong pass 0000"}, format="json"
        ).status_code
        == 401
    )


def test_api_key_guessing_locks_the_key_id(api: APIClient) -> None:
    user = customer()
    key, secret = api_key(user)
    bad = {**key_headers(key, secret), "APCA-API-SECRET-KEY": "0" * 40}
    for _ in range(LIMIT):
        assert api.get("/v2/account", headers=bad).status_code == 401
    locked = api.get("/v2/account", headers=key_headers(key, secret))
    assert locked.status_code == 429
    assert locked["Retry-After"]


def test_admin_login_shares_the_password_lockout() -> None:
    staff = make_user(is_staff=True, is_superuser=True)
    device = totp_device(staff)
    client = Client()
    for _ in range(LIMIT):
        client.post("/admin/login/", {"username": staff.email, "password": "wrong pass 0000"})
    from tests.accounts.factories import totp_code

    client.post(
        "/admin/login/",
        {
            "username": staff.email,
            "password": PASSWORD,
            "otp_device": device.persistent_id,
            "otp_token": totp_code(device),
        },
    )
    assert client.get("/admin/").status_code == 302  # still locked out
    with pytest.raises(bruteforce.LockedOut):
        bruteforce.attempt_check(path=bruteforce.PATH_PASSWORD, account=staff.email, ip=None)


def test_otp_verification_is_limited(api: APIClient) -> None:
    user = customer()
    totp_device(user)
    api.post("/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json")
    for _ in range(LIMIT):
        assert api.post("/v1/auth/otp/verify", {"token": "000000"}, format="json").status_code in {422}
    response = api.post("/v1/auth/otp/verify", {"token": "000000"}, format="json")
    assert response.status_code == 429
    assert response["Retry-After"]


def test_password_reset_confirm_is_limited(api: APIClient) -> None:
    body = {"uid": "abc", "token": "nope", "new_password": "whatever pass 123"}
    for _ in range(LIMIT):
        assert api.post("/v1/auth/password/reset/confirm", body, format="json").status_code == 403
    assert api.post("/v1/auth/password/reset/confirm", body, format="json").status_code == 429
