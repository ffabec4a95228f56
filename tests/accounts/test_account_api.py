"""GET /v2/account in Alpaca's Account shape, from the ledger's balances."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import BrokerageAccount
from tests.accounts.factories import api_key, customer, key_headers

pytestmark = pytest.mark.django_db

SPEC = Path("/work/shared/data/alpaca/trading-api.openapi.json")


def test_account_shape_and_values_after_a_deposit(api: APIClient) -> None:
    from apps.settlement.services import cash_deposit_post

    user = customer()
    account = BrokerageAccount.objects.get(owner=user)
    cash_deposit_post(account=account, amount=Decimal("1234.5600"), transfer_id="dep-1")
    key, secret = api_key(user, scopes=("read",))
    response = api.get("/v2/account", headers=key_headers(key, secret))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(account.pk)
    assert body["account_number"] == account.account_number
    assert body["status"] == "ACTIVE"
    assert body["currency"] == "USD"
    for field in ("cash", "buying_power", "equity", "portfolio_value"):
        assert body[field] == "1234.56", field
    assert body["long_market_value"] == "0"
    assert (body["trading_blocked"], body["transfers_blocked"], body["account_blocked"]) == (
        False,
        False,
        False,
    )
    assert body["pattern_day_trader"] is False
    if SPEC.exists():
        props = json.loads(SPEC.read_text())["components"]["schemas"]["Account"]["properties"]
        assert set(body) - {"balance_asof"} <= set(props)
        for name, prop in props.items():
            if name in body and prop.get("type") == "string" and body[name] is not None:
                assert isinstance(body[name], str), name


def test_halted_account_reports_trading_blocked(api: APIClient) -> None:
    user = customer()
    BrokerageAccount.objects.filter(owner=user).update(trading_halted_reason="recon")
    api.force_login(user)
    assert api.get("/v2/account").json()["trading_blocked"] is True


def test_unauthenticated_is_401(api: APIClient) -> None:
    response = api.get("/v2/account")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
