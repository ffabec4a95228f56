"""The set-based chunk apply (``engine_events_apply``) has exactly the effect of the events applied one by one.

Real order service → real engine core → engine-runner envelopes, collected first; then applied two ways on the
same starting state (one event per call, then rolled back; and in chunks) and compared row by row: orders, fills,
trade updates (seq, payload with its order snapshot and position_qty), ledger entries and postings, holds and
reservations. Then the consumer path proper: ``inbox_apply_many`` with one after-commit push per chunk, and a
replayed chunk that changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import BrokerageAccount
from apps.core import events
from apps.core.consumers import MessageMeta, inbox_apply_many
from apps.core.models import StoredEvent
from apps.orders.consumers import ORDERS_PROJECTION
from apps.orders.engine_runner import Origin, command_decode, event_envelope
from apps.orders.models import Fill, Order, TradeUpdate
from apps.orders.projection import engine_event_apply, engine_events_apply
from apps.orders.types import StopLossSpec, TakeProfitSpec
from apps.settlement.models import CashHold, JournalEntry, LedgerAccount, Posting, ShareReservation
from apps.settlement.services import shares_deposit_post
from engine import commands as ec
from engine.engine import Engine
from tests.orders.factories import funded_account
from tests.orders.test_projection import account, clock, mm_sell, submit  # noqa: F401

pytestmark = pytest.mark.django_db


class Recorder:
    """Runs the outbox commands (and injected ones) through one engine and keeps the projection's events."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.seq = 0
        self.seen = 0
        self.events: list[events.EventEnvelope] = []

    def _apply(self, command_env: events.EventEnvelope, command: ec.Command) -> None:
        self.seq += 1
        for i, ev in enumerate(self.engine.apply(self.seq, command)):
            env = event_envelope(ev, i, origin=Origin("test-incarnation", 0), command=command_env)
            if env.event_type in (ORDERS_PROJECTION.event_types or ()):
                self.events.append(env)

    def pump(self) -> None:
        for row in StoredEvent.objects.filter(topic="orders.commands", id__gt=self.seen).order_by("id"):
            self.seen = row.id
            self._apply(*command_decode(bytes(row.body)))

    def inject(self, command: ec.Command) -> None:
        env = events.new_envelope(
            event_type="orders.OrderSubmitted",
            aggregate_type="order",
            aggregate_id="mm",
            sequence=1,
            payload={"command": {}},
            occurred_at=datetime(2026, 11, 24, 15, 0, 1, tzinfo=UTC),
        )
        self._apply(env, command)


def scenario(account: BrokerageAccount) -> list[events.EventEnvelope]:  # noqa: F811
    """Two buyers and a seller: partial and full fills, a release then a later fill of the same account,
    cancels of resting and partially filled orders (buy and sell), and a bracket whose legs activate."""
    other = funded_account(cash=Decimal("10000"))
    seller = funded_account(cash=Decimal("0"))
    with transaction.atomic():
        shares_deposit_post(
            account=seller, symbol="AAPL", qty=Decimal("100"), cost_basis=Decimal("5000"), transfer_id="t-s"
        )
    r = Recorder()
    o1 = submit(account, qty=Decimal("10"), limit_price=Decimal("100"))
    o2 = submit(account, qty=Decimal("5"), limit_price=Decimal("100"))
    submit(
        other,
        qty=Decimal("2"),
        limit_price=Decimal("100"),
        order_class="bracket",
        take_profit=TakeProfitSpec(limit_price=Decimal("105")),
        stop_loss=StopLossSpec(stop_price=Decimal("95")),
    )
    o6 = submit(other, qty=Decimal("10"), limit_price=Decimal("99"))
    r.pump()
    r.inject(mm_sell("6", "99.5", "mm-1"))  # o1 partially
    submit(seller, side="sell", qty=Decimal("11"), limit_price=Decimal("100"))  # o1 rest, o2, bracket entry
    r.pump()
    submit(seller, side="sell", qty=Decimal("4"), limit_price=Decimal("99"))  # o6 partially
    s2 = submit(seller, side="sell", qty=Decimal("3"), limit_price=Decimal("101"))  # rests
    r.pump()
    r.inject(ec.CancelOrder(order_id=str(o6.id)))
    r.inject(ec.CancelOrder(order_id=str(s2.id)))
    o3 = submit(account, qty=Decimal("1"), limit_price=Decimal("98"))
    r.pump()
    r.inject(ec.CancelOrder(order_id=str(o3.id)))
    assert {o1.id, o2.id} <= {Order.objects.get(id=o.id).id for o in (o1, o2)}
    return r.events


def state() -> dict[str, Any]:
    """Every row the projection writes; ledger entries by their source (release entries are queued after the
    chunk's fills, so their ids interleave differently: the rows, not their ids, must be equal)."""
    entries = {e.pk: e for e in JournalEntry.objects.all()}
    rows = {la.pk: (la.account_id, la.kind, la.asset) for la in LedgerAccount.objects.all()}
    postings: dict[int, list[Any]] = {}
    for p in Posting.objects.all():
        postings.setdefault(p.entry_id, []).append((rows[p.ledger_account_id], p.amount))
    order_fields = [f.attname for f in Order._meta.concrete_fields]
    return {
        "orders": sorted(tuple(str(getattr(o, f)) for f in order_fields) for o in Order.objects.all()),
        "fills": sorted(
            Fill.objects.values_list(
                "fill_id", "trade_id", "order_id", "qty", "price", "liquidity", "filled_at"
            )
        ),
        "updates": list(
            TradeUpdate.objects.order_by("account_id", "seq").values_list(
                "account_id", "seq", "order_id", "event", "source_id", "data", "created_at"
            )
        ),
        "entries": sorted(
            (
                e.source_type,
                e.source_id,
                e.entry_type,
                str(e.account_id),
                str(e.details),
                sorted(postings.get(e.pk, []), key=str),
            )
            for e in entries.values()
        ),
        "balances": sorted(
            (str(la.account_id), la.kind, la.asset, la.balance) for la in LedgerAccount.objects.all()
        ),
        "holds": sorted(
            CashHold.objects.values_list("order_id", "remaining", "unsettled_remaining", "release_count")
        ),
        "reservations": sorted(ShareReservation.objects.values_list("order_id", "remaining")),
    }


