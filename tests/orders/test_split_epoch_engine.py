"""Issue 3's split race, end to end: an order priced before a split whose transaction commits after it.

Two real database connections interleave as in production: the order's transaction reads the asset (split
epoch 0) and writes its Order row, hold and outbox command; the split's transaction commits meanwhile (it
cannot see the uncommitted order, so that row keeps its pre-split terms) and the relay publishes what is
committed, the ``SplitApply`` first. The order's command then reaches the engine after the split: the engine
rejects it (``split_epoch_stale``) and the projection's rejected path releases its hold exactly once.
``Relay.publish`` models the relay: every committed command not yet published, oldest id first.
"""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, transaction

from apps.accounts.models import BrokerageAccount
from apps.core import events
from apps.core.consumers import MessageMeta, inbox_apply
from apps.core.models import StoredEvent
from apps.orders.consumers import ORDERS_PROJECTION
from apps.orders.engine_runner import command_decode
from apps.orders.models import Asset, Fill, Order, TradeUpdate
from apps.orders.projection import engine_event_apply
from apps.settlement import selectors as settlement_selectors
from apps.settlement.corporate_actions import corporate_action_apply
from apps.settlement.models import CashHold, CorporateAction, JournalEntry
from tests.orders.test_projection import Harness, account, clock, mm, submit  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


class Relay(Harness):
    """The outbox relay's order: committed rows only, oldest first, each published once."""

    def __init__(self) -> None:
        super().__init__()
        self.published: set[int] = set()

    def publish(self) -> list[events.EventEnvelope]:
        out: list[events.EventEnvelope] = []
        rows = StoredEvent.objects.filter(topic="orders.commands").exclude(id__in=self.published)
        for row in rows.order_by("id"):
            self.published.add(row.id)
            env, command = command_decode(bytes(row.body))
            out += self._apply(env, command)
        return out


def _payloads(out: list[events.EventEnvelope], event_type: str) -> list[dict[str, object]]:
    return [e.payload for e in out if e.event_type == event_type]


def _split_action() -> CorporateAction:
    return CorporateAction.objects.create(
        kind="split",
        symbol="AAPL",
        effective_date=date(2026, 11, 25),
        ratio_num=2,
        ratio_den=1,
        cash_in_lieu_price=Decimal("50"),
    )


def _waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def interleave(
    customer: BrokerageAccount,
    relay: Relay,
    action: CorporateAction,
    *,
    limit_price: Decimal,
    publish_before_order_commits: bool,
) -> tuple[Order, list[events.EventEnvelope]]:
    """Buy 10 @ ``limit_price`` in a transaction that stays open while the split runs on a third connection.

    The split either commits (it cannot see the open order) or waits for a lock the order transaction holds;
    either way the order then commits. With ``publish_before_order_commits`` the relay runs in between
    (what it can publish then: the split's committed rows). Returns the order and that first publication.
    """
    written, commit, split_started, split_done = (threading.Event() for _ in range(4))
    result: dict[str, object] = {}

    def order_transaction() -> None:
        try:
            with transaction.atomic():
                result["order"] = submit(customer, qty=Decimal("10"), limit_price=limit_price)
                written.set()
                commit.wait(60)  # a safety bound only: the main thread sets it in every path
        except BaseException as exc:  # surfaced by the main thread's asserts
            result["error"] = exc
        finally:
            written.set()
            connection.close()

    def split_transaction() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                result["split_pid"] = cursor.fetchone()[0]
            split_started.set()
            with transaction.atomic():
                corporate_action_apply(action_id=action.pk)
        except BaseException as exc:
            result["split_error"] = exc
        finally:
            split_started.set()
            split_done.set()
            connection.close()

    order_thread = threading.Thread(target=order_transaction)
    split_thread = threading.Thread(target=split_transaction)
    order_thread.start()
    first: list[events.EventEnvelope] = []
    try:
        written.wait(60)
        assert "error" not in result, result
        split_thread.start()
        split_started.wait(60)
        pid = result.get("split_pid")
        # Until the split has committed, or is blocked behind the open order transaction.
        while not split_done.wait(0.02) and not (isinstance(pid, int) and _waiting_on_a_lock(pid)):
            pass
        if publish_before_order_commits:
            first = relay.publish()
    finally:
        commit.set()
        order_thread.join()
        if split_thread.is_alive() or split_done.is_set():
            split_thread.join()
    assert "error" not in result, result
    assert "split_error" not in result, result
    order = result["order"]
    assert isinstance(order, Order)
    return order, first


