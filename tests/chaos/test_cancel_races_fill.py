"""Cancel racing a fill: the customer's cancel and a crossing sell reach the engine in either order.

Driven through the projection harness (order service → outbox command → real engine → engine-runner envelope →
projection), in process. Invariants checked for every interleaving:
- the order ends exactly one of ``filled`` (the cancel came too late and was answered ``unknown_order``) or
  ``canceled`` (keeping any fill that came first); never both (no ``canceled`` trade update after a final ``fill``);
- its hold is consumed by the fills and released for exactly the rest (``remaining`` 0 at the end);
- cash held = the open orders' reserves (a second, untouched resting order keeps its hold);
- ``ledger_verify`` passes (cached balances = postings, trial balance zero).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction

from apps.accounts.models import BrokerageAccount
from apps.orders import services
from apps.orders.models import Fill, Order, TradeUpdate
from apps.settlement import selectors as settlement_selectors
from apps.settlement.models import CashHold
from tests.orders.test_projection import Harness, account, clock, mm_sell, submit

__all__ = ["account", "clock"]  # the harness fixtures, imported so pytest uses them here (clock is autouse)

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Race:
    """One interleaving: ``prefill`` fills before the cancel request, ``sell`` races the cancel."""

    prefill: str  # qty already filled (partially_filled) when the customer cancels; "0" = resting untouched
    sell: str  # qty of the crossing sell that races the cancel
    fill_first: bool  # the sell reaches the engine before the cancel
    status: str
    filled: str
    answer: str  # the engine's answer to the cancel
    events: tuple[str, ...]  # the order's trade updates, in order


RACES = [
    pytest.param(
        Race("0", "10", True, "filled", "10", "engine.OrderRejected", ("new", "fill")),
        id="full-fill-then-cancel",
    ),
    pytest.param(
        Race("0", "10", False, "canceled", "0", "engine.OrderCanceled", ("new", "canceled")),
        id="cancel-then-full-fill",
    ),
    pytest.param(
        Race("0", "4", True, "canceled", "4", "engine.OrderCanceled", ("new", "partial_fill", "canceled")),
        id="partial-fill-then-cancel",
    ),
    pytest.param(
        Race("0", "4", False, "canceled", "0", "engine.OrderCanceled", ("new", "canceled")),
        id="cancel-then-partial-fill",
    ),
    pytest.param(
        Race("4", "6", True, "filled", "10", "engine.OrderRejected", ("new", "partial_fill", "fill")),
        id="partially-filled-rest-fills-then-cancel",
    ),
    pytest.param(
        Race("4", "6", False, "canceled", "4", "engine.OrderCanceled", ("new", "partial_fill", "canceled")),
        id="partially-filled-cancel-then-rest-fill",
    ),
]


@pytest.mark.parametrize("race", RACES)
def test_cancel_racing_a_fill_ends_filled_or_canceled_never_both(
    account: BrokerageAccount, race: Race
) -> None:
    h = Harness()
    order = submit(account, qty=Decimal("10"), limit_price=Decimal("100"))
    # A second order rests below the sell's price: never touched, its hold must stand throughout.
    bystander = submit(account, qty=Decimal("1"), limit_price=Decimal("90"))
    h.pump()
    if race.prefill != "0":
        h.inject(mm_sell(race.prefill, "100", "mm-pre"))
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == (
        "partially_filled" if race.prefill != "0" else "new",
        Decimal(race.prefill),
    )

    # The customer's cancel is accepted by the service before either message reaches the engine.
    with transaction.atomic():
        services.order_cancel(account=account, order_id=order.id)
    order.refresh_from_db()
    assert order.status == "pending_cancel"

    if race.fill_first:
        h.inject(mm_sell(race.sell, "100", "mm-race"))
        answer = h.pump()
    else:
        answer = h.pump()
        h.inject(mm_sell(race.sell, "100", "mm-race"))
    # The engine answered the cancel with exactly one order event (book-level changes aside), about our order.
    order_events = [e for e in answer if "order_id" in e.payload]
    assert [(e.event_type, e.payload["order_id"]) for e in order_events] == [(race.answer, str(order.id))]
    reason = order_events[0].payload["reason"]
    assert reason == ("unknown_order" if race.answer == "engine.OrderRejected" else "user")

    order.refresh_from_db()
    bystander.refresh_from_db()
    filled = Decimal(race.filled)
    assert (order.status, order.filled_qty) == (race.status, filled)
    assert (order.canceled_at is not None, order.filled_at is not None) == (
        race.status == "canceled",
        race.status == "filled",
    )
    expected_fills = [Decimal(q) for q in (race.prefill, race.sell if race.fill_first else "0") if q != "0"]
    assert list(Fill.objects.filter(order=order).order_by("id").values_list("qty", "price")) == [
        (q, Decimal("100")) for q in expected_fills
    ]
    assert sum(expected_fills, Decimal("0")) == filled
    assert tuple(u.event for u in TradeUpdate.objects.filter(order=order).order_by("seq")) == race.events
    assert bystander.status == "new"

    # Hold: amount = 10 x 100; fills consumed filled x 100, the rest released, nothing left.
    hold = CashHold.objects.get(order_id=str(order.id))
    assert (hold.amount, hold.remaining) == (Decimal("1000.0000"), Decimal("0"))
    open_reserves = {
        str(o.id): o.reserved_amount for o in Order.objects.filter(account=account, status__in=Order.OPEN)
    }
    assert open_reserves == {str(bystander.id): Decimal("90")}
    holds = dict(CashHold.objects.filter(account=account).values_list("order_id", "remaining"))
    assert holds == {str(order.id): Decimal("0"), str(bystander.id): Decimal("90")}
    cash = settlement_selectors.cash_balances(account)
    assert cash.held == sum(open_reserves.values())
    assert cash.buying_power == Decimal("10000") - filled * Decimal("100") - Decimal("90")
    position = settlement_selectors.position(account, "AAPL")
    assert (position.qty if position is not None else Decimal("0")) == filled

    out = io.StringIO()
    call_command("ledger_verify", stdout=out)  # raises CommandError on any break
    assert out.getvalue() == "ledger OK\n"
