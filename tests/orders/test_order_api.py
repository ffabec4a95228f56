"""POST/GET/PATCH/DELETE /v2/orders against the real database: validation, risk, idempotency, outbox contract."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import BrokerageAccount
from apps.core.markettime import FixedClock
from apps.core.markettime_config import market_clock_override
from apps.core.models import IdempotencyRecord, StoredEvent
from apps.orders.models import Order
from apps.settlement.models import CashHold
from engine import commands as ec
from tests.orders.factories import asset_create, funded_account

pytestmark = pytest.mark.django_db

# Tuesday 2026-11-24 10:00 New York: the regular session is open.
OPEN_AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
# Same day 03:00 New York: closed (before the pre-market).
CLOSED_AT = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clock() -> Iterator[FixedClock]:
    fixed = FixedClock(OPEN_AT)
    market_clock_override(fixed)
    yield fixed
    market_clock_override(None)


@pytest.fixture
def account() -> BrokerageAccount:
    asset_create(symbol="AAPL")
    asset_create(symbol="IBM", fractionable=False, exchange="NYSE")
    return funded_account()


@pytest.fixture
def client(account: BrokerageAccount) -> APIClient:
    c = APIClient()
    c.force_authenticate(account.owner)
    return c


LIMIT_BUY: dict[str, Any] = {
    "symbol": "AAPL",
    "qty": "10",
    "side": "buy",
    "type": "limit",
    "time_in_force": "day",
    "limit_price": "100.5",
}


def counts() -> tuple[int, int, int]:
    return Order.objects.count(), StoredEvent.objects.count(), CashHold.objects.count()


def post(client: APIClient, body: dict[str, Any], **extra: Any) -> Any:
    return client.post("/v2/orders", body, format="json", **extra)


# ------------------------------------------------------------------------------------------------ happy path


def test_limit_buy_writes_order_hold_and_exact_engine_command(
    client: APIClient, account: BrokerageAccount
) -> None:
    response = post(client, {**LIMIT_BUY, "client_order_id": "my-1"})

    assert response.status_code == 200, response.content
    body = response.json()
    order = Order.objects.get()
    assert body["id"] == str(order.id)
    assert body["client_order_id"] == "my-1"
    assert body["qty"] == "10"
    assert body["limit_price"] == "100.5"
    assert body["filled_qty"] == "0"
    assert body["status"] == "pending_new"
    assert body["time_in_force"] == "day"
    assert body["extended_hours"] is False
    assert body["submitted_at"] == "2026-11-24T15:00:00Z"
    hold = CashHold.objects.get()
    assert (hold.order_id, hold.amount) == (str(order.id), Decimal("1005.0000"))
    event = StoredEvent.objects.get(event_type="orders.OrderSubmitted")
    assert (event.topic, event.key, event.aggregate_type, event.aggregate_id) == (
        "orders.commands",
        "AAPL",
        "order",
        str(order.id),
    )
    payload = msgspec.json.decode(bytes(event.body))["payload"]
    expected = ec.NewOrder(
        order_id=str(order.id),
        account_id=str(account.id),
        symbol="AAPL",
        side="buy",
        type="limit",
        tif="day",
        qty_e9=10_000_000_000,
        limit_price_e4=1_005_000,
        split_epoch=0,
    )
    assert payload == {"command": msgspec.to_builtins(expected), "account_id": str(account.id)}
    assert msgspec.convert(payload["command"], ec.AnyCommand) == expected


def test_json_numbers_are_exact_decimals(client: APIClient) -> None:
    raw = (
        b'{"symbol":"AAPL","qty":10.0,"side":"buy","type":"limit","time_in_force":"day","limit_price":100.10}'
    )
    response = client.post("/v2/orders", raw, content_type="application/json")
    assert response.status_code == 200, response.content
    order = Order.objects.get()
    assert (order.qty, order.limit_price) == (Decimal("10"), Decimal("100.1"))
    assert CashHold.objects.get().amount == Decimal("1001.0000")


def test_market_buy_holds_reference_times_collar(client: APIClient) -> None:
    response = post(
        client, {"symbol": "AAPL", "qty": "3", "side": "buy", "type": "market", "time_in_force": "day"}
    )
    assert response.status_code == 200, response.content
    assert CashHold.objects.get().amount == Decimal("330.0000")  # 100 x 3 x 1.10


def test_bracket_creates_held_legs_and_one_command(client: APIClient, account: BrokerageAccount) -> None:
    body = {
        **LIMIT_BUY,
        "order_class": "bracket",
        "take_profit": {"limit_price": "110"},
        "stop_loss": {"stop_price": "95", "limit_price": "94.5"},
    }
    response = post(client, body)
    assert response.status_code == 200, response.content
    data = response.json()
    assert [(leg["side"], leg["type"], leg["status"]) for leg in data["legs"]] == [
        ("sell", "limit", "held"),
        ("sell", "stop_limit", "held"),
    ]
    order = Order.objects.get(parent__isnull=True)
    assert client.get(f"/v2/orders/{order.id}").json()["legs"] == data["legs"]
    assert Order.objects.count() == 3
    cmd = msgspec.json.decode(bytes(StoredEvent.objects.get().body))["payload"]["command"]
    assert cmd["order_class"] == "bracket"
    assert cmd["take_profit"] == {"limit_price_e4": 1_100_000}
    assert cmd["stop_loss"] == {"stop_price_e4": 950_000, "limit_price_e4": 945_000}


# ------------------------------------------------------------------------------------------------ bad input

BAD_INPUT = [
    pytest.param({"limit_price": "100.005"}, 422, "limit_price", "off_tick", id="off-tick"),
    pytest.param({"symbol": "ZZZZ"}, 422, "symbol", "unknown_symbol", id="unknown-symbol"),
    pytest.param({"side": "hold"}, 422, "side", "invalid_choice", id="wrong-side"),
    pytest.param({"type": "iceberg"}, 422, "type", "invalid_choice", id="wrong-type"),
    pytest.param({"time_in_force": "gtd"}, 422, "time_in_force", "invalid_choice", id="wrong-tif"),
    pytest.param({"side": 1}, 422, "side", "invalid_choice", id="enum-as-int"),
    pytest.param({"qty": "1.0000000001"}, 422, "qty", "max_decimal_places", id="over-precise-qty"),
    pytest.param(
        {"limit_price": "100.00001"}, 422, "limit_price", "max_decimal_places", id="over-precise-price"
    ),
    pytest.param({"qty": "１２"}, 422, "qty", "invalid", id="non-ascii-digits"),
    pytest.param({"qty": "1e3"}, 422, "qty", "invalid", id="exponent"),
    pytest.param({"qty": "1_000"}, 422, "qty", "invalid", id="underscore"),
    pytest.param({"qty": " 10"}, 422, "qty", "invalid", id="whitespace"),
    pytest.param({"qty": True}, 422, "qty", "invalid", id="boolean"),
    pytest.param({"qty": "10000000000000"}, 422, "qty", "max_value", id="huge-qty"),
    pytest.param({"limit_price": "999999999999"}, 422, "limit_price", "max_value", id="huge-price"),
    pytest.param({"qty": "-1"}, 422, "qty", "positive", id="negative"),
    pytest.param({"qty": "0"}, 422, "qty", "positive", id="zero"),
    pytest.param({"limit_price": "0"}, 422, "limit_price", "positive", id="zero-price"),
    pytest.param({"side": None}, 422, "side", "null", id="null-side"),
    pytest.param({"qty": None}, 422, "qty", "invalid_order", id="neither-qty-nor-notional"),
    pytest.param({"notional": "500"}, 422, "qty", "invalid_order", id="both-qty-and-notional"),
    pytest.param({"qty": None, "notional": "500"}, 422, "notional", "invalid_order", id="notional-on-limit"),
    pytest.param({"limit_price": None}, 422, "limit_price", "invalid_order", id="limit-without-price"),
    pytest.param({"type": "market"}, 422, "limit_price", "invalid_order", id="market-with-limit-price"),
    pytest.param(
        {"type": "trailing_stop", "limit_price": None, "trail_price": "1", "trail_percent": "1"},
        422,
        "trail_price",
        "invalid_order",
        id="trailing-both",
    ),
    pytest.param(
        {"type": "trailing_stop", "limit_price": None},
        422,
        "trail_price",
        "invalid_order",
        id="trailing-neither",
    ),
    pytest.param(
        {"type": "market", "limit_price": None, "extended_hours": True},
        422,
        "extended_hours",
        "invalid_order",
        id="extended-hours-market",
    ),
    pytest.param({"extended_hours": "yes"}, 422, "extended_hours", "invalid", id="extended-hours-string"),
    pytest.param({"symbol": "IBM", "qty": "1.5"}, 422, "qty", "fractional_not_allowed", id="fractional-ibm"),
    pytest.param(
        {"time_in_force": "gtc", "qty": "1.5"}, 422, "qty", "fractional_not_allowed", id="fractional-gtc"
    ),
    pytest.param(
        {"order_class": "bracket", "take_profit": {"limit_price": "110"}},
        422,
        "stop_loss",
        "invalid_order",
        id="bracket-without-stop-loss",
    ),
    pytest.param(
        {
            "order_class": "bracket",
            "take_profit": {"limit_price": "110"},
            "stop_loss": {"stop_price": "95.00001"},
        },
        422,
        "stop_loss.stop_price",
        "max_decimal_places",
        id="bracket-leg-over-precise",
    ),
    pytest.param(
        {
            "order_class": "bracket",
            "take_profit": {"limit_price": "110"},
            "stop_loss": {"stop_price": "95.005"},
        },
        422,
        "stop_loss.stop_price",
        "off_tick",
        id="bracket-leg-off-tick",
    ),
    pytest.param(
        {"order_class": "bracket", "take_profit": {"limit_price": "99"}, "stop_loss": {"stop_price": "95"}},
        422,
        "take_profit.limit_price",
        "invalid_price",
        id="bracket-tp-below-entry",
    ),
    pytest.param(
        {"client_order_id": "x" * 129}, 422, "client_order_id", "max_length", id="client-id-too-long"
    ),
]


@pytest.mark.parametrize(("change", "status", "field", "error"), BAD_INPUT)
def test_bad_input_is_refused_with_field_and_changes_nothing(
    client: APIClient, change: dict[str, Any], status: int, field: str, error: str
) -> None:
    body = {k: v for k, v in {**LIMIT_BUY, **change}.items() if v is not None}
    if "side" in change and change["side"] is None:
        body["side"] = None
    before = counts()

    response = post(client, body)

    assert response.status_code == status, response.content
    data = response.json()
    assert (data["field"], data["error"]) == (field, error)
    assert isinstance(data["code"], int)
    assert data["message"]
    assert counts() == before


@pytest.mark.parametrize(
    ("raw", "error", "field"),
    [
        pytest.param(b'{"symbol":"AAPL","qty":"1","qty":"2"}', "duplicate_key", "qty", id="duplicate-key"),
        pytest.param(b'{"symbol":"AAPL",', "malformed_json", None, id="truncated"),
        pytest.param(b'{"qty":NaN}', "malformed_json", None, id="nan"),
    ],
)
def test_malformed_json_is_400_and_changes_nothing(
    client: APIClient, raw: bytes, error: str, field: str | None
) -> None:
    before = counts()
    response = client.post("/v2/orders", raw, content_type="application/json")
    assert response.status_code == 400
    assert (response.json()["error"], response.json().get("field")) == (error, field)
    assert counts() == before


def test_duplicate_client_order_id_is_422(client: APIClient) -> None:
    assert post(client, {**LIMIT_BUY, "client_order_id": "dup"}).status_code == 200
    before = counts()
    response = post(client, {**LIMIT_BUY, "client_order_id": "dup"})
    assert response.status_code == 422
    assert (response.json()["field"], response.json()["error"]) == (
        "client_order_id",
        "duplicate_client_order_id",
    )
    assert counts() == before


# ------------------------------------------------------------------------------------------------ risk


def _rule(response: Any) -> tuple[int, str, dict[str, Any]]:
    data = response.json()
    return response.status_code, data.get("rule"), data.get("details", {})


def test_price_collar_rejection_names_rule_version_inputs_threshold(client: APIClient) -> None:
    before = counts()
    status, rule, details = _rule(post(client, {**LIMIT_BUY, "limit_price": "110.01"}))
    assert (status, rule) == (403, "price_collar")
    assert details == {
        "rule": "price_collar",
        "version": "2026-11-25.1",
        "inputs": {"side": "buy", "limit_price": "110.01", "reference_price": "100.0000", "collar": "0.10"},
        "threshold": "110.000000",
    }
    assert counts() == before
    assert post(client, {**LIMIT_BUY, "limit_price": "110"}).status_code == 200


@pytest.mark.parametrize(
    ("change", "rule", "threshold"),
    [
        pytest.param({"qty": "100001", "limit_price": "1"}, "max_order_qty", "100000", id="max-qty"),
        pytest.param(
            {"qty": "20000", "limit_price": "100"}, "max_order_notional", "1000000", id="max-notional"
        ),
    ],
)
def test_size_limits(client: APIClient, change: dict[str, Any], rule: str, threshold: str) -> None:
    before = counts()
    status, got_rule, details = _rule(post(client, {**LIMIT_BUY, **change}))
    assert (status, got_rule, details["threshold"], details["version"]) == (
        403,
        rule,
        threshold,
        "2026-11-25.1",
    )
    assert counts() == before


def test_insufficient_buying_power(client: APIClient) -> None:
    before = counts()
    response = post(client, {**LIMIT_BUY, "qty": "1000", "limit_price": "100.01"})  # 100,010 > 100,000
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_buying_power"
    assert response.json()["details"]["required"] == "100010.0000"
    assert counts() == before


def test_naked_short_refused(client: APIClient) -> None:
    before = counts()
    response = post(client, {**LIMIT_BUY, "side": "sell", "limit_price": "100"})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_qty"
    assert counts() == before


def test_halted_asset_and_inactive_account(client: APIClient, account: BrokerageAccount) -> None:
    asset_create(symbol="GOOG", halted=True)
    before = counts()
    assert _rule(post(client, {**LIMIT_BUY, "symbol": "GOOG"}))[:2] == (403, "asset_halted")
    account.status = BrokerageAccount.Status.DISABLED
    account.save(update_fields=["status"])
    response = post(client, LIMIT_BUY)
    assert (response.status_code, response.json()["error"]) == (403, "account_not_active")
    assert counts() == before


def test_market_closed_rejects_and_opg_is_accepted(client: APIClient, clock: FixedClock) -> None:
    clock.set(CLOSED_AT)
    before = counts()
    status, rule, details = _rule(post(client, LIMIT_BUY))
    assert (status, rule, details["inputs"]["phase"], details["threshold"]) == (
        403,
        "market_closed",
        "closed",
        ["core"],
    )
    assert counts() == before
    assert post(client, {**LIMIT_BUY, "time_in_force": "opg"}).status_code == 200
    clock.set(OPEN_AT)
    assert _rule(post(client, {**LIMIT_BUY, "time_in_force": "opg"}))[:2] == (403, "auction_closed")


def test_self_trade_and_wash_trade_prevention(client: APIClient, account: BrokerageAccount) -> None:
    # An open buy limit at 100.5 rests; a sell that would cross it is refused.
    assert post(client, LIMIT_BUY).status_code == 200
    resting = Order.objects.get()
    Order.objects.filter(id=resting.id).update(status="new")
    from apps.settlement.models import ShareReservation  # noqa: F401 - the table exists

    before = counts()
    status, rule, details = _rule(
        post(client, {**LIMIT_BUY, "side": "sell", "limit_price": "100.5", "qty": "1"})
    )
    assert (status, rule, details["inputs"]["resting_order_id"]) == (
        403,
        "self_trade_prevention",
        str(resting.id),
    )
    status, rule, _ = _rule(
        post(client, {"symbol": "AAPL", "qty": "1", "side": "sell", "type": "market", "time_in_force": "day"})
    )
    assert (status, rule) == (403, "self_trade_prevention")
    # A resting unpriced order (a stop) makes any opposite unpriced order a possible wash trade.
    Order.objects.filter(id=resting.id).update(type="stop", limit_price=None, stop_price=Decimal("120"))
    status, rule, _ = _rule(
        post(client, {"symbol": "AAPL", "qty": "1", "side": "sell", "type": "market", "time_in_force": "day"})
    )
    assert (status, rule) == (403, "wash_trade_prevention")
    assert counts() == before


def test_the_self_trade_check_reads_only_the_symbol_and_side_it_needs(
    client: APIClient, account: BrokerageAccount
) -> None:
    """With hundreds of open buys resting, a sell's self-trade read goes through the (account, symbol, side,
    status) index rather than visiting every open order of the account."""
    from django.db import connection

    from apps.orders.selectors import OPEN_CROSSABLE_ONE_SQL

    assert post(client, LIMIT_BUY).status_code == 200
    columns = [str(f.column) for f in Order._meta.concrete_fields]
    values = [
        "gen_random_uuid()" if c == "id" else "'clone-' || g" if c == "client_order_id" else c
        for c in columns
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO orders_order ({', '.join(columns)}) "  # noqa: S608 - names from the model
            f"SELECT {', '.join(values)} FROM orders_order, generate_series(1, 400) g WHERE account_id = %s",
            [account.pk],
        )
        cursor.execute("ANALYZE orders_order")
        cursor.execute(
            "EXPLAIN (FORMAT JSON) " + OPEN_CROSSABLE_ONE_SQL,
            [account.pk, "AAPL", "sell", list(Order.OPEN), Order.OrderClass.OCO],
        )
        plan = str(cursor.fetchone()[0])
    assert Order.objects.filter(account=account, status__in=Order.OPEN).count() == 401
    assert "orders_order_acct_sym_side" in plan
    assert "orders_order_acct_status" not in plan


def test_order_rate_limit(client: APIClient, settings: Any) -> None:
    settings.ORDERS_RISK = {**settings.ORDERS_RISK, "rate_limit_count": 2, "version": "test.1"}
    assert post(client, {**LIMIT_BUY, "qty": "1"}).status_code == 200
    assert post(client, {**LIMIT_BUY, "qty": "1"}).status_code == 200
    before = counts()
    status, rule, details = _rule(post(client, {**LIMIT_BUY, "qty": "1"}))
    assert (status, rule, details["threshold"], details["version"], details["inputs"]["count"]) == (
        403,
        "order_rate_limit",
        2,
        "test.1",
        3,
    )
    assert counts() == before


def test_dry_run_evaluates_and_changes_nothing(client: APIClient) -> None:
    before = counts()
    response = client.post("/v2/orders?dry_run=true", LIMIT_BUY, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["dry_run"], data["accepted"], data["hold"], data["order"]["qty"]) == (
        True,
        True,
        "1005",
        "10",
    )
    rejected = client.post("/v2/orders?dry_run=true", {**LIMIT_BUY, "limit_price": "120"}, format="json")
    assert (rejected.status_code, rejected.json()["rule"]) == (403, "price_collar")
    assert counts() == before


# ------------------------------------------------------------------------------------------------ idempotency


def test_idempotency_same_key_same_body_replays(client: APIClient) -> None:
    first = post(client, LIMIT_BUY, HTTP_IDEMPOTENCY_KEY="k-1")
    second = post(client, LIMIT_BUY, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert counts()[:2] == (1, 1)
    assert CashHold.objects.count() == 1


def test_idempotency_same_key_other_body_is_422(client: APIClient) -> None:
    assert post(client, LIMIT_BUY, HTTP_IDEMPOTENCY_KEY="k-2").status_code == 200
    before = counts()
    response = post(client, {**LIMIT_BUY, "qty": "11"}, HTTP_IDEMPOTENCY_KEY="k-2")
    assert (response.status_code, response.json()["error"]) == (422, "idempotency_key_reused")
    assert counts() == before


def test_idempotency_concurrent_duplicate_is_409(client: APIClient, account: BrokerageAccount) -> None:
    # The first request holds the claim (in progress) while its twin arrives.
    raw = msgspec.json.encode(LIMIT_BUY)
    digest = hashlib.sha256(b"POST\0/v2/orders\0" + raw).hexdigest()
    IdempotencyRecord.objects.create(
        owner=str(account.owner_id),
        key="k-3",
        method="POST",
        path="/v2/orders",
        request_hash=digest,
        locked_until=timezone.now() + timedelta(seconds=60),
    )
    before = counts()
    response = client.post("/v2/orders", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-3")
    assert (response.status_code, response.json()["error"]) == (409, "idempotency_key_in_progress")
    assert counts() == before


# ------------------------------------------------------------------------ reads, cancel, replace


def test_other_accounts_order_is_404(client: APIClient) -> None:
    order_id = post(client, LIMIT_BUY).json()["id"]
    intruder = APIClient()
    intruder.force_authenticate(funded_account(cash=Decimal(0)).owner)
    before = counts()
    assert intruder.get(f"/v2/orders/{order_id}").status_code == 404
    assert intruder.delete(f"/v2/orders/{order_id}").status_code == 404
    assert intruder.patch(f"/v2/orders/{order_id}", {"qty": "1"}, format="json").status_code == 404
    assert intruder.get("/v2/orders:by_client_order_id", {"client_order_id": "x"}).status_code == 404
    assert intruder.get("/v2/orders", {"status": "all"}).json() == []
    assert counts() == before
    assert Order.objects.get().status == "pending_new"


def test_cancel_emits_cancel_command_then_422(client: APIClient) -> None:
    order_id = post(client, LIMIT_BUY).json()["id"]
    response = client.delete(f"/v2/orders/{order_id}")
    assert response.status_code == 204
    assert response.content == b""
    assert Order.objects.get().status == "pending_cancel"
    event = StoredEvent.objects.get(event_type="orders.CancelRequested")
    assert msgspec.json.decode(bytes(event.body))["payload"] == {
        "command": {"command": "CancelOrder", "order_id": order_id},
        "account_id": str(Order.objects.get().account_id),
    }
    again = client.delete(f"/v2/orders/{order_id}")
    assert (again.status_code, again.json()["error"]) == (422, "not_cancelable")


def test_cancel_all_is_207(client: APIClient) -> None:
    a = post(client, {**LIMIT_BUY, "qty": "1"}).json()["id"]
    b = post(client, {**LIMIT_BUY, "qty": "2"}).json()["id"]
    response = client.delete("/v2/orders")
    assert response.status_code == 207
    assert sorted((r["id"], r["status"]) for r in response.json()) == sorted([(a, 200), (b, 200)])


def test_replace_links_orders_and_emits_replace_command(client: APIClient) -> None:
    old_id = post(client, LIMIT_BUY).json()["id"]
    Order.objects.filter(id=old_id).update(status="new")
    response = client.patch(f"/v2/orders/{old_id}", {"qty": "5", "limit_price": "99"}, format="json")
    assert response.status_code == 200, response.content
    new = response.json()
    assert (new["replaces"], new["qty"], new["limit_price"]) == (old_id, "5", "99")
    old = Order.objects.get(id=old_id)
    assert (old.status, str(old.replaced_by_id)) == ("pending_replace", new["id"])
    event = StoredEvent.objects.get(event_type="orders.ReplaceRequested")
    assert msgspec.json.decode(bytes(event.body))["payload"]["command"] == msgspec.to_builtins(
        ec.ReplaceOrder(
            order_id=old_id,
            new_order_id=new["id"],
            qty_e9=5_000_000_000,
            limit_price_e4=990_000,
            split_epoch=0,
        )
    )
    holds = dict(CashHold.objects.values_list("order_id", "remaining"))
    # The old order keeps its hold until the engine confirms the replace (the projection releases it then).
    assert holds == {old_id: Decimal("1005.0000"), new["id"]: Decimal("495.0000")}


def test_list_filters_and_by_client_order_id(client: APIClient, clock: FixedClock) -> None:
    first = post(client, {**LIMIT_BUY, "client_order_id": "a"}).json()
    clock.advance(timedelta(seconds=1))
    second = post(client, {**LIMIT_BUY, "client_order_id": "b", "qty": "1"}).json()
    listed = client.get("/v2/orders", {"status": "all", "direction": "asc"}).json()
    assert [o["id"] for o in listed] == [first["id"], second["id"]]
    assert [o["id"] for o in client.get("/v2/orders", {"limit": 1}).json()] == [second["id"]]
    assert client.get("/v2/orders", {"status": "closed"}).json() == []
    assert client.get("/v2/orders", {"symbols": "IBM"}).json() == []
    assert client.get("/v2/orders", {"side": "sell"}).json() == []
    assert client.get("/v2/orders:by_client_order_id", {"client_order_id": "b"}).json()["id"] == second["id"]
    bad = client.get("/v2/orders", {"status": "pending"})
    assert (bad.status_code, bad.json()["field"]) == (422, "status")


def test_assets_clock_calendar(client: APIClient) -> None:
    assets = client.get("/v2/assets").json()
    assert [a["symbol"] for a in assets] == ["AAPL", "IBM"]
    aapl = client.get("/v2/assets/AAPL").json()
    assert (aapl["class"], aapl["price_increment"], aapl["fractionable"]) == ("us_equity", "0.01", True)
    assert client.get("/v2/assets/NOPE").status_code == 404
    assert client.get("/v2/clock").json() == {
        "timestamp": "2026-11-24T10:00:00-05:00",
        "is_open": True,
        "next_open": "2026-11-25T09:30:00-05:00",
        "next_close": "2026-11-24T16:00:00-05:00",
    }
    cal = client.get("/v2/calendar", {"start": "2026-11-26", "end": "2026-11-27"}).json()
    assert cal == [
        {
            "date": "2026-11-27",
            "open": "09:30",
            "close": "13:00",
            "session_open": "0400",
            "session_close": "1700",
            "settlement_date": "2026-11-30",
        }
    ]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"start": "1990-01-01", "end": "1990-02-01"}, id="before-the-calendar"),
        pytest.param({"start": "2035-01-01"}, id="after-the-calendar"),
    ],
)
def test_calendar_outside_its_range_is_a_coded_422(client: APIClient, query: dict[str, str]) -> None:
    response = client.get("/v2/calendar", query)
    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["rule"]) == ("date_out_of_calendar_range", "market_calendar_range")
    assert body["details"] == {"start": "2000-01-01", "end": "2030-12-31"}


def test_unauthenticated_is_401() -> None:
    response = APIClient().get("/v2/orders")
    assert response.status_code in (401, 403)
    assert isinstance(response.json()["code"], int)


# ------------------------------------------------------------------------------------------------ positions


def _shares_in(account: BrokerageAccount, symbol: str, qty: Decimal, cost_basis: Decimal) -> None:
    """Shares transferred in, settled (a position to sell or close)."""
    from apps.settlement.services import shares_deposit_post

    with transaction.atomic():
        shares_deposit_post(
            account=account, symbol=symbol, qty=qty, cost_basis=cost_basis, transfer_id=f"t-{symbol.lower()}"
        )


@pytest.mark.parametrize(
    ("last_trade", "current", "market_value", "pl", "plpc"),
    [
        pytest.param(Decimal("110.55"), "110.55", "1105.5", "105.5", "0.1055", id="latest-trade"),
        pytest.param(None, "100", "1000", "0", "0", id="no-trade-reference-price"),
    ],
)
def test_positions_are_valued_at_the_latest_trade(
    client: APIClient,
    account: BrokerageAccount,
    last_trade: Decimal | None,
    current: str,
    market_value: str,
    pl: str,
    plpc: str,
) -> None:
    from apps.marketdata.models import Trade

    asset_create(symbol="POSV", reference_price=Decimal("100"))
    _shares_in(account, "POSV", Decimal("10"), Decimal("1000"))
    if last_trade is not None:
        for seq, price in ((1, Decimal("90")), (2, last_trade)):  # the newest print counts, not the first
            Trade.objects.create(
                symbol="POSV",
                trade_id=f"p0:{seq}:0",
                price=price,
                size=Decimal(1),
                timestamp=OPEN_AT,
                book_seq=seq,
            )
    listed = client.get("/v2/positions").json()
    one = client.get("/v2/positions/POSV").json()
    assert listed == [one]
    assert {k: one[k] for k in ("qty", "avg_entry_price", "cost_basis", "current_price", "market_value")} == {
        "qty": "10",
        "avg_entry_price": "100",
        "cost_basis": "1000",
        "current_price": current,
        "market_value": market_value,
    }
    assert (one["unrealized_pl"], one["unrealized_plpc"], one["lastday_price"]) == (pl, plpc, current)


# ------------------------------------------------------------------------------------------------ oco


@pytest.mark.parametrize(
    "limit_price",
    [pytest.param({"limit_price": "105"}, id="limit-given"), pytest.param({}, id="limit-from-take-profit")],
)
def test_oco_limit_price_may_come_from_take_profit(
    client: APIClient, account: BrokerageAccount, limit_price: dict[str, str]
) -> None:
    _shares_in(account, "AAPL", Decimal("5"), Decimal("500"))
    body = {
        "symbol": "AAPL",
        "qty": "5",
        "side": "sell",
        "type": "limit",
        "time_in_force": "gtc",
        "order_class": "oco",
        "take_profit": {"limit_price": "105"},
        "stop_loss": {"stop_price": "95"},
        **limit_price,
    }
    response = post(client, body)
    assert response.status_code == 200, response.content
    order = Order.objects.get(id=response.json()["id"])
    assert (order.limit_price, order.order_class, order.reserved_qty) == (Decimal("105"), "oco", Decimal("5"))
    assert [(leg.leg_role, leg.type, leg.stop_price) for leg in order.legs.all()] == [
        ("stop_loss", "stop", Decimal("95"))
    ]
    event = StoredEvent.objects.get(event_type="orders.OrderSubmitted")
    assert msgspec.json.decode(bytes(event.body))["payload"]["command"] == msgspec.to_builtins(
        ec.NewOrder(
            order_id=str(order.id),
            account_id=str(account.id),
            symbol="AAPL",
            side="sell",
            type="limit",
            tif="gtc",
            qty_e9=5_000_000_000,
            limit_price_e4=1_050_000,
            order_class="oco",
            take_profit=ec.TakeProfit(limit_price_e4=1_050_000),
            stop_loss=ec.StopLoss(stop_price_e4=950_000),
            split_epoch=0,
        )
    )


def test_oco_without_any_limit_price_names_the_field(client: APIClient) -> None:
    before = counts()
    body = {
        "symbol": "AAPL",
        "qty": "5",
        "side": "sell",
        "type": "limit",
        "time_in_force": "gtc",
        "order_class": "oco",
        "stop_loss": {"stop_price": "95"},
    }
    response = post(client, body)
    assert (response.status_code, response.json()["field"]) == (422, "limit_price")
    assert counts() == before


def test_closing_a_percentage_of_a_position_sells_that_share_rounded_down_and_bad_percentages_are_refused(
    client: APIClient, account: BrokerageAccount
) -> None:
    asset_create(symbol="POSC", reference_price=Decimal("100"))
    _shares_in(account, "POSC", Decimal("10"), Decimal("1000"))
    for bad in ("0", "100.000000001", "33.3333333333", "-5", "abc"):
        response = client.delete(f"/v2/positions/POSC?percentage={bad}")
        assert response.status_code == 422, bad
        assert Order.objects.filter(symbol="POSC").count() == 0
    # 10 x 33.333333333 % = 3.3333333333 shares: rounded down to the 9-dp quantum, never up.
    body = client.delete("/v2/positions/POSC?percentage=33.333333333").json()
    assert (body["symbol"], body["side"], body["type"], body["qty"]) == (
        "POSC",
        "sell",
        "market",
        "3.333333333",
    )
