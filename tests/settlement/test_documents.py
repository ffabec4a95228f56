"""Trade confirmations and monthly statements, downloadable as HTML; another account's fill is a 404."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import BrokerageAccount
from apps.orders.models import Asset
from apps.settlement import services
from apps.settlement.models import FeeRule
from tests.settlement.factories import account_create
from tests.settlement.helpers import fill

pytestmark = pytest.mark.django_db

D = Decimal
WED = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.fixture
def trader(monkeypatch: pytest.MonkeyPatch) -> BrokerageAccount:
    account = account_create()
    Asset.objects.create(symbol="AAPL", name="Apple", exchange="NASDAQ", reference_price=D("12"))
    FeeRule.objects.create(
        code="commission", effective_from=date(2020, 1, 1), per_share=D("0.005"), min_fee=D("1")
    )
    with monkeypatch.context() as m:
        m.setattr(timezone, "now", lambda: datetime(2026, 11, 2, 16, tzinfo=UTC))
        services.cash_deposit_post(account=account, amount=D("1000"), transfer_id="dep")
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="O-1", side="buy", qty="3", price="10", at=WED, fill_id="p0:7:0:b")
    )
    return account


def _client(account: BrokerageAccount) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=account.owner)
    return client


def _text(html: str) -> str:
    return " ".join(html.split())


def test_confirmation_of_own_fill_is_html_with_exact_amounts(trader: BrokerageAccount) -> None:
    resp = _client(trader).get("/v1/accounts/confirmations/p0:7:0:b", HTTP_ACCEPT="text/html")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "text/html; charset=utf-8"
    text = _text(resp.content.decode())
    for expected in (
        f"Account <strong>{trader.account_number}</strong>",
        "<th>Trade date</th><td>2026-11-25</td>",
        "<th>Settlement date</th><td>2026-11-27</td>",  # Thanksgiving Thursday is skipped
        "<th>Action</th><td>BUY</td>",
        '<th>Quantity</th><td class="num">3</td>',
        '<th>Price</th><td class="num">10</td>',
        '<th>Principal</th><td class="num">30.00</td>',
        '<th>Fee: commission</th><td class="num">1.00</td>',  # 3 x 0.005, minimum 1.00
        '<th>Total cost</th><td class="num"><strong>31.00</strong></td>',
    ):
        assert expected in text, expected


@pytest.mark.parametrize(
    "fill_id", [pytest.param("p0:7:0:b", id="another-accounts-fill"), pytest.param("nope", id="unknown-fill")]
)
def test_confirmation_of_someone_elses_or_unknown_fill_is_404(trader: BrokerageAccount, fill_id: str) -> None:
    stranger = account_create()
    resp = _client(stranger).get(f"/v1/accounts/confirmations/{fill_id}")
    assert resp.status_code == 404
    assert resp.json()["message"] == "fill not found"  # the same answer whether it exists or not


def test_monthly_statement_has_cash_activity_and_holdings(trader: BrokerageAccount) -> None:
    resp = _client(trader).get("/v1/accounts/statements?month=2026-11")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "text/html; charset=utf-8"
    text = _text(resp.content.decode())
    for expected in (
        '<th>Opening cash</th><td class="num">0.00</td>',
        '<th>Closing cash</th><td class="num">969.00</td>',  # 1000 - 30 - 1
        '<th>Securities at month end</th><td class="num">36.00</td>',  # 3 x 12 (reference price, no bars)
        '<th>Total account value</th><td class="num"><strong>1,005.00</strong></td>',
        '<td>2026-11-02</td><td>CSD</td><td>cash deposit</td><td></td><td class="num"></td><td class="num"></td>'
        '<td class="num">1000</td>',
        '<td>2026-11-25</td><td>FILL</td><td>buy 3 AAPL @ 10</td><td>AAPL</td><td class="num">3</td>'
        '<td class="num">10</td><td class="num">-30.00</td>',
        "<td>FEE</td><td>commission 1.00</td><td>AAPL</td>",
        '<td>AAPL</td><td class="num">3</td><td class="num">12</td><td class="num">36.00</td>',
    ):
        assert expected in text, expected
    empty = _text(_client(trader).get("/v1/accounts/statements?month=2026-10").content.decode())
    assert "No activity." in empty
    assert '<th>Closing cash</th><td class="num">0.00</td>' in empty


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("month=2026-13", id="month-13"),
        pytest.param("", id="missing"),
        pytest.param("month=26-11", id="short-year"),
    ],
)
def test_statement_month_is_validated(trader: BrokerageAccount, query: str) -> None:
    assert _client(trader).get(f"/v1/accounts/statements?{query}").status_code == 422
