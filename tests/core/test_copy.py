"""``copy_insert``'s COPY row values: what Django's ``get_db_prep_save(pre_save(obj, True))`` gives, whether a value
is written as it is (exact field class, value of the expected type) or prepared by Django (everything else)."""

from __future__ import annotations

import uuid
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Int2, Int4, Int8

from apps.core.copy import _AUTO, _row, _row_plan, copy_insert, copy_insert_values
from apps.orders.models import Fill, Order, TradeUpdate
from apps.settlement.models import CashHold, Posting

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 24, 15, 0, 1, 123456, tzinfo=UTC)


def _fields(model: type[Model]) -> list[Any]:
    return [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, _AUTO))]


def _django_row(obj: Model) -> list[Any]:
    return [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in _fields(type(obj))]


def _fast_row(obj: Model) -> list[Any]:
    return _row(_row_plan(type(obj), _fields(type(obj))), obj)


def _fill(**overrides: Any) -> Fill:
    values: dict[str, Any] = {
        "fill_id": "p0:fill-1", "trade_id": "t-1", "order_id": uuid.uuid4(), "account_id": uuid.uuid4(),
        "symbol": "AAPL", "side": "buy", "qty": Decimal("1.5"), "price": Decimal("100.25"), "liquidity": "taker",
        "filled_at": NOW,
    }  # fmt: skip
    values.update(overrides)
    return Fill(**values)


@pytest.mark.parametrize(
    "obj",
    [
        _fill(),
        _fill(qty="2.000000001", price=101),  # a str and an int in DecimalFields: prepared by Django
        _fill(order_id=str(uuid.uuid4())),  # a str key of a UUID primary key: prepared by Django
        Posting(entry_id=7, ledger_account_id=9, asset="USD", amount=Decimal("-10.00")),
        Posting(entry_id=True, ledger_account_id=9, asset="USD", amount=Decimal("1")),  # a bool is not an int
        TradeUpdate(
            account_id=uuid.uuid4(),
            seq=3,
            order_id=uuid.uuid4(),
            event="fill",
            source_id="e-1",
            data={"price": "1.5"},
            created_at=NOW,
        ),
        Order(  # None in nullable fields (decimal, datetime and key fields)
            id=uuid.uuid4(),
            client_order_id="c-1",
            account_id=uuid.uuid4(),
            asset_id=uuid.uuid4(),
            symbol="AAPL",
            side="buy",
            type="market",
            time_in_force="day",
            qty=Decimal("1"),
            notional=None,
            limit_price=None,
            replaces_id=None,
            status="pending_new",
            created_at=NOW,
            updated_at=NOW,
            submitted_at=NOW,
            filled_at=None,
        ),
    ],
    ids=[
        "fill",
        "fill-unprepared-values",
        "fill-str-key",
        "posting",
        "posting-bool-key",
        "trade-update",
        "nulls",
    ],
)
def test_each_row_value_is_what_django_prepares(obj: Model) -> None:
    fast, django = _plain(_fast_row(obj)), _plain(_django_row(obj))
    assert fast == django
    assert [type(v) for v in fast] == [type(v) for v in django]


def _plain(row: list[Any]) -> list[Any]:
    """Jsonb wrappers compare by identity: their payloads are compared instead. Django wraps integers in psycopg's
    Int8 and the like for server-side binding; in a COPY the declared column type dumps a plain int the same."""
    return [v.obj if isinstance(v, Jsonb) else int(v) if type(v) in (Int2, Int4, Int8) else v for v in row]


def test_auto_now_fields_are_set_by_pre_save_as_django_does() -> None:
    hold = CashHold(order_id="o-1", account_id=uuid.uuid4(), amount=Decimal("5"), remaining=Decimal("5"))
    row = _fast_row(hold)
    columns = [f.attname for f in _fields(CashHold)]
    created, updated = row[columns.index("created_at")], row[columns.index("updated_at")]
    assert isinstance(created, datetime)
    assert isinstance(updated, datetime)
    assert (created, updated) == (hold.created_at, hold.updated_at)


def test_a_naive_datetime_is_made_aware_as_django_does() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fill = _fill(filled_at=NOW.replace(tzinfo=None))
        fast, django = _fast_row(fill), _django_row(fill)
    assert fast == django
    assert fast[[f.attname for f in _fields(Fill)].index("filled_at")].tzinfo is not None


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity")])
def test_a_non_finite_decimal_is_refused_and_nothing_is_written(bad: Decimal) -> None:
    before = Posting.objects.count()
    with pytest.raises(ValidationError), transaction.atomic():
        copy_insert(Posting, [Posting(entry_id=1, ledger_account_id=1, asset="USD", amount=bad)])
    assert Posting.objects.count() == before


def test_a_duplicate_key_is_djangos_integrity_error() -> None:
    # Unique fill_id; the foreign keys are deferred to commit, the unique check is not.
    with pytest.raises(IntegrityError), transaction.atomic():
        copy_insert(Fill, [_fill(fill_id="dup-1"), _fill(fill_id="dup-1")])
    assert not Fill.objects.filter(fill_id="dup-1").exists()


_POSTING_COLUMNS = ("entry_id", "ledger_account_id", "asset", "amount")


def _postings_after(first_id: int) -> list[tuple[Any, ...]]:
    return list(Posting.objects.filter(id__gt=first_id).order_by("id").values_list(*_POSTING_COLUMNS))


def test_values_rows_are_written_as_copy_insert_writes_the_instances() -> None:
    values: list[tuple[Any, ...]] = [  # each entry balances per asset (the database checks it per statement)
        (7, 9, "USD", Decimal("-10.0000")),
        (7, 11, "USD", Decimal("10")),
        (8, 9, "USD", "1.50"),  # a str and an int in a DecimalField, a bool in a key: prepared by Django
        (8, 12, "USD", Decimal("-1.5")),
        (True, 12, "USD", 3),
        (1, 9, "USD", Decimal("-3")),
    ]
    first = Posting.objects.order_by("-id").values_list("id", flat=True).first() or 0
    with transaction.atomic():  # the keys are checked at a commit that never comes (rolled back)
        instances = [Posting(**dict(zip(_POSTING_COLUMNS, v, strict=True))) for v in values]
        assert copy_insert(Posting, instances) == 6
        by_instances = _postings_after(first)
        middle = Posting.objects.order_by("-id").values_list("id", flat=True).first() or 0
        assert copy_insert_values(Posting, _POSTING_COLUMNS, values) == 6
        by_values = _postings_after(middle)
        transaction.set_rollback(True)
    assert by_values == by_instances
    assert by_values[2::2] == [(8, 9, "USD", Decimal("1.50")), (1, 12, "USD", Decimal("3"))]


@pytest.mark.parametrize(
    ("model", "names"),
    [
        pytest.param(Posting, ("entry", "amount"), id="a-relation-name-not-its-column"),
        pytest.param(CashHold, ("order_id", "created_at"), id="an-auto-now-field"),
    ],
)
def test_values_refuse_a_field_whose_value_is_not_the_column(
    model: type[Model], names: tuple[str, ...]
) -> None:
    with pytest.raises(TypeError, match=names[0] if model is Posting else "created_at"):
        copy_insert_values(model, names, [])


def test_values_refuse_a_non_finite_decimal_and_write_nothing() -> None:
    before = Posting.objects.count()
    with pytest.raises(ValidationError), transaction.atomic():
        copy_insert_values(
            Posting, _POSTING_COLUMNS, [(1, 1, "USD", Decimal("1")), (1, 1, "USD", Decimal("NaN"))]
        )
    assert Posting.objects.count() == before
