"""``apps.core.sql``: model instances read by hand-written SELECTs are the ORM's instances."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Model

from apps.core.sql import models_from_sql, select_list
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


def test_a_model_whose_values_need_converting_is_refused() -> None:
    with pytest.raises(TypeError, match="JournalEntry"):
        models_from_sql(JournalEntry, f"SELECT {select_list(JournalEntry)} FROM settlement_journalentry", [])  # noqa: S608
