"""A split reaches the engine's books: corporate action → Order rows + ``SplitApply`` (outbox) → engine → projection.

The engine core is fed the outbox rows the services wrote, through the engine runner's own ``command_decode``
and ``event_envelope`` (the ``Harness`` of test_projection), so the command and event contracts are pinned.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import transaction

from apps.accounts.models import BrokerageAccount
from apps.core.consumers import MessageMeta
from apps.core.models import StoredEvent
from apps.orders import rebuild
from apps.orders.engine_runner import command_decode
from apps.orders.models import Fill, TradeUpdate
from apps.settlement.corporate_actions import corporate_action_apply, split_id_of
from apps.settlement.models import CashHold, CorporateAction
from apps.settlement.services import settlement_run
from engine import commands as ec
from tests.orders.test_projection import Harness, account, clock, mm, submit  # noqa: F401

pytestmark = pytest.mark.django_db


def _split_action(num: int, den: int, effective: date = date(2026, 11, 25)) -> CorporateAction:
    return CorporateAction.objects.create(
        kind="split",
        symbol="AAPL",
        effective_date=effective,
        ratio_num=num,
        ratio_den=den,
        cash_in_lieu_price=Decimal("50"),
    )


def _last_commands(n: int) -> list[str]:
    """The event types of the last ``n`` commands the outbox holds for the engine, oldest first."""
    rows = StoredEvent.objects.filter(topic="orders.commands").order_by("-id")[:n]
    return list(reversed(rows.values_list("event_type", flat=True)))


def test_split_adjusts_resting_orders_in_the_engine_and_new_orders_fill_at_post_split_terms(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    h = Harness()
    buy = submit(account, qty=Decimal("10"), limit_price=Decimal("100.01"))
    h.pump()
    h.inject(mm("sell", "7", "100.03", "mm-s1", "market-maker"))  # not one of our rows: the engine's alone
    action = _split_action(2, 1)
    with transaction.atomic():
        corporate_action_apply(action_id=action.pk)

    # The outbox holds exactly one SplitApply, with the asset's tick, after the order rows changed.
    rows = list(StoredEvent.objects.filter(topic="orders.commands", event_type="orders.SplitRequested"))
    assert len(rows) == 1
    _env, command = command_decode(bytes(rows[0].body))
    assert command == ec.SplitApply(
        symbol="AAPL",
        split_id=split_id_of(action),
        numerator=2,
        denominator=1,
        tick_e4=100,
        split_epoch=1,  # the asset's first split
    )
    buy.refresh_from_db()
    assert (buy.status, buy.qty, buy.limit_price) == ("new", Decimal("20"), Decimal("50.00"))

    out = h.pump()
    adjusted = {e.payload["order_id"]: e.payload for e in out if e.event_type == "engine.OrderAdjusted"}
    # The engine's terms equal the row's exactly (buy 50.005 -> 50.00; sell 50.015 -> 50.02).
    assert {oid: (p["qty"], p["leaves_qty"], p["limit_price"]) for oid, p in adjusted.items()} == {
        str(buy.id): ("20", "20", "50"),
        "mm-s1": ("14", "14", "50.02"),
    }
    assert Decimal(adjusted[str(buy.id)]["limit_price"]) == buy.limit_price
    assert [e.event_type for e in out][:1] == ["engine.SplitApplied"]
    assert TradeUpdate.objects.filter(order=buy).count() == 1  # "new" only: the split is not a trade update

    # A new sell at the post-split price crosses the adjusted buy: 20 shares at the resting 50.00.
    h.inject(mm("sell", "25", "50", "mm-s2", "market-maker"))
    buy.refresh_from_db()
    assert (buy.status, buy.filled_qty, buy.filled_avg_price) == ("filled", Decimal("20"), Decimal("50"))
    assert list(Fill.objects.filter(order=buy).values_list("qty", "price")) == [
        (Decimal("20"), Decimal("50"))
    ]
    # Our new buy at 50.02 takes the market maker's adjusted 14 shares there (the 5 left at 50.00 first).
    taker = submit(account, qty=Decimal("19"), limit_price=Decimal("50.02"))
    h.pump()
    taker.refresh_from_db()
    assert (taker.status, taker.filled_qty) == ("filled", Decimal("19"))
    assert sorted(Fill.objects.filter(order=taker).values_list("price", "qty")) == [
        (Decimal("50"), Decimal("5")),
        (Decimal("50.02"), Decimal("14")),
    ]
    assert CashHold.objects.filter(account=account, remaining__gt=0).count() == 0  # holds released exactly

    # Applying the action again sends nothing; a redelivered SplitApply changes nothing in the engine.
    book = h.engine.book("AAPL")
    assert book is not None
    before = (book.level_orders(True), book.level_orders(False), book.ref_price, h.engine.splits)
    with transaction.atomic():
        corporate_action_apply(action_id=action.pk)
    assert StoredEvent.objects.filter(event_type="orders.SplitRequested").count() == 1
    assert h.inject(command) == []
    assert (book.level_orders(True), book.level_orders(False), book.ref_price, h.engine.splits) == before


def test_an_order_rounding_to_zero_is_canceled_before_the_engine_splits(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    h = Harness()
    small = submit(account, qty=Decimal("3"), limit_price=Decimal("99"))
    keep = submit(account, qty=Decimal("25"), limit_price=Decimal("99"))
    h.pump()
    with transaction.atomic():
        corporate_action_apply(action_id=_split_action(1, 10).pk)
    assert _last_commands(2) == ["orders.CancelRequested", "orders.SplitRequested"]  # the cancel first
    out = h.pump()
    assert [(e.event_type, e.payload["order_id"]) for e in out if "order_id" in e.payload] == [
        ("engine.OrderCanceled", str(small.id)),
        ("engine.OrderAdjusted", str(keep.id)),
    ]
    small.refresh_from_db()
    keep.refresh_from_db()
    assert (small.status, small.cancel_reason) == ("canceled", "user")
    assert (keep.status, keep.qty, keep.limit_price) == ("new", Decimal("2"), Decimal("990.00"))
    adjusted = next(e.payload for e in out if e.event_type == "engine.OrderAdjusted")
    assert (Decimal(adjusted["qty"]), Decimal(adjusted["limit_price"])) == (keep.qty, keep.limit_price)


def test_an_order_a_split_would_take_beyond_the_engines_domain_is_canceled_as_the_engine_decides(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    """Two 1000-for-1 splits: an order of 100 shares ends at the domain's largest quantity (1e8 shares) and
    stays; one of 101 would pass it, so the second split cancels it before the engine splits, and the engine's
    own rule (``engine.book.split_keeps``) keeps exactly the same orders."""
    h = Harness()
    keep = submit(account, qty=Decimal("100"), limit_price=Decimal("40"))
    over = submit(account, qty=Decimal("101"), limit_price=Decimal("40"))
    h.pump()
    with transaction.atomic():
        corporate_action_apply(action_id=_split_action(1000, 1).pk)
    h.pump()
    over.refresh_from_db()
    assert (over.status, over.qty, over.limit_price) == ("new", Decimal("101000"), Decimal("0.04"))
    with transaction.atomic():
        corporate_action_apply(action_id=_split_action(1000, 1, date(2026, 11, 26)).pk)
    assert _last_commands(2) == ["orders.CancelRequested", "orders.SplitRequested"]  # the cancel first
    out = h.pump()
    assert [(e.event_type, e.payload["order_id"]) for e in out if "order_id" in e.payload] == [
        ("engine.OrderCanceled", str(over.id)),
        ("engine.OrderAdjusted", str(keep.id)),
    ]
    keep.refresh_from_db()
    over.refresh_from_db()
    assert over.status == "canceled"
    assert (keep.status, keep.qty, keep.limit_price) == ("new", Decimal("100000000"), Decimal("0.01"))
    assert h.engine.snapshot()  # every amount inside what a snapshot encodes
    assert CashHold.objects.get(order_id=str(over.id)).remaining == 0  # the canceled order's hold released


def test_a_rebuild_from_the_events_puts_a_partly_filled_split_order_on_post_split_terms(
    account: BrokerageAccount,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The projection takes ``OrderAdjusted``'s absolute terms: replaying the journal over reset rows (as
    ``rebuild_read_models orders`` does) gives exactly the live rows, fills booked before the split included."""
    h = Harness()
    journal = []
    buy = submit(account, qty=Decimal("10"), limit_price=Decimal("100.01"))
    journal += h.pump()
    journal += h.inject(mm("sell", "4", "100.01", "mm-s1", "market-maker"))  # 4 of 10 filled pre-split
    settlement_run(as_of=date(2026, 12, 31))  # splits wait for settled positions
    with transaction.atomic():
        corporate_action_apply(action_id=_split_action(2, 1).pk)
    journal += h.pump()
    buy.refresh_from_db()
    # Live: the split rewrote the row (4 filled -> 8, 10 -> 20, 100.01 -> 50.00, avg 100.01 -> 50.005).
    assert (buy.qty, buy.filled_qty, buy.limit_price, buy.filled_avg_price) == (
        Decimal("20"),
        Decimal("8"),
        Decimal("50.00"),
        Decimal("50.005"),
    )
    journal += h.inject(mm("sell", "5", "50", "mm-s2", "market-maker"))  # 5 more, post-split
    buy.refresh_from_db()
    assert (buy.status, buy.filled_qty) == ("partially_filled", Decimal("13"))

    history = [(env, MessageMeta("orders.events", 0, i, None)) for i, env in enumerate(journal)]
    monkeypatch.setattr(rebuild, "events_read", lambda timeout: history)
    result = rebuild.orders_rebuild(verify=True, check_consumer=False)
    assert result.events == len(journal)
    assert result.differences == []
