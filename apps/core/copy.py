"""``copy_insert``: many rows of one model written with ONE ``COPY ... FROM STDIN`` in the caller's transaction.

``QuerySet.bulk_create`` on PostgreSQL builds one multi-row ``INSERT`` with every value quoted into the SQL text
client-side and parsed again by the server, and asks for the keys back (``RETURNING``). COPY streams the values
instead: in ``bench/ingest.py``'s writer group, COPY of 1,000 fill-shaped rows ran about 5x a multi-row INSERT.
COPY checks constraints and fires triggers as INSERT does, so every database invariant still holds.

The columns' types are declared to psycopg once per statement (``Copy.set_types``, with the type OIDs read from
the catalog once per table and process), so each value is dumped without a per-value adapter lookup: about 20 %
less client CPU per row than undeclared text COPY in the writer comparison.

Use it only where nothing reads the new rows' auto primary keys afterwards: they come from the column default
and are NOT set on the objects (client-side defaults such as UUIDs are, since the model set them). No
``ON CONFLICT``: a duplicate fails the whole statement with Django's ``IntegrityError``, as ``bulk_create``
without ``ignore_conflicts`` does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    DecimalField,
    Field,
    ForeignKey,
    IntegerField,
    Model,
    OneToOneField,
    PositiveBigIntegerField,
    PositiveIntegerField,
    PositiveSmallIntegerField,
    SmallAutoField,
    SmallIntegerField,
    TextField,
    UUIDField,
)

_AUTO = (AutoField, BigAutoField, SmallAutoField)
_column_oids: dict[tuple[str, str], dict[str, int]] = {}  # (database alias, table) -> column -> type OID
# (column name, type OID) of every live column of the table named by the one parameter.
COLUMN_TYPES_SQL = (
    "SELECT attname, atttypid::int FROM pg_attribute "
    "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
)


def column_type_oids(table: str, columns: Sequence[str]) -> list[int]:
    """Type OID of each of ``columns`` of ``table`` (read from the catalog once per process, again when a column
    is not known yet, e.g. after a migration added it)."""
    key = (connection.alias, table)
    oids = _column_oids.get(key)
    if oids is None or any(c not in oids for c in columns):
        with connection.cursor() as cursor:
            cursor.execute(COLUMN_TYPES_SQL, [table])
            oids = _column_oids[key] = dict(cursor.fetchall())
    return [oids[c] for c in columns]


def copy_insert(model: type[Model], objs: Sequence[Model]) -> int:
    """Insert ``objs`` (instances of ``model``) with one COPY; returns how many rows were written."""
    if not objs:
        return 0
    opts = model._meta
    fields = [f for f in opts.concrete_fields if not (f.primary_key and isinstance(f, _AUTO))]
    plan = _row_plan(model, fields)
    return _copy(
        opts.db_table, [f.column for f in fields if f.column is not None], (_row(plan, o) for o in objs)
    )


def _copy(table: str, columns: list[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY ``rows`` into ``columns`` of ``table`` with the columns' types declared; returns the row count."""
    quote = connection.ops.quote_name
    sql = f"COPY {quote(table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    types = column_type_oids(table, columns)
    start, count = time.monotonic(), 0
    # Django's error wrapping, as its cursor gives an execute: a constraint violation is Django's IntegrityError.
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
            count += 1
    if connection.queries_logged:  # as Django's debug cursor records an execute (COPY bypasses it)
        connection.queries_log.append(
            {"sql": f"{sql} -- {count} rows", "time": f"{time.monotonic() - start:.3f}"}
        )
    return count


