"""Issue 3's split races, end to end: order transactions that interleave with a split on real connections.

The order, replace and batch paths read the asset FOR KEY SHARE first and the split locks it FOR UPDATE
first: a split waits for an order transaction that wrote its rows before it and then adjusts them (its
command, earlier in the outbox at the old epoch, is adjusted by ``SplitApply`` in the engine the same way),
and an order that comes after the split waits for it and reads the new epoch and terms; a split and a replace
of one symbol no longer deadlock. A producer that skips the lock still meets the engine's backstop: its
pre-split command, published after ``SplitApply``, is rejected (``split_epoch_stale``) and the projection's
rejected path releases its hold exactly once. ``Relay.publish`` models the relay: every committed command not
yet published, oldest id first.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, transaction

from apps.accounts.models import BrokerageAccount
from apps.core import events
from apps.core.consumers import MessageMeta, inbox_apply
from apps.core.errors import BusinessRuleViolation
from apps.core.markettime_config import market_clock
from apps.core.models import StoredEvent
from apps.orders import risk, services
from apps.orders.batch import BatchOutcome, orders_submit_batch
from apps.orders.consumers import ORDERS_PROJECTION
from apps.orders.engine_runner import command_decode
from apps.orders.models import Asset, Fill, Order, TradeUpdate
from apps.orders.projection import engine_event_apply
from apps.orders.types import OrderRequest
from apps.settlement import selectors as settlement_selectors
from apps.settlement import services as settlement_services
from apps.settlement.corporate_actions import corporate_action_apply
from apps.settlement.models import CashHold, CorporateAction, JournalEntry, TaxLot
from tests.orders.factories import asset_create
from tests.orders.test_projection import Harness, account, clock, mm, replace, submit  # noqa: F401

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


def _blocked_by(pid: int) -> list[int]:
    """The backends ``pid`` is waiting for (empty when it waits for no lock)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_blocking_pids(%s)", [pid])
        row = cursor.fetchone()
    return list(row[0]) if row is not None else []


class Txn(threading.Thread):
    """``body`` in one transaction on the thread's own connection; with ``hold`` it stays open until released.

    ``written`` is set once ``body`` ran (still inside the transaction when held); ``done`` once the thread
    ended (committed, or failed: ``error``).
    """

    def __init__(self, body: Callable[[], object], *, hold: bool) -> None:
        super().__init__()
        self.body, self.hold = body, hold
        self.pid = 0
        self.result: object = None
        self.error: BaseException | None = None
        self.started_txn, self.written, self.done, self._release = (threading.Event() for _ in range(4))

    def run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            self.started_txn.set()
            with transaction.atomic():
                self.result = self.body()
                self.written.set()
                if self.hold:
                    self._release.wait(60)  # a safety bound only: every test path releases it
        except BaseException as exc:  # surfaced by the main thread's asserts
            self.error = exc
        finally:
            self.started_txn.set()
            self.written.set()
            self.done.set()
            connection.close()

    def release(self) -> None:
        self._release.set()


def wait_blocked(txn: Txn, *, by: Txn) -> bool:
    """Wait until ``txn`` waits for a lock ``by`` holds (True) or has finished without waiting (False)."""
    txn.started_txn.wait(60)
    while not txn.done.wait(0.02):
        if by.pid in _blocked_by(txn.pid):
            return True
    return False


def interleave(
    relay: Relay,
    action: CorporateAction,
    write: Callable[[], object],
    *,
    publish_before_order_commits: bool,
) -> tuple[object, list[events.EventEnvelope], bool]:
    """``write`` (an order transaction) stays open while the split runs on a third connection.

    The split either commits (it cannot see the open order) or waits for a lock the order transaction holds;
    either way the order then commits. With ``publish_before_order_commits`` the relay runs in between (what
    it can publish then: the split's committed rows). Returns ``write``'s result, that first publication and
    whether the split waited for the order transaction.
    """
    order = Txn(write, hold=True)
    split = Txn(lambda: corporate_action_apply(action_id=action.pk), hold=False)
    first: list[events.EventEnvelope] = []
    waited = False
    order.start()
    try:
        order.written.wait(60)
        assert order.error is None, order.error
        split.start()
        waited = wait_blocked(split, by=order)
        if publish_before_order_commits:
            first = relay.publish()
    finally:
        order.release()
        order.join()
        if split.is_alive() or split.done.is_set():
            split.join()
    assert order.error is None, order.error
    assert split.error is None, split.error
    return order.result, first, waited


