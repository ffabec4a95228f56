"""AML on real trades: ``engine.TradeExecuted`` envelopes (built by the engine runner's own envelope code) go
through the registered ``kyc.aml_trades`` consumer via ``inbox_apply`` and reach the wash-trade, dormant-account
and rapid in-and-out rules; benign trades, other engine events and redeliveries raise nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core import events
from apps.core.consumers import MessageMeta, consumer_get, inbox_apply
from apps.core.models import InboxRecord
from apps.kyc.celery_routes import compliance_bridge_route
from apps.kyc.models import AccountDevice, AmlAlert, AmlTradeObservation, KycApplication, Transfer
from apps.kyc.services.aml import aml_transfer_evaluate
from apps.orders.engine_runner import Origin, command_envelope, event_envelope
from apps.orders.selectors import order_accounts
from engine.commands import CancelOrder
from engine.events import OrderCanceled, TradeExecuted
from tests.kyc.factories import make_account, make_order, make_transfer

pytestmark = pytest.mark.django_db
EXECUTED = datetime(2024, 6, 3, 15, 0, 1, tzinfo=UTC)
_book_seq = iter(range(1, 10_000))

ORIGIN = Origin("test-incarnation", 3)


def _active() -> BrokerageAccount:
    return make_account(status=BrokerageAccount.Status.ACTIVE)


def _trade_envelope(
    *, buy_order_id: str, sell_order_id: str, qty_e9: int = 100 * 10**9, price_e4: int = 125_000,
    offset: int = 7, at: datetime = EXECUTED,
) -> events.EventEnvelope:  # fmt: skip
    command = command_envelope(
        CancelOrder(order_id=buy_order_id), aggregate_id=buy_order_id, sequence=1, occurred_at=at
    )
    event = TradeExecuted(
        symbol="XYZ", book_seq=next(_book_seq), seq=offset, trade_id=f"{offset}:1", price_e4=price_e4,
        qty_e9=qty_e9, buy_order_id=buy_order_id, sell_order_id=sell_order_id, aggressor="buy",
    )  # fmt: skip
    return event_envelope(event, 0, origin=ORIGIN, command=command)


def _apply(envelope: events.EventEnvelope) -> bool:
    meta = MessageMeta(topic="orders.events", partition=0, offset=0, key=envelope.aggregate_id)
    return inbox_apply(consumer_get("kyc.aml_trades"), envelope, meta)


def _trade(buyer: BrokerageAccount, seller: BrokerageAccount, **kw: object) -> events.EventEnvelope:
    buy, sell = make_order(account=buyer, side="buy"), make_order(account=seller, side="sell")
    envelope = _trade_envelope(buy_order_id=str(buy.pk), sell_order_id=str(sell.pk), **kw)  # type: ignore[arg-type]
    assert _apply(envelope) is True
    return envelope


def test_consumer_is_a_celery_bridge_on_orders_events_routed_to_compliance() -> None:
    spec = consumer_get("kyc.aml_trades")
    assert (spec.topics, spec.mode) == (("orders.events",), "celery")
    task = "apps.core.tasks.consumer_event_apply"
    assert compliance_bridge_route(task, ["kyc.aml_trades", "{}", "t", 0, 0], {}, {}) == {
        "queue": "compliance"
    }
    assert compliance_bridge_route(task, ["settlement.fills", "{}", "t", 0, 0], {}, {}) is None
    from brokerage.celery import app

    routed = app.amqp.router.route({}, task, args=["kyc.aml_trades", "{}", "t", 0, 0], kwargs={})
    assert routed["queue"].name == "compliance"
    other = app.amqp.router.route({}, task, args=["settlement.fills", "{}", "t", 0, 0], kwargs={})
    assert other["queue"].name == "default"
    # The bridge's chunk task (spec.transaction_batch) goes to the same queue.
    assert spec.transaction_batch > 1
    chunk = app.amqp.router.route(
        {}, "apps.core.tasks.consumer_events_apply", args=["kyc.aml_trades", []], kwargs={}
    )
    assert chunk["queue"].name == "compliance"


@pytest.mark.parametrize(
    "link",
    [
        pytest.param("shared_owner", id="same-tax-id-digest"),
        pytest.param("shared_address", id="same-address"),
        pytest.param("shared_device", id="same-device"),
    ],
)
def test_wash_trade_from_trade_executed_envelope(link: str) -> None:
    a, b = _active(), _active()
    if link == "shared_owner":
        KycApplication.objects.create(account=a, tax_id_digest="d1")
        KycApplication.objects.create(account=b, tax_id_digest="d1")
    elif link == "shared_address":
        KycApplication.objects.create(account=a, address_key="1 main st springfield 12345 usa")
        KycApplication.objects.create(account=b, address_key="1 main st springfield 12345 usa")
    else:
        AccountDevice.objects.create(account=a, device_key="ip:198.51.100.9")
        AccountDevice.objects.create(account=b, device_key="ip:198.51.100.9")
    envelope = _trade(a, b)
    alerts = list(AmlAlert.objects.order_by("account__account_number"))
    assert [(al.rule, al.account_id) for al in alerts] == [("wash_trade", a.pk), ("wash_trade", b.pk)]
    assert alerts[0].details == {
        "trade_id": f"{ORIGIN.tag}:7:1", "symbol": "XYZ", "qty": "100", "price": "12.5",
        "buy_account_id": str(a.pk), "sell_account_id": str(b.pk), "links": [link],
    }  # fmt: skip
    observed = AmlTradeObservation.objects.order_by("side").values_list("account_id", "side", "executed_at")
    assert list(observed) == [(a.pk, "buy", EXECUTED), (b.pk, "sell", EXECUTED)]
    # Redelivery (same event id) and an engine replay under a new event id (same trade id) change nothing.
    assert _apply(envelope) is False
    replay = msgspec.structs.replace(envelope, event_id=uuid.uuid4())
    assert _apply(replay) is True
    assert (AmlAlert.objects.count(), AmlTradeObservation.objects.count()) == (2, 2)


def test_benign_trade_between_unrelated_accounts_raises_nothing() -> None:
    a, b = _active(), _active()
    KycApplication.objects.create(account=a, tax_id_digest="d1", address_key="1 main st")
    KycApplication.objects.create(account=b, tax_id_digest="d2", address_key="2 elm st")
    AccountDevice.objects.create(account=a, device_key="ip:198.51.100.9")
    AccountDevice.objects.create(account=b, device_key="ip:198.51.100.10")
    _trade(a, b)
    assert AmlAlert.objects.count() == 0
    assert AmlTradeObservation.objects.count() == 2


def test_bracket_leg_maps_to_its_parents_account() -> None:
    a, b = _active(), _active()
    AccountDevice.objects.create(account=a, device_key="dev:1")
    AccountDevice.objects.create(account=b, device_key="dev:1")
    parent = make_order(account=b, side="buy")
    make_order(account=b, side="sell", parent=parent, leg_role="take_profit")
    buy = make_order(account=a, side="buy")
    assert order_accounts(order_ids=[f"{parent.pk}:tp", str(buy.pk), "not-ours", str(uuid.uuid4())]) == {
        f"{parent.pk}:tp": str(b.pk), str(buy.pk): str(a.pk),
    }  # fmt: skip
    assert _apply(_trade_envelope(buy_order_id=str(buy.pk), sell_order_id=f"{parent.pk}:tp")) is True
    assert sorted(AmlAlert.objects.values_list("rule", "account_id")) == sorted(
        [("wash_trade", a.pk), ("wash_trade", b.pk)]
    )


def test_other_engine_events_are_ignored() -> None:
    order = make_order(account=_active(), side="buy")
    command = command_envelope(
        CancelOrder(order_id=str(order.pk)), aggregate_id=str(order.pk), sequence=1, occurred_at=EXECUTED
    )
    canceled = OrderCanceled(
        symbol="XYZ", book_seq=next(_book_seq), seq=1, order_id=str(order.pk), reason="user", cum_qty_e9=0,
        canceled_qty_e9=10**9,
    )  # fmt: skip
    assert _apply(event_envelope(canceled, 0, origin=Origin("test-incarnation", 0), command=command)) is True
    assert (AmlTradeObservation.objects.count(), AmlAlert.objects.count()) == (0, 0)


def test_trade_with_unknown_orders_fails_and_records_nothing() -> None:
    buy = make_order(account=_active(), side="buy")
    envelope = _trade_envelope(buy_order_id=str(buy.pk), sell_order_id=str(uuid.uuid4()))
    with pytest.raises(ValueError, match="unknown"):
        _apply(envelope)
    assert (InboxRecord.objects.filter(consumer="kyc.aml_trades").count(), AmlTradeObservation.objects.count()) == (
        0, 0,
    )  # fmt: skip


def test_dormant_account_trading_raises_dormant_activity() -> None:
    dormant, other = _active(), _active()
    BrokerageAccount.objects.filter(pk=dormant.pk).update(created_at=EXECUTED - timedelta(days=400))
    dormant.refresh_from_db()
    _trade(dormant, other, qty_e9=500 * 10**9, price_e4=200_000)  # 500 x 20 = 10,000 >= 5,000
    alerts = list(AmlAlert.objects.all())
    assert [(al.rule, al.account_id) for al in alerts] == [("dormant_activity", dormant.pk)]
    assert alerts[0].details["source"] == f"trade:{ORIGIN.tag}:7:1:{dormant.pk}"


def test_rapid_in_and_out_sees_the_trades_in_between() -> None:
    account, counterparty = _active(), _active()
    now = timezone.now()
    deposit = make_transfer(account=account, amount=Decimal(8000))
    Transfer.objects.filter(pk=deposit.pk).update(completed_at=now - timedelta(hours=20))
    for offset in (
        11,
        12,
        13,
    ):  # real trading (more than rapid_max_trades = 2) between deposit and withdrawal
        _trade(account, counterparty, offset=offset, qty_e9=10**9, at=now - timedelta(hours=offset - 5))
    withdrawal = make_transfer(account=account, amount=Decimal(7900), direction=Transfer.Direction.OUTGOING)
    assert aml_transfer_evaluate(transfer=withdrawal) == []
    assert AmlTradeObservation.objects.filter(account=account).count() == 3
    assert AmlAlert.objects.filter(rule="rapid_in_out").count() == 0


def test_a_chunk_of_trades_has_the_effect_of_each_trade_in_turn() -> None:
    """The bridge's chunk path (``transaction_batch``, ``trade_events_handle``): one transaction, the same
    alerts as one trade at a time. A dormant account trades twice: only its first trade is dormant activity (the
    second sees the first as its last activity); a linked pair is a wash trade; an unrelated pair raises nothing;
    a redelivered chunk applies nothing again."""
    from apps.core.consumers import inbox_apply_many

    dormant, other, a, b, c, d = (_active() for _ in range(6))
    BrokerageAccount.objects.filter(pk=dormant.pk).update(created_at=EXECUTED - timedelta(days=400))
    dormant.refresh_from_db()
    AccountDevice.objects.create(account=a, device_key="dev:7")
    AccountDevice.objects.create(account=b, device_key="dev:7")
    chunk = []
    for i, (buyer, seller) in enumerate([(dormant, other), (a, b), (c, d), (dormant, other)]):
        buy, sell = make_order(account=buyer, side="buy"), make_order(account=seller, side="sell")
        envelope = _trade_envelope(
            buy_order_id=str(buy.pk), sell_order_id=str(sell.pk), offset=20 + i, qty_e9=500 * 10**9,
            price_e4=200_000, at=EXECUTED + timedelta(minutes=i),
        )  # fmt: skip
        chunk.append((envelope, MessageMeta(topic="orders.events", partition=0, offset=i, key=None)))
    spec = consumer_get("kyc.aml_trades")
    assert spec.chunk_handler is not None
    assert inbox_apply_many(spec, chunk) == 4
    assert sorted(
        (al.rule, al.details.get("source") or al.details["trade_id"]) for al in AmlAlert.objects.all()
    ) == [
        ("dormant_activity", f"trade:{ORIGIN.tag}:20:1:{dormant.pk}"),
        ("wash_trade", f"{ORIGIN.tag}:21:1"),
        ("wash_trade", f"{ORIGIN.tag}:21:1"),
    ]
    assert AmlTradeObservation.objects.count() == 8
    assert inbox_apply_many(spec, chunk) == 0
    assert (AmlAlert.objects.count(), AmlTradeObservation.objects.count()) == (3, 8)