def rolled_back(apply: Callable[[], None]) -> dict[str, Any]:
    with transaction.atomic():
        apply()
        snap = state()
        transaction.set_rollback(True)
    return snap


def test_scenario_covers_the_event_mix(account: BrokerageAccount) -> None:  # noqa: F811
    evs = scenario(account)
    kinds = [e.event_type.removeprefix("engine.") for e in evs]
    assert {k: kinds.count(k) for k in sorted(set(kinds))} == {
        "OrderAccepted": 11,
        "OrderActivated": 2,
        "OrderCanceled": 3,
        "OrderFilled": 10,
    }


@pytest.mark.parametrize("size", [pytest.param(1000, id="one-chunk"), pytest.param(7, id="chunks-of-7")])
def test_chunked_apply_equals_one_by_one(account: BrokerageAccount, size: int) -> None:  # noqa: F811
    evs = scenario(account)

    def each() -> None:
        for e in evs:
            engine_event_apply(e)

    one_by_one = rolled_back(each)

    def chunked() -> None:
        for i in range(0, len(evs), size):
            engine_events_apply([(e, None) for e in evs[i : i + size]])

    assert rolled_back(chunked) == one_by_one
    # And the one-by-one result is the real one: every order terminal or resting, holds released once.
    assert [u[3] for u in one_by_one["updates"] if u[0] == account.pk] == [
        "new",
        "new",
        "partial_fill",
        "fill",
        "fill",
        "new",
        "canceled",
    ]


def test_consumer_chunks_push_once_per_commit_and_replay_changes_nothing(
    account: BrokerageAccount,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    evs = scenario(account)
    items = [(e, MessageMeta("orders.events", 0, n, e.aggregate_id)) for n, e in enumerate(evs)]
    with django_capture_on_commit_callbacks() as callbacks, CaptureQueriesContext(connection) as queries:
        assert inbox_apply_many(ORDERS_PROJECTION, items[:12]) == 12
        assert inbox_apply_many(ORDERS_PROJECTION, items[12:]) == len(items) - 12
    assert len(callbacks) == 2  # one push per chunk, not one per trade update
    # Set-based: the projection's own statements are a fixed few per chunk, whatever its events (inbox insert,
    # one lock of the orders named and those they replace, fill and trade-update dedupe, orders update, fills
    # insert, seq ranges, trade updates insert, and here, as both chunks name a bracket's legs, the legs' ids read
    # before the lock and their read for the order snapshot); settlement adds one booking per chunk plus, per
    # fill, the fee schedule read and lot relief.
    own = [q["sql"] for q in queries.captured_queries if "orders_" in q["sql"] or "core_" in q["sql"]]
    assert len(own) == 2 * 10
    assert len(queries) < 4 * len(items)
    before = state()
    assert TradeUpdate.objects.filter(account=account).count() == 7
    with django_capture_on_commit_callbacks() as again:
        assert inbox_apply_many(ORDERS_PROJECTION, items) == 0
        with transaction.atomic():
            engine_events_apply(items)  # even past the inbox: fills and trade updates are unique by source
    assert (state(), len(again)) == (before, 0)


@pytest.mark.parametrize(
    "prebooked", [pytest.param(0, id="projection-books"), pytest.param(6, id="bridge-booked-first")]
)
def test_position_qty_is_the_position_after_each_fill(account: BrokerageAccount, prebooked: int) -> None:  # noqa: F811
    """The settlement bridge may book fills before the projection sees them: each fill's update still carries
    the position right after that fill (the account starts flat and buys 6, 4 and 5)."""
    from apps.settlement.consumers import fill_data_from_event
    from apps.settlement.services import fill_settle_trade_date

    evs = scenario(account)
    fills = [
        e for e in evs if e.event_type == "engine.OrderFilled" and e.payload["account_id"] != "market-maker"
    ]
    with transaction.atomic():
        for e in fills[:prebooked]:
            fill_settle_trade_date(fill=fill_data_from_event(e.payload))
    with transaction.atomic():
        engine_events_apply([(e, None) for e in evs])
    got = [
        (u.event, u.data.get("qty"), u.data.get("position_qty"))
        for u in TradeUpdate.objects.filter(account=account).order_by("seq")
        if u.event in ("fill", "partial_fill")
    ]
    assert got == [("partial_fill", "6", "6"), ("fill", "4", "10"), ("fill", "5", "15")]


def test_a_failed_trade_updates_push_is_logged_not_raised(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A real layer that cannot reach its Redis (nothing listens on port 1): the push fails after the commit.
    from channels.layers import channel_layers

    from apps.orders.projection import _push_many

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    channel_layers.backends.clear()
    try:
        with caplog.at_level("WARNING", logger="apps.orders.projection"):
            _push_many([("acct-1", {"event": "fill", "seq": 1})])
    finally:
        channel_layers.backends.clear()
    assert any("trade_updates push failed" in r.getMessage() for r in caplog.records)