def copy_insert_values(model: type[Model], attnames: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Insert ``rows`` of ``model`` (one value per name of ``attnames``, e.g. ``entry_id``) with one COPY.

    For a hot path with many small rows whose model instances would cost more than the row (a posting is four
    values): no instance is built. A value is written as it is when it is what Django's preparation returns
    unchanged (the ``_READY`` types), else prepared by its field (``get_db_prep_save``), so the rows equal
    ``copy_insert``'s. Only fields of the ``_READY`` classes are accepted (their ``pre_save`` is the value
    itself); columns not named take their database default (an auto primary key).
    """
    opts = model._meta
    plan: list[tuple[Field[Any, Any], Callable[[Any], bool]]] = []
    for name in attnames:
        field = opts.get_field(name)
        check = _ready_check(field) if isinstance(field, Field) and field.attname == name else None
        if check is None:
            raise TypeError(f"{opts.label}.{name}: not a column copy_insert_values can write")
        plan.append((field, check))  # type: ignore[arg-type]

    def prepared(row: Sequence[Any]) -> Sequence[Any]:
        if all(check(value) for (_f, check), value in zip(plan, row, strict=True)):
            return row
        return [
            v if check(v) else f.get_db_prep_save(v, connection)
            for (f, check), v in zip(plan, row, strict=True)
        ]

    if not rows:
        return 0
    return _copy(opts.db_table, [f.column for f, _c in plan if f.column is not None], map(prepared, rows))


# ----------------------------------------------------------------------------------------------- row values
# ``Field.get_db_prep_save(field.pre_save(obj, True))`` per value was the largest Python cost of the projection's
# COPY rows (bench/projection.py). For the exact field classes below it returns a value of the type listed
# unchanged, so such a value is written as it is; any other value (a str in a DecimalField, a naive datetime,
# a non-finite Decimal, ...) and every other field class (subclasses included: an encrypted CharField is one)
# still goes through Django. ``tests/core/test_copy.py`` checks every row value equals Django's preparation.
def _is_str(value: Any) -> bool:
    return type(value) is str


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _is_uuid(value: Any) -> bool:
    return type(value) is uuid.UUID


def _is_finite_decimal(value: Any) -> bool:
    return type(value) is Decimal and value.is_finite()


def _is_aware_datetime(value: Any) -> bool:  # a naive one gets Django's warning and its conversion
    return type(value) is datetime and value.tzinfo is not None


def _is_datetime(value: Any) -> bool:  # USE_TZ off: Django passes naive datetimes through
    return type(value) is datetime


_READY: dict[type[Field[Any, Any]], Callable[[Any], bool]] = {
    CharField: _is_str,
    TextField: _is_str,
    UUIDField: _is_uuid,
    DecimalField: _is_finite_decimal,
    BooleanField: _is_bool,
    IntegerField: _is_int,
    BigIntegerField: _is_int,
    SmallIntegerField: _is_int,
    PositiveIntegerField: _is_int,
    PositiveBigIntegerField: _is_int,
    PositiveSmallIntegerField: _is_int,
    AutoField: _is_int,
    BigAutoField: _is_int,
    SmallAutoField: _is_int,
}
_plans: dict[type[Model], list[tuple[Field[Any, Any], str, Callable[[Any], bool] | None]]] = {}


def _ready_check(field: Field[Any, Any]) -> Callable[[Any], bool] | None:
    """The check under which ``field``'s value needs no Django preparation; None: always prepare.

    For every class of ``_READY`` Django prepares a None as None, so a nullable field's None is ready too.
    """
    check = _value_check(field)
    if check is None or not field.null:
        return check
    return lambda value: value is None or check(value)


def _value_check(field: Field[Any, Any]) -> Callable[[Any], bool] | None:
    if isinstance(field, ForeignKey):  # a key is prepared as its target field prepares it
        return _value_check(field.target_field) if type(field) in (ForeignKey, OneToOneField) else None
    if type(field) is DateTimeField:
        if field.auto_now or field.auto_now_add:
            return None  # pre_save sets these
        return _is_aware_datetime if settings.USE_TZ else _is_datetime
    return _READY.get(type(field))


def row_values(model: type[Model], obj: Model) -> list[Any]:
    """The values of ``obj`` as an INSERT writes them: every concrete field's but an auto primary key's."""
    plan = _plans.get(model)  # built once per model; the field list is only needed the first time
    if plan is None:
        plan = _row_plan(
            model, [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, _AUTO))]
        )
    return _row(plan, obj)


def _row(plan: list[tuple[Field[Any, Any], str, Callable[[Any], bool] | None]], obj: Model) -> list[Any]:
    """The values of ``obj`` for its COPY row: what ``get_db_prep_save(pre_save(obj, True))`` returns."""
    row = []
    for field, attname, ready in plan:
        value = getattr(obj, attname)
        if ready is None or not ready(value):
            value = field.get_db_prep_save(field.pre_save(obj, True), connection)
        row.append(value)
    return row


def _row_plan(
    model: type[Model], fields: Sequence[Field[Any, Any]]
) -> list[tuple[Field[Any, Any], str, Callable[[Any], bool] | None]]:
    plan = _plans.get(model)
    if plan is None:
        plan = _plans[model] = [(f, f.attname, _ready_check(f)) for f in fields]
    return plan
