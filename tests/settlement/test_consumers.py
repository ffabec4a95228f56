"""The fill consumer: payload mapping and exactly-once application through the inbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.core import events
from apps.core.consumers import MessageMeta, consumer_get, inbox_apply
from apps.core.errors import BusinessRuleViolation
from apps.settlement import selectors, services
from apps.settlement.consumers import fill_data_from_event
from apps.settlement.models import JournalEntry, Posting
from tests.settlement.factories import account_create

PAYLOAD = {
    "fill_id": "fill-1",
    "order_id": "ord-1",
    "account_id": "00000000-0000-0000-0000-000000000001",
    "symbol": "AAPL",
    "side": "buy",
    "qty": "1.5",
    "price": "190.25",
    "filled_at": "2026-11-25T15:00:00Z",
    "liquidity": "taker",
}


def test_fill_data_from_event_maps_every_field_exactly() -> None:
    f = fill_data_from_event(PAYLOAD)
    assert (f.fill_id, f.order_id, f.account_id, f.symbol, f.side) == (
        "fill-1",
        "ord-1",
        "00000000-0000-0000-0000-000000000001",
        "AAPL",
        "buy",
    )
    assert (f.qty, f.price, f.liquidity) == (Decimal("1.5"), Decimal("190.25"), "taker")
    assert f.filled_at == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("qty", 1.5, id="float-qty"),
        pytest.param("price", "NaN", id="nan-price"),
        pytest.param("side", "short", id="bad-side"),
        pytest.param("filled_at", "2026-11-25T15:00:00", id="naive-time"),
        pytest.param("price", "1e", id="garbage-price"),
    ],
)
def test_fill_data_from_event_rejects_bad_payloads(field: str, value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message differs per field
        fill_data_from_event({**PAYLOAD, field: value})


@pytest.mark.django_db
def test_fill_event_applies_once_through_the_inbox() -> None:
    account = account_create()
    services.cash_deposit_post(account=account, amount=Decimal("1000"), transfer_id="seed")
    services.hold_place(account=account, order_id="ord-1", amount=Decimal("300"))
    envelope = events.new_envelope(
        event_type="engine.OrderFilled",
        aggregate_type="order",
        aggregate_id="ord-1",
        sequence=1,
        payload={**PAYLOAD, "account_id": str(account.pk)},
    )
    spec = consumer_get("settlement.fills")
    meta = MessageMeta(topic="orders.events", partition=0, offset=7, key="AAPL")
    assert inbox_apply(spec, envelope, meta) is True
    assert inbox_apply(spec, envelope, meta) is False
    # The same fill under a new event id (engine replay) is still booked once.
    replay = events.new_envelope(
        event_type="engine.OrderFilled",
        aggregate_type="order",
        aggregate_id="ord-1",
        sequence=2,
        payload={**PAYLOAD, "account_id": str(account.pk)},
        event_id=uuid.uuid4(),
    )
    assert inbox_apply(spec, replay, meta) is True
    assert JournalEntry.objects.filter(entry_type="FILL").count() == 1
    bal = selectors.cash_balances(account)
    # 1.5 x 190.25 = 285.375 -> hold 300 - 285.375 = 14.625
    assert (bal.settled, bal.held) == (Decimal("700"), Decimal("14.625"))


@pytest.mark.django_db
def test_other_order_events_are_ignored() -> None:
    envelope = events.new_envelope(
        event_type="engine.OrderAccepted", aggregate_type="order", aggregate_id="x", sequence=1, payload={}
    )
    spec = consumer_get("settlement.fills")
    assert inbox_apply(spec, envelope, MessageMeta(topic="orders.events", partition=0, offset=1, key=None))
    assert Posting.objects.count() == 0


@pytest.mark.django_db
def test_shares_transfer_in_and_out() -> None:
    account = account_create()
    services.shares_deposit_post(
        account=account, symbol="MSFT", qty=Decimal(10), cost_basis=Decimal("3000"), transfer_id="acats-in"
    )
    services.shares_deposit_post(
        account=account, symbol="MSFT", qty=Decimal(10), cost_basis=Decimal("3000"), transfer_id="acats-in"
    )
    pos = selectors.position(account, "MSFT")
    assert pos is not None
    assert (pos.qty, pos.qty_settled, pos.avg_entry_price, pos.cost_basis) == (
        Decimal(10),
        Decimal(10),
        Decimal(300),
        Decimal(3000),
    )
    services.shares_reserve(account=account, order_id="s", symbol="MSFT", qty=Decimal(4))
    with pytest.raises(BusinessRuleViolation):
        services.shares_withdrawal_post(account=account, symbol="MSFT", qty=Decimal(7), transfer_id="out")
    services.shares_withdrawal_post(account=account, symbol="MSFT", qty=Decimal(6), transfer_id="out")
    pos = selectors.position(account, "MSFT")
    assert pos is not None
    assert (pos.qty, pos.qty_available, pos.cost_basis) == (Decimal(4), Decimal(0), Decimal(1200))
