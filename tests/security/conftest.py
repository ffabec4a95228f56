"""Two customers, A and B, each with an ACTIVE funded account, and A with one of every owned object.

A owns: an open limit order, a deposit transfer, an API key, a KYC application, a position (ACATS-style shares
deposit) and an idempotency record. B owns a position too, so B's own requests in the bad-input table have a
valid base. The market clock is pinned inside a regular session so order validation runs to the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import transaction
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey, BrokerageAccount, User
from apps.core.markettime import FixedClock
from apps.core.markettime_config import market_clock_override
from apps.settlement.services import shares_deposit_post
from tests.accounts.factories import api_key
from tests.orders.factories import asset_create, funded_account

# Tuesday 2026-11-24 10:00 New York: the regular session is open.
OPEN_AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@dataclass
class Customer:
    user: User
    account: BrokerageAccount
    client: APIClient  # force-authenticated: no session or API-key rows change per request
    key: ApiKey
    secret: str
    order_id: str = ""
    transfer_id: str = ""


@dataclass
class World:
    a: Customer
    b: Customer


@pytest.fixture(autouse=True)
def _clean_cache_and_clock() -> Iterator[None]:
    cache.clear()  # brute-force counters and rate limits live here
    market_clock_override(FixedClock(OPEN_AT))
    yield
    market_clock_override(None)
    cache.clear()


def _customer() -> Customer:
    account = funded_account(cash=Decimal("100000"))
    with transaction.atomic():
        shares_deposit_post(
            account=account,
            symbol="AAPL",
            qty=Decimal("10"),
            cost_basis=Decimal("1000"),
            transfer_id=f"sec-{uuid.uuid4()}",
        )
    client = APIClient()
    client.force_authenticate(account.owner)
    key, secret = api_key(account.owner)
    return Customer(user=account.owner, account=account, client=client, key=key, secret=secret)


@pytest.fixture
def world(db: None) -> World:
    asset_create(symbol="AAPL")
    a, b = _customer(), _customer()
    order = a.client.post(
        "/v2/orders",
        {
            "symbol": "AAPL",
            "qty": "1",
            "side": "buy",
            "type": "limit",
            "time_in_force": "day",
            "limit_price": "90",
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )
    assert order.status_code == 200, order.content
    a.order_id = order.json()["id"]
    transfer = a.client.post(
        "/v1/transfers", {"direction": "INCOMING", "type": "ach", "amount": "25"}, format="json"
    )
    assert transfer.status_code == 200, transfer.content
    a.transfer_id = transfer.json()["id"]
    kyc = a.client.post("/v1/accounts/kyc", {"identity": {"given_name": "Alice"}}, format="json")
    assert kyc.status_code == 200, kyc.content
    return World(a=a, b=b)
