"""The projection scaled out: two ``orders.projection`` processes in one consumer group book the fills of the
same two accounts at once, and the books still balance to the cent.

ECS runs each consumer as a service of 1 to 6 tasks (``deploy/ecs/stacks/config.py``); ``orders.events`` is
keyed by symbol, so two tasks each own some of its partitions and book fills of one account concurrently: the same
cash ledger rows, the same house rows, one per-account ``trade_updates`` sequence. Here the live stack runs a
second projection process; one symbol per partition of ``orders.events`` means whichever way the group splits the
partitions, both processes book fills. A buyer and a seller cross on every symbol, round after round.

Checked afterwards: every order filled, each fill booked once, ``ledger_verify`` (cached balances equal their
postings, every entry and the trial balance zero), both sides' cash and positions moved by exactly the trades,
each account's ``trade_updates`` sequence gap-free, the group had two members with partitions, an offset
committed on every partition, and no process exited.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from decimal import Decimal
from string import ascii_uppercase
from typing import Any

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest
from confluent_kafka import TopicPartition
from django.core.management import call_command

from tests.e2e.conftest import (
    Customer,
    LiveStack,
    asset_create,
    customer_create,
    eventually,
    live_stack_running,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROUNDS = 4
PRICE = Decimal("100")


@pytest.fixture(scope="module")
def scaled_stack(kafka_topics: list[str], live_db: None) -> Iterator[LiveStack]:
    second = [sys.executable, "manage.py", "run_consumer", "orders.projection"]
    with live_stack_running(extra={"projection-2": second}) as stack:
        yield stack


def _group_members(group: str) -> list[set[int]]:
    """The partitions of ``orders.events`` each member of the group holds."""
    from apps.core import kafka

    physical = f"{kafka.kafka_settings()['TOPIC_PREFIX']}{group}"  # as ``consumer_create`` names it
    admin = kafka.admin_client()  # kept while the future runs: a collected client never completes it
    description = admin.describe_consumer_groups([physical])[physical].result(10)
    topic = kafka.topic_name("orders.events")
    return [
        {tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic}
        for m in description.members
    ]


def _two_members_with_partitions(group: str) -> list[set[int]] | None:
    members = _group_members(group)
    return members if len(members) == 2 and all(members) else None


def _committed_everywhere(group: str, partitions: int) -> bool:
    """Every partition of ``orders.events`` has a committed offset of the group: each member booked its share.

    (Not compared with the partition's end: the engine writes transactionally, so a commit marker follows the
    last record and the high watermark is one past what a consumer ever reads.)"""
    from apps.core import kafka

    topic = kafka.topic_name("orders.events")
    consumer = kafka.consumer_create(
        group_id=group
    )  # reads the group's offsets; never subscribes, so never joins
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return all(tp.offset > 0 for tp in committed)
    finally:
        consumer.close()


def _filled(customer: Customer, n: int) -> bool:
    from apps.orders.models import Order

    return Order.objects.filter(account_id=customer.account_id, status="filled").count() == n


def test_two_projection_processes_book_one_accounts_fills_at_once_and_the_books_balance(
    scaled_stack: LiveStack,
) -> None:
    from django.conf import settings
    from django.test import override_settings

    from apps.accounts.models import BrokerageAccount
    from apps.core import kafka
    from apps.orders.consumers import ORDERS_PROJECTION
    from apps.orders.models import Fill, TradeUpdate
    from tests.e2e.conftest import _kafka_prefix

    partitions = kafka.declared_topic("orders.events").partitions
    # One symbol per partition (orders.events is keyed by symbol): both processes book fills however they split.
    symbols = kafka.keys_per_partition(
        partitions, ("PX" + "".join(p) for p in itertools.product(ascii_uppercase, repeat=2))
    )
    for symbol in symbols:
        asset_create(symbol, PRICE)
    buyer = customer_create(email="buyer@scaled.example.com", cash=Decimal("100000"))
    seller = customer_create(email="seller@scaled.example.com", shares=dict.fromkeys(symbols, Decimal("100")))
    buyer_api = TradingClient(buyer.key_id, buyer.secret, url_override=scaled_stack.base_url)
    seller_api = TradingClient(seller.key_id, seller.secret, url_override=scaled_stack.base_url)
    group = ORDERS_PROJECTION.group

    with override_settings(KAFKA={**settings.KAFKA, "TOPIC_PREFIX": _kafka_prefix()}):
        # Both processes in the group, each with partitions of orders.events, before any order.
        members = eventually(
            lambda: _two_members_with_partitions(group),
            what="two projection members, each with partitions",
            stack=scaled_stack,
        )
        assert sorted(p for m in members for p in m) == list(range(partitions))

        for _ in range(ROUNDS):
            for symbol in symbols:
                for api, side in ((seller_api, OrderSide.SELL), (buyer_api, OrderSide.BUY)):
                    request: Any = LimitOrderRequest(
                        symbol=symbol,
                        qty=1,
                        side=side,
                        time_in_force=TimeInForce.DAY,
                        limit_price=float(PRICE),
                    )
                    api.submit_order(request)
        trades = ROUNDS * len(symbols)
        eventually(lambda: _filled(buyer, trades) and _filled(seller, trades), what="every order filled")
        eventually(
            lambda: _committed_everywhere(group, partitions), what="an offset committed on every partition"
        )

    assert scaled_stack.dead() == {}
    accounts = [buyer.account_id, seller.account_id]
    fills = list(Fill.objects.filter(account_id__in=accounts).values_list("fill_id", "account_id", "qty"))
    assert len(fills) == 2 * trades
    assert len({f[0] for f in fills}) == len(fills)  # each fill booked once
    call_command("ledger_verify")  # raises CommandError on any break

    cost = PRICE * trades
    buyer_positions = {p.symbol: Decimal(p.qty) for p in buyer_api.get_all_positions()}  # type: ignore[union-attr]
    seller_positions = {p.symbol: Decimal(p.qty) for p in seller_api.get_all_positions()}  # type: ignore[union-attr]
    assert buyer_positions == dict.fromkeys(symbols, Decimal(ROUNDS))
    assert seller_positions == dict.fromkeys(symbols, Decimal(100 - ROUNDS))
    assert Decimal(str(buyer_api.get_account().cash)) == Decimal("100000") - cost  # type: ignore[union-attr]
    seller_fees = cost - Decimal(str(seller_api.get_account().cash))  # type: ignore[union-attr]
    assert Decimal(0) <= seller_fees < trades * Decimal("0.10"), seller_fees  # regulatory fees on the sells

    for account_id in accounts:
        seqs = list(
            TradeUpdate.objects.filter(account_id=account_id).order_by("seq").values_list("seq", flat=True)
        )
        assert seqs == list(range(1, len(seqs) + 1)), "trade_updates sequence with a gap"
        assert len(seqs) >= 2 * trades  # at least new + fill per order
    assert (
        BrokerageAccount.objects.filter(pk__in=accounts, status=BrokerageAccount.Status.ACTIVE).count() == 2
    )
