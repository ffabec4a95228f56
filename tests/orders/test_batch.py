"""POST /v2/orders/batch against the real database: one outcome per item, all-or-nothing writes per item,
per-item idempotency by client_order_id, whole-request idempotency, running buying power; events_record_bulk."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from django.db import transaction
from rest_framework.test import APIClient

from apps.accounts.models import BrokerageAccount
from apps.core.errors import ValidationError
from apps.core.markettime import FixedClock
from apps.core.markettime_config import market_clock_override
from apps.core.models import StoredEvent
from apps.core.outbox import EventSpec, event_record, events_record_bulk
from apps.orders.models import Order
from apps.settlement.bulk import reservations_open
from apps.settlement.models import CashHold, JournalEntry, ShareReservation
from apps.settlement.selectors import cash_balances, ledger_balance_breaks, unbalanced_entries
from tests.orders.factories import asset_create, funded_account

pytestmark = pytest.mark.django_db

OPEN_AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday 10:00 New York, regular session


@pytest.fixture(autouse=True)
def clock(redis_client: Any) -> Iterator[FixedClock]:
    fixed = FixedClock(OPEN_AT)
    market_clock_override(fixed)
    yield fixed
    market_clock_override(None)


@pytest.fixture
def account() -> BrokerageAccount:
    asset_create(symbol="AAPL")
    asset_create(symbol="IBM", fractionable=False, exchange="NYSE")
    return funded_account(Decimal("100000"))


@pytest.fixture
def client(account: BrokerageAccount) -> APIClient:
    c = APIClient()
    c.force_authenticate(account.owner)
    return c


def buy(qty: str, price: str = "100", **extra: Any) -> dict[str, Any]:
    return {
        "symbol": "AAPL",
        "qty": qty,
        "side": "buy",
        "type": "limit",
        "time_in_force": "day",
        "limit_price": price,
        **extra,
    }


def post(client: APIClient, orders: list[dict[str, Any]], **extra: Any) -> Any:
    return client.post("/v2/orders/batch", {"orders": orders}, format="json", **extra)


def counts() -> tuple[int, int, int, int]:
    return (
        Order.objects.count(),
        StoredEvent.objects.filter(topic="orders.commands").count(),
        CashHold.objects.count(),
        JournalEntry.objects.filter(source_type="hold").count(),
    )


def test_mixed_items_each_get_their_outcome_and_invalid_ones_write_nothing(
    client: APIClient, account: BrokerageAccount
) -> None:
    before = cash_balances(account)
    response = post(
        client,
        [
            buy("10", client_order_id="a"),
            buy("-1"),  # serializer: not positive
            {**buy("5"), "symbol": "NOPE"},  # service: unknown symbol
            buy("3", price="100.001"),  # service: off tick
            buy("2", client_order_id="b"),
        ],
    )

    assert response.status_code == 207, response.content
    items = response.json()
    assert [i["status"] for i in items] == [201, 422, 422, 422, 201]
    assert items[0]["body"]["client_order_id"] == "a"
    assert items[0]["body"]["status"] == "pending_new"
    assert items[1]["body"]["field"] == "qty"
    assert items[2]["body"]["error"] == "unknown_symbol"
    assert items[3]["body"]["error"] == "off_tick"
    assert items[4]["body"]["client_order_id"] == "b"
    assert counts() == (2, 2, 2, 2)
    holds = dict(CashHold.objects.values_list("order_id", "amount"))
    assert holds == {
        items[0]["body"]["id"]: Decimal("1000.0000"),
        items[4]["body"]["id"]: Decimal("200.0000"),
    }
    after = cash_balances(account)
    assert (after.settled, after.held) == (before.settled - Decimal("1200"), Decimal("1200"))
    assert ledger_balance_breaks() == []
    assert unbalanced_entries() == []


def test_engine_commands_are_the_single_order_contract_in_request_order(
    client: APIClient, account: BrokerageAccount
) -> None:
    response = post(client, [buy("1", client_order_id="x1"), buy("2", client_order_id="x2")])

    ids = [i["body"]["id"] for i in response.json()]
    events = list(StoredEvent.objects.filter(topic="orders.commands").order_by("id"))
    assert [(e.aggregate_id, e.sequence, e.key, e.event_type) for e in events] == [
        (ids[0], 1, "AAPL", "orders.OrderSubmitted"),
        (ids[1], 1, "AAPL", "orders.OrderSubmitted"),
    ]
    payload = msgspec.json.decode(bytes(events[1].body))["payload"]
    assert payload["account_id"] == str(account.id)
    assert payload["command"]["order_id"] == ids[1]
    assert payload["command"]["qty_e9"] == 2_000_000_000
    assert payload["command"]["limit_price_e4"] == 1_000_000


def test_insufficient_buying_power_mid_batch_rejects_exactly_the_unaffordable_items(
    client: APIClient, account: BrokerageAccount
) -> None:
    response = post(client, [buy("600"), buy("500"), buy("300"), buy("101")])

    items = response.json()
    assert [i["status"] for i in items] == [201, 403, 201, 403]
    assert items[1]["body"]["error"] == "insufficient_buying_power"
    assert Decimal(items[1]["body"]["details"]["buying_power"]) == Decimal("40000")
    assert Decimal(items[3]["body"]["details"]["buying_power"]) == Decimal("10000")
    assert counts() == (2, 2, 2, 2)
    bal = cash_balances(account)
    assert (bal.settled, bal.held, bal.buying_power) == (Decimal("10000"), Decimal("90000"), Decimal("10000"))
    assert ledger_balance_breaks() == []


def test_sell_without_shares_is_refused_and_reserves_nothing(client: APIClient) -> None:
    response = post(client, [{**buy("1"), "side": "sell"}])

    assert [i["status"] for i in response.json()] == [403]
    assert response.json()[0]["body"]["error"] == "insufficient_qty"
    assert ShareReservation.objects.count() == 0
    assert counts() == (0, 0, 0, 0)


def test_self_trade_against_an_earlier_item_of_the_same_batch_is_refused(client: APIClient) -> None:
    response = post(client, [buy("1", price="100"), {**buy("1", price="99"), "side": "sell"}])

    assert [i["status"] for i in response.json()] == [201, 403]
    assert response.json()[1]["body"]["rule"] == "self_trade_prevention"
    assert counts() == (1, 1, 1, 1)


def test_self_trade_against_an_order_stored_by_an_earlier_batch_is_refused(client: APIClient) -> None:
    assert [i["status"] for i in post(client, [buy("1", price="100"), buy("1", price="97")]).json()] == [
        201,
        201,
    ]

    # Only the sides an item can cross are read back: the sell crosses the stored buy at 100, more buys do not.
    response = post(client, [{**buy("1", price="99"), "side": "sell"}])
    assert [i["status"] for i in response.json()] == [403]
    assert response.json()[0]["body"]["rule"] == "self_trade_prevention"
    assert [i["status"] for i in post(client, [buy("1", price="98")]).json()] == [201]
    # A sell above every stored buy passes the crossing rules (and is refused next: the account holds no shares).
    response = post(client, [{**buy("1", price="101"), "side": "sell"}, buy("1", price="96")])
    assert [i["status"] for i in response.json()] == [403, 201]
    assert response.json()[0]["body"]["error"] == "insufficient_qty"
    assert Order.objects.filter(side="buy").count() == 4


@pytest.mark.parametrize(
    ("second", "expected_status"),
    [
        pytest.param(buy("10", client_order_id="k"), 200, id="same-terms-returns-stored-order"),
        pytest.param(buy("10.000", client_order_id="k"), 200, id="same-terms-other-scale"),
        pytest.param(buy("11", client_order_id="k"), 422, id="different-terms-422"),
    ],
)
def test_resent_item_is_idempotent_by_client_order_id(
    client: APIClient, second: dict[str, Any], expected_status: int
) -> None:
    first = post(client, [buy("10", client_order_id="k")]).json()[0]
    before = counts()

    again = post(client, [second, buy("1", client_order_id="new")]).json()

    assert [i["status"] for i in again] == [expected_status, 201]
    if expected_status == 200:
        assert again[0]["body"] == first["body"]
    else:
        assert again[0]["body"]["error"] == "duplicate_client_order_id"
    assert counts() == (before[0] + 1, before[1] + 1, before[2] + 1, before[3] + 1)


def test_duplicate_client_order_id_inside_one_batch(client: APIClient) -> None:
    items = post(
        client,
        [buy("1", client_order_id="d"), buy("1", client_order_id="d"), buy("2", client_order_id="d")],
    ).json()

    assert [i["status"] for i in items] == [201, 200, 422]
    assert items[1]["body"]["id"] == items[0]["body"]["id"]
    assert counts() == (1, 1, 1, 1)


def test_whole_request_replay_under_idempotency_key(client: APIClient) -> None:
    orders = [buy("1"), buy("-1")]
    first = post(client, orders, HTTP_IDEMPOTENCY_KEY="batch-1")
    before = counts()

    again = post(client, orders, HTTP_IDEMPOTENCY_KEY="batch-1")
    other = post(client, [buy("2")], HTTP_IDEMPOTENCY_KEY="batch-1")

    assert again.status_code == 207
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert counts() == before == (1, 1, 1, 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"orders": []}, "orders", id="empty"),
        pytest.param({"orders": [buy("1")] * 1001}, "orders", id="over-1000"),
        pytest.param({}, "orders", id="missing"),
    ],
)
def test_malformed_batch_is_422_and_writes_nothing(
    client: APIClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/v2/orders/batch", body, format="json")

    assert response.status_code == 422
    assert response.json()["field"] == field
    assert counts() == (0, 0, 0, 0)


def test_events_record_bulk_continues_each_aggregate_sequence_in_order() -> None:
    with transaction.atomic():
        event_record(
            topic="t", key="k", event_type="x.A", aggregate_type="agg", aggregate_id="1", payload={"n": 0}
        )
        envelopes = events_record_bulk(
            [
                EventSpec(
                    topic="t", key="k", event_type="x.B", aggregate_type="agg", aggregate_id=a, payload={}
                )
                for a in ("1", "2", "1")
            ]
        )

    assert [(e.aggregate_id, e.sequence) for e in envelopes] == [("1", 2), ("2", 1), ("1", 3)]
    rows = list(StoredEvent.objects.filter(aggregate_type="agg").order_by("id"))
    assert [(r.aggregate_id, r.sequence, r.event_type) for r in rows] == [
        ("1", 1, "x.A"),
        ("1", 2, "x.B"),
        ("2", 1, "x.B"),
        ("1", 3, "x.B"),
    ]


def test_a_client_order_id_taken_between_read_and_write_is_a_422(
    client: APIClient, account: BrokerageAccount
) -> None:
    # As if a concurrent request stored "race" after this batch read the stored client_order_ids: the
    # COPY of the batch's orders hits the unique constraint, and the whole batch is refused, nothing written.
    from apps.orders import batch as batch_module

    first = post(client, [buy("1", client_order_id="race")]).json()[0]["body"]
    stored = Order.objects.get(id=first["id"])
    twin = Order(**{f.attname: getattr(stored, f.attname) for f in Order._meta.concrete_fields})
    twin.id = uuid.uuid4()
    before = counts()
    with pytest.raises(ValidationError) as caught, transaction.atomic():
        batch_module._write(reservations_open(account=account, sell_symbols=set()), [(twin, [], None)])  # type: ignore[list-item]
    assert caught.value.error == "duplicate_client_order_id"
    assert counts() == before
