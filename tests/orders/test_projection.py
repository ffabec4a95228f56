"""Order service → real engine core → engine-runner envelopes → projection, in process (no Kafka).

The commands are the outbox rows the service wrote, decoded by the engine runner's own ``command_decode``, and
the events are wrapped by its ``event_envelope``: this pins the payload contract between the two halves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
from django.db import transaction

from apps.accounts.models import BrokerageAccount
from apps.core import events
from apps.core.consumers import MessageMeta, inbox_apply
from apps.core.markettime import FixedClock
from apps.core.markettime_config import market_clock_override
from apps.core.models import StoredEvent
from apps.orders import services
from apps.orders.consumers import ORDERS_PROJECTION
from apps.orders.engine_runner import Origin, command_decode, event_envelope
from apps.orders.models import Fill, Order, TradeUpdate
from apps.orders.projection import FillIdConflict, engine_event_apply
from apps.orders.types import OrderRequest
from apps.settlement import selectors as settlement_selectors
from apps.settlement.activities import activity_render
from apps.settlement.models import CashHold, JournalEntry
from engine import commands as ec
from engine.engine import Engine
from tests.orders.factories import asset_create, funded_account

pytestmark = pytest.mark.django_db


class Harness:
    """Feeds every new outbox command (and injected market-maker commands) through one engine."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.seq = 0
        self.seen = 0
        self.applied: list[events.EventEnvelope] = []

    def _apply(self, command_env: events.EventEnvelope, command: ec.Command) -> list[events.EventEnvelope]:
        self.seq += 1
        out = [
            event_envelope(ev, i, origin=Origin("test-incarnation", 0), command=command_env)
            for i, ev in enumerate(self.engine.apply(self.seq, command))
        ]
        for env in out:
            inbox_apply(ORDERS_PROJECTION, env, MessageMeta("orders.events", 0, self.seq, env.aggregate_id))
        self.applied.extend(out)
        return out

    def pump(self) -> list[events.EventEnvelope]:
        out: list[events.EventEnvelope] = []
        for row in StoredEvent.objects.filter(topic="orders.commands", id__gt=self.seen).order_by("id"):
            self.seen = row.id
            env, command = command_decode(bytes(row.body))
            out += self._apply(env, command)
        return out

    def inject(self, command: ec.Command) -> list[events.EventEnvelope]:
        env = events.new_envelope(
            event_type="orders.OrderSubmitted",
            aggregate_type="order",
            aggregate_id="mm",
            sequence=1,
            payload={"command": {}},
            occurred_at=datetime(2026, 11, 24, 15, 0, 1, tzinfo=UTC),
        )
        return self._apply(env, command)


@pytest.fixture(autouse=True)
def clock() -> Iterator[FixedClock]:
    fixed = FixedClock(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))
    market_clock_override(fixed)
    yield fixed
    market_clock_override(None)


@pytest.fixture
def account() -> BrokerageAccount:
    asset_create(symbol="AAPL")
    return funded_account(cash=Decimal("10000"))


def submit(account: BrokerageAccount, **kw: object) -> Order:
    fields: dict[str, object] = {"symbol": "AAPL", "side": "buy", "type": "limit", "time_in_force": "day"}
    fields.update(kw)
    with transaction.atomic():
        return services.order_submit(account=account, data=OrderRequest(**fields))  # type: ignore[arg-type]


def mm_sell(qty: str, price: str, oid: str) -> ec.NewOrder:
    return ec.NewOrder(
        order_id=oid,
        account_id="market-maker",
        symbol="AAPL",
        side="sell",
        type="limit",
        tif="day",
        qty_e9=int(Decimal(qty) * 10**9),
        limit_price_e4=int(Decimal(price) * 10**4),
    )


def updates(account: BrokerageAccount) -> list[tuple[int, str, str | None, str | None]]:
    return [
        (u.seq, u.event, u.data.get("qty"), u.data.get("position_qty"))
        for u in TradeUpdate.objects.filter(account=account).order_by("seq")
    ]


def test_accept_then_cancel_releases_the_hold(account: BrokerageAccount) -> None:
    h = Harness()
    order = submit(account, qty=Decimal("10"), limit_price=Decimal("100"))
    h.pump()
    order.refresh_from_db()
    assert order.status == "new"
    with transaction.atomic():
        services.order_cancel(account=account, order_id=order.id)
    h.pump()
    order.refresh_from_db()
    assert (order.status, order.cancel_reason, order.canceled_at is not None) == ("canceled", "user", True)
    hold = CashHold.objects.get(order_id=str(order.id))
    assert (hold.amount, hold.remaining) == (Decimal("1000.0000"), Decimal("0"))
    assert updates(account) == [(1, "new", None, None), (2, "canceled", None, None)]


