"""API keys: creation (secret once, hashed at rest), authentication, scopes, expiry, revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import apikeys
from apps.accounts.models import ApiKey
from tests.accounts.factories import api_key, customer, key_headers, make_user

pytestmark = pytest.mark.django_db


def test_create_returns_secret_once_and_stores_only_its_hmac(api: APIClient) -> None:
    user = customer()
    api.force_login(user)
    response = api.post("/v1/api-keys", {"name": "bot", "scopes": ["read", "trade"]}, format="json")
    assert response.status_code == 201
    body = response.json()
    key = ApiKey.objects.get(key_id=body["key_id"])
    assert body["scopes"] == ["read", "trade"]
    assert len(body["secret"]) == 40
    assert key.secret_hash == apikeys.secret_hash(key.key_id, body["secret"])
    assert body["secret"] not in key.secret_hash
    listed = api.get("/v1/api-keys").json()
    assert [k["key_id"] for k in listed] == [key.key_id]
    assert "secret" not in listed[0]


def test_key_authenticates_with_alpaca_headers_and_records_last_use(api: APIClient) -> None:
    user = customer()
    key, secret = api_key(user)
    response = api.get("/v2/account", headers=key_headers(key, secret))
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("wrong-secret", id="wrong-secret"),
        pytest.param("unknown-key", id="unknown-key"),
        pytest.param("revoked", id="revoked"),
        pytest.param("expired", id="expired"),
        pytest.param("inactive-owner", id="inactive-owner"),
        pytest.param("missing-secret", id="missing-secret"),
    ],
)
def test_bad_keys_get_one_identical_401(api: APIClient, case: str) -> None:
    user = customer()
    key, secret = api_key(user)
    headers = key_headers(key, secret)
    if case == "wrong-secret":
        headers["APCA-API-SECRET-KEY"] = secret[:-1] + ("x" if secret[-1] != "x" else "y")
    elif case == "unknown-key":
        headers["APCA-API-KEY-ID"] = "AKNOTAREALKEY000000"
    elif case == "revoked":
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    elif case == "expired":
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif case == "inactive-owner":
        type(user).objects.filter(pk=user.pk).update(is_active=False)
    elif case == "missing-secret":
        del headers["APCA-API-SECRET-KEY"]
    response = api.get("/v2/account", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "code": 40110000,
        "message": "Invalid API key credentials.",
        "error": "unauthorized",
    }


def test_scopes_are_enforced(api: APIClient) -> None:
    user = customer()
    key, secret = api_key(user, scopes=("trade",))
    response = api.get("/v2/account", headers=key_headers(key, secret))
    assert response.status_code == 403


def test_key_cannot_mint_a_more_powerful_key(api: APIClient) -> None:
    user = customer()
    key, secret = api_key(user, scopes=("read",))
    response = api.post(
        "/v1/api-keys",
        {"name": "x", "scopes": ["read", "transfer"]},
        format="json",
        headers=key_headers(key, secret),
    )
    assert response.status_code == 403
    assert ApiKey.objects.filter(owner=user).count() == 1
    ok = api.post(
        "/v1/api-keys", {"name": "x", "scopes": ["read"]}, format="json", headers=key_headers(key, secret)
    )
    assert ok.status_code == 201


def test_revoke_stops_the_key_and_other_customers_get_404(api: APIClient) -> None:
    owner = customer()
    other = customer()
    key, secret = api_key(owner)
    api.force_login(other)
    assert api.delete(f"/v1/api-keys/{key.key_id}").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
    api.force_login(owner)
    assert api.delete(f"/v1/api-keys/{key.key_id}").status_code == 204
    api.logout()
    assert api.get("/v2/account", headers=key_headers(key, secret)).status_code == 401


def test_create_rejects_unknown_scope(api: APIClient) -> None:
    user = customer()
    api.force_login(user)
    response = api.post("/v1/api-keys", {"name": "x", "scopes": ["admin"]}, format="json")
    assert response.status_code == 422
    assert ApiKey.objects.count() == 0


def test_the_authentication_read_equals_the_orms_select_related() -> None:
    from apps.accounts.models import BrokerageAccount, User
    from apps.accounts.selectors import api_key_with_owner

    user = customer()
    key, _secret = api_key(user, scopes=("read", "trade"))
    got = api_key_with_owner(key.key_id)
    assert got is not None
    orm = ApiKey.objects.select_related("owner", "owner__brokerage_account").get(key_id=key.key_id)
    for obj, ref in (
        (got, orm),
        (got.owner, orm.owner),
        (got.owner.brokerage_account, orm.owner.brokerage_account),
    ):
        assert [(f.attname, getattr(obj, f.attname)) for f in type(ref)._meta.concrete_fields] == [
            (f.attname, getattr(ref, f.attname)) for f in type(ref)._meta.concrete_fields
        ]
    assert got.scopes == ["read", "trade"]
    assert User.brokerage_account.is_cached(got.owner)
    assert got.owner.brokerage_account.owner is got.owner
    assert api_key_with_owner("AKNOSUCHKEY") is None

    # An owner without a brokerage account: cached as missing, as select_related caches it (no query later).
    staff = make_user()
    staff_key, _ = api_key(staff, scopes=("read",))
    got = api_key_with_owner(staff_key.key_id)
    assert got is not None
    assert User.brokerage_account.is_cached(got.owner)
    with pytest.raises(BrokerageAccount.DoesNotExist):
        _ = got.owner.brokerage_account
