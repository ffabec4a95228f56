"""GET /v2/account/activities: Alpaca shapes, type filters, cursor paging."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from apps.settlement import services
from tests.settlement.factories import account_create
from tests.settlement.helpers import fill

pytestmark = pytest.mark.django_db

WED = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.fixture
def client_and_account() -> tuple[APIClient, object]:
    account = account_create()
    client = APIClient()
    client.force_authenticate(user=account.owner)
    services.cash_deposit_post(account=account, amount=Decimal("1000"), transfer_id="dep")
    services.hold_place(account=account, order_id="B1", amount=Decimal("500"))
    for i, qty in enumerate(["1", "2", "3"]):
        services.fill_settle_trade_date(
            fill=fill(account.pk, order_id="B1", side="buy", qty=qty, price="10", at=WED, fill_id=f"a{i}")
        )
    services.cash_withdrawal_post(account=account, amount=Decimal("25.50"), transfer_id="wd")
    return client, account


def test_activities_shapes_and_type_filter(client_and_account: tuple[APIClient, object]) -> None:
    client, _ = client_and_account
    resp = client.get("/v2/account/activities/FILL?direction=asc")
    assert resp.status_code == 200
    body = resp.json()
    assert [
        (a["activity_type"], a["qty"], a["price"], a["cum_qty"], a["side"], a["symbol"]) for a in body
    ] == [
        ("FILL", "1", "10", "1", "buy", "AAPL"),
        ("FILL", "2", "10", "3", "buy", "AAPL"),
        ("FILL", "3", "10", "6", "buy", "AAPL"),
    ]
    assert body[0]["transaction_time"] == "2026-11-25T15:00:00Z"
    assert body[0]["id"].startswith("20261125150000000::")
    resp = client.get("/v2/account/activities?activity_types=CSD,CSW")
    cash = resp.json()
    assert [(a["activity_type"], a["net_amount"], a["status"]) for a in cash] == [
        ("CSW", "-25.50", "executed"),
        ("CSD", "1000", "executed"),
    ]
    assert client.get("/v2/account/activities?category=non_trade_activity").json() == cash


def test_activities_cursor_paging_visits_everything_once(
    client_and_account: tuple[APIClient, object],
) -> None:
    client, _ = client_and_account
    seen: list[str] = []
    token = ""
    for _ in range(10):
        url = "/v2/account/activities?page_size=2" + (f"&page_token={token}" if token else "")
        page = client.get(url).json()
        if not page:
            break
        seen += [a["id"] for a in page]
        token = page[-1]["id"]
    assert len(seen) == 5
    assert len(set(seen)) == 5


@pytest.mark.parametrize(
    ("url", "status"),
    [
        pytest.param("/v2/account/activities/XYZ", 404, id="unknown-type-path"),
        pytest.param("/v2/account/activities?activity_types=BOGUS", 422, id="unknown-type-param"),
        pytest.param("/v2/account/activities?page_token=nope", 422, id="bad-token"),
        pytest.param("/v2/account/activities?page_size=101", 422, id="page-too-big"),
    ],
)
def test_activities_bad_queries(client_and_account: tuple[APIClient, object], url: str, status: int) -> None:
    client, _ = client_and_account
    assert client.get(url).status_code == status


def test_activities_require_authentication() -> None:
    assert APIClient().get("/v2/account/activities").status_code in (401, 403)