def _submit_without_the_asset_lock(
    customer: BrokerageAccount, *, qty: Decimal, limit_price: Decimal
) -> Order:
    """What ``order_submit`` writes (row, hold, ``NewOrder``) by a producer that skips the asset lock.

    ``order_submit`` now reads the asset FOR KEY SHARE, so the split waits for it; a producer without that lock
    (an older release mid-rollout, a new path that forgets it) still meets the engine's epoch check.
    """
    data = OrderRequest(
        symbol="AAPL", side="buy", type="limit", time_in_force="day", qty=qty, limit_price=limit_price
    )
    asset = Asset.objects.get(symbol="AAPL")  # a plain read: a split does not wait for it
    cfg = risk.risk_config()
    ref = services.reference_price(asset)
    worst = services._worst_price(data, ref, cfg)
    order = services.order_new(
        account=customer, asset=asset, data=data, client_order_id=str(uuid.uuid4()), now=market_clock().now()
    )
    services._reserve(order, data, worst, ref, cfg)
    order.save(force_insert=True)
    services.command_record(
        order=order, event_type="orders.OrderSubmitted", command=services._engine_command(order, data)
    )
    return order


def test_order_committed_after_the_split_on_pre_split_terms_is_rejected_and_its_hold_released_once(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    relay = Relay()
    relay.inject(mm("sell", "10", "100.01", "mm-s1", "market-maker"))
    # A customer buys 10 @ 100.01, priced against the pre-split book, by a producer without the asset lock:
    # the split commits meanwhile and the relay publishes it before the order's transaction commits.
    result, first, waited = interleave(
        relay,
        _split_action(),
        lambda: _submit_without_the_asset_lock(account, qty=Decimal("10"), limit_price=Decimal("100.01")),
        publish_before_order_commits=True,
    )
    order = result
    assert isinstance(order, Order)
    assert waited is False  # nothing made the split wait
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


def test_order_written_before_the_split_and_committed_after_it_keeps_row_and_engine_in_step(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    # order_submit's transaction writes its rows before the split starts and commits after it; the relay runs
    # once both have committed. The order holds the asset FOR KEY SHARE, so the split waits for it and then
    # adjusts its row; its command (lower outbox id, epoch 0) reaches the engine before SplitApply, which
    # adjusts it there the same way.
    relay = Relay()
    result, _, waited = interleave(
        relay,
        _split_action(),
        lambda: submit(account, qty=Decimal("10"), limit_price=Decimal("99")),
        publish_before_order_commits=False,
    )
    order = result
    assert isinstance(order, Order)
    assert waited is True
    sent = StoredEvent.objects.get(event_type="orders.OrderSubmitted", aggregate_id=str(order.id))
    split_row = StoredEvent.objects.get(event_type="orders.SplitRequested")
    assert sent.id < split_row.id
    assert command_decode(bytes(sent.body))[1].split_epoch == 0  # type: ignore[union-attr]
    out = relay.publish()
    assert _payloads(out, "engine.OrderRejected") == []
    adjusted = _payloads(out, "engine.OrderAdjusted")
    assert [(p["order_id"], p["qty"], p["limit_price"]) for p in adjusted] == [(str(order.id), "20", "49.5")]
    order.refresh_from_db()
    assert (order.status, order.qty, order.limit_price) == ("new", Decimal("20"), Decimal("49.5"))
    # The engine's 20 fill against the row's 20: filled <= qty holds.
    relay.inject(mm("sell", "20", "49.5", "mm-s2", "market-maker"))
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.filled_avg_price) == (
        "filled",
        Decimal("20"),
        Decimal("49.5"),
    )


def test_an_order_submitted_while_a_split_is_in_flight_waits_and_is_priced_on_post_split_terms(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    relay = Relay()
    action = _split_action()
    split = Txn(lambda: corporate_action_apply(action_id=action.pk), hold=True)
    # 10 @ 100 was inside the collar before the split (reference 100) and is 2x the post-split reference.
    priced_before = Txn(lambda: submit(account, qty=Decimal("10"), limit_price=Decimal("100")), hold=False)
    priced_after = Txn(lambda: submit(account, qty=Decimal("10"), limit_price=Decimal("50")), hold=False)
    split.start()
    try:
        split.written.wait(60)
        assert split.error is None, split.error
        for txn in (priced_before, priced_after):
            txn.start()
            assert wait_blocked(txn, by=split) is True  # at the asset: nothing of the order written yet
    finally:
        split.release()
        for txn in (split, priced_before, priced_after):
            if txn.is_alive() or txn.done.is_set():
                txn.join()
    assert split.error is None, split.error
    # Both read the asset after the split committed: reference 50, epoch 1.
    assert isinstance(priced_before.error, BusinessRuleViolation)
    assert (priced_before.error.rule, priced_before.error.details["inputs"]["reference_price"]) == (
        "price_collar",
        "50.0000",
    )
    assert priced_after.error is None, priced_after.error
    order = priced_after.result
    assert isinstance(order, Order)
    assert list(Order.objects.values_list("id", flat=True)) == [order.id]
    sent = StoredEvent.objects.get(event_type="orders.OrderSubmitted")
    assert command_decode(bytes(sent.body))[1].split_epoch == 1  # type: ignore[union-attr]
    out = relay.publish()
    assert _payloads(out, "engine.OrderRejected") == []
    order.refresh_from_db()
    assert (order.status, order.qty, order.limit_price) == ("new", Decimal("10"), Decimal("50"))


def _resting_buy(customer: BrokerageAccount, relay: Relay) -> Order:
    """A buy 10 @ 99 the engine has accepted (epoch 0)."""
    order = submit(customer, qty=Decimal("10"), limit_price=Decimal("99"))
    assert [e.event_type for e in relay.publish()][:1] == ["engine.OrderAccepted"]
    return order


def test_replace_written_before_the_split_and_committed_after_it_keeps_rows_and_engine_in_step(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    relay = Relay()
    old = _resting_buy(account, relay)
    result, _, waited = interleave(
        relay,
        _split_action(),
        lambda: replace(account, old, limit_price=Decimal("98")),
        publish_before_order_commits=False,
    )
    new = result
    assert isinstance(new, Order)
    assert waited is True  # the replace read the asset FOR KEY SHARE before locking the order
    sent = StoredEvent.objects.get(event_type="orders.ReplaceRequested", aggregate_id=str(old.id))
    assert command_decode(bytes(sent.body))[1].split_epoch == 0  # type: ignore[union-attr]
    out = relay.publish()
    kinds = ("engine.OrderReplaced", "engine.SplitApplied", "engine.OrderAdjusted")
    assert [e.event_type for e in out if e.event_type in kinds] == list(kinds)
    assert _payloads(out, "engine.OrderRejected") == []
    adjusted = _payloads(out, "engine.OrderAdjusted")
    assert [(p["order_id"], p["qty"], p["limit_price"]) for p in adjusted] == [(str(new.id), "20", "49")]
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.status, new.status, new.qty, new.limit_price) == (
        "replaced",
        "new",
        Decimal("20"),
        Decimal("49"),
    )


def test_batch_written_before_the_split_and_committed_after_it_keeps_rows_and_engine_in_step(
    account: BrokerageAccount,  # noqa: F811
) -> None:
    asset_create(symbol="MSFT")
    relay = Relay()

    def batch() -> list[BatchOutcome]:
        items = [
            OrderRequest(
                symbol=symbol, side="buy", type="limit", time_in_force="day", qty=qty, limit_price=price
            )
            for symbol, qty, price in [
                ("MSFT", Decimal("5"), Decimal("99")),
                ("AAPL", Decimal("10"), Decimal("99")),
                ("AAPL", Decimal("3"), Decimal("98.99")),
            ]
        ]
        with transaction.atomic():
            return orders_submit_batch(account=account, items=items)

    result, _, waited = interleave(relay, _split_action(), batch, publish_before_order_commits=False)
    assert isinstance(result, list)
    assert [o.status for o in result] == [201, 201, 201]
    msft, aapl, aapl2 = (o.order for o in result)
    assert waited is True
    out = relay.publish()
    assert _payloads(out, "engine.OrderRejected") == []
    adjusted = _payloads(out, "engine.OrderAdjusted")
    assert [(p["order_id"], p["qty"], p["limit_price"]) for p in adjusted] == [
        (str(aapl.id), "20", "49.5"),
        (str(aapl2.id), "6", "49.49"),  # 98.99 / 2 = 49.495, a buy limit rounds down to the tick
    ]
    rows = {o.id: (o.symbol, o.status, o.qty, o.limit_price) for o in Order.objects.all()}
    assert rows == {
        msft.id: ("MSFT", "new", Decimal("5"), Decimal("99")),
        aapl.id: ("AAPL", "new", Decimal("20"), Decimal("49.5")),
        aapl2.id: ("AAPL", "new", Decimal("6"), Decimal("49.49")),
    }


@pytest.mark.parametrize("first", ["replace_first", "split_first"])
def test_a_split_and_a_replace_of_the_same_symbol_do_not_deadlock(
    account: BrokerageAccount,  # noqa: F811
    first: str,
) -> None:
    # Both orders deadlocked before the asset lock (40P01, one side aborted); the asset lock taken first by
    # both now serializes them.
    # replace_first: the replace holds the old order row and, at commit, needs the asset FOR KEY SHARE (the
    # deferred FK check of its new row); the split held the asset FOR UPDATE and waited for the old order row.
    # split_first: the customer holds AAPL, so the split locks their cash row before the open orders; a
    # replace locks its order row and then that cash row (the hold). A third transaction holding the
    # customer's tax lot stops the split after its ledger locks (and, under the old lock order, before its
    # order locks) while the replace starts: exactly the old deadlock window.
    if first == "split_first":
        with transaction.atomic():
            settlement_services.shares_deposit_post(
                account=account, symbol="AAPL", qty=Decimal("4"), cost_basis=Decimal("400"), transfer_id="t-1"
            )
    relay = Relay()
    old = _resting_buy(account, relay)
    action = _split_action()
    new_price = Decimal("49") if first == "split_first" else Decimal("98")
    replace_txn = Txn(lambda: replace(account, old, limit_price=new_price), hold=first == "replace_first")
    split_txn = Txn(lambda: corporate_action_apply(action_id=action.pk), hold=False)
    blocker = Txn(
        lambda: list(TaxLot.objects.select_for_update().filter(account=account, symbol="AAPL")),
        hold=True,
    )
    try:
        if first == "replace_first":
            replace_txn.start()
            replace_txn.written.wait(60)
            split_txn.start()
            assert wait_blocked(split_txn, by=replace_txn) is True
            replace_txn.release()
        else:
            blocker.start()
            blocker.written.wait(60)
            split_txn.start()
            assert wait_blocked(split_txn, by=blocker) is True  # past its first locks, stopped at the lots
            replace_txn.start()
            assert wait_blocked(replace_txn, by=split_txn) is True  # at the asset, before the order row
            blocker.release()
    finally:
        for txn in (replace_txn, blocker):
            txn.release()
        for txn in (blocker, split_txn, replace_txn):
            if txn.is_alive() or txn.done.is_set():
                txn.join()
    assert (replace_txn.error, split_txn.error, blocker.error) == (None, None, None)
    new = replace_txn.result
    assert isinstance(new, Order)
    sent = StoredEvent.objects.get(event_type="orders.ReplaceRequested", aggregate_id=str(old.id))
    epoch = command_decode(bytes(sent.body))[1].split_epoch  # type: ignore[union-attr]
    out = relay.publish()
    assert _payloads(out, "engine.OrderRejected") == []
    adjusted = [(p["order_id"], p["qty"], p["limit_price"]) for p in _payloads(out, "engine.OrderAdjusted")]
    old.refresh_from_db()
    new.refresh_from_db()
    if first == "replace_first":
        # The split waited for the replace and adjusted both rows; the engine replaces, then splits.
        assert epoch == 0
        assert adjusted == [(str(new.id), "20", "49")]
    else:
        # The replace waited for the split: it read the new epoch and the post-split old order (20 @ 49.5).
        assert epoch == 1
        assert adjusted == [(str(old.id), "20", "49.5")]
    assert (old.status, new.status, new.qty, new.limit_price) == (
        "replaced",
        "new",
        Decimal("20"),
        Decimal("49"),
    )
