"""``apps.core.sql``: model instances read by hand-written SELECTs are the ORM's instances."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Model

from apps.core.sql import model_from_row, models_from_sql, select_list
from apps.orders.models import Asset
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
