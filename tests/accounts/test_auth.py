"""Sign-up, session login/logout with CSRF, password reset, and the services behind them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.hashers import check_password
from django.core import mail
from rest_framework.test import APIClient

from apps.accounts.models import AuditRecord, BrokerageAccount, User
from tests.accounts.factories import PASSWORD, customer, make_user

pytestmark = pytest.mark.django_db


def test_register_creates_user_and_onboarding_account_with_argon2(api: APIClient, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    response = api.post(
        "/v1/auth/register", {"email": "new@example.com", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 201
    assert response.json() == {"email": "new@example.com"}
    user = User.objects.get(email="new@example.com")
    assert user.password.startswith("argon2$")
    account = BrokerageAccount.objects.get(owner=user)
    assert account.status == BrokerageAccount.Status.ONBOARDING
    assert re.fullmatch(r"PA[A-Z0-9]{10}", account.account_number)
    actions = list(AuditRecord.objects.order_by("seq").values_list("action", flat=True))
    assert actions == ["user.registered", "account.opened"]


def test_register_existing_email_answers_the_same_and_creates_nothing(api: APIClient) -> None:
    existing = make_user(email="taken@example.com")
    response = api.post(
        "/v1/auth/register", {"email": "TAKEN@example.com", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 201
    assert response.json() == {"email": "TAKEN@example.com"}
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1
    assert not BrokerageAccount.objects.filter(owner=existing).exists()
    assert [m.to for m in mail.outbox] == [["TAKEN@example.com"]]


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        pytest.param("short1!", "too short", id="too-short"),
        pytest.param("password1234", "too common", id="common"),
        pytest.param("738492017364", "entirely numeric", id="numeric"),
    ],
)
def test_register_enforces_password_policy(api: APIClient, password: str, fragment: str) -> None:
    response = api.post("/v1/auth/register", {"email": "p@example.com", "password": password}, format="json")
    assert response.status_code == 422
    assert response.json()["error"] == "weak_password"
    assert fragment in response.json()["message"]
    assert not User.objects.filter(email="p@example.com").exists()


def test_login_then_session_reaches_account_and_logout_ends_it() -> None:
    user = customer()
    client = APIClient(enforce_csrf_checks=True)
    token = client.get("/v1/auth/csrf").json()["csrf_token"]
    response = client.post(
        "/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 200
    assert response.json() == {"id": str(user.pk), "email": user.email, "otp_required": False}
    assert client.get("/v2/account").status_code == 200
    # Unsafe session requests need the (rotated) CSRF token.
    assert client.post("/v1/auth/logout").status_code == 403
    fresh = client.cookies["csrftoken"].value
    assert client.post("/v1/auth/logout", HTTP_X_CSRFTOKEN=fresh).status_code == 204
    assert client.get("/v2/account").status_code == 401


def test_login_without_csrf_token_is_refused_for_cookie_clients() -> None:
    user = customer()
    client = APIClient(enforce_csrf_checks=True)
    response = client.post("/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json")
    assert response.status_code == 403
    assert "sessionid" not in client.cookies


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param("customer-known", "wrong password 123", id="wrong-password"),
        pytest.param("nobody@example.com", PASSWORD, id="unknown-email"),
    ],
)
def test_login_failures_look_identical(api: APIClient, email: str, password: str) -> None:
    user = customer()
    if email == "customer-known":
        email = user.email
    response = api.post("/v1/auth/login", {"email": email, "password": password}, format="json")
    assert response.status_code == 401
    assert response.json() == {
        "code": 40110000,
        "message": "Invalid email or password.",
        "error": "unauthorized",
    }


def test_password_reset_token_is_single_use(api: APIClient) -> None:
    user = customer()
    response = api.post("/v1/auth/password/reset", {"email": user.email}, format="json")
    assert response.status_code == 202
    assert len(mail.outbox) == 1
    match = re.search(r"uid=(\S+) token=(\S+)", str(mail.outbox[0].body))
    assert match is not None
    uid, token = match.groups()
    new_password = "a brand new passphrase 77"
    body = {"uid": uid, "token": token, "new_password": new_password}
    assert api.post("/v1/auth/password/reset/confirm", body, format="json").status_code == 204
    user.refresh_from_db()
    assert check_password(new_password, user.password)
    again = api.post(
        "/v1/auth/password/reset/confirm", {**body, "new_password": "yet another one 8899"}, format="json"
    )
    assert again.status_code == 403
    assert again.json()["error"] == "invalid_reset_token"
    user.refresh_from_db()
    assert check_password(new_password, user.password)


def test_password_reset_token_expires(api: APIClient, settings: Any) -> None:
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    user = customer()
    token = default_token_generator.make_token(user)
    settings.PASSWORD_RESET_TIMEOUT = -1  # every token is already older than this
    body = {
        "uid": urlsafe_base64_encode(force_bytes(user.pk)),
        "token": token,
        "new_password": "fresh pass 1234 x",
    }
    response = api.post("/v1/auth/password/reset/confirm", body, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_reset_token"


def test_password_reset_for_unknown_email_answers_the_same_and_sends_nothing(api: APIClient) -> None:
    response = api.post("/v1/auth/password/reset", {"email": "ghost@example.com"}, format="json")
    assert response.status_code == 202
    assert mail.outbox == []