def test_partial_then_full_fill_projects_fills_once(account: BrokerageAccount) -> None:
    h = Harness()
    h.inject(mm_sell("4", "99.5", "mm-1"))
    order = submit(account, qty=Decimal("10"), limit_price=Decimal("100"))
    h.pump()
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.filled_avg_price) == (
        "partially_filled",
        Decimal("4"),
        Decimal("99.5"),
    )
    fill_events = h.inject(mm_sell("6", "100", "mm-2"))
    order.refresh_from_db()
    assert order.status == "filled"
    assert order.filled_qty == Decimal("10")
    assert order.filled_avg_price == Decimal("99.8")  # (4 x 99.5 + 6 x 100) / 10
    assert list(Fill.objects.order_by("id").values_list("qty", "price", "liquidity")) == [
        (Decimal("4"), Decimal("99.5"), "taker"),
        (Decimal("6"), Decimal("100"), "maker"),
    ]
    assert updates(account) == [
        (1, "new", None, None),
        (2, "partial_fill", "4", "4"),
        (3, "fill", "6", "10"),
    ]
    position = settlement_selectors.position(account, "AAPL")
    assert position is not None
    assert position.qty == Decimal("10")
    # The FILL activities say which fill completed the order (Alpaca's type, leaves_qty, cum_qty, order_status).
    fills_booked = JournalEntry.objects.filter(
        entry_type=JournalEntry.EntryType.FILL, account=account
    ).order_by("id")
    assert [
        (a["type"], a["qty"], a["leaves_qty"], a["cum_qty"], a["order_status"])
        for a in map(activity_render, fills_booked)
    ] == [("partial_fill", "4", "6", "4", "partially_filled"), ("fill", "6", "0", "10", "filled")]
    assert CashHold.objects.get(order_id=str(order.id)).remaining == Decimal("0")

    # Redelivery changes nothing: the inbox refuses it, and even a direct re-apply finds the fill id taken.
    before = (Fill.objects.count(), TradeUpdate.objects.count(), order.filled_qty)
    for env in fill_events:
        assert inbox_apply(ORDERS_PROJECTION, env, MessageMeta("orders.events", 0, 0, None)) is False
        with transaction.atomic():
            engine_event_apply(env)
    order.refresh_from_db()
    assert (Fill.objects.count(), TradeUpdate.objects.count(), order.filled_qty) == before

    # Another execution under a stored fill id (ids repeated: e.g. topics recreated without a new incarnation)
    # is refused, never skipped as a replay: the consumer retries it, then dead-letters it with this error.
    taken = next(
        e
        for e in fill_events
        if e.event_type == "engine.OrderFilled" and e.payload["order_id"] == str(order.id)
    )
    for change in ({"qty": "5", "qty_e9": 5 * 10**9}, {"price": "100.01", "price_e4": 1_000_100}):
        other = msgspec.structs.replace(taken, event_id=uuid.uuid4(), payload={**taken.payload, **change})
        with pytest.raises(FillIdConflict, match=str(taken.payload["fill_id"])):
            inbox_apply(ORDERS_PROJECTION, other, MessageMeta("orders.events", 0, 0, None))
    order.refresh_from_db()
    assert (Fill.objects.count(), TradeUpdate.objects.count(), order.filled_qty) == before

    # The bought shares can now be sold (reserved), but not more.
    sell = submit(account, side="sell", qty=Decimal("10"), limit_price=Decimal("101"))
    assert sell.reserved_qty == Decimal("10")


def test_rejected_by_engine_releases_the_hold(account: BrokerageAccount) -> None:
    h = Harness()
    order = submit(account, qty=Decimal("1"), limit_price=Decimal("100"))
    # The venue halts the symbol after the order service accepted the order.
    h.inject(ec.Halt(symbol="AAPL"))
    h.pump()
    order.refresh_from_db()
    assert (order.status, order.reject_reason) == ("rejected", "halted")
    assert CashHold.objects.get(order_id=str(order.id)).remaining == Decimal("0")
    assert updates(account) == [(1, "rejected", None, None)]


def test_bracket_legs_activate_after_the_entry_fills(account: BrokerageAccount) -> None:
    from apps.orders.types import StopLossSpec, TakeProfitSpec

    h = Harness()
    h.inject(mm_sell("2", "100", "mm-3"))
    entry = submit(
        account,
        qty=Decimal("2"),
        limit_price=Decimal("100"),
        order_class="bracket",
        take_profit=TakeProfitSpec(limit_price=Decimal("105")),
        stop_loss=StopLossSpec(stop_price=Decimal("95")),
    )
    h.pump()
    entry.refresh_from_db()
    legs = {leg.leg_role: (leg.status, leg.qty) for leg in entry.legs.all()}
    assert entry.status == "filled"
    assert legs == {"take_profit": ("new", Decimal("2")), "stop_loss": ("new", Decimal("2"))}

    # A buyer at the take-profit's price fills that leg (engine id "{entry}:tp"); its sibling is canceled.
    h.inject(msgspec.structs.replace(mm_sell("2", "105", "mm-4"), side="buy"))
    legs = {leg.leg_role: (leg.status, leg.filled_qty) for leg in entry.legs.all()}
    assert legs == {"take_profit": ("filled", Decimal("2")), "stop_loss": ("canceled", Decimal("0"))}
    assert [u[1] for u in updates(account)][-2:] == ["fill", "canceled"]


