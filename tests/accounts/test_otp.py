"""Two-factor auth: TOTP enrolment, verification, no replay, backup codes; the admin refuses staff without OTP."""

from __future__ import annotations

import pytest
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from apps.accounts.models import User
from tests.accounts.factories import PASSWORD, customer, make_user, totp_code, totp_device

pytestmark = pytest.mark.django_db


def _login(client: APIClient, user: User) -> None:
    response = client.post("/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json")
    assert response.status_code == 200


def test_enrol_confirm_returns_backup_codes_and_verifies_session(api: APIClient) -> None:
    user = customer()
    _login(api, user)
    enrol = api.post("/v1/auth/otp/totp")
    assert enrol.status_code == 201
    assert enrol.json()["provisioning_uri"].startswith("otpauth://totp/")
    device = TOTPDevice.objects.get(user=user)
    assert device.confirmed is False
    confirm = api.post("/v1/auth/otp/totp/confirm", {"token": totp_code(device)}, format="json")
    assert confirm.status_code == 200
    codes = confirm.json()["backup_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    device.refresh_from_db()
    assert device.confirmed is True
    assert api.get("/v2/account").status_code == 200


def test_confirm_with_wrong_code_leaves_device_unconfirmed(api: APIClient) -> None:
    user = customer()
    _login(api, user)
    api.post("/v1/auth/otp/totp")
    device = TOTPDevice.objects.get(user=user)
    wrong = f"{(int(totp_code(device)) + 1) % 1_000_000:06d}"
    response = api.post("/v1/auth/otp/totp/confirm", {"token": wrong}, format="json")
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_otp_token"
    device.refresh_from_db()
    assert device.confirmed is False
    assert not StaticToken.objects.filter(device__user=user).exists()


def test_enrolled_user_needs_verification_and_a_code_cannot_be_replayed(api: APIClient) -> None:
    user = customer()
    device = totp_device(user)
    _login(api, user)
    assert api.post("/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json").json()[
        "otp_required"
    ]
    blocked = api.get("/v2/account")
    assert blocked.status_code == 403
    code = totp_code(device)
    assert api.post("/v1/auth/otp/verify", {"token": code}, format="json").status_code == 200
    assert api.get("/v2/account").status_code == 200
    device.refresh_from_db()
    assert device.last_t >= 0

    second = APIClient()
    _login(second, user)
    replay = second.post("/v1/auth/otp/verify", {"token": code}, format="json")
    assert replay.status_code == 422
    assert second.get("/v2/account").status_code == 403


def test_backup_code_works_once(api: APIClient) -> None:
    user = customer()
    totp_device(user)
    from apps.accounts.services import otp_backup_codes_regenerate

    codes = otp_backup_codes_regenerate(user=user)
    _login(api, user)
    assert api.post("/v1/auth/otp/verify", {"token": codes[0]}, format="json").status_code == 200
    assert StaticToken.objects.filter(device__user=user).count() == 9
    other = APIClient()
    _login(other, user)
    assert other.post("/v1/auth/otp/verify", {"token": codes[0]}, format="json").status_code == 422


def test_enrolled_user_cannot_replace_device_before_verifying(api: APIClient) -> None:
    user = customer()
    totp_device(user)
    _login(api, user)
    assert api.post("/v1/auth/otp/totp").status_code == 403
    assert TOTPDevice.objects.filter(user=user).count() == 1


def _staff() -> User:
    return make_user(is_staff=True, is_superuser=True)


def test_admin_refuses_staff_session_without_otp() -> None:
    client = Client()
    client.force_login(_staff())
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_admin_login_without_otp_device_fails() -> None:
    staff = _staff()
    client = Client()
    response = client.post("/admin/login/", {"username": staff.email, "password": PASSWORD})
    assert response.status_code == 200  # the form again, with an error
    assert client.get("/admin/").status_code == 302


def test_admin_login_with_totp_reaches_the_admin() -> None:
    staff = _staff()
    device = totp_device(staff)
    client = Client()
    response = client.post(
        "/admin/login/",
        {
            "username": staff.email,
            "password": PASSWORD,
            "otp_device": device.persistent_id,
            "otp_token": totp_code(device),
        },
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