def test_order_committed_after_the_split_on_pre_split_terms_is_rejected_and_its_hold_released_once(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    relay = Relay()
    relay.inject(mm("sell", "10", "100.01", "mm-s1", "market-maker"))
    # A customer buys 10 @ 100.01, priced against the pre-split book; the split commits meanwhile and the
    # relay publishes it before the order's transaction commits.
    order, first = interleave(
        account, relay, _split_action(), limit_price=Decimal("100.01"), publish_before_order_commits=True
    )
    assert Asset.objects.get(symbol="AAPL").split_epoch == 1
    assert [e.event_type for e in first][:2] == ["engine.SplitApplied", "engine.OrderAdjusted"]
    assert _payloads(first, "engine.OrderAdjusted")[0]["limit_price"] == "50.01"  # the maker: 20 @ 50.01

    order.refresh_from_db()
    # The split could not see the open transaction's order: its row is on pre-split terms (the race).
    assert (order.status, order.qty, order.limit_price) == ("pending_new", Decimal("10"), Decimal("100.01"))
    sent = StoredEvent.objects.get(event_type="orders.OrderSubmitted", aggregate_id=str(order.id))
    assert command_decode(bytes(sent.body))[1].split_epoch == 0  # type: ignore[union-attr]

    second = relay.publish()
    # Accepted, it would have bought 10 of the maker's 20 post-split shares at 50.01 (half the position
    # the customer priced). The engine refuses it instead; nothing trades.
    assert [(e.event_type, e.payload["order_id"], e.payload["reason"]) for e in second] == [
        ("engine.OrderRejected", str(order.id), "split_epoch_stale")
    ]
    order.refresh_from_db()
    assert (order.status, order.reject_reason, order.filled_qty) == (
        "rejected",
        "split_epoch_stale",
        Decimal("0"),
    )
    assert not Fill.objects.exists()
    assert list(TradeUpdate.objects.filter(order=order).values_list("event", flat=True)) == ["rejected"]
    hold = CashHold.objects.get(order_id=str(order.id))
    assert (hold.remaining, hold.release_count) == (Decimal("0"), 1)
    releases = JournalEntry.objects.filter(source_type="hold_release", source_id__startswith=f"{order.id}:")
    assert releases.count() == 1
    cash = settlement_selectors.cash_balances(account)
    assert (cash.buying_power, cash.held) == (Decimal("10000"), Decimal("0"))

    # Redelivered (inbox) or re-applied past the inbox (projection): still released once.
    rejected = second[0]
    inbox_apply(ORDERS_PROJECTION, rejected, MessageMeta("orders.events", 0, 999, rejected.aggregate_id))
    with transaction.atomic():
        engine_event_apply(rejected)
    hold.refresh_from_db()
    assert (hold.remaining, hold.release_count, releases.count()) == (Decimal("0"), 1, 1)
    assert TradeUpdate.objects.filter(order=order).count() == 1

    # Priced after the split (epoch 1), the same customer's order trades on post-split terms.
    after = submit(account, qty=Decimal("20"), limit_price=Decimal("50.01"))
    out = relay.publish()
    assert [p["reason"] for p in _payloads(out, "engine.OrderRejected")] == []
    after.refresh_from_db()
    assert (after.status, after.filled_qty, after.filled_avg_price) == (
        "filled",
        Decimal("20"),
        Decimal("50.01"),
    )


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known gap (reported): the order's outbox row precedes SplitApply, so the engine adjusts an order "
    "whose row the split never saw; closing it needs the order transaction to read the asset FOR KEY SHARE",
)
def test_order_written_before_the_split_and_committed_after_it_keeps_row_and_engine_in_step(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    # The same interleaving, but the relay runs only once both transactions have committed: it publishes by
    # id, and the order's row (written first) goes out before the split's. The engine accepts the order under
    # the epoch it still has, then the split adjusts it there; its Order row, invisible to the split, is not.
    relay = Relay()
    order, _ = interleave(
        account, relay, _split_action(), limit_price=Decimal("99"), publish_before_order_commits=False
    )
    out = relay.publish()
    order.refresh_from_db()
    adjusted = _payloads(out, "engine.OrderAdjusted")
    assert [(p["order_id"], p["qty"], p["limit_price"]) for p in adjusted] == [(str(order.id), "20", "49.5")]
    # Today the row still says 10 @ 99 (a later fill of 20 then violates the row's filled <= qty CHECK).
    assert (order.qty, order.limit_price) == (Decimal("20"), Decimal("49.5"))