def _held(account: BrokerageAccount) -> tuple[Decimal, Decimal, dict[str, Decimal]]:
    """(buying power, held cash, hold remaining per order id) of the account."""
    cash = settlement_selectors.cash_balances(account)
    holds = dict(CashHold.objects.filter(account=account).values_list("order_id", "remaining"))
    return cash.buying_power, cash.held, holds


def replace(account: BrokerageAccount, order: Order, **kw: object) -> Order:
    from apps.orders.types import ReplaceRequest

    with transaction.atomic():
        return services.order_replace(
            account=account,
            order_id=order.id,
            data=ReplaceRequest(**kw),  # type: ignore[arg-type]
        )


def test_refused_replace_puts_the_old_order_back_with_its_hold(account: BrokerageAccount) -> None:
    h = Harness()
    old = submit(account, qty=Decimal("10"), limit_price=Decimal("100"))
    h.pump()
    assert _held(account) == (Decimal("9000.0000"), Decimal("1000.0000"), {str(old.id): Decimal("1000")})

    new = replace(account, old, qty=Decimal("5"), limit_price=Decimal("99"))
    # Pending: both holds stand until the engine decides (hold = open orders' reserves).
    assert _held(account) == (
        Decimal("8505.0000"),
        Decimal("1495.0000"),
        {str(old.id): Decimal("1000"), str(new.id): Decimal("495")},
    )
    h.inject(ec.Halt(symbol="AAPL"))  # the venue halts before the replace reaches the engine: refused
    h.pump()
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.status, old.replaced_by_id, old.reserved_amount) == ("new", None, Decimal("1000"))
    assert (new.status, new.reject_reason) == ("rejected", "halted")
    assert _held(account) == (
        Decimal("9000.0000"),
        Decimal("1000.0000"),
        {str(old.id): Decimal("1000"), str(new.id): Decimal("0")},
    )
    assert [(u.event, str(u.order_id)) for u in TradeUpdate.objects.order_by("seq")] == [
        ("new", str(old.id)),
        ("rejected", str(new.id)),
    ]

    # The old order is still live in the engine: it fills from its own hold, which ends fully used.
    h.inject(ec.Resume(symbol="AAPL"))
    h.inject(mm_sell("10", "100", "mm-r"))
    old.refresh_from_db()
    assert (old.status, old.filled_qty) == ("filled", Decimal("10"))
    buying_power, held, holds = _held(account)
    assert (held, holds) == (Decimal("0"), {str(old.id): Decimal("0"), str(new.id): Decimal("0")})
    assert buying_power == Decimal("9000.0000")  # 10 000 - 10 x 100


def test_confirmed_replace_moves_the_hold_to_the_new_order(account: BrokerageAccount) -> None:
    h = Harness()
    old = submit(account, qty=Decimal("10"), limit_price=Decimal("100"))
    h.pump()
    new = replace(account, old, qty=Decimal("5"), limit_price=Decimal("99"))
    h.pump()
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.status, new.status) == ("replaced", "new")
    assert _held(account) == (
        Decimal("9505.0000"),
        Decimal("495.0000"),
        {str(old.id): Decimal("0"), str(new.id): Decimal("495")},
    )


def mm(side: str, qty: str, price: str, oid: str, account_id: str) -> ec.NewOrder:
    return ec.NewOrder(
        order_id=oid,
        account_id=account_id,
        symbol="AAPL",
        side=side,  # type: ignore[arg-type]
        type="limit",
        tif="day",
        qty_e9=int(Decimal(qty) * 10**9),
        limit_price_e4=int(Decimal(price) * 10**4),
    )


def test_trailing_stop_trigger_records_the_water_mark(account: BrokerageAccount) -> None:
    h = Harness()
    order = submit(account, type="trailing_stop", qty=Decimal("1"), trail_price=Decimal("2"))
    h.pump()
    # Two other traders print 98: a buy trailing stop follows the LOW water mark (stop = 98 + 2).
    h.inject(mm("sell", "1", "98", "mm-a1", "trader-a"))
    h.inject(mm("buy", "1", "98", "mm-b1", "trader-b"))
    order.refresh_from_db()
    assert (order.status, order.hwm, order.stop_price) == ("new", None, None)  # no event while it trails
    # A print at 100 reaches the stop: it triggers and buys the ask that is left at 100.
    h.inject(mm("sell", "2", "100", "mm-a2", "trader-a"))
    triggered = [e.event_type for e in h.inject(mm("buy", "1", "100", "mm-b2", "trader-b"))]
    assert triggered.count("engine.OrderTriggered") == 1
    order.refresh_from_db()
    assert (order.status, order.type, order.hwm, order.stop_price, order.filled_avg_price) == (
        "filled",
        "trailing_stop",
        Decimal("98"),
        Decimal("100"),
        Decimal("100"),
    )
    fill = TradeUpdate.objects.get(order=order, event="fill")
    assert (fill.data["order"]["hwm"], fill.data["order"]["stop_price"]) == ("98", "100")
    assert [u.event for u in TradeUpdate.objects.filter(order=order).order_by("seq")] == ["new", "fill"]
