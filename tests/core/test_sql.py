"""``apps.core.sql``: model instances read by hand-written SELECTs are the ORM's instances."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.models import AggregateSequence, StoredEvent
from apps.core.outbox import event_record
from apps.core.sql import (
    constraint_name,
    insert_one,
    insert_statement,
    inserted,
    model_from_row,
    models_from_sql,
    select_list,
)
from apps.orders.models import CLIENT_ORDER_ID_UNIQUE, Asset, Order
from apps.orders.services import order_new
from apps.orders.types import OrderRequest
from apps.settlement.models import JournalEntry, LedgerAccount
from tests.orders.factories import asset_create, funded_account

pytestmark = pytest.mark.django_db


def _fields(obj: Model, model: type[Model]) -> list[tuple[str, object, type]]:
    return [
        (f.attname, getattr(obj, f.attname), type(getattr(obj, f.attname)))
        for f in model._meta.concrete_fields
    ]


def test_rows_read_by_hand_equal_the_orms_field_for_field() -> None:
    funded_account(Decimal("1234.56"))
    asset_create(symbol="SQLX", reference_price=Decimal("12.3400"), fractionable=False)
    with transaction.atomic():
        ledger = models_from_sql(
            LedgerAccount,
            f"SELECT {select_list(LedgerAccount)} FROM settlement_ledgeraccount ORDER BY id FOR UPDATE",  # noqa: S608
            [],
        )
    assert ledger
    assert [_fields(r, LedgerAccount) for r in ledger] == [
        _fields(r, LedgerAccount) for r in LedgerAccount.objects.order_by("id")
    ]
    assert all(not r._state.adding and r._state.db == "default" for r in ledger)
    (asset,) = models_from_sql(
        Asset,
        f"SELECT {select_list(Asset, 'a')} FROM orders_asset a WHERE a.symbol = %s",  # noqa: S608
        ["SQLX"],
    )
    assert _fields(asset, Asset) == _fields(Asset.objects.get(symbol="SQLX"), Asset)


def test_values_are_converted_as_the_orm_converts_them() -> None:
    # JournalEntry.details is a JSON field: the database hands its text over, from_db_value parses it.
    funded_account(Decimal("77.00"))
    read = models_from_sql(
        JournalEntry,
        f"SELECT {select_list(JournalEntry)} FROM settlement_journalentry ORDER BY id",  # noqa: S608
        [],
    )
    assert read
    assert all(isinstance(e.details, dict) for e in read)  # not the JSON text the database sends
    assert [_fields(e, JournalEntry) for e in read] == [
        _fields(e, JournalEntry) for e in JournalEntry.objects.order_by("id")
    ]


def test_a_row_of_a_join_holds_each_model_and_an_outer_join_miss_is_none() -> None:
    funded_account(Decimal("5.00"))
    entry = JournalEntry.objects.order_by("id").first()
    assert entry is not None
    width = len(JournalEntry._meta.concrete_fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {select_list(JournalEntry, 'e')}, {select_list(Asset, 'a')} "  # noqa: S608
            "FROM settlement_journalentry e LEFT JOIN orders_asset a ON a.symbol = e.description "
            "WHERE e.id = %s",
            [entry.pk],
        )
        row = cursor.fetchone()
    assert row is not None
    assert _fields(model_from_row(JournalEntry, row), JournalEntry) == _fields(entry, JournalEntry)  # type: ignore[arg-type]
    assert model_from_row(Asset, row, width) is None


_NOW = timezone.now()


def _order(account: Any, asset: Asset, client_order_id: str) -> Order:
    data = OrderRequest(symbol=asset.symbol, qty=Decimal("3"), side="buy", type="limit", time_in_force="day",
                        limit_price=Decimal("12.34"))  # fmt: skip
    return order_new(account=account, asset=asset, data=data, client_order_id=client_order_id, now=_NOW)


def test_insert_one_writes_the_row_the_orm_writes() -> None:
    account = funded_account(Decimal("1000"))
    asset = asset_create(symbol="INS1", reference_price=Decimal("12.3400"))
    by_orm, by_hand = _order(account, asset, "orm-1"), _order(account, asset, "hand-1")
    by_orm.save(force_insert=True)
    insert_one(by_hand)
    assert not by_hand._state.adding
    assert by_hand._state.db == "default"
    stored_orm, stored_hand = Order.objects.get(pk=by_orm.pk), Order.objects.get(pk=by_hand.pk)
    differ = {"id", "client_order_id"}
    assert [v for v in _fields(stored_hand, Order) if v[0] not in differ] == [
        v for v in _fields(stored_orm, Order) if v[0] not in differ
    ]
    # Nullable fields left None went in as NULL (and the row reads back as the instance that was inserted).
    assert stored_hand.notional is None
    assert stored_hand.stop_price is None
    assert [v[:2] for v in _fields(stored_hand, Order)] == [v[:2] for v in _fields(by_hand, Order)]


def test_insert_one_raises_djangos_integrity_error_and_refuses_an_auto_key() -> None:
    account = funded_account(Decimal("1000"))
    asset = asset_create(symbol="INS2", reference_price=Decimal("12.3400"))
    insert_one(_order(account, asset, "dup-1"))
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_one(_order(account, asset, "dup-1"))  # client_order_id is unique per account
    assert Order.objects.filter(client_order_id="dup-1").count() == 1
    with pytest.raises(TypeError, match="JournalEntry"):
        insert_one(JournalEntry(description="x"))


def _first_event(order: Order) -> None:
    event_record(
        topic="orders.commands",
        key=order.symbol,
        event_type="orders.OrderSubmitted",
        aggregate_type="order",
        aggregate_id=str(order.id),
        payload={},
        first_of_aggregate=True,
        aggregate_insert=insert_statement(order),
    )
    inserted(order)


def test_a_new_aggregate_and_its_first_event_are_one_statement_and_fail_together() -> None:
    account = funded_account(Decimal("1000"))
    asset = asset_create(symbol="INS3", reference_price=Decimal("12.3400"))
    order, by_orm = _order(account, asset, "agg-1"), _order(account, asset, "orm-3")
    by_orm.save(force_insert=True)
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        _first_event(order)
    # The order row, the sequence row and the event: one round trip (the test's savepoint aside).
    assert len([q for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]) == 1
    assert not order._state.adding
    differ = {"id", "client_order_id"}
    stored = Order.objects.get(pk=order.pk)
    assert [v for v in _fields(stored, Order) if v[0] not in differ] == [
        v for v in _fields(Order.objects.get(pk=by_orm.pk), Order) if v[0] not in differ
    ]
    assert StoredEvent.objects.get(aggregate_id=str(order.id)).sequence == 1
    # The order's constraint refuses the statement: neither its sequence row nor its event is written, and the
    # error names the constraint (what the submit answers as a 422 duplicate_client_order_id).
    twin = _order(account, asset, "agg-1")
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        _first_event(twin)
    assert constraint_name(caught.value) == CLIENT_ORDER_ID_UNIQUE
    assert not StoredEvent.objects.filter(aggregate_id=str(twin.id)).exists()
    assert not AggregateSequence.objects.filter(aggregate_id=str(twin.id)).exists()
    assert not Order.objects.filter(pk=twin.pk).exists()
    with pytest.raises(ValueError, match="first event"), transaction.atomic():
        event_record(
            topic="t", key="k", event_type="t.X", aggregate_type="order", aggregate_id="x", payload={},
            aggregate_insert=insert_statement(twin),
        )  # fmt: skip


@pytest.mark.django_db(transaction=True)  # closes the connection: not inside the test's transaction
def test_hot_cursor_is_reused_yet_keeps_djangos_checks_and_logging() -> None:
    from apps.core.sql import hot_cursor

    with hot_cursor() as first:
        first.execute("SELECT 1")
        assert first.fetchone() == (1,)
    with hot_cursor() as second:
        second.execute("SELECT 2")
        assert second.fetchone() == (2,)
    assert second is first  # one cursor for the thread's connection
    # Execute wrappers see its statements; errors are Django's.
    seen: list[str] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    account = funded_account(Decimal("1000"))
    asset = asset_create(symbol="INS4", reference_price=Decimal("12.3400"))
    insert_one(_order(account, asset, "hot-1"))
    with connection.execute_wrapper(spy), pytest.raises(IntegrityError), transaction.atomic():
        insert_one(_order(account, asset, "hot-1"))
    (insert,) = [sql for sql in seen if "SAVEPOINT" not in sql]
    assert insert.startswith('INSERT INTO "orders_order"')
    # While queries are logged, every statement gets a fresh cursor, so the log misses none.
    with CaptureQueriesContext(connection) as captured, hot_cursor() as logged:
        logged.execute("SELECT 3")
        logged.fetchall()
    assert logged is not first
    assert [q["sql"] for q in captured.captured_queries] == ["SELECT 3"]
    # After a reconnect the cursor is made again on the new connection.
    connection.close()
    with hot_cursor() as again:
        again.execute("SELECT 4")
        assert again.fetchone() == (4,)
    assert again is not first
