"""Credential attacks on every login path: no enumeration (unknown and known identities answer alike) and
throttling (after the limit, even the right credential is refused with 429).

Complements ``tests/accounts/test_bruteforce.py`` (per-IP limits, admin lockout sharing, reset and OTP limits)
and ``tests/accounts/test_otp.py`` (OTP replay across sessions), which ``make security`` runs as well.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.accounts.factories import PASSWORD, api_key, customer, key_headers

pytestmark = pytest.mark.django_db

LIMIT = 3


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.ACCOUNTS_BRUTE_FORCE = {
        "ACCOUNT_LIMIT": LIMIT,
        "IP_LIMIT": 1000,
        "WINDOW_SECONDS": 60,
        "LOCKOUT_SECONDS": 300,
    }


def _scrub(body: bytes, *secrets: str) -> bytes:
    """Remove per-request noise (csrf tokens, echoed identities) so two answers can be compared byte for byte."""
    text = body.decode()
    for secret in secrets:
        text = text.replace(secret, "<id>")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", text).encode()


def _login(email: str) -> tuple[int, bytes]:
    r = APIClient().post("/v1/auth/login", {"email": email, "password": "wrong password 000"}, format="json")
    return r.status_code, _scrub(r.content, email)


def _reset(email: str) -> tuple[int, bytes]:
    r = APIClient().post("/v1/auth/password/reset", {"email": email}, format="json")
    return r.status_code, _scrub(r.content, email)


def _register(email: str) -> tuple[int, bytes]:
    r = APIClient().post(
        "/v1/auth/register", {"email": email, "password": "another long pass 42"}, format="json"
    )
    return r.status_code, _scrub(r.content, email)


def _admin(email: str) -> tuple[int, bytes]:
    r = Client().post(
        "/admin/login/", {"username": email, "password": "wrong password 000", "otp_token": "123456"}
    )
    return r.status_code, _scrub(r.content, email)


@pytest.mark.parametrize(
    "attempt",
    [
        pytest.param(_login, id="api-login"),
        pytest.param(_reset, id="password-reset"),
        pytest.param(_register, id="register"),
        pytest.param(_admin, id="admin-login"),
    ],
)
def test_known_and_unknown_emails_answer_alike(attempt: Any) -> None:
    known = customer()
    assert attempt(known.email) == attempt("nobody-here@example.com")


def test_api_key_known_id_and_unknown_id_answer_alike() -> None:
    key, _ = api_key(customer())
    client = APIClient()
    known = client.get(
        "/v2/account", headers={"APCA-API-KEY-ID": key.key_id, "APCA-API-SECRET-KEY": "x" * 40}
    )
    unknown = client.get(
        "/v2/account", headers={"APCA-API-KEY-ID": "AKNOSUCHKEY000000000", "APCA-API-SECRET-KEY": "x" * 40}
    )
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content)
    assert known.status_code == 401


def test_api_key_guessing_is_throttled_even_for_the_right_secret() -> None:
    key, secret = api_key(customer())
    client = APIClient()
    for _ in range(LIMIT):
        wrong = client.get(
            "/v2/account", headers={"APCA-API-KEY-ID": key.key_id, "APCA-API-SECRET-KEY": "bad"}
        )
        assert wrong.status_code == 401
    assert client.get("/v2/account", headers=key_headers(key, secret)).status_code == 429


@pytest.mark.parametrize("email_kind", ["known", "unknown"])
def test_api_login_is_throttled_for_known_and_unknown(email_kind: str) -> None:
    email = customer().email if email_kind == "known" else "ghost@example.com"
    client = APIClient()
    for _ in range(LIMIT):
        assert (
            client.post(
                "/v1/auth/login", {"email": email, "password": "bad pass 000"}, format="json"
            ).status_code
            == 401
        )
    locked = client.post("/v1/auth/login", {"email": email, "password": PASSWORD}, format="json")
    assert locked.status_code == 429
    assert isinstance(locked.json()["code"], int)
    assert "sessionid" not in client.cookies
