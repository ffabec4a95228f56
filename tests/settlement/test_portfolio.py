"""Portfolio history (daily equity from ledger balances and closes) and positions at the latest price.

Worked example (New York dates; DST ends Sun 2026-11-01):
  Fri 10-30  nothing yet                                       equity    0
  Mon 11-02  deposit 1000                                      equity 1000  P/L   0 (money in is not profit)
  Tue 11-03  buy 10 AAPL @ 50; close 52   500 + 10 x 52     -> equity 1020  P/L  20  20/1000 = 0.02
  Wed 11-04  deposit 100; no bar: Tue's 52 carries             equity 1120  P/L  20  20/1100 = 0.018182
  Thu 11-05  close 49                     600 + 10 x 49     -> equity 1090  P/L -10 -10/1100 = -0.009091
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import BrokerageAccount
from apps.marketdata.models import Bar
from apps.orders.models import Asset
from apps.settlement import services
from apps.settlement.portfolio import portfolio_history, position_valuations
from tests.settlement.factories import account_create
from tests.settlement.helpers import fill

pytestmark = pytest.mark.django_db

D = Decimal


def _bar(day: date, close: str) -> None:
    c = D(close)
    Bar.objects.create(
        symbol="AAPL",
        timeframe="1Day",
        timestamp=datetime(day.year, day.month, day.day, 5 if day.month == 11 else 4, tzinfo=UTC),
        open=c,
        high=c,
        low=c,
        close=c,
        volume=D(10),
        trade_count=1,
        notional=c * 10,
        open_seq=1,
        close_seq=1,
    )


def _deposit_on(monkeypatch: pytest.MonkeyPatch, account: BrokerageAccount, day: date, amount: str) -> None:
    # The deposit service stamps "now": pin the clock to that day for the call only.
    with monkeypatch.context() as m:
        m.setattr(timezone, "now", lambda: datetime(day.year, day.month, day.day, 16, tzinfo=UTC))
        services.cash_deposit_post(account=account, amount=D(amount), transfer_id=f"dep-{day}")


@pytest.fixture
def history_account(monkeypatch: pytest.MonkeyPatch) -> BrokerageAccount:
    account = account_create()
    Asset.objects.create(symbol="AAPL", name="Apple", exchange="NASDAQ", reference_price=D("49.50"))
    _deposit_on(monkeypatch, account, date(2026, 11, 2), "1000")
    services.fill_settle_trade_date(
        fill=fill(
            account.pk,
            order_id="o1",
            side="buy",
            qty="10",
            price="50",
            at=datetime(2026, 11, 3, 15, tzinfo=UTC),
        )
    )
    _deposit_on(monkeypatch, account, date(2026, 11, 4), "100")
    _bar(date(2026, 11, 3), "52")
    _bar(date(2026, 11, 5), "49")
    return account


def test_daily_equity_profit_loss_and_dst_timestamps(history_account: BrokerageAccount) -> None:
    h = portfolio_history(history_account, period="1W", date_end=date(2026, 11, 5))
    assert h.timestamp == [
        int(datetime(2026, 10, 30, 4, tzinfo=UTC).timestamp()),  # midnight EDT
        int(datetime(2026, 11, 2, 5, tzinfo=UTC).timestamp()),  # midnight EST
        int(datetime(2026, 11, 3, 5, tzinfo=UTC).timestamp()),
        int(datetime(2026, 11, 4, 5, tzinfo=UTC).timestamp()),
        int(datetime(2026, 11, 5, 5, tzinfo=UTC).timestamp()),
    ]
    assert h.equity == [D(0), D(1000), D(1020), D(1120), D(1090)]
    assert h.profit_loss == [D(0), D(0), D(20), D(20), D(-10)]
    assert h.profit_loss_pct == [D(0), D(0), D("0.02"), D("0.018182"), D("-0.009091")]
    assert (h.base_value, h.timeframe) == (D(0), "1D")


def test_portfolio_history_api_shape_and_validation(history_account: BrokerageAccount) -> None:
    client = APIClient()
    client.force_authenticate(user=history_account.owner)
    body = client.get("/v2/account/portfolio/history?period=3D&date_end=2026-11-05").json()
    assert body == {
        "timestamp": [
            int(datetime(2026, 11, 3, 5, tzinfo=UTC).timestamp()),
            int(datetime(2026, 11, 4, 5, tzinfo=UTC).timestamp()),
            int(datetime(2026, 11, 5, 5, tzinfo=UTC).timestamp()),
        ],
        "equity": ["1020", "1120", "1090"],
        "profit_loss": ["0", "0", "-30"],
        "profit_loss_pct": ["0", "0", "-0.026786"],  # -30 / (1020 + 100)
        "base_value": "1020",
        "timeframe": "1D",
    }
    for bad in ("period=7X", "timeframe=1Min"):
        resp = client.get(f"/v2/account/portfolio/history?{bad}")
        assert resp.status_code == 422, bad
    # Dates the market calendar does not cover are the client's error (a coded 422), never a 500.
    for end in ("0001-01-01", "1990-01-01", "2031-06-01", "9999-12-31"):
        resp = client.get(f"/v2/account/portfolio/history?date_end={end}")
        assert (resp.status_code, resp.json()["error"]) == (422, "date_out_of_calendar_range"), end


def test_positions_valued_at_the_latest_price(history_account: BrokerageAccount) -> None:
    # No trade printed yet: the reference price (49.50) is the latest price.
    [v] = position_valuations(history_account)
    assert (
        v.symbol,
        v.qty,
        v.cost_basis,
        v.current_price,
        v.market_value,
        v.unrealized_pl,
        v.unrealized_plpc,
    ) == (
        "AAPL",
        D(10),
        D("500.0000"),
        D("49.50"),
        D("495.00"),
        D("-5.00"),
        D("-0.01"),
    )
